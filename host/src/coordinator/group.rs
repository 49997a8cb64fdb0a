//! One consumer group's live state on its coordinator: Kafka's classic
//! join/sync protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), with
//! session and rebalance timeouts, the initial rebalance delay,
//! `MEMBER_ID_REQUIRED` (KIP-394) and static membership (KIP-345).
//!
//! Pure: no I/O, the clock is the caller's `now`. Requests that must wait
//! (a JoinGroup until the rebalance completes, a SyncGroup until the
//! leader's assignments are stored) get a [`Reply::Later`] whose sender
//! the group keeps; dropping the group (the coordinator lost leadership)
//! drops the senders, and their requests answer NOT_COORDINATOR.
//!
//! What a coordinator that takes over needs is stored as a
//! [`Membership`] record once a rebalance completes ([`Group::sync`] asks
//! the caller to persist it and [`Group::persisted`] hands out the
//! assignments once it is committed) and once the group empties
//! ([`Group::take_unsaved`]).

use super::record::{GroupRecord, MAX_RECORD_BYTES, Membership, Protocol, StoredMember};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A group's state, as DescribeGroups and ListGroups name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// The bounds and timings a group runs with (from `[groups]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_session: Duration,
    pub max_session: Duration,
    pub initial_delay: Duration,
    pub max_members: usize,
    pub max_metadata_bytes: usize,
}

impl From<&super::GroupsConfig> for Limits {
    fn from(c: &super::GroupsConfig) -> Self {
        Self {
            min_session: Duration::from_millis(c.min_session_timeout_ms),
            max_session: Duration::from_millis(c.max_session_timeout_ms),
            initial_delay: Duration::from_millis(c.initial_rebalance_delay_ms),
            max_members: c.max_members,
            max_metadata_bytes: c.max_member_metadata_bytes,
        }
    }
}

/// An answer now, or one to wait for.
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// The JoinGroup version: from v4 an unknown member first gets its id
    /// with MEMBER_ID_REQUIRED.
    pub version: i16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinAnswer {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member with its metadata for `protocol`.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
}

