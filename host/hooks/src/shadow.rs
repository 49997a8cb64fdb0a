//! Shadow mode: a plugin that receives the live events while its
//! capability calls are validated against the real state, answered as they
//! would have been, recorded, and never applied ([`ShadowCaps`]); and the
//! comparison of what it decided with what the active chain decided
//! ([`ShadowLedger`]).
//!
//! Lanes batch independently (each plugin has its own queue), so the same
//! event may reach the shadow in one batch and an active plugin in another,
//! with different neighbours. Decisions are therefore compared over the
//! smallest set of events that every compared lane handled in whole batches:
//! two events are in one comparison group when some lane handled them in the
//! same batch. Under light load that is one batch. A group is judged once
//! every compared lane has handled all its events, or [`SETTLE`] after it
//! opened (a lane that coalesced or dropped an event never will).
//!
//! A shadow is compared on the capabilities it is granted: a candidate for
//! the assignment policy is not told it "disagrees" with an audit plugin's
//! notifications.
//!
//! Bounded: at most [`MAX_OPEN_EVENTS`] events in open groups (the oldest
//! group is given up on, counted `unjudged`), at most [`MAX_DIFFERENCES`]
//! differences kept per shadow, each listing at most [`MAX_LISTED_CALLS`]
//! calls per side.

use crate::calls::{Call, CallRecord, Capability};
use crate::capabilities::{Capabilities, CapabilityError};
use crate::config::Grant;
use crate::contract::{
    LeaderCount, LeadershipEvent, NodeId, NodeInfo, PartitionAssignment, PartitionId, Transition,
};
use crate::fence::PartitionView;
use crate::queue::PartitionKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A group still missing a lane's batch is judged this long after it opened.
pub const SETTLE: Duration = Duration::from_secs(3);
/// Events in open comparison groups, across all shadows.
pub const MAX_OPEN_EVENTS: usize = 10_000;
/// Differences kept per shadow plugin (the newest).
pub const MAX_DIFFERENCES: usize = 32;
/// Calls listed per side of one difference.
pub const MAX_LISTED_CALLS: usize = 20;

/// The capabilities of a shadow plugin: reads and validation go to the real
/// cluster; writes, transfers and notifications are answered as accepted and
/// go nowhere (the runtime already validated them against the real state).
pub struct ShadowCaps(pub Arc<dyn Capabilities>);

impl Capabilities for ShadowCaps {
    fn local_node(&self) -> NodeId {
        self.0.local_node()
    }
    fn nodes(&self) -> Vec<NodeInfo> {
        self.0.nodes()
    }
    fn partition(&self, partition: &PartitionId) -> Option<PartitionView> {
        self.0.partition(partition)
    }
    fn assignments(&self) -> Vec<PartitionAssignment> {
        self.0.assignments()
    }
    fn leader_counts(&self) -> Vec<LeaderCount> {
        self.0.leader_counts()
    }
    fn set_leader(&self, _: &PartitionId, _: NodeId, _: u64) -> Result<(), CapabilityError> {
        Ok(())
    }
    fn transfer_leader(&self, _: &PartitionId, _: NodeId) -> Result<(), CapabilityError> {
        Ok(())
    }
    fn has_sink(&self, sink: &str) -> bool {
        self.0.has_sink(sink)
    }
    fn notify(&self, _: &str, _: &str) -> Result<(), CapabilityError> {
        Ok(())
    }
}

/// One event as comparisons know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId {
    pub key: PartitionKey,
    pub term: u64,
    pub transition: Transition,
    pub leader: Option<NodeId>,
}

impl EventId {
    pub fn of(key: PartitionKey, event: &LeadershipEvent) -> Self {
        Self {
            key,
            term: event.term,
            transition: event.transition,
            leader: event.leader,
        }
    }
}

/// A lane's identity in comparisons (unique per runtime, kept by reloads).
pub type LaneId = u64;

/// What a comparison counts of one shadow plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowStats {
    /// Groups of events where the shadow decided what the active chain did.
    pub agreements: u64,
    pub disagreements: u64,
    /// Groups given up on (the ledger was full).
    pub unjudged: u64,
    /// The newest differences, oldest first.
    pub differences: Vec<Difference>,
}

/// Where a shadow decided otherwise than the active chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// Wall clock (ms since the epoch) of the judgement.
    pub at_ms: u64,
    /// The events compared, as `partition@term transition`.
    pub events: Vec<String>,
    /// Calls only the shadow made (at most [`MAX_LISTED_CALLS`]).
    pub shadow_only: Vec<Call>,
    /// Calls only the active chain made.
    pub active_only: Vec<Call>,
    /// Calls of each side beyond the listed ones.
    pub unlisted: usize,
}

