//! Peer transport: carries the Raft messages of every group between nodes over TCP.
//!
//! The Raft loop runs on a dedicated (synchronous) thread; everything it calls here is
//! non-blocking. The I/O runs as tasks on a tokio runtime:
//!
//! - [`writer`]: one **writer task per peer**, fed by a queue bounded in bytes
//!   ([`TransportSettings::peer_queue_bytes`]) and in count ([`PEER_QUEUE_CAPACITY`]);
//! - [`reader`]: one **accept loop** (at most [`TransportSettings::max_connections`] inbound
//!   connections; more are accepted and closed at once) and one **reader task per incoming
//!   connection**, which checks the peer's proof of membership, then decodes batches and pushes
//!   the envelopes into the inbox ([`inbox`]: bounded in count and in payload bytes, so a
//!   reader waits while the Raft loop is behind);
//! - [`wire`]: the handshake and frame format.
//!
//! # Trust
//!
//! A connection is read only after its handshake proves the sender knows the cluster's secret
//! and id (an HMAC over them, the node ids, a timestamp and a nonce: see [`wire`] and
//! [`crate::auth`]); anything else is closed, counted (`refused_unauthenticated`) and logged
//! (rate-limited). After that, envelopes must come from the authenticated peer and be addressed
//! to this node (else dropped and counted in `dropped_forged`). The frames themselves are not
//! encrypted or signed: the Raft port belongs on a network only cluster nodes reach.
//!
//! # Bounds
//!
//! - per peer, queued messages: `peer_queue_bytes` (default 64 MiB) of encoded size plus
//!   in-memory headers, and [`PEER_QUEUE_CAPACITY`] messages; plus one frame being built
//!   (about [`BATCH_SOFT_CAP`], at most [`MAX_FRAME_LEN`]);
//! - per inbound connection: a 64 KiB read buffer, and a payload buffer that grows with the
//!   bytes that arrived (at most about twice them, never from the length prefix), up to
//!   [`MAX_FRAME_LEN`]; [`TransportStats::inbound_buffer_bytes`] shows the total;
//! - the inbox: [`TransportSettings::inbox_bytes`] (default 32 MiB) of entry and snapshot
//!   payload waiting for the Raft loop; a reader waits for room (TCP slows the peer down);
//! - inbound connections: `max_connections` (default 64); an unauthenticated one lives at most
//!   [`reader::HANDSHAKE_TIMEOUT`].
//!
//! A bad handshake, a frame longer than [`MAX_FRAME_LEN`], or a payload that does not decode
//! closes that connection; the rest of the transport is unaffected.
//!
//! # Delivery
//!
//! Best effort, like the network Raft assumes: messages are delivered in order per
//! (peer, group) while a connection lives, but may be lost. Envelopes are dropped (and counted in
//! [`TransportStats`]) when a peer's queue is full, when the peer is unknown, when the inbox is
//! full, and when a connection breaks: the batch being written and whatever the kernel had
//! buffered on a broken connection are lost. Messages queued while a peer is unreachable stay
//! queued (up to the queue's bounds) and are sent once it comes back. Raft retransmits.

pub mod inbox;
mod reader;
pub mod wire;
mod writer;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use raft::prelude::{Entry, Message};
use tokio::net::TcpListener;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{info, warn};

use crate::auth::ClusterAuth;
use crate::log_limit::LogLimiter;

pub use reader::HANDSHAKE_TIMEOUT;
pub use wire::{BATCH_SOFT_CAP, HANDSHAKE_LEN, MAGIC, MAX_FRAME_LEN, WIRE_VERSION};

/// Envelopes waiting in the Raft loop's inbox before readers drop them (counted in
/// `dropped_inbox_full`); also the most one round of the loop takes.
pub const INBOX_CAPACITY: usize = 65_536;
/// Envelopes queued per peer before [`Transport::send`] starts dropping (the byte bound,
/// [`TransportSettings::peer_queue_bytes`], usually comes first).
pub const PEER_QUEUE_CAPACITY: usize = 4096;
/// Smallest per-peer byte budget: an envelope as large as a frame must fit an empty queue.
pub const MIN_PEER_QUEUE_BYTES: usize = 2 * MAX_FRAME_LEN;

/// Group id reserved for notices local to a node (never carried on the wire: a peer's envelope
/// with this group is dropped when read).
pub const LOCAL_GROUP: u64 = 0;

/// A Raft message for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub group: u64,
    pub message: Message,
}

