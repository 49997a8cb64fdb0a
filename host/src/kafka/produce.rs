//! Produce: each partition's record batch (exactly one, v2, CRC-32C
//! checked) is appended through the partition's Raft group by the replica
//! that leads it and serves. acks=1 and acks=all both answer after the
//! Raft commit and apply (there is no earlier point at which the leader
//! alone has the batch); acks=0 appends and sends no response. A
//! non-leader answers NOT_LEADER_OR_FOLLOWER with the assigned leader and
//! its endpoint (KIP-951) for versions that carry them.
//!
//! Idempotent batches (with a producer id from InitProducerId) are
//! deduplicated when applied (`partition_log`): a retry of a batch already
//! appended answers success with its original base offset; a sequence gap
//! answers OUT_OF_ORDER_SEQUENCE_NUMBER and an old producer epoch
//! INVALID_PRODUCER_EPOCH.

use super::{Broker, batch, resolve_topic};
use crate::partition_log::Refused;
use crate::raft::handle::{AppendError, RaftCommand};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

type Pending = Receiver<Result<i64, AppendError>>;

/// A partition's answer, or the append it waits for.
enum Slot {
    Done(PartitionProduceResponse),
    Waiting(PartitionProduceResponse, u64, Pending),
}

fn error(index: i32, e: ResponseError, message: impl Into<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(StrBytes::from_string(message.into())))
}

/// A produce request whose appends are queued to the Raft loop.
pub struct Submitted {
    acks: i16,
    timeout: Duration,
    topics: Vec<(TopicName, uuid::Uuid, Vec<Slot>)>,
    hinted: BTreeSet<i32>,
}

/// Checks every partition and queues the appends, synchronously: the
/// connection calls this in request order, so pipelined requests to the
/// same partition are appended in the order they were sent.
pub fn submit(broker: &Broker, request: ProduceRequest, version: i16) -> Submitted {
    // KIP-951 leader hints exist from v10 on; older versions cannot carry them.
    let hints = version >= 10;
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.clamp(100, 60_000) as u64);
    let mut topics = Vec::new();
    let mut hinted = BTreeSet::new();
    for topic in request.topic_data {
        let name = resolve_topic(&broker.metadata(), topic.name.0.as_str(), topic.topic_id);
        let mut slots = Vec::new();
        for data in topic.partition_data {
            let index = data.index;
            let Some(name) = &name else {
                slots.push(Slot::Done(error(
                    index,
                    if topic.name.0.is_empty() {
                        ResponseError::UnknownTopicId
                    } else {
                        ResponseError::UnknownTopicOrPartition
                    },
                    "unknown topic",
                )));
                continue;
            };
            if !matches!(acks, -1..=1) {
                slots.push(Slot::Done(error(
                    index,
                    ResponseError::InvalidRequiredAcks,
                    format!("acks={acks}"),
                )));
                continue;
            }
            let partition = broker.metadata().topic(name).and_then(|t| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| t.partitions.get(i).cloned())
            });
            let Some(partition) = partition else {
                slots.push(Slot::Done(error(
                    index,
                    ResponseError::UnknownTopicOrPartition,
                    format!("{name} has no partition {index}"),
                )));
                continue;
            };
            if !broker.serves(partition.group) {
                let (leader, epoch) = broker.leader_hint(&partition);
                let mut answer = error(
                    index,
                    ResponseError::NotLeaderOrFollower,
                    format!("node {} does not lead {name}-{index}", broker.node),
                );
                if hints && leader.0 >= 0 {
                    hinted.insert(leader.0);
                    answer = answer.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(leader)
                            .with_leader_epoch(epoch),
                    );
                }
                slots.push(Slot::Done(answer));
                continue;
            }
            let records = data.records.unwrap_or_default();
            if let Err(refused) = batch::check_single_batch(&records) {
                slots.push(Slot::Done(error(index, refused.error, refused.message)));
                continue;
            }
            let (reply, pending) = std::sync::mpsc::channel();
            let sent = broker.raft.send(RaftCommand::Append {
                group: partition.group,
                batch: records.to_vec(),
                reply,
            });
            match sent {
                Ok(()) => slots.push(Slot::Waiting(
                    PartitionProduceResponse::default()
                        .with_index(index)
                        .with_log_append_time_ms(-1),
                    partition.group,
                    pending,
                )),
                // A full queue is retriable: clients back off and retry.
                Err(e) if e.is_retriable() => slots.push(Slot::Done(error(
                    index,
                    ResponseError::RequestTimedOut,
                    e.to_string(),
                ))),
                Err(e) => slots.push(Slot::Done(error(
                    index,
                    ResponseError::UnknownServerError,
                    e.to_string(),
                ))),
            }
        }
        topics.push((topic.name, topic.topic_id, slots));
    }
    Submitted {
        acks,
        timeout,
        topics,
        hinted,
    }
}

/// Waits for the queued appends; `None` for acks=0 (no response is sent).
pub async fn finish(broker: &Arc<Broker>, submitted: Submitted) -> Option<ProduceResponse> {
    let Submitted {
        acks,
        timeout,
        topics,
        hinted,
    } = submitted;
    if acks == 0 {
        return None;
    }
    // Wait for every append at once, bounded by the request's timeout.
    let broker2 = broker.clone();
    let topics = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        topics
            .into_iter()
            .map(|(name, id, slots)| {
                let partitions = slots
                    .into_iter()
                    .map(|slot| match slot {
                        Slot::Done(r) => r,
                        Slot::Waiting(r, group, pending) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            answer_partition(&broker2, r, group, pending.recv_timeout(left))
                        }
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_topic_id(id)
                    .with_partition_responses(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
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
    Some(
        ProduceResponse::default()
            .with_responses(topics)
            .with_node_endpoints(node_endpoints),
    )
}

fn answer_partition(
    broker: &Broker,
    response: PartitionProduceResponse,
    group: u64,
    outcome: Result<Result<i64, AppendError>, std::sync::mpsc::RecvTimeoutError>,
) -> PartitionProduceResponse {
    let index = response.index;
    match outcome {
        Ok(Ok(base)) => {
            let start = broker
                .shared
                .logs
                .read()
                .ok()
                .and_then(|logs| logs.get(&group).map(|l| l.log_start_offset()))
                .unwrap_or(0);
            response.with_base_offset(base).with_log_start_offset(start)
        }
        Ok(Err(AppendError::NotLeader(_))) => error(
            index,
            ResponseError::NotLeaderOrFollower,
            "leadership moved before the batch was committed",
        ),
        Ok(Err(AppendError::UnknownGroup)) => error(
            index,
            ResponseError::UnknownTopicOrPartition,
            "the partition is not hosted here",
        ),
        Ok(Err(AppendError::Refused(Refused::Malformed(why)))) => {
            error(index, ResponseError::CorruptMessage, why)
        }
        Ok(Err(AppendError::Refused(Refused::OutOfOrderSequence(why)))) => {
            error(index, ResponseError::OutOfOrderSequenceNumber, why)
        }
        // Not PRODUCER_FENCED: that one is for transactional producers.
        Ok(Err(AppendError::Refused(Refused::InvalidProducerEpoch(why)))) => {
            error(index, ResponseError::InvalidProducerEpoch, why)
        }
        Ok(Err(AppendError::Dropped(why))) => error(index, ResponseError::NotLeaderOrFollower, why),
        Err(_) => error(
            index,
            ResponseError::RequestTimedOut,
            "not committed within the request timeout",
        ),
    }
}
