//! The admin endpoint: newline-delimited JSON over TCP. Used by `leaderhook topics`,
//! `leaderhook status`, `plugin enable/disable`, `partitions transfer` and the tests.
//!
//! ```text
//! server: {"leaderhook_admin":2,"challenge":"<64 hex digits>"}
//! client: {"auth":"<hex of HMAC-SHA256(secret, domain | challenge)>"}
//! server: {"ok":{"node":1}}        or {"error":"authentication failed: …","kind":"auth"}, closed
//! client: {"op":"status"}          one request per line (at most 64 KiB)…
//! server: {"ok":…}                 …one answer line each, or {"error":"…","kind":"…"}
//! ```
//!
//! Closed by default: nothing is served before the client proves it knows the cluster secret
//! of the node's config ([`server`], [`crate::auth`]); the test hooks that inject faults are
//! refused unless the config sets `[testing] fault_injection = true`. Connections are bounded
//! (`[admin] max_connections`; one more is answered `busy` and closed).
//!
//! The same requests are served over HTTP on the metrics listener (`POST /v1/admin`, signed
//! with a key derived from the cluster secret, answered with HTTP statuses: [`http`]).

pub mod client;
pub mod http;
pub mod plugins;
pub mod server;

pub use client::{AdminError, Connection, request};
pub use server::{AdminAccess, AdminStats};

use crate::metadata::{Applied, Command, TopicConfigs, TopicId, TopicLimits, topic};
use crate::raft::handle::{RaftCommand, RaftError, RaftHandle};
use crate::raft::shared::{Role, Shared};
use crate::raft::transport::{Transport, TransportStats};
use leaderhook_hooks::{HookRuntime, NodeId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What kind of error an answer carries, so clients act on it without reading its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// No (or a wrong) answer to the challenge.
    Auth,
    /// Too many connections: try again later.
    Busy,
    /// Not a request this node understands.
    BadRequest,
    /// A test hook on a node without `[testing] fault_injection`.
    Disabled,
    /// Not now: no metadata leader, or the Raft loop could not take it. Worth retrying.
    Unavailable,
    /// The topic to create exists already.
    Exists,
    /// The request names a topic, partition or plugin this node does not know.
    Unknown,
    /// Refused for good: the state does not allow it (a plugin file that does not load, a
    /// transfer to a node without a replica, …).
    Refused,
    /// Anything else.
    Failed,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn refused(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Refused, message)
    }

    fn unknown(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Unknown, message)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.message, "kind": self.kind })
    }
}

