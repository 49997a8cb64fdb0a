//! Term fencing for assignment writes. The one rule every writer obeys: the
//! plugin runtime when it validates a `set-leader` call, and the broker's
//! metadata state machine when it applies the write, so every node converges
//! on the same answer whatever order writes arrive in.

use crate::contract::{CapError, NodeId, WriteOutcome};

/// What the host knows about a partition when it judges a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// Replicas, preferred first.
    pub replicas: Vec<NodeId>,
    /// The stored assignment's leader.
    pub leader: Option<NodeId>,
    /// The stored assignment's epoch.
    pub epoch: u64,
    /// The highest Raft term the host has seen for this partition. A plugin
    /// may not write past it: one buggy write at `u64::MAX` would otherwise
    /// fence out every legitimate update forever.
    pub highest_term: u64,
}

/// Judges `set-leader(leader, epoch)` against the partition's current view.
///
/// - a leader that is not a replica is refused;
/// - an epoch above the highest term seen is refused;
/// - an epoch below the stored one is refused (stale);
/// - the same epoch and leader is `Unchanged` (idempotent);
/// - the same epoch naming another leader is refused as stale: Raft elects at
///   most one leader per term, so a second name for a term is a late or wrong
///   write, never a correction;
/// - otherwise the write goes ahead (`Queued`).
pub fn check_set_leader(
    view: &PartitionView,
    leader: NodeId,
    epoch: u64,
) -> Result<WriteOutcome, CapError> {
    if !view.replicas.contains(&leader) {
        return Err(CapError::NotAReplica(leader));
    }
    if epoch > view.highest_term {
        return Err(CapError::FutureEpoch(view.highest_term));
    }
    if epoch < view.epoch {
        return Err(CapError::StaleEpoch(view.epoch));
    }
    if epoch == view.epoch && view.leader.is_some() {
        return if view.leader == Some(leader) {
            Ok(WriteOutcome::Unchanged)
        } else {
            Err(CapError::StaleEpoch(view.epoch))
        };
    }
    Ok(WriteOutcome::Queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(leader: Option<NodeId>, epoch: u64, highest_term: u64) -> PartitionView {
        PartitionView {
            replicas: vec![1, 2, 3],
            leader,
            epoch,
            highest_term,
        }
    }

    #[test]
    fn newer_epoch_is_written() {
        assert_eq!(
            check_set_leader(&view(Some(1), 3, 5), 2, 5),
            Ok(WriteOutcome::Queued)
        );
        assert_eq!(
            check_set_leader(&view(None, 0, 1), 1, 1),
            Ok(WriteOutcome::Queued)
        );
    }

    #[test]
    fn same_epoch_same_leader_is_a_no_op() {
        assert_eq!(
            check_set_leader(&view(Some(2), 5, 5), 2, 5),
            Ok(WriteOutcome::Unchanged)
        );
    }

    #[test]
    fn lower_epoch_is_refused() {
        assert_eq!(
            check_set_leader(&view(Some(2), 5, 6), 1, 4),
            Err(CapError::StaleEpoch(5))
        );
    }

    #[test]
    fn same_epoch_other_leader_is_refused() {
        assert_eq!(
            check_set_leader(&view(Some(2), 5, 5), 3, 5),
            Err(CapError::StaleEpoch(5))
        );
    }

    #[test]
    fn leaderless_same_epoch_can_be_filled() {
        assert_eq!(
            check_set_leader(&view(None, 5, 5), 3, 5),
            Ok(WriteOutcome::Queued)
        );
    }

    #[test]
    fn untrusted_numbers_are_refused() {
        assert_eq!(
            check_set_leader(&view(Some(1), 3, 5), 9, 5),
            Err(CapError::NotAReplica(9))
        );
        assert_eq!(
            check_set_leader(&view(Some(1), 3, 5), 2, u64::MAX),
            Err(CapError::FutureEpoch(5))
        );
    }
}
