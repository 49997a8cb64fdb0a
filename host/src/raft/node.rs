//! The Raft loop of one node: every Raft group it hosts (the metadata group
//! and one group per local partition replica) on one dedicated thread.
//!
//! Each round: step incoming messages, run queued commands, tick when due,
//! then handle the Ready of every group in raft-rs's order, with the log
//! writes of all groups persisted in one synced batch. Partition groups
//! apply Kafka record batches (`partition_log`); the metadata group applies
//! [`Command`]s. Leadership changes become events for the hook runtime,
//! which never blocks this thread.
//!
//! Nothing here waits on a disk per group or on anyone else: group creation
//! and removal write unsynced (the round's synced write makes them durable),
//! and a stalled round does not fire the missed ticks in a burst.

use crate::caps::inflight::{InflightWrites, LeaderWrite};
use crate::metadata::{Applied, Command, METADATA_GROUP, TopicPartition};
use crate::partition_log::entry::Control;
use crate::partition_log::{Applied as PartitionApplied, PartitionLog};
use crate::raft::appends::{Decision, Pending};
use crate::raft::handle::{AppendError, CommandQueue, RaftCommand, RaftError, WAKE_GROUP, Waiter};
use crate::raft::shared::{LogStatus, ReplicaStatus, Role, Shared};
use crate::raft::storage::{LogStore, WriteBatch};
use crate::raft::transport::{self, Envelope, Transport};
use leaderhook_hooks::{HookRuntime, LeadershipEvent, NodeId, PartitionKey, Transition};
use raft::prelude::{Entry, EntryType, Message, MessageType};
use raft::{RawNode, StateRole};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

/// After a peer's connection drops, how long the first surviving voter of
/// each group it led waits before campaigning (so the other survivors have
/// seen the drop too and will grant the pre-vote), and how much later each
/// next voter in id order tries if there is still no leader.
const FAST_CAMPAIGN_DELAY: Duration = Duration::from_millis(10);
const FAST_CAMPAIGN_STAGGER: Duration = Duration::from_millis(60);

/// Group id of the node-to-node liveness messages: never a Raft group
/// (groups count up from 2).
pub const LIVENESS_GROUP: u64 = u64::MAX;

/// Messages for a group this node has not created yet (its topic's creation
/// is not applied here yet) are held, so the new group's first election is
/// not lost: at most this many per group, this many bytes in all, this long.
const EARLY_PER_GROUP: usize = 64;
const EARLY_BYTES: usize = 8 << 20;
const EARLY_AGE: Duration = Duration::from_secs(5);

/// Uncommitted bytes a group's leader accepts before dropping proposals
/// (raft-rs `max_uncommitted_size`): bounds memory while followers lag.
const MAX_UNCOMMITTED: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How often leaders re-deliver leadership that the stored assignment
    /// does not show yet.
    pub resync: Duration,
    /// A silent node counts as dead after this long (Metadata leaves it out).
    pub session_timeout: Duration,
    /// When the metadata group and each offsets partition snapshot their
    /// state and compact their logs.
    pub snapshots: SnapshotPolicy,
    /// Partition checkpoints, retention defaults, producer expiry.
    pub storage: StoragePolicy,
}

/// How partitions keep their logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoragePolicy {
    /// A partition checkpoints its state after this many bytes or entries
    /// applied since its last checkpoint: a restart replays at most that.
    pub checkpoint_every_bytes: u64,
    pub checkpoint_every_entries: u64,
    /// Retention when a topic sets none (`retention.ms`, `retention.bytes`):
    /// `None` keeps everything.
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    /// Idempotent producers not seen for this long are forgotten.
    pub producer_expiry_ms: u64,
}

impl Default for StoragePolicy {
    fn default() -> Self {
        Self {
            checkpoint_every_bytes: 32 << 20,
            checkpoint_every_entries: 20_000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            producer_expiry_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// When a group snapshots its state machine and compacts its Raft log: after
/// `every_entries` entries or `every_bytes` bytes applied since the last
/// snapshot, keeping the last `keep_entries` entries for followers that are
/// only a little behind (further behind, they get the snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub every_entries: u64,
    pub every_bytes: u64,
    pub keep_entries: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            every_entries: 10_000,
            every_bytes: 64 << 20,
            keep_entries: 1_000,
        }
    }
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 3,
            resync: Duration::from_secs(2),
            session_timeout: Duration::from_secs(9),
            snapshots: SnapshotPolicy::default(),
            storage: StoragePolicy::default(),
        }
    }
}

impl RaftSettings {
    pub fn election_timeout(&self) -> Duration {
        self.tick * self.election_ticks as u32
    }
}

/// Role, leader and term a replica last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: u64,
}

/// The leadership event a change from `old` to `new` is, if any: the pure
/// rule behind every event a replica emits.
pub fn transition(old: Seen, new: Seen) -> Option<Transition> {
    let (was_leader, is_leader) = (old.role == Role::Leader, new.role == Role::Leader);
    if is_leader && !was_leader {
        Some(Transition::BecameLeader)
    } else if was_leader && !is_leader {
        Some(Transition::SteppedDown)
    } else if !is_leader && new.leader != old.leader {
        Some(match new.leader {
            None => Transition::LeaderLost,
            Some(_) => Transition::LeaderObserved,
        })
    } else {
        None
    }
}

struct Group {
    raw: RawNode<crate::raft::storage::GroupStorage>,
    /// A serving partition leader's decided, proposed, unapplied appends.
    pending: Option<Pending>,
    /// An offsets partition leader's group records waiting for their
    /// apply, by proposal id.
    group_records: HashMap<u64, crate::raft::handle::AppendReply>,
    /// Where the partition's last checkpoint was: (applied index, bytes).
    checkpointed: (u64, u64),
    /// What was last reported, to emit events on change.
    seen: Seen,
    serving: bool,
    /// The commit index at the previous ISR check: a follower that has not
    /// reached it since is out of sync.
    isr_mark: u64,
    /// While leading: when each peer was last heard from in this group.
    heard: HashMap<NodeId, Instant>,
    /// While leading: since when each peer has waited for a snapshot.
    snapshot_waits: HashMap<NodeId, Instant>,
    /// An offsets partition: applied since its last snapshot.
    since_snapshot: SinceSnapshot,
}

impl Group {
    fn leader(&self) -> Option<NodeId> {
        let leader = self.raw.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }
}

/// Everything the loop reads and writes outside its own memory.
pub struct RaftIo {
    pub store: LogStore,
    pub transport: Transport,
    pub inbox: Receiver<Envelope>,
    pub commands: CommandQueue,
}

/// What a Raft loop is made of (one struct, so wiring reads by name).
pub struct RaftLoopParts {
    pub node: NodeId,
    pub cluster: Vec<NodeId>,
    pub settings: RaftSettings,
    pub io: RaftIo,
    pub hooks: Arc<HookRuntime>,
    pub shared: Arc<Shared>,
    pub inflight: Arc<InflightWrites>,
    pub stop: Arc<AtomicBool>,
}

/// Why the loop ended other than by being asked to stop.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("raft log write failed: {0:#}")]
    LogWrite(anyhow::Error),
    #[error("the inbox closed")]
    InboxClosed,
    #[error("metadata log entry {index}: {source}")]
    Undecodable {
        index: u64,
        source: crate::metadata::DecodeError,
    },
    #[error("metadata snapshot at {index}: {source}")]
    UndecodableSnapshot {
        index: u64,
        source: crate::metadata::DecodeError,
    },
    #[error("cannot save a metadata snapshot: {0:#}")]
    Snapshot(anyhow::Error),
    #[error("partition group {group}: {source}")]
    Partition {
        group: u64,
        source: crate::partition_log::ApplyError,
    },
    #[error("partition group {group}: cannot save its state: {source:#}")]
    PartitionState { group: u64, source: anyhow::Error },
    #[error("offsets partition group {group}: snapshot at {index}: {source}")]
    UndecodableGroupSnapshot {
        group: u64,
        index: u64,
        source: crate::coordinator::record::DecodeError,
    },
}

/// Applied since a group's last snapshot (the metadata group's, an offsets
/// partition's).
#[derive(Debug, Default)]
struct SinceSnapshot {
    entries: u64,
    bytes: u64,
}

