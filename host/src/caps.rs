//! The broker's side of the plugin capabilities: reads from the replicated
//! metadata and the local Raft replicas; writes become metadata proposals,
//! transfers go to the partition's Raft group. Every call only queues.

use crate::metadata::Command;
use crate::raft::node::{RaftCommand, RaftHandle, Shared};
use crate::raft::transport::Transport;
use crate::sinks::Sinks;
use leaderhook_hooks::{
    Capabilities, NodeId, NodeInfo, PartitionAssignment, PartitionId, PartitionView,
};
use std::sync::Arc;

pub struct BrokerCaps {
    pub node: NodeId,
    /// Every node with its rack.
    pub nodes: Vec<(NodeId, Option<String>)>,
    pub shared: Arc<Shared>,
    pub raft: RaftHandle,
    pub transport: Transport,
    pub sinks: Sinks,
}

impl Capabilities for BrokerCaps {
    fn local_node(&self) -> NodeId {
        self.node
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        // Liveness as this node sees it: itself, and the peers its Raft
        // transport holds a connection to (Raft heartbeats keep those busy,
        // so a dead peer's connection breaks within a heartbeat or two).
        let connected = self.transport.stats().connected_peers;
        self.nodes
            .iter()
            .map(|(id, rack)| NodeInfo {
                id: *id,
                alive: *id == self.node || connected.contains(id),
                rack: rack.clone(),
            })
            .collect()
    }

    fn partition(&self, partition: &PartitionId) -> Option<PartitionView> {
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let meta = metadata.partition(partition)?;
        // The local replica's term and the leader it knows for that term
        // (Raft's leader id always belongs to the replica's current term).
        let (local_term, local_leader) = self
            .shared
            .replicas
            .read()
            .ok()
            .and_then(|r| r.get(&meta.group).map(|s| (s.term, s.leader)))
            .unwrap_or((0, None));
        let highest_term = local_term.max(meta.epoch);
        Some(PartitionView {
            replicas: meta.replicas.clone(),
            leader: meta.leader,
            epoch: meta.epoch,
            highest_term,
            elected: local_leader.filter(|_| local_term == highest_term),
        })
    }

    fn assignments(&self) -> Vec<PartitionAssignment> {
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner());
        metadata
            .partitions()
            .map(|(partition, p)| PartitionAssignment {
                partition,
                replicas: p.replicas.clone(),
                leader: p.leader,
                epoch: p.epoch,
            })
            .collect()
    }

    fn set_leader(
        &self,
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<(), String> {
        // Vouch for the write when this node knows Raft elected `leader` in
        // term `epoch`: such a write corrects a wrong name at that epoch.
        let attested = self
            .partition(partition)
            .is_some_and(|view| view.elected_at(epoch) == Some(leader));
        self.raft.send(RaftCommand::Propose(
            Command::SetLeader {
                partition: partition.clone(),
                leader,
                epoch,
                attested,
            },
            None,
        ))
    }

    fn transfer_leader(&self, partition: &PartitionId, to: NodeId) -> Result<(), String> {
        let group = {
            let metadata = self
                .shared
                .metadata
                .read()
                .unwrap_or_else(|e| e.into_inner());
            metadata.partition(partition).map(|p| p.group)
        }
        .ok_or("unknown partition")?;
        let local = self
            .shared
            .replicas
            .read()
            .is_ok_and(|r| r.contains_key(&group));
        if !local {
            return Err(format!("node {} has no replica of {partition}", self.node));
        }
        self.raft.send(RaftCommand::Transfer { group, to })
    }

    fn has_sink(&self, sink: &str) -> bool {
        self.sinks.has(sink)
    }

    fn notify(&self, sink: &str, payload: &str) -> Result<(), String> {
        self.sinks.emit(sink, payload)
    }
}
