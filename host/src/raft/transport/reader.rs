//! The accepting side: the accept loop (bounded connections), the handshake check (the peer
//! proves membership of the cluster before any frame is read), and one reader task per
//! connection that decodes batches into the inbox.

use super::inbox::{Inbox, PushError};
use super::wire::{
    BATCH_SOFT_CAP, HANDSHAKE_LEN, Handshake, MAX_CLOCK_SKEW, MAX_FRAME_LEN, PREAMBLE_LEN, Refusal,
    WireError, decode_batch,
};
use super::{Counters, LOCAL_GROUP, bump, peer_lost_notice, shutdown_requested};
use crate::auth::{ClusterAuth, NONCE_LEN};
use crate::log_limit::LogLimiter;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, warn};

/// Time a connection has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes asked of the socket per read while a frame's payload arrives: the buffer grows with
/// what arrived, never by what the length prefix claims.
const READ_CHUNK: usize = 64 * 1024;
/// Nonces of accepted handshakes remembered against replay (each for twice the clock-skew
/// window); past this many, the oldest is forgotten.
const NONCE_CACHE: usize = 4096;

/// What the accepting side needs to admit a connection.
pub(super) struct Admission {
    pub node_id: u64,
    pub peers: HashSet<u64>,
    pub auth: ClusterAuth,
    pub nonces: Mutex<NonceCache>,
    pub refused_log: LogLimiter,
    pub limit_log: LogLimiter,
}

impl Admission {
    /// The sender's node id if the handshake proves it belongs to this cluster.
    fn verify(&self, hs: &Handshake, now_ms: u64) -> Result<u64, Refusal> {
        if hs.cluster_tag != self.auth.cluster_tag() {
            return Err(Refusal::OtherCluster(hs.cluster_tag));
        }
        if !self.auth.verify_peer(
            hs.sender,
            hs.receiver,
            hs.timestamp_ms,
            &hs.nonce,
            &hs.proof,
        ) {
            return Err(Refusal::BadProof);
        }
        // Authentic from here on: what is left are honest mistakes or replays.
        if hs.receiver != self.node_id {
            return Err(Refusal::WrongReceiver(hs.receiver));
        }
        if hs.sender == self.node_id || !self.peers.contains(&hs.sender) {
            return Err(Refusal::UnknownSender(hs.sender));
        }
        let skew = i128::from(now_ms) - i128::from(hs.timestamp_ms);
        if skew.unsigned_abs() > MAX_CLOCK_SKEW.as_millis() {
            return Err(Refusal::ClockSkew(skew));
        }
        let fresh = self
            .nonces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hs.nonce, now_ms);
        if !fresh {
            return Err(Refusal::Replayed);
        }
        Ok(hs.sender)
    }
}

/// Nonces seen within the replay window.
#[derive(Default)]
pub(super) struct NonceCache {
    seen: HashMap<[u8; NONCE_LEN], u64>,
    order: VecDeque<([u8; NONCE_LEN], u64)>,
}

