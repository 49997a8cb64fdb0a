//! CreateTopics: validated here, then proposed to the metadata group
//! (answered once applied on this node). Partition count -1 means 1 and
//! replication factor -1 means min(3, cluster size). Manual replica
//! assignments are accepted when every partition lists distinct cluster
//! nodes. Topic configs are ignored.

use super::{Broker, uuid};
use crate::metadata::{self, Applied, Command};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use leaderhook_hooks::NodeId;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

struct Invalid(ResponseError, String);

pub async fn handle(
    broker: &Arc<Broker>,
    request: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    let timeout = Duration::from_millis(request.timeout_ms.clamp(1_000, 30_000) as u64);
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut results = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let outcome = if duplicates.contains(&name) {
            Err(Invalid(
                ResponseError::InvalidRequest,
                format!("topic {name} appears more than once in the request"),
            ))
        } else {
            match plan(broker, &topic) {
                Err(e) => Err(e),
                Ok(replicas) => {
                    result.num_partitions = replicas.len() as i32;
                    result.replication_factor = replicas[0].len() as i16;
                    if request.validate_only {
                        Ok(None)
                    } else {
                        create(broker, name, replicas, timeout).await.map(Some)
                    }
                }
            }
        };
        result = match outcome {
            Ok(id) => {
                let result = result.with_configs(Some(Vec::new()));
                match id {
                    Some(id) => result.with_topic_id(uuid(id)),
                    None => result,
                }
            }
            Err(Invalid(error, message)) => result
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        };
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The replicas of every partition, or why the topic cannot be created.
fn plan(broker: &Broker, topic: &CreatableTopic) -> Result<Vec<Vec<NodeId>>, Invalid> {
    let name = topic.name.0.as_str();
    if name.is_empty()
        || name.len() > 249
        || name == "."
        || name == ".."
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(Invalid(
            ResponseError::InvalidTopicException,
            format!("invalid topic name {name:?} (use [a-zA-Z0-9._-], at most 249)"),
        ));
    }
    if broker.metadata().topics.contains_key(name) {
        return Err(Invalid(
            ResponseError::TopicAlreadyExists,
            format!("topic {name} already exists"),
        ));
    }
    let nodes: Vec<NodeId> = broker.peers.iter().map(|p| p.id).collect();
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(Invalid(
                ResponseError::InvalidRequest,
                "with manual assignments, partitions and replication factor must be -1".into(),
            ));
        }
        let mut assignments: Vec<_> = topic.assignments.iter().collect();
        assignments.sort_by_key(|a| a.partition_index);
        let mut replicas = Vec::new();
        for (i, a) in assignments.iter().enumerate() {
            let ids: Vec<NodeId> = a.broker_ids.iter().map(|b| b.0 as NodeId).collect();
            let distinct: HashSet<_> = ids.iter().collect();
            if a.partition_index != i as i32
                || ids.is_empty()
                || distinct.len() != ids.len()
                || a.broker_ids
                    .iter()
                    .any(|b| b.0 <= 0 || !nodes.contains(&(b.0 as NodeId)))
            {
                return Err(Invalid(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "invalid replica assignment for partition {}",
                        a.partition_index
                    ),
                ));
            }
            replicas.push(ids);
        }
        return Ok(replicas);
    }
    let partitions = match topic.num_partitions {
        -1 => 1,
        n if n > 0 => n as u32,
        n => {
            return Err(Invalid(
                ResponseError::InvalidPartitions,
                format!("number of partitions {n} must be positive"),
            ));
        }
    };
    let replication = match topic.replication_factor {
        -1 => nodes.len().min(3),
        n if n > 0 && (n as usize) <= nodes.len() => n as usize,
        n => {
            return Err(Invalid(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {n} is invalid for a cluster of {} nodes",
                    nodes.len()
                ),
            ));
        }
    };
    metadata::place(&nodes, partitions, replication)
        .map_err(|e| Invalid(ResponseError::InvalidRequest, e))
}

async fn create(
    broker: &Arc<Broker>,
    name: String,
    replicas: Vec<Vec<NodeId>>,
    timeout: Duration,
) -> Result<[u8; 16], Invalid> {
    let topic_id = random_id();
    let raft = broker.raft.clone();
    let command = Command::CreateTopic {
        name,
        topic_id,
        replicas,
    };
    let applied = tokio::task::spawn_blocking(move || super::propose(&raft, command, timeout))
        .await
        .map_err(|e| Invalid(ResponseError::UnknownServerError, e.to_string()))?;
    match applied {
        Ok(Applied::TopicCreated { .. }) => Ok(topic_id),
        Ok(Applied::Refused(why)) if why.contains("already exists") => {
            Err(Invalid(ResponseError::TopicAlreadyExists, why))
        }
        Ok(other) => Err(Invalid(ResponseError::InvalidRequest, format!("{other:?}"))),
        Err(why) => Err(Invalid(ResponseError::RequestTimedOut, why)),
    }
}

/// 128 random bits (never all zero: the nil UUID means "no id" in Kafka).
pub fn random_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0u8; 16];
    for (i, half) in id.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}
