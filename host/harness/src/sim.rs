//! The simulated cluster: nodes, topics, replicas, assignments, and a
//! stand-in for Raft that elects deterministically. No sockets, no clocks:
//! time is `now_ms`, moved by the script.
//!
//! Like a cluster, and unlike an instant simulation, writes and transfers
//! may take time ([`Timing`]): a `set-leader` is validated when the plugin
//! calls it but lands `write_latency_ms` later (fenced again then, as the
//! broker's metadata group does), and a transfer is acted on
//! `transfer_latency_ms` after it was asked for. Until then the stored
//! assignments, and the leader counts read from them, lag Raft. A revived
//! node catches up for `catch_up_ms`, and Raft drops a transfer to it
//! meanwhile (raft-rs aborts a transfer to a replica that is behind): a
//! move that does not happen, with no event to say so.
//!
//! Raft rules of the simulation:
//! - a partition has a leader only while a majority of its replicas is alive;
//! - when its leader dies, the first alive replica in replica order wins the
//!   next term (preferred replica first);
//! - a transfer to an alive, caught-up replica that is not leading elects it
//!   at the next term; other transfers are ignored (as Raft would);
//! - every alive replica observes every change: the new leader sees
//!   `became-leader`, the old one `stepped-down`, the others
//!   `leader-observed`; a leaderless partition's replicas see `leader-lost`.

use leaderhook_hooks::contract::Level;
use leaderhook_hooks::fence::{self, PartitionView};
use leaderhook_hooks::{
    Capabilities, CapabilityError, LeadershipEvent, LogTap, NodeId, NodeInfo, PartitionAssignment,
    PartitionId, Transition,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPartition {
    pub replicas: Vec<NodeId>,
    /// Raft's truth.
    pub raft_leader: Option<NodeId>,
    pub term: u64,
    /// The stored assignment (what Kafka Metadata would answer).
    pub leader: Option<NodeId>,
    pub epoch: u64,
}

impl SimPartition {
    /// What a host knows of it: every simulated node knows Raft's truth.
    pub fn view(&self) -> PartitionView {
        PartitionView {
            replicas: self.replicas.clone(),
            leader: self.leader,
            epoch: self.epoch,
            highest_term: self.term,
            elected: self.raft_leader,
        }
    }
}

/// A transfer a plugin asked for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TransferRequest {
    pub partition: PartitionId,
    pub to: NodeId,
    pub by: NodeId,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub sink: String,
    pub payload: String,
    pub by: NodeId,
}

/// A line a plugin logged on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub node: NodeId,
    pub plugin: String,
    pub level: Level,
    pub message: String,
    pub at_ms: u64,
}

/// How long effects take in the simulated cluster (all zero: at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// From a `set-leader` call to the stored assignment changing.
    pub write_latency_ms: u64,
    /// From a `transfer` call to Raft acting on it.
    pub transfer_latency_ms: u64,
    /// How long a revived node is behind: transfers to it are dropped.
    pub catch_up_ms: u64,
}

/// A `set-leader` accepted but not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingWrite {
    partition: PartitionId,
    leader: NodeId,
    epoch: u64,
    due_ms: u64,
}

/// Most log lines the simulation keeps (the oldest go first); each line is
/// already bounded by the runtime (4 KiB).
pub const MAX_LOG_LINES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct SimState {
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    pub partitions: BTreeMap<PartitionId, SimPartition>,
    pub sinks: BTreeSet<String>,
    pub now_ms: u64,
    pub transfers: Vec<TransferRequest>,
    /// Transfers requested but not yet acted on by the simulated Raft.
    pub pending_transfers: Vec<TransferRequest>,
    pub notifications: Vec<Notification>,
    /// Events waiting for delivery, per observing node.
    pub outbox: BTreeMap<NodeId, Vec<LeadershipEvent>>,
    pub timing: Timing,
    pending_writes: Vec<PendingWrite>,
    /// Until when a revived node is behind.
    catching_up: BTreeMap<NodeId, u64>,
    /// Transfers Raft dropped because their target was behind.
    pub dropped_transfers: Vec<TransferRequest>,
    pub logs: std::collections::VecDeque<LogLine>,
}

/// Shared by every simulated node's [`NodeView`].
#[derive(Debug, Default)]
pub struct Sim {
    state: Mutex<SimState>,
}

impl Sim {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SimState {
    pub fn alive(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| n.alive)
    }

    pub fn has_quorum(&self, replicas: &[NodeId]) -> bool {
        let alive = replicas.iter().filter(|&&r| self.alive(r)).count();
        alive * 2 > replicas.len()
    }

