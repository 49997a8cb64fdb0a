//! What the Raft loop publishes for other threads (the Kafka front end, the
//! admin endpoint, the plugins' capabilities): the metadata, each local
//! replica's status, partition logs, and which nodes are alive.

use crate::metadata::Metadata;
use crate::partition_log::PartitionLog;
use leaderhook_hooks::{NodeId, PartitionId};
use raft::StateRole;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// A replica's Raft role (serialised as raft-rs names it: "Leader", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Follower,
    Candidate,
    PreCandidate,
    Leader,
}

impl From<StateRole> for Role {
    fn from(role: StateRole) -> Self {
        match role {
            StateRole::Follower => Role::Follower,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so column widths in `leaderhook status` apply.
        f.pad(match self {
            Role::Follower => "Follower",
            Role::Candidate => "Candidate",
            Role::PreCandidate => "PreCandidate",
            Role::Leader => "Leader",
        })
    }
}

/// What other threads see of a local replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaStatus {
    pub group: u64,
    pub partition: Option<PartitionId>,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Leader with an entry of its own term committed: may serve.
    pub serving: bool,
    /// Where the replica's Raft log stands (snapshots and retention
    /// compact it).
    pub log: LogStatus,
}

/// Which nodes this node hears from: every node sends every other a small
/// liveness message each heartbeat interval, and any Raft message counts
/// too. Published by the Raft loop.
#[derive(Debug, Clone)]
pub struct Liveness {
    pub local: NodeId,
    pub nodes: Vec<NodeId>,
    pub started: Instant,
    /// When each peer was last heard from.
    pub heard: HashMap<NodeId, Instant>,
    /// The metadata group's leader as this node knows it: Kafka's controller.
    pub controller: Option<NodeId>,
    /// How long a silent node counts as alive.
    pub session_timeout: Duration,
}

impl Liveness {
    pub fn new(local: NodeId, nodes: Vec<NodeId>, session_timeout: Duration) -> Self {
        Self {
            local,
            nodes,
            started: Instant::now(),
            heard: HashMap::new(),
            controller: None,
            session_timeout,
        }
    }

    /// Whether `node` counts as alive now: this node; a peer heard from
    /// within the session timeout; or, during the first session timeout
    /// after start, a peer not heard from yet (it may be starting too).
    pub fn is_live(&self, node: NodeId, now: Instant) -> bool {
        if node == self.local {
            return true;
        }
        if !self.nodes.contains(&node) {
            return false;
        }
        match self.heard.get(&node) {
            Some(at) => now.duration_since(*at) < self.session_timeout,
            None => now.duration_since(self.started) < self.session_timeout,
        }
    }

    pub fn live_nodes(&self, now: Instant) -> BTreeSet<NodeId> {
        self.nodes
            .iter()
            .copied()
            .filter(|&n| self.is_live(n, now))
            .collect()
    }
}

/// Where a group's Raft log stands on this node (operators see it in
/// `status`; it shows snapshots and compaction at work).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStatus {
    /// The first entry still in the log (entries before it are compacted
    /// into a snapshot).
    pub first_index: u64,
    pub last_index: u64,
    pub applied: u64,
}

/// Shared read-only views, written by the Raft thread.
pub struct Shared {
    pub metadata: RwLock<Metadata>,
    pub replicas: RwLock<BTreeMap<u64, ReplicaStatus>>,
    /// Applied records of every local partition replica, by group.
    pub logs: RwLock<BTreeMap<u64, PartitionLog>>,
    pub liveness: RwLock<Liveness>,
    pub metadata_log: RwLock<LogStatus>,
    /// Applied group records of every local offsets-partition replica, by
    /// group (`coordinator`).
    pub coordinators: RwLock<BTreeMap<u64, crate::coordinator::store::GroupStore>>,
}

impl Shared {
    pub fn new(local: NodeId, nodes: Vec<NodeId>, session_timeout: Duration) -> Self {
        Self {
            metadata: RwLock::default(),
            replicas: RwLock::default(),
            logs: RwLock::default(),
            liveness: RwLock::new(Liveness::new(local, nodes, session_timeout)),
            metadata_log: RwLock::default(),
            coordinators: RwLock::default(),
        }
    }

    pub fn live_nodes(&self) -> BTreeSet<NodeId> {
        self.liveness
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .live_nodes(Instant::now())
    }

    pub fn controller(&self) -> Option<NodeId> {
        self.liveness
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .controller
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_peers_leave_after_the_session_timeout() {
        let mut l = Liveness::new(1, vec![1, 2, 3], Duration::from_secs(5));
        let t0 = l.started;
        // At start, peers not heard from yet get the benefit of the doubt.
        assert_eq!(
            l.live_nodes(t0 + Duration::from_secs(1)),
            BTreeSet::from([1, 2, 3])
        );
        l.heard.insert(2, t0 + Duration::from_secs(4));
        let later = t0 + Duration::from_secs(8);
        assert_eq!(l.live_nodes(later), BTreeSet::from([1, 2]));
        assert_eq!(
            l.live_nodes(t0 + Duration::from_secs(10)),
            BTreeSet::from([1])
        );
        assert!(!l.is_live(9, later), "strangers are never alive");
    }

    #[test]
    fn roles_serialise_as_raft_names_them() {
        assert_eq!(serde_json::to_string(&Role::Leader).unwrap(), "\"Leader\"");
        assert_eq!(Role::from(StateRole::PreCandidate), Role::PreCandidate);
    }
}
