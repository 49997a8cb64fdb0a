//! The SDK's own types: what a hook sees of events, the cluster and the
//! host's answers. Generated bindings never appear in the public API.

use serde::Deserialize;
use std::fmt;

/// A broker node's id.
pub type NodeId = u64;

/// One partition of a topic. Displays as `topic-partition`, like Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The topic's name.
    pub topic: String,
    /// The partition's index within the topic.
    pub partition: u32,
}

impl PartitionId {
    /// A partition id from a topic name and a partition index.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What a replica saw change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The observer's replica became the Raft leader.
    BecameLeader,
    /// The observer's replica was leader and no longer is.
    SteppedDown,
    /// The observer (a follower) learned of a new leader.
    LeaderObserved,
    /// The observer (a follower) lost its leader: an election is running.
    LeaderLost,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transition::BecameLeader => "became-leader",
            Transition::SteppedDown => "stepped-down",
            Transition::LeaderObserved => "leader-observed",
            Transition::LeaderLost => "leader-lost",
        })
    }
}

/// A change of a partition's leadership, as one replica saw it.
///
/// A partition's events reach a plugin in term order; different partitions
/// may share a batch. Events can arrive late or twice (and under a storm the
/// host may coalesce a partition's events to the newest), so a hook should be
/// idempotent and rely on term fencing rather than on seeing every event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeadershipEvent {
    /// The partition whose leadership changed.
    pub partition: PartitionId,
    /// What the observer saw change.
    pub transition: Transition,
    /// The node whose replica saw the change (the node running the plugin).
    pub observer: NodeId,
    /// The leader after the change; `None` while an election is running.
    pub leader: Option<NodeId>,
    /// The leader before the change, if the observer knew one.
    pub previous_leader: Option<NodeId>,
    /// The Raft term, which is also the Kafka leader epoch.
    pub term: u64,
    /// The partition's replicas, preferred replica first.
    pub replicas: Vec<NodeId>,
    /// Milliseconds since the Unix epoch when the observer saw the change.
    pub at_ms: u64,
}

/// A partition's stored assignment: what Kafka Metadata answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The partition.
    pub partition: PartitionId,
    /// Its replicas, preferred replica first.
    pub replicas: Vec<NodeId>,
    /// The stored leader, if any.
    pub leader: Option<NodeId>,
    /// The epoch (Raft term) the leader was written at.
    pub epoch: u64,
}

/// A broker node as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// Whether this node currently considers it alive.
    pub alive: bool,
    /// The node's rack, if configured.
    pub rack: Option<String>,
}

/// How many partitions a node leads, per the stored assignments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderCount {
    /// The node.
    pub node: NodeId,
    /// The number of partitions whose stored leader is this node.
    pub leaders: u32,
}

/// Why the host refused a capability call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapError {
    /// The operator did not grant this capability to the plugin (carries the
    /// capability's name, for example `"leadership"`).
    NotGranted(String),
    /// The partition does not exist.
    UnknownPartition,
    /// The named node is not a replica of the partition.
    NotAReplica(NodeId),
    /// The epoch is lower than the stored one (carries the stored epoch).
    StaleEpoch(u64),
    /// The epoch is higher than any term the host has seen (carries that term).
    FutureEpoch(u64),
    /// The sink is not configured on this node (carries the sink's name).
    UnknownSink(String),
    /// The call was valid but could not be queued (for example a full queue).
    Unavailable(String),
    /// A write named a node Raft did not elect at that term (carries the node
    /// Raft elected). Retrying the same write cannot succeed.
    NotElected(NodeId),
    /// The plugin used up its budget for this call; a later batch or second
    /// may succeed.
    OverQuota(Quota),
    /// The partition's leadership moved recently; the host accepts the next
    /// transfer after this many milliseconds.
    Cooldown(u64),
}

/// Which budget a refused call exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaWindow {
    /// Per call of the hook (`limits.*_per_batch`): renewed with the next
    /// batch or tick.
    Batch,
    /// Per second (`limits.*_per_sec`).
    Second,
}

/// The budget a refused call went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    /// The calls the budget allows per window.
    pub limit: u32,
    /// The window.
    pub window: QuotaWindow,
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::NotGranted(cap) => write!(f, "not granted: {cap}"),
            CapError::UnknownPartition => f.write_str("unknown partition"),
            CapError::NotAReplica(node) => {
                write!(f, "node {node} is not a replica of the partition")
            }
            CapError::StaleEpoch(stored) => write!(f, "stale epoch (stored {stored})"),
            CapError::FutureEpoch(known) => {
                write!(f, "future epoch (highest known term {known})")
            }
            CapError::UnknownSink(sink) => write!(f, "unknown sink: {sink}"),
            CapError::Unavailable(why) => write!(f, "unavailable: {why}"),
            CapError::NotElected(elected) => {
                write!(
                    f,
                    "not the leader Raft elected in that term (node {elected} is)"
                )
            }
            CapError::OverQuota(Quota { limit, window }) => {
                let window = match window {
                    QuotaWindow::Batch => "batch",
                    QuotaWindow::Second => "second",
                };
                write!(f, "over quota ({limit} calls per {window})")
            }
            CapError::Cooldown(ms) => write!(f, "cooldown: next transfer accepted in {ms} ms"),
        }
    }
}

impl std::error::Error for CapError {}

/// What a successful [`assignments::set_leader`](crate::assignments::set_leader) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// The write was accepted and queued.
    Queued,
    /// The assignment already names this leader at this epoch: nothing to do.
    Unchanged,
}

/// A log level for [`log::log`](crate::log::log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Very verbose diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

/// The configuration of a hook that takes none. Any config table is accepted
/// and ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NoConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_displays_like_kafka() {
        assert_eq!(PartitionId::new("orders", 3).to_string(), "orders-3");
    }

    #[test]
    fn cap_error_messages() {
        assert_eq!(
            CapError::NotGranted("leadership".into()).to_string(),
            "not granted: leadership"
        );
        assert_eq!(
            CapError::StaleEpoch(7).to_string(),
            "stale epoch (stored 7)"
        );
        assert_eq!(
            CapError::OverQuota(Quota {
                limit: 10,
                window: QuotaWindow::Batch
            })
            .to_string(),
            "over quota (10 calls per batch)"
        );
        assert_eq!(
            CapError::NotElected(2).to_string(),
            "not the leader Raft elected in that term (node 2 is)"
        );
        let _: &dyn std::error::Error = &CapError::UnknownPartition;
    }
}
