//! CreateTopics: validated here, then proposed to the metadata group
//! (answered once applied on this node). Partition count -1 means 1 and
//! replication factor -1 means min(3, live nodes). Replicas are placed on
//! live nodes only; a replication factor above the live nodes is
//! INVALID_REPLICATION_FACTOR. Partitions per topic and per request are
//! bounded (`[topics]` in the node config; POLICY_VIOLATION beyond). Manual
//! replica assignments are accepted when every partition lists the same
//! number of distinct cluster nodes. Topic configs: only the supported ones
//! (`metadata::topic::SUPPORTED_CONFIGS`), INVALID_CONFIG otherwise.

use super::Broker;
use crate::metadata::topic::{self, PlacementError};
use crate::metadata::{Applied, Command, Refusal, TopicConfigs, TopicId};
use crate::raft::handle::RaftError;
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

impl From<PlacementError> for Invalid {
    fn from(e: PlacementError) -> Self {
        let code = match e {
            PlacementError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            PlacementError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            PlacementError::PolicyViolation(_) => ResponseError::PolicyViolation,
        };
        Invalid(code, e.to_string())
    }
}

/// A topic that passed every check, ready to propose.
struct Plan {
    replicas: Vec<Vec<NodeId>>,
    configs: TopicConfigs,
}

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
    let limits = broker.topic_limits;
    let mut partitions_left = u64::from(limits.max_partitions_per_request);
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
                Ok(plan) if plan.replicas.len() as u64 > partitions_left => Err(Invalid(
                    ResponseError::PolicyViolation,
                    format!(
                        "this request asks for more than {} partitions in all",
                        limits.max_partitions_per_request
                    ),
                )),
                Ok(plan) => {
                    partitions_left -= plan.replicas.len() as u64;
                    result.num_partitions = plan.replicas.len() as i32;
                    result.replication_factor = plan.replicas[0].len() as i16;
                    if request.validate_only {
                        Ok(None)
                    } else {
                        create(broker, name, plan, timeout).await.map(Some)
                    }
                }
            }
        };
        result = match outcome {
            Ok(id) => {
                let result = result.with_configs(Some(Vec::new()));
                match id {
                    Some(id) => result.with_topic_id(id.0),
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

/// The replicas of every partition and the topic's configs, or why the
/// topic cannot be created.
fn plan(broker: &Broker, topic: &CreatableTopic) -> Result<Plan, Invalid> {
    let name = topic.name.0.as_str();
    topic::validate_name(name).map_err(|e| Invalid(ResponseError::InvalidTopicException, e))?;
    if broker.metadata().topic_by_name(name).is_some() {
        return Err(Invalid(
            ResponseError::TopicAlreadyExists,
            format!("topic {name} already exists"),
        ));
    }
    let mut configs = TopicConfigs::new();
    for c in &topic.configs {
        let Some(value) = &c.value else {
            return Err(Invalid(
                ResponseError::InvalidConfig,
                format!("topic config {:?} has no value", c.name.as_str()),
            ));
        };
        configs.insert(c.name.to_string(), value.to_string());
    }
    topic::validate_configs(&configs).map_err(|e| Invalid(ResponseError::InvalidConfig, e))?;
    let limits = broker.topic_limits;
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(Invalid(
                ResponseError::InvalidRequest,
                "with manual assignments, partitions and replication factor must be -1".into(),
            ));
        }
        let mut assignments: Vec<_> = topic.assignments.iter().collect();
        assignments.sort_by_key(|a| a.partition_index);
        if let Some((i, a)) = assignments
            .iter()
            .enumerate()
            .find(|(i, a)| a.partition_index != *i as i32)
        {
            return Err(Invalid(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "assignments must cover partitions 0..n once each; found {} at position {i}",
                    a.partition_index
                ),
            ));
        }
        let replicas: Vec<Vec<NodeId>> = assignments
            .iter()
            .map(|a| {
                a.broker_ids
                    .iter()
                    .map(|b| u64::try_from(b.0).unwrap_or(0))
                    .collect()
            })
            .collect();
        let cluster: Vec<NodeId> = broker.peers.iter().map(|p| p.id).collect();
        topic::check_assignment(&cluster, &replicas, &limits).map_err(|e| match e {
            PlacementError::PolicyViolation(m) => Invalid(ResponseError::PolicyViolation, m),
            other => Invalid(ResponseError::InvalidReplicaAssignment, other.to_string()),
        })?;
        return Ok(Plan { replicas, configs });
    }
    let live: Vec<NodeId> = broker.shared.live_nodes().into_iter().collect();
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
        -1 => live.len().min(3),
        n if n > 0 => n as usize,
        n => {
            return Err(Invalid(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {n} must be positive"),
            ));
        }
    };
    let replicas = topic::place(&live, partitions, replication, &limits)?;
    Ok(Plan { replicas, configs })
}

async fn create(
    broker: &Arc<Broker>,
    name: String,
    plan: Plan,
    timeout: Duration,
) -> Result<TopicId, Invalid> {
    let topic_id = TopicId::random();
    let command = Command::CreateTopic {
        name,
        topic_id,
        replicas: plan.replicas,
        configs: plan.configs,
    };
    match broker.raft.propose(command, timeout).await {
        Ok(Applied::TopicCreated { topic_id, .. }) => Ok(topic_id),
        Ok(Applied::Refused(why @ Refusal::TopicExists(_))) => {
            Err(Invalid(ResponseError::TopicAlreadyExists, why.to_string()))
        }
        Ok(Applied::Refused(why)) => Err(Invalid(ResponseError::InvalidRequest, why.to_string())),
        Ok(other) => Err(Invalid(
            ResponseError::UnknownServerError,
            format!("unexpected outcome {other:?}"),
        )),
        Err(e @ RaftError::Stopped) => {
            Err(Invalid(ResponseError::UnknownServerError, e.to_string()))
        }
        Err(e) => Err(Invalid(ResponseError::RequestTimedOut, e.to_string())),
    }
}
