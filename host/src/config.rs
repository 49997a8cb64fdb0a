//! A node's config file (`leaderhook broker --config node1.toml`).
//!
//! ```toml
//! node_id = 1
//! data_dir = "node1"                   # relative to this file
//! raft_listen = "127.0.0.1:7001"
//! admin_listen = "127.0.0.1:7101"
//! kafka_listen = "127.0.0.1:9092"       # optional
//! metrics_listen = "127.0.0.1:9190"     # optional: Prometheus text at /metrics
//! [kafka]                              # every field optional, defaults shown
//! max_frame_bytes = 104857600
//! max_connections = 1024
//! message_max_bytes = 1048588
//! fetch_max_bytes = 57671680
//! connection_in_flight_bytes = 104857600
//! queued_max_request_bytes = 33554432 # request bytes being handled, all connections together
//! connections_max_idle_ms = 600000
//! auto_create_topics_enable = true     # Metadata creates unknown topics clients ask for
//! num_partitions = 1                   # ...with this many partitions
//! default_replication_factor = 3       # ...and replicas (at most the live nodes)
//! [security]                         # required: `cluster init` writes it (keep the file private)
//! cluster_id = "4f0c…"                 # the same on every node of the cluster
//! secret = "9a1e…"                     # the same on every node; at least 32 characters
//! [transport]                          # the Raft port
//! max_connections = 64                 # inbound connections; more are accepted and closed
//! peer_queue_bytes = 67108864          # messages queued per peer (encoded + in-memory size)
//! inbox_bytes = 33554432               # received entry bytes waiting for the Raft loop (and the most one round takes)
//! [admin]
//! max_connections = 16                 # more are told "busy" and closed
//! [testing]
//! fault_injection = false              # admin test hooks (drop-events, inject-became-leader)
//! [raft]
//! tick_ms = 100
//! election_ticks = 10
//! heartbeat_ticks = 3
//! resync_ms = 2000
//! session_timeout_ms = 9000             # a silent node leaves Metadata after this
//! transfer_cooldown_ms = 2000           # between plugin transfers of one partition
//! snapshot_every_entries = 10000        # metadata, offsets partitions snapshots: after this many entries
//! snapshot_every_bytes = 67108864       # ...or bytes applied
//! snapshot_keep_entries = 1000          # entries kept behind a snapshot
//! [groups]                             # consumer groups (coordinator::GroupsConfig)
//! offsets_topic_partitions = 10
//! offsets_topic_replication = 3
//! initial_rebalance_delay_ms = 3000
//! min_session_timeout_ms = 6000
//! max_session_timeout_ms = 1800000
//! max_members = 1000
//! max_groups = 10000                   # per offsets partition
//! max_member_metadata_bytes = 1048576
//! max_offset_metadata_bytes = 4096
//! [topics]
//! max_partitions_per_topic = 10000
//! max_partitions_per_request = 10000
//! [[peers]]                            # every node of the cluster, this one included
//! id = 1
//! raft = "127.0.0.1:7001"
//! admin = "127.0.0.1:7101"
//! kafka = "127.0.0.1:9092"
//! [[sinks]]
//! name = "audit"
//! kind = "log"                         # log | file (with path = "...") | topic (with topic = "...", default: the name)
//! [trace]                             # optional: record events and plugin calls
//! path = "trace-{node}.jsonl"          # JSON lines, relative to this file; {node}: the node id
//! max_bytes = 67108864                 # rotated past this (path.1, path.2, ...)
//! keep = 3
//! [dispatch]
//! fail_to_default = true               # the embedded default plugin as a safety net
//! [[plugins]]
//! name = "assign-leader"
//! path = "builtin:assign-leader"
//! grants = ["assignments"]
//! ```