impl NonceCache {
    /// Records `nonce`; false if it was already there.
    fn insert(&mut self, nonce: [u8; NONCE_LEN], now_ms: u64) -> bool {
        let window = 2 * MAX_CLOCK_SKEW.as_millis() as u64;
        while let Some(&(old, at)) = self.order.front() {
            if now_ms.saturating_sub(at) <= window && self.order.len() < NONCE_CACHE {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.insert(nonce, now_ms).is_some() {
            return false;
        }
        self.order.push_back((nonce, now_ms));
        true
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    admission: Arc<Admission>,
    slots: Arc<Semaphore>,
    inbox: Inbox,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown_requested(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    tokio::spawn(serve_inbound(
                        stream,
                        remote,
                        slot,
                        admission.clone(),
                        inbox.clone(),
                        counters.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(_) => {
                    // Over the limit: closed at once rather than left in the backlog.
                    drop(stream);
                    bump(&counters.refused_over_limit, 1);
                    if let Some(suppressed) = admission.limit_log.allow() {
                        warn!(%remote, suppressed, "refusing a peer connection: connection limit reached");
                    }
                }
            },
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
    _slot: OwnedSemaphorePermit,
    admission: Arc<Admission>,
    inbox: Inbox,
    counters: Arc<Counters>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    bump(&counters.inbound_connections, 1);
    let mut peer = None;
    let (result, stopping) = tokio::select! {
        _ = shutdown_requested(&mut shutdown) => (Ok(()), true),
        result = read_inbound(stream, remote, &admission, &inbox, &counters, &mut peer) => (result, false),
    };
    counters.inbound_connections.fetch_sub(1, Ordering::Relaxed);
    if let Some(peer) = peer.filter(|_| !stopping) {
        // Best effort: with a full inbox the Raft loop is busy and falls
        // back on its election timeout.
        let _ = inbox.tx.try_send(peer_lost_notice(peer));
    }
    match result {
        Ok(()) => debug!(%remote, "inbound peer connection closed"),
        Err(WireError::Io(e)) => debug!(%remote, error = %e, "inbound peer connection failed"),
        Err(e @ (WireError::Unauthenticated(_) | WireError::HandshakeTimeout(_))) => {
            bump(&counters.refused_unauthenticated, 1);
            if let Some(suppressed) = admission.refused_log.allow() {
                warn!(%remote, suppressed, error = %e, "refusing a peer connection");
            }
        }
        Err(e) => {
            bump(&counters.rejected_connections, 1);
            if let Some(suppressed) = admission.refused_log.allow() {
                warn!(%remote, suppressed, error = %e, "closing inbound peer connection");
            }
        }
    }
}

/// Reads and checks the handshake; the sender's node id.
async fn handshake<R: AsyncRead + Unpin>(
    reader: &mut R,
    admission: &Admission,
) -> Result<u64, WireError> {
    let mut preamble = [0u8; PREAMBLE_LEN];
    reader.read_exact(&mut preamble).await?;
    Handshake::check_preamble(&preamble)?;
    let mut body = [0u8; HANDSHAKE_LEN - PREAMBLE_LEN];
    reader.read_exact(&mut body).await?;
    let hs = Handshake::decode_body(&body);
    Ok(admission.verify(&hs, super::now_ms())?)
}

async fn read_inbound(
    stream: TcpStream,
    remote: SocketAddr,
    admission: &Admission,
    inbox: &Inbox,
    counters: &Counters,
    peer_id: &mut Option<u64>,
) -> Result<(), WireError> {
    let mut reader = BufReader::with_capacity(READ_CHUNK, stream);
    let peer = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut reader, admission))
        .await
        .map_err(|_| WireError::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    debug!(peer, %remote, "inbound peer connection");
    *peer_id = Some(peer);

    let mut payload = Vec::new();
    let mut gauge = BufferGauge::new(&counters.inbound_buffer_bytes);
    while let Some(len) = read_frame_len(&mut reader).await? {
        if len > MAX_FRAME_LEN {
            return Err(WireError::FrameTooLarge(len));
        }
        read_payload(&mut reader, len, &mut payload, &mut gauge).await?;
        for envelope in decode_batch(&payload)? {
            if envelope.group == LOCAL_GROUP {
                continue; // local notices are not a peer's to send
            }
            // A peer speaks for itself, to this node only — except the one
            // message Raft forwards on another node's behalf: a follower
            // passes a leadership transfer on to its leader with the
            // transferee as `from` (raft-rs's protocol).
            let forwarded_transfer =
                envelope.message.get_msg_type() == raft::prelude::MessageType::MsgTransferLeader;
            if (envelope.message.from != peer && !forwarded_transfer)
                || envelope.message.to != admission.node_id
            {
                bump(&counters.dropped_forged, 1);
                continue;
            }
            // Waits while the inbox holds its budget in bytes: this connection is not read
            // meanwhile, so the peer's writer (and Raft's flow control) slows down.
            match inbox.push(envelope).await {
                Ok(()) => bump(&counters.received, 1),
                Err(PushError::Full) => bump(&counters.dropped_inbox_full, 1),
                // The Raft loop is gone: nobody to deliver to.
                Err(PushError::Closed) => return Ok(()),
            }
        }
        if payload.capacity() > 2 * BATCH_SOFT_CAP {
            payload = Vec::new();
        }
        gauge.set(payload.capacity());
    }
    Ok(())
}

/// Reads `len` bytes into `payload` in chunks of at most [`READ_CHUNK`]: its capacity follows
/// the bytes that arrived (at most about twice them), whatever the length prefix claimed.
async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
    payload: &mut Vec<u8>,
    gauge: &mut BufferGauge<'_>,
) -> Result<(), WireError> {
    payload.clear();
    while payload.len() < len {
        let want = (len - payload.len()).min(READ_CHUNK);
        payload.reserve(want);
        gauge.set(payload.capacity());
        let read = (&mut *reader).take(want as u64).read_buf(payload).await?;
        if read == 0 {
            return Err(WireError::Truncated);
        }
    }
    Ok(())
}

/// One reader's share of [`Counters::inbound_buffer_bytes`].
struct BufferGauge<'a> {
    total: &'a AtomicU64,
    mine: u64,
}

impl<'a> BufferGauge<'a> {
    fn new(total: &'a AtomicU64) -> Self {
        Self { total, mine: 0 }
    }

    fn set(&mut self, bytes: usize) {
        let bytes = bytes as u64;
        if bytes > self.mine {
            self.total.fetch_add(bytes - self.mine, Ordering::Relaxed);
        } else {
            self.total.fetch_sub(self.mine - bytes, Ordering::Relaxed);
        }
        self.mine = bytes;
    }
}

impl Drop for BufferGauge<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;

    fn admission(node_id: u64, cluster: &str, secret: &str) -> Admission {
        Admission {
            node_id,
            peers: [1, 2, 3].into_iter().collect(),
            auth: ClusterAuth::new(cluster, Secret::new(secret).unwrap()).unwrap(),
            nonces: Mutex::default(),
            refused_log: LogLimiter::default(),
            limit_log: LogLimiter::default(),
        }
    }

    const S: &str = "0123456789abcdef0123456789abcdef";
    const OTHER: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn only_a_fresh_proof_of_this_cluster_is_admitted() {
        let node2 = admission(2, "c1", S);
        let now = 1_000_000;
        let good = Handshake::new(&node2.auth, 1, 2, now);
        assert_eq!(node2.verify(&good, now + 10), Ok(1));
        // The same bytes again: a replay.
        assert_eq!(node2.verify(&good, now + 20), Err(Refusal::Replayed));

        let wrong_secret = admission(1, "c1", OTHER);
        let hs = Handshake::new(&wrong_secret.auth, 1, 2, now);
        assert_eq!(node2.verify(&hs, now), Err(Refusal::BadProof));

        let other_cluster = admission(1, "c2", S);
        let hs = Handshake::new(&other_cluster.auth, 1, 2, now);
        assert!(matches!(
            node2.verify(&hs, now),
            Err(Refusal::OtherCluster(_))
        ));
        // Claiming this cluster's tag without its id does not help.
        let mut forged = hs.clone();
        forged.cluster_tag = node2.auth.cluster_tag();
        assert_eq!(node2.verify(&forged, now), Err(Refusal::BadProof));

        // A tampered field breaks the proof.
        let mut tampered = Handshake::new(&node2.auth, 1, 2, now);
        tampered.sender = 3;
        assert_eq!(node2.verify(&tampered, now), Err(Refusal::BadProof));

        let to_node3 = Handshake::new(&node2.auth, 1, 3, now);
        assert_eq!(node2.verify(&to_node3, now), Err(Refusal::WrongReceiver(3)));
        let stranger = Handshake::new(&node2.auth, 9, 2, now);
        assert_eq!(node2.verify(&stranger, now), Err(Refusal::UnknownSender(9)));
        let itself = Handshake::new(&node2.auth, 2, 2, now);
        assert_eq!(node2.verify(&itself, now), Err(Refusal::UnknownSender(2)));

        let skew = MAX_CLOCK_SKEW.as_millis() as u64 + 1;
        let old = Handshake::new(&node2.auth, 1, 2, now - skew);
        assert!(matches!(
            node2.verify(&old, now),
            Err(Refusal::ClockSkew(_))
        ));
        let future = Handshake::new(&node2.auth, 1, 2, now + skew);
        assert!(matches!(
            node2.verify(&future, now),
            Err(Refusal::ClockSkew(_))
        ));
    }

    #[test]
    fn the_nonce_cache_is_bounded_and_forgets_expired_nonces() {
        let mut cache = NonceCache::default();
        for i in 0..(NONCE_CACHE as u64 + 100) {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&i.to_be_bytes());
            assert!(cache.insert(nonce, 1000));
        }
        assert_eq!(cache.seen.len(), NONCE_CACHE);
        assert_eq!(cache.order.len(), NONCE_CACHE);
        let later = 1000 + 2 * MAX_CLOCK_SKEW.as_millis() as u64 + 1;
        assert!(cache.insert([0xff; NONCE_LEN], later));
        assert_eq!(cache.seen.len(), 1);
    }
}
