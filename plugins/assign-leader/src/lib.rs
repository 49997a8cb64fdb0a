//! The default leaderhook plugin.
//!
//! When a node's replica becomes the Raft leader of a partition, it records
//! that node as the partition's leader in the replicated assignments, at the
//! Raft term as the leader epoch. The write is term-fenced by the host, so
//! late, replayed or duplicated events are harmless: a write at an older term
//! is refused as stale (and ignored here), and the same leader at the same
//! term is a no-op.
//!
//! Grants: `assignments`. Config: none.

use leaderhook_sdk::{
    BatchFailures, CapError, Hook, LeadershipEvent, NoConfig, Transition, WriteOutcome,
    assignments, log, register_hook,
};

/// The plugin. Stateless: everything it needs is in each event.
pub struct AssignLeader;

impl AssignLeader {
    /// Records the observer as the leader if it became the leader. `Err`
    /// only for failures worth reporting.
    fn handle(event: &LeadershipEvent) -> Result<(), String> {
        if event.transition != Transition::BecameLeader {
            return Ok(());
        }
        // No log line per write: this is the hot path of every election,
        // and formatting plus a host call cost more than the write itself.
        // Operators see the writes in the assignments and the host's counters.
        match assignments::set_leader(&event.partition, event.observer, event.term) {
            Ok(WriteOutcome::Queued | WriteOutcome::Unchanged) => Ok(()),
            Err(CapError::StaleEpoch(stored)) => {
                log::debug(format!(
                    "{}: term {} is stale (stored epoch {stored}), ignored",
                    event.partition, event.term
                ));
                Ok(())
            }
            Err(e) => Err(format!(
                "{}: set leader {} at epoch {}: {e}",
                event.partition, event.observer, event.term
            )),
        }
    }
}

impl Hook for AssignLeader {
    type Config = NoConfig;

    fn init(_config: NoConfig) -> Result<Self, String> {
        Ok(AssignLeader)
    }

    fn on_event(&mut self, event: &LeadershipEvent) -> Result<(), String> {
        Self::handle(event)
    }

    /// Handles every event of the batch even if some fail, then reports the
    /// failures together.
    fn on_events(&mut self, events: &[LeadershipEvent]) -> Result<(), String> {
        let mut failures = BatchFailures::new("events");
        failures.extend(events.iter().map(Self::handle));
        failures.into_result()
    }
}

register_hook!(AssignLeader);
