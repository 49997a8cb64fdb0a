//! AlterConfigs (v0–v2): a topic's configs are replaced by the given set
//! (Kafka's semantics for this API); only supported keys with valid values
//! (INVALID_CONFIG otherwise). Broker settings come from the node config
//! file and cannot be altered.

use super::{Broker, configs};
use crate::metadata::TopicConfigs;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

pub async fn handle(
    broker: &Broker,
    request: &AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for r in &request.resources {
        let outcome = alter(broker, r, request.validate_only).await;
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => response,
            Err((e, m)) => response
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(m))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

async fn alter(
    broker: &Broker,
    r: &kafka_protocol::messages::alter_configs_request::AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    if r.resource_type != configs::TOPIC {
        return Err((
            ResponseError::InvalidRequest,
            "only topic configs can be altered (broker settings are in the node config)".into(),
        ));
    }
    let topic = broker
        .metadata()
        .topic_by_name(r.resource_name.as_str())
        .cloned()
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("unknown topic {}", r.resource_name),
            )
        })?;
    let mut new = TopicConfigs::new();
    for c in &r.configs {
        let Some(value) = &c.value else {
            return Err((
                ResponseError::InvalidConfig,
                format!("config {} has no value", c.name),
            ));
        };
        new.insert(c.name.to_string(), value.to_string());
    }
    configs::set(broker, &topic, new, validate_only).await
}
