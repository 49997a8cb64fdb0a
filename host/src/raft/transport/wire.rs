//! The wire format of the Raft port: the authenticated handshake, frames, batches.
//!
//! Every connection carries one direction only (the connecting node writes, the accepting node
//! reads). All integers are big-endian.
//!
//! ```text
//! handshake: b"LHRT" | u16 version (= 2)                                   (6 bytes, checked first)
//!            | u64 sender node id | u64 receiver node id
//!            | [8] cluster tag (SHA-256 of the cluster id, first 8 bytes: tells "other cluster"
//!              apart from "wrong secret" in the receiver's log)
//!            | u64 timestamp (ms since the Unix epoch) | [16] random nonce
//!            | [32] proof = HMAC-SHA256(secret, cluster id, sender, receiver, timestamp, nonce)
//!                                                                          (86 bytes in all, once)
//! frame:     u32 payload length (<= MAX_FRAME_LEN) | payload               (repeated)
//! payload:   u32 count | count x ( u64 group | u32 len | len bytes of protobuf raft Message )
//! ```
//!
//! Version 1 had no proof (sender id only); a version-1 peer is refused as unsupported.

use super::Envelope;
use crate::auth::{ClusterAuth, NONCE_LEN, PROOF_LEN, Proof, random_bytes};
use raft::prelude::Message;
use std::io;
use std::time::Duration;

/// Magic bytes opening every connection.
pub const MAGIC: [u8; 4] = *b"LHRT";
/// Wire format version sent in the handshake.
pub const WIRE_VERSION: u16 = 2;
/// Magic and version: read and checked before the rest of the handshake.
pub const PREAMBLE_LEN: usize = 4 + 2;
/// Length of the whole handshake.
pub const HANDSHAKE_LEN: usize = PREAMBLE_LEN + 8 + 8 + 8 + 8 + NONCE_LEN + PROOF_LEN;
/// Largest accepted frame payload; a longer frame closes the connection.
pub const MAX_FRAME_LEN: usize = 16 << 20;
/// A writer stops adding envelopes to a batch once it reaches this many bytes.
pub const BATCH_SOFT_CAP: usize = 1 << 20;
/// Per-envelope overhead in a payload: group and length.
pub(super) const ENVELOPE_HEADER_LEN: usize = 8 + 4;
/// How far a handshake's timestamp may be from the receiver's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Why the reading side closed a connection.
#[derive(Debug, thiserror::Error)]
pub(super) enum WireError {
    #[error("bad magic {0:02x?} (not a leaderhook peer)")]
    BadMagic([u8; 4]),
    #[error("unsupported wire version {0} (expected {WIRE_VERSION})")]
    BadVersion(u16),
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("refused: {0}")]
    Unauthenticated(#[from] Refusal),
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

/// Why a handshake did not prove membership of this cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("sender node id {0} is not a peer of this node")]
    UnknownSender(u64),
    #[error("addressed to node {0}, not this one")]
    WrongReceiver(u64),
    #[error("a peer of another cluster (cluster tag {0:02x?})")]
    OtherCluster([u8; 8]),
    #[error("wrong proof (not this cluster's secret)")]
    BadProof,
    #[error("timestamp {0} ms off this node's clock (limit {MAX_CLOCK_SKEW:?}; check the clocks)")]
    ClockSkew(i128),
    #[error("replayed handshake (nonce seen before)")]
    Replayed,
}

/// A decoded handshake, not verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub sender: u64,
    pub receiver: u64,
    pub cluster_tag: [u8; 8],
    pub timestamp_ms: u64,
    pub nonce: [u8; NONCE_LEN],
    pub proof: Proof,
}

