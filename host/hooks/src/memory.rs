//! An in-memory [`Capabilities`]: a small cluster whose writes, transfers
//! and notifications are applied at once and recorded. For tests, the demo
//! and benchmarks; the plugin test harness builds on the same trait.

use crate::capabilities::{Capabilities, CapabilityError};
use crate::contract::{
    LeadershipEvent, NodeId, NodeInfo, PartitionAssignment, PartitionId, Transition,
};
use crate::fence::{self, PartitionView};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct MemoryCluster {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    local: NodeId,
    nodes: BTreeMap<NodeId, NodeInfo>,
    partitions: BTreeMap<PartitionId, PartitionView>,
    sinks: BTreeSet<String>,
    transfers: Vec<(PartitionId, NodeId)>,
    notifications: Vec<(String, String)>,
    writes: u64,
}

impl MemoryCluster {
    /// `nodes` alive, no rack, `local` the node plugins run on.
    pub fn new(local: NodeId, nodes: &[NodeId]) -> Self {
        let cluster = Self::default();
        {
            let mut inner = cluster.lock();
            inner.local = local;
            for &id in nodes {
                inner.nodes.insert(
                    id,
                    NodeInfo {
                        id,
                        alive: true,
                        rack: None,
                    },
                );
            }
        }
        cluster
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates `partitions` partitions of `topic`, each on `replicas`, with
    /// no leader yet.
    pub fn add_topic(&self, topic: &str, partitions: u32, replicas: &[NodeId]) {
        for p in 0..partitions {
            self.add_topic_partition(topic, p, replicas);
        }
    }

    /// Creates one partition on `replicas` (preferred first), no leader yet.
    pub fn add_topic_partition(&self, topic: &str, partition: u32, replicas: &[NodeId]) {
        self.lock().partitions.insert(
            PartitionId::new(topic, partition),
            PartitionView {
                replicas: replicas.to_vec(),
                leader: None,
                epoch: 0,
                highest_term: 0,
                elected: None,
            },
        );
    }

    pub fn add_sink(&self, sink: &str) {
        self.lock().sinks.insert(sink.to_owned());
    }

    /// Raft elected `leader` at `term`: the host learns the term (as the
    /// broker's Raft layer would) and returns the event `observer` sees.
    pub fn elect(
        &self,
        partition: &PartitionId,
        leader: NodeId,
        term: u64,
        observer: NodeId,
    ) -> LeadershipEvent {
        let mut inner = self.lock();
        let view = inner
            .partitions
            .get_mut(partition)
            .unwrap_or_else(|| panic!("elect: unknown partition {partition}"));
        if term >= view.highest_term {
            view.highest_term = term;
            view.elected = Some(leader);
        }
        LeadershipEvent {
            partition: partition.clone(),
            transition: if observer == leader {
                Transition::BecameLeader
            } else {
                Transition::LeaderObserved
            },
            observer,
            leader: Some(leader),
            previous_leader: view.leader,
            term,
            replicas: view.replicas.clone(),
            at_ms: 0,
        }
    }

    /// Overwrites a stored assignment, as another node's write would.
    pub fn store_assignment(&self, partition: &PartitionId, leader: NodeId, epoch: u64) {
        let mut inner = self.lock();
        let view = inner
            .partitions
            .get_mut(partition)
            .expect("known partition");
        view.leader = Some(leader);
        view.epoch = epoch;
        if epoch > view.highest_term {
            view.highest_term = epoch;
            view.elected = None;
        }
    }

    pub fn assignment(&self, partition: &PartitionId) -> Option<(Option<NodeId>, u64)> {
        self.lock()
            .partitions
            .get(partition)
            .map(|v| (v.leader, v.epoch))
    }

    pub fn transfers(&self) -> Vec<(PartitionId, NodeId)> {
        self.lock().transfers.clone()
    }

    pub fn notifications(&self) -> Vec<(String, String)> {
        self.lock().notifications.clone()
    }

    /// Assignment writes applied so far.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }
}

impl Capabilities for MemoryCluster {
    fn local_node(&self) -> NodeId {
        self.lock().local
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        self.lock().nodes.values().cloned().collect()
    }

    fn partition(&self, partition: &PartitionId) -> Option<PartitionView> {
        self.lock().partitions.get(partition).cloned()
    }

    fn assignments(&self) -> Vec<PartitionAssignment> {
        self.lock()
            .partitions
            .iter()
            .map(|(p, v)| v.assignment(p.clone()))
            .collect()
    }

    fn set_leader(
        &self,
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<(), CapabilityError> {
        let mut inner = self.lock();
        let view = inner
            .partitions
            .get_mut(partition)
            .ok_or(CapabilityError::UnknownPartition)?;
        // Fenced again at apply time, as the broker's state machine does.
        if fence::check_set_leader(view, leader, epoch).is_ok() {
            view.leader = Some(leader);
            view.epoch = epoch;
            inner.writes += 1;
        }
        Ok(())
    }

    fn transfer_leader(&self, partition: &PartitionId, to: NodeId) -> Result<(), CapabilityError> {
        self.lock().transfers.push((partition.clone(), to));
        Ok(())
    }

    fn has_sink(&self, sink: &str) -> bool {
        self.lock().sinks.contains(sink)
    }

    fn notify(&self, sink: &str, payload: &str) -> Result<(), CapabilityError> {
        self.lock()
            .notifications
            .push((sink.to_owned(), payload.to_owned()));
        Ok(())
    }
}
