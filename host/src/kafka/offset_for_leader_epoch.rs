//! OffsetForLeaderEpoch (v2–v4), from the partition's leading, serving
//! replica: for a leader epoch (= Raft term), the largest epoch at or
//! below it and the offset where the next epoch's records begin (the log
//! end for the current epoch), as Kafka answers it, so a consumer can tell
//! whether the records it read survived a leader change. Raft never
//! truncates a committed entry, so the answer always confirms them. An
//! epoch newer than any is answered -1/-1 (UNDEFINED), and the request's
//! `current_leader_epoch` is fenced as in ListOffsets.

use super::{Broker, epoch};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

pub fn handle(
    broker: &Broker,
    request: &OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let fail = |e: ResponseError| answer.clone().with_error_code(e.code());
                    let found = broker
                        .metadata()
                        .topic_by_name(topic.topic.0.as_str())
                        .and_then(|t| t.partition(p.partition).map(|m| (m.group, m.epoch)));
                    let Some((group, assigned)) = found else {
                        return fail(ResponseError::UnknownTopicOrPartition);
                    };
                    let assigned = epoch(assigned);
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < assigned {
                        return fail(ResponseError::FencedLeaderEpoch);
                    }
                    if p.current_leader_epoch > assigned {
                        return fail(ResponseError::UnknownLeaderEpoch);
                    }
                    if !broker.serves(group) {
                        return fail(ResponseError::NotLeaderOrFollower);
                    }
                    let logs = broker.shared.logs.read().unwrap_or_else(|e| e.into_inner());
                    let Some(log) = logs.get(&group) else {
                        return fail(ResponseError::NotLeaderOrFollower);
                    };
                    let Ok(requested) = u64::try_from(p.leader_epoch) else {
                        return answer; // UNDEFINED_EPOCH asks nothing
                    };
                    match log.end_offset_for_epoch(requested) {
                        Some((found, end)) => {
                            answer.with_leader_epoch(epoch(found)).with_end_offset(end)
                        }
                        None => answer,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
