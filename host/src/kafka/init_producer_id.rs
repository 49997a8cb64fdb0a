//! InitProducerId for idempotent producers: a fresh producer id, epoch 0,
//! taken from a counter in the replicated metadata (so ids are unique
//! across the cluster and across restarts). Any node answers; the
//! allocation goes through the metadata group's leader like every other
//! metadata command. Transactions are not supported.

use super::Broker;
use crate::metadata::{Applied, Command};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use std::sync::Arc;
use std::time::Duration;

/// How long an allocation may wait for the metadata group. The request has
/// no timeout of its own; this stays well under the clients' request
/// timeouts (30 s by default) so they get the retriable error and retry.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn handle(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let answer = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        // No transactions. This error is fatal in librdkafka, kafka-python
        // and the Java client, so a transactional producer stops at once
        // instead of retrying for a coordinator that will never exist.
        return answer.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    // A v3+ request may carry the producer's current id and epoch (KIP-360
    // epoch bump); without a transactional id Kafka ignores them and hands
    // out a new id at epoch 0, and so do we: its sequences start over.
    let applied = broker
        .raft
        .propose(Command::AllocateProducerId, ALLOCATE_TIMEOUT)
        .await;
    match applied {
        Ok(Applied::ProducerId(id)) => answer
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        other => {
            tracing::debug!("InitProducerId: no producer id allocated: {other:?}");
            // What Kafka answers while it cannot allocate producer ids. It
            // is retriable, and unlike COORDINATOR_NOT_AVAILABLE it does not
            // send kafka-python looking for a transaction coordinator
            // (FindCoordinator, not served here).
            answer.with_error_code(ResponseError::CoordinatorLoadInProgress.code())
        }
    }
}