    /// Queues `transition` events for every alive replica of `partition`.
    fn announce(&mut self, partition: &PartitionId, previous: Option<NodeId>) {
        let p = &self.partitions[partition];
        let (leader, term, replicas) = (p.raft_leader, p.term, p.replicas.clone());
        for &node in &replicas {
            if !self.alive(node) {
                continue;
            }
            let transition = match leader {
                Some(l) if l == node => Transition::BecameLeader,
                Some(_) if previous == Some(node) => Transition::SteppedDown,
                Some(_) => Transition::LeaderObserved,
                None if previous == Some(node) => Transition::SteppedDown,
                None => Transition::LeaderLost,
            };
            let event = LeadershipEvent {
                partition: partition.clone(),
                transition,
                observer: node,
                leader,
                previous_leader: previous,
                term,
                replicas: replicas.clone(),
                at_ms: self.now_ms,
            };
            self.outbox.entry(node).or_default().push(event);
        }
    }

    /// Raft elects `leader` at the next term.
    pub fn elect(&mut self, partition: &PartitionId, leader: NodeId) {
        let p = self.partitions.get_mut(partition).expect("known partition");
        let previous = p.raft_leader;
        p.term += 1;
        p.raft_leader = Some(leader);
        self.announce(partition, previous);
    }

    /// Elects the first alive replica if a quorum is alive; otherwise the
    /// partition stays leaderless.
    fn elect_first_alive(&mut self, partition: &PartitionId) {
        let replicas = self.partitions[partition].replicas.clone();
        if !self.has_quorum(&replicas) {
            return;
        }
        if let Some(&leader) = replicas.iter().find(|&&r| self.alive(r)) {
            self.elect(partition, leader);
        }
    }

    pub fn kill(&mut self, node: NodeId) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.alive = false;
        }
        self.outbox.remove(&node);
        let led: Vec<PartitionId> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.raft_leader == Some(node))
            .map(|(id, _)| id.clone())
            .collect();
        for partition in led {
            // Followers lose the leader, then the election runs.
            self.partitions
                .get_mut(&partition)
                .expect("listed")
                .raft_leader = None;
            self.announce(&partition, Some(node));
            self.elect_first_alive(&partition);
        }
        // Partitions that just lost their quorum: their leader can no longer
        // commit; check-quorum makes it step down.
        let lost: Vec<PartitionId> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.raft_leader.is_some() && !self.has_quorum(&p.replicas))
            .map(|(id, _)| id.clone())
            .collect();
        for partition in lost {
            let p = self.partitions.get_mut(&partition).expect("listed");
            let previous = p.raft_leader.take();
            self.announce(&partition, previous);
        }
    }

    pub fn revive(&mut self, node: NodeId) {
        if let Some(n) = self.nodes.get_mut(&node) {
            n.alive = true;
        }
        if self.timing.catch_up_ms > 0 {
            let until = self.now_ms.saturating_add(self.timing.catch_up_ms);
            self.catching_up.insert(node, until);
        }
        let hosted: Vec<PartitionId> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.replicas.contains(&node))
            .map(|(id, _)| id.clone())
            .collect();
        for partition in hosted {
            let p = &self.partitions[&partition];
            match p.raft_leader {
                // The revived replica learns the current leader.
                Some(leader) => {
                    let event = LeadershipEvent {
                        partition: partition.clone(),
                        transition: Transition::LeaderObserved,
                        observer: node,
                        leader: Some(leader),
                        previous_leader: None,
                        term: p.term,
                        replicas: p.replicas.clone(),
                        at_ms: self.now_ms,
                    };
                    self.outbox.entry(node).or_default().push(event);
                }
                None => self.elect_first_alive(&partition),
            }
        }
    }

    /// Creates a topic; each partition's preferred replica wins term 1.
    pub fn create_topic(&mut self, name: &str, replicas: Vec<Vec<NodeId>>) {
        for (p, replicas) in replicas.into_iter().enumerate() {
            let id = PartitionId::new(name, p as u32);
            self.partitions.insert(
                id.clone(),
                SimPartition {
                    replicas,
                    raft_leader: None,
                    term: 0,
                    leader: None,
                    epoch: 0,
                },
            );
            self.elect_first_alive(&id);
        }
    }

    pub fn delete_topic(&mut self, name: &str) {
        self.partitions.retain(|id, _| id.topic != name);
    }

    /// Round-robin placement over the alive nodes, as a broker would.
    pub fn place(&self, partitions: u32, replication: usize) -> Result<Vec<Vec<NodeId>>, String> {
        let alive: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.alive)
            .map(|n| n.id)
            .collect();
        if replication == 0 || replication > alive.len() {
            return Err(format!(
                "replication factor {replication} needs that many alive nodes ({} alive)",
                alive.len()
            ));
        }
        Ok((0..partitions as usize)
            .map(|p| {
                (0..replication)
                    .map(|i| alive[(p + i) % alive.len()])
                    .collect()
            })
            .collect())
    }

    /// Applies the writes and acts on the transfers that are due by now, in
    /// the order they were made. Returns how many transfers moved a leader.
    pub fn apply_due(&mut self) -> usize {
        let now = self.now_ms;
        let (due, later) = std::mem::take(&mut self.pending_writes)
            .into_iter()
            .partition::<Vec<_>, _>(|w| w.due_ms <= now);
        self.pending_writes = later;
        for write in due {
            self.write(&write.partition, write.leader, write.epoch);
        }
        let (due, later) = std::mem::take(&mut self.pending_transfers)
            .into_iter()
            .partition::<Vec<_>, _>(|t| {
                t.at_ms.saturating_add(self.timing.transfer_latency_ms) <= now
            });
        self.pending_transfers = later;
        let mut moved = 0;
        for request in due {
            let Some(p) = self.partitions.get(&request.partition) else {
                continue;
            };
            let valid = p.replicas.contains(&request.to)
                && self.alive(request.to)
                && p.raft_leader.is_some()
                && p.raft_leader != Some(request.to);
            if !valid {
                continue;
            }
            if self.catching_up.get(&request.to).is_some_and(|&t| now < t) {
                self.dropped_transfers.push(request);
                continue;
            }
            self.elect(&request.partition, request.to);
            moved += 1;
        }
        moved
    }

    /// When the next pending write or transfer is due, if any is pending.
    pub fn next_due(&self) -> Option<u64> {
        let writes = self.pending_writes.iter().map(|w| w.due_ms);
        let transfers = self
            .pending_transfers
            .iter()
            .map(|t| t.at_ms.saturating_add(self.timing.transfer_latency_ms));
        writes.chain(transfers).min()
    }

    /// Stores a write if the fence still lets it through (checked again when
    /// it lands, as the broker's metadata group does).
    fn write(&mut self, partition: &PartitionId, leader: NodeId, epoch: u64) {
        let Some(p) = self.partitions.get_mut(partition) else {
            return;
        };
        // Fenced again at apply time, as the broker's metadata group does.
        if fence::check_set_leader(&p.view(), leader, epoch).is_ok() {
            p.leader = Some(leader);
            p.epoch = epoch;
        }
    }

    pub(crate) fn record_log(&mut self, line: LogLine) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.logs.pop_front();
        }
        self.logs.push_back(line);
    }

    pub fn leader_counts(&self) -> BTreeMap<NodeId, u32> {
        let mut counts: BTreeMap<NodeId, u32> = self.nodes.keys().map(|&n| (n, 0)).collect();
        for p in self.partitions.values() {
            if let Some(l) = p.leader {
                *counts.entry(l).or_default() += 1;
            }
        }
        counts
    }
}