/// A plugin operation's error: an unknown plugin name is `unknown`, the rest `refused`.
fn plugin_failure(e: leaderhook_hooks::ReloadError) -> Failure {
    match e {
        leaderhook_hooks::ReloadError::UnknownPlugin(_) => Failure::unknown(e.to_string()),
        e => Failure::refused(e.to_string()),
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::refused(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::refused(message)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Status,
    CreateTopic {
        name: String,
        partitions: u32,
        replication: usize,
        /// Topic configs (`metadata::topic::SUPPORTED_CONFIGS`).
        #[serde(default)]
        configs: TopicConfigs,
    },
    DeleteTopic {
        name: String,
    },
    /// Test hook (`[testing] fault_injection` only): the dispatcher drops
    /// the next `count` events.
    DropEvents {
        count: u64,
    },
    Reload {
        plugin: String,
        path: Option<String>,
    },
    /// Test hook (`[testing] fault_injection` only): the next `count`
    /// Raft snapshots this node sends are lost on the way.
    DropSnapshots {
        count: u64,
    },
    /// Test hook (`[testing] fault_injection` only): every later Raft log
    /// write of this node fails, as on a dying disk (the node must stop).
    FailStorage,
    /// Test hook (`[testing] fault_injection` only): hands the plugins a
    /// became-leader event for this node as if Raft had produced it (late,
    /// duplicated or invented).
    InjectBecameLeader {
        partition: String,
        term: u64,
    },
    /// Turns a plugin off or back on in this node's hook runtime.
    SetPluginEnabled {
        plugin: String,
        enabled: bool,
    },
    /// Asks a partition's Raft group (through this node's replica) to move
    /// its leadership to `to`; the election that follows is reported as
    /// usual.
    TransferLeader {
        partition: String,
        to: NodeId,
    },
    /// Every plugin of this node: source, hash, grants, mode, state,
    /// counters, call times ([`plugins::PluginsView`]).
    Plugins,
    /// Re-reads this node's config file and applies its plugin changes, all
    /// or nothing (as SIGHUP does).
    ApplyConfig,
    /// A shadow plugin's agreement with the active chain and its last
    /// differences ([`plugins::DiffView`]).
    PluginDiff {
        plugin: String,
    },
    /// Turns a shadow plugin active (with `replacing`, that active plugin
    /// leaves the chain); with `persist`, writes it into the config file.
    Promote {
        plugin: String,
        #[serde(default)]
        replacing: Option<String>,
        #[serde(default)]
        persist: bool,
    },
}

/// One local replica beside its stored assignment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaView {
    pub partition: String,
    pub group: u64,
    pub role: Role,
    pub raft_leader: Option<NodeId>,
    pub term: u64,
    pub serving: bool,
    pub assigned_leader: Option<NodeId>,
    pub epoch: u64,
    /// In-sync replicas as stored in the metadata.
    #[serde(default)]
    pub isr: Vec<NodeId>,
    /// Where the replica's Raft log stands (none before its first report).
    #[serde(default)]
    pub raft_log: Option<crate::raft::shared::LogStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeId,
    pub replicas: Vec<ReplicaView>,
    pub plugins: serde_json::Value,
    /// Where this node's metadata log stands (snapshots compact it).
    #[serde(default)]
    pub metadata_log: crate::raft::shared::LogStatus,
    /// The Raft port's counters.
    #[serde(default)]
    pub transport: TransportStats,
    /// The admin port's counters.
    #[serde(default)]
    pub admin: AdminStats,
}

impl Request {
    /// The name of a test hook, if this is one.
    fn test_hook(&self) -> Option<&'static str> {
        match self {
            Request::DropEvents { .. } => Some("drop-events"),
            Request::InjectBecameLeader { .. } => Some("inject-became-leader"),
            Request::FailStorage => Some("fail-storage"),
            Request::DropSnapshots { .. } => Some("drop-snapshots"),
            _ => None,
        }
    }
}

pub struct Admin {
    pub node: NodeId,
    pub topic_limits: TopicLimits,
    pub shared: Arc<Shared>,
    pub raft: RaftHandle,
    pub hooks: Arc<HookRuntime>,
    /// The config file SIGHUP and `apply-config` re-read (none: started
    /// from a config in memory).
    pub config_file: Option<std::path::PathBuf>,
    /// The sinks opened at start (plugins are checked against them).
    pub sinks: Vec<crate::config::Sink>,
    /// The trace set up at start.
    pub trace: Option<leaderhook_hooks::TraceConfig>,
    pub transport: Transport,
    pub access: AdminAccess,
    /// For the fail-storage test hook.
    pub store: crate::raft::storage::LogStore,
}

impl Admin {
    /// One request line of the admin port; its answer line.
    fn handle(&self, line: &str) -> serde_json::Value {
        match self.respond(line.as_bytes()) {
            Ok(value) => serde_json::json!({ "ok": value }),
            Err(failure) => failure.to_json(),
        }
    }

