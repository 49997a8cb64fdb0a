//! OffsetFetch (v1–v9; several groups from v8): committed offsets from the
//! applied records of the coordinator, -1 where none is committed. All of a
//! group's offsets when no topics are named.

use super::Broker;
use crate::coordinator::record::CommittedOffset;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

/// (topic, [(partition, offset, leader epoch, metadata, error)]).
type Answer = Vec<(TopicName, Vec<(i32, i64, i32, Option<String>, i16)>)>;

/// A group's answer: its error, or its offsets for the requested topics.
fn fetch(
    broker: &Broker,
    group_id: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Result<Answer, ResponseError> {
    let committed = broker.coordinator.offsets(group_id)?;
    let lookup = |topic: &TopicName, p: i32| -> (i32, i64, i32, Option<String>, i16) {
        match committed.get(&(topic.0.to_string(), p)) {
            Some(CommittedOffset {
                offset,
                leader_epoch,
                metadata,
                ..
            }) => (p, *offset, *leader_epoch, metadata.clone(), 0),
            None => (p, -1, -1, Some(String::new()), 0),
        }
    };
    Ok(match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(name, partitions)| {
                let answers = partitions.into_iter().map(|p| lookup(&name, p)).collect();
                (name, answers)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (topic, p) in committed.keys() {
                by_topic.entry(topic.clone()).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    let name = TopicName(StrBytes::from_string(topic));
                    let answers = partitions.into_iter().map(|p| lookup(&name, p)).collect();
                    (name, answers)
                })
                .collect()
        }
    })
}

pub fn handle(broker: &Broker, request: &OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let text = |m: Option<String>| m.map(StrBytes::from_string);
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                        .collect()
                });
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch(broker, g.group_id.0.as_str(), topics) {
                    Err(e) => group.with_error_code(e.code()),
                    Ok(answer) => group.with_topics(
                        answer
                            .into_iter()
                            .map(|(name, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(name)
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|(p, offset, epoch, metadata, error)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(text(metadata))
                                                    .with_error_code(error)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.clone(), t.partition_indexes.clone()))
            .collect::<Vec<_>>()
    });
    let partition = |p, offset, epoch, metadata, error| {
        OffsetFetchResponsePartition::default()
            .with_partition_index(p)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(epoch)
            .with_metadata(text(metadata))
            .with_error_code(error)
    };
    match fetch(broker, request.group_id.0.as_str(), topics.clone()) {
        Ok(answer) => OffsetFetchResponse::default().with_topics(
            answer
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, o, e, m, err)| partition(p, o, e, m, err))
                                .collect(),
                        )
                })
                .collect(),
        ),
        // v2+ carry a group-level error; v1 only per partition.
        Err(e) if version >= 2 => OffsetFetchResponse::default().with_error_code(e.code()),
        Err(e) => OffsetFetchResponse::default().with_topics(
            topics
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name)
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|p| partition(p, -1, -1, Some(String::new()), e.code()))
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}
