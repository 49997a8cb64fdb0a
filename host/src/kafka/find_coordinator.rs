//! FindCoordinator (v0–v6; batched keys from v4): a group's coordinator is
//! the assigned leader of its offsets partition (`coordinator`), which the
//! hook plugins keep equal to Raft's leader — so coordinators follow
//! elections like every partition. The first request creates the offsets
//! topic (COORDINATOR_NOT_AVAILABLE until it has a leader, as in Kafka).
//! Transactions are not supported. A transaction coordinator lookup names
//! the node asked, whose InitProducerId then refuses the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, the documented refusal): an
//! error here would not reach the user in every client (kafkajs retries
//! every broker and reports only "coordinator not found").

use super::Broker;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// The refusal every transactional request gets.
pub const NO_TRANSACTIONS: &str = "transactions are not supported by this broker";

pub fn handle(
    broker: &Broker,
    request: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys = if version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let answers: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| find(broker, key, request.key_type))
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(answers);
    }
    let one = answers.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_error_message(one.error_message)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port)
}

fn find(broker: &Broker, key: StrBytes, key_type: i8) -> Coordinator {
    let failed = |e: ResponseError, message: String| {
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(e.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    match key_type {
        GROUP if key.is_empty() => failed(ResponseError::InvalidRequest, "empty group id".into()),
        GROUP => match broker.coordinator.find(key.as_str()) {
            Ok(node) => match broker.endpoint(node) {
                Some((host, port)) => Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(node as i32))
                    .with_host(host)
                    .with_port(port),
                None => failed(
                    ResponseError::CoordinatorNotAvailable,
                    format!("node {node} has no Kafka listener"),
                ),
            },
            Err(e) => failed(e, format!("group {key}: no coordinator available yet")),
        },
        TRANSACTION => match broker.endpoint(broker.node) {
            Some((host, port)) => Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(broker.node as i32))
                .with_host(host)
                .with_port(port),
            None => failed(
                ResponseError::CoordinatorNotAvailable,
                NO_TRANSACTIONS.into(),
            ),
        },
        other => failed(
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        ),
    }
}
