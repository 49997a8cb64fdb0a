//! The node's coordinator: every group whose offsets partition this node
//! leads. A request is routed to its group's offsets partition; only the
//! Raft leader of that partition that serves (an entry of its own term
//! committed, so every earlier record is applied) coordinates it. Live
//! groups belong to the Raft term they were loaded in: on a new term they
//! are loaded again from the applied records ([`GroupStore`]), so nothing
//! a deposed coordinator held in memory survives.
//!
//! Records are proposed to the partition's Raft group and answered once
//! applied on this node; a proposal that fails because leadership moved
//! answers NOT_COORDINATOR (clients look the coordinator up again), any
//! other failure COORDINATOR_NOT_AVAILABLE (retriable), as Kafka maps its
//! own log append errors.

use super::group::{Group, JoinAnswer, JoinRequest, Limits, Reply, State, SyncAnswer};
use super::record::{CommittedOffset, GroupRecord, StoredMember};
use super::store::{GroupStore, StoredGroup};
use super::{GroupsConfig, OFFSETS_TOPIC, partition_for};
use crate::metadata::topic::{TopicLimits, place};
use crate::metadata::{Applied, Command, TopicConfigs, TopicId};
use crate::raft::handle::{AppendError, RaftCommand, RaftError, RaftHandle};
use crate::raft::shared::{Role, Shared};
use kafka_protocol::ResponseError;
use leaderhook_hooks::NodeId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often sessions, rebalance deadlines and leadership are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// How long a proposal may take before the request answers
/// COORDINATOR_NOT_AVAILABLE.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Offsets-topic creation is retried at most this often per node.
const CREATE_RETRY: Duration = Duration::from_secs(2);

/// Where a group is coordinated: its offsets partition's Raft group, led
/// by this node at `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub raft_group: u64,
    pub term: u64,
}

struct Live {
    route: Route,
    group: Group,
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct Described {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member, its metadata for the chosen protocol).
    pub members: Vec<(StoredMember, Vec<u8>)>,
}

pub struct Coordinator {
    node: NodeId,
    config: GroupsConfig,
    limits: Limits,
    shared: Arc<Shared>,
    raft: RaftHandle,
    live: Mutex<HashMap<String, Live>>,
    creating: Mutex<Option<Instant>>,
}

impl Coordinator {
    pub fn new(node: NodeId, config: GroupsConfig, shared: Arc<Shared>, raft: RaftHandle) -> Self {
        Self {
            node,
            limits: Limits::from(&config),
            config,
            shared,
            raft,
            live: Mutex::default(),
            creating: Mutex::default(),
        }
    }

    pub fn config(&self) -> &GroupsConfig {
        &self.config
    }

