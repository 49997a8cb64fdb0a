//! SyncGroup (v0–v5): the leader hands in the assignments, which are
//! stored in the offsets partition's Raft log before any member gets its
//! own (so a coordinator that takes over hands out the same).

use super::Broker;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

pub async fn handle(
    broker: &Arc<Broker>,
    request: SyncGroupRequest,
    _version: i16,
) -> SyncGroupResponse {
    let assignments = request
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
        .collect();
    let answer = broker
        .coordinator
        .sync(
            request.group_id.0.as_str(),
            request.member_id.as_str(),
            request.generation_id,
            request.group_instance_id.as_deref(),
            request.protocol_type.as_deref(),
            request.protocol_name.as_deref(),
            assignments,
        )
        .await;
    SyncGroupResponse::default()
        .with_error_code(answer.error.map_or(0, |e| e.code()))
        .with_protocol_type(answer.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(answer.protocol.map(StrBytes::from_string))
        .with_assignment(answer.assignment.into())
}
