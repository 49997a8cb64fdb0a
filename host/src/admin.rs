//! The admin endpoint: newline-delimited JSON over TCP, on loopback. One
//! request per line, one response line each. Used by `leaderhook topics`,
//! `leaderhook status` and the tests.

use crate::metadata::{self, Applied, Command};
use crate::raft::node::{RaftCommand, RaftHandle, Shared};
use leaderhook_hooks::{HookRuntime, NodeId};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Status,
    CreateTopic {
        name: String,
        partitions: u32,
        replication: usize,
    },
    DeleteTopic {
        name: String,
    },
    /// Test hook: the dispatcher drops the next `count` events.
    DropEvents {
        count: u64,
    },
    Reload {
        plugin: String,
        path: Option<String>,
    },
    /// Test hook: hands the plugins a became-leader event for this node as
    /// if Raft had produced it (late, duplicated or invented).
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
}

/// One local replica beside its stored assignment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaView {
    pub partition: String,
    pub group: u64,
    pub role: String,
    pub raft_leader: Option<NodeId>,
    pub term: u64,
    pub serving: bool,
    pub assigned_leader: Option<NodeId>,
    pub epoch: u64,
    /// In-sync replicas as stored in the metadata.
    #[serde(default)]
    pub isr: Vec<NodeId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeId,
    pub replicas: Vec<ReplicaView>,
    pub plugins: serde_json::Value,
}

pub struct Admin {
    pub node: NodeId,
    pub nodes: Vec<NodeId>,
    pub shared: Arc<Shared>,
    pub raft: RaftHandle,
    pub hooks: Arc<HookRuntime>,
}

impl Admin {
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let admin = self.clone();
            tokio::spawn(async move {
                if let Err(e) = admin.connection(stream).await {
                    tracing::debug!(%peer, "admin connection closed: {e}");
                }
            });
        }
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        while let Some(line) = lines.next_line().await? {
            let response = if line.len() > MAX_REQUEST {
                serde_json::json!({ "error": "request too long" })
            } else {
                let admin = self.clone();
                tokio::task::spawn_blocking(move || admin.handle(&line))
                    .await
                    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
            };
            write.write_all(format!("{response}\n").as_bytes()).await?;
        }
        Ok(())
    }

    fn handle(&self, line: &str) -> serde_json::Value {
        let request: Request = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => return serde_json::json!({ "error": format!("bad request: {e}") }),
        };
        let result = match request {
            Request::Status => serde_json::to_value(self.status()).map_err(|e| e.to_string()),
            Request::CreateTopic {
                name,
                partitions,
                replication,
            } => self.create_topic(name, partitions, replication),
            Request::DeleteTopic { name } => self
                .raft
                .propose_and_wait(Command::DeleteTopic { name }, COMMIT_TIMEOUT)
                .and_then(answer),
            Request::DropEvents { count } => {
                self.hooks.drop_next_events(count);
                Ok(serde_json::json!({ "dropping": count }))
            }
            Request::InjectBecameLeader { partition, term } => self.inject(&partition, term),
            Request::SetPluginEnabled { plugin, enabled } => self
                .hooks
                .set_enabled(&plugin, enabled)
                .map(|()| serde_json::json!({ "plugin": plugin, "enabled": enabled }))
                .map_err(|e| e.to_string()),
            Request::TransferLeader { partition, to } => self.transfer(&partition, to),
            Request::Reload { plugin, path } => self
                .hooks
                .reload(&plugin, path.as_deref())
                .map(|()| serde_json::json!({ "reloaded": plugin }))
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(value) => serde_json::json!({ "ok": value }),
            Err(e) => serde_json::json!({ "error": e }),
        }
    }

    fn create_topic(
        &self,
        name: String,
        partitions: u32,
        replication: usize,
    ) -> Result<serde_json::Value, String> {
        if name.is_empty()
            || name.len() > 249
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(format!(
                "invalid topic name {name:?} (use [a-zA-Z0-9._-], at most 249)"
            ));
        }
        let replicas = metadata::place(&self.nodes, partitions, replication)?;
        let command = Command::CreateTopic {
            name,
            topic_id: random_id(),
            replicas,
        };
        self.raft
            .propose_and_wait(command, COMMIT_TIMEOUT)
            .and_then(answer)
    }

    fn transfer(&self, partition: &str, to: NodeId) -> Result<serde_json::Value, String> {
        let id = leaderhook_harness::scenario::parse_partition(partition)?;
        let (group, replicas) = {
            let metadata = self
                .shared
                .metadata
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let meta = metadata.partition(&id).ok_or("unknown partition")?;
            (meta.group, meta.replicas.clone())
        };
        if !replicas.contains(&to) {
            return Err(format!(
                "node {to} holds no replica of {partition} (replicas {replicas:?})"
            ));
        }
        if !replicas.contains(&self.node) {
            return Err(format!(
                "node {} holds no replica of {partition}: ask one of {replicas:?}",
                self.node
            ));
        }
        self.raft.send(RaftCommand::Transfer { group, to })?;
        Ok(serde_json::json!({ "transfer_requested": partition, "to": to }))
    }

    fn inject(&self, partition: &str, term: u64) -> Result<serde_json::Value, String> {
        let id = leaderhook_harness::scenario::parse_partition(partition)?;
        let (group, replicas) = {
            let metadata = self
                .shared
                .metadata
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let meta = metadata.partition(&id).ok_or("unknown partition")?;
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
        let views = replicas
            .values()
            .filter_map(|r| {
                let partition = r.partition.clone()?;
                let meta = metadata.partition(&partition)?;
                Some(ReplicaView {
                    partition: partition.to_string(),
                    group: r.group,
                    role: r.role.clone(),
                    raft_leader: r.leader,
                    term: r.term,
                    serving: r.serving,
                    assigned_leader: meta.leader,
                    epoch: meta.epoch,
                    isr: meta.isr.clone(),
                })
            })
            .collect();
        Status {
            node: self.node,
            replicas: views,
            plugins: serde_json::to_value(self.hooks.stats()).unwrap_or_default(),
        }
    }
}

fn answer(applied: Applied) -> Result<serde_json::Value, String> {
    match applied {
        Applied::Refused(why) => Err(why),
        Applied::TopicCreated { groups } => Ok(serde_json::json!({ "groups": groups })),
        Applied::TopicDeleted { groups } => Ok(serde_json::json!({ "deleted_groups": groups })),
        Applied::LeaderSet => Ok(serde_json::json!("leader set")),
        Applied::IsrSet => Ok(serde_json::json!("isr set")),
        Applied::ProducerId(id) => Ok(serde_json::json!({ "producer_id": id })),
    }
}

/// 128 random bits from the standard library's per-process random keys.
fn random_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0u8; 16];
    for half in id.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    id
}

/// A blocking client for the CLI and tests.
pub fn request(
    addr: SocketAddr,
    request: &Request,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| anyhow::anyhow!("cannot reach the admin endpoint {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(format!("{}\n", serde_json::to_string(request)?).as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let value: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("bad answer from {addr}: {e}"))?;
    match (value.get("ok"), value.get("error")) {
        (Some(ok), _) => Ok(ok.clone()),
        (_, Some(err)) => Err(anyhow::anyhow!("{}", err.as_str().unwrap_or("error"))),
        _ => Err(anyhow::anyhow!("bad answer from {addr}: {line}")),
    }
}