impl JoinAnswer {
    fn error(e: ResponseError, member_id: &str) -> Self {
        Self {
            error: Some(e),
            generation: -1,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncAnswer {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Vec<u8>,
}

impl SyncAnswer {
    fn error(e: ResponseError) -> Self {
        Self {
            error: Some(e),
            ..Self::default()
        }
    }
}

/// What a SyncGroup needs from the caller besides waiting.
#[derive(Debug)]
pub struct SyncOutcome {
    pub reply: Reply<SyncAnswer>,
    /// The leader's assignments: store this record, then call
    /// [`Group::persisted`] with the generation.
    pub persist: Option<(i32, GroupRecord)>,
}

struct Member {
    stored: StoredMember,
    last_heard: Instant,
    /// A parked JoinGroup.
    join: Option<oneshot::Sender<JoinAnswer>>,
    /// A parked SyncGroup.
    sync: Option<oneshot::Sender<SyncAnswer>>,
}

impl Member {
    fn id(&self) -> &str {
        &self.stored.member_id
    }

    fn session(&self) -> Duration {
        Duration::from_millis(self.stored.session_timeout_ms)
    }

    fn metadata_for(&self, protocol: &str) -> Vec<u8> {
        self.stored
            .protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }
}

pub struct Group {
    id: String,
    state: State,
    protocol_type: Option<String>,
    generation: i32,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order: the first is the leader when none is left.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, valid until then.
    pending: Vec<(String, Instant)>,
    /// A rebalance completes once every member rejoined and not before
    /// `join_not_before` (the initial delay), or at `join_deadline`
    /// (the rebalance timeout) with those that did.
    join_not_before: Instant,
    join_deadline: Instant,
    started_empty: bool,
    /// The leader's assignments are being stored.
    persisting: bool,
    /// A membership change nobody waits for (the group emptied, a static
    /// member's new id) that is not stored yet.
    unsaved: bool,
}

impl Group {
    pub fn new(id: &str, now: Instant) -> Self {
        Self {
            id: id.to_string(),
            state: State::Empty,
            protocol_type: None,
            generation: 0,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: Vec::new(),
            join_not_before: now,
            join_deadline: now,
            started_empty: false,
            persisting: false,
            unsaved: false,
        }
    }

    /// A group as stored, on a coordinator taking over: stable with its
    /// members, whose sessions start now.
    pub fn load(id: &str, stored: &Membership, now: Instant) -> Self {
        let mut group = Self::new(id, now);
        group.protocol_type.clone_from(&stored.protocol_type);
        group.generation = stored.generation;
        group.protocol.clone_from(&stored.protocol);
        group.leader.clone_from(&stored.leader);
        group.members = stored
            .members
            .iter()
            .map(|m| Member {
                stored: m.clone(),
                last_heard: now,
                join: None,
                sync: None,
            })
            .collect();
        if !group.members.is_empty() {
            group.state = State::Stable;
        }
        group
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Members as DescribeGroups shows them: (stored member, metadata for
    /// the chosen protocol).
    pub fn describe_members(&self) -> Vec<(&StoredMember, Vec<u8>)> {
        self.members
            .iter()
            .map(|m| {
                let metadata = self
                    .protocol
                    .as_deref()
                    .map(|p| m.metadata_for(p))
                    .unwrap_or_default();
                (&m.stored, metadata)
            })
            .collect()
    }

    /// The membership as stored for a coordinator that takes over.
    pub fn membership(&self) -> Membership {
        Membership {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self.members.iter().map(|m| m.stored.clone()).collect(),
        }
    }

    fn record(&self) -> GroupRecord {
        GroupRecord::Membership {
            group: self.id.clone(),
            state: self.membership(),
        }
    }

    /// A membership change to store that nobody waits for.
    pub fn take_unsaved(&mut self) -> Option<GroupRecord> {
        std::mem::take(&mut self.unsaved).then(|| self.record())
    }

    /// The topics the members subscribe to, for a consumer group (its
    /// members' ConsumerProtocolSubscription); none for other kinds.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in &self.members {
            let metadata = member.metadata_for(protocol);
            let mut buf = bytes::Bytes::from(metadata);
            if buf.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([buf[0], buf[1]]);
            let _ = bytes::Buf::get_i16(&mut buf);
            let version = version.clamp(0, 3);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut buf, version) {
                topics.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        Some(topics)
    }

    fn find(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id() == member_id)
    }

    fn find_instance(&self, instance: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.stored.instance_id.as_deref() == Some(instance))
    }

    /// Whether a joining member's protocols fit the group: its type, and
    /// one protocol every other member supports.
    fn supports(&self, protocol_type: &str, protocols: &[Protocol], except: Option<&str>) -> bool {
        let others: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| Some(m.id()) != except)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|p| {
            others
                .iter()
                .all(|m| m.stored.protocols.iter().any(|q| q.name == p.name))
        })
    }

    /// The member ids of a fenced static instance's old member or of a
    /// member that does not match its instance id.
    fn fenced(&self, member_id: &str, instance: Option<&str>) -> Option<ResponseError> {
        let instance = instance?;
        match self.find_instance(instance) {
            Some(i) if self.members[i].id() != member_id => Some(ResponseError::FencedInstanceId),
            _ => None,
        }
    }

