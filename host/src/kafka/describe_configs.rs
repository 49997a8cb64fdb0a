//! DescribeConfigs (v1–v4): a topic's supported configs (stored value or
//! default) and a few broker settings (read-only).

use super::{Broker, configs};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

pub fn handle(
    broker: &Broker,
    request: &DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let fail = |e: ResponseError, m: String| {
                result
                    .clone()
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(m)))
            };
            let described = match r.resource_type {
                configs::TOPIC => {
                    let metadata = broker.metadata();
                    match metadata.topic_by_name(r.resource_name.as_str()) {
                        Some(topic) => configs::of_topic(broker, topic),
                        None => {
                            return fail(
                                ResponseError::UnknownTopicOrPartition,
                                format!("unknown topic {}", r.resource_name),
                            );
                        }
                    }
                }
                configs::BROKER if configs::is_this_broker(broker, r.resource_name.as_str()) => {
                    configs::of_broker(broker)
                }
                configs::BROKER => {
                    return fail(
                        ResponseError::InvalidRequest,
                        format!("this is broker {}", broker.node),
                    );
                }
                other => {
                    return fail(
                        ResponseError::InvalidRequest,
                        format!("config resource type {other} is not supported"),
                    );
                }
            };
            let wanted = |name: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            result.with_configs(
                described
                    .into_iter()
                    .filter(|d| wanted(d.name))
                    .map(|d| {
                        DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_static_str(d.name))
                            .with_value(Some(StrBytes::from_string(d.value)))
                            .with_read_only(d.read_only)
                            .with_config_source(d.source)
                            .with_config_type(d.config_type)
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
