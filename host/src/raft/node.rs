//! The Raft loop of one node: every Raft group it hosts (the metadata group
//! and one group per local partition replica) on one dedicated thread.
//!
//! Each round: step incoming messages, run queued commands, tick when due,
//! then handle the Ready of every group in raft-rs's order, with the log
//! writes of all groups persisted in one synced batch. Leadership changes
//! become events for the hook runtime, which never blocks this thread.

use crate::metadata::{Applied, Command, METADATA_GROUP, Metadata};
use crate::partition_log::PartitionLog;
use crate::raft::storage::{GroupStorage, LogStore, WriteBatch};
use crate::raft::transport::{self, Envelope, Transport};
use leaderhook_hooks::{
    HookRuntime, LeadershipEvent, NodeId, PartitionId, PartitionKey, Transition,
};
use raft::prelude::{Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Group id that carries no Raft message: it wakes the loop so a queued
/// command runs without waiting for the next tick, or carries the
/// transport's notice that a peer's connection ended.
pub const WAKE_GROUP: u64 = transport::LOCAL_GROUP;

/// After a peer's connection drops, how long the first surviving voter of
/// each group it led waits before campaigning (so the other survivors have
/// seen the drop too and will grant the pre-vote), and how much later each
/// next voter in id order tries if there is still no leader.
const FAST_CAMPAIGN_DELAY: Duration = Duration::from_millis(10);
const FAST_CAMPAIGN_STAGGER: Duration = Duration::from_millis(60);

#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How often leaders re-deliver leadership that the stored assignment
    /// does not show yet.
    pub resync: Duration,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 3,
            resync: Duration::from_secs(2),
        }
    }
}

/// What other threads see of a local replica.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaStatus {
    pub group: u64,
    pub partition: Option<PartitionId>,
    pub role: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Leader with an entry of its own term committed: may serve.
    pub serving: bool,
}

/// Shared read-only views, written by the Raft thread.
#[derive(Default)]
pub struct Shared {
    pub metadata: RwLock<Metadata>,
    pub replicas: RwLock<BTreeMap<u64, ReplicaStatus>>,
    /// Applied records of every local partition replica, by group.
    pub logs: RwLock<BTreeMap<u64, PartitionLog>>,
}

pub type Reply = Sender<Result<Applied, String>>;
/// Answer to an append: the batch's base offset once committed and applied.
pub type AppendReply = Sender<Result<i64, AppendError>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// This replica does not lead the group (or has not committed an entry
    /// of its term yet); carries the leader it knows.
    NotLeader(Option<NodeId>),
    UnknownGroup,
    /// Applied but refused (a malformed batch, an idempotent producer's
    /// sequence or epoch).
    Refused(crate::partition_log::Refused),
    /// Raft dropped the proposal.
    Dropped(String),
}

pub enum RaftCommand {
    /// Propose a metadata command; the reply comes once it is applied here.
    Propose(Command, Option<Reply>),
    /// Ask a partition's group to move leadership to `to`.
    Transfer { group: u64, to: NodeId },
    /// Append a Kafka record batch to a partition group this node leads.
    Append {
        group: u64,
        batch: Vec<u8>,
        reply: AppendReply,
    },
}

struct Group {
    raw: RawNode<GroupStorage>,
    /// Appends proposed here, by proposal id, waiting for their apply.
    appends: HashMap<u64, AppendReply>,
    /// (role, leader, term) last reported, to emit events on change.
    seen: (StateRole, u64, u64),
    serving: bool,
    /// The commit index at the previous ISR check: a follower that has not
    /// reached it since is out of sync.
    isr_mark: u64,
    /// While leading: when each peer was last heard from in this group.
    heard: HashMap<NodeId, Instant>,
}

pub struct RaftLoop {
    node: NodeId,
    cluster: Vec<NodeId>,
    settings: RaftSettings,
    store: LogStore,
    transport: Transport,
    inbox: Receiver<Envelope>,
    commands: Receiver<RaftCommand>,
    hooks: Arc<HookRuntime>,
    shared: Arc<Shared>,
    groups: BTreeMap<u64, Group>,
    pending: HashMap<u64, Reply>,
    /// (when, group, lost leader): campaigns scheduled by `peer_lost`.
    campaigns: Vec<(Instant, u64, NodeId)>,
    next_proposal: u64,
    logger: slog::Logger,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Handle to queue commands and wake the loop.
#[derive(Clone)]
pub struct RaftHandle {
    commands: Sender<RaftCommand>,
    wake: SyncSender<Envelope>,
}

impl RaftHandle {
    /// `wake` is a sender into the loop's inbox.
    pub fn new(commands: Sender<RaftCommand>, wake: SyncSender<Envelope>) -> Self {
        Self { commands, wake }
    }