/// What a node's transport needs to know.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub node_id: u64,
    /// Where peers connect (port 0 picks one).
    pub listen: SocketAddr,
    /// Every other node: id -> Raft address.
    pub peers: HashMap<u64, SocketAddr>,
    pub auth: ClusterAuth,
    /// Inbound connections open at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Byte budget of each peer's queue (at least [`MIN_PEER_QUEUE_BYTES`]).
    pub peer_queue_bytes: usize,
    /// Payload bytes of received envelopes the Raft loop has not taken yet.
    pub inbox_bytes: usize,
}

impl TransportSettings {
    pub fn from_config(config: &crate::config::NodeConfig) -> anyhow::Result<Self> {
        Ok(Self {
            node_id: config.node_id,
            listen: config.raft_listen,
            peers: config
                .peers
                .iter()
                .filter(|p| p.id != config.node_id)
                .map(|p| (p.id, p.raft))
                .collect(),
            auth: config.auth()?,
            max_connections: config.transport.max_connections,
            peer_queue_bytes: config.transport.peer_queue_bytes,
            inbox_bytes: config.transport.inbox_bytes,
        })
    }
}

/// Counters since start; `connected_peers`, `inbound_connections`, `queued_bytes` and
/// `inbound_buffer_bytes` and `inbox_bytes` are snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TransportStats {
    /// Envelopes written to a socket.
    pub sent: u64,
    /// Envelopes decoded and pushed into the inbox.
    pub received: u64,
    /// Envelopes dropped by [`Transport::send`] because the peer's queue was full (in bytes
    /// or in count).
    pub dropped_full: u64,
    /// Envelopes dropped by [`Transport::send`] because `message.to` is not a known peer.
    pub dropped_unknown: u64,
    /// Envelopes dropped by [`Transport::send`] after shutdown.
    pub dropped_closed: u64,
    /// Envelopes dropped because they alone do not fit in a frame (or the queue), or failed
    /// to encode.
    pub dropped_oversize: u64,
    /// Envelopes of a batch whose write failed (the connection broke).
    pub dropped_io: u64,
    /// Incoming envelopes dropped because the inbox was full.
    pub dropped_inbox_full: u64,
    /// Incoming envelopes dropped because they claimed another sender than the authenticated
    /// peer, or another receiver than this node.
    pub dropped_forged: u64,
    /// Successful outgoing connections to a peer after its first one.
    pub reconnects: u64,
    /// Failed outgoing connection attempts (refused, timed out, handshake write failed).
    pub connect_failures: u64,
    /// Incoming connections that did not prove membership of the cluster (wrong secret,
    /// another cluster, unknown node, stale or replayed handshake, no handshake in time).
    pub refused_unauthenticated: u64,
    /// Incoming connections closed at once because `max_connections` were open.
    pub refused_over_limit: u64,
    /// Incoming connections closed for a protocol violation (not our protocol, another wire
    /// version, a bad frame or payload).
    pub rejected_connections: u64,
    /// Incoming connections currently open.
    pub inbound_connections: u64,
    /// Bytes held by the peer queues now.
    pub queued_bytes: u64,
    /// Capacity of the inbound payload buffers now.
    pub inbound_buffer_bytes: u64,
    /// Payload bytes received and waiting for the Raft loop (snapshot).
    pub inbox_bytes: u64,
    /// Peers with an outgoing connection currently established, sorted.
    pub connected_peers: Vec<u64>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_full: AtomicU64,
    dropped_unknown: AtomicU64,
    dropped_closed: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_io: AtomicU64,
    dropped_inbox_full: AtomicU64,
    dropped_forged: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    refused_unauthenticated: AtomicU64,
    refused_over_limit: AtomicU64,
    rejected_connections: AtomicU64,
    inbound_connections: AtomicU64,
    inbound_buffer_bytes: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Milliseconds since the Unix epoch (handshake timestamps).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What an envelope costs a peer queue: its encoded size plus its in-memory headers.
fn charge(envelope: &Envelope) -> usize {
    let message = &envelope.message;
    std::mem::size_of::<Envelope>()
        + message.entries.len() * std::mem::size_of::<Entry>()
        + protobuf::Message::compute_size(message) as usize
}

struct PeerHandle {
    queue: mpsc::Sender<writer::Queued>,
    budget: Arc<Semaphore>,
    connected: Arc<AtomicBool>,
}

struct Inner {
    local_addr: SocketAddr,
    peers: HashMap<u64, PeerHandle>,
    peer_queue_bytes: usize,
    inbox: inbox::InboxBytes,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    unknown_logged: Mutex<HashSet<u64>>,
    /// Test hook: snapshots still to drop instead of sending.
    drop_snapshots: std::sync::atomic::AtomicU64,
}

