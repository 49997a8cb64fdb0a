//! Replaying a recorded trace (`[trace]` in a node config) through a plugin:
//! `leaderhook plugin test PLUGIN --trace FILE`.
//!
//! The cluster is rebuilt from the trace itself: the nodes are the
//! observers and replicas named by its events, each partition's replicas
//! come from its events, the Raft terms and leaders from its events, and
//! the stored assignments from the `set-leader` calls the host accepted in
//! recorded batches, applied in trace order: the files of several nodes
//! merged into one history by the time of each record, each node's own
//! records in the order it wrote them (its rotated files given oldest
//! first; `leaderhook_hooks::trace::merge_by_time`). Each recorded batch of the reference plugin is delivered
//! again, with the same events, to the plugin under test on the node that
//! handled it, seeing the state as it was then; the calls it makes are
//! compared, as a multiset, with the calls the reference plugin made.
//!
//! The plugin under test never changes the reconstructed state: what it
//! would have written is compared, not applied, so one early difference
//! does not cascade into every later batch.

use leaderhook_hooks::calls::{Call, CallRecord, Outcome};
use leaderhook_hooks::fence::PartitionView;
use leaderhook_hooks::trace::{TraceRecord, TracedEvent};
use leaderhook_hooks::{
    Capabilities, CapabilityError, HookEngine, LoadError, NodeId, NodeInfo, PartitionAssignment,
    PartitionId, PluginChain, PluginConfig,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Differences a report lists (the count covers them all).
pub const MAX_LISTED: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Trace(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(
        "the trace holds no batch of plugin `{0}` (its plugins: {1}); choose one with --against"
    )]
    NoReference(String, String),
    #[error("the trace holds no batch of an active plugin")]
    Empty,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The recorded plugin compared with.
    pub reference: String,
    pub batches: usize,
    pub events: usize,
    pub agreed: usize,
    /// Every batch where the plugin decided otherwise (at most
    /// [`MAX_LISTED`] listed).
    pub differences: Vec<BatchDifference>,
    pub differing: usize,
    /// Batches where the plugin under test failed (error, trap, timeout).
    pub failures: Vec<String>,
    /// Trace lines cut short by a crash while being written (skipped).
    pub torn_lines: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchDifference {
    pub node: NodeId,
    /// `partition@term transition`.
    pub events: Vec<String>,
    /// Calls the plugin under test made that the recording does not have.
    pub replayed_only: Vec<CallRecord>,
    /// Recorded calls the plugin under test did not make.
    pub recorded_only: Vec<CallRecord>,
}

impl ReplayReport {
    pub fn passed(&self) -> bool {
        self.differing == 0 && self.failures.is_empty()
    }

    pub fn render(&self) -> String {
        let mut text = format!(
            "replayed {} batches ({} events) recorded for `{}`: {} agreed, {} differ, {} failed\n",
            self.batches,
            self.events,
            self.reference,
            self.agreed,
            self.differing,
            self.failures.len()
        );
        if self.torn_lines > 0 {
            text += &format!(
                "  ({} trace lines cut short by a crash were skipped)\n",
                self.torn_lines
            );
        }
        for d in &self.differences {
            text += &format!("  node {} on {}:\n", d.node, d.events.join(", "));
            for c in &d.replayed_only {
                text += &format!(
                    "    + {} -> {}    (this plugin only)\n",
                    c.call,
                    c.outcome.name()
                );
            }
            for c in &d.recorded_only {
                text += &format!(
                    "    - {} -> {}    (recorded only)\n",
                    c.call,
                    c.outcome.name()
                );
            }
        }
        if self.differing > self.differences.len() {
            text += &format!(
                "  … {} more batches differ\n",
                self.differing - self.differences.len()
            );
        }
        for f in self.failures.iter().take(MAX_LISTED) {
            text += &format!("  failed: {f}\n");
        }
        text
    }
}

/// The cluster as the trace shows it so far.
#[derive(Default)]
struct State {
    nodes: BTreeSet<NodeId>,
    partitions: BTreeMap<PartitionId, PartitionView>,
    sinks: BTreeSet<String>,
}

impl State {
    fn learn(&mut self, event: &TracedEvent) {
        self.nodes.insert(event.observer);
        self.nodes.extend(&event.replicas);
        let partition = PartitionId::new(&event.topic, event.partition);
        let view = self
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionView {
                replicas: event.replicas.clone(),
                leader: None,
                epoch: 0,
                highest_term: 0,
                elected: None,
            });
        view.replicas = event.replicas.clone();
        if event.term >= view.highest_term {
            if event.term > view.highest_term {
                view.elected = None;
            }
            view.highest_term = event.term;
            if event.leader.is_some() {
                view.elected = event.leader;
            }
        }
    }

    /// A recorded call the host accepted changes the state as it did.
    fn apply(&mut self, record: &CallRecord) {
        match &record.call {
            Call::SetLeader {
                partition,
                leader,
                epoch,
            } if record.outcome == Outcome::Ok => {
                let Some((topic, index)) = partition.rsplit_once('-') else {
                    return;
                };
                let Ok(index) = index.parse() else {
                    return;
                };
                if let Some(view) = self.partitions.get_mut(&PartitionId::new(topic, index))
                    && *epoch >= view.epoch
                {
                    view.leader = Some(*leader);
                    view.epoch = *epoch;
                }
            }
            Call::Emit { sink, .. } => {
                self.sinks.insert(sink.clone());
            }
            _ => {}
        }
    }
}

