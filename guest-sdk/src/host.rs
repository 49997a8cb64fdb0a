//! Calls into the host, one module per contract interface. Each validates
//! and queues on the host's side: none waits on the network.

/// Plugin logging, routed to the host's log tagged with the plugin name.
pub mod log {
    use crate::bindings;
    use crate::types::Level;

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: impl AsRef<str>) {
        use bindings::log::Level as L;
        let level = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        bindings::log::log(level, message.as_ref());
    }

    /// Logs `message` at [`Level::Trace`].
    pub fn trace(message: impl AsRef<str>) {
        log(Level::Trace, message);
    }

    /// Logs `message` at [`Level::Debug`].
    pub fn debug(message: impl AsRef<str>) {
        log(Level::Debug, message);
    }

    /// Logs `message` at [`Level::Info`].
    pub fn info(message: impl AsRef<str>) {
        log(Level::Info, message);
    }

    /// Logs `message` at [`Level::Warn`].
    pub fn warn(message: impl AsRef<str>) {
        log(Level::Warn, message);
    }

    /// Logs `message` at [`Level::Error`].
    pub fn error(message: impl AsRef<str>) {
        log(Level::Error, message);
    }
}

/// A read-only view of the cluster as this node knows it. Always available.
pub mod cluster {
    use crate::bindings;
    use crate::convert::{assignment_from_wit, partition_to_wit};
    use crate::types::{Assignment, LeaderCount, NodeId, NodeInfo, PartitionId};

    /// The node this plugin runs on.
    pub fn local_node() -> NodeId {
        bindings::cluster::local_node()
    }

    /// Every node of the cluster.
    pub fn nodes() -> Vec<NodeInfo> {
        bindings::cluster::nodes()
            .into_iter()
            .map(|n| NodeInfo {
                id: n.id,
                alive: n.alive,
                rack: n.rack,
            })
            .collect()
    }

    /// One partition's stored assignment; `None` if the partition does not
    /// exist.
    pub fn assignment(partition: &PartitionId) -> Option<Assignment> {
        bindings::cluster::assignment(&partition_to_wit(partition)).map(assignment_from_wit)
    }

    /// Every partition's stored assignment.
    pub fn assignments() -> Vec<Assignment> {
        bindings::cluster::assignments()
            .into_iter()
            .map(assignment_from_wit)
            .collect()
    }

    /// How many partitions each node leads, per the stored assignments.
    pub fn leader_counts() -> Vec<LeaderCount> {
        bindings::cluster::leader_counts()
            .into_iter()
            .map(|c| LeaderCount {
                node: c.node,
                leaders: c.leaders,
            })
            .collect()
    }
}

/// Writes to the replicated partition assignments (grant: `assignments`).
pub mod assignments {
    use crate::bindings;
    use crate::convert::{cap_error_from_wit, partition_to_wit, write_outcome_from_wit};
    use crate::types::{CapError, NodeId, PartitionId, WriteOutcome};

    /// Names `leader` as the partition's leader at `epoch` (a Raft term).
    ///
    /// Term-fenced by the host: an epoch lower than the stored one is refused
    /// with [`CapError::StaleEpoch`]; the same epoch and leader is a no-op
    /// ([`WriteOutcome::Unchanged`]); a leader that is not a replica
    /// ([`CapError::NotAReplica`]) or an epoch above any term the host has
    /// seen ([`CapError::FutureEpoch`]) is refused. Validates and queues: the
    /// write is applied asynchronously, in order.
    pub fn set_leader(
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<WriteOutcome, CapError> {
        bindings::assignments::set_leader(&partition_to_wit(partition), leader, epoch)
            .map(write_outcome_from_wit)
            .map_err(cap_error_from_wit)
    }
}

/// Requests to Raft (grant: `leadership`).
pub mod leadership {
    use crate::bindings;
    use crate::convert::{cap_error_from_wit, partition_to_wit};
    use crate::types::{CapError, NodeId, PartitionId};

    /// Asks the partition's Raft group to move leadership to `to`.
    /// Validates and queues: the transfer happens asynchronously.
    pub fn transfer(partition: &PartitionId, to: NodeId) -> Result<(), CapError> {
        bindings::leadership::transfer(&partition_to_wit(partition), to).map_err(cap_error_from_wit)
    }
}

/// Notifications to sinks the operator names in the broker config
/// (grant: `notify`).
pub mod notify {
    use crate::bindings;
    use crate::convert::cap_error_from_wit;
    use crate::types::CapError;

    /// Sends `payload` to the sink named `sink`. An unconfigured sink is
    /// refused with [`CapError::UnknownSink`].
    pub fn emit(sink: &str, payload: &str) -> Result<(), CapError> {
        bindings::notify::emit(sink, payload).map_err(cap_error_from_wit)
    }
}