/// What a lane is to comparisons.
#[derive(Clone)]
pub(crate) struct Participant {
    pub shadow: bool,
    /// For shadows: what they are compared on.
    pub grants: Vec<Grant>,
    /// Whether the lane takes events now (a disabled lane is not waited for).
    pub receiving: Arc<dyn Fn() -> bool + Send + Sync>,
    pub name: String,
}

#[derive(Default)]
struct Group {
    events: Vec<EventId>,
    names: Vec<String>,
    handled: HashMap<LaneId, HashSet<EventId>>,
    calls: HashMap<LaneId, Vec<Call>>,
    opened: Option<Instant>,
}

/// Open comparison groups and each shadow's results.
#[derive(Default)]
pub(crate) struct ShadowLedger {
    lanes: BTreeMap<LaneId, Participant>,
    next_group: u64,
    groups: HashMap<u64, Group>,
    group_of: HashMap<EventId, u64>,
    /// Group ids in opening order (ids of merged groups stay until reached).
    opened: VecDeque<u64>,
    open_events: usize,
    results: BTreeMap<String, ShadowStats>,
}

impl ShadowLedger {
    /// The lanes compared from now on; drops the results of shadows that
    /// are gone and every open group (they were formed under another chain).
    pub fn set_lanes(&mut self, lanes: BTreeMap<LaneId, Participant>) {
        let shadows: HashSet<&str> = lanes
            .values()
            .filter(|p| p.shadow)
            .map(|p| p.name.as_str())
            .collect();
        self.results
            .retain(|name, _| shadows.contains(name.as_str()));
        for name in shadows {
            self.results.entry(name.to_owned()).or_default();
        }
        self.lanes = lanes;
        self.groups.clear();
        self.group_of.clear();
        self.opened.clear();
        self.open_events = 0;
    }

    pub fn has_shadows(&self) -> bool {
        self.lanes.values().any(|p| p.shadow)
    }

    /// A lane handled a batch (successfully or not) and made these calls.
    pub fn batch(
        &mut self,
        lane: LaneId,
        keys: &[PartitionKey],
        events: &[LeadershipEvent],
        calls: Vec<CallRecord>,
        now: Instant,
    ) {
        if !self.lanes.contains_key(&lane) || !self.has_shadows() || events.is_empty() {
            return;
        }
        let ids: Vec<EventId> = keys
            .iter()
            .zip(events)
            .map(|(k, e)| EventId::of(*k, e))
            .collect();
        // Every group these events are in, merged into the first.
        let mut target = None;
        for (id, event) in ids.iter().zip(events) {
            match self.group_of.get(id).copied() {
                Some(g) => match target {
                    None => target = Some(g),
                    Some(t) if t != g => self.merge(g, t),
                    Some(_) => {}
                },
                None => {
                    let t = *target.get_or_insert_with(|| self.open(now));
                    self.group_of.insert(id.clone(), t);
                    let group = self.groups.get_mut(&t).expect("opened");
                    group.events.push(id.clone());
                    group.names.push(format!(
                        "{}@{} {}",
                        event.partition,
                        event.term,
                        transition_name(event.transition)
                    ));
                    self.open_events += 1;
                }
            }
        }
        let Some(target) = target else { return };
        let group = self.groups.get_mut(&target).expect("target exists");
        group.handled.entry(lane).or_default().extend(ids);
        group
            .calls
            .entry(lane)
            .or_default()
            .extend(calls.into_iter().map(|r| r.call));
        // Only this batch can have completed this group.
        if self.complete(&self.groups[&target])
            && let Some(group) = self.close(target)
        {
            self.judge(group);
        }
        self.judge_ready(now);
    }

    fn open(&mut self, now: Instant) -> u64 {
        let id = self.next_group;
        self.next_group += 1;
        self.groups.insert(
            id,
            Group {
                opened: Some(now),
                ..Group::default()
            },
        );
        self.opened.push_back(id);
        id
    }

    /// Moves group `from` into group `into`.
    fn merge(&mut self, from: u64, into: u64) {
        let Some(from) = self.groups.remove(&from) else {
            return;
        };
        for id in &from.events {
            self.group_of.insert(id.clone(), into);
        }
        let into = self.groups.get_mut(&into).expect("merge target exists");
        into.events.extend(from.events);
        into.names.extend(from.names);
        for (lane, handled) in from.handled {
            into.handled.entry(lane).or_default().extend(handled);
        }
        for (lane, calls) in from.calls {
            into.calls.entry(lane).or_default().extend(calls);
        }
        into.opened = into.opened.min(from.opened);
    }