    pub fn send(&self, command: RaftCommand) -> Result<(), String> {
        self.commands
            .send(command)
            .map_err(|_| "the Raft loop has stopped".to_string())?;
        // Full inbox: the loop is busy and will see the command anyway.
        let _ = self.wake.try_send(Envelope {
            group: WAKE_GROUP,
            message: Message::default(),
        });
        Ok(())
    }

    /// Proposes and waits (bounded) for the command to be applied locally.
    pub fn propose_and_wait(&self, command: Command, timeout: Duration) -> Result<Applied, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(RaftCommand::Propose(command, Some(tx)))?;
        rx.recv_timeout(timeout)
            .map_err(|_| format!("not committed within {timeout:?} (no metadata leader?)"))?
    }
}

impl RaftLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeId,
        cluster: Vec<NodeId>,
        settings: RaftSettings,
        store: LogStore,
        transport: Transport,
        inbox: Receiver<Envelope>,
        commands: Receiver<RaftCommand>,
        hooks: Arc<HookRuntime>,
        shared: Arc<Shared>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> anyhow::Result<Self> {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut this = Self {
            node,
            cluster,
            settings,
            store,
            transport,
            inbox,
            commands,
            hooks,
            shared,
            groups: BTreeMap::new(),
            pending: HashMap::new(),
            campaigns: Vec::new(),
            next_proposal: 1,
            logger,
            stop,
        };
        let voters = this.cluster.clone();
        this.open_group(METADATA_GROUP, &voters)?;
        Ok(this)
    }

    /// Opens (creating if new) the local replica of a group.
    fn open_group(&mut self, id: u64, voters: &[NodeId]) -> anyhow::Result<()> {
        if self.groups.contains_key(&id) {
            return Ok(());
        }
        let storage = self.store.group(id);
        storage.initialize(voters)?;
        let config = raft::Config {
            id: self.node,
            election_tick: self.settings.election_ticks,
            heartbeat_tick: self.settings.heartbeat_ticks,
            // The metadata state lives in memory and is rebuilt by replaying
            // the whole log on start, so it starts from index 0. Partition
            // groups carry no state-machine data yet.
            applied: 0,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        config.validate()?;
        let raw = RawNode::new(&config, storage, &self.logger)?;
        if id != METADATA_GROUP {
            // An empty partition has a log too (offsets 0..0), so ListOffsets
            // and Fetch answer it rather than "not leader".
            self.shared
                .logs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id)
                .or_default();
        }
        self.groups.insert(
            id,
            Group {
                raw,
                appends: HashMap::new(),
                seen: (StateRole::Follower, 0, 0),
                serving: false,
                isr_mark: 0,
                heard: HashMap::new(),
            },
        );
        Ok(())
    }

    fn close_group(&mut self, id: u64) {
        self.groups.remove(&id);
        if let Ok(mut replicas) = self.shared.replicas.write() {
            replicas.remove(&id);
        }
        if let Ok(mut logs) = self.shared.logs.write() {
            logs.remove(&id);
        }
        if let Err(e) = self.store.remove_group(id) {
            tracing::warn!(group = id, "cannot remove the group's log: {e:#}");
        }
    }

    /// Runs until the stop flag is set.
    pub fn run(mut self) {
        let mut next_tick = Instant::now() + self.settings.tick;
        let mut next_resync = Instant::now() + self.settings.resync;
        // The metadata leader this node knows (0: none). Plugin writes made
        // while the metadata group had no live leader were dropped or
        // forwarded to a dead one; a new leader re-delivers them at once.
        let mut metadata_leader = 0;
        while !self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            let next_campaign = self.campaigns.iter().map(|(at, _, _)| *at).min();
            let wake_at = next_campaign.map_or(next_tick, |at| at.min(next_tick));
            let wait = wake_at.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(wait) {
                Ok(envelope) => {
                    self.step(envelope);
                    while let Ok(envelope) = self.inbox.try_recv() {
                        self.step(envelope);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(command) = self.commands.try_recv() {
                self.command(command);
            }
            if Instant::now() >= next_tick {
                next_tick += self.settings.tick;
                for group in self.groups.values_mut() {
                    group.raw.tick();
                }
            }
            self.run_due_campaigns();
            self.on_ready();
            let leader = self
                .groups
                .get(&METADATA_GROUP)
                .map_or(0, |g| g.raw.raft.leader_id);
            let new_metadata_leader = leader != 0 && leader != metadata_leader;
            metadata_leader = leader;
            if new_metadata_leader || Instant::now() >= next_resync {
                next_resync = Instant::now() + self.settings.resync;
                self.resync();
            }
        }
    }

    fn step(&mut self, envelope: Envelope) {
        if envelope.group == WAKE_GROUP {
            if let Some(peer) = transport::lost_peer(&envelope) {
                self.peer_lost(peer);
            }
            return;
        }
        match self.groups.get_mut(&envelope.group) {
            Some(group) => {
                // Only a leader's ISR check reads this.
                if group.raw.raft.state == StateRole::Leader {
                    group.heard.insert(envelope.message.from, Instant::now());
                }
                if let Err(e) = group.raw.step(envelope.message) {
                    tracing::debug!(group = envelope.group, "step: {e}");
                }
            }
            // A group this node has not created yet (its topic's creation
            // is not applied here yet): Raft will retransmit.
            None => tracing::trace!(group = envelope.group, "message for an unknown group"),
        }
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
            let leaderless = raft.leader_id == peer || raft.leader_id == 0;
            if leaderless && raft.state == StateRole::Follower {
                let _ = group.raw.campaign();
            }
        }
    }

    fn command(&mut self, command: RaftCommand) {
        match command {
            RaftCommand::Propose(command, reply) => {
                let id = self.next_proposal;
                self.next_proposal += 1;
                let group = self
                    .groups
                    .get_mut(&METADATA_GROUP)
                    .expect("metadata group");
                match group
                    .raw
                    .propose(proposal_context(self.node, id), command.encode())
                {
                    Ok(()) => {
                        if let Some(reply) = reply {
                            self.pending.insert(id, reply);
                        }
                    }
                    Err(e) => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(format!("proposal dropped: {e}")));
                        }
                    }
                }
            }
            RaftCommand::Append {
                group: group_id,
                batch,
                reply,
            } => {
                let id = self.next_proposal;
                self.next_proposal += 1;
                let Some(group) = self.groups.get_mut(&group_id) else {
                    let _ = reply.send(Err(AppendError::UnknownGroup));
                    return;
                };
                // Only a leader that has committed an entry of its own term
                // accepts writes: it knows every earlier commit.
                if group.raw.raft.state != StateRole::Leader || !group.serving {
                    let leader = group.raw.raft.leader_id;
                    let _ = reply.send(Err(AppendError::NotLeader(
                        (leader != 0 && leader != self.node).then_some(leader),
                    )));
                    return;
                }
                match group.raw.propose(proposal_context(self.node, id), batch) {
                    Ok(()) => {
                        group.appends.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(AppendError::Dropped(e.to_string())));
                    }
                }
            }
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
        self.transport.send(std::mem::take(&mut outgoing));
        if !batch.is_empty()
            && let Err(e) = self.store.write(batch)
        {
            // Without a durable log this node must not ack anything.
            tracing::error!("raft log write failed, stopping the Raft loop: {e:#}");
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        for (id, mut ready, term) in readies {
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
        }
        self.transport.send(outgoing);
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
                group.serving = true;
            }
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            if group_id == METADATA_GROUP {
                self.apply_metadata(&entry);
            } else {
                self.apply_records(group_id, &entry);
            }
        }
    }

    fn apply_metadata(&mut self, entry: &Entry) {
        let outcome = match Command::decode(&entry.data) {
            Ok(command) => {
                let mut metadata = self
                    .shared
                    .metadata
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                metadata.apply(command)
            }
            Err(e) => Applied::Refused(e),
        };
        match &outcome {
            Applied::TopicCreated { groups } => {
                let to_open: Vec<(u64, Vec<NodeId>)> = {
                    let metadata = self
                        .shared
                        .metadata
                        .read()
                        .unwrap_or_else(|e| e.into_inner());
                    groups
                        .iter()
                        .filter_map(|g| metadata.partition_of_group(*g))
                        .filter(|(_, p)| p.replicas.contains(&self.node))
                        .map(|(_, p)| (p.group, p.replicas.clone()))
                        .collect()
                };
                for (group, replicas) in to_open {
                    if let Err(e) = self.open_group(group, &replicas) {
                        tracing::error!(group, "cannot open partition group: {e:#}");
                    }
                }
            }
            Applied::TopicDeleted { groups } => {
                for group in groups {
                    self.close_group(*group);
                }
            }
            Applied::LeaderSet | Applied::IsrSet | Applied::ProducerId(_) | Applied::Refused(_) => {
            }
        }
        if let Some(id) = own_proposal(self.node, &entry.context)
            && let Some(reply) = self.pending.remove(&id)
        {
            let _ = reply.send(Ok(outcome));
        }
    }

    fn apply_records(&mut self, group_id: u64, entry: &Entry) {
        let outcome = {
            let mut logs = self.shared.logs.write().unwrap_or_else(|e| e.into_inner());
            logs.entry(group_id).or_default().append(&entry.data)
        };
        if let Some(id) = own_proposal(self.node, &entry.context)
            && let Some(group) = self.groups.get_mut(&group_id)
            && let Some(reply) = group.appends.remove(&id)
        {
            let _ = reply.send(outcome.map_err(AppendError::Refused));
        }
    }

    /// Publishes the replica's status and emits a leadership event if its
    /// role, leader or term changed.
    fn observe(&mut self, id: u64, term: u64) {
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        let role = group.raw.raft.state;
        let leader = group.raw.raft.leader_id;
        let (old_role, old_leader, _) = group.seen;
        if role != StateRole::Leader {
            group.serving = false;
            // Appends still waiting will not be answered by this replica:
            // tell their clients now (they retry against the new leader).
            for (_, reply) in group.appends.drain() {
                let _ = reply.send(Err(AppendError::NotLeader((leader != 0).then_some(leader))));
            }
        }
        let status_changed = group.seen != (role, leader, term);
        group.seen = (role, leader, term);
        if id == METADATA_GROUP && !status_changed {
            return;
        }
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let partition = metadata
            .partition_of_group(id)
            .map(|(p, meta)| (p, meta.replicas.clone()));
        drop(metadata);
        if let Ok(mut replicas) = self.shared.replicas.write() {
            replicas.insert(
                id,
                ReplicaStatus {
                    group: id,
                    partition: partition.as_ref().map(|(p, _)| p.clone()),
                    role: format!("{role:?}"),
                    leader: (leader != 0).then_some(leader),
                    term,
                    serving: group.serving,
                },
            );
        }
        let Some((partition, replicas)) = partition else {
            return; // the metadata group: no plugin events
        };
        let transition = if role == StateRole::Leader && old_role != StateRole::Leader {
            Transition::BecameLeader
        } else if old_role == StateRole::Leader && role != StateRole::Leader {
            Transition::SteppedDown
        } else if role != StateRole::Leader && leader != old_leader {
            if leader == 0 {
                Transition::LeaderLost
            } else {
                Transition::LeaderObserved
            }
        } else {
            return;
        };
        self.hooks.submit(
            PartitionKey(id),
            LeadershipEvent {
                partition,
                transition,
                observer: self.node,
                leader: (leader != 0).then_some(leader),
                previous_leader: (old_leader != 0).then_some(old_leader),
                term,
                replicas,
                at_ms: now_ms(),
            },
        );
    }

    /// Re-delivers the leadership of every group this node leads whose
    /// stored assignment does not name it at its term: events can be lost
    /// (a full queue, a dropped proposal, a restart); this heals them.
    fn resync(&mut self) {
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut events = Vec::new();
        let mut isr_updates = Vec::new();
        let lag = self.settings.tick * self.settings.election_ticks as u32;
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
    metadata: &Metadata,
    lag: Duration,
) -> Option<Command> {
    if id == METADATA_GROUP || group.raw.raft.state != StateRole::Leader || !group.serving {
        return None;
    }
    let raft = &group.raw.raft;
    let mark = std::mem::replace(&mut group.isr_mark, raft.raft_log.committed);
    let (partition, meta) = metadata.partition_of_group(id)?;
    // Only the leader the assignment names may write; until the plugins
    // have assigned this node, the ISR waits.
    if meta.leader != Some(node) || meta.epoch != raft.term {
        return None;
    }
    let mut isr: Vec<NodeId> = raft
        .prs()
        .iter()
        .filter(|(peer, pr)| {
            let recent = group.heard.get(peer).is_some_and(|t| t.elapsed() < lag);
            **peer == node || (recent && pr.matched >= mark)
        })
        .map(|(peer, _)| *peer)
        .collect();
    isr.sort_unstable();
    (isr != meta.isr).then_some(Command::SetIsr {
        partition,
        isr,
        epoch: raft.term,
    })
}

/// An entry's context: who proposed it and the proposer's id for it, so
/// only the proposing node answers (forwarded proposals and entries of an
/// old leader carry another node's ids).
fn proposal_context(node: NodeId, id: u64) -> Vec<u8> {
    let mut context = node.to_le_bytes().to_vec();
    context.extend_from_slice(&id.to_le_bytes());
    context
}

fn own_proposal(node: NodeId, context: &[u8]) -> Option<u64> {
    if context.len() != 16 || context[..8] != node.to_le_bytes() {
        return None;
    }
    Some(u64::from_le_bytes(
        context[8..].try_into().expect("16 bytes"),
    ))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
