//! The Kafka front end: every node serves the Kafka wire protocol (the
//! `kafka-protocol` crate's types) on its `kafka_listen` address.
//!
//! Partition leaders in Metadata come from the replicated assignments
//! (`metadata::PartitionMeta::leader`/`epoch`), never from this node's own
//! Raft state: a partition whose assignment names no leader is answered
//! with leader -1 and `LEADER_NOT_AVAILABLE`. Produce and Fetch are served
//! only by the replica that leads the partition's Raft group and serves
//! (`NOT_LEADER_OR_FOLLOWER` otherwise, with the assigned leader as a hint).
//!
//! Supported: ApiVersions, Metadata, CreateTopics, DeleteTopics, Produce
//! (acks 0, 1 and all — 1 and all both answer after the Raft commit;
//! idempotent producers deduplicated per producer id and sequence when a
//! batch is applied), InitProducerId (idempotent producers only; ids from
//! the replicated metadata), Fetch (no fetch sessions: every fetch is a
//! full fetch), ListOffsets (latest, earliest, max timestamp, by
//! timestamp). Not yet: consumer groups, transactions.
//!
//! # Bounds (all in `[kafka]` of the node config, see `config::KafkaConfig`)
//!
//! Connections (`max_connections`; more are closed at once), request frames
//! (`max_frame_bytes`; buffers grow with the bytes that arrive), bytes and
//! requests in flight per connection (`connection_in_flight_bytes`, 64),
//! record batches (`message_max_bytes`, which a Raft entry must be able to
//! carry: see [`batch`]), Fetch responses (`fetch_max_bytes`), idle
//! connections (`connections_max_idle_ms`).
//!
//! # Layout
//!
//! - [`server`]: the listener (connection limit), one task per connection,
//!   requests answered in order with pipelining, bytes in flight bounded,
//!   dispatch by API key.
//! - [`codec`]: size-prefixed frames bounded by `max_frame_bytes`, request
//!   header and body decoding, response encoding.
//! - [`api_versions`], [`metadata`], [`create_topics`], [`delete_topics`],
//!   [`produce`], [`fetch`], [`list_offsets`], [`init_producer_id`]: one
//!   file per API.
//! - [`batch`]: a produced partition's records checked as Kafka checks them
//!   (size limit, one batch, `partition_log::record_batch`).

pub mod api_versions;
pub mod batch;
pub mod codec;
pub mod create_topics;
pub mod delete_topics;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod server;

use crate::config::{KafkaConfig, Peer};
use crate::metadata::{Metadata, PartitionMeta, TopicId};
use crate::raft::handle::RaftHandle;
use crate::raft::shared::{Role, Shared};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;
use leaderhook_hooks::NodeId;
use std::sync::Arc;

pub use server::serve;

/// What every request handler can reach.
pub struct Broker {
    pub node: NodeId,
    pub peers: Vec<Peer>,
    pub config: KafkaConfig,
    pub topic_limits: crate::metadata::TopicLimits,
    pub shared: Arc<Shared>,
    /// Where partition records are read from (their Raft logs).
    pub store: crate::raft::storage::LogStore,
    pub raft: RaftHandle,
}

/// Kafka error code of `e`.
pub fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Kafka's cluster id for this cluster (fixed: one cluster per config set).
pub const CLUSTER_ID: &str = "leaderhook";

impl Broker {
    pub fn metadata(&self) -> std::sync::RwLockReadGuard<'_, Metadata> {
        self.shared
            .metadata
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this node's replica of `group` leads it and may serve.
    pub fn serves(&self, group: u64) -> bool {
        let replicas = self
            .shared
            .replicas
            .read()
            .unwrap_or_else(|e| e.into_inner());
        replicas
            .get(&group)
            .is_some_and(|r| r.serving && r.role == Role::Leader && r.leader == Some(self.node))
    }

    /// The leader a client should try instead of this node: the assigned
    /// leader, unless that is this node (which does not serve) — then none.
    pub fn leader_hint(&self, partition: &PartitionMeta) -> (BrokerId, i32) {
        match partition.leader {
            Some(l) if l != self.node => (BrokerId(l as i32), epoch(partition.epoch)),
            _ => (BrokerId(-1), -1),
        }
    }

    /// The Kafka endpoint of a node, if it has one.
    pub fn endpoint(&self, node: NodeId) -> Option<(StrBytes, i32)> {
        let peer = self.peers.iter().find(|p| p.id == node)?;
        let addr = peer.kafka?;
        Some((
            StrBytes::from_string(addr.ip().to_string()),
            i32::from(addr.port()),
        ))
    }
}

/// A Raft term as a Kafka leader epoch.
pub fn epoch(term: u64) -> i32 {
    i32::try_from(term).unwrap_or(i32::MAX)
}

/// A stored topic id as a Kafka UUID.
pub fn uuid(id: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id)
}

/// The topic named by `name` or, when `name` is empty, by `id`.
pub fn resolve_topic(metadata: &Metadata, name: &str, id: uuid::Uuid) -> Option<TopicId> {
    if !name.is_empty() {
        return metadata.topic_by_name(name).map(|t| t.id);
    }
    let id = TopicId(id);
    (!id.0.is_nil() && metadata.topic(&id).is_some()).then_some(id)
}
