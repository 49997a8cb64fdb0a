//! LeaveGroup (v0–v5): one member (v0–v2) or several, by member or static
//! instance id (v3+); the rest of the group rebalances.

use super::Broker;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

pub fn handle(broker: &Broker, request: &LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match broker
        .coordinator
        .leave(request.group_id.0.as_str(), &leaving)
    {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(answers) if version < 3 => LeaveGroupResponse::default()
            .with_error_code(answers.first().copied().flatten().map_or(0, |e| e.code())),
        Ok(answers) => LeaveGroupResponse::default().with_members(
            request
                .members
                .iter()
                .zip(answers)
                .map(|(m, error)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id.clone())
                        .with_group_instance_id(m.group_instance_id.clone())
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect(),
        ),
    }
}
