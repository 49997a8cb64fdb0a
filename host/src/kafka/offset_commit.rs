//! OffsetCommit (v2–v9): a member of the group's current generation (or,
//! with generation -1 and no member id, a client outside the group
//! protocol while the group has no members) commits offsets; they are a
//! record in the offsets partition's Raft log, answered once applied. Only
//! partitions that exist are accepted (UNKNOWN_TOPIC_OR_PARTITION), and a
//! metadata string longer than `max_offset_metadata_bytes` is
//! OFFSET_METADATA_TOO_LARGE.

use super::Broker;
use crate::coordinator::record::CommittedOffset;
use crate::raft::node::now_ms;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

pub async fn handle(
    broker: &Broker,
    request: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    let max_metadata = broker.coordinator.config().max_offset_metadata_bytes;
    let mut offsets = Vec::new();
    // Per topic, per partition: Some(error) decided now, None: committed.
    let mut decided: Vec<Vec<Option<ResponseError>>> = Vec::new();
    {
        let metadata = broker.metadata();
        for topic in &request.topics {
            let known = metadata.topic_by_name(topic.name.0.as_str());
            decided.push(
                topic
                    .partitions
                    .iter()
                    .map(|p| {
                        if known.and_then(|t| t.partition(p.partition_index)).is_none() {
                            return Some(ResponseError::UnknownTopicOrPartition);
                        }
                        let metadata = p.committed_metadata.as_deref().unwrap_or_default();
                        if metadata.len() > max_metadata {
                            return Some(ResponseError::OffsetMetadataTooLarge);
                        }
                        offsets.push(CommittedOffset {
                            topic: topic.name.0.to_string(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                            commit_ms: now_ms(),
                        });
                        None
                    })
                    .collect(),
            );
        }
    }
    let outcome = broker
        .coordinator
        .commit(
            request.group_id.0.as_str(),
            request.member_id.as_str(),
            request.generation_id_or_member_epoch,
            request.group_instance_id.as_deref(),
            offsets,
        )
        .await
        .err();
    let topics = request
        .topics
        .iter()
        .zip(decided)
        .map(|(topic, errors)| {
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .zip(errors)
                        .map(|(p, error)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.or(outcome).map_or(0, |e| e.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
