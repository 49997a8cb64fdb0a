//! IncrementalAlterConfigs (v0–v1): SET or DELETE single topic configs
//! (APPEND and SUBTRACT apply to list configs, and no supported config is
//! a list: INVALID_CONFIG); the result must be valid as a whole. Broker
//! settings cannot be altered.

use super::{Broker, configs};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

const SET: i8 = 0;
const DELETE: i8 = 1;

pub async fn handle(
    broker: &Broker,
    request: &IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn alter(
    broker: &Broker,
    r: &AlterConfigsResource,
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
    let mut new = topic.configs.clone();
    for c in &r.configs {
        match (c.config_operation, &c.value) {
            (SET, Some(value)) => {
                new.insert(c.name.to_string(), value.to_string());
            }
            (SET, None) => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("SET of {} without a value", c.name),
                ));
            }
            (DELETE, _) => {
                new.remove(c.name.as_str());
            }
            (op, _) => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!(
                        "operation {op} on {}: APPEND and SUBTRACT are for list configs",
                        c.name
                    ),
                ));
            }
        }
    }
    configs::set(broker, &topic, new, validate_only).await
}