pub struct RaftLoop {
    node: NodeId,
    cluster: Vec<NodeId>,
    settings: RaftSettings,
    io: RaftIo,
    hooks: Arc<HookRuntime>,
    shared: Arc<Shared>,
    inflight: Arc<InflightWrites>,
    groups: BTreeMap<u64, Group>,
    /// Metadata proposals made here, by proposal id, waiting for their apply.
    pending: HashMap<u64, Waiter>,
    /// (when, group, lost leader): campaigns scheduled by `peer_lost`.
    campaigns: Vec<(Instant, u64, NodeId)>,
    next_proposal: u64,
    /// Random per start: proposal ids of an earlier life never match.
    boot: u64,
    /// When each peer was last heard from (published each tick).
    heard: HashMap<NodeId, Instant>,
    early: EarlyMessages,
    /// The metadata commit index known at start: until it is applied, the
    /// metadata is a replay in progress (no campaigns for "new" groups, no
    /// sweep of groups on disk).
    replay_until: u64,
    replayed: bool,
    since_snapshot: SinceSnapshot,
    /// Retention decided (applied this round): (group, Raft index, new log
    /// start offset), compacted after the round.
    compactions: Vec<(u64, u64, i64)>,
    /// Offsets partitions whose applied entries reached the snapshot
    /// policy this round (so no round scans every group for them).
    offsets_snapshots_due: std::collections::BTreeSet<u64>,
    /// The first error that ends the loop.
    failed: Option<LoopError>,
    logger: slog::Logger,
    stop: Arc<AtomicBool>,
}

impl RaftLoop {
    pub fn new(parts: RaftLoopParts) -> anyhow::Result<Self> {
        let logger = crate::raft::log_bridge::logger();
        let RaftLoopParts {
            node,
            cluster,
            settings,
            io,
            hooks,
            shared,
            inflight,
            stop,
        } = parts;
        let metadata_storage = io.store.group(METADATA_GROUP);
        let replay_until = metadata_storage.hard_state().commit;
        // Start from the latest snapshot: only the log after it replays.
        let mut applied = 0;
        if let Some(snapshot) = metadata_storage.stored_snapshot() {
            let index = snapshot.get_metadata().index;
            let restored = crate::metadata::Metadata::decode_snapshot(&snapshot.data)
                .map_err(|source| LoopError::UndecodableSnapshot { index, source })?;
            *shared
                .metadata
                .write()
                .unwrap_or_else(PoisonError::into_inner) = restored;
            tracing::info!(
                index,
                "metadata restored from its snapshot; replaying the log after it"
            );
            applied = index;
        }
        let mut this = Self {
            node,
            cluster,
            settings,
            io,
            hooks,
            shared,
            inflight,
            groups: BTreeMap::new(),
            pending: HashMap::new(),
            campaigns: Vec::new(),
            next_proposal: 1,
            boot: uuid::Uuid::new_v4().as_u64_pair().0,
            heard: HashMap::new(),
            early: EarlyMessages::default(),
            replay_until,
            replayed: applied >= replay_until,
            since_snapshot: SinceSnapshot::default(),
            compactions: Vec::new(),
            offsets_snapshots_due: Default::default(),
            failed: None,
            logger,
            stop,
        };
        let voters = this.cluster.clone();
        this.open_group(METADATA_GROUP, &voters, applied)?;
        this.reconcile_groups();
        if this.replayed {
            this.sweep_orphan_groups();
        }
        Ok(this)
    }

    /// Opens the local replicas of every partition the metadata places here
    /// and closes those of partitions it no longer has: after a snapshot
    /// replaced the metadata (at start, or received from the leader).
    fn reconcile_groups(&mut self) {
        let wanted: BTreeMap<u64, Vec<NodeId>> = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .partitions()
            .filter(|(_, p)| p.replicas.contains(&self.node))
            .map(|(_, p)| (p.group, p.replicas.clone()))
            .collect();
        let stale: Vec<u64> = self
            .groups
            .keys()
            .copied()
            .filter(|g| *g != METADATA_GROUP && !wanted.contains_key(g))
            .collect();
        for group in stale {
            self.close_group(group);
        }
        for (group, replicas) in wanted {
            if let Err(e) = self.open_group(group, &replicas, 0) {
                tracing::error!(group, "cannot open partition group: {e:#}");
            }
        }
    }

