//! Peer transport: carries the Raft messages of every group between nodes over TCP.
//!
//! The Raft loop runs on a dedicated (synchronous) thread; everything it calls here is
//! non-blocking. The I/O runs as tasks on a tokio runtime:
//!
//! - one **writer task per peer**, fed by a bounded queue ([`PEER_QUEUE_CAPACITY`] envelopes).
//!   It connects lazily (on the first message queued for that peer), with exponential backoff
//!   (50 ms doubling to 2 s, jittered) while the peer is unreachable, and writes everything
//!   queued at the time of writing as one batch frame (up to about [`BATCH_SOFT_CAP`] bytes);
//! - one **accept loop**, and one **reader task per incoming connection**, which decodes batches
//!   and pushes the envelopes into the inbox with `try_send`.
//!
//! # Wire format
//!
//! Every connection carries one direction only (the connecting node writes, the accepting node
//! reads). All integers are big-endian.
//!
//! ```text
//! handshake: b"LHRT" | u16 version (= 1) | u64 sender node id          (14 bytes, once)
//! frame:     u32 payload length (<= MAX_FRAME_LEN) | payload           (repeated)
//! payload:   u32 count | count x ( u64 group | u32 len | len bytes of protobuf raft Message )
//! ```
//!
//! A bad handshake, a frame longer than [`MAX_FRAME_LEN`], or a payload that does not decode
//! closes that connection (with a `warn` log); the rest of the transport is unaffected.
//!
//! # Delivery
//!
//! Best effort, like the network Raft assumes: messages are delivered in order per
//! (peer, group) while a connection lives, but may be lost. Envelopes are dropped (and counted in
//! [`TransportStats`]) when a peer's queue is full, when the peer is unknown, when the inbox is
//! full, and when a connection breaks: the batch being written and whatever the kernel had
//! buffered on a broken connection are lost. Messages queued while a peer is unreachable stay
//! queued (up to the queue capacity) and are sent once it comes back. Raft retransmits.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError as InboxError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use raft::prelude::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Magic bytes opening every connection.
pub const MAGIC: [u8; 4] = *b"LHRT";
/// Wire format version sent in the handshake.
pub const WIRE_VERSION: u16 = 1;
/// Length of the handshake: magic, version, node id.
pub const HANDSHAKE_LEN: usize = 4 + 2 + 8;
/// Largest accepted frame payload; a longer frame closes the connection.
pub const MAX_FRAME_LEN: usize = 16 << 20;
/// A writer stops adding envelopes to a batch once it reaches this many bytes.
pub const BATCH_SOFT_CAP: usize = 1 << 20;
/// Envelopes queued per peer before [`Transport::send`] starts dropping.
pub const PEER_QUEUE_CAPACITY: usize = 4096;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that lived at least this long resets the backoff; a shorter one counts as a
/// failed attempt (so a peer that accepts and closes at once is not hammered).
const STABLE_CONNECTION: Duration = Duration::from_secs(1);
/// Per-envelope overhead in a payload: group and length.
const ENVELOPE_HEADER_LEN: usize = 8 + 4;

/// Group id reserved for notices local to a node (never carried on the wire: a peer's envelope
/// with this group is dropped when read).
pub const LOCAL_GROUP: u64 = 0;

/// A Raft message for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub group: u64,
    pub message: Message,
}

/// Counters since start. `connected_peers` is a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Envelopes written to a socket.
    pub sent: u64,
    /// Envelopes decoded and pushed into the inbox.
    pub received: u64,
    /// Envelopes dropped by [`Transport::send`] because the peer's queue was full.
    pub dropped_full: u64,
    /// Envelopes dropped by [`Transport::send`] because `message.to` is not a known peer.
    pub dropped_unknown: u64,
    /// Envelopes dropped by [`Transport::send`] after shutdown.
    pub dropped_closed: u64,
    /// Envelopes dropped because they alone do not fit in a frame, or failed to encode.
    pub dropped_oversize: u64,
    /// Envelopes of a batch whose write failed (the connection broke).
    pub dropped_io: u64,
    /// Incoming envelopes dropped because the inbox was full.
    pub dropped_inbox_full: u64,
    /// Successful outgoing connections to a peer after its first one.
    pub reconnects: u64,
    /// Failed outgoing connection attempts (refused, timed out, handshake write failed).
    pub connect_failures: u64,
    /// Incoming connections closed for a protocol violation (bad handshake, frame, payload).
    pub rejected_connections: u64,
    /// Incoming connections currently open.
    pub inbound_connections: u64,
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
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    rejected_connections: AtomicU64,
    inbound_connections: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

struct PeerHandle {
    queue: mpsc::Sender<Envelope>,
    connected: Arc<AtomicBool>,
}

