//! The world as a plugin sees it: one trait, implemented by the broker (over
//! the replicated metadata and Raft) and by in-memory clusters in tests and
//! the harness. The runtime never imports the broker.
//!
//! Calls must be quick: writes, transfers and notifications validate and
//! enqueue; their effects happen asynchronously, in order. The runtime has
//! already checked grants and term fencing before a write reaches
//! [`Capabilities::set_leader`].

use crate::contract::{LeaderCount, NodeId, NodeInfo, PartitionAssignment, PartitionId};
use crate::fence::PartitionView;

pub trait Capabilities: Send + Sync + 'static {
    /// The node the plugins run on.
    fn local_node(&self) -> NodeId;
    /// Every node of the cluster.
    fn nodes(&self) -> Vec<NodeInfo>;
    /// One partition's replicas, stored assignment and highest term seen.
    fn partition(&self, partition: &PartitionId) -> Option<PartitionView>;
    /// Every partition's stored assignment.
    fn assignments(&self) -> Vec<PartitionAssignment>;
    /// Leaders per node according to the stored assignments; every node
    /// appears, leading nothing or not.
    fn leader_counts(&self) -> Vec<LeaderCount> {
        let mut counts: Vec<LeaderCount> = self
            .nodes()
            .iter()
            .map(|n| LeaderCount {
                node: n.id,
                leaders: 0,
            })
            .collect();
        for a in self.assignments() {
            if let Some(c) = a
                .leader
                .and_then(|l| counts.iter_mut().find(|c| c.node == l))
            {
                c.leaders += 1;
            }
        }
        counts
    }
    /// Queue a term-fenced write (already validated by the runtime).
    fn set_leader(&self, partition: &PartitionId, leader: NodeId, epoch: u64)
    -> Result<(), String>;
    /// Queue a leadership transfer request to the partition's Raft group.
    fn transfer_leader(&self, partition: &PartitionId, to: NodeId) -> Result<(), String>;
    /// Whether the operator configured a sink by this name.
    fn has_sink(&self, sink: &str) -> bool;
    /// Queue a notification to a configured sink.
    fn notify(&self, sink: &str, payload: &str) -> Result<(), String>;
}