/// The peer transport of one node. Cheap to clone; all clones share the same tasks.
///
/// Dropping the last clone stops the tasks too (as [`Transport::shutdown`] does).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_addr", &self.inner.local_addr)
            .field("peers", &self.inner.peers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Listens on `settings.listen` and connects lazily to `settings.peers`.
    ///
    /// Incoming envelopes (from authenticated peers) are pushed with `try_send` into `inbox`:
    /// if the inbox is full the envelope is dropped and counted (Raft retransmits). Spawns its
    /// tasks on `runtime`. Binding happens here, so an address in use is reported as an error.
    /// May be called from inside or outside the runtime.
    pub fn start(
        settings: TransportSettings,
        inbox: SyncSender<Envelope>,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let TransportSettings {
            node_id,
            listen,
            peers,
            auth,
            max_connections,
            peer_queue_bytes,
            inbox_bytes,
        } = settings;
        let inbox = inbox::Inbox {
            tx: inbox,
            bytes: inbox::InboxBytes::new(inbox_bytes),
        };
        anyhow::ensure!(max_connections > 0, "max_connections must be at least 1");
        anyhow::ensure!(
            peer_queue_bytes >= MIN_PEER_QUEUE_BYTES,
            "peer_queue_bytes must be at least {MIN_PEER_QUEUE_BYTES}"
        );
        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding the peer transport to {listen}"))?;
        std_listener
            .set_nonblocking(true)
            .context("setting the peer listener non-blocking")?;
        let local_addr = std_listener.local_addr()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener).context("registering the peer listener")?
        };

        let counters = Arc::new(Counters::default());
        let (shutdown, _) = watch::channel(false);
        let seed = now_ms() ^ u64::from(std::process::id()).rotate_left(17);

        let mut handles = HashMap::with_capacity(peers.len());
        for (&peer_id, &addr) in &peers {
            if peer_id == node_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_CAPACITY);
            let connected = Arc::new(AtomicBool::new(false));
            let writer = writer::PeerWriter {
                node_id,
                peer_id,
                addr,
                auth: auth.clone(),
                rx,
                pending: None,
                batch: Vec::new(),
                connected: connected.clone(),
                counters: counters.clone(),
                backoff: writer::Backoff::new(seed ^ node_id.rotate_left(32) ^ peer_id),
            };
            runtime.spawn(writer.run(shutdown.subscribe()));
            handles.insert(
                peer_id,
                PeerHandle {
                    queue: tx,
                    budget: Arc::new(Semaphore::new(peer_queue_bytes)),
                    connected,
                },
            );
        }

        let admission = Arc::new(reader::Admission {
            node_id,
            peers: handles.keys().copied().collect(),
            auth,
            nonces: Mutex::default(),
            refused_log: LogLimiter::default(),
            limit_log: LogLimiter::default(),
        });
        runtime.spawn(reader::accept_loop(
            listener,
            admission,
            Arc::new(Semaphore::new(max_connections)),
            inbox.clone(),
            counters.clone(),
            shutdown.subscribe(),
        ));
        info!(node_id, %local_addr, peers = handles.len(), "peer transport listening");

        Ok(Self {
            inner: Arc::new(Inner {
                local_addr,
                peers: handles,
                peer_queue_bytes,
                inbox: inbox.bytes,
                counters,
                shutdown,
                unknown_logged: Mutex::new(HashSet::new()),
                drop_snapshots: Default::default(),
            }),
        })
    }

    /// The bound address (`listen` may have port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Queues messages for their destination peers (`message.to`). Never blocks: when a peer's
    /// queue is full (in bytes or in count) the envelope is dropped and counted. Messages to
    /// unknown peers are dropped, counted, and logged once per peer id.
    pub fn send(&self, envelopes: Vec<Envelope>) {
        let counters = &self.inner.counters;
        if *self.inner.shutdown.borrow() {
            bump(&counters.dropped_closed, envelopes.len() as u64);
            return;
        }
        for envelope in envelopes {
            let to = envelope.message.to;
            let Some(peer) = self.inner.peers.get(&to) else {
                bump(&counters.dropped_unknown, 1);
                let first = self
                    .inner
                    .unknown_logged
                    .lock()
                    .map(|mut logged| logged.insert(to))
                    .unwrap_or(false);
                if first {
                    warn!(
                        to,
                        group = envelope.group,
                        "dropping raft messages to unknown peer"
                    );
                }
                continue;
            };
            if envelope.message.get_msg_type() == raft::prelude::MessageType::MsgSnapshot
                && self.take_snapshot_drop()
            {
                info!(to, group = envelope.group, "test hook: snapshot dropped");
                continue;
            }
            let cost = charge(&envelope);
            let Some(cost) = u32::try_from(cost)
                .ok()
                .filter(|c| *c as usize <= self.inner.peer_queue_bytes)
            else {
                bump(&counters.dropped_oversize, 1);
                continue;
            };
            let Ok(charge) = peer.budget.clone().try_acquire_many_owned(cost) else {
                bump(&counters.dropped_full, 1);
                continue;
            };
            match peer.queue.try_send(writer::Queued {
                envelope,
                _charge: charge,
            }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => bump(&counters.dropped_full, 1),
                Err(TrySendError::Closed(_)) => bump(&counters.dropped_closed, 1),
            }
        }
    }

    /// Test hook (`drop-snapshots`): the next `count` snapshots this node
    /// sends are dropped, as a broken connection or a full queue would.
    pub fn drop_next_snapshots(&self, count: u64) {
        self.inner
            .drop_snapshots
            .store(count, std::sync::atomic::Ordering::Relaxed);
    }

    fn take_snapshot_drop(&self) -> bool {
        self.inner
            .drop_snapshots
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |left| left.checked_sub(1),
            )
            .is_ok()
    }

    /// Gives back the inbox room a received envelope held and returns it: the Raft loop
    /// calls this for every envelope it takes from the inbox.
    pub fn release_inbound(&self, envelope: &Envelope) -> usize {
        self.inner.inbox.release(envelope)
    }

    /// The inbox's budget in payload bytes ([`TransportSettings::inbox_bytes`]).
    pub fn inbox_budget(&self) -> usize {
        self.inner.inbox.max()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        let c = &self.inner.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut connected_peers: Vec<u64> = self
            .inner
            .peers
            .iter()
            .filter(|(_, peer)| peer.connected.load(Ordering::Relaxed))
            .map(|(id, _)| *id)
            .collect();
        connected_peers.sort_unstable();
        let queued_bytes = self
            .inner
            .peers
            .values()
            .map(|peer| (self.inner.peer_queue_bytes - peer.budget.available_permits()) as u64)
            .sum();
        TransportStats {
            sent: get(&c.sent),
            received: get(&c.received),
            dropped_full: get(&c.dropped_full),
            dropped_unknown: get(&c.dropped_unknown),
            dropped_closed: get(&c.dropped_closed),
            dropped_oversize: get(&c.dropped_oversize),
            dropped_io: get(&c.dropped_io),
            dropped_inbox_full: get(&c.dropped_inbox_full),
            dropped_forged: get(&c.dropped_forged),
            reconnects: get(&c.reconnects),
            connect_failures: get(&c.connect_failures),
            refused_unauthenticated: get(&c.refused_unauthenticated),
            refused_over_limit: get(&c.refused_over_limit),
            rejected_connections: get(&c.rejected_connections),
            inbound_connections: get(&c.inbound_connections),
            queued_bytes,
            inbound_buffer_bytes: get(&c.inbound_buffer_bytes),
            inbox_bytes: self.inner.inbox.held() as u64,
            connected_peers,
        }
    }

    /// Stops listening and closes connections. Returns at once; the tasks finish shortly after
    /// on the runtime (so rebinding the same port right away may need a short retry). Later
    /// [`send`](Self::send)s are dropped and counted in `dropped_closed`.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// Resolves once shutdown is requested or every [`Transport`] clone is gone.
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The notice pushed into the inbox when a peer's connection to this node ends: a killed
/// process's sockets close at once, so this is the earliest sign that the peer is gone (it may
/// also just be reconnecting). Only an authenticated peer's connection produces one.
pub fn peer_lost_notice(peer: u64) -> Envelope {
    let mut message = Message::default();
    message.set_msg_type(raft::prelude::MessageType::MsgUnreachable);
    message.from = peer;
    Envelope {
        group: LOCAL_GROUP,
        message,
    }
}

/// The peer a [`peer_lost_notice`] names.
pub fn lost_peer(envelope: &Envelope) -> Option<u64> {
    (envelope.group == LOCAL_GROUP
        && envelope.message.get_msg_type() == raft::prelude::MessageType::MsgUnreachable)
        .then_some(envelope.message.from)
}

#[cfg(test)]
mod tests;