use crate::auth::{ClusterAuth, Secret, SecurityConfigError};
use crate::raft::node::{RaftSettings, SnapshotPolicy, StoragePolicy};
use crate::raft::storage::StoreOptions;
use leaderhook_hooks::config::{DispatchConfig, PluginConfig};
use leaderhook_hooks::{HooksConfig, NodeId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub raft_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Where Kafka clients connect; no Kafka listener if absent.
    pub kafka_listen: Option<SocketAddr>,
    /// Where `GET /metrics` answers in the Prometheus text format; none if
    /// absent.
    pub metrics_listen: Option<SocketAddr>,
    /// Records every leadership event and plugin batch (with capability
    /// calls and outcomes) as JSON lines; none if absent.
    pub trace: Option<leaderhook_hooks::TraceConfig>,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub raft: RaftConfig,
    #[serde(default)]
    pub topics: crate::metadata::TopicLimits,
    #[serde(default)]
    pub storage: StorageConfig,
    /// Consumer groups and their offsets topic.
    #[serde(default)]
    pub groups: crate::coordinator::GroupsConfig,
    /// Cluster id and secret: required (checked by [`NodeConfig::from_file`]).
    #[serde(default)]
    pub security: SecurityConfig,
    #[serde(default)]
    pub transport: TransportConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub testing: TestingConfig,
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub sinks: Vec<Sink>,
    #[serde(default)]
    pub dispatch: DispatchConfig,
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    pub tick_ms: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub resync_ms: u64,
    /// A node not heard from for this long is left out of Metadata (and
    /// partitions it leads answer leader -1) until it returns. Kafka's
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// A plugin's leadership transfer of a partition is refused within this
    /// long of the node's previous transfer request for it.
    pub transfer_cooldown_ms: u64,
    /// The metadata group and each offsets partition snapshot their state
    /// and compact their logs after this many entries or bytes applied
    /// since their last snapshot (counted per group)...
    pub snapshot_every_entries: u64,
    pub snapshot_every_bytes: u64,
    /// ...keeping this many entries behind the snapshot for followers a
    /// little behind (those further behind receive the snapshot).
    pub snapshot_keep_entries: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 3,
            resync_ms: 2000,
            session_timeout_ms: 9000,
            transfer_cooldown_ms: 2000,
            snapshot_every_entries: SnapshotPolicy::default().every_entries,
            snapshot_every_bytes: SnapshotPolicy::default().every_bytes,
            snapshot_keep_entries: SnapshotPolicy::default().keep_entries,
        }
    }
}

impl RaftConfig {
    pub fn settings(&self) -> RaftSettings {
        RaftSettings {
            tick: Duration::from_millis(self.tick_ms),
            election_ticks: self.election_ticks,
            heartbeat_ticks: self.heartbeat_ticks,
            resync: Duration::from_millis(self.resync_ms),
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            snapshots: SnapshotPolicy {
                every_entries: self.snapshot_every_entries,
                every_bytes: self.snapshot_every_bytes,
                keep_entries: self.snapshot_keep_entries,
            },
            // The node's `[storage]` sets it (`NodeConfig::raft_settings`).
            storage: StoragePolicy::default(),
        }
    }

    pub fn transfer_cooldown(&self) -> Duration {
        Duration::from_millis(self.transfer_cooldown_ms)
    }
}

/// `[storage]`: how partitions keep their logs (see `partition_log`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Retention of topics that set no `retention.ms` (-1: keep forever).
    /// Kafka's `log.retention.ms`, 7 days.
    pub retention_ms: i64,
    /// Retention of topics that set no `retention.bytes`, per partition (-1:
    /// no size limit). Kafka's `log.retention.bytes`.
    pub retention_bytes: i64,
    /// A partition checkpoints its state after this many bytes or entries
    /// applied: a restart replays at most that much of its log.
    pub checkpoint_every_bytes: u64,
    pub checkpoint_every_entries: u64,
    /// Idempotent producers silent for this long are forgotten (Kafka's
    /// `producer.id.expiration.ms`, 7 days).
    pub producer_expiry_ms: u64,
    /// raft-engine log files are this large; disk used by deleted or
    /// compacted entries is reclaimed file by file, every
    /// `purge_interval_ms`, once the files exceed `purge_threshold_bytes`.
    pub log_file_bytes: u64,
    pub purge_threshold_bytes: u64,
    pub purge_interval_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let policy = StoragePolicy::default();
        Self {
            retention_ms: policy.retention_ms.unwrap_or(-1),
            retention_bytes: policy.retention_bytes.map_or(-1, |b| b as i64),
            checkpoint_every_bytes: policy.checkpoint_every_bytes,
            checkpoint_every_entries: policy.checkpoint_every_entries,
            producer_expiry_ms: policy.producer_expiry_ms,
            log_file_bytes: StoreOptions::default().file_bytes,
            purge_threshold_bytes: StoreOptions::default().purge_threshold_bytes,
            purge_interval_ms: 10_000,
        }
    }
}