    /// One request (its JSON text, from the admin port or the HTTP API): the `ok` value or
    /// the failure.
    pub(crate) fn respond(&self, request: &[u8]) -> Result<serde_json::Value, Failure> {
        let request: Request = serde_json::from_slice(request)
            .map_err(|e| Failure::new(FailureKind::BadRequest, format!("bad request: {e}")))?;
        if let Some(hook) = request.test_hook()
            && !self.access.fault_injection
        {
            return Err(Failure::new(
                FailureKind::Disabled,
                format!(
                    "{hook} is a test hook, disabled on this node (test clusters enable it with \
                     [testing] fault_injection = true)"
                ),
            ));
        }
        match request {
            Request::Status => serde_json::to_value(self.status())
                .map_err(|e| Failure::new(FailureKind::Failed, e.to_string())),
            Request::CreateTopic {
                name,
                partitions,
                replication,
                configs,
            } => self.create_topic(name, partitions, replication, configs),
            Request::DeleteTopic { name } => self.delete_topic(&name),
            Request::DropEvents { count } => {
                self.hooks.drop_next_events(count);
                Ok(serde_json::json!({ "dropping": count }))
            }
            Request::DropSnapshots { count } => {
                self.transport.drop_next_snapshots(count);
                Ok(serde_json::json!({ "dropping_snapshots": count }))
            }
            Request::InjectBecameLeader { partition, term } => self.inject(&partition, term),
            Request::FailStorage => {
                self.store.inject_write_failures();
                Ok(serde_json::json!("raft log writes fail from now on"))
            }
            Request::SetPluginEnabled { plugin, enabled } => self
                .hooks
                .set_enabled(&plugin, enabled)
                .map(|()| serde_json::json!({ "plugin": plugin, "enabled": enabled }))
                .map_err(plugin_failure),
            Request::TransferLeader { partition, to } => self.transfer(&partition, to),
            Request::Reload { plugin, path } => self
                .hooks
                .reload(&plugin, path.as_deref())
                .map(|()| serde_json::json!({ "reloaded": plugin }))
                .map_err(plugin_failure),
            Request::Plugins => serde_json::to_value(self.plugins_view())
                .map_err(|e| Failure::new(FailureKind::Failed, e.to_string())),
            Request::ApplyConfig => self.apply_config().and_then(|report| {
                serde_json::to_value(report)
                    .map_err(|e| Failure::new(FailureKind::Failed, e.to_string()))
            }),
            Request::PluginDiff { plugin } => self.diff(&plugin).and_then(|diff| {
                serde_json::to_value(diff)
                    .map_err(|e| Failure::new(FailureKind::Failed, e.to_string()))
            }),
            Request::Promote {
                plugin,
                replacing,
                persist,
            } => self.promote(&plugin, replacing.as_deref(), persist),
        }
    }

    /// Proposes a metadata command and waits for it to apply here. Not committed in time
    /// (no metadata leader, a dropped proposal) is `unavailable`; refused when applied is
    /// `refused`.
    fn propose(&self, command: Command) -> Result<serde_json::Value, Failure> {
        let applied = self
            .raft
            .propose_and_wait(command, COMMIT_TIMEOUT)
            .map_err(raft_failure)?;
        answer(applied)
    }

    fn create_topic(
        &self,
        name: String,
        partitions: u32,
        replication: usize,
        configs: TopicConfigs,
    ) -> Result<serde_json::Value, Failure> {
        topic::validate_name(&name).map_err(|e| Failure::new(FailureKind::BadRequest, e))?;
        topic::validate_configs(&configs).map_err(|e| Failure::new(FailureKind::BadRequest, e))?;
        let live: Vec<_> = self.shared.live_nodes().into_iter().collect();
        let replicas = topic::place(&live, partitions, replication, &self.topic_limits)
            .map_err(|e| Failure::new(FailureKind::BadRequest, e.to_string()))?;
        let command = Command::CreateTopic {
            name,
            topic_id: TopicId::random(),
            replicas,
            configs,
        };
        self.propose(command)
    }

    fn delete_topic(&self, name: &str) -> Result<serde_json::Value, Failure> {
        let topic_id = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .topic_by_name(name)
            .map(|t| t.id)
            .ok_or_else(|| Failure::unknown(format!("unknown topic {name}")))?;
        self.propose(Command::DeleteTopic { topic_id })
    }