/// One node's view of the reconstructed state; the plugin's calls are
/// answered (validated by the runtime against this state) and not applied.
struct ReplayView {
    node: NodeId,
    state: Arc<Mutex<State>>,
}

impl ReplayView {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Capabilities for ReplayView {
    fn local_node(&self) -> NodeId {
        self.node
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        self.lock()
            .nodes
            .iter()
            .map(|&id| NodeInfo {
                id,
                alive: true,
                rack: None,
            })
            .collect()
    }

    fn partition(&self, partition: &PartitionId) -> Option<PartitionView> {
        self.lock().partitions.get(partition).cloned()
    }

    fn assignments(&self) -> Vec<PartitionAssignment> {
        self.lock()
            .partitions
            .iter()
            .map(|(p, v)| v.assignment(p.clone()))
            .collect()
    }

    fn set_leader(&self, _: &PartitionId, _: NodeId, _: u64) -> Result<(), CapabilityError> {
        Ok(())
    }

    fn transfer_leader(&self, _: &PartitionId, _: NodeId) -> Result<(), CapabilityError> {
        Ok(())
    }

    fn has_sink(&self, sink: &str) -> bool {
        self.lock().sinks.contains(sink)
    }

    fn notify(&self, _: &str, _: &str) -> Result<(), CapabilityError> {
        Ok(())
    }
}

/// Reads trace files, skipping lines a crash cut short (counted).
pub fn read_trace(files: &[std::path::PathBuf]) -> Result<(Vec<TraceRecord>, usize), ReplayError> {
    leaderhook_hooks::trace::read_tolerant(files).map_err(ReplayError::Trace)
}

/// The active plugin with the most recorded batches.
fn default_reference(records: &[TraceRecord]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        if let TraceRecord::Batch { plugin, mode, .. } = r
            && *mode == leaderhook_hooks::Mode::Active
        {
            *counts.entry(plugin.as_str()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p.to_owned())
}

/// Replays `records` through `plugin`, comparing with the batches of
/// `against` (default: the active plugin with the most batches).
pub fn replay(
    engine: &HookEngine,
    plugin: PluginConfig,
    records: &[TraceRecord],
    against: Option<&str>,
    torn_lines: usize,
) -> Result<ReplayReport, ReplayError> {
    let reference = match against {
        Some(name) => name.to_owned(),
        None => default_reference(records).ok_or(ReplayError::Empty)?,
    };
    let recorded: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| match r {
            TraceRecord::Batch { plugin, .. } => Some(plugin.as_str()),
            TraceRecord::Event { .. } => None,
        })
        .collect();
    if !recorded.contains(reference.as_str()) {
        return Err(ReplayError::NoReference(
            reference,
            recorded.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    let state = Arc::new(Mutex::new(State::default()));
    let mut chains: BTreeMap<NodeId, PluginChain> = BTreeMap::new();
    let mut report = ReplayReport {
        reference: reference.clone(),
        batches: 0,
        events: 0,
        agreed: 0,
        differences: Vec::new(),
        differing: 0,
        failures: Vec::new(),
        torn_lines,
    };
    for record in records {
        match record {
            TraceRecord::Event { event, .. } => {
                state.lock().unwrap_or_else(|e| e.into_inner()).learn(event);
            }
            TraceRecord::Batch {
                node,
                plugin: name,
                events,
                calls,
                ..
            } => {
                {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    for e in events {
                        s.learn(e);
                    }
                }
                if *name == reference {
                    let chain = match chains.entry(*node) {
                        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            let caps: Arc<dyn Capabilities> = Arc::new(ReplayView {
                                node: *node,
                                state: state.clone(),
                            });
                            v.insert(PluginChain::load(
                                engine,
                                &caps,
                                std::slice::from_ref(&plugin),
                            )?)
                        }
                    };
                    let delivered: Vec<_> = events.iter().map(TracedEvent::event).collect();
                    let (failures, made) = chain.deliver_recorded(&delivered);
                    let made: Vec<CallRecord> =
                        made.into_iter().flat_map(|(_, calls)| calls).collect();
                    report.batches += 1;
                    report.events += events.len();
                    for (_, failure) in failures {
                        report.failures.push(format!("node {node}: {failure}"));
                    }
                    let (replayed_only, recorded_only) = compare(&made, calls);
                    if replayed_only.is_empty() && recorded_only.is_empty() {
                        report.agreed += 1;
                    } else {
                        report.differing += 1;
                        if report.differences.len() < MAX_LISTED {
                            report.differences.push(BatchDifference {
                                node: *node,
                                events: events.iter().map(describe).collect(),
                                replayed_only,
                                recorded_only,
                            });
                        }
                    }
                }
                // What the host accepted from any active plugin is the
                // state the next batches see.
                if let TraceRecord::Batch {
                    mode: leaderhook_hooks::Mode::Active,
                    ..
                } = record
                {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    for c in calls {
                        s.apply(c);
                    }
                }
            }
        }
    }
    if report.batches == 0 {
        return Err(ReplayError::Empty);
    }
    Ok(report)
}

fn describe(e: &TracedEvent) -> String {
    format!(
        "{}-{}@{} {}",
        e.topic,
        e.partition,
        e.term,
        leaderhook_hooks::shadow::transition_name(e.event().transition)
    )
}

/// The calls only one side made (as multisets of calls; outcomes shown,
/// not compared: the reconstructed state answers, not the live one).
fn compare(made: &[CallRecord], recorded: &[CallRecord]) -> (Vec<CallRecord>, Vec<CallRecord>) {
    let mut left: Vec<Option<&CallRecord>> = recorded.iter().map(Some).collect();
    let mut replayed_only = Vec::new();
    for m in made {
        match left
            .iter_mut()
            .find(|r| r.is_some_and(|r| r.call == m.call))
        {
            Some(slot) => *slot = None,
            None => replayed_only.push(m.clone()),
        }
    }
    let recorded_only = left.into_iter().flatten().cloned().collect();
    (replayed_only, recorded_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(partition: &str, leader: NodeId, epoch: u64, outcome: Outcome) -> CallRecord {
        CallRecord {
            call: Call::SetLeader {
                partition: partition.into(),
                leader,
                epoch,
            },
            outcome,
        }
    }

    #[test]
    fn calls_compare_as_multisets_ignoring_outcomes() {
        let a = set("orders-0", 1, 3, Outcome::Ok);
        let b = set("orders-0", 1, 3, Outcome::Unchanged);
        let c = set("orders-1", 2, 4, Outcome::Ok);
        let (mine, theirs) = compare(&[a.clone(), c.clone()], std::slice::from_ref(&b));
        assert_eq!(mine, vec![c.clone()]);
        assert!(theirs.is_empty());
        let (mine, theirs) = compare(std::slice::from_ref(&a), &[b.clone(), b.clone()]);
        assert!(mine.is_empty());
        assert_eq!(theirs, vec![b]);
    }

    #[test]
    fn accepted_writes_rebuild_the_assignments() {
        let mut s = State::default();
        s.learn(&TracedEvent {
            key: 1,
            topic: "my-topic".into(),
            partition: 2,
            transition: leaderhook_hooks::trace::TracedTransition::BecameLeader,
            observer: 2,
            leader: Some(2),
            previous_leader: None,
            term: 5,
            replicas: vec![1, 2, 3],
            at_ms: 0,
        });
        s.apply(&set("my-topic-2", 2, 5, Outcome::Ok));
        s.apply(&set("my-topic-2", 3, 4, Outcome::Ok)); // older: ignored
        s.apply(&set("my-topic-2", 1, 6, Outcome::StaleEpoch)); // refused: ignored
        let view = &s.partitions[&PartitionId::new("my-topic", 2)];
        assert_eq!(
            (view.leader, view.epoch, view.elected),
            (Some(2), 5, Some(2))
        );
        assert_eq!(s.nodes, BTreeSet::from([1, 2, 3]));
    }
}
