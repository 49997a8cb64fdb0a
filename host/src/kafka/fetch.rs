//! Fetch: served by the partition's leading, serving replica only; the
//! records are the stored batches (as produced, base offsets rewritten)
//! from the one holding `fetch_offset` up to the high watermark (=
//! committed: only committed entries are applied), at most the request's
//! `max_bytes` and the broker's `fetch_max_bytes` (at least one batch).
//! Without data the request waits up to `max_wait_ms` (capped at 30 s) for
//! one of its partitions to append (each log signals its appends); the
//! metadata is read only for the partitions asked, never copied.
//! No fetch sessions: the answer's session id is 0, so clients fetch in
//! full every time. A `current_leader_epoch` older than the assignment's
//! gets FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH.

use super::{Broker, epoch, resolve_topic};
use crate::metadata::TopicId;
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

const MAX_WAIT: Duration = Duration::from_secs(30);

/// Answers a Fetch with at most `room` record bytes (the server reserved
/// them in the connection's budget) — plus, when that is less than one
/// batch, the one batch a client needs to make progress, as Kafka does.
pub async fn handle(
    broker: &Arc<Broker>,
    request: FetchRequest,
    version: i16,
    room: usize,
) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(1) as usize;
    loop {
        let pass = collect(broker, &request, version, room);
        if pass.bytes >= min_bytes || pass.errors || Instant::now() >= deadline {
            let node_endpoints = pass
                .hinted
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
                .with_responses(pass.topics)
                .with_node_endpoints(node_endpoints);
        }
        wait_for_appends(pass.appended, deadline).await;
    }
}

/// Sleeps until one of the logs appends (or goes away), or `deadline`.
async fn wait_for_appends(appended: Vec<watch::Receiver<i64>>, deadline: Instant) {
    let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = appended
        .into_iter()
        .map(|mut rx| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let _ = rx.changed().await;
            })
        })
        .collect();
    let any = std::future::poll_fn(|cx| {
        for wait in &mut waits {
            if wait.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    });
    let _ = tokio::time::timeout_at(deadline, any).await;
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

/// One pass over the requested partitions.
struct Pass {
    topics: Vec<FetchableTopicResponse>,
    /// Record bytes in `topics`.
    bytes: usize,
    /// Whether any partition has an error (answered at once).
    errors: bool,
    /// Leaders hinted (KIP-951), whose endpoints go in the response.
    hinted: BTreeSet<i32>,
    /// Every partition read: changes when it appends.
    appended: Vec<watch::Receiver<i64>>,
}

/// The group of a requested partition this node serves, or the answer
/// why it is not read here (from the metadata, whose lock is released
/// before any log is read).
fn plan(
    broker: &Broker,
    name: Option<TopicId>,
    unknown: ResponseError,
    p: &kafka_protocol::messages::fetch_request::FetchPartition,
    version: i16,
    hinted: &mut BTreeSet<i32>,
) -> Result<u64, Box<PartitionData>> {
    let index = p.partition;
    let metadata = broker.metadata();
    let Some(meta) = name.and_then(|id| metadata.topic(&id)).and_then(|t| {
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
    }) else {
        let e = if name.is_some() {
            ResponseError::UnknownTopicOrPartition
        } else {
            unknown
        };
        return Err(Box::new(failed(index, e)));
    };
    let assigned = epoch(meta.epoch);
    if p.current_leader_epoch >= 0 && p.current_leader_epoch != assigned {
        return Err(Box::new(failed(
            index,
            if p.current_leader_epoch < assigned {
                ResponseError::FencedLeaderEpoch
            } else {
                ResponseError::UnknownLeaderEpoch
            },
        )));
    }
    if !broker.serves(meta.group) {
        let (leader, leader_epoch) = broker.leader_hint(meta);
        let answer = failed(index, ResponseError::NotLeaderOrFollower);
        // KIP-951 hints: current leader from v12, endpoints from v16.
        if version < 12 || leader.0 < 0 {
            return Err(Box::new(answer));
        }
        if version >= 16 {
            hinted.insert(leader.0);
        }
        return Err(Box::new(
            answer.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(leader)
                    .with_leader_epoch(leader_epoch),
            ),
        ));
    }
    Ok(meta.group)
}