    /// Judges the groups that have waited [`SETTLE`], and gives up on the
    /// oldest while too many events are open. Only the oldest groups are
    /// looked at (the queue is in opening order), so a batch costs the
    /// groups it closes, not every open group: with thousands open, a scan
    /// per batch would make the shadow path quadratic. A group older than
    /// its place in the queue (it absorbed an older one) is judged when the
    /// groups ahead of it are, at most [`SETTLE`] late.
    pub fn judge_ready(&mut self, now: Instant) {
        while let Some(&front) = self.opened.front() {
            let settled = match self.groups.get(&front) {
                None => true, // closed or merged away
                Some(g) => g.opened.is_some_and(|at| now.duration_since(at) >= SETTLE),
            };
            if !settled {
                break;
            }
            self.opened.pop_front();
            if let Some(group) = self.close(front) {
                self.judge(group);
            }
        }
        while self.open_events > MAX_OPEN_EVENTS {
            let Some(oldest) = self.opened.pop_front() else {
                break;
            };
            if self.close(oldest).is_some() {
                for stats in self.results.values_mut() {
                    stats.unjudged += 1;
                }
            }
        }
        // Forget ids of groups closed or merged away.
        while let Some(front) = self.opened.front() {
            if self.groups.contains_key(front) {
                break;
            }
            self.opened.pop_front();
        }
    }

    fn complete(&self, group: &Group) -> bool {
        self.lanes.iter().all(|(lane, p)| {
            !(p.receiving)()
                || group
                    .handled
                    .get(lane)
                    .is_some_and(|h| group.events.iter().all(|e| h.contains(e)))
        })
    }

    fn close(&mut self, id: u64) -> Option<Group> {
        let group = self.groups.remove(&id)?;
        for event in &group.events {
            if self.group_of.get(event) == Some(&id) {
                self.group_of.remove(event);
            }
        }
        self.open_events = self.open_events.saturating_sub(group.events.len());
        Some(group)
    }

    fn judge(&mut self, group: Group) {
        let mut active: Vec<&Call> = group
            .calls
            .iter()
            .filter(|(lane, _)| self.lanes.get(lane).is_some_and(|p| !p.shadow))
            .flat_map(|(_, calls)| calls)
            .collect();
        active.sort();
        for (lane, p) in self.lanes.iter().filter(|(_, p)| p.shadow) {
            if !group.handled.contains_key(lane) {
                continue; // this shadow never saw these events
            }
            let compared = |c: &&Call| {
                p.grants.iter().any(|g| {
                    matches!(
                        (g, c.capability()),
                        (Grant::Assignments, Capability::SetLeader)
                            | (Grant::Leadership, Capability::Transfer)
                            | (Grant::Notify, Capability::Emit)
                    )
                })
            };
            let mut shadow: Vec<&Call> = group.calls.get(lane).into_iter().flatten().collect();
            shadow.sort();
            let theirs: Vec<&Call> = active.iter().copied().filter(compared).collect();
            let ours: Vec<&Call> = shadow.into_iter().filter(compared).collect();
            let (shadow_only, active_only) = multiset_difference(&ours, &theirs);
            let stats = self.results.entry(p.name.clone()).or_default();
            if shadow_only.is_empty() && active_only.is_empty() {
                stats.agreements += 1;
                continue;
            }
            stats.disagreements += 1;
            let unlisted = shadow_only.len().saturating_sub(MAX_LISTED_CALLS)
                + active_only.len().saturating_sub(MAX_LISTED_CALLS);
            let listed = |calls: Vec<&Call>| -> Vec<Call> {
                calls.into_iter().take(MAX_LISTED_CALLS).cloned().collect()
            };
            if stats.differences.len() >= MAX_DIFFERENCES {
                stats.differences.remove(0);
            }
            stats.differences.push(Difference {
                at_ms: now_ms(),
                events: group.names.iter().take(MAX_LISTED_CALLS).cloned().collect(),
                shadow_only: listed(shadow_only),
                active_only: listed(active_only),
                unlisted,
            });
        }
    }

    /// Each shadow's results (judging what is due first).
    pub fn results(&mut self, now: Instant) -> BTreeMap<String, ShadowStats> {
        self.judge_ready(now);
        self.results.clone()
    }
}

