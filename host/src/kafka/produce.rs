//! Produce: each partition's record batch (exactly one, at most the
//! partition's `max.message.bytes`, checked as Kafka checks it: see
//! [`batch`]) is appended through the partition's Raft group by the
//! replica that leads it and serves. acks=1 and acks=all both answer after
//! the Raft commit and apply (there is no earlier point at which the leader
//! alone has the batch); acks=0 sends no response, but its request stays
//! in flight on its connection until the appends are done, so a client
//! cannot queue appends faster than Raft commits them; if any partition
//! was refused the connection is closed, as Kafka does. Waits are async
//! (`oneshot` replies from the Raft loop), bounded by the request's
//! timeout. A non-leader answers NOT_LEADER_OR_FOLLOWER with the assigned
//! leader and its endpoint (KIP-951) for versions that carry them.
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
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::error::Elapsed;

type Pending = oneshot::Receiver<Result<i64, AppendError>>;

/// Topic configs until topics carry their own (`batch::max_message_bytes`
/// takes them): none, so the broker's `message_max_bytes` applies.
const NO_TOPIC_CONFIGS: &BTreeMap<String, String> = &BTreeMap::new();

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
                    // Topic ids name topics from v13 on.
                    if topic.name.0.is_empty() && version >= 13 {
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
            let (name, partition, limit) = {
                let metadata = broker.metadata();
                let topic = metadata.topic(name);
                (
                    topic.map_or_else(|| name.to_string(), |t| t.name.clone()),
                    topic.and_then(|t| t.partition(index).cloned()),
                    // The topic's max.message.bytes, else the broker's.
                    batch::max_message_bytes(
                        broker.config.message_max_bytes,
                        topic.map_or(NO_TOPIC_CONFIGS, |t| &t.configs),
                    ),
                )
            };
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
            if let Err(refused) = batch::check_produced(&records, limit) {
                slots.push(Slot::Done(error(index, refused.error, refused.message)));
                continue;
            }
            let (reply, pending) = oneshot::channel();
            let sent = broker.raft.send(RaftCommand::Append {
                group: partition.group,
                entry: crate::partition_log::entry::records(&records),
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

/// How a produce request ends.
pub enum Finished {
    Respond(ProduceResponse),
    /// acks=0, every append done: nothing is sent.
    Silent,
    /// acks=0 with a partition refused: like Kafka, the connection is
    /// closed, the only way to tell such a client (it then refreshes its
    /// metadata instead of sending on to a node that drops its records).
    CloseConnection(String),
}

/// Waits for the queued appends (for acks=0 too: the wait holds the
/// request in flight on its connection).
pub async fn finish(broker: &Arc<Broker>, submitted: Submitted) -> Finished {
    let Submitted {
        acks,
        timeout,
        topics,
        hinted,
    } = submitted;
    // Every append waits at once in Raft; this collects them in order,
    // bounded by the request's timeout.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut responses = Vec::with_capacity(topics.len());
    for (name, id, slots) in topics {
        let mut partitions = Vec::with_capacity(slots.len());
        for slot in slots {
            partitions.push(match slot {
                Slot::Done(r) => r,
                Slot::Waiting(r, group, pending) => {
                    let outcome = tokio::time::timeout_at(deadline, pending).await;
                    answer_partition(broker, r, group, outcome)
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(id)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        let refused = responses
            .iter()
            .flat_map(|t| t.partition_responses.iter().map(move |p| (t, p)))
            .find(|(_, p)| p.error_code != 0);
        return match refused {
            None => Finished::Silent,
            Some((topic, p)) => Finished::CloseConnection(format!(
                "acks=0 produce to {}-{} refused (error {}): {}",
                topic.name.0,
                p.index,
                p.error_code,
                p.error_message.as_ref().map_or("", |m| m.as_str())
            )),
        };
    }
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
    Finished::Respond(
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(node_endpoints),
    )
}

fn answer_partition(
    broker: &Broker,
    response: PartitionProduceResponse,
    group: u64,
    outcome: Result<Result<Result<i64, AppendError>, oneshot::error::RecvError>, Elapsed>,
) -> PartitionProduceResponse {
    let index = response.index;
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        // The group closed (its topic deleted) with the append pending.
        Ok(Err(_)) => {
            return error(
                index,
                ResponseError::UnknownTopicOrPartition,
                "the partition closed before the batch was committed",
            );
        }
        Err(_) => {
            return error(
                index,
                ResponseError::RequestTimedOut,
                "not committed within the request timeout",
            );
        }
    };
    match outcome {
        Ok(base) => {
            let start = broker
                .shared
                .logs
                .read()
                .ok()
                .and_then(|logs| logs.get(&group).map(|l| l.log_start_offset()))
                .unwrap_or(0);
            response.with_base_offset(base).with_log_start_offset(start)
        }
        Err(AppendError::NotLeader(_)) => error(
            index,
            ResponseError::NotLeaderOrFollower,
            "leadership moved before the batch was committed",
        ),
        Err(AppendError::UnknownGroup) => error(
            index,
            ResponseError::UnknownTopicOrPartition,
            "the partition is not hosted here",
        ),
        // The produce checks refuse these first; the log refuses them too.
        Err(AppendError::Refused(Refused::Batch(e))) => {
            let refused = batch::Refused::from(e);
            error(index, refused.error, refused.message)
        }
        Err(AppendError::Refused(Refused::OutOfOrderSequence(why))) => {
            error(index, ResponseError::OutOfOrderSequenceNumber, why)
        }
        // Not PRODUCER_FENCED: that one is for transactional producers.
        Err(AppendError::Refused(Refused::InvalidProducerEpoch(why))) => {
            error(index, ResponseError::InvalidProducerEpoch, why)
        }
        Err(AppendError::Dropped(why)) => error(index, ResponseError::NotLeaderOrFollower, why),
    }
}
