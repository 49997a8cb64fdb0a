//! Fetch: served by the partition's leading, serving replica only; the
//! records are the stored batches (as produced, base offsets rewritten)
//! from the one holding `fetch_offset` up to the high watermark (=
//! committed: only committed entries are applied). Without data the
//! request waits up to `max_wait_ms` (capped at 30 s), polling the log.
//! No fetch sessions: the answer's session id is 0, so clients fetch in
//! full every time. A `current_leader_epoch` older than the assignment's
//! gets FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH.

use super::{Broker, epoch, resolve_topic};
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(10);
const MAX_WAIT: Duration = Duration::from_secs(30);

pub async fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(1) as usize;
    loop {
        let (topics, bytes, errors, hinted) = collect(broker, &request, version);
        if bytes >= min_bytes || errors || Instant::now() >= deadline {
            let node_endpoints = hinted
                .into_iter()
                .filter_map(|id| {
                    let (host, port) = broker.endpoint(id as u64)?;
                    Some(
                        NodeEndpoint::default()
                            .with_node_id(BrokerId(id))
                            .with_host(host)
                            .with_port(port),
                    )
                })
                .collect();
            return FetchResponse::default()
                .with_responses(topics)
                .with_node_endpoints(node_endpoints);
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

fn failed(index: i32, e: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
}

/// One pass over the requested partitions: (topics, record bytes, any
/// partition errors, leaders hinted).
fn collect(
    broker: &Broker,
    request: &FetchRequest,
    version: i16,
) -> (Vec<FetchableTopicResponse>, usize, bool, BTreeSet<i32>) {
    let max_bytes = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let read_committed = request.isolation_level == 1;
    let mut total = 0usize;
    let mut errors = false;
    let mut hinted = BTreeSet::new();
    let metadata = broker.metadata().clone();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = resolve_topic(&metadata, topic.topic.0.as_str(), topic.topic_id);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let index = p.partition;
                    let Some(name) = &name else {
                        errors = true;
                        return failed(
                            index,
                            if topic.topic.0.is_empty() {
                                ResponseError::UnknownTopicId
                            } else {
                                ResponseError::UnknownTopicOrPartition
                            },
                        );
                    };
                    let Some(meta) = usize::try_from(index)
                        .ok()
                        .and_then(|i| metadata.topic(name)?.partitions.get(i))
                    else {
                        errors = true;
                        return failed(index, ResponseError::UnknownTopicOrPartition);
                    };
                    let assigned = epoch(meta.epoch);
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch != assigned {
                        errors = true;
                        return failed(
                            index,
                            if p.current_leader_epoch < assigned {
                                ResponseError::FencedLeaderEpoch
                            } else {
                                ResponseError::UnknownLeaderEpoch
                            },
                        );
                    }
                    if !broker.serves(meta.group) {
                        errors = true;
                        let (leader, leader_epoch) = broker.leader_hint(meta);
                        let answer = failed(index, ResponseError::NotLeaderOrFollower);
                        // KIP-951 hints: current leader from v12, endpoints from v16.
                        if version < 12 || leader.0 < 0 {
                            return answer;
                        }
                        if version >= 16 {
                            hinted.insert(leader.0);
                        }
                        return answer.with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(leader)
                                .with_leader_epoch(leader_epoch),
                        );
                    }
                    let logs = broker.shared.logs.read().unwrap_or_else(|e| e.into_inner());
                    let Some(log) = logs.get(&meta.group) else {
                        errors = true;
                        return failed(index, ResponseError::NotLeaderOrFollower);
                    };
                    let (start, high) = (log.log_start_offset(), log.high_watermark());
                    if p.fetch_offset < start || p.fetch_offset > high {
                        errors = true;
                        return failed(index, ResponseError::OffsetOutOfRange)
                            .with_high_watermark(high)
                            .with_last_stable_offset(high)
                            .with_log_start_offset(start);
                    }
                    let records = if total >= max_bytes {
                        Bytes::new()
                    } else {
                        let limit = (p.partition_max_bytes.max(0) as usize).min(max_bytes - total);
                        let mut out = BytesMut::new();
                        for batch in log.read(p.fetch_offset, limit) {
                            out.extend_from_slice(&batch);
                        }
                        out.freeze()
                    };
                    total += records.len();
                    PartitionData::default()
                        .with_partition_index(index)
                        .with_high_watermark(high)
                        .with_last_stable_offset(high)
                        .with_log_start_offset(start)
                        .with_aborted_transactions(read_committed.then(Vec::new))
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_records(Some(records))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    (topics, total, errors, hinted)
}
