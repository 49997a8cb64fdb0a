//! DeleteGroups (v0–v2): an empty group and its offsets are deleted (a
//! record in its offsets partition); GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP
//! otherwise.

use super::Broker;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

pub async fn handle(
    broker: &Broker,
    request: &DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in &request.groups_names {
        let error = broker.coordinator.delete(id.0.as_str()).await.err();
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(error.map_or(0, |e| e.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
