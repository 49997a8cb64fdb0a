//! OffsetDelete (v0): a group's committed offsets of topics it does not
//! subscribe to (any, while it is empty); GROUP_SUBSCRIBED_TO_TOPIC for a
//! subscribed one.

use super::Broker;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

pub async fn handle(
    broker: &Broker,
    request: &OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let answers = match broker
        .coordinator
        .delete_offsets(request.group_id.0.as_str(), partitions)
        .await
    {
        Ok(answers) => answers,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    };
    let mut answers = answers.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let error = answers.next().and_then(|(_, e)| e);
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.map_or(0, |e| e.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