    /// Runs the timers (sessions, rebalance deadlines, lost leadership)
    /// until the runtime ends.
    pub fn start_timers(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(this) = this.upgrade() else { return };
                this.tick(Instant::now());
            }
        });
    }

    /// One timer round.
    pub fn tick(&self, now: Instant) {
        let mut unsaved = Vec::new();
        {
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.retain(|id, entry| {
                if self.leads(entry.route.raft_group) != Ok(entry.route) {
                    // Deposed: its parked requests answer NOT_COORDINATOR.
                    return false;
                }
                entry.group.tick(now, &self.limits);
                if let Some(record) = entry.group.take_unsaved() {
                    unsaved.push((entry.route, record));
                }
                // An empty group never stored holds nothing worth keeping.
                entry.group.state() != State::Empty
                    || self.stored(entry.route.raft_group, id).is_some()
                    || unsaved.last().is_some_and(|(_, r)| r.group() == id)
            });
        }
        for (route, record) in unsaved {
            self.save(route, record);
        }
    }

    /// The offsets partition of `group_id`: (partition index, Raft group),
    /// if the offsets topic exists.
    fn offsets_partition(&self, group_id: &str) -> Option<(u32, crate::metadata::PartitionMeta)> {
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let topic = metadata.topic_by_name(OFFSETS_TOPIC)?;
        let index = partition_for(group_id, topic.partitions.len() as u32);
        let meta = topic.partitions.get(index as usize)?.clone();
        Some((index, meta))
    }

    /// Whether this node coordinates the groups of `raft_group` now.
    fn leads(&self, raft_group: u64) -> Result<Route, ResponseError> {
        let replicas = self
            .shared
            .replicas
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match replicas.get(&raft_group) {
            Some(r) if r.role == Role::Leader && r.leader == Some(self.node) && r.serving => {
                Ok(Route {
                    raft_group,
                    term: r.term,
                })
            }
            // Leading, but records of earlier terms may not be applied yet.
            Some(r) if r.role == Role::Leader => Err(ResponseError::CoordinatorLoadInProgress),
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// Where `group_id` is coordinated, if here.
    pub fn route(&self, group_id: &str) -> Result<Route, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let Some((_, meta)) = self.offsets_partition(group_id) else {
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        self.leads(meta.group)
    }

    /// The node FindCoordinator names for a group: its offsets partition's
    /// assigned leader (the hooks keep it Raft's), while alive with a
    /// quorum of replicas. Creates the offsets topic on first use.
    pub fn find(&self, group_id: &str) -> Result<NodeId, ResponseError> {
        let Some((_, meta)) = self.offsets_partition(group_id) else {
            self.create_offsets_topic();
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        let live = self.shared.live_nodes();
        let alive = meta.replicas.iter().filter(|r| live.contains(r)).count();
        match meta.leader {
            Some(leader) if live.contains(&leader) && alive * 2 > meta.replicas.len() => Ok(leader),
            _ => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Proposes the offsets topic (once at a time per node; a creation
    /// that lost a race to another node's is refused as existing).
    fn create_offsets_topic(&self) {
        {
            let mut creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
            if creating.is_some_and(|at| at.elapsed() < CREATE_RETRY) {
                return;
            }
            *creating = Some(Instant::now());
        }
        let cluster = self
            .shared
            .liveness
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .nodes
            .len();
        let replication = (self.config.offsets_topic_replication as usize).min(cluster);
        let live: Vec<NodeId> = self.shared.live_nodes().into_iter().collect();
        if live.len() < replication {
            tracing::warn!(
                "the offsets topic needs {replication} live nodes, {} are alive: not created yet",
                live.len()
            );
            return;
        }
        let limits = TopicLimits {
            max_partitions_per_topic: u32::MAX,
            max_partitions_per_request: u32::MAX,
        };
        let replicas = match place(
            &live,
            self.config.offsets_topic_partitions,
            replication,
            &limits,
        ) {
            Ok(replicas) => replicas,
            Err(e) => {
                tracing::error!("cannot place the offsets topic: {e}");
                return;
            }
        };
        let command = Command::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            topic_id: TopicId::random(),
            replicas,
            configs: TopicConfigs::new(),
        };
        let raft = self.raft.clone();
        tokio::spawn(async move {
            match raft.propose(command, PROPOSE_TIMEOUT).await {
                Ok(Applied::TopicCreated { .. }) => {
                    tracing::info!("offsets topic {OFFSETS_TOPIC} created");
                }
                Ok(other) => tracing::debug!("offsets topic creation: {other:?}"),
                Err(e) => tracing::warn!("offsets topic creation: {e}"),
            }
        });
    }

    fn stored(&self, raft_group: u64, group_id: &str) -> Option<StoredGroup> {
        self.shared
            .coordinators
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&raft_group)
            .and_then(|store| store.group(group_id))
            .cloned()
    }

    /// Runs `f` on the live group, loading it from the applied records if
    /// it is not live in this term; a group that is nowhere is created
    /// only if `create` (and the partition has room for one more).
    fn with_group<R>(
        &self,
        group_id: &str,
        route: Route,
        create: bool,
        f: impl FnOnce(&mut Group) -> R,
    ) -> Result<Option<R>, ResponseError> {
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live.get(group_id).is_none_or(|e| e.route != route) {
            let loaded = match self.stored(route.raft_group, group_id) {
                Some(stored) => Group::load(group_id, &stored.membership, now),
                None if !create => {
                    live.remove(group_id);
                    return Ok(None);
                }
                None => {
                    let in_partition = live
                        .values()
                        .filter(|e| e.route.raft_group == route.raft_group)
                        .count()
                        + self.store_len(route.raft_group);
                    if in_partition >= self.config.max_groups {
                        return Err(ResponseError::PolicyViolation);
                    }
                    Group::new(group_id, now)
                }
            };
            live.insert(
                group_id.to_string(),
                Live {
                    route,
                    group: loaded,
                },
            );
        }
        let entry = live.get_mut(group_id).expect("inserted above");
        let result = f(&mut entry.group);
        let unsaved = entry.group.take_unsaved();
        drop(live);
        if let Some(record) = unsaved {
            self.save(route, record);
        }
        Ok(Some(result))
    }

    fn store_len(&self, raft_group: u64) -> usize {
        self.shared
            .coordinators
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&raft_group)
            .map_or(0, GroupStore::len)
    }

    /// Proposes a record nobody waits for (failures are logged: the
    /// group's members notice through their next requests).
    fn save(&self, route: Route, record: GroupRecord) {
        let raft = self.raft.clone();
        tokio::spawn(async move {
            if let Err(e) = propose(&raft, route, &record).await {
                tracing::info!(group = record.group(), "group record not stored: {e:?}");
            }
        });
    }

    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinAnswer {
        let member_id = request.member_id.clone();
        let wait = request.rebalance_timeout + Duration::from_secs(5);
        let route = match self.route(group_id) {
            Ok(route) => route,
            Err(e) => return JoinAnswer::failed(e, &member_id),
        };
        let reply = self.with_group(group_id, route, true, |g| {
            g.join(request, Instant::now(), &self.limits)
        });
        match reply {
            Err(e) => JoinAnswer::failed(e, &member_id),
            Ok(None) => JoinAnswer::failed(ResponseError::UnknownServerError, &member_id),
            Ok(Some(Reply::Now(answer))) => answer,
            Ok(Some(Reply::Later(rx))) => match tokio::time::timeout(wait, rx).await {
                Ok(Ok(answer)) => answer,
                _ => JoinAnswer::failed(self.why_dropped(group_id), &member_id),
            },
        }
    }

    /// Why a parked request was dropped: the coordinator moved, or the
    /// member left the group (or sent the request again).
    fn why_dropped(&self, group_id: &str) -> ResponseError {
        match self.route(group_id) {
            Err(e) => e,
            Ok(_) => ResponseError::UnknownMemberId,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance: Option<&str>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> SyncAnswer {
        let failed = |e| SyncAnswer {
            error: Some(e),
            ..SyncAnswer::default()
        };
        let route = match self.route(group_id) {
            Ok(route) => route,
            Err(e) => return failed(e),
        };
        let outcome = self.with_group(group_id, route, false, |g| {
            g.sync(
                member_id,
                generation,
                instance,
                protocol_type,
                protocol,
                assignments,
                Instant::now(),
            )
        });
        let outcome = match outcome {
            Err(e) => return failed(e),
            Ok(None) => return failed(ResponseError::UnknownMemberId),
            Ok(Some(outcome)) => outcome,
        };
        if let Some((generation, record)) = outcome.persist {
            let this = self.clone();
            let group_id = group_id.to_string();
            tokio::spawn(async move {
                let ok = propose(&this.raft, route, &record).await.is_ok();
                let _ = this.with_group(&group_id, route, false, |g| {
                    g.persisted(generation, ok, Instant::now(), &this.limits);
                });
            });
        }
        match outcome.reply {
            Reply::Now(answer) => answer,
            Reply::Later(rx) => match tokio::time::timeout(PROPOSE_TIMEOUT * 2, rx).await {
                Ok(Ok(answer)) => answer,
                _ => failed(self.why_dropped(group_id)),
            },
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance: Option<&str>,
    ) -> Option<ResponseError> {
        let route = match self.route(group_id) {
            Ok(route) => route,
            Err(e) => return Some(e),
        };
        match self.with_group(group_id, route, false, |g| {
            g.heartbeat(member_id, generation, instance, Instant::now())
        }) {
            Err(e) => Some(e),
            Ok(None) => Some(ResponseError::UnknownMemberId),
            Ok(Some(answer)) => answer,
        }
    }

    pub fn leave(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let route = self.route(group_id)?;
        match self.with_group(group_id, route, false, |g| {
            g.leave(leaving, Instant::now(), &self.limits)
        })? {
            Some(answers) => Ok(answers),
            None => Ok(vec![Some(ResponseError::UnknownMemberId); leaving.len()]),
        }
    }

    /// Commits offsets for a member of `generation` (or, with generation
    /// -1 and no member id, for a client outside the group protocol while
    /// the group has no members), answered once stored.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        instance: Option<&str>,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), ResponseError> {
        let route = self.route(group_id)?;
        let create = generation < 0 && member_id.is_empty();
        match self.with_group(group_id, route, create, |g| {
            g.check_commit(member_id, generation, instance, Instant::now())
        })? {
            None => return Err(ResponseError::UnknownMemberId),
            Some(checked) => checked?,
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let record = GroupRecord::Offsets {
            group: group_id.to_string(),
            offsets,
        };
        propose(&self.raft, route, &record).await
    }

    /// A group's committed offsets, from the applied records.
    pub fn offsets(
        &self,
        group_id: &str,
    ) -> Result<BTreeMap<(String, i32), CommittedOffset>, ResponseError> {
        let route = self.route(group_id)?;
        Ok(self
            .stored(route.raft_group, group_id)
            .map(|g| g.offsets)
            .unwrap_or_default())
    }

    /// Every group this node coordinates: (id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let served: Vec<Route> = {
            let replicas = self
                .shared
                .replicas
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let coordinators = self
                .shared
                .coordinators
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            coordinators
                .keys()
                .filter_map(|g| replicas.get(g).map(|_| *g))
                .filter_map(|g| self.leads(g).ok())
                .collect()
        };
        let mut out = BTreeMap::new();
        {
            let coordinators = self
                .shared
                .coordinators
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for route in &served {
                let Some(store) = coordinators.get(&route.raft_group) else {
                    continue;
                };
                for (id, stored) in store.groups() {
                    let state = if stored.membership.members.is_empty() {
                        State::Empty
                    } else {
                        State::Stable
                    };
                    out.insert(
                        id.clone(),
                        (
                            stored.membership.protocol_type.clone().unwrap_or_default(),
                            state.name(),
                        ),
                    );
                }
            }
        }
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, entry) in live.iter() {
            if served.contains(&entry.route) {
                out.insert(
                    id.clone(),
                    (
                        entry.group.protocol_type().unwrap_or_default().to_string(),
                        entry.group.state().name(),
                    ),
                );
            }
        }
        out.into_iter()
            .map(|(id, (protocol_type, state))| (id, protocol_type, state))
            .collect()
    }

    /// DescribeGroups of one group; a group that does not exist is "Dead",
    /// as Kafka answers it.
    pub fn describe(&self, group_id: &str) -> Result<Described, ResponseError> {
        let route = self.route(group_id)?;
        let described = self.with_group(group_id, route, false, |g| Described {
            state: g.state().name(),
            protocol_type: g.protocol_type().unwrap_or_default().to_string(),
            protocol: g.protocol().unwrap_or_default().to_string(),
            members: g
                .describe_members()
                .into_iter()
                .map(|(m, metadata)| (m.clone(), metadata))
                .collect(),
        })?;
        Ok(described.unwrap_or(Described {
            state: "Dead",
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }))
    }

    /// DeleteGroups of one group: only an empty one.
    pub async fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        let route = self.route(group_id)?;
        match self.with_group(group_id, route, false, |g| g.state())? {
            None => return Err(ResponseError::GroupIdNotFound),
            Some(State::Empty) => {}
            Some(_) => return Err(ResponseError::NonEmptyGroup),
        }
        let record = GroupRecord::DeleteGroup {
            group: group_id.to_string(),
        };
        propose(&self.raft, route, &record).await?;
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live
            .get(group_id)
            .is_some_and(|e| e.route == route && e.group.state() == State::Empty)
        {
            live.remove(group_id);
        }
        Ok(())
    }

    /// OffsetDelete: the offsets of partitions the group does not
    /// subscribe to (all of them while it is empty); per partition, the
    /// error if one is subscribed.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<((String, i32), Option<ResponseError>)>, ResponseError> {
        let route = self.route(group_id)?;
        let subscribed = match self.with_group(group_id, route, false, |g| {
            (g.state() != State::Empty)
                .then(|| g.subscribed_topics())
                .flatten()
        })? {
            None => return Err(ResponseError::GroupIdNotFound),
            Some(subscribed) => subscribed.unwrap_or_default(),
        };
        let answers: Vec<_> = partitions
            .into_iter()
            .map(|p| {
                let error = subscribed
                    .contains(&p.0)
                    .then_some(ResponseError::GroupSubscribedToTopic);
                (p, error)
            })
            .collect();
        let deletable: Vec<(String, i32)> = answers
            .iter()
            .filter(|(_, e)| e.is_none())
            .map(|(p, _)| p.clone())
            .collect();
        if !deletable.is_empty() {
            let record = GroupRecord::DeleteOffsets {
                group: group_id.to_string(),
                partitions: deletable,
            };
            propose(&self.raft, route, &record).await?;
        }
        Ok(answers)
    }
}

impl JoinAnswer {
    pub fn failed(e: ResponseError, member_id: &str) -> Self {
        Self {
            error: Some(e),
            generation: -1,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }
}

/// Appends a record to the offsets partition's Raft group and waits until
/// it is applied here.
async fn propose(
    raft: &RaftHandle,
    route: Route,
    record: &GroupRecord,
) -> Result<(), ResponseError> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    raft.send(RaftCommand::AppendGroupRecord {
        group: route.raft_group,
        record: record.encode(),
        term: route.term,
        reply,
    })
    .map_err(|e| match e {
        RaftError::Stopped | RaftError::Busy | RaftError::Dropped | RaftError::TimedOut(_) => {
            ResponseError::CoordinatorNotAvailable
        }
    })?;
    match tokio::time::timeout(PROPOSE_TIMEOUT, rx).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(AppendError::NotLeader(_) | AppendError::UnknownGroup))) => {
            Err(ResponseError::NotCoordinator)
        }
        Ok(Ok(Err(_))) | Ok(Err(_)) | Err(_) => Err(ResponseError::CoordinatorNotAvailable),
    }
}
