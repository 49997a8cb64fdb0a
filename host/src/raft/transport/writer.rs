//! The connecting side: one writer task per peer, fed by the peer's byte-bounded queue. It
//! connects lazily (on the first message queued for that peer), proves membership in its
//! handshake, retries with exponential backoff (50 ms doubling to 2 s, jittered) while the peer
//! is unreachable, and writes everything queued at the time of writing as one batch frame (up
//! to about [`BATCH_SOFT_CAP`] bytes).

use super::wire::{BATCH_SOFT_CAP, BatchBuilder, Handshake, PushError};
use super::{Counters, Envelope, bump, shutdown_requested};
use crate::auth::ClusterAuth;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tracing::{debug, info, warn};

pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that lived at least this long resets the backoff; a shorter one counts as a
/// failed attempt (so a peer that accepts and closes at once is not hammered).
const STABLE_CONNECTION: Duration = Duration::from_secs(1);

/// An envelope in a peer's queue, holding its share of the queue's byte budget until it is
/// written (or dropped).
pub(super) struct Queued {
    pub envelope: Envelope,
    pub _charge: OwnedSemaphorePermit,
}

/// Exponential backoff with "equal jitter": a delay in [d/2, d], d doubling up to the max.
pub(super) struct Backoff {
    next: Duration,
    rng: u64,
}

impl Backoff {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            next: BACKOFF_MIN,
            rng: seed | 1,
        }
    }

    pub(super) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    pub(super) fn next_delay(&mut self) -> Duration {
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
    /// Every [`Transport`](super::Transport) clone is gone.
    QueueClosed,
    Broken(io::Error),
}

pub(super) struct PeerWriter {
    pub node_id: u64,
    pub peer_id: u64,
    pub addr: SocketAddr,
    pub auth: ClusterAuth,
    pub rx: mpsc::Receiver<Queued>,
    /// Taken from the queue but not written yet.
    pub pending: Option<Queued>,
    pub batch: Vec<u8>,
    pub connected: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
    pub backoff: Backoff,
}

impl PeerWriter {
    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
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
        let handshake = Handshake::new(&self.auth, self.node_id, self.peer_id, super::now_ms());
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&handshake.encode()))
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
    fn fill_batch(&mut self, first: Queued) -> u32 {
        let mut batch = BatchBuilder::new(&mut self.batch);
        let mut next = Some(first);
        while let Some(queued) = next.take() {
            let group = queued.envelope.group;
            match batch.push(&queued.envelope) {
                // The envelope's bytes are in the frame now: dropping `queued` returns its
                // charge to the queue's budget.
                Ok(()) => {}
                Err(PushError::Full) => {
                    self.pending = Some(queued);
                    break;
                }
                Err(PushError::TooLarge(len)) => {
                    bump(&self.counters.dropped_oversize, 1);
                    warn!(
                        peer = self.peer_id,
                        group, len, "dropping raft message larger than a frame"
                    );
                }
                Err(PushError::Encode(e)) => {
                    bump(&self.counters.dropped_oversize, 1);
                    warn!(peer = self.peer_id, group, error = %e, "dropping unencodable raft message");
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
