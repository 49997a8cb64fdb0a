//! CreatePartitions (v0–v3): a topic grows to `count` partitions; each new
//! partition is a new Raft group whose first leader reaches Metadata
//! through the hooks, like any partition's. New replicas are placed
//! round-robin over the live nodes (or as the request assigns them) with
//! the topic's replication factor. Fewer or as many partitions as now is
//! INVALID_PARTITIONS; more than `max_partitions_per_topic`
//! POLICY_VIOLATION; the offsets topic cannot grow (a group's partition is
//! its id's hash modulo the count).

use super::Broker;
use crate::coordinator::OFFSETS_TOPIC;
use crate::metadata::topic::{check_assignment, place};
use crate::metadata::{Applied, Command, Refusal};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use leaderhook_hooks::NodeId;
use std::time::Duration;

pub async fn handle(
    broker: &Broker,
    request: &CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let timeout = Duration::from_millis(request.timeout_ms.clamp(1_000, 30_000) as u64);
    let mut results = Vec::new();
    for topic in &request.topics {
        let outcome = grow(broker, topic, request.validate_only, timeout).await;
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok(()) => result,
            Err((e, m)) => result
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(m))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(
    broker: &Broker,
    request: &CreatePartitionsTopic,
    validate_only: bool,
    timeout: Duration,
) -> Result<(), (ResponseError, String)> {
    let name = request.name.0.as_str();
    let topic = broker
        .metadata()
        .topic_by_name(name)
        .cloned()
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("unknown topic {name}"),
            )
        })?;
    if name == OFFSETS_TOPIC {
        return Err((
            ResponseError::InvalidRequest,
            "the offsets topic cannot grow: groups are placed by hash modulo its partitions".into(),
        ));
    }
    let has = topic.partitions.len() as u32;
    let count = u32::try_from(request.count).unwrap_or(0);
    if count <= has {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "topic {name} has {has} partitions; asked for {}",
                request.count
            ),
        ));
    }
    let limits = broker.topic_limits;
    if count > limits.max_partitions_per_topic {
        return Err((
            ResponseError::PolicyViolation,
            format!(
                "{count} partitions exceed the limit of {} per topic",
                limits.max_partitions_per_topic
            ),
        ));
    }
    let replication = topic.partitions[0].replicas.len();
    let added = (count - has) as usize;
    let replicas: Vec<Vec<NodeId>> = match &request.assignments {
        Some(assignments) => {
            let replicas: Vec<Vec<NodeId>> = assignments
                .iter()
                .map(|a| {
                    a.broker_ids
                        .iter()
                        .map(|b| u64::try_from(b.0).unwrap_or(0))
                        .collect()
                })
                .collect();
            if replicas.len() != added || replicas.iter().any(|r| r.len() != replication) {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "{added} new partitions need {added} assignments of {replication} replicas"
                    ),
                ));
            }
            let cluster: Vec<NodeId> = broker.peers.iter().map(|p| p.id).collect();
            check_assignment(&cluster, &replicas, &limits)
                .map_err(|e| (ResponseError::InvalidReplicaAssignment, e.to_string()))?;
            replicas
        }
        None => {
            let live: Vec<NodeId> = broker.shared.live_nodes().into_iter().collect();
            // Round-robin continued: the new partitions' placement is what
            // a topic of `count` partitions would have had for them.
            place(&live, count, replication, &limits)
                .map_err(|e| (ResponseError::InvalidReplicationFactor, e.to_string()))?
                .split_off(has as usize)
        }
    };
    if validate_only {
        return Ok(());
    }
    let command = Command::CreatePartitions {
        topic_id: topic.id,
        from: has,
        replicas,
    };
    match broker.raft.propose(command, timeout).await {
        Ok(Applied::PartitionsCreated { .. }) => Ok(()),
        Ok(Applied::Refused(why @ Refusal::PartitionCountChanged { .. })) => {
            Err((ResponseError::InvalidPartitions, why.to_string()))
        }
        Ok(Applied::Refused(why)) => Err((ResponseError::UnknownTopicOrPartition, why.to_string())),
        Ok(other) => Err((ResponseError::UnknownServerError, format!("{other:?}"))),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}
