//! Contract line 0.1 (`wit/since_v0.1.0`, frozen): its own bindings, and
//! its imports implemented by converting to the newest line and back. What
//! 0.1.0 has no case for is reported the way 0.1.0 hosts did: `not-elected`,
//! `over-quota` and `cooldown` become `unavailable` with a sentence.

use super::latest::leaderhook::plugin as latest;
use crate::state::PluginState;

wasmtime::component::bindgen!({
    path: "../../wit/since_v0.1.0",
    world: "leadership-hook",
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});

use leaderhook::plugin::{assignments, cluster, leadership, log, notify, types};

/// The version `wit/since_v0.1.0/leaderhook.wit` declares, read from it
/// (`tests/contract_versions.rs` checks it against the directory's name and
/// the SDK's).
pub const VERSION: &str =
    super::wit_package_version(include_str!("../../../../wit/since_v0.1.0/leaderhook.wit"));

impl From<types::PartitionId> for latest::types::PartitionId {
    fn from(p: types::PartitionId) -> Self {
        Self {
            topic: p.topic,
            partition: p.partition,
        }
    }
}

impl From<latest::types::PartitionId> for types::PartitionId {
    fn from(p: latest::types::PartitionId) -> Self {
        Self {
            topic: p.topic,
            partition: p.partition,
        }
    }
}

impl From<&latest::types::LeadershipEvent> for types::LeadershipEvent {
    fn from(e: &latest::types::LeadershipEvent) -> Self {
        use latest::types::Transition as T;
        Self {
            partition: e.partition.clone().into(),
            transition: match e.transition {
                T::BecameLeader => types::Transition::BecameLeader,
                T::SteppedDown => types::Transition::SteppedDown,
                T::LeaderObserved => types::Transition::LeaderObserved,
                T::LeaderLost => types::Transition::LeaderLost,
            },
            observer: e.observer,
            leader: e.leader,
            previous_leader: e.previous_leader,
            term: e.term,
            replicas: e.replicas.clone(),
            at_ms: e.at_ms,
        }
    }
}

impl From<latest::types::PartitionAssignment> for types::PartitionAssignment {
    fn from(a: latest::types::PartitionAssignment) -> Self {
        Self {
            partition: a.partition.into(),
            replicas: a.replicas,
            leader: a.leader,
            epoch: a.epoch,
        }
    }
}

impl From<latest::types::CapError> for types::CapError {
    fn from(e: latest::types::CapError) -> Self {
        use latest::types::CapError as E;
        match e {
            E::NotGranted(cap) => Self::NotGranted(cap),
            E::UnknownPartition => Self::UnknownPartition,
            E::NotAReplica(node) => Self::NotAReplica(node),
            E::StaleEpoch(stored) => Self::StaleEpoch(stored),
            E::FutureEpoch(seen) => Self::FutureEpoch(seen),
            E::UnknownSink(sink) => Self::UnknownSink(sink),
            E::Unavailable(why) => Self::Unavailable(why),
            e @ (E::NotElected(_) | E::OverQuota(_) | E::Cooldown(_)) => {
                Self::Unavailable(e.describe())
            }
        }
    }
}

impl From<latest::types::WriteOutcome> for types::WriteOutcome {
    fn from(o: latest::types::WriteOutcome) -> Self {
        match o {
            latest::types::WriteOutcome::Queued => Self::Queued,
            latest::types::WriteOutcome::Unchanged => Self::Unchanged,
        }
    }
}

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String) {
        use latest::log::Level as L;
        let level = match level {
            log::Level::Trace => L::Trace,
            log::Level::Debug => L::Debug,
            log::Level::Info => L::Info,
            log::Level::Warn => L::Warn,
            log::Level::Error => L::Error,
        };
        latest::log::Host::log(self, level, message);
    }
}

impl cluster::Host for PluginState {
    fn local_node(&mut self) -> types::NodeId {
        latest::cluster::Host::local_node(self)
    }

    fn nodes(&mut self) -> Vec<types::NodeInfo> {
        latest::cluster::Host::nodes(self)
            .into_iter()
            .map(|n| types::NodeInfo {
                id: n.id,
                alive: n.alive,
                rack: n.rack,
            })
            .collect()
    }

    fn assignment(&mut self, partition: types::PartitionId) -> Option<types::PartitionAssignment> {
        latest::cluster::Host::assignment(self, partition.into()).map(Into::into)
    }

    fn assignments(&mut self) -> Vec<types::PartitionAssignment> {
        latest::cluster::Host::assignments(self)
            .into_iter()
            .map(Into::into)
            .collect()
    }

    fn leader_counts(&mut self) -> Vec<types::LeaderCount> {
        latest::cluster::Host::leader_counts(self)
            .into_iter()
            .map(|c| types::LeaderCount {
                node: c.node,
                leaders: c.leaders,
            })
            .collect()
    }
}

impl assignments::Host for PluginState {
    fn set_leader(
        &mut self,
        partition: types::PartitionId,
        leader: types::NodeId,
        epoch: u64,
    ) -> Result<types::WriteOutcome, types::CapError> {
        latest::assignments::Host::set_leader(self, partition.into(), leader, epoch)
            .map(Into::into)
            .map_err(Into::into)
    }
}

impl leadership::Host for PluginState {
    fn transfer(
        &mut self,
        partition: types::PartitionId,
        to: types::NodeId,
    ) -> Result<(), types::CapError> {
        latest::leadership::Host::transfer(self, partition.into(), to).map_err(Into::into)
    }
}

impl notify::Host for PluginState {
    fn emit(&mut self, sink: String, payload: String) -> Result<(), types::CapError> {
        latest::notify::Host::emit(self, sink, payload).map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latest::types::{CapError as E, Quota, QuotaWindow};

    #[test]
    fn cases_0_1_0_lacks_become_unavailable_with_a_sentence() {
        let over = E::OverQuota(Quota {
            limit: 10,
            window: QuotaWindow::Batch,
        });
        assert_eq!(
            types::CapError::from(over),
            types::CapError::Unavailable("over quota: limited to 10 calls per batch".into())
        );
        let types::CapError::Unavailable(why) = types::CapError::from(E::NotElected(2)) else {
            panic!("not-elected is unavailable in 0.1.0");
        };
        assert!(why.contains("is not the leader Raft elected"), "{why}");
        assert!(why.contains("node 2 is"), "{why}");
        let types::CapError::Unavailable(why) = types::CapError::from(E::Cooldown(1500)) else {
            panic!("cooldown is unavailable in 0.1.0");
        };
        assert!(why.contains("1500 ms"), "{why}");
        assert_eq!(
            types::CapError::from(E::StaleEpoch(4)),
            types::CapError::StaleEpoch(4)
        );
    }
}