impl StorageConfig {
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            file_bytes: self.log_file_bytes.max(1 << 20),
            purge_threshold_bytes: self.purge_threshold_bytes.max(1 << 20),
        }
    }

    pub fn purge_interval(&self) -> Duration {
        Duration::from_millis(self.purge_interval_ms.max(100))
    }

    pub fn policy(&self) -> StoragePolicy {
        StoragePolicy {
            checkpoint_every_bytes: self.checkpoint_every_bytes.max(1),
            checkpoint_every_entries: self.checkpoint_every_entries.max(1),
            retention_ms: (self.retention_ms >= 0).then_some(self.retention_ms),
            retention_bytes: u64::try_from(self.retention_bytes).ok(),
            producer_expiry_ms: self.producer_expiry_ms,
        }
    }
}

/// `[security]`: what proves membership of the cluster on the admin and Raft ports (see
/// [`crate::auth`]). The file holding it must be readable by the node's operator only.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// The same on every node: a peer of another cluster is refused even with the same secret.
    pub cluster_id: String,
    /// The same on every node; at least [`crate::auth::MIN_SECRET_LEN`] characters.
    pub secret: String,
}

impl std::fmt::Debug for SecurityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("cluster_id", &self.cluster_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `[transport]`: bounds of the Raft port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Inbound connections open at once (authenticated or still in their handshake); one more
    /// is accepted and closed at once, and counted.
    pub max_connections: usize,
    /// Bytes of messages queued for one peer (their encoded size plus their in-memory
    /// headers); a message that does not fit is dropped and counted (Raft retransmits). At
    /// least [`crate::raft::transport::MIN_PEER_QUEUE_BYTES`], so the largest frame fits.
    pub peer_queue_bytes: usize,
    /// Payload bytes (entries, snapshots) received from peers and not yet taken by the Raft
    /// loop; past it, connections from peers are not read until the loop catches up. At
    /// least [`crate::raft::transport::wire::MAX_FRAME_LEN`].
    pub inbox_bytes: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            peer_queue_bytes: 64 << 20,
            inbox_bytes: 32 << 20,
        }
    }
}

/// `[admin]`: bounds of the admin port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Admin connections open at once; one more is answered "busy" and closed.
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
        }
    }
}

/// `[testing]`: switches for test clusters only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Serve the admin test hooks that inject faults (`drop-events`,
    /// `inject-became-leader`). Off unless set; `cluster init --fault-injection` sets it.
    pub fault_injection: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: NodeId,
    pub raft: SocketAddr,
    pub admin: SocketAddr,
    /// The node's Kafka listener, advertised in Metadata responses.
    pub kafka: Option<SocketAddr>,
    /// Failure domain, shown to plugins (`cluster.nodes()`) and to Kafka
    /// clients (Metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
}

