//! The Kafka listener and its connections.
//!
//! At most `max_connections` clients are served. A connection over the
//! limit is accepted and closed at once — the client sees it immediately
//! and retries with its backoff, instead of waiting unseen in the listen
//! backlog — counted, and logged at most every [`REFUSAL_LOG_EVERY`] with
//! the count since the last report and in all.
//!
//! Each connection reads frames in order and starts one task per request;
//! a writer task answers them in request order (clients pipeline requests
//! and match responses by order). What one connection holds is bounded:
//! [`IN_FLIGHT`] requests, and `connection_in_flight_bytes` — each request
//! holds its frame's size, a Fetch also the room its response may take,
//! and once answered it holds its response's size until that is written.
//! A client that sends without reading its answers stops being read at
//! either bound; a single request larger than the byte bound is handled
//! alone. Across connections, the frames of requests being handled hold
//! at most `queued_max_request_bytes` (a request larger than that is
//! handled alone): past it, no connection is read until some are handled,
//! so the memory a node's clients can fill is set by configuration, not by
//! how many of them there are. A connection with no complete request for
//! `connections_max_idle_ms`, or whose response cannot be written for as
//! long, is closed. A malformed, oversize or unsupported frame closes that
//! connection with a warning; nothing a client sends stops the listener.

use super::codec::{self, FrameError, Request};
use super::{Broker, api_versions};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{FetchRequest, RequestKind, ResponseKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Requests of one connection in flight before it stops reading.
pub const IN_FLIGHT: usize = 64;
/// Refused connections are logged at most this often (with a count).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

pub async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    broker.coordinator.start_timers();
    let max = broker.config.max_connections.max(1);
    // Request bytes being handled on this node, across its connections.
    let node_budget = Arc::new(Budget::new(broker.config.queued_max_request_bytes));
    let slots = Arc::new(Semaphore::new(max));
    let mut refusals = RateLimit::new(REFUSAL_LOG_EVERY);
    let mut refused: u64 = 0;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("kafka listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if let Some(unlogged) = refusals.allow(Instant::now()) {
                tracing::warn!(
                    %peer,
                    "kafka listener: {max} connections open (max_connections), closing a new \
                     one; {unlogged} more refused since the last report, {refused} in all"
                );
            }
            drop(stream);
            continue;
        };
        let broker = broker.clone();
        let node_budget = node_budget.clone();
        tokio::spawn(async move {
            let _slot = slot;
            connection(broker, stream, peer, &node_budget).await;
        });
    }
}

/// Lets an event through at most once per `every`, counting the others.
struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    unlogged: u64,
}

impl RateLimit {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            unlogged: 0,
        }
    }

    /// `Some(events held back since the last one let through)`, or `None`
    /// to hold this one back.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|last| now < last + self.every) {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// A request's answer and the connection bytes it holds until written.
struct Answer {
    reply: Reply,
    held: OwnedSemaphorePermit,
}

/// What the writer does for a request.
enum Reply {
    Frame(Bytes),
    /// acks=0 produce: no response.
    Nothing,
    /// Close the connection: an acks=0 produce was refused (Kafka's way
    /// to tell the client), or no response can be given.
    Close(String),
}

