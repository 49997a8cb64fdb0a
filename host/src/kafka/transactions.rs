//! Transactions are not supported. Every transactional request is answered
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED — what InitProducerId answers a
//! transactional id and FindCoordinator a transaction coordinator lookup —
//! so a client stops at once with an error instead of retrying. Clients
//! normally stop at FindCoordinator; these answer one that goes on anyway.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnResponse,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

const REFUSED: ResponseError = ResponseError::TransactionalIdAuthorizationFailed;

fn topic_results(
    topics: &[kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(REFUSED.code())
                        })
                        .collect(),
                )
        })
        .collect()
}

pub fn add_partitions(
    request: &AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(&request.v3_and_below_topics));
    }
    AddPartitionsToTxnResponse::default()
        .with_error_code(REFUSED.code())
        .with_results_by_transaction(
            request
                .transactions
                .iter()
                .map(|t| {
                    AddPartitionsToTxnResult::default()
                        .with_transactional_id(t.transactional_id.clone())
                        .with_topic_results(topic_results(&t.topics))
                })
                .collect(),
        )
}

pub fn add_offsets() -> AddOffsetsToTxnResponse {
    AddOffsetsToTxnResponse::default().with_error_code(REFUSED.code())
}

pub fn end() -> EndTxnResponse {
    EndTxnResponse::default()
        .with_error_code(REFUSED.code())
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1)
}

pub fn offset_commit(request: &TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(REFUSED.code())
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