struct Inner {
    local_addr: SocketAddr,
    peers: HashMap<u64, PeerHandle>,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    unknown_logged: Mutex<HashSet<u64>>,
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
    /// Listens on `listen` (127.0.0.1:port) and connects lazily to `peers` (node id -> address).
    ///
    /// Incoming envelopes (from any peer) are pushed with `try_send` into `inbox`: if the inbox
    /// is full the envelope is dropped and counted (Raft retransmits). Spawns its tasks on
    /// `runtime`. Binding happens here, so an address in use is reported as an error. May be
    /// called from inside or outside the runtime.
    pub fn start(
        node_id: u64,
        listen: SocketAddr,
        peers: HashMap<u64, SocketAddr>,
        inbox: SyncSender<Envelope>,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
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
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);

        let mut handles = HashMap::with_capacity(peers.len());
        for (peer_id, addr) in peers {
            if peer_id == node_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_CAPACITY);
            let connected = Arc::new(AtomicBool::new(false));
            let writer = PeerWriter {
                node_id,
                peer_id,
                addr,
                rx,
                pending: None,
                batch: Vec::new(),
                connected: connected.clone(),
                counters: counters.clone(),
                backoff: Backoff::new(seed ^ node_id.rotate_left(32) ^ peer_id),
            };
            runtime.spawn(writer.run(shutdown.subscribe()));
            handles.insert(
                peer_id,
                PeerHandle {
                    queue: tx,
                    connected,
                },
            );
        }

        runtime.spawn(accept_loop(
            listener,
            inbox,
            counters.clone(),
            shutdown.subscribe(),
        ));
        info!(node_id, %local_addr, peers = handles.len(), "peer transport listening");

        Ok(Self {
            inner: Arc::new(Inner {
                local_addr,
                peers: handles,
                counters,
                shutdown,
                unknown_logged: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The bound address (`listen` may have port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Queues messages for their destination peers (`message.to`). Never blocks: when a peer's
    /// queue is full the envelope is dropped and counted. Messages to unknown peers are dropped,
    /// counted, and logged once per peer id.
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
            match peer.queue.try_send(envelope) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => bump(&counters.dropped_full, 1),
                Err(TrySendError::Closed(_)) => bump(&counters.dropped_closed, 1),
            }
        }
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
        TransportStats {
            sent: get(&c.sent),
            received: get(&c.received),
            dropped_full: get(&c.dropped_full),
            dropped_unknown: get(&c.dropped_unknown),
            dropped_closed: get(&c.dropped_closed),
            dropped_oversize: get(&c.dropped_oversize),
            dropped_io: get(&c.dropped_io),
            dropped_inbox_full: get(&c.dropped_inbox_full),
            reconnects: get(&c.reconnects),
            connect_failures: get(&c.connect_failures),
            rejected_connections: get(&c.rejected_connections),
            inbound_connections: get(&c.inbound_connections),
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

// ---------------------------------------------------------------------------------------------
// Wire format

/// Why a connection was closed by the reading side.
#[derive(Debug, thiserror::Error)]
enum WireError {
    #[error("bad magic {0:02x?} (not a leaderhook peer)")]
    BadMagic([u8; 4]),
    #[error("unsupported wire version {0} (expected {WIRE_VERSION})")]
    BadVersion(u16),
    #[error("invalid sender node id 0")]
    BadNodeId,
    #[error("no handshake within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN}")]
    FrameTooLarge(usize),
    #[error("batch truncated")]
    Truncated,
    #[error("batch announces {0} envelopes, more than its length allows")]
    BadCount(usize),
    #[error("{0} trailing bytes after the batch")]
    TrailingBytes(usize),
    #[error("undecodable raft message: {0}")]
    Decode(#[from] protobuf::ProtobufError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl WireError {
    /// Protocol violations are logged as warnings and counted; I/O errors are ordinary closes.
    fn is_protocol(&self) -> bool {
        !matches!(self, WireError::Io(_))
    }
}

fn encode_handshake(node_id: u64) -> [u8; HANDSHAKE_LEN] {
    let mut out = [0u8; HANDSHAKE_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&WIRE_VERSION.to_be_bytes());
    out[6..].copy_from_slice(&node_id.to_be_bytes());
    out
}

fn decode_handshake(bytes: &[u8; HANDSHAKE_LEN]) -> Result<u64, WireError> {
    let magic: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = u16::from_be_bytes(bytes[4..6].try_into().expect("2 bytes"));
    if version != WIRE_VERSION {
        return Err(WireError::BadVersion(version));
    }
    match u64::from_be_bytes(bytes[6..].try_into().expect("8 bytes")) {
        0 => Err(WireError::BadNodeId),
        id => Ok(id),
    }
}

/// Why an envelope could not be added to a batch.
#[derive(Debug)]
enum PushError {
    /// Does not fit after what the batch already holds: retry in the next batch.
    Full,
    /// Does not fit in a frame even alone.
    TooLarge(usize),
    Encode(protobuf::ProtobufError),
}

/// A frame being built in a reusable buffer: length and count are patched in by `finish`.
struct BatchBuilder<'a> {
    buf: &'a mut Vec<u8>,
    count: u32,
}

impl<'a> BatchBuilder<'a> {
    fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0u8; 8]);
        Self { buf, count: 0 }
    }

    /// Bytes of the frame so far, length prefix included.
    fn len(&self) -> usize {
        self.buf.len()
    }

    fn push(&mut self, envelope: &Envelope) -> Result<(), PushError> {
        let mark = self.buf.len();
        self.buf.extend_from_slice(&envelope.group.to_be_bytes());
        self.buf.extend_from_slice(&[0u8; 4]);
        let body = self.buf.len();
        if let Err(e) = protobuf::Message::write_to_vec(&envelope.message, self.buf) {
            self.buf.truncate(mark);
            return Err(PushError::Encode(e));
        }
        let body_len = self.buf.len() - body;
        if self.buf.len() - 4 > MAX_FRAME_LEN {
            self.buf.truncate(mark);
            return Err(if self.count == 0 {
                PushError::TooLarge(body_len)
            } else {
                PushError::Full
            });
        }
        // body_len <= MAX_FRAME_LEN, so it fits in a u32.
        self.buf[body - 4..body].copy_from_slice(&(body_len as u32).to_be_bytes());
        self.count += 1;
        Ok(())
    }

    /// Patches length and count; returns the number of envelopes.
    fn finish(self) -> u32 {
        let payload_len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&payload_len.to_be_bytes());
        self.buf[4..8].copy_from_slice(&self.count.to_be_bytes());
        self.count
    }
}