    /// Opens (creating if new) the local replica of a group whose state
    /// machine holds everything up to `applied`. Returns true if the group
    /// is new here.
    fn open_group(&mut self, id: u64, voters: &[NodeId], applied: u64) -> anyhow::Result<bool> {
        if self.groups.contains_key(&id) {
            return Ok(false);
        }
        let storage = self.io.store.group(id);
        let fresh = storage.initialize(voters)?;
        let mut applied = applied;
        if id != METADATA_GROUP && self.is_offsets_partition(id) {
            // An offsets partition resumes from its latest snapshot (saved
            // or received): its groups as of there, then the log after it.
            // Its snapshots are group stores, never partition checkpoints.
            applied = self.offsets_partition_start(id, &storage)?;
            self.shared
                .logs
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, PartitionLog::default());
        } else if id != METADATA_GROUP {
            // A partition resumes from its latest checkpoint or received
            // snapshot, whichever is further: only the entries after replay.
            let log =
                partition_start(&storage).map_err(|e| anyhow::anyhow!("raft group {id}: {e}"))?;
            applied = log.applied();
            self.shared
                .logs
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, log);
        }
        let config = raft::Config {
            id: self.node,
            election_tick: self.settings.election_ticks,
            heartbeat_tick: self.settings.heartbeat_ticks,
            // The state machine holds everything up to here already.
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_uncommitted_size: MAX_UNCOMMITTED,
            ..Default::default()
        };
        config.validate()?;
        let raw = RawNode::new(&config, storage, &self.logger.new(slog::o!("group" => id)))?;
        self.groups.insert(
            id,
            Group {
                raw,
                pending: None,
                group_records: HashMap::new(),
                checkpointed: (applied, 0),
                seen: Seen {
                    role: Role::Follower,
                    leader: None,
                    term: 0,
                },
                serving: false,
                isr_mark: 0,
                heard: HashMap::new(),
                snapshot_waits: HashMap::new(),
                since_snapshot: SinceSnapshot::default(),
            },
        );
        for envelope in self.early.take(id) {
            self.step(envelope);
        }
        Ok(fresh)
    }

    /// Restores an offsets partition's group store from its stored
    /// snapshot, if any; returns the index the store holds everything up to
    /// (0 without a snapshot: the whole log replays).
    fn offsets_partition_start(
        &mut self,
        id: u64,
        storage: &crate::raft::storage::GroupStorage,
    ) -> anyhow::Result<u64> {
        let Some(snapshot) = storage.stored_snapshot() else {
            return Ok(0);
        };
        let index = snapshot.get_metadata().index;
        let store = crate::coordinator::store::GroupStore::decode_snapshot(&snapshot.data)
            .map_err(|e| {
                anyhow::anyhow!("offsets partition group {id}: snapshot at {index}: {e}")
            })?;
        self.install_group_store(id, index, store, "its snapshot");
        Ok(index)
    }

    /// An offsets partition's group store, restored from a snapshot taken
    /// at `index`, becomes the one its coordinator serves.
    fn install_group_store(
        &self,
        id: u64,
        index: u64,
        store: crate::coordinator::store::GroupStore,
        from: &str,
    ) {
        tracing::info!(
            group = id,
            index,
            groups = store.len(),
            "offsets partition restored from {from}"
        );
        self.shared
            .coordinators
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, store);
    }

    fn close_group(&mut self, id: u64) {
        self.groups.remove(&id);
        // The plugins' per-partition memory of this incarnation goes too.
        self.hooks.forget(leaderhook_hooks::PartitionKey(id));
        self.shared
            .coordinators
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        self.campaigns.retain(|(_, group, _)| *group != id);
        self.shared
            .replicas
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        self.shared
            .logs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Err(e) = self.io.store.remove_group(id) {
            tracing::warn!(group = id, "cannot remove the group's log: {e:#}");
        }
    }

    /// Runs until the stop flag is set (`Ok`) or the loop cannot go on
    /// (`Err`: the caller must end the process, never serve on).
    pub fn run(mut self) -> Result<(), LoopError> {
        let mut next_tick = Instant::now() + self.settings.tick;
        let mut next_resync = Instant::now() + self.settings.resync;
        let liveness_every = self.settings.tick * self.settings.heartbeat_ticks as u32;
        let mut next_liveness = Instant::now();
        // The metadata leader this node knows. Plugin writes made while the
        // metadata group had no live leader were dropped or forwarded to a
        // dead one; a new leader re-delivers them at once.
        let mut metadata_leader = None;
        // Peers not heard from yet get the benefit of the doubt for one
        // session timeout from now, not from process start (loading plugins
        // can take longer than that).
        self.shared
            .liveness
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .started = Instant::now();
        let mut round = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let next_campaign = self.campaigns.iter().map(|(at, _, _)| *at).min();
            let wake_at = next_campaign.map_or(next_tick, |at| at.min(next_tick));
            let wait = wake_at.saturating_duration_since(Instant::now());
            match self.io.inbox.recv_timeout(wait) {
                Ok(first) => {
                    let limit = RoundLimit {
                        bytes: self.io.transport.inbox_budget(),
                        envelopes: transport::INBOX_CAPACITY,
                    };
                    let taken = take_round(
                        first,
                        limit,
                        || self.io.inbox.try_recv().ok(),
                        |envelope| self.io.transport.release_inbound(envelope),
                        &mut round,
                    );
                    crate::metrics::raft()
                        .round_inbound_bytes
                        .observe(taken as f64);
                    for envelope in round.drain(..) {
                        self.step(envelope);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(LoopError::InboxClosed),
            }
            while let Some(command) = self.io.commands.try_next() {
                self.command(command);
            }
            let now = Instant::now();
            if now >= next_tick {
                // One tick per round, scheduled from now after a stall: a
                // burst of missed ticks would run check-quorum twice with
                // no time for replies and depose leaders everywhere.
                next_tick = (next_tick + self.settings.tick).max(now);
                for group in self.groups.values_mut() {
                    group.raw.tick();
                }
                self.publish();
            }
            if now >= next_liveness {
                next_liveness = now + liveness_every;
                self.send_liveness();
                self.retry_lost_snapshots(now);
            }
            self.run_due_campaigns();
            self.on_ready();
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
            let leader = self.groups.get(&METADATA_GROUP).and_then(Group::leader);
            let new_metadata_leader = leader.is_some() && leader != metadata_leader;
            metadata_leader = leader;
            if new_metadata_leader || Instant::now() >= next_resync {
                next_resync = Instant::now() + self.settings.resync;
                self.resync();
            }
        }
        Ok(())
    }

    fn step(&mut self, envelope: Envelope) {
        if envelope.group == WAKE_GROUP {
            if let Some(peer) = transport::lost_peer(&envelope) {
                self.peer_lost(peer);
            }
            return;
        }
        let from = envelope.message.from;
        if from != self.node && self.cluster.contains(&from) {
            self.heard.insert(from, Instant::now());
        }
        if envelope.group == LIVENESS_GROUP {
            return;
        }
        match self.groups.get_mut(&envelope.group) {
            Some(group) => {
                // Only a leader's ISR check reads this.
                if group.raw.raft.state == StateRole::Leader {
                    group.heard.insert(from, Instant::now());
                }
                if let Err(e) = group.raw.step(envelope.message) {
                    tracing::debug!(group = envelope.group, "step: {e}");
                }
            }
            None => {
                // A group this node has not created yet (its topic's
                // creation is not applied here yet): hold the message for
                // it. Groups below the next id are deleted ones: drop.
                let next = self
                    .shared
                    .metadata
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .next_group();
                if envelope.group >= next {
                    self.early.hold(envelope, Instant::now());
                }
            }
        }
    }

    /// Every node tells every other it is alive, each heartbeat interval,
    /// even with no group in common (Metadata lists only live brokers).
    fn send_liveness(&self) {
        let envelopes = self
            .cluster
            .iter()
            .filter(|&&peer| peer != self.node)
            .map(|&peer| {
                let mut message = Message::default();
                message.set_msg_type(MessageType::MsgHeartbeat);
                message.from = self.node;
                message.to = peer;
                Envelope {
                    group: LIVENESS_GROUP,
                    message,
                }
            })
            .collect();
        self.io.transport.send(envelopes);
    }

    /// Publishes, once per tick, what other threads read of this loop:
    /// liveness, the controller, where the metadata log stands.
    fn publish(&self) {
        if let Some(group) = self.groups.get(&METADATA_GROUP) {
            let log = &group.raw.raft.raft_log;
            *self
                .shared
                .metadata_log
                .write()
                .unwrap_or_else(PoisonError::into_inner) = LogStatus {
                first_index: log.first_index(),
                last_index: log.last_index(),
                applied: log.applied,
            };
        }
        let controller = self.groups.get(&METADATA_GROUP).and_then(Group::leader);
        let mut liveness = self
            .shared
            .liveness
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        liveness.heard.clone_from(&self.heard);
        liveness.controller = controller;
    }

    /// A peer's connection to this node ended: most likely it died (a
    /// killed process's sockets close at once). In every group it led,
    /// this follower forgets it as leader, so it no longer honours its
    /// lease and grants a survivor's vote, and the surviving voters
    /// campaign one after another in id order rather than all waiting out
    /// an election timeout. Only the scheduled voter campaigns (the
    /// election timer is left alone), so survivors do not split the vote.
    /// If the peer is in fact alive, pre-vote keeps this harmless: the
    /// voters still hearing from it refuse, and its next heartbeat makes it
    /// leader here again.
    fn peer_lost(&mut self, peer: NodeId) {
        let now = Instant::now();
        let mut led = 0;
        for (&id, group) in &mut self.groups {
            if group.raw.raft.state == StateRole::Leader {
                // Stop optimistic appends into the void (Replicate becomes
                // Probe: one message, then wait for an answer); a snapshot
                // in flight to it is lost with the connection.
                group.raw.report_unreachable(peer);
                if snapshot_pending(&group.raw, peer) {
                    group
                        .raw
                        .report_snapshot(peer, raft::SnapshotStatus::Failure);
                }
                continue;
            }
            let raft = &mut group.raw.raft;
            if raft.leader_id != peer || raft.state == StateRole::Leader {
                continue;
            }
            led += 1;
            raft.leader_id = raft::INVALID_ID;
            let mut survivors: Vec<NodeId> = raft
                .prs()
                .conf()
                .voters()
                .ids()
                .iter()
                .filter(|v| *v != peer)
                .collect();
            survivors.sort_unstable();
            if let Some(rank) = survivors.iter().position(|v| *v == self.node) {
                let at = now + FAST_CAMPAIGN_DELAY + FAST_CAMPAIGN_STAGGER * rank as u32;
                self.campaigns.push((at, id, peer));
            }
        }
        if led > 0 {
            tracing::info!(
                peer,
                groups = led,
                "connection from a leader lost: electing"
            );
        }
    }

    /// A leader sends a follower behind its compacted log one snapshot and
    /// then sends it nothing until raft-rs hears how that went. A snapshot
    /// the transport dropped (the follower was down, the connection broke)
    /// would leave the follower without its log for the whole term: one
    /// unanswered for two election timeouts is reported failed, and raft-rs
    /// sends another once the follower answers a heartbeat.
    fn retry_lost_snapshots(&mut self, now: Instant) {
        let patience = self.settings.election_timeout() * 2;
        for (&id, group) in &mut self.groups {
            if group.raw.raft.state != StateRole::Leader {
                group.snapshot_waits.clear();
                continue;
            }
            let waiting: Vec<NodeId> = group
                .raw
                .raft
                .prs()
                .iter()
                .filter(|(_, pr)| pr.state == raft::ProgressState::Snapshot)
                .map(|(peer, _)| *peer)
                .collect();
            group
                .snapshot_waits
                .retain(|peer, _| waiting.contains(peer));
            for peer in waiting {
                let since = *group.snapshot_waits.entry(peer).or_insert(now);
                if now.duration_since(since) >= patience {
                    tracing::info!(group = id, peer, "snapshot unanswered: sending it again");
                    group.snapshot_waits.remove(&peer);
                    group
                        .raw
                        .report_snapshot(peer, raft::SnapshotStatus::Failure);
                }
            }
        }
    }

    fn run_due_campaigns(&mut self) {
        if self.campaigns.is_empty() {
            return;
        }
        let now = Instant::now();
        let due: Vec<(u64, NodeId)> = self
            .campaigns
            .iter()
            .filter(|(at, _, _)| *at <= now)
            .map(|(_, group, peer)| (*group, *peer))
            .collect();
        self.campaigns.retain(|(at, _, _)| *at > now);
        for (id, peer) in due {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            let raft = &group.raw.raft;
            // Only while nobody else has taken over.
            let leaderless = raft.leader_id == peer || raft.leader_id == raft::INVALID_ID;
            if leaderless && raft.state == StateRole::Follower {
                let _ = group.raw.campaign();
            }
        }
    }

    fn proposal_context(&mut self) -> (u64, Vec<u8>) {
        let id = self.next_proposal;
        self.next_proposal += 1;
        (id, ProposalContext::new(self.node, self.boot, id).encode())
    }

    fn command(&mut self, command: RaftCommand) {
        match command {
            RaftCommand::Propose(command, waiter) => {
                let (id, context) = self.proposal_context();
                let write = command.leader_write();
                let group = self
                    .groups
                    .get_mut(&METADATA_GROUP)
                    .expect("the metadata group is opened in new()");
                match group.raw.propose(context, command.encode()) {
                    Ok(()) => {
                        if let Some(waiter) = waiter {
                            self.pending.insert(id, waiter);
                        }
                    }
                    Err(e) => {
                        tracing::debug!("metadata proposal dropped: {e}");
                        if let Some((partition, _, _)) = write {
                            self.inflight.dropped(partition);
                        }
                        if let Some(waiter) = waiter {
                            waiter.reply.send(Err(RaftError::Dropped));
                        }
                    }
                }
            }
            RaftCommand::Append {
                group: group_id,
                mut entry,
                reply,
            } => {
                let (id, context) = self.proposal_context();
                // Offsets partitions take group records only.
                if self.is_offsets_partition(group_id) {
                    let _ = reply.send(Err(AppendError::UnknownGroup));
                    return;
                }
                let applied_next = self
                    .shared
                    .logs
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&group_id)
                    .map(PartitionLog::high_watermark);
                let Some(group) = self.groups.get_mut(&group_id) else {
                    let _ = reply.send(Err(AppendError::UnknownGroup));
                    return;
                };
                // Only a leader that has committed an entry of its own term
                // accepts writes: it knows every earlier commit.
                let term = group.raw.raft.term;
                let (Some(pending), Some(applied_next), StateRole::Leader, true) = (
                    group.pending.as_mut(),
                    applied_next,
                    group.raw.raft.state,
                    group.serving,
                ) else {
                    let leader = group.leader().filter(|l| *l != self.node);
                    let _ = reply.send(Err(AppendError::NotLeader(leader)));
                    return;
                };
                let (decision, reply) = pending.decide(&mut entry, term, applied_next, reply);
                if let (
                    Decision::Propose {
                        base,
                        records,
                        producer,
                    },
                    Some(reply),
                ) = (decision, reply)
                {
                    match group.raw.propose(context, entry) {
                        Ok(()) => pending.proposed(id, reply, base, records, producer, now_ms()),
                        Err(e) => {
                            let _ = reply.send(Err(AppendError::Dropped(e.to_string())));
                        }
                    }
                }
            }
            RaftCommand::AppendGroupRecord {
                group,
                record,
                term,
                reply,
            } => self.propose_group_record(group, record, term, reply),
            RaftCommand::Transfer { group, to } => {
                if let Some(group) = self.groups.get_mut(&group) {
                    // A follower forwards the request to its leader.
                    group.raw.transfer_leader(to);
                }
            }
        }
    }

    /// Handles every group's Ready: messages out, one synced write for all
    /// groups' entries and hard states, then what may only follow a persist.
    fn on_ready(&mut self) {
        let mut batch = WriteBatch::default();
        let mut readies = Vec::new();
        let mut outgoing = Vec::new();
        for (&id, group) in &mut self.groups {
            if !group.raw.has_ready() {
                continue;
            }
            let mut ready = group.raw.ready();
            // Messages a leader may send before persisting (raft-rs allows
            // it: they are not votes or acks of unpersisted entries).
            outgoing.extend(
                ready
                    .take_messages()
                    .into_iter()
                    .map(|message| Envelope { group: id, message }),
            );
            if !ready.snapshot().is_empty() {
                tracing::debug!(
                    group = id,
                    index = ready.snapshot().get_metadata().index,
                    "snapshot received"
                );
                batch.snapshot(id, ready.snapshot());
            }
            if !ready.entries().is_empty() {
                batch.append(id, ready.entries());
            }
            if let Some(hs) = ready.hs() {
                batch.hard_state(id, hs);
            }
            let term = ready.hs().map_or(group.raw.raft.term, |hs| hs.term);
            readies.push((id, ready, term));
        }
        if readies.is_empty() {
            return;
        }
        self.io.transport.send(std::mem::take(&mut outgoing));
        if let Err(e) = self.io.store.write(batch) {
            // Without a durable log this node must not ack anything, nor
            // serve what it has: the loop ends and the process with it.
            self.failed = Some(LoopError::LogWrite(e));
            return;
        }
        for (id, mut ready, term) in readies {
            if !ready.snapshot().is_empty() {
                self.restore(id, ready.snapshot());
            }
            let committed = ready.take_committed_entries();
            let persisted = ready.take_persisted_messages();
            outgoing.extend(
                persisted
                    .into_iter()
                    .map(|message| Envelope { group: id, message }),
            );
            self.apply(id, committed);
            let Some(group) = self.groups.get_mut(&id) else {
                continue; // removed by what it applied
            };
            let mut light = group.raw.advance(ready);
            outgoing.extend(
                light
                    .take_messages()
                    .into_iter()
                    .map(|message| Envelope { group: id, message }),
            );
            let committed = light.take_committed_entries();
            self.apply(id, committed);
            if let Some(group) = self.groups.get_mut(&id) {
                group.raw.advance_apply();
            }
            self.observe(id, term);
            if self.failed.is_some() {
                return;
            }
        }
        self.io.transport.send(outgoing);
        self.maybe_snapshot_metadata();
        self.snapshot_offsets_partitions();
        self.compact_partitions();
        self.checkpoint_partitions();
    }

    /// A snapshot from the leader replaced a group's log: its state machine
    /// takes the snapshot's state (the metadata, an offsets partition's
    /// groups, a partition's state at its retention point).
    fn restore(&mut self, id: u64, snapshot: &raft::prelude::Snapshot) {
        let index = snapshot.get_metadata().index;
        if id != METADATA_GROUP && self.is_offsets_partition(id) {
            match crate::coordinator::store::GroupStore::decode_snapshot(&snapshot.data) {
                Ok(store) => {
                    self.install_group_store(id, index, store, "the leader's snapshot");
                    if let Some(group) = self.groups.get_mut(&id) {
                        group.since_snapshot = SinceSnapshot::default();
                    }
                }
                Err(source) => {
                    self.failed = Some(LoopError::UndecodableGroupSnapshot {
                        group: id,
                        index,
                        source,
                    })
                }
            }
            return;
        }
        if id != METADATA_GROUP {
            match crate::partition_log::decode_checkpoint(&snapshot.data) {
                Ok(state) => {
                    tracing::info!(
                        group = id,
                        index,
                        log_start_offset = state.log_start_offset,
                        "partition restored from the leader's snapshot"
                    );
                    self.shared
                        .logs
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(id, PartitionLog::from_checkpoint(state));
                    if let Some(group) = self.groups.get_mut(&id) {
                        group.checkpointed = (index, 0);
                    }
                }
                Err(source) => {
                    self.failed = Some(LoopError::Partition {
                        group: id,
                        source: crate::partition_log::ApplyError::Entry { index, source },
                    })
                }
            }
            return;
        }
        match crate::metadata::Metadata::decode_snapshot(&snapshot.data) {
            Ok(restored) => {
                tracing::info!(index, "metadata restored from the leader's snapshot");
                *self
                    .shared
                    .metadata
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = restored;
                self.since_snapshot = SinceSnapshot::default();
                self.reconcile_groups();
            }
            Err(source) => {
                self.failed = Some(LoopError::UndecodableSnapshot { index, source });
            }
        }
    }

    /// Snapshots the metadata and compacts its log once the policy says so.
    /// (Serialising the metadata is milliseconds even for 10,000
    /// partitions, once per `every_entries` entries.)
    fn maybe_snapshot_metadata(&mut self) {
        let policy = self.settings.snapshots;
        if self.since_snapshot.entries < policy.every_entries
            && self.since_snapshot.bytes < policy.every_bytes
        {
            return;
        }
        let Some(group) = self.groups.get(&METADATA_GROUP) else {
            return;
        };
        let data = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .encode_snapshot();
        let Some(snapshot) = snapshot_at_applied(group, data) else {
            return;
        };
        let index = snapshot.get_metadata().index;
        let compact_to = index.saturating_sub(policy.keep_entries);
        match self
            .io
            .store
            .save_snapshot(METADATA_GROUP, &snapshot, compact_to)
        {
            Ok(()) => {
                tracing::debug!(
                    index,
                    compact_to,
                    bytes = snapshot.data.len(),
                    "metadata snapshot saved"
                );
                self.since_snapshot = SinceSnapshot::default();
            }
            Err(e) => self.failed = Some(LoopError::Snapshot(e)),
        }
    }

    /// Snapshots each offsets partition whose applied entries or bytes since
    /// its last snapshot reach the policy's (the metadata group's), and
    /// compacts its log behind it, keeping `keep_entries` entries. Every
    /// replica does so on its own, as for the metadata group.
    fn snapshot_offsets_partitions(&mut self) {
        let policy = self.settings.snapshots;
        for id in std::mem::take(&mut self.offsets_snapshots_due) {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            let data = self
                .shared
                .coordinators
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&id)
                .map_or_else(
                    || crate::coordinator::store::GroupStore::default().encode_snapshot(),
                    crate::coordinator::store::GroupStore::encode_snapshot,
                );
            let Some(snapshot) = snapshot_at_applied(group, data) else {
                continue;
            };
            let index = snapshot.get_metadata().index;
            let compact_to = index.saturating_sub(policy.keep_entries);
            match self.io.store.save_snapshot(id, &snapshot, compact_to) {
                Ok(()) => {
                    tracing::debug!(
                        group = id,
                        index,
                        compact_to,
                        bytes = snapshot.data.len(),
                        "offsets partition snapshot saved"
                    );
                    group.since_snapshot = SinceSnapshot::default();
                }
                Err(source) => {
                    self.failed = Some(LoopError::PartitionState { group: id, source });
                    return;
                }
            }
        }
    }

    /// Retention decided this round: each replica compacts its Raft log up
    /// to the decided index and keeps a snapshot of the partition there
    /// (the checkpoint at the new log start: no records), which a follower
    /// further behind receives instead of entries that are gone.
    fn compact_partitions(&mut self) {
        for (id, index, log_start_offset) in std::mem::take(&mut self.compactions) {
            let Some(group) = self.groups.get_mut(&id) else {
                continue;
            };
            let Ok(term) = group.raw.raft.raft_log.term(index) else {
                continue; // compacted already (a replayed decision)
            };
            let (snapshot_state, state) = {
                let logs = self
                    .shared
                    .logs
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                let Some(log) = logs.get(&id) else {
                    continue;
                };
                (
                    crate::partition_log::encode_checkpoint(
                        &log.snapshot_at(index, log_start_offset),
                    ),
                    (
                        log.checkpoint().applied,
                        log.checkpoint().bytes_applied,
                        crate::partition_log::encode_checkpoint(log.checkpoint()),
                    ),
                )
            };
            let mut snapshot = raft::prelude::Snapshot::default();
            snapshot.mut_metadata().index = index;
            snapshot.mut_metadata().term = term;
            snapshot
                .mut_metadata()
                .set_conf_state(group.raw.raft.prs().conf().to_conf_state());
            snapshot.data = snapshot_state.into();
            let (applied, bytes, state) = state;
            match self
                .io
                .store
                .save_snapshot_with_state(id, &snapshot, index, Some(state))
            {
                Ok(()) => {
                    group.checkpointed = (applied, bytes);
                    tracing::debug!(
                        group = id,
                        index,
                        log_start_offset,
                        "retention: log compacted"
                    );
                }
                Err(source) => self.failed = Some(LoopError::PartitionState { group: id, source }),
            }
        }
    }

    /// Forgets idempotent producers silent for longer than the expiry, on
    /// this replica (applied state and a leader's pending decisions alike).
    fn expire_producers(&mut self) {
        let (now, max_age) = (now_ms(), self.settings.storage.producer_expiry_ms);
        let mut logs = self
            .shared
            .logs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (id, log) in logs.iter_mut() {
            let expired = log.producers_mut().expire(now, max_age);
            if let Some(pending) = self.groups.get_mut(id).and_then(|g| g.pending.as_mut()) {
                pending.producers_mut().expire(now, max_age);
            }
            if expired > 0 {
                tracing::debug!(group = id, expired, "idempotent producers expired");
            }
        }
    }

    /// A serving partition leader proposes deleting the prefix that its
    /// topic's retention (or the broker default) lets go; every replica
    /// applies it (moves its log start) and compacts ([`Self::compact_partitions`]).
    fn apply_retention(&mut self) {
        let policy = self.settings.storage;
        let now = now_ms() as i64;
        let mut proposals = Vec::new();
        {
            let metadata = self
                .shared
                .metadata
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let logs = self
                .shared
                .logs
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for (&id, group) in &self.groups {
                if group.pending.is_none() {
                    continue; // not a serving partition leader
                }
                let (Some(log), Some(key)) = (logs.get(&id), metadata.key_of_group(id)) else {
                    continue;
                };
                let configs = metadata.topic(&key.topic).map(|t| &t.configs);
                let setting = |key: &str| {
                    configs
                        .and_then(|c| c.get(key))
                        .and_then(|v| v.parse::<i64>().ok())
                };
                let retention_ms = match setting("retention.ms") {
                    Some(ms) => (ms >= 0).then_some(ms),
                    None => policy.retention_ms,
                };
                let retention_bytes = match setting("retention.bytes") {
                    Some(bytes) => u64::try_from(bytes).ok(),
                    None => policy.retention_bytes,
                };
                let Some((index, log_start_offset)) = log.retention_cut(
                    retention_ms.map(|ms| now.saturating_sub(ms)),
                    retention_bytes,
                ) else {
                    continue;
                };
                if log_start_offset > log.log_start_offset() {
                    proposals.push((id, index, log_start_offset));
                }
            }
        }
        for (id, index, log_start_offset) in proposals {
            let (_, context) = self.proposal_context();
            let control = Control::DeletePrefix {
                index,
                log_start_offset,
            };
            if let Some(group) = self.groups.get_mut(&id)
                && let Err(e) = group
                    .raw
                    .propose(context, crate::partition_log::entry::control(&control))
            {
                tracing::debug!(group = id, "retention proposal dropped: {e}");
            }
        }
    }

    /// Saves the checkpoint of each partition that applied enough since its
    /// last one (unsynced: the next round's synced write makes it durable).
    fn checkpoint_partitions(&mut self) {
        let policy = self.settings.storage;
        let logs = self
            .shared
            .logs
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for (&id, group) in &mut self.groups {
            let Some(log) = logs.get(&id) else {
                continue;
            };
            let state = log.checkpoint();
            let (at, bytes) = group.checkpointed;
            if state.applied.saturating_sub(at) < policy.checkpoint_every_entries
                && state.bytes_applied.saturating_sub(bytes) < policy.checkpoint_every_bytes
            {
                continue;
            }
            let encoded = crate::partition_log::encode_checkpoint(state);
            match self.io.store.save_state(id, encoded) {
                Ok(()) => group.checkpointed = (state.applied, state.bytes_applied),
                Err(source) => {
                    self.failed = Some(LoopError::PartitionState { group: id, source });
                    return;
                }
            }
        }
    }

    fn apply(&mut self, group_id: u64, entries: Vec<Entry>) {
        for entry in entries {
            if let Some(group) = self.groups.get_mut(&group_id)
                && !group.serving
                && group.raw.raft.state == StateRole::Leader
                && entry.term == group.raw.raft.term
            {
                // An entry of the leader's own term is committed: it knows
                // every earlier commit and may serve leader-only requests.
                // Its appends continue from the applied state.
                group.serving = true;
                if group_id != METADATA_GROUP {
                    group.pending = self
                        .shared
                        .logs
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&group_id)
                        .map(Pending::new);
                }
            }
            if group_id == METADATA_GROUP {
                self.since_snapshot.entries += 1;
                self.since_snapshot.bytes += entry.data.len() as u64;
                if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                    self.apply_metadata(&entry);
                }
                if !self.replayed && entry.index >= self.replay_until {
                    self.replayed = true;
                    self.sweep_orphan_groups();
                }
            } else if self.is_offsets_partition(group_id) {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    group.since_snapshot.entries += 1;
                    group.since_snapshot.bytes += entry.data.len() as u64;
                    let policy = self.settings.snapshots;
                    if group.since_snapshot.entries >= policy.every_entries
                        || group.since_snapshot.bytes >= policy.every_bytes
                    {
                        self.offsets_snapshots_due.insert(group_id);
                    }
                }
                if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                    self.apply_group_record(group_id, &entry);
                }
            } else {
                if entry.get_entry_type() == EntryType::EntryNormal {
                    self.note_leader_epoch(group_id, entry.term);
                }
                if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                    self.apply_records(group_id, &entry);
                } else if let Some(log) = self
                    .shared
                    .logs
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_mut(&group_id)
                {
                    log.skip(entry.index);
                }
            }
        }
    }

    fn apply_metadata(&mut self, entry: &Entry) {
        let command = match Command::decode(&entry.data) {
            Ok(command) => command,
            Err(source) => {
                // Not guessed at: a later release wrote it, or the disk lies.
                self.failed = Some(LoopError::Undecodable {
                    index: entry.index,
                    source,
                });
                return;
            }
        };
        let write = command.leader_write();
        let outcome = self
            .shared
            .metadata
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(command);
        if let Some((partition, leader, epoch)) = write
            && let Some(next) = self
                .inflight
                .settle(partition, leader, epoch, Instant::now())
        {
            self.propose_write(next);
        }
        match &outcome {
            Applied::TopicCreated { groups, .. } | Applied::PartitionsCreated { groups } => {
                self.open_topic_groups(groups);
            }
            Applied::TopicDeleted { groups } => {
                for &group in groups {
                    self.close_group(group);
                }
            }
            Applied::LeaderSet
            | Applied::IsrSet
            | Applied::ProducerId(_)
            | Applied::ConfigsSet
            | Applied::Refused(_) => {}
        }
        if let Some(context) = ProposalContext::decode(&entry.context)
            && context.is_ours(self.node, self.boot)
            && let Some(waiter) = self.pending.remove(&context.id)
        {
            waiter.reply.send(Ok(outcome));
        }
    }

    /// Opens the local replicas of a new topic's partitions. A group new
    /// here whose preferred replica this node is campaigns at once (only
    /// it, so no split vote): clients find a leader in milliseconds rather
    /// than after a randomized election timeout.
    fn open_topic_groups(&mut self, groups: &[u64]) {
        let to_open: Vec<(u64, Vec<NodeId>)> = {
            let metadata = self
                .shared
                .metadata
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            groups
                .iter()
                .filter_map(|g| metadata.partition_of_group(*g))
                .filter(|(_, p)| p.replicas.contains(&self.node))
                .map(|(_, p)| (p.group, p.replicas.clone()))
                .collect()
        };
        for (group, replicas) in to_open {
            match self.open_group(group, &replicas, 0) {
                Ok(fresh) => {
                    if fresh && self.replayed && replicas.first() == Some(&self.node) {
                        let _ = self.groups.get_mut(&group).map(|g| g.raw.campaign());
                    }
                }
                Err(e) => tracing::error!(group, "cannot open partition group: {e:#}"),
            }
        }
    }

    /// Removes from disk the groups no topic owns any more: a deletion
    /// whose unsynced removal a crash lost. Runs once the metadata replay
    /// at start has caught up (before that, every group looks unowned).
    fn sweep_orphan_groups(&mut self) {
        let owned: Vec<u64> = self
            .io
            .store
            .group_ids()
            .into_iter()
            .filter(|g| *g != METADATA_GROUP && !self.groups.contains_key(g))
            .collect();
        for group in owned {
            tracing::info!(group, "removing the log of a group no topic owns");
            if let Err(e) = self.io.store.remove_group(group) {
                tracing::warn!(group, "cannot remove the group's log: {e:#}");
            }
        }
    }

    fn apply_records(&mut self, group_id: u64, entry: &Entry) {
        let outcome = {
            let mut logs = self
                .shared
                .logs
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            logs.entry(group_id)
                .or_default()
                .apply(entry.index, &entry.data, now_ms())
        };
        match outcome {
            Ok(PartitionApplied::Batch(base)) => {
                let id = ProposalContext::decode(&entry.context)
                    .filter(|c| c.is_ours(self.node, self.boot))
                    .map(|c| c.id);
                if let Some(pending) = self
                    .groups
                    .get_mut(&group_id)
                    .and_then(|g| g.pending.as_mut())
                {
                    pending.applied(id, base);
                }
            }
            Ok(PartitionApplied::Control(Control::DeletePrefix {
                index,
                log_start_offset,
            })) => self.compactions.push((group_id, index, log_start_offset)),
            Err(source) => {
                // The log is not what its leader wrote: stop, never guess.
                self.failed = Some(LoopError::Partition {
                    group: group_id,
                    source,
                });
            }
        }
    }

    /// Whether `group` is a partition of the offsets topic (its entries are
    /// group records, `coordinator::record`, not Kafka record batches).
    fn is_offsets_partition(&self, group: u64) -> bool {
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        metadata
            .key_of_group(group)
            .and_then(|key| metadata.topic(&key.topic))
            .is_some_and(|t| t.name == crate::coordinator::OFFSETS_TOPIC)
    }

    /// Proposes a group coordinator's record, if this replica leads the
    /// offsets partition at `term` and serves.
    fn propose_group_record(
        &mut self,
        group_id: u64,
        record: Vec<u8>,
        term: u64,
        reply: crate::raft::handle::AppendReply,
    ) {
        if !self.is_offsets_partition(group_id) {
            let _ = reply.send(Err(AppendError::UnknownGroup));
            return;
        }
        let (id, context) = self.proposal_context();
        let Some(group) = self.groups.get_mut(&group_id) else {
            let _ = reply.send(Err(AppendError::UnknownGroup));
            return;
        };
        if group.raw.raft.state != StateRole::Leader
            || !group.serving
            || group.raw.raft.term != term
        {
            let leader = group.leader().filter(|l| *l != self.node);
            let _ = reply.send(Err(AppendError::NotLeader(leader)));
            return;
        }
        match group.raw.propose(context, record) {
            Ok(()) => {
                group.group_records.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(AppendError::Dropped(e.to_string())));
            }
        }
    }

    /// Applies a group record to the offsets partition's store. One that
    /// does not decode is skipped (alike on every replica) and logged.
    fn apply_group_record(&mut self, group_id: u64, entry: &Entry) {
        let outcome = self
            .shared
            .coordinators
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(group_id)
            .or_default()
            .apply(&entry.data);
        if let Err(e) = &outcome {
            tracing::error!(
                group = group_id,
                index = entry.index,
                "group record skipped: {e}"
            );
        }
        if let Some(context) = ProposalContext::decode(&entry.context)
            && context.is_ours(self.node, self.boot)
            && let Some(group) = self.groups.get_mut(&group_id)
            && let Some(reply) = group.group_records.remove(&context.id)
        {
            let _ = reply.send(
                outcome
                    .map(|()| 0)
                    .map_err(|e| AppendError::Dropped(e.to_string())),
            );
        }
    }

    /// Where each Raft term's entries begin in the partition's offsets:
    /// Kafka's leader epoch cache, for OffsetForLeaderEpoch (epoch = term).
    fn note_leader_epoch(&self, group_id: u64, term: u64) {
        if let Some(log) = self
            .shared
            .logs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&group_id)
        {
            log.begin_epoch(term);
        }
    }

    /// Publishes the replica's status and emits a leadership event if its
    /// role, leader or term changed.
    fn observe(&mut self, id: u64, term: u64) {
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        let now = Seen {
            role: group.raw.raft.state.into(),
            leader: group.leader(),
            term,
        };
        if now.role != Role::Leader {
            group.serving = false;
            // Appends still waiting will not be answered by this replica:
            // tell their clients now (they retry against the new leader).
            if let Some(pending) = group.pending.take() {
                pending.abandon(now.leader);
            }
            for (_, reply) in group.group_records.drain() {
                let _ = reply.send(Err(AppendError::NotLeader(now.leader)));
            }
        }
        let old = group.seen;
        if old == now && id == METADATA_GROUP {
            return;
        }
        group.seen = now;
        crate::metrics::raft().role_changed(old.role, now.role);
        let serving = group.serving;
        let log = {
            let log = &group.raw.raft.raft_log;
            LogStatus {
                first_index: log.first_index(),
                last_index: log.last_index(),
                applied: log.applied,
            }
        };
        let partition = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .partition_of_group(id)
            .map(|(p, meta)| (p, meta.replicas.clone()));
        self.shared
            .replicas
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                ReplicaStatus {
                    group: id,
                    partition: partition.as_ref().map(|(p, _)| p.clone()),
                    role: now.role,
                    leader: now.leader,
                    term,
                    serving,
                    log,
                },
            );
        let Some((partition, replicas)) = partition else {
            return; // the metadata group: no plugin events
        };
        let Some(transition) = transition(old, now) else {
            return;
        };
        crate::metrics::raft().leadership_changes.inc();
        self.hooks.submit(
            PartitionKey(id),
            LeadershipEvent {
                partition,
                transition,
                observer: self.node,
                leader: now.leader,
                previous_leader: old.leader,
                term,
                replicas,
                at_ms: now_ms(),
            },
        );
    }

    fn propose_write(&mut self, write: LeaderWrite) {
        let command = Command::SetLeader {
            partition: write.partition,
            leader: write.leader,
            epoch: write.epoch,
            attested: write.attested,
        };
        self.command(RaftCommand::Propose(command, None));
    }

    /// Re-delivers the leadership of every group this node leads whose
    /// stored assignment does not name it at its term: events can be lost
    /// (a full queue, a dropped proposal, a restart); this heals them.
    /// Also: ISR updates, writes presumed lost, waiters past their deadline,
    /// held messages past their age.
    fn resync(&mut self) {
        let now = Instant::now();
        self.pending.retain(|_, w| w.deadline > now);
        self.early.expire(now);
        for write in self.inflight.expire(now) {
            self.propose_write(write);
        }
        self.expire_producers();
        self.apply_retention();
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut events = Vec::new();
        let mut isr_updates = Vec::new();
        let lag = self.settings.election_timeout();
        for (&id, group) in &mut self.groups {
            if let Some(update) = isr_update(self.node, id, group, &metadata, lag) {
                isr_updates.push(update);
            }
        }
        for (&id, group) in &self.groups {
            if id == METADATA_GROUP || group.raw.raft.state != StateRole::Leader {
                continue;
            }
            let Some((partition, meta)) = metadata.partition_of_group(id) else {
                continue;
            };
            let term = group.raw.raft.term;
            if meta.leader == Some(self.node) && meta.epoch == term {
                continue;
            }
            events.push((
                PartitionKey(id),
                LeadershipEvent {
                    partition,
                    transition: Transition::BecameLeader,
                    observer: self.node,
                    leader: Some(self.node),
                    previous_leader: meta.leader,
                    term,
                    replicas: meta.replicas.clone(),
                    at_ms: now_ms(),
                },
            ));
        }
        drop(metadata);
        (crate::metrics::raft().resync_redeliveries).inc_by(events.len() as u64);
        for (key, event) in events {
            tracing::debug!(partition = %event.partition, term = event.term, "resync: re-delivering leadership");
            self.hooks.submit(key, event);
        }
        for update in isr_updates {
            self.command(RaftCommand::Propose(update, None));
        }
    }
}