impl Handshake {
    /// A fresh handshake from `sender` to `receiver`, proven with `auth`.
    pub fn new(auth: &ClusterAuth, sender: u64, receiver: u64, timestamp_ms: u64) -> Self {
        let nonce = random_bytes::<NONCE_LEN>();
        Self {
            sender,
            receiver,
            cluster_tag: auth.cluster_tag(),
            timestamp_ms,
            nonce,
            proof: auth.peer_proof(sender, receiver, timestamp_ms, &nonce),
        }
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = Vec::with_capacity(HANDSHAKE_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&WIRE_VERSION.to_be_bytes());
        out.extend_from_slice(&self.sender.to_be_bytes());
        out.extend_from_slice(&self.receiver.to_be_bytes());
        out.extend_from_slice(&self.cluster_tag);
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.proof);
        out.try_into().expect("HANDSHAKE_LEN bytes")
    }

    /// Checks magic and version, the first [`PREAMBLE_LEN`] bytes.
    pub(super) fn check_preamble(bytes: &[u8; PREAMBLE_LEN]) -> Result<(), WireError> {
        let magic: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        match u16::from_be_bytes(bytes[4..].try_into().expect("2 bytes")) {
            WIRE_VERSION => Ok(()),
            version => Err(WireError::BadVersion(version)),
        }
    }

    /// Decodes the bytes after the preamble.
    pub(super) fn decode_body(bytes: &[u8; HANDSHAKE_LEN - PREAMBLE_LEN]) -> Self {
        let mut cur = &bytes[..];
        let mut take = |n: usize| {
            let (head, rest) = cur.split_at(n);
            cur = rest;
            head
        };
        let u64_at = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        let sender = u64_at(take(8));
        let receiver = u64_at(take(8));
        let cluster_tag = take(8).try_into().expect("8 bytes");
        let timestamp_ms = u64_at(take(8));
        let nonce = take(NONCE_LEN).try_into().expect("nonce");
        let proof = take(PROOF_LEN).try_into().expect("proof");
        Self {
            sender,
            receiver,
            cluster_tag,
            timestamp_ms,
            nonce,
            proof,
        }
    }
}

/// Why an envelope could not be added to a batch.
#[derive(Debug)]
pub(super) enum PushError {
    /// Does not fit after what the batch already holds: retry in the next batch.
    Full,
    /// Does not fit in a frame even alone.
    TooLarge(usize),
    Encode(protobuf::ProtobufError),
}

/// A frame being built in a reusable buffer: length and count are patched in by `finish`.
pub(super) struct BatchBuilder<'a> {
    buf: &'a mut Vec<u8>,
    count: u32,
}

impl<'a> BatchBuilder<'a> {
    pub(super) fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0u8; 8]);
        Self { buf, count: 0 }
    }

    /// Bytes of the frame so far, length prefix included.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn push(&mut self, envelope: &Envelope) -> Result<(), PushError> {
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
    pub(super) fn finish(self) -> u32 {
        let payload_len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&payload_len.to_be_bytes());
        self.buf[4..8].copy_from_slice(&self.count.to_be_bytes());
        self.count
    }
}

/// One frame holding `envelopes` (for tools and tests that speak the protocol by hand).
/// Envelopes that do not fit a frame are left out.
pub fn encode_frame(envelopes: &[Envelope]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut batch = BatchBuilder::new(&mut buf);
    for envelope in envelopes {
        if batch.push(envelope).is_err() {
            break;
        }
    }
    batch.finish();
    buf
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
pub(super) fn decode_batch(payload: &[u8]) -> Result<Vec<Envelope>, WireError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;
    use raft::prelude::MessageType;

    fn envelope(group: u64, index: u64) -> Envelope {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.from = 1;
        message.to = 2;
        message.index = index;
        Envelope { group, message }
    }

    #[test]
    fn codec_round_trip_and_limits() {
        let mut buf = Vec::new();
        let mut batch = BatchBuilder::new(&mut buf);
        let sent: Vec<Envelope> = (1..=3).map(|i| envelope(i, i * 10)).collect();
        for e in &sent {
            batch.push(e).unwrap();
        }
        assert_eq!(batch.finish(), 3);
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len() - 4);
        assert_eq!(decode_batch(&buf[4..]).unwrap(), sent);
        assert_eq!(encode_frame(&sent), buf);

        // A lone envelope that cannot fit a frame is refused, not written.
        let mut huge = envelope(1, 1);
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
    }

    #[test]
    fn handshake_round_trip_and_preamble_checks() {
        let auth = ClusterAuth::new("c", Secret::new(&"s".repeat(32)).unwrap()).unwrap();
        let hs = Handshake::new(&auth, 4, 5, 1234);
        let bytes = hs.encode();
        Handshake::check_preamble(bytes[..PREAMBLE_LEN].try_into().unwrap()).unwrap();
        let back = Handshake::decode_body(bytes[PREAMBLE_LEN..].try_into().unwrap());
        assert_eq!(back, hs);
        assert!(auth.verify_peer(4, 5, 1234, &back.nonce, &back.proof));
        // Two handshakes never share a nonce.
        assert_ne!(Handshake::new(&auth, 4, 5, 1234).nonce, hs.nonce);

        assert!(matches!(
            Handshake::check_preamble(b"GET / "),
            Err(WireError::BadMagic(_))
        ));
        // A version-1 peer (no proof) is refused as unsupported.
        assert!(matches!(
            Handshake::check_preamble(b"LHRT\0\x01"),
            Err(WireError::BadVersion(1))
        ));
    }
}
