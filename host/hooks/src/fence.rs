//! Term fencing for assignment writes. The one rule every writer obeys: the
//! plugin runtime when it validates a `set-leader` call, and the broker's
//! metadata state machine when it applies the write, so every node converges
//! on the same answer whatever order writes arrive in.
//!
//! Raft elects at most one leader per term, and a host whose replica is at
//! a term and follows (or is) its leader knows who that is. The fence uses
//! that fact: at the term it knows, only the elected node may be written,
//! and a write the host vouches for (`elected`) replaces whatever another
//! write put at the same epoch. So a wrong name that slipped through (from a
//! host that did not know the term's leader yet) lasts only until the true
//! leader's write, which the broker's resync keeps re-delivering.

use crate::contract::{CapError, NodeId, PartitionAssignment, PartitionId, WriteOutcome};

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
    /// The node Raft elected in `highest_term`, when the host knows it (its
    /// replica is at that term and leads it or has heard from its leader).
    pub elected: Option<NodeId>,
}

impl PartitionView {
    /// The stored assignment as the contract shows it to plugins.
    pub fn assignment(&self, partition: PartitionId) -> PartitionAssignment {
        PartitionAssignment {
            partition,
            replicas: self.replicas.clone(),
            leader: self.leader,
            epoch: self.epoch,
        }
    }

    /// The node elected at `epoch`, if the host knows it.
    pub fn elected_at(&self, epoch: u64) -> Option<NodeId> {
        self.elected.filter(|_| epoch == self.highest_term)
    }

    /// Whether the stored assignment differs from what the host knows Raft
    /// elected (the bug this project exists to fix, seen from this host).
    pub fn disagrees_with_raft(&self) -> bool {
        self.elected.is_some() && (self.leader != self.elected || self.epoch != self.highest_term)
    }
}

/// Judges `set-leader(leader, epoch)` against the partition's current view.
///
/// - a leader that is not a replica is refused;
/// - an epoch above the highest term seen is refused;
/// - at a term whose leader the host knows, naming any other node is refused;
/// - an epoch below the stored one is refused (stale);
/// - the same epoch and leader is `Unchanged` (idempotent);
/// - the same epoch naming another leader is refused as stale, unless the
///   host knows the new name is the one Raft elected: then it corrects the
///   stored one (at most one leader exists per term);
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
    let elected = view.elected_at(epoch);
    if let Some(elected) = elected
        && elected != leader
    {
        return Err(not_elected(elected));
    }
    if epoch < view.epoch {
        return Err(CapError::StaleEpoch(view.epoch));
    }
    if epoch == view.epoch && view.leader.is_some() {
        return if view.leader == Some(leader) {
            Ok(WriteOutcome::Unchanged)
        } else if elected == Some(leader) {
            Ok(WriteOutcome::Queued)
        } else {
            Err(CapError::StaleEpoch(view.epoch))
        };
    }
    Ok(WriteOutcome::Queued)
}

/// The refusal of a write naming a node Raft did not elect (contract 0.1.0
/// plugins see it as `unavailable` with the same sentence).
pub fn not_elected(elected: NodeId) -> CapError {
    CapError::NotElected(elected)
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
            elected: None,
        }
    }

    fn known(leader: Option<NodeId>, epoch: u64, term: u64, elected: NodeId) -> PartitionView {
        PartitionView {
            elected: Some(elected),
            ..view(leader, epoch, term)
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

    #[test]
    fn only_the_elected_node_is_written_at_a_known_term() {
        // Raft elected 2 in term 5, and this host knows it.
        assert_eq!(
            check_set_leader(&known(Some(1), 4, 5, 2), 3, 5),
            Err(not_elected(2))
        );
        assert_eq!(
            check_set_leader(&known(Some(1), 4, 5, 2), 2, 5),
            Ok(WriteOutcome::Queued)
        );
        // An older term is judged by the stored epoch alone.
        assert_eq!(
            check_set_leader(&known(Some(1), 3, 5, 2), 3, 4),
            Ok(WriteOutcome::Queued)
        );
    }

    #[test]
    fn the_elected_leader_corrects_a_wrong_name_at_the_same_epoch() {
        // A host that did not know term 5's leader let 3 through; the
        // elected leader's own write replaces it.
        assert_eq!(
            check_set_leader(&known(Some(3), 5, 5, 2), 2, 5),
            Ok(WriteOutcome::Queued)
        );
        // Without that knowledge the same write is stale, as before.
        assert_eq!(
            check_set_leader(&view(Some(3), 5, 5), 2, 5),
            Err(CapError::StaleEpoch(5))
        );
    }

    #[test]
    fn disagreement_with_raft_is_seen() {
        assert!(known(Some(3), 5, 5, 2).disagrees_with_raft());
        assert!(known(Some(2), 4, 5, 2).disagrees_with_raft());
        assert!(!known(Some(2), 5, 5, 2).disagrees_with_raft());
        assert!(!view(Some(3), 5, 5).disagrees_with_raft());
    }
}