/// The ISR write a serving leader owes the metadata, if its Raft progress
/// disagrees with the stored ISR. A follower is in sync if it was heard
/// from within `lag` and has reached the commit index of the previous check
/// (so one check period of replication lag is tolerated).
fn isr_update(
    node: NodeId,
    id: u64,
    group: &mut Group,
    metadata: &crate::metadata::Metadata,
    lag: Duration,
) -> Option<Command> {
    if id == METADATA_GROUP || group.raw.raft.state != StateRole::Leader || !group.serving {
        return None;
    }
    let raft = &group.raw.raft;
    let mark = std::mem::replace(&mut group.isr_mark, raft.raft_log.committed);
    let key: TopicPartition = metadata.key_of_group(id)?;
    let meta = metadata.partition_at(&key)?;
    // Only the leader the assignment names may write; until the plugins
    // have assigned this node, the ISR waits.
    if meta.leader != Some(node) || meta.epoch != raft.term {
        return None;
    }
    let replicas = raft.prs().iter().map(|(peer, pr)| Replica {
        node: *peer,
        heard_ago: group.heard.get(peer).map(Instant::elapsed),
        matched: pr.matched,
    });
    let isr = in_sync(node, replicas, mark, lag);
    (isr != meta.isr).then_some(Command::SetIsr {
        partition: key,
        isr,
        epoch: raft.term,
    })
}

