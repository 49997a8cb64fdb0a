//! The broker's side of the plugin capabilities: reads from the replicated
//! metadata and the local Raft replicas; writes become metadata proposals,
//! transfers go to the partition's Raft group. Every call only queues, and
//! what a plugin can make the broker do is bounded here: one assignment
//! write in flight per partition ([`inflight`]), and per partition one
//! transfer per cooldown.

pub mod inflight;

use crate::metadata::{Command, PartitionMeta};
use crate::raft::handle::{RaftCommand, RaftError, RaftHandle};
use crate::raft::shared::{ReplicaStatus, Shared};
use crate::sinks::Sinks;
use inflight::{Admit, InflightWrites, LeaderWrite};
use leaderhook_hooks::{
    Backlog, Capabilities, CapabilityError, NodeId, NodeInfo, PartitionAssignment, PartitionId,
    PartitionView,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct BrokerCaps {
    pub node: NodeId,
    /// Every node with its rack.
    pub nodes: Vec<(NodeId, Option<String>)>,
    pub shared: Arc<Shared>,
    pub raft: RaftHandle,
    pub sinks: Sinks,
    pub inflight: Arc<InflightWrites>,
    /// A plugin's transfer of a partition is refused within this long of
    /// this node's last transfer request for it: each request may cost an
    /// election, so no plugin can cause an election storm.
    pub transfer_cooldown: Duration,
    pub last_transfer: Mutex<HashMap<u64, Instant>>,
}

impl Capabilities for BrokerCaps {
    fn local_node(&self) -> NodeId {
        self.node
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        // Liveness as this node sees it: peers heard from within the
        // session timeout (every node messages every other each heartbeat).
        let live = self.shared.live_nodes();
        self.nodes
            .iter()
            .map(|(id, rack)| NodeInfo {
                id: *id,
                alive: live.contains(id),
                rack: rack.clone(),
            })
            .collect()
    }

    fn partition(&self, partition: &PartitionId) -> Option<PartitionView> {
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let meta = metadata.partition(partition)?;
        let replicas = self
            .shared
            .replicas
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Some(view(meta, &replicas))
    }

    fn assignments(&self) -> Vec<PartitionAssignment> {
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let replicas = self
            .shared
            .replicas
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        metadata
            .partitions()
            .map(|(partition, meta)| view(meta, &replicas).assignment(partition))
            .collect()
    }

    fn set_leader(
        &self,
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<(), CapabilityError> {
        // Resolved to the topic's id now: if the topic is deleted (and
        // perhaps re-created) before this applies, it is refused there.
        let key = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .key_of(partition)
            .ok_or(CapabilityError::UnknownPartition)?;
        // Vouch for the write when this node knows Raft elected `leader` in
        // term `epoch`: such a write corrects a wrong name at that epoch.
        let attested = self
            .partition(partition)
            .is_some_and(|view| view.elected_at(epoch) == Some(leader));
        let write = LeaderWrite {
            partition: key,
            leader,
            epoch,
            attested,
        };
        match self.inflight.admit(write, Instant::now()) {
            Admit::Held => Ok(()),
            Admit::Propose => {
                let command = Command::SetLeader {
                    partition: key,
                    leader,
                    epoch,
                    attested,
                };
                self.raft
                    .send(RaftCommand::Propose(command, None))
                    .map_err(|e| {
                        self.inflight.dropped(key);
                        unqueued(e)
                    })
            }
        }
    }

    fn transfer_leader(&self, partition: &PartitionId, to: NodeId) -> Result<(), CapabilityError> {
        let group = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .partition(partition)
            .map(|p| p.group)
            .ok_or(CapabilityError::UnknownPartition)?;
        let local = self
            .shared
            .replicas
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&group);
        if !local {
            return Err(CapabilityError::NoLocalReplica { node: self.node });
        }
        let now = Instant::now();
        let mut last = self
            .last_transfer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = last
            .get(&group)
            .map(|at| now.duration_since(*at))
            .filter(|since| *since < self.transfer_cooldown)
        {
            return Err(CapabilityError::TransferCooldown {
                since,
                cooldown: self.transfer_cooldown,
            });
        }
        // Forget partitions that have cooled down, so the map stays small.
        last.retain(|_, at| now.duration_since(*at) < self.transfer_cooldown);
        last.insert(group, now);
        drop(last);
        self.raft
            .send(RaftCommand::Transfer { group, to })
            .map_err(unqueued)
    }

    fn has_sink(&self, sink: &str) -> bool {
        self.sinks.has(sink)
    }

    fn notify(&self, sink: &str, payload: &str) -> Result<(), CapabilityError> {
        self.sinks
            .emit(sink, payload)
            .map_err(CapabilityError::Full)
    }
}

/// What this node knows of a partition: the stored assignment, and the
/// local replica's term and the leader it knows for that term (Raft's
/// leader id always belongs to the replica's current term).
fn view(meta: &PartitionMeta, replicas: &BTreeMap<u64, ReplicaStatus>) -> PartitionView {
    let (local_term, local_leader) = replicas
        .get(&meta.group)
        .map_or((0, None), |s| (s.term, s.leader));
    let highest_term = local_term.max(meta.epoch);
    PartitionView {
        replicas: meta.replicas.clone(),
        leader: meta.leader,
        epoch: meta.epoch,
        highest_term,
        elected: local_leader.filter(|_| local_term == highest_term),
    }
}

/// Why a command did not reach the Raft loop's queue (`send` fails only so).
fn unqueued(e: RaftError) -> CapabilityError {
    match e {
        RaftError::Stopped => CapabilityError::Stopped,
        RaftError::Busy | RaftError::Dropped | RaftError::TimedOut(_) => {
            CapabilityError::Full(Backlog::RaftCommands)
        }
    }
}