async fn connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, node: &Budget) {
    let _ = stream.set_nodelay(true);
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1));
    let (mut read, mut write) = stream.into_split();
    let (queue, mut answers) = mpsc::channel::<JoinHandle<Answer>>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(answer) = answers.recv().await {
            match answer.await {
                Ok(Answer {
                    reply: Reply::Frame(frame),
                    held,
                }) => match tokio::time::timeout(idle, write.write_all(&frame)).await {
                    Ok(Ok(())) => drop(held),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "kafka connection: write failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "kafka connection closed: the client read nothing for {idle:?}");
                        return;
                    }
                },
                Ok(Answer {
                    reply: Reply::Nothing,
                    ..
                }) => {}
                Ok(Answer {
                    reply: Reply::Close(why),
                    ..
                }) => {
                    tracing::debug!(%peer, "kafka connection closed: {why}");
                    let _ = write.shutdown().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(%peer, "kafka request handler failed: {e}; closing the connection");
                    return;
                }
            }
        }
        let _ = write.shutdown().await;
    });
    let budget = Budget::new(broker.config.connection_in_flight_bytes);
    let mut buf = BytesMut::new();
    loop {
        let next = tokio::select! {
            next = read_request(&broker, &mut read, &mut buf, (&budget, node), idle) => next,
            () = queue.closed() => break, // the writer stopped
        };
        let (request, held, node_held) = match next {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(ReadError::Idle) => {
                tracing::info!(%peer, "kafka connection closed: no request for {idle:?}");
                break;
            }
            Err(ReadError::Frame(FrameError::Io(e))) => {
                tracing::debug!(%peer, "kafka connection closed: {e}");
                break;
            }
            Err(ReadError::Frame(e)) => {
                tracing::warn!(%peer, "kafka connection closed: {e}");
                break;
            }
        };
        let Request {
            key,
            version,
            header,
            body,
        } = request;
        let mut held = held;
        let work = match body {
            None => Work::TooNew,
            // Appends are queued here, in request order; only the wait for
            // their commit runs concurrently.
            Some(RequestKind::Produce(r)) => {
                Work::Produce(super::produce::submit(&broker, r, version))
            }
            Some(RequestKind::Fetch(r)) => {
                // Room for the response, reserved in request order (so the
                // writer, which frees in that order, can always proceed).
                let room = fetch_room(&broker, &r).min(budget.max - held.num_permits());
                held.merge(budget.take(room).await);
                Work::Fetch(r, room)
            }
            Some(body) => Work::Request(body),
        };
        let broker = broker.clone();
        let correlation_id = header.correlation_id;
        let client = super::Client {
            id: header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            host: format!("/{}", peer.ip()),
        };
        let task = tokio::spawn(async move {
            let reply = answer(broker, key, version, correlation_id, work, &client).await;
            drop(node_held); // handled: only the connection holds its response
            // From here on only the response's bytes are held.
            let keep = match &reply {
                Reply::Frame(frame) => frame.len(),
                Reply::Nothing | Reply::Close(_) => 0,
            };
            if held.num_permits() > keep {
                drop(held.split(held.num_permits() - keep));
            }
            Answer { reply, held }
        });
        if queue.send(task).await.is_err() {
            break; // the writer stopped
        }
    }
    drop(queue);
    let _ = writer.await;
}

/// A connection's in-flight bytes, as semaphore permits.
struct Budget {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        let max = bytes.clamp(1, u32::MAX as usize);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Waits for `bytes` (at most the whole budget) to be free.
    async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = bytes.min(self.max) as u32;
        self.permits
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("never closed")
    }
}

/// The most record bytes a Fetch may answer: what it asks (`max_bytes`;
/// zero or less: one batch), never more than the broker's
/// `fetch_max_bytes`.
fn fetch_room(broker: &Broker, request: &FetchRequest) -> usize {
    usize::try_from(request.max_bytes)
        .unwrap_or(0)
        .min(broker.config.fetch_max_bytes)
}

enum ReadError {
    Idle,
    Frame(FrameError),
}

/// Reads and decodes the next request, holding its frame's size in the
/// connection's budget before the frame is read, and in the node's once it
/// has arrived.
async fn read_request(
    broker: &Broker,
    read: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    (budget, node): (&Budget, &Budget),
    idle: Duration,
) -> Result<Option<(Request, OwnedSemaphorePermit, OwnedSemaphorePermit)>, ReadError> {
    let size = tokio::time::timeout(idle, codec::read_size(read, broker.config.max_frame_bytes))
        .await
        .map_err(|_| ReadError::Idle)?
        .map_err(ReadError::Frame)?;
    let Some(size) = size else {
        return Ok(None);
    };
    crate::metrics::kafka().bytes_in.inc_by(size as u64 + 4);
    let held = budget.take(size).await;
    let frame = tokio::time::timeout(idle, codec::read_body(read, size, buf))
        .await
        .map_err(|_| ReadError::Idle)?
        .map_err(ReadError::Frame)?;
    // The node's budget is taken for bytes that arrived, never for a size a
    // client only claims: a frame trickling in must not hold every other
    // connection back.
    let node_held = node.take(size).await;
    let request =
        codec::decode_request(frame, api_versions::supported).map_err(ReadError::Frame)?;
    Ok(Some((request, held, node_held)))
}