/// What the leader knows of one replica of its group, for the ISR rule.
#[derive(Debug, Clone, Copy)]
struct Replica {
    node: NodeId,
    /// How long ago it was last heard from (never: `None`).
    heard_ago: Option<Duration>,
    /// The highest log index known to match the leader's.
    matched: u64,
}

/// The ISR rule, sorted: the leader itself, and every follower heard from
/// within `lag` whose log has reached `mark` (the commit index at the
/// previous check), so a follower that is back but still catching up stays
/// out until it has caught up.
fn in_sync(
    leader: NodeId,
    replicas: impl IntoIterator<Item = Replica>,
    mark: u64,
    lag: Duration,
) -> Vec<NodeId> {
    let mut isr: Vec<NodeId> = replicas
        .into_iter()
        .filter(|r| {
            let recent = r.heard_ago.is_some_and(|ago| ago < lag);
            r.node == leader || (recent && r.matched >= mark)
        })
        .map(|r| r.node)
        .collect();
    isr.sort_unstable();
    isr
}

/// An entry's context: who proposed it, in which life of the process, and
/// the proposer's id for it. Only the proposing node in the same life
/// answers a waiter: forwarded proposals, entries of an old leader and
/// entries replayed from an earlier life carry other ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProposalContext {
    node: NodeId,
    boot: u64,
    id: u64,
}