/// The Kafka front end's bounds. What each costs at most, in bytes:
/// `max_connections` x (`connection_in_flight_bytes` + one frame being
/// read, which grows with the bytes that arrive, up to `max_frame_bytes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Largest request frame accepted; a larger one closes the connection.
    /// Kafka's `socket.request.max.bytes`.
    pub max_frame_bytes: usize,
    /// Open client connections; a connection over the limit is accepted
    /// and closed at once (logged at most every 10 s, and counted).
    pub max_connections: usize,
    /// Largest record batch a partition accepts (Kafka's broker
    /// `message.max.bytes`; a topic's `max.message.bytes` overrides it);
    /// a larger one is answered MESSAGE_TOO_LARGE. At most
    /// `kafka::batch::MAX_RAFT_BATCH_BYTES` (the Raft transport's 16 MiB
    /// frame less 64 KiB): a batch is one Raft entry, and an entry the
    /// transport cannot carry would stop its partition for good.
    pub message_max_bytes: usize,
    /// Most record bytes one Fetch response carries, whatever the request
    /// asks (Kafka's `fetch.max.bytes`); at least one batch is returned.
    pub fetch_max_bytes: usize,
    /// Bytes one connection may have in flight: the frames of requests
    /// being handled and the room reserved for their Fetch responses,
    /// until each response is written. A client that sends faster than it
    /// reads its answers stops being read at this bound (or after 64
    /// requests). A single larger request is handled alone.
    pub connection_in_flight_bytes: usize,
    /// Bytes of request frames being handled on this node, across all its
    /// connections (Kafka's `queued.max.request.bytes`): past it, no
    /// connection is read until requests are answered. Produce requests
    /// hold theirs until their records are committed, so this bounds the
    /// memory producers can fill with data waiting for replication.
    pub queued_max_request_bytes: usize,
    /// A connection that sends nothing for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// A Metadata request that allows it creates the unknown topics it
    /// names (Kafka's `auto.create.topics.enable`; on, as in Kafka).
    pub auto_create_topics_enable: bool,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`).
    pub num_partitions: u32,
    /// Replicas per partition of an auto-created topic, at most the live
    /// nodes (Kafka's `default.replication.factor`).
    pub default_replication_factor: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 100 * 1024 * 1024,
            max_connections: 1024,
            message_max_bytes: 1_048_588,
            fetch_max_bytes: 55 * 1024 * 1024,
            connection_in_flight_bytes: 100 * 1024 * 1024,
            queued_max_request_bytes: 32 * 1024 * 1024,
            connections_max_idle_ms: 600_000,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 3,
        }
    }
}

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), String> {
        use crate::kafka::batch::MAX_RAFT_BATCH_BYTES;
        if self.message_max_bytes == 0 || self.message_max_bytes > MAX_RAFT_BATCH_BYTES {
            return Err(format!(
                "kafka.message_max_bytes = {} must be between 1 and {MAX_RAFT_BATCH_BYTES}: \
                 a record batch is one Raft entry, and the Raft transport's frame \
                 (raft::transport::MAX_FRAME_LEN, 16 MiB) less 64 KiB of message overhead \
                 is the largest entry it carries",
                self.message_max_bytes
            ));
        }
        if self.max_connections == 0 {
            return Err("kafka.max_connections must be at least 1".into());
        }
        if self.fetch_max_bytes < 1024 {
            return Err(format!(
                "kafka.fetch_max_bytes = {} must be at least 1024",
                self.fetch_max_bytes
            ));
        }
        if !(1024..=u32::MAX as usize).contains(&self.connection_in_flight_bytes) {
            return Err(format!(
                "kafka.connection_in_flight_bytes = {} must be between 1024 and {}",
                self.connection_in_flight_bytes,
                u32::MAX
            ));
        }
        if !(1024..=u32::MAX as usize).contains(&self.queued_max_request_bytes) {
            return Err(format!(
                "kafka.queued_max_request_bytes = {} must be between 1024 and {}",
                self.queued_max_request_bytes,
                u32::MAX
            ));
        }
        if self.connections_max_idle_ms == 0 {
            return Err("kafka.connections_max_idle_ms must be at least 1".into());
        }
        if self.num_partitions == 0 || self.default_replication_factor == 0 {
            return Err(
                "kafka.num_partitions and default_replication_factor must be at least 1".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    /// For `kind = "file"`: the file notifications are appended to.
    pub path: Option<PathBuf>,
    /// For `kind = "topic"`: the topic of this cluster records are appended
    /// to (default: the sink's name); created if missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl Sink {
    /// The topic a `kind = "topic"` sink writes to.
    pub fn topic_name(&self) -> &str {
        self.topic.as_deref().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Each notification is a line in the broker's log.
    Log,
    /// Each notification is appended as a line to `path`.
    File,
    /// Each notification is a record appended to a topic of this cluster
    /// (created if missing), read back with any Kafka client.
    Topic,
}

/// The config holds the cluster secret: say so when other users can read it.
fn warn_if_readable_by_others(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %file.display(),
            "the node config holds the cluster secret but other users can read it (chmod 600)"
        );
    }
}

impl NodeConfig {
    /// What an admin client needs of a node config, its admin address and
    /// secret, read without validating the rest: a half-edited
    /// `[[plugins]]` must not lock the operator out of `status` or of the
    /// `plugin apply` that reports what is wrong with it.
    pub fn admin_endpoint(file: &Path) -> anyhow::Result<(SocketAddr, crate::auth::Secret)> {
        #[derive(Deserialize)]
        struct Endpoint {
            admin_listen: SocketAddr,
            security: SecurityConfig,
        }
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
        let endpoint: Endpoint =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let secret = crate::auth::Secret::new(&endpoint.security.secret)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        Ok((endpoint.admin_listen, secret))
    }

    pub fn from_file(file: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
        warn_if_readable_by_others(file);
        let mut config: NodeConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let invalid = |m: String| anyhow::anyhow!("{}: {m}", file.display());
        config.validate().map_err(invalid)?;
        let base = file.parent().unwrap_or(Path::new("."));
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        for sink in &mut config.sinks {
            if let Some(path) = &mut sink.path
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        }
        if let Some(trace) = &mut config.trace {
            // One trace file per node, even when the nodes share a config
            // text and a directory: `{node}` is this node's id.
            let named = trace
                .path
                .to_string_lossy()
                .replace("{node}", &config.node_id.to_string());
            trace.path = base.join(named);
        }
        // The hooks part is validated and resolved by its own rules.
        let hooks = HooksConfig::from_parts(config.dispatch.clone(), config.plugins.clone(), file)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        config.dispatch = hooks.dispatch;
        config.plugins = hooks.plugins;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.node_id == 0 {
            return Err("node_id must not be 0 (Raft reserves it)".into());
        }
        if !self.peers.iter().any(|p| p.id == self.node_id) {
            return Err(format!("peers must include this node ({})", self.node_id));
        }
        let mut ids: Vec<NodeId> = self.peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.peers.len() {
            return Err("peers: duplicate node id".into());
        }
        if let Some(trace) = &self.trace {
            trace.validate()?;
        }
        crate::sinks::check_plugin_sinks(&self.sinks, &self.plugins)?;
        for sink in &self.sinks {
            if sink.kind == SinkKind::Topic {
                crate::metadata::topic::validate_name(sink.topic_name())
                    .map_err(|e| format!("sink {:?}: topic: {e}", sink.name))?;
            }
            if sink.kind == SinkKind::File && sink.path.is_none() {
                return Err(format!(
                    "sink {:?}: kind = \"file\" needs a path",
                    sink.name
                ));
            }
        }
        if self.security.cluster_id.is_empty() && self.security.secret.is_empty() {
            return Err(
                "no [security] cluster_id and secret: the admin and Raft ports need \
                        them (`leaderhook cluster init` writes them; see README, Security)"
                    .into(),
            );
        }
        self.auth().map_err(|e| e.to_string())?;
        if self.transport.max_connections == 0 || self.admin.max_connections == 0 {
            return Err(
                "transport.max_connections and admin.max_connections must be at least 1".into(),
            );
        }
        let min_queue = crate::raft::transport::MIN_PEER_QUEUE_BYTES;
        if self.transport.peer_queue_bytes < min_queue {
            return Err(format!(
                "transport.peer_queue_bytes must be at least {min_queue} (the largest frame)"
            ));
        }
        let max_frame = crate::raft::transport::wire::MAX_FRAME_LEN;
        if self.transport.inbox_bytes < max_frame {
            return Err(format!(
                "transport.inbox_bytes must be at least {max_frame} (the largest frame)"
            ));
        }
        self.kafka.validate()?;
        self.groups.validate()?;
        if self.raft.tick_ms == 0 || self.raft.heartbeat_ticks == 0 {
            return Err("raft.tick_ms and raft.heartbeat_ticks must be at least 1".into());
        }
        if self.raft.election_ticks <= self.raft.heartbeat_ticks {
            return Err("raft.election_ticks must be greater than raft.heartbeat_ticks".into());
        }
        let heartbeat = self.raft.tick_ms * self.raft.heartbeat_ticks as u64;
        if self.raft.session_timeout_ms <= 2 * heartbeat {
            return Err(format!(
                "raft.session_timeout_ms ({}) must exceed two heartbeats ({} ms): nodes \
                 tell each other they are alive once per heartbeat",
                self.raft.session_timeout_ms,
                2 * heartbeat
            ));
        }
        if self.raft.snapshot_every_entries == 0 || self.raft.snapshot_every_bytes == 0 {
            return Err(
                "raft.snapshot_every_entries and snapshot_every_bytes must be at least 1".into(),
            );
        }
        if self.topics.max_partitions_per_topic == 0 || self.topics.max_partitions_per_request == 0
        {
            return Err("topics.max_partitions_* must be at least 1".into());
        }
        Ok(())
    }

    pub fn hooks(&self) -> HooksConfig {
        HooksConfig {
            dispatch: self.dispatch.clone(),
            plugins: self.plugins.clone(),
        }
    }

    /// The cluster id and secret, checked.
    pub fn auth(&self) -> Result<ClusterAuth, SecurityConfigError> {
        ClusterAuth::new(
            &self.security.cluster_id,
            Secret::new(&self.security.secret)?,
        )
    }

    /// The Raft loop's settings: `[raft]` with `[storage]`.
    pub fn raft_settings(&self) -> RaftSettings {
        RaftSettings {
            storage: self.storage.policy(),
            ..self.raft.settings()
        }
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.peers.iter().map(|p| p.id).collect()
    }
}