fn take<'a>(cur: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if cur.len() < n {
        return Err(WireError::Truncated);
    }
    let (head, rest) = cur.split_at(n);
    *cur = rest;
    Ok(head)
}

fn take_u32(cur: &mut &[u8]) -> Result<u32, WireError> {
    Ok(u32::from_be_bytes(
        take(cur, 4)?.try_into().expect("4 bytes"),
    ))
}

fn take_u64(cur: &mut &[u8]) -> Result<u64, WireError> {
    Ok(u64::from_be_bytes(
        take(cur, 8)?.try_into().expect("8 bytes"),
    ))
}

/// Decodes one frame payload (without its length prefix).
fn decode_batch(payload: &[u8]) -> Result<Vec<Envelope>, WireError> {
    let mut cur = payload;
    let count = take_u32(&mut cur)? as usize;
    if count > cur.len() / ENVELOPE_HEADER_LEN {
        return Err(WireError::BadCount(count));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let group = take_u64(&mut cur)?;
        let len = take_u32(&mut cur)? as usize;
        let body = take(&mut cur, len)?;
        let message: Message = protobuf::Message::parse_from_bytes(body)?;
        out.push(Envelope { group, message });
    }
    if !cur.is_empty() {
        return Err(WireError::TrailingBytes(cur.len()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Incoming

/// The notice pushed into the inbox when a peer's connection to this node ends: a killed
/// process's sockets close at once, so this is the earliest sign that the peer is gone (it may
/// also just be reconnecting).
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

async fn accept_loop(
    listener: TcpListener,
    inbox: SyncSender<Envelope>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown_requested(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                tokio::spawn(serve_inbound(
                    stream,
                    remote,
                    inbox.clone(),
                    counters.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                // E.g. out of file descriptors: don't spin.
                warn!(error = %e, "peer transport accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    debug!("peer transport stopped listening");
}

async fn serve_inbound(
    stream: TcpStream,
    remote: SocketAddr,
    inbox: SyncSender<Envelope>,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    bump(&counters.inbound_connections, 1);
    let mut peer = None;
    let (result, stopping) = tokio::select! {
        _ = shutdown_requested(&mut shutdown) => (Ok(()), true),
        result = read_inbound(stream, remote, &inbox, &counters, &mut peer) => (result, false),
    };
    counters.inbound_connections.fetch_sub(1, Ordering::Relaxed);
    if let Some(peer) = peer.filter(|_| !stopping) {
        // Best effort: with a full inbox the Raft loop is busy and falls
        // back on its election timeout.
        let _ = inbox.try_send(peer_lost_notice(peer));
    }
    match result {
        Ok(()) => debug!(%remote, "inbound peer connection closed"),
        Err(e) if e.is_protocol() => {
            bump(&counters.rejected_connections, 1);
            warn!(%remote, error = %e, "closing inbound peer connection");
        }
        Err(e) => debug!(%remote, error = %e, "inbound peer connection failed"),
    }
}

async fn read_inbound(
    stream: TcpStream,
    remote: SocketAddr,
    inbox: &SyncSender<Envelope>,
    counters: &Counters,
    peer_id: &mut Option<u64>,
) -> Result<(), WireError> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut handshake = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, reader.read_exact(&mut handshake))
        .await
        .map_err(|_| WireError::HandshakeTimeout)??;
    let peer = decode_handshake(&handshake)?;
    debug!(peer, %remote, "inbound peer connection");
    *peer_id = Some(peer);

    let mut payload = Vec::new();
    while let Some(len) = read_frame_len(&mut reader).await? {
        if len > MAX_FRAME_LEN {
            return Err(WireError::FrameTooLarge(len));
        }
        payload.resize(len, 0);
        reader.read_exact(&mut payload).await?;
        for envelope in decode_batch(&payload)? {
            if envelope.group == LOCAL_GROUP {
                continue; // local notices are not a peer's to send
            }
            match inbox.try_send(envelope) {
                Ok(()) => bump(&counters.received, 1),
                Err(InboxError::Full(_)) => bump(&counters.dropped_inbox_full, 1),
                // The Raft loop is gone: nobody to deliver to.
                Err(InboxError::Disconnected(_)) => return Ok(()),
            }
        }
        if payload.capacity() > 2 * BATCH_SOFT_CAP {
            payload = Vec::new();
        }
    }
    Ok(())
}

/// The next frame length, or `None` on a clean end of stream between frames.
async fn read_frame_len<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<usize>, WireError> {
    let mut len = [0u8; 4];
    let mut filled = 0;
    while filled < len.len() {
        match reader.read(&mut len[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(WireError::Truncated),
            n => filled += n,
        }
    }
    Ok(Some(u32::from_be_bytes(len) as usize))
}

// ---------------------------------------------------------------------------------------------
// Outgoing

/// Exponential backoff with "equal jitter": a delay in [d/2, d], d doubling up to the max.
struct Backoff {
    next: Duration,
    rng: u64,
}

impl Backoff {
    fn new(seed: u64) -> Self {
        Self {
            next: BACKOFF_MIN,
            rng: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = base.as_micros() as u64 / 2;
        Duration::from_micros(half + self.rng % (half + 1))
    }
}

enum SessionEnd {
    /// Every [`Transport`] clone is gone.
    QueueClosed,
    Broken(io::Error),
}

struct PeerWriter {
    node_id: u64,
    peer_id: u64,
    addr: SocketAddr,
    rx: mpsc::Receiver<Envelope>,
    /// Taken from the queue but not written yet.
    pending: Option<Envelope>,
    batch: Vec<u8>,
    connected: Arc<AtomicBool>,
    counters: Arc<Counters>,
    backoff: Backoff,
}

impl PeerWriter {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let connected = self.connected.clone();
        tokio::select! {
            _ = shutdown_requested(&mut shutdown) => {}
            _ = self.serve() => {}
        }
        connected.store(false, Ordering::Relaxed);
    }

    async fn serve(&mut self) {
        let mut connections = 0u64;
        loop {
            // Lazy: connect only when there is something to send.
            if self.pending.is_none() {
                match self.rx.recv().await {
                    Some(envelope) => self.pending = Some(envelope),
                    None => return,
                }
            }
            let stream = self.connect().await;
            connections += 1;
            if connections > 1 {
                bump(&self.counters.reconnects, 1);
            }
            self.connected.store(true, Ordering::Relaxed);
            let since = Instant::now();
            let end = self.session(stream).await;
            self.connected.store(false, Ordering::Relaxed);
            match end {
                SessionEnd::QueueClosed => return,
                SessionEnd::Broken(e) => {
                    info!(peer = self.peer_id, addr = %self.addr, error = %e, "peer connection lost");
                }
            }
            if since.elapsed() >= STABLE_CONNECTION {
                self.backoff.reset();
            } else {
                tokio::time::sleep(self.backoff.next_delay()).await;
            }
        }
    }

    /// Connects and writes the handshake, retrying with backoff until it succeeds.
    async fn connect(&mut self) -> TcpStream {
        let mut failures = 0u64;
        loop {
            match self.try_connect().await {
                Ok(stream) => {
                    if failures > 0 {
                        info!(peer = self.peer_id, addr = %self.addr, failures, "connected to peer");
                    } else {
                        debug!(peer = self.peer_id, addr = %self.addr, "connected to peer");
                    }
                    self.backoff.reset();
                    return stream;
                }
                Err(e) => {
                    bump(&self.counters.connect_failures, 1);
                    // Log the first failure of a streak only: a down peer is not news every 2 s.
                    if failures == 0 {
                        warn!(peer = self.peer_id, addr = %self.addr, error = %e, "cannot connect to peer, retrying");
                    } else {
                        debug!(peer = self.peer_id, addr = %self.addr, error = %e, failures, "cannot connect to peer");
                    }
                    failures += 1;
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
            }
        }
    }

    async fn try_connect(&self) -> io::Result<TcpStream> {
        let timed_out = |what| io::Error::new(io::ErrorKind::TimedOut, what);
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .map_err(|_| timed_out("connect timed out"))??;
        stream.set_nodelay(true)?;
        tokio::time::timeout(
            WRITE_TIMEOUT,
            stream.write_all(&encode_handshake(self.node_id)),
        )
        .await
        .map_err(|_| timed_out("handshake write timed out"))??;
        Ok(stream)
    }

    /// Writes batches until the connection breaks or the queue closes.
    async fn session(&mut self, stream: TcpStream) -> SessionEnd {
        let (mut rd, mut wr) = stream.into_split();
        // The peer never writes on this connection: a readable socket means it closed (or broke
        // the protocol), which we notice even while idle instead of at the next write.
        let mut probe = [0u8; 64];
        loop {
            let first = match self.pending.take() {
                Some(envelope) => envelope,
                None => tokio::select! {
                    biased;
                    read = rd.read(&mut probe) => {
                        return SessionEnd::Broken(match read {
                            Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "closed by peer"),
                            Ok(_) => io::Error::new(io::ErrorKind::InvalidData, "peer wrote on a one-way connection"),
                            Err(e) => e,
                        });
                    }
                    next = self.rx.recv() => match next {
                        Some(envelope) => envelope,
                        None => return SessionEnd::QueueClosed,
                    },
                },
            };
            let count = self.fill_batch(first);
            if count == 0 {
                continue;
            }
            let written = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&self.batch)).await;
            match written {
                Ok(Ok(())) => bump(&self.counters.sent, u64::from(count)),
                Ok(Err(e)) => {
                    bump(&self.counters.dropped_io, u64::from(count));
                    return SessionEnd::Broken(e);
                }
                Err(_) => {
                    bump(&self.counters.dropped_io, u64::from(count));
                    return SessionEnd::Broken(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "write timed out",
                    ));
                }
            }
        }
    }

    /// Builds a frame in `self.batch` from `first` and whatever is queued, up to the soft cap.
    /// An envelope that does not fit is kept in `self.pending`. Returns the envelope count.
    fn fill_batch(&mut self, first: Envelope) -> u32 {
        let mut batch = BatchBuilder::new(&mut self.batch);
        let mut next = Some(first);
        while let Some(envelope) = next.take() {
            match batch.push(&envelope) {
                Ok(()) => {}
                Err(PushError::Full) => {
                    self.pending = Some(envelope);
                    break;
                }
                Err(PushError::TooLarge(len)) => {
                    bump(&self.counters.dropped_oversize, 1);
                    warn!(
                        peer = self.peer_id,
                        group = envelope.group,
                        len,
                        "dropping raft message larger than a frame"
                    );
                }
                Err(PushError::Encode(e)) => {
                    bump(&self.counters.dropped_oversize, 1);
                    warn!(peer = self.peer_id, group = envelope.group, error = %e, "dropping unencodable raft message");
                }
            }
            if batch.len() >= BATCH_SOFT_CAP {
                break;
            }
            next = self.rx.try_recv().ok();
        }
        batch.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::MessageType;
    use std::sync::mpsc::{Receiver, sync_channel};

    const TEST_BUDGET: Duration = Duration::from_secs(30);

    fn envelope(group: u64, from: u64, to: u64, index: u64) -> Envelope {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.from = from;
        message.to = to;
        message.term = 3;
        message.index = index;
        Envelope { group, message }
    }

    /// A free port on 127.0.0.1 (bound then released).
    fn reserve_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    fn start(
        id: u64,
        listen: SocketAddr,
        peers: &[(u64, SocketAddr)],
        inbox_capacity: usize,
    ) -> anyhow::Result<(Transport, Receiver<Envelope>)> {
        let (tx, rx) = sync_channel(inbox_capacity);
        let transport = Transport::start(
            id,
            listen,
            peers.iter().copied().collect(),
            tx,
            tokio::runtime::Handle::current(),
        )?;
        Ok((transport, rx))
    }

    /// Starts on `listen`, retrying while the previous owner of the port is still closing.
    async fn start_retrying(
        id: u64,
        listen: SocketAddr,
        peers: &[(u64, SocketAddr)],
    ) -> (Transport, Receiver<Envelope>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match start(id, listen, peers, 65536) {
                Ok(started) => return started,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {listen}: {e:#}"),
            }
        }
    }

    /// Collects up to `n` envelopes, giving up after `within`.
    async fn collect(rx: &Receiver<Envelope>, n: usize, within: Duration) -> Vec<Envelope> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            match rx.try_recv() {
                Ok(envelope) => out.push(envelope),
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        out
    }

    /// Polls `cond` until it holds, panicking after `within`.
    async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends one probe every 20 ms until the receiver gets one; returns what it got.
    async fn send_until_received(
        from: &Transport,
        rx: &Receiver<Envelope>,
        make: impl Fn(u64) -> Envelope,
        within: Duration,
    ) -> Envelope {
        let deadline = Instant::now() + within;
        let mut i = 0;
        loop {
            assert!(
                Instant::now() < deadline,
                "nothing received within {within:?}"
            );
            i += 1;
            from.send(vec![make(i)]);
            if let Some(got) = collect(rx, 1, Duration::from_millis(20)).await.pop() {
                return got;
            }
        }
    }

    fn assert_in_order(received: &[Envelope], from: u64, groups: u64, per_group: u64) {
        let mut next: HashMap<u64, u64> = (1..=groups).map(|g| (g, 1)).collect();
        for envelope in received {
            assert_eq!(envelope.message.from, from);
            let expected = next.get_mut(&envelope.group).expect("known group");
            assert_eq!(
                envelope.message.index, *expected,
                "group {}",
                envelope.group
            );
            *expected += 1;
        }
        assert!(next.values().all(|n| *n == per_group + 1), "{next:?}");
    }

    #[test]
    fn codec_round_trip_and_limits() {
        let mut buf = Vec::new();
        let mut batch = BatchBuilder::new(&mut buf);
        let sent: Vec<Envelope> = (1..=3).map(|i| envelope(i, 1, 2, i * 10)).collect();
        for e in &sent {
            batch.push(e).unwrap();
        }
        assert_eq!(batch.finish(), 3);
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len() - 4);
        assert_eq!(decode_batch(&buf[4..]).unwrap(), sent);

        // A lone envelope that cannot fit a frame is refused, not written.
        let mut huge = envelope(1, 1, 2, 1);
        huge.message.context = vec![7u8; MAX_FRAME_LEN].into();
        let mut batch = BatchBuilder::new(&mut buf);
        assert!(matches!(batch.push(&huge), Err(PushError::TooLarge(_))));
        assert_eq!(batch.finish(), 0);
        assert_eq!(buf.len(), 8);

        // Garbage never panics.
        assert!(decode_batch(&[]).is_err());
        assert!(decode_batch(&[0, 0, 0, 9, 1, 2, 3]).is_err());
        assert!(decode_batch(&[0, 0, 0, 0, 1]).is_err());
        let mut bad = vec![0, 0, 0, 1];
        bad.extend_from_slice(&5u64.to_be_bytes());
        bad.extend_from_slice(&100u32.to_be_bytes());
        bad.extend_from_slice(&[0xff; 10]);
        assert!(decode_batch(&bad).is_err());
        let mut junk = vec![0, 0, 0, 1];
        junk.extend_from_slice(&5u64.to_be_bytes());
        junk.extend_from_slice(&4u32.to_be_bytes());
        junk.extend_from_slice(&[0xff; 4]);
        assert!(decode_batch(&junk).is_err());

        assert_eq!(decode_handshake(&encode_handshake(42)).unwrap(), 42);
        assert!(decode_handshake(b"GET / HTTP/1.1").is_err());
        assert!(decode_handshake(&encode_handshake(0)).is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max() {
        let mut backoff = Backoff::new(12345);
        let mut base = BACKOFF_MIN;
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(delay >= base / 2 && delay <= base, "{delay:?} for {base:?}");
            base = (base * 2).min(BACKOFF_MAX);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_MIN);
    }

    /// (1) Both directions, several groups, in order per (peer, group).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exchange_both_ways_in_order() {
        tokio::time::timeout(TEST_BUDGET, async {
            let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
            let (a, rx_a) = start(1, addr_a, &[(2, addr_b)], 65536).unwrap();
            let (b, rx_b) = start(2, addr_b, &[(1, addr_a)], 65536).unwrap();
            assert_eq!(a.local_addr(), addr_a);

            const GROUPS: u64 = 5;
            const PER_GROUP: u64 = 400;
            // Interleave groups, in several `send` calls of various sizes.
            let all_a: Vec<Envelope> = (1..=PER_GROUP)
                .flat_map(|i| (1..=GROUPS).map(move |g| envelope(g, 1, 2, i)))
                .collect();
            let all_b: Vec<Envelope> = (1..=PER_GROUP)
                .flat_map(|i| (1..=GROUPS).map(move |g| envelope(g, 2, 1, i)))
                .collect();
            let (mut chunks_a, mut chunks_b) = (all_a.chunks(37), all_b.chunks(91));
            loop {
                let (next_a, next_b) = (chunks_a.next(), chunks_b.next());
                if next_a.is_none() && next_b.is_none() {
                    break;
                }
                if let Some(chunk) = next_a {
                    a.send(chunk.to_vec());
                }
                if let Some(chunk) = next_b {
                    b.send(chunk.to_vec());
                }
            }

            let total = (GROUPS * PER_GROUP) as usize;
            let at_b = collect(&rx_b, total, Duration::from_secs(10)).await;
            let at_a = collect(&rx_a, total, Duration::from_secs(10)).await;
            assert_eq!(at_b.len(), total);
            assert_eq!(at_a.len(), total);
            assert_in_order(&at_b, 1, GROUPS, PER_GROUP);
            assert_in_order(&at_a, 2, GROUPS, PER_GROUP);

            // A writer counts a batch as sent once its write returns, which can be
            // after the peer has already read it: wait for the counters to settle.
            let settled = |s: &TransportStats| (s.sent, s.received) == (total as u64, total as u64);
            eventually(Duration::from_secs(5), "sent counters", || {
                settled(&a.stats()) && settled(&b.stats())
            })
            .await;
            let (sa, sb) = (a.stats(), b.stats());
            assert_eq!((sa.sent, sa.received), (total as u64, total as u64));
            assert_eq!((sb.sent, sb.received), (total as u64, total as u64));
            assert_eq!(sa.connected_peers, vec![2]);
            assert_eq!(sb.connected_peers, vec![1]);
            assert_eq!(sa.dropped_full + sa.dropped_io + sa.dropped_inbox_full, 0);
            a.shutdown();
            b.shutdown();
            eventually(Duration::from_secs(5), "disconnect", || {
                a.stats().connected_peers.is_empty() && b.stats().connected_peers.is_empty()
            })
            .await;
            // After shutdown, sends are dropped and counted.
            a.send(vec![envelope(1, 1, 2, 1)]);
            assert_eq!(a.stats().dropped_closed, 1);
        })
        .await
        .expect("test timed out");
    }

    /// (2) A peer that comes up later gets messages: the writer retries with backoff.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn late_peer_receives_after_backoff() {
        tokio::time::timeout(TEST_BUDGET, async {
            let addr_b = reserve_addr();
            let (a, _rx_a) = start(1, reserve_addr(), &[(2, addr_b)], 16).unwrap();
            a.send(vec![envelope(7, 1, 2, 1)]);
            eventually(Duration::from_secs(5), "refused connections", || {
                a.stats().connect_failures >= 2
            })
            .await;
            assert!(a.stats().connected_peers.is_empty());

            let (_b, rx_b) = start(2, addr_b, &[(1, a.local_addr())], 65536).unwrap();
            let got =
                send_until_received(&a, &rx_b, |i| envelope(7, 1, 2, i), Duration::from_secs(10))
                    .await;
            assert_eq!((got.group, got.message.from), (7, 1));
            assert_eq!(a.stats().connected_peers, vec![2]);
        })
        .await
        .expect("test timed out");
    }

    /// (3) A restarted peer (new transport on the same port) gets messages again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restarted_peer_receives_again() {
        tokio::time::timeout(TEST_BUDGET, async {
            let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
            let (a, _rx_a) = start(1, addr_a, &[(2, addr_b)], 65536).unwrap();
            let (b, rx_b) = start(2, addr_b, &[(1, addr_a)], 65536).unwrap();
            send_until_received(&a, &rx_b, |i| envelope(1, 1, 2, i), Duration::from_secs(5)).await;

            b.shutdown();
            eventually(Duration::from_secs(5), "a to notice the close", || {
                a.stats().connected_peers.is_empty()
            })
            .await;

            let (_b2, rx_b2) = start_retrying(2, addr_b, &[(1, addr_a)]).await;
            let got = send_until_received(
                &a,
                &rx_b2,
                |i| envelope(2, 1, 2, i),
                Duration::from_secs(10),
            )
            .await;
            assert_eq!(got.group, 2);
            assert!(a.stats().reconnects >= 1, "{:?}", a.stats());
        })
        .await
        .expect("test timed out");
    }

    /// A peer's connection ending becomes a local notice at once (a killed node's sockets
    /// close), and a peer cannot forge such notices over the wire.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_peer_connection_is_noticed() {
        tokio::time::timeout(TEST_BUDGET, async {
            let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
            let (_a, rx_a) = start(1, addr_a, &[(2, addr_b)], 65536).unwrap();
            let (b, _rx_b) = start(2, addr_b, &[(1, addr_a)], 65536).unwrap();
            let mut forged = peer_lost_notice(3);
            forged.message.to = 1;
            b.send(vec![forged]);
            let first =
                send_until_received(&b, &rx_a, |i| envelope(1, 2, 1, i), Duration::from_secs(5))
                    .await;
            assert_eq!(lost_peer(&first), None, "the forged notice got through");

            b.shutdown();
            let mut notices = Vec::new();
            eventually(Duration::from_secs(5), "the peer-lost notice", || {
                notices.extend(rx_a.try_iter().filter_map(|e| lost_peer(&e)));
                !notices.is_empty()
            })
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            notices.extend(rx_a.try_iter().filter_map(|e| lost_peer(&e)));
            assert_eq!(notices, vec![2]);
        })
        .await
        .expect("test timed out");
    }

    /// Reads until the transport closes the socket (EOF or reset); panics if it stays open.
    async fn assert_closed_by_peer(mut stream: TcpStream) {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection left open");
    }

    /// (4) Garbage closes that connection only; proper peers keep being served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_closes_the_connection_only() {
        tokio::time::timeout(TEST_BUDGET, async {
            let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
            let (a, _rx_a) = start(1, addr_a, &[(2, addr_b)], 65536).unwrap();
            let (b, rx_b) = start(2, addr_b, &[(1, addr_a)], 65536).unwrap();
            send_until_received(&a, &rx_b, |i| envelope(1, 1, 2, i), Duration::from_secs(5)).await;

            // Not our protocol at all.
            let mut junk = TcpStream::connect(addr_b).await.unwrap();
            junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert_closed_by_peer(junk).await;

            // Good handshake, then an oversize length.
            let mut oversize = TcpStream::connect(addr_b).await.unwrap();
            oversize.write_all(&encode_handshake(9)).await.unwrap();
            oversize.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
            assert_closed_by_peer(oversize).await;

            // Good handshake, then a frame whose payload does not decode.
            let mut undecodable = TcpStream::connect(addr_b).await.unwrap();
            undecodable.write_all(&encode_handshake(9)).await.unwrap();
            undecodable.write_all(&8u32.to_be_bytes()).await.unwrap();
            undecodable
                .write_all(&[0, 0, 0, 3, 1, 2, 3, 4])
                .await
                .unwrap();
            assert_closed_by_peer(undecodable).await;

            // Wrong version.
            let mut version = TcpStream::connect(addr_b).await.unwrap();
            let mut handshake = encode_handshake(9);
            handshake[5] = 99;
            version.write_all(&handshake).await.unwrap();
            assert_closed_by_peer(version).await;

            eventually(Duration::from_secs(5), "rejections counted", || {
                b.stats().rejected_connections == 4
            })
            .await;
            assert_eq!(b.stats().inbound_connections, 1);

            // The proper peer is still served, on its original connection.
            a.send((1..=50).map(|i| envelope(3, 1, 2, i)).collect());
            let got: Vec<Envelope> = collect(&rx_b, 1000, Duration::from_millis(500))
                .await
                .into_iter()
                .filter(|e| e.group == 3)
                .collect();
            let indices: Vec<u64> = got.iter().map(|e| e.message.index).collect();
            assert_eq!(indices, (1..=50).collect::<Vec<_>>());
            assert_eq!(a.stats().reconnects, 0);
        })
        .await
        .expect("test timed out");
    }

    /// (5) With the peer down, a full queue drops and counts without blocking.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_queue_drops_without_blocking() {
        tokio::time::timeout(TEST_BUDGET, async {
            let down = reserve_addr();
            let (a, _rx_a) = start(1, reserve_addr(), &[(2, down)], 16).unwrap();
            const N: usize = 3 * PEER_QUEUE_CAPACITY;

            // From a plain thread, like the Raft loop.
            let sender = a.clone();
            let elapsed = std::thread::spawn(move || {
                let started = Instant::now();
                sender.send((1..=N as u64).map(|i| envelope(1, 1, 2, i)).collect());
                sender.send((1..=5).map(|i| envelope(1, 1, 9, i)).collect());
                sender.send(vec![envelope(1, 1, 1, 1)]);
                started.elapsed()
            })
            .join()
            .unwrap();
            assert!(
                elapsed < Duration::from_secs(2),
                "send blocked for {elapsed:?}"
            );

            let stats = a.stats();
            // The queue holds its capacity, the writer at most one more (waiting to connect).
            let kept = (N as u64) - stats.dropped_full;
            assert!(
                (PEER_QUEUE_CAPACITY as u64..=PEER_QUEUE_CAPACITY as u64 + 1).contains(&kept),
                "{stats:?}"
            );
            assert_eq!(stats.dropped_unknown, 6);
            assert_eq!(stats.sent, 0);
            assert!(stats.connected_peers.is_empty());
        })
        .await
        .expect("test timed out");
    }

    /// A full inbox drops and counts instead of blocking the reader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_inbox_drops_and_counts() {
        tokio::time::timeout(TEST_BUDGET, async {
            let (addr_a, addr_b) = (reserve_addr(), reserve_addr());
            let (a, _rx_a) = start(1, addr_a, &[(2, addr_b)], 16).unwrap();
            let (b, _rx_b) = start(2, addr_b, &[(1, addr_a)], 10).unwrap();
            a.send((1..=100).map(|i| envelope(1, 1, 2, i)).collect());
            eventually(Duration::from_secs(5), "all accounted for", || {
                let s = b.stats();
                s.received + s.dropped_inbox_full == 100
            })
            .await;
            assert_eq!(b.stats().received, 10);
        })
        .await
        .expect("test timed out");
    }
}
