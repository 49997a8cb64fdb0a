//! JoinGroup (v0–v9): the classic group protocol's join, answered once the
//! rebalance completes (see `coordinator::group`).

use super::{Broker, Client};
use crate::coordinator::group::JoinRequest;
use crate::coordinator::record::Protocol;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;

pub async fn handle(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client: &Client,
) -> JoinGroupResponse {
    let ms = |v: i32| Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let session = ms(request.session_timeout_ms);
    // v0 has no rebalance timeout: the session timeout serves for both.
    let rebalance = if version >= 1 {
        ms(request.rebalance_timeout_ms)
    } else {
        session
    };
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client.id.clone(),
        client_host: client.host.clone(),
        session_timeout: session,
        rebalance_timeout: rebalance,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.to_vec(),
            })
            .collect(),
        version,
    };
    let answer = broker
        .coordinator
        .join(request.group_id.0.as_str(), join)
        .await;
    let text = |s: Option<String>| s.map(StrBytes::from_string);
    JoinGroupResponse::default()
        .with_error_code(answer.error.map_or(0, |e| e.code()))
        .with_generation_id(answer.generation)
        .with_protocol_type(text(answer.protocol_type))
        // Not nullable before v7.
        .with_protocol_name(Some(StrBytes::from_string(
            answer.protocol.unwrap_or_default(),
        )))
        .with_leader(StrBytes::from_string(answer.leader))
        .with_member_id(StrBytes::from_string(answer.member_id))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(text(instance))
                        .with_metadata(metadata.into())
                })
                .collect(),
        )
}