/// What is left to do for a request once it is read.
enum Work {
    /// An ApiVersions request newer than ours.
    TooNew,
    Produce(super::produce::Submitted),
    /// A Fetch and the most record bytes its response may carry.
    Fetch(FetchRequest, usize),
    Request(RequestKind),
}

/// Handles one request and encodes its response frame.
async fn answer(
    broker: Arc<Broker>,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    work: Work,
    client: &super::Client,
) -> Reply {
    use super::produce::Finished;
    let started = std::time::Instant::now();
    let (response, version) = match work {
        Work::TooNew => (api_versions::unsupported(), 0),
        Work::Produce(submitted) => match super::produce::finish(&broker, submitted).await {
            Finished::Respond(response) => (ResponseKind::Produce(response), version),
            Finished::Silent => return Reply::Nothing,
            Finished::CloseConnection(why) => return Reply::Close(why),
        },
        Work::Fetch(request, room) => (
            ResponseKind::Fetch(super::fetch::handle(&broker, request, version, room).await),
            version,
        ),
        Work::Request(body) => match dispatch(&broker, body, version, client).await {
            Some(response) => (response, version),
            None => return Reply::Close(format!("no handler for {key:?}")),
        },
    };
    let metrics = crate::metrics::kafka();
    metrics.request(
        key,
        crate::metrics::error_code(&response),
        started.elapsed(),
    );
    match codec::encode_response(key, version, correlation_id, &response) {
        Ok(frame) => {
            metrics.bytes_out.inc_by(frame.len() as u64);
            Reply::Frame(frame)
        }
        // Skipping it would hand the next response to this request.
        Err(e) => {
            tracing::warn!(peer = %client.host, "cannot encode the {key:?} v{version} response: {e}");
            Reply::Close(format!("the {key:?} response could not be encoded"))
        }
    }
}

async fn dispatch(
    broker: &Arc<Broker>,
    body: RequestKind,
    version: i16,
    client: &super::Client,
) -> Option<ResponseKind> {
    use super::{
        delete_groups, describe_groups, find_coordinator, heartbeat, join_group, leave_group,
        list_groups, offset_commit, offset_delete, offset_fetch, offset_for_leader_epoch,
        sync_group, transactions,
    };
    Some(match body {
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, &r, version))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group::handle(broker, r, version, client).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(sync_group::handle(broker, r, version).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(heartbeat::handle(broker, &r, version))
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(leave_group::handle(broker, &r, version))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, r, version).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(broker, &r, version))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(list_groups::handle(broker, &r, version))
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, &r, version))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, &r, version).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(broker, &r, version).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, &r, version))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(super::describe_configs::handle(broker, &r, version))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(super::alter_configs::handle(broker, &r, version).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            super::incremental_alter_configs::handle(broker, &r, version).await,
        ),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
            super::create_partitions::handle(broker, &r, version).await,
        ),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(super::describe_cluster::handle(broker, &r, version))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(transactions::add_partitions(&r, version))
        }
        RequestKind::AddOffsetsToTxn(_) => {
            ResponseKind::AddOffsetsToTxn(transactions::add_offsets())
        }
        RequestKind::EndTxn(_) => ResponseKind::EndTxn(transactions::end()),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(transactions::offset_commit(&r))
        }
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(&r, version)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(super::metadata::handle(broker, &r, version))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(super::create_topics::handle(broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(super::delete_topics::handle(broker, r, version).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(super::list_offsets::handle(broker, &r, version))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(super::init_producer_id::handle(broker, r, version).await)
        }
        // Produce and Fetch are `Work` of their own; `api_versions::supported`
        // lets no other key through.
        other => {
            tracing::warn!("kafka: no handler for {other:?}");
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_reported_at_most_once_per_period_with_a_count() {
        let mut limit = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(limit.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(30)), Some(1));
    }
}