impl ProposalContext {
    const LEN: usize = 24;

    fn new(node: NodeId, boot: u64, id: u64) -> Self {
        Self { node, boot, id }
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::LEN);
        bytes.extend_from_slice(&self.node.to_le_bytes());
        bytes.extend_from_slice(&self.boot.to_le_bytes());
        bytes.extend_from_slice(&self.id.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let word =
            |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        Some(Self::new(word(0), word(1), word(2)))
    }

    fn is_ours(&self, node: NodeId, boot: u64) -> bool {
        self.node == node && self.boot == boot
    }
}

/// Messages held for groups not created here yet, bounded per group, in
/// bytes and in age.
#[derive(Default)]
struct EarlyMessages {
    by_group: HashMap<u64, VecDeque<(Instant, Envelope)>>,
    bytes: usize,
}

impl EarlyMessages {
    fn size(envelope: &Envelope) -> usize {
        64 + envelope
            .message
            .entries
            .iter()
            .map(|e| e.data.len() + e.context.len() + 32)
            .sum::<usize>()
    }

    fn hold(&mut self, envelope: Envelope, now: Instant) {
        let size = Self::size(&envelope);
        if self.bytes + size > EARLY_BYTES {
            return; // Raft retransmits; the election timeout is the fallback
        }
        let held = self.by_group.entry(envelope.group).or_default();
        if held.len() >= EARLY_PER_GROUP
            && let Some((_, old)) = held.pop_front()
        {
            self.bytes -= Self::size(&old);
        }
        held.push_back((now, envelope));
        self.bytes += size;
    }

