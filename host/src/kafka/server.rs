//! The Kafka listener and its connections.
//!
//! A connection permit is taken before `accept`, so at most
//! `max_connections` clients are served; others wait in the listen
//! backlog. Each connection reads frames in order and starts one task per
//! request; a writer task answers them in request order (clients pipeline
//! requests and match responses by order). A malformed, oversize or
//! unsupported frame closes that connection with a warning; nothing a
//! client sends stops the listener.

use super::codec::{self, FrameError, Request};
use super::{Broker, api_versions};
use bytes::Bytes;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Requests of one connection in flight before it stops reading.
const IN_FLIGHT: usize = 64;

pub async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(broker.config.max_connections.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return; // never closed
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("kafka listener: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(broker, stream, peer).await;
        });
    }
}

async fn connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let (queue, mut answers) = mpsc::channel::<JoinHandle<Option<Bytes>>>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(answer) = answers.recv().await {
            match answer.await {
                Ok(Some(frame)) => {
                    if let Err(e) = write.write_all(&frame).await {
                        tracing::debug!(%peer, "kafka connection: write failed: {e}");
                        return;
                    }
                }
                Ok(None) => {} // acks=0 produce: no response
                Err(e) => {
                    tracing::warn!(%peer, "kafka request handler failed: {e}; closing the connection");
                    return;
                }
            }
        }
        let _ = write.shutdown().await;
    });
    loop {
        let frame = match codec::read_frame(&mut read, broker.config.max_frame_bytes).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, "kafka connection closed: {e}");
                break;
            }
            Err(e) => {
                tracing::warn!(%peer, "kafka connection closed: {e}");
                break;
            }
        };
        let request = match codec::decode_request(frame, api_versions::supported) {
            Ok(request) => request,
            Err(e) => {
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
        let work = match body {
            None => Work::TooNew,
            // Appends are queued here, in request order; only the wait for
            // their commit runs concurrently.
            Some(RequestKind::Produce(r)) => {
                Work::Produce(super::produce::submit(&broker, r, version))
            }
            Some(body) => Work::Request(body),
        };
        let broker = broker.clone();
        let correlation_id = header.correlation_id;
        let task =
            tokio::spawn(
                async move { answer(broker, key, version, correlation_id, work, peer).await },
            );
        if queue.send(task).await.is_err() {
            break; // the writer stopped
        }
    }
    drop(queue);
    let _ = writer.await;
}

/// What is left to do for a request once it is read.
enum Work {
    /// An ApiVersions request newer than ours.
    TooNew,
    Produce(super::produce::Submitted),
    Request(RequestKind),
}

/// Handles one request and encodes its response frame.
async fn answer(
    broker: Arc<Broker>,
    key: kafka_protocol::messages::ApiKey,
    version: i16,
    correlation_id: i32,
    work: Work,
    peer: SocketAddr,
) -> Option<Bytes> {
    let (response, version) = match work {
        Work::TooNew => (api_versions::unsupported(), 0),
        Work::Produce(submitted) => (
            ResponseKind::Produce(super::produce::finish(&broker, submitted).await?),
            version,
        ),
        Work::Request(body) => (dispatch(&broker, body, version).await?, version),
    };
    match codec::encode_response(key, version, correlation_id, &response) {
        Ok(frame) => Some(frame),
        Err(e) => {
            tracing::warn!(%peer, "cannot encode the {key:?} v{version} response: {e}");
            None
        }
    }
}

async fn dispatch(broker: &Arc<Broker>, body: RequestKind, version: i16) -> Option<ResponseKind> {
    Some(match body {
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
        RequestKind::Produce(r) => {
            let submitted = super::produce::submit(broker, r, version);
            ResponseKind::Produce(super::produce::finish(broker, submitted).await?)
        }
        RequestKind::Fetch(r) => {
            ResponseKind::Fetch(super::fetch::handle(broker, r, version).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(super::list_offsets::handle(broker, &r, version))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(super::init_producer_id::handle(broker, r, version).await)
        }
        // `api_versions::supported` lets no other key through.
        other => {
            tracing::warn!("kafka: no handler for {other:?}");
            return None;
        }
    })
}
