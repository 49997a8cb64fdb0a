//! ListOffsets, from the partition's leading, serving replica: latest (-1)
//! = high watermark, earliest (-2) and earliest-local (-4) = log start
//! offset, max-timestamp (-3) = the record with the largest timestamp,
//! latest-tiered (-5) = none (-1: no tiered storage), and any other value
//! a lookup by timestamp, as Kafka does: the first offset whose timestamp
//! is at least it (a binary search over the log's time index), or -1 when
//! every record is older.

use super::{Broker, epoch};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(broker: &Broker, request: &ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let fail = |e: ResponseError| answer.clone().with_error_code(e.code());
                    let found = broker
                        .metadata()
                        .topic_by_name(topic.name.0.as_str())
                        .and_then(|t| {
                            usize::try_from(p.partition_index)
                                .ok()
                                .and_then(|i| t.partitions.get(i))
                                .map(|meta| (meta.group, meta.epoch))
                        });
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
                    let (start, high, applied, at) = {
                        let logs = broker.shared.logs.read().unwrap_or_else(|e| e.into_inner());
                        let Some(log) = logs.get(&group) else {
                            return fail(ResponseError::NotLeaderOrFollower);
                        };
                        let at = match p.timestamp {
                            MAX_TIMESTAMP => log.max_timestamp(),
                            LATEST | EARLIEST | EARLIEST_LOCAL | LATEST_TIERED => None,
                            t => log.locate_timestamp(t).map(|index| (t, index)),
                        };
                        (
                            log.log_start_offset(),
                            log.high_watermark(),
                            log.applied(),
                            at,
                        )
                    };
                    // The disk is read after the lock is gone.
                    let lookup = |(target, from): (i64, u64), through: u64| {
                        let storage = broker.store.group(group);
                        crate::partition_log::reader::find_timestamp(
                            &storage, from, through, target,
                        )
                        .unwrap_or_else(|e| {
                            tracing::debug!(group, "list offsets: {e}");
                            None
                        })
                    };
                    let found = match p.timestamp {
                        LATEST => Some((high, -1)),
                        EARLIEST | EARLIEST_LOCAL => Some((start, -1)),
                        MAX_TIMESTAMP => at.and_then(|(t, index)| lookup((t, index), index)),
                        LATEST_TIERED => None,
                        _ => at.and_then(|at| lookup(at, applied)),
                    };
                    let (offset, timestamp) = found.unwrap_or((-1, -1));
                    let answer = answer.with_offset(offset).with_timestamp(timestamp);
                    // The leader epoch is part of the answer from v4 on.
                    if version >= 4 {
                        answer.with_leader_epoch(assigned)
                    } else {
                        answer
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