/// One simulated node's view of the cluster: what its plugins see.
pub struct NodeView {
    pub node: NodeId,
    pub sim: Arc<Sim>,
}

impl Capabilities for NodeView {
    fn local_node(&self) -> NodeId {
        self.node
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        self.sim.lock().nodes.values().cloned().collect()
    }

    fn partition(&self, partition: &PartitionId) -> Option<PartitionView> {
        self.sim
            .lock()
            .partitions
            .get(partition)
            .map(SimPartition::view)
    }

    fn assignments(&self) -> Vec<PartitionAssignment> {
        self.sim
            .lock()
            .partitions
            .iter()
            .map(|(id, p)| p.view().assignment(id.clone()))
            .collect()
    }

    fn set_leader(
        &self,
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<(), CapabilityError> {
        let mut state = self.sim.lock();
        if !state.partitions.contains_key(partition) {
            return Err(CapabilityError::UnknownPartition);
        }
        let latency = state.timing.write_latency_ms;
        if latency == 0 {
            state.write(partition, leader, epoch);
        } else {
            let due_ms = state.now_ms.saturating_add(latency);
            state.pending_writes.push(PendingWrite {
                partition: partition.clone(),
                leader,
                epoch,
                due_ms,
            });
        }
        Ok(())
    }

    fn transfer_leader(&self, partition: &PartitionId, to: NodeId) -> Result<(), CapabilityError> {
        let mut state = self.sim.lock();
        let request = TransferRequest {
            partition: partition.clone(),
            to,
            by: self.node,
            at_ms: state.now_ms,
        };
        state.transfers.push(request.clone());
        state.pending_transfers.push(request);
        Ok(())
    }

    fn has_sink(&self, sink: &str) -> bool {
        self.sim.lock().sinks.contains(sink)
    }

    fn notify(&self, sink: &str, payload: &str) -> Result<(), CapabilityError> {
        self.sim.lock().notifications.push(Notification {
            sink: sink.to_owned(),
            payload: payload.to_owned(),
            by: self.node,
        });
        Ok(())
    }
}

/// One simulated node's plugins' log lines, kept in the simulation.
pub(crate) struct NodeLogTap {
    pub node: NodeId,
    pub sim: Arc<Sim>,
}

impl LogTap for NodeLogTap {
    fn line(&self, plugin: &str, level: Level, message: &str) {
        let mut state = self.sim.lock();
        let at_ms = state.now_ms;
        state.record_log(LogLine {
            node: self.node,
            plugin: plugin.to_owned(),
            level,
            message: message.to_owned(),
            at_ms,
        });
    }
}