    fn take(&mut self, group: u64) -> Vec<Envelope> {
        let held = self.by_group.remove(&group).unwrap_or_default();
        held.into_iter()
            .map(|(_, envelope)| {
                self.bytes -= Self::size(&envelope);
                envelope
            })
            .collect()
    }

    fn expire(&mut self, now: Instant) {
        let mut freed = 0;
        self.by_group.retain(|_, held| {
            while held
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > EARLY_AGE)
            {
                let (_, old) = held.pop_front().expect("checked");
                freed += Self::size(&old);
            }
            !held.is_empty()
        });
        self.bytes -= freed;
    }
}

/// What one round of the Raft loop takes from the inbox at most: one
/// inbox's worth.
#[derive(Debug, Clone, Copy)]
struct RoundLimit {
    /// Payload bytes: a round stops taking once it holds this many, so it
    /// stays under twice it (no envelope costs more).
    bytes: usize,
    /// Envelopes, for those that cost no bytes (heartbeats, votes).
    envelopes: usize,
}

/// Takes one round's envelopes into `round`: `first`, then more while the
/// inbox has any and the round is within `limit` (`release` gives each
/// envelope's bytes back to the inbox and returns them). Readers refill the
/// inbox while the loop drains it, and what a round took stays in memory
/// until the round's write: without the limit busy followers took 100 MiB
/// rounds. What is left waits for the next round. Returns the bytes taken.
fn take_round(
    first: Envelope,
    limit: RoundLimit,
    mut next: impl FnMut() -> Option<Envelope>,
    release: impl Fn(&Envelope) -> usize,
    round: &mut Vec<Envelope>,
) -> usize {
    let mut taken = release(&first);
    round.push(first);
    while taken < limit.bytes && round.len() < limit.envelopes {
        let Some(envelope) = next() else { break };
        taken += release(&envelope);
        round.push(envelope);
    }
    taken
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The state a partition replica resumes from: its latest checkpoint or
/// the snapshot it received, whichever is further; a new log if neither.
fn partition_start(
    storage: &crate::raft::storage::GroupStorage,
) -> Result<PartitionLog, crate::partition_log::entry::EntryError> {
    let state = storage
        .stored_state()
        .map(|bytes| crate::partition_log::decode_checkpoint(&bytes))
        .transpose()?;
    let snapshot = storage
        .stored_snapshot()
        .map(|s| crate::partition_log::decode_checkpoint(&s.data))
        .transpose()?;
    let start = match (state, snapshot) {
        (Some(a), Some(b)) => {
            if a.applied >= b.applied {
                a
            } else {
                b
            }
        }
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => Default::default(),
    };
    Ok(PartitionLog::from_checkpoint(start))
}

/// Whether this leader waits for `peer` to answer a snapshot.
fn snapshot_pending(raw: &RawNode<crate::raft::storage::GroupStorage>, peer: NodeId) -> bool {
    raw.raft
        .prs()
        .get(peer)
        .is_some_and(|pr| pr.state == raft::ProgressState::Snapshot)
}

/// A snapshot of `group`'s state machine at its applied index, holding
/// `data` (None if that entry's term is no longer known).
fn snapshot_at_applied(group: &Group, data: Vec<u8>) -> Option<raft::prelude::Snapshot> {
    let raft = &group.raw.raft;
    let index = raft.raft_log.applied;
    let term = raft.raft_log.term(index).ok()?;
    let mut snapshot = raft::prelude::Snapshot::default();
    snapshot.mut_metadata().index = index;
    snapshot.mut_metadata().term = term;
    snapshot
        .mut_metadata()
        .set_conf_state(raft.prs().conf().to_conf_state());
    snapshot.data = data.into();
    Some(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(role: Role, leader: Option<NodeId>) -> Seen {
        Seen {
            role,
            leader,
            term: 1,
        }
    }

    #[test]
    fn transitions_follow_role_and_leader_changes() {
        use Role::*;
        let cases = [
            (
                seen(Follower, None),
                seen(Leader, Some(1)),
                Some(Transition::BecameLeader),
            ),
            (
                seen(Candidate, None),
                seen(Leader, Some(1)),
                Some(Transition::BecameLeader),
            ),
            (
                seen(Leader, Some(1)),
                seen(Follower, Some(2)),
                Some(Transition::SteppedDown),
            ),
            (
                seen(Leader, Some(1)),
                seen(Follower, None),
                Some(Transition::SteppedDown),
            ),
            (
                seen(Follower, None),
                seen(Follower, Some(2)),
                Some(Transition::LeaderObserved),
            ),
            (
                seen(Follower, Some(2)),
                seen(Follower, Some(3)),
                Some(Transition::LeaderObserved),
            ),
            (
                seen(Follower, Some(2)),
                seen(PreCandidate, None),
                Some(Transition::LeaderLost),
            ),
            (seen(Follower, Some(2)), seen(Follower, Some(2)), None),
            (seen(Leader, Some(1)), seen(Leader, Some(1)), None),
            (seen(Follower, None), seen(Candidate, None), None),
        ];
        for (old, new, expected) in cases {
            assert_eq!(transition(old, new), expected, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn the_isr_is_the_leader_and_followers_heard_lately_and_caught_up() {
        let lag = Duration::from_millis(1000);
        let replica = |node, heard_ms: Option<u64>, matched| Replica {
            node,
            heard_ago: heard_ms.map(Duration::from_millis),
            matched,
        };
        let cases = [
            // Everyone heard and caught up (the mark is reached exactly).
            (
                vec![
                    replica(3, Some(10), 50),
                    replica(1, None, 0),
                    replica(2, Some(10), 40),
                ],
                vec![1, 2, 3],
            ),
            // Back and heard, but behind the mark: still catching up.
            (vec![replica(1, None, 0), replica(2, Some(10), 39)], vec![1]),
            // Caught up, but silent for longer than the lag, or never heard.
            (
                vec![
                    replica(1, None, 0),
                    replica(2, Some(1000), 50),
                    replica(3, None, 50),
                ],
                vec![1],
            ),
        ];
        for (replicas, expected) in cases {
            assert_eq!(
                in_sync(1, replicas.clone(), 40, lag),
                expected,
                "{replicas:?}"
            );
        }
    }

    #[test]
    fn a_round_stops_taking_once_it_holds_the_budget() {
        let envelope = |bytes: usize| {
            let mut message = raft::prelude::Message::default();
            let entry = raft::prelude::Entry {
                data: vec![0u8; bytes].into(),
                ..Default::default()
            };
            message.set_entries(vec![entry].into());
            Envelope { group: 2, message }
        };
        let cost = |e: &Envelope| crate::raft::transport::inbox::payload_bytes(e);
        let limit = RoundLimit {
            bytes: 1000,
            envelopes: 10,
        };
        // Readers refill as fast as the loop takes: an inbox of 1,000 more
        // (finite, so a missing limit fails here instead of hanging).
        let refilled = |bytes: usize| {
            let mut more = 1000;
            move || {
                (more > 0).then(|| {
                    more -= 1;
                    envelope(bytes)
                })
            }
        };
        let mut round = Vec::new();
        let taken = take_round(envelope(300), limit, refilled(300), cost, &mut round);
        assert_eq!((taken, round.len()), (1200, 4));
        // Envelopes that cost nothing (heartbeats) end a round by count.
        round.clear();
        let taken = take_round(envelope(0), limit, refilled(0), cost, &mut round);
        assert_eq!((taken, round.len()), (0, 10));
        // An inbox that empties first ends the round.
        round.clear();
        let mut left = vec![envelope(0), envelope(0), envelope(100)];
        let taken = take_round(envelope(0), limit, || left.pop(), cost, &mut round);
        assert_eq!((taken, round.len()), (100, 4));
        // An envelope that costs the whole budget is a round of its own.
        round.clear();
        let taken = take_round(
            envelope(1000),
            limit,
            || Some(envelope(1)),
            cost,
            &mut round,
        );
        assert_eq!((taken, round.len()), (1000, 1));
    }

    #[test]
    fn proposal_ids_of_another_life_are_not_ours() {
        let c = ProposalContext::new(3, 77, 1);
        let decoded = ProposalContext::decode(&c.encode()).unwrap();
        assert_eq!(decoded, c);
        assert!(decoded.is_ours(3, 77));
        assert!(!decoded.is_ours(3, 78), "same id, earlier boot");
        assert!(!decoded.is_ours(2, 77));
        // The first wave's 16-byte contexts never match.
        assert_eq!(ProposalContext::decode(&[0; 16]), None);
    }

    #[test]
    fn early_messages_are_bounded_and_age_out() {
        let mut early = EarlyMessages::default();
        let t0 = Instant::now();
        let envelope = |group| Envelope {
            group,
            message: Message::default(),
        };
        for _ in 0..EARLY_PER_GROUP + 10 {
            early.hold(envelope(5), t0);
        }
        early.hold(envelope(6), t0 + Duration::from_secs(4));
        assert_eq!(early.take(5).len(), EARLY_PER_GROUP);
        early.expire(t0 + EARLY_AGE + Duration::from_secs(1));
        assert_eq!(early.take(6).len(), 1, "still young");
        early.hold(envelope(7), t0);
        early.expire(t0 + EARLY_AGE + Duration::from_secs(1));
        assert!(early.take(7).is_empty());
        assert_eq!(early.bytes, 0);
    }
}
