//! The world as a plugin sees it: one trait, implemented by the broker (over
//! the replicated metadata and Raft) and by in-memory clusters in tests and
//! the harness. The runtime never imports the broker.
//!
//! Calls must be quick: writes, transfers and notifications validate and
//! enqueue; their effects happen asynchronously, in order. The runtime has
//! already checked grants and term fencing before a write reaches
//! [`Capabilities::set_leader`]; what an implementation may still refuse is
//! a [`CapabilityError`].

use crate::contract::{CapError, LeaderCount, NodeId, NodeInfo, PartitionAssignment, PartitionId};
use crate::fence::PartitionView;
use std::time::Duration;

/// Why an implementation refused a write, transfer or notification the
/// runtime had already accepted (granted, within quota, fenced).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The partition is gone (its topic deleted since the runtime looked).
    #[error("unknown partition")]
    UnknownPartition,
    /// Transfers are asked of the local replica of the partition's group.
    #[error("node {node} has no replica of this partition")]
    NoLocalReplica { node: NodeId },
    /// Each transfer may cost an election: one per partition per cooldown.
    #[error(
        "a transfer was requested {} ms ago; the cooldown is {} ms",
        since.as_millis(),
        cooldown.as_millis()
    )]
    TransferCooldown { since: Duration, cooldown: Duration },
    /// A bounded queue between the call and its effect is full; a later
    /// call may succeed.
    #[error("{0}")]
    Full(Backlog),
    /// What applies the call has stopped (the node is shutting down).
    #[error("the node is stopping")]
    Stopped,
}

/// Which bounded queue refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Backlog {
    #[error("the Raft loop's queue is full; retry")]
    RaftCommands,
    #[error("the sink queue is full ({0} notifications waiting)")]
    Notifications(usize),
    #[error("the sink queue is full ({0} bytes of notifications waiting)")]
    NotificationBytes(usize),
}

impl CapabilityError {
    /// What the plugin is told (contract 0.1.0 has a case of its own only
    /// for an unknown partition; the rest is `unavailable` with this text).
    pub fn to_cap_error(&self) -> CapError {
        match self {
            CapabilityError::UnknownPartition => CapError::UnknownPartition,
            other => CapError::Unavailable(other.to_string()),
        }
    }
}

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
    fn set_leader(
        &self,
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<(), CapabilityError>;
    /// Queue a leadership transfer request to the partition's Raft group.
    fn transfer_leader(&self, partition: &PartitionId, to: NodeId) -> Result<(), CapabilityError>;
    /// Whether the operator configured a sink by this name.
    fn has_sink(&self, sink: &str) -> bool;
    /// Queue a notification to a configured sink.
    fn notify(&self, sink: &str, payload: &str) -> Result<(), CapabilityError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reaches_the_plugin_as_its_contract_case() {
        assert_eq!(
            CapabilityError::UnknownPartition.to_cap_error(),
            CapError::UnknownPartition
        );
        let cooldown = CapabilityError::TransferCooldown {
            since: Duration::from_millis(250),
            cooldown: Duration::from_secs(2),
        };
        assert_eq!(
            cooldown.to_cap_error(),
            CapError::Unavailable(
                "a transfer was requested 250 ms ago; the cooldown is 2000 ms".into()
            )
        );
        assert_eq!(
            CapabilityError::Full(Backlog::NotificationBytes(8)).to_cap_error(),
            CapError::Unavailable(
                "the sink queue is full (8 bytes of notifications waiting)".into()
            )
        );
    }
}