/// Calls in `a` not matched one for one in `b`, and the other way round
/// (both sorted).
fn multiset_difference<'a>(a: &[&'a Call], b: &[&'a Call]) -> (Vec<&'a Call>, Vec<&'a Call>) {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(b[j]) {
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                only_a.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                only_b.push(b[j]);
                j += 1;
            }
        }
    }
    only_a.extend(&a[i..]);
    only_b.extend(&b[j..]);
    (only_a, only_b)
}

pub fn transition_name(t: Transition) -> &'static str {
    match t {
        Transition::BecameLeader => "became-leader",
        Transition::SteppedDown => "stepped-down",
        Transition::LeaderObserved => "leader-observed",
        Transition::LeaderLost => "leader-lost",
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::Outcome;

    fn event(p: u32, term: u64) -> LeadershipEvent {
        LeadershipEvent {
            partition: PartitionId {
                topic: "t".into(),
                partition: p,
            },
            transition: Transition::BecameLeader,
            observer: 1,
            leader: Some(1),
            previous_leader: None,
            term,
            replicas: vec![1, 2, 3],
            at_ms: 0,
        }
    }

    fn set(p: u32, term: u64) -> CallRecord {
        CallRecord {
            call: Call::SetLeader {
                partition: format!("t-{p}"),
                leader: 1,
                epoch: term,
            },
            outcome: Outcome::Ok,
        }
    }

    fn participant(name: &str, shadow: bool) -> Participant {
        Participant {
            shadow,
            grants: vec![Grant::Assignments],
            receiving: Arc::new(|| true),
            name: name.into(),
        }
    }

    fn ledger() -> ShadowLedger {
        let mut l = ShadowLedger::default();
        l.set_lanes(BTreeMap::from([
            (1, participant("active", false)),
            (2, participant("candidate", true)),
        ]));
        l
    }

    #[test]
    fn batches_split_differently_are_compared_over_the_events_both_handled() {
        let mut l = ledger();
        let now = Instant::now();
        let keys = [PartitionKey(10), PartitionKey(11)];
        let events = [event(0, 5), event(1, 5)];
        // The active lane handled both events in one batch...
        l.batch(1, &keys, &events, vec![set(0, 5), set(1, 5)], now);
        // ...the shadow in two; after the first, nothing is judged yet.
        l.batch(2, &keys[..1], &events[..1], vec![set(0, 5)], now);
        assert_eq!(l.results(now)["candidate"], ShadowStats::default());
        l.batch(2, &keys[1..], &events[1..], vec![set(1, 5)], now);
        let r = &l.results(now)["candidate"];
        assert_eq!((r.agreements, r.disagreements), (1, 0));
    }

    #[test]
    fn a_different_decision_is_listed_both_ways() {
        let mut l = ledger();
        let now = Instant::now();
        let keys = [PartitionKey(10)];
        let events = [event(0, 5)];
        l.batch(1, &keys, &events, vec![set(0, 5)], now);
        let transfer = CallRecord {
            call: Call::Transfer {
                partition: "t-0".into(),
                to: 2,
            },
            outcome: Outcome::Ok,
        };
        l.batch(2, &keys, &events, vec![transfer], now);
        let r = &l.results(now)["candidate"];
        assert_eq!((r.agreements, r.disagreements), (0, 1));
        let d = &r.differences[0];
        // Granted only `assignments`, the shadow is not compared on transfers.
        assert!(d.shadow_only.is_empty(), "{d:?}");
        assert_eq!(d.active_only.len(), 1);
        assert_eq!(d.events, vec!["t-0@5 became-leader".to_string()]);
    }

    #[test]
    fn a_group_missing_a_lane_is_judged_after_settling_and_open_events_are_bounded() {
        let mut l = ledger();
        let t0 = Instant::now();
        l.batch(2, &[PartitionKey(1)], &[event(0, 1)], vec![set(0, 1)], t0);
        assert_eq!(l.results(t0)["candidate"].disagreements, 0);
        let later = t0 + SETTLE;
        assert_eq!(l.results(later)["candidate"].disagreements, 1);

        for i in 0..(MAX_OPEN_EVENTS as u64 + 10) {
            l.batch(2, &[PartitionKey(i)], &[event(0, 1)], vec![], later);
        }
        assert!(l.open_events <= MAX_OPEN_EVENTS);
        assert_eq!(l.results(later)["candidate"].unjudged, 10);
    }
}