    fn transfer(&self, partition: &str, to: NodeId) -> Result<serde_json::Value, Failure> {
        let id = leaderhook_harness::scenario::parse_partition(partition)
            .map_err(|e| Failure::new(FailureKind::BadRequest, e))?;
        let (group, replicas) = {
            let metadata = self
                .shared
                .metadata
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let meta = metadata
                .partition(&id)
                .ok_or_else(|| Failure::unknown(format!("unknown partition {partition}")))?;
            (meta.group, meta.replicas.clone())
        };
        if !replicas.contains(&to) {
            return Err(Failure::refused(format!(
                "node {to} holds no replica of {partition} (replicas {replicas:?})"
            )));
        }
        if !replicas.contains(&self.node) {
            return Err(Failure::refused(format!(
                "node {} holds no replica of {partition}: ask one of {replicas:?}",
                self.node
            )));
        }
        self.raft
            .send(RaftCommand::Transfer { group, to })
            .map_err(raft_failure)?;
        Ok(serde_json::json!({ "transfer_requested": partition, "to": to }))
    }

    fn inject(&self, partition: &str, term: u64) -> Result<serde_json::Value, Failure> {
        let id = leaderhook_harness::scenario::parse_partition(partition)
            .map_err(|e| Failure::new(FailureKind::BadRequest, e))?;
        let (group, replicas) = {
            let metadata = self
                .shared
                .metadata
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let meta = metadata
                .partition(&id)
                .ok_or_else(|| Failure::unknown(format!("unknown partition {partition}")))?;
            (meta.group, meta.replicas.clone())
        };
        let key = leaderhook_hooks::PartitionKey(group);
        let push = self.hooks.submit(
            key,
            leaderhook_hooks::LeadershipEvent {
                partition: id,
                transition: leaderhook_hooks::Transition::BecameLeader,
                observer: self.node,
                leader: Some(self.node),
                previous_leader: None,
                term,
                replicas,
                at_ms: crate::raft::node::now_ms(),
            },
        );
        Ok(serde_json::json!(format!("{push:?}")))
    }

    pub fn status(&self) -> Status {
        let metadata = self
            .shared
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let replicas = self
            .shared
            .replicas
            .read()
            .map(|r| r.clone())
            .unwrap_or_default();
        let views = replica_views(self.node, &metadata, &replicas);
        Status {
            node: self.node,
            replicas: views,
            plugins: serde_json::to_value(self.hooks.stats()).unwrap_or_default(),
            metadata_log: *self
                .shared
                .metadata_log
                .read()
                .unwrap_or_else(|e| e.into_inner()),
            transport: self.transport.stats(),
            admin: self.access.stats(),
        }
    }
}

/// Every partition `node` hosts by the metadata, beside what its replica
/// reported: one that has reported nothing yet (no Ready before its first
/// election) shows as the follower at term 0 that Raft starts it as, with
/// no leader.
fn replica_views(
    node: NodeId,
    metadata: &crate::metadata::Metadata,
    replicas: &std::collections::BTreeMap<u64, crate::raft::shared::ReplicaStatus>,
) -> Vec<ReplicaView> {
    metadata
        .partitions()
        .filter(|(_, meta)| meta.replicas.contains(&node))
        .map(|(partition, meta)| {
            let replica = replicas.get(&meta.group);
            ReplicaView {
                partition: partition.to_string(),
                group: meta.group,
                role: replica.map_or(Role::Follower, |r| r.role),
                raft_leader: replica.and_then(|r| r.leader),
                term: replica.map_or(0, |r| r.term),
                serving: replica.is_some_and(|r| r.serving),
                assigned_leader: meta.leader,
                epoch: meta.epoch,
                isr: meta.isr.clone(),
                raft_log: replica.map(|r| r.log),
            }
        })
        .collect()
}

