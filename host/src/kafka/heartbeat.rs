//! Heartbeat (v0–v4): keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin.

use super::Broker;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

pub fn handle(broker: &Broker, request: &HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let error = broker.coordinator.heartbeat(
        request.group_id.0.as_str(),
        request.member_id.as_str(),
        request.generation_id,
        request.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