    pub fn join(&mut self, req: JoinRequest, now: Instant, limits: &Limits) -> Reply<JoinAnswer> {
        let fail = |e| Reply::Now(JoinAnswer::error(e, &req.member_id));
        if req.session_timeout < limits.min_session || req.session_timeout > limits.max_session {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let metadata_bytes: usize = req
            .protocols
            .iter()
            .map(|p| p.name.len() + p.metadata.len())
            .sum();
        if metadata_bytes > limits.max_metadata_bytes {
            return fail(ResponseError::InvalidRequest);
        }
        let known = (!req.member_id.is_empty()).then_some(req.member_id.as_str());
        if !self.supports(&req.protocol_type, &req.protocols, known) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            return self.join_unknown(req, now, limits);
        }
        if let Some(at) = self.pending.iter().position(|(id, _)| *id == req.member_id) {
            self.pending.remove(at);
            return self.add_and_park(req.member_id.clone(), req, now, limits);
        }
        if let Some(e) = self.fenced(&req.member_id, req.instance_id.as_deref()) {
            return fail(e);
        }
        let Some(i) = self.find(&req.member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        let member = &mut self.members[i];
        member.last_heard = now;
        member.stored.session_timeout_ms = req.session_timeout.as_millis() as u64;
        member.stored.rebalance_timeout_ms = req.rebalance_timeout.as_millis() as u64;
        member.stored.client_id.clone_from(&req.client_id);
        member.stored.client_host.clone_from(&req.client_host);
        let changed = member.stored.protocols != req.protocols;
        member.stored.protocols = req.protocols;
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        match self.state {
            // A member that missed its JoinGroup answer gets it again.
            State::CompletingRebalance if !changed => Reply::Now(self.answer_for(i)),
            State::Stable if !changed && !is_leader => Reply::Now(self.answer_for(i)),
            _ => self.park_join(i, now, limits),
        }
    }

    /// A JoinGroup without a member id.
    fn join_unknown(
        &mut self,
        req: JoinRequest,
        now: Instant,
        limits: &Limits,
    ) -> Reply<JoinAnswer> {
        if let Some(instance) = req.instance_id.clone()
            && let Some(i) = self.find_instance(&instance)
        {
            return self.replace_static(i, &instance, req, now, limits);
        }
        if self.members.len() + self.pending.len() >= limits.max_members {
            return Reply::Now(JoinAnswer::error(ResponseError::GroupMaxSizeReached, ""));
        }
        let prefix = req.instance_id.as_deref().unwrap_or(&req.client_id);
        let id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if req.version >= 4 && req.instance_id.is_none() {
            // KIP-394: the client rejoins with this id (it must within its
            // session timeout).
            self.pending.push((id.clone(), now + req.session_timeout));
            return Reply::Now(JoinAnswer {
                error: Some(ResponseError::MemberIdRequired),
                generation: -1,
                member_id: id,
                ..JoinAnswer::default()
            });
        }
        self.add_and_park(id, req, now, limits)
    }

    /// A static member restarted (same instance id, no member id): it takes
    /// its old place under a new id; the old id is fenced.
    fn replace_static(
        &mut self,
        i: usize,
        instance: &str,
        req: JoinRequest,
        now: Instant,
        limits: &Limits,
    ) -> Reply<JoinAnswer> {
        let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
        let member = &mut self.members[i];
        let old_id = std::mem::replace(&mut member.stored.member_id, new_id.clone());
        if let Some(tx) = member.join.take() {
            let _ = tx.send(JoinAnswer::error(ResponseError::FencedInstanceId, &old_id));
        }
        if let Some(tx) = member.sync.take() {
            let _ = tx.send(SyncAnswer::error(ResponseError::FencedInstanceId));
        }
        member.last_heard = now;
        member.stored.client_id.clone_from(&req.client_id);
        member.stored.client_host.clone_from(&req.client_host);
        member.stored.session_timeout_ms = req.session_timeout.as_millis() as u64;
        member.stored.rebalance_timeout_ms = req.rebalance_timeout.as_millis() as u64;
        let changed = member.stored.protocols != req.protocols;
        member.stored.protocols = req.protocols;
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id);
        }
        if self.state == State::Stable && !changed && !was_leader {
            // Its assignment stands: no rebalance (KIP-345).
            self.unsaved = true;
            return Reply::Now(self.answer_for(i));
        }
        self.park_join(i, now, limits)
    }

    fn add_and_park(
        &mut self,
        id: String,
        req: JoinRequest,
        now: Instant,
        limits: &Limits,
    ) -> Reply<JoinAnswer> {
        if self.members.len() >= limits.max_members {
            return Reply::Now(JoinAnswer::error(ResponseError::GroupMaxSizeReached, &id));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        self.members.push(Member {
            stored: StoredMember {
                member_id: id,
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout.as_millis() as u64,
                rebalance_timeout_ms: req.rebalance_timeout.as_millis() as u64,
                protocols: req.protocols,
                assignment: Vec::new(),
            },
            last_heard: now,
            join: None,
            sync: None,
        });
        let i = self.members.len() - 1;
        if self.state == State::PreparingRebalance && self.started_empty {
            // A new group waits a little longer for more members.
            self.join_not_before = (now + limits.initial_delay).min(self.join_deadline);
        }
        self.park_join(i, now, limits)
    }

    fn park_join(&mut self, i: usize, now: Instant, limits: &Limits) -> Reply<JoinAnswer> {
        let (tx, rx) = oneshot::channel();
        // A second JoinGroup replaces the first, which is dropped.
        self.members[i].join = Some(tx);
        self.members[i].last_heard = now;
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(now, limits);
        }
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    /// The current generation's JoinGroup answer for member `i`.
    fn answer_for(&self, i: usize) -> JoinAnswer {
        let member = &self.members[i];
        let leader = self.leader.clone().unwrap_or_default();
        let members = if member.id() == leader {
            let protocol = self.protocol.as_deref().unwrap_or_default();
            self.members
                .iter()
                .map(|m| {
                    (
                        m.id().to_string(),
                        m.stored.instance_id.clone(),
                        m.metadata_for(protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinAnswer {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader,
            member_id: member.id().to_string(),
            members,
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, limits: &Limits) {
        if self.state == State::CompletingRebalance {
            for member in &mut self.members {
                if let Some(tx) = member.sync.take() {
                    let _ = tx.send(SyncAnswer::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        self.persisting = false;
        self.started_empty = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        let rebalance = self
            .members
            .iter()
            .map(|m| Duration::from_millis(m.stored.rebalance_timeout_ms))
            .max()
            .unwrap_or_default();
        self.join_deadline = now + rebalance;
        self.join_not_before = if self.started_empty {
            now + limits.initial_delay.min(rebalance)
        } else {
            now
        };
    }

    fn try_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.pending.is_empty() && self.members.iter().all(|m| m.join.is_some());
        if (all_joined && now >= self.join_not_before) || now >= self.join_deadline {
            self.complete_join();
        }
    }

    /// Ends the join phase: members that did not rejoin leave, the next
    /// generation starts with a protocol all members support, and every
    /// waiting JoinGroup is answered (the leader with the members).
    fn complete_join(&mut self) {
        self.members.retain(|m| m.join.is_some());
        self.pending.clear();
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            self.unsaved = true;
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_deref()
            .is_none_or(|l| self.find(l).is_none())
        {
            self.leader = Some(self.members[0].id().to_string());
        }
        self.state = State::CompletingRebalance;
        for i in 0..self.members.len() {
            let answer = self.answer_for(i);
            if let Some(tx) = self.members[i].join.take() {
                let _ = tx.send(answer);
            }
        }
    }

    /// Each member votes for its most preferred protocol that every member
    /// supports; the most votes win (ties: by name).
    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&str> = self.members[0]
            .stored
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| {
                self.members
                    .iter()
                    .all(|m| m.stored.protocols.iter().any(|p| p.name == *name))
            })
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in &self.members {
            if let Some(choice) = member
                .stored
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
            {
                *votes.entry(choice.name.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(name, _)| name.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        instance: Option<&str>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) -> SyncOutcome {
        let fail = |e| SyncOutcome {
            reply: Reply::Now(SyncAnswer::error(e)),
            persist: None,
        };
        if let Some(e) = self.fenced(member_id, instance) {
            return fail(e);
        }
        let Some(i) = self.find(member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        self.members[i].last_heard = now;
        match self.state {
            State::Empty => fail(ResponseError::UnknownMemberId),
            State::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            State::Stable => SyncOutcome {
                reply: Reply::Now(self.sync_answer(i)),
                persist: None,
            },
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                self.members[i].sync = Some(tx);
                let mut persist = None;
                if self.leader.as_deref() == Some(member_id) && !self.persisting {
                    let mut assignments: BTreeMap<String, Vec<u8>> =
                        assignments.into_iter().collect();
                    for member in &mut self.members {
                        member.stored.assignment =
                            assignments.remove(member.id()).unwrap_or_default();
                    }
                    let record = self.record();
                    if record.encode().len() > MAX_RECORD_BYTES {
                        tracing::warn!(
                            group = %self.id,
                            "the group's membership does not fit one record ({MAX_RECORD_BYTES} bytes)"
                        );
                        for member in &mut self.members {
                            if let Some(tx) = member.sync.take() {
                                let _ =
                                    tx.send(SyncAnswer::error(ResponseError::UnknownServerError));
                            }
                        }
                    } else {
                        self.persisting = true;
                        persist = Some((self.generation, record));
                    }
                }
                SyncOutcome {
                    reply: Reply::Later(rx),
                    persist,
                }
            }
        }
    }

    fn sync_answer(&self, i: usize) -> SyncAnswer {
        SyncAnswer {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self.members[i].stored.assignment.clone(),
        }
    }

    /// The leader's assignments of `generation` are stored (`ok`) or could
    /// not be: hand them out, or fail the waiting SyncGroups.
    pub fn persisted(&mut self, generation: i32, ok: bool, now: Instant, limits: &Limits) {
        if self.state != State::CompletingRebalance
            || self.generation != generation
            || !self.persisting
        {
            return; // a newer rebalance took over
        }
        self.persisting = false;
        if !ok {
            for member in &mut self.members {
                if let Some(tx) = member.sync.take() {
                    let _ = tx.send(SyncAnswer::error(ResponseError::NotCoordinator));
                }
            }
            self.prepare_rebalance(now, limits);
            return;
        }
        self.state = State::Stable;
        for i in 0..self.members.len() {
            let answer = self.sync_answer(i);
            if let Some(tx) = self.members[i].sync.take() {
                let _ = tx.send(answer);
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        instance: Option<&str>,
        now: Instant,
    ) -> Option<ResponseError> {
        if let Some(e) = self.fenced(member_id, instance) {
            return Some(e);
        }
        let Some(i) = self.find(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        self.members[i].last_heard = now;
        match self.state {
            State::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            State::Empty => Some(ResponseError::UnknownMemberId),
            State::CompletingRebalance | State::Stable => None,
        }
    }

    /// LeaveGroup of `(member id, instance id)`s: one answer each.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: Instant,
        limits: &Limits,
    ) -> Vec<Option<ResponseError>> {
        leaving
            .iter()
            .map(|(member_id, instance)| {
                let found = match instance {
                    Some(instance) => match self.find_instance(instance) {
                        None => return Some(ResponseError::UnknownMemberId),
                        Some(i) if !member_id.is_empty() && self.members[i].id() != member_id => {
                            return Some(ResponseError::FencedInstanceId);
                        }
                        Some(i) => i,
                    },
                    None => {
                        if let Some(at) = self.pending.iter().position(|(id, _)| id == member_id) {
                            self.pending.remove(at);
                            self.try_complete_join(now);
                            return None;
                        }
                        match self.find(member_id) {
                            Some(i) => i,
                            None => return Some(ResponseError::UnknownMemberId),
                        }
                    }
                };
                self.remove_member(found, now, limits);
                None
            })
            .collect()
    }

    fn remove_member(&mut self, i: usize, now: Instant, limits: &Limits) {
        // Its parked requests are dropped: the client gave up on them.
        self.members.remove(i);
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(now, limits),
            State::PreparingRebalance | State::Empty => {}
        }
        self.try_complete_join(now);
    }

    /// Time passes: members whose session expired leave (unless a request
    /// of theirs is parked), unused member ids lapse, a rebalance whose
    /// time is up completes.
    pub fn tick(&mut self, now: Instant, limits: &Limits) {
        let before = self.pending.len();
        self.pending.retain(|(_, until)| *until > now);
        let mut changed = self.pending.len() != before;
        while let Some(i) = self
            .members
            .iter()
            .position(|m| m.join.is_none() && m.sync.is_none() && now >= m.last_heard + m.session())
        {
            tracing::info!(group = %self.id, member = %self.members[i].id(), "session expired");
            self.remove_member(i, now, limits);
            changed = true;
        }
        if changed || self.state == State::PreparingRebalance {
            self.try_complete_join(now);
        }
    }

    /// Whether `member_id` of `generation` may commit offsets now (an
    /// OffsetCommit also counts as a sign of life). Generation -1 with no
    /// member id is a client outside the group protocol: allowed while the
    /// group has no members.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        generation: i32,
        instance: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        }
        if let Some(e) = self.fenced(member_id, instance) {
            return Err(e);
        }
        let Some(i) = self.find(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.state == State::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        self.members[i].last_heard = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