fn answer(applied: Applied) -> Result<serde_json::Value, Failure> {
    match applied {
        Applied::Refused(why @ crate::metadata::Refusal::TopicExists(_)) => {
            Err(Failure::new(FailureKind::Exists, why.to_string()))
        }
        Applied::Refused(
            why @ (crate::metadata::Refusal::UnknownTopic(_)
            | crate::metadata::Refusal::UnknownPartition(_)),
        ) => Err(Failure::unknown(why.to_string())),
        Applied::Refused(why) => Err(Failure::refused(why.to_string())),
        Applied::TopicCreated { topic_id, groups } => {
            Ok(serde_json::json!({ "topic_id": topic_id, "groups": groups }))
        }
        Applied::TopicDeleted { groups } => Ok(serde_json::json!({ "deleted_groups": groups })),
        Applied::LeaderSet => Ok(serde_json::json!("leader set")),
        Applied::IsrSet => Ok(serde_json::json!("isr set")),
        Applied::ProducerId(id) => Ok(serde_json::json!({ "producer_id": id })),
        Applied::PartitionsCreated { groups } => Ok(serde_json::json!({ "groups": groups })),
        Applied::ConfigsSet => Ok(serde_json::json!("configs set")),
    }
}

/// A Raft loop error as an admin failure: retriable ones are `unavailable`.
fn raft_failure(e: RaftError) -> Failure {
    let kind = if e.is_retriable() {
        FailureKind::Unavailable
    } else {
        FailureKind::Failed
    };
    Failure::new(kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic::place;
    use crate::metadata::{Metadata, TopicConfigs};
    use crate::raft::shared::ReplicaStatus;
    use std::collections::BTreeMap;

    /// `status` lists every partition a node hosts, also those whose
    /// replica has not reported an election (nor anything) yet, and only
    /// those it hosts.
    #[test]
    fn status_lists_every_hosted_partition_before_its_first_election() {
        let mut metadata = Metadata::default();
        let applied = metadata.apply(Command::CreateTopic {
            name: "orders".into(),
            topic_id: TopicId::random(),
            // 4 partitions on 2 of 3 nodes each: node 1 hosts some, not all.
            replicas: place(&[1, 2, 3], 4, 2, &TopicLimits::default()).unwrap(),
            configs: TopicConfigs::new(),
        });
        assert!(
            matches!(applied, Applied::TopicCreated { .. }),
            "{applied:?}"
        );
        let hosted: Vec<(String, u64)> = metadata
            .partitions()
            .filter(|(_, m)| m.replicas.contains(&1))
            .map(|(p, m)| (p.to_string(), m.group))
            .collect();
        assert!((2..4).contains(&hosted.len()), "{hosted:?}");
        // One replica elected a leader; one is campaigning (reported, no
        // leader); the others have reported nothing at all.
        let mut replicas = BTreeMap::new();
        let report = |group, role, leader, term| ReplicaStatus {
            group,
            partition: None,
            role,
            leader,
            term,
            serving: leader == Some(1),
            log: Default::default(),
        };
        replicas.insert(hosted[0].1, report(hosted[0].1, Role::Leader, Some(1), 2));
        replicas.insert(hosted[1].1, report(hosted[1].1, Role::Candidate, None, 1));

        let views = replica_views(1, &metadata, &replicas);
        let listed: Vec<(String, u64)> = views
            .iter()
            .map(|v| (v.partition.clone(), v.group))
            .collect();
        assert_eq!(listed, hosted);
        assert_eq!(
            (
                views[0].role,
                views[0].raft_leader,
                views[0].term,
                views[0].serving
            ),
            (Role::Leader, Some(1), 2, true)
        );
        assert_eq!(
            (views[1].role, views[1].raft_leader, views[1].term),
            (Role::Candidate, None, 1)
        );
        for v in &views[2..] {
            assert_eq!(
                (v.role, v.raft_leader, v.term, v.serving, v.assigned_leader),
                (Role::Follower, None, 0, false, None),
                "{v:?}"
            );
        }
        // Before anything reported: every hosted partition all the same.
        assert_eq!(
            replica_views(1, &metadata, &BTreeMap::new()).len(),
            hosted.len()
        );
    }
}
