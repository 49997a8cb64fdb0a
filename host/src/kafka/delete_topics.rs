//! DeleteTopics: by name (every version) or by topic id (v6+), proposed
//! to the metadata group.

use super::{Broker, resolve_topic};
use crate::metadata::{Applied, Command};
use crate::raft::handle::RaftError;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;
use std::time::Duration;

pub async fn handle(
    broker: &Arc<Broker>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let timeout = Duration::from_millis(request.timeout_ms.clamp(1_000, 30_000) as u64);
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::new();
    for (name, id) in wanted {
        let given = name.as_ref().map_or("", |n| n.0.as_str()).to_string();
        let found = {
            let metadata = broker.metadata();
            resolve_topic(&metadata, &given, id)
                .and_then(|id| metadata.topic(&id).map(|t| (t.id, t.name.clone())))
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        let error = match found {
            None if given.is_empty() => Some((
                ResponseError::UnknownTopicId,
                "unknown topic id".to_string(),
            )),
            None => Some((
                ResponseError::UnknownTopicOrPartition,
                format!("unknown topic {given}"),
            )),
            Some((topic_id, topic)) => {
                result.topic_id = topic_id.0;
                result.name = Some(TopicName(StrBytes::from_string(topic)));
                let command = Command::DeleteTopic { topic_id };
                match broker.raft.propose(command, timeout).await {
                    Ok(Applied::TopicDeleted { .. }) => None,
                    Ok(Applied::Refused(why)) => {
                        Some((ResponseError::UnknownTopicOrPartition, why.to_string()))
                    }
                    Ok(other) => Some((
                        ResponseError::UnknownServerError,
                        format!("unexpected outcome {other:?}"),
                    )),
                    Err(e @ RaftError::Stopped) => {
                        Some((ResponseError::UnknownServerError, e.to_string()))
                    }
                    Err(e) => Some((ResponseError::RequestTimedOut, e.to_string())),
                }
            }
        };
        if let Some((error, message)) = error {
            result = result
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