fn collect(broker: &Broker, request: &FetchRequest, version: i16, room: usize) -> Pass {
    let read_committed = request.isolation_level == 1;
    let mut pass = Pass {
        topics: Vec::with_capacity(request.topics.len()),
        bytes: 0,
        errors: false,
        hinted: BTreeSet::new(),
        appended: Vec::new(),
    };
    for topic in &request.topics {
        let name = resolve_topic(&broker.metadata(), topic.topic.0.as_str(), topic.topic_id);
        // Topic ids name topics from v13 on.
        let unknown = if topic.topic.0.is_empty() && version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let index = p.partition;
            let group = match plan(broker, name, unknown, p, version, &mut pass.hinted) {
                Err(answer) => {
                    pass.errors = true;
                    partitions.push(*answer);
                    continue;
                }
                Ok(group) => group,
            };
            // Whole batches from the one holding `fetch_offset`, within the
            // room left — at least one batch until something is returned.
            let limit = if pass.bytes > 0 && pass.bytes >= room {
                None
            } else {
                Some((p.partition_max_bytes.max(0) as usize).min(room.saturating_sub(pass.bytes)))
            };
            let (start, high, plan) = {
                let logs = broker.shared.logs.read().unwrap_or_else(|e| e.into_inner());
                let Some(log) = logs.get(&group) else {
                    pass.errors = true;
                    partitions.push(failed(index, ResponseError::NotLeaderOrFollower));
                    continue;
                };
                pass.appended.push(log.subscribe());
                let (start, high) = (log.log_start_offset(), log.high_watermark());
                // Where to read from; the disk is read after the lock is gone.
                let plan = match limit {
                    Some(limit) if (start..high).contains(&p.fetch_offset) => log
                        .locate(p.fetch_offset)
                        .map(|from| (from, log.applied(), limit)),
                    _ => None,
                };
                (start, high, plan)
            };
            if !(start..=high).contains(&p.fetch_offset) {
                pass.errors = true;
                partitions.push(
                    failed(index, ResponseError::OffsetOutOfRange)
                        .with_high_watermark(high)
                        .with_last_stable_offset(high)
                        .with_log_start_offset(start),
                );
                continue;
            }
            let batches = match plan {
                None => Vec::new(),
                Some((from, applied, limit)) => {
                    let storage = broker.store.group(group);
                    match crate::partition_log::reader::read(
                        &storage,
                        from,
                        applied,
                        p.fetch_offset,
                        limit,
                    ) {
                        Ok(batches) => batches,
                        // Retention removed them meanwhile: the client asks
                        // again and learns the new log start.
                        Err(e) => {
                            tracing::debug!(group, "fetch: {e}");
                            pass.errors = true;
                            partitions.push(
                                failed(index, ResponseError::OffsetOutOfRange)
                                    .with_high_watermark(high)
                                    .with_last_stable_offset(high)
                                    .with_log_start_offset(start),
                            );
                            continue;
                        }
                    }
                }
            };
            let records = concat(batches);
            pass.bytes += records.len();
            partitions.push(
                PartitionData::default()
                    .with_partition_index(index)
                    .with_high_watermark(high)
                    .with_last_stable_offset(high)
                    .with_log_start_offset(start)
                    .with_aborted_transactions(read_committed.then(Vec::new))
                    .with_preferred_read_replica(BrokerId(-1))
                    .with_records(Some(records)),
            );
        }
        pass.topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    pass
}

/// The batches as one record set (no copy for a single batch).
fn concat(batches: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(batches) {
        Ok([one]) => one,
        Err(batches) => {
            let mut out = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
            for batch in batches {
                out.extend_from_slice(&batch);
            }
            out.freeze()
        }
    }
}
