//! Capability calls as data: what a plugin asked the host to do
//! (`set-leader`, `transfer`, `emit`) and how the host answered. Counted for
//! every plugin (by capability and outcome, for metrics), and captured per
//! batch while something needs them: shadow comparisons
//! ([`crate::shadow`]) and recorded traces ([`crate::trace`]).
//!
//! Bounded: a batch's capture keeps at most [`MAX_CAPTURED_CALLS`] calls and
//! [`MAX_CAPTURED_BYTES`] bytes (beyond that calls are counted, not kept);
//! an emitted payload is kept as its first [`PAYLOAD_PREVIEW`] bytes and a
//! SHA-256 of the whole, which is what comparisons use.

use crate::contract::{CapError, NodeId, PartitionId, WriteOutcome};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Calls one batch's capture keeps.
pub const MAX_CAPTURED_CALLS: usize = 10_000;
/// Bytes (partition names, sinks, payload previews) one batch's capture keeps.
pub const MAX_CAPTURED_BYTES: usize = 1 << 20;
/// Bytes of an emitted payload kept for display.
pub const PAYLOAD_PREVIEW: usize = 200;

/// A capability call a plugin made, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum Call {
    SetLeader {
        partition: String,
        leader: NodeId,
        epoch: u64,
    },
    Transfer {
        partition: String,
        to: NodeId,
    },
    Emit {
        sink: String,
        /// Hex SHA-256 of the whole payload: what comparisons look at.
        payload_sha256: String,
        /// The payload's first [`PAYLOAD_PREVIEW`] bytes.
        payload: String,
    },
}

impl Call {
    pub fn capability(&self) -> Capability {
        match self {
            Call::SetLeader { .. } => Capability::SetLeader,
            Call::Transfer { .. } => Capability::Transfer,
            Call::Emit { .. } => Capability::Emit,
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Call::SetLeader { partition, .. } | Call::Transfer { partition, .. } => {
                partition.len() + 32
            }
            Call::Emit { sink, payload, .. } => sink.len() + payload.len() + 96,
        }
    }

    pub fn emit(sink: &str, payload: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(payload.as_bytes());
        Call::Emit {
            sink: crate::text::bounded(sink, 256),
            payload_sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            payload: crate::text::bounded(payload, PAYLOAD_PREVIEW),
        }
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::SetLeader {
                partition,
                leader,
                epoch,
            } => write!(f, "set-leader({partition}, leader {leader}, epoch {epoch})"),
            Call::Transfer { partition, to } => write!(f, "transfer({partition} -> node {to})"),
            Call::Emit { sink, payload, .. } => write!(f, "emit({sink}, {payload:?})"),
        }
    }
}

/// The capabilities whose calls are counted and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    SetLeader,
    Transfer,
    Emit,
}

impl Capability {
    pub const ALL: [Capability; 3] = [
        Capability::SetLeader,
        Capability::Transfer,
        Capability::Emit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::SetLeader => "set-leader",
            Capability::Transfer => "transfer",
            Capability::Emit => "emit",
        }
    }
}

/// How the host answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Accepted: queued (for a shadow plugin: would have been).
    Ok,
    /// `set-leader` naming what is stored already.
    Unchanged,
    NotGranted,
    UnknownPartition,
    NotAReplica,
    StaleEpoch,
    FutureEpoch,
    UnknownSink,
    /// A write naming a node Raft did not elect at that term.
    NotElected,
    OverQuota,
    /// A transfer within the partition's cooldown.
    Cooldown,
    /// A full queue, a stopped node...
    Unavailable,
}

impl Outcome {
    pub const ALL: [Outcome; 12] = [
        Outcome::Ok,
        Outcome::Unchanged,
        Outcome::NotGranted,
        Outcome::UnknownPartition,
        Outcome::NotAReplica,
        Outcome::StaleEpoch,
        Outcome::FutureEpoch,
        Outcome::UnknownSink,
        Outcome::NotElected,
        Outcome::OverQuota,
        Outcome::Cooldown,
        Outcome::Unavailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::NotGranted => "not-granted",
            Outcome::UnknownPartition => "unknown-partition",
            Outcome::NotAReplica => "not-a-replica",
            Outcome::StaleEpoch => "stale-epoch",
            Outcome::FutureEpoch => "future-epoch",
            Outcome::UnknownSink => "unknown-sink",
            Outcome::NotElected => "not-elected",
            Outcome::OverQuota => "over-quota",
            Outcome::Cooldown => "cooldown",
            Outcome::Unavailable => "unavailable",
        }
    }

    pub fn of_error(e: &CapError) -> Self {
        match e {
            CapError::NotGranted(_) => Outcome::NotGranted,
            CapError::UnknownPartition => Outcome::UnknownPartition,
            CapError::NotAReplica(_) => Outcome::NotAReplica,
            CapError::StaleEpoch(_) => Outcome::StaleEpoch,
            CapError::FutureEpoch(_) => Outcome::FutureEpoch,
            CapError::UnknownSink(_) => Outcome::UnknownSink,
            CapError::NotElected(_) => Outcome::NotElected,
            CapError::OverQuota(_) => Outcome::OverQuota,
            CapError::Cooldown(_) => Outcome::Cooldown,
            CapError::Unavailable(_) => Outcome::Unavailable,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A call and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    #[serde(flatten)]
    pub call: Call,
    pub outcome: Outcome,
}

/// Per plugin: every call counted by capability and outcome; while
/// `capture` is on, the current batch's calls kept too.
#[derive(Debug, Default)]
pub struct CallLedger {
    counts: [[AtomicU64; Outcome::ALL.len()]; Capability::ALL.len()],
    capture: AtomicBool,
    captured: Mutex<Captured>,
    /// Calls not kept because a batch's capture was full.
    pub capture_overflow: AtomicU64,
}

#[derive(Debug, Default)]
struct Captured {
    calls: Vec<CallRecord>,
    bytes: usize,
}

impl CallLedger {
    /// Counts a call; keeps it while capturing. `call` builds the record
    /// only then, so the active path pays one atomic add and one load.
    pub(crate) fn record(
        &self,
        capability: Capability,
        outcome: Outcome,
        call: impl FnOnce() -> Call,
    ) {
        self.counts[capability as usize][outcome.index()].fetch_add(1, Ordering::Relaxed);
        if !self.capture.load(Ordering::Relaxed) {
            return;
        }
        let call = call();
        let mut captured = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = call.bytes();
        if captured.calls.len() >= MAX_CAPTURED_CALLS || captured.bytes + bytes > MAX_CAPTURED_BYTES
        {
            self.capture_overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        captured.bytes += bytes;
        captured.calls.push(CallRecord { call, outcome });
    }

    /// Records a `set-leader` call's answer.
    pub(crate) fn set_leader(
        &self,
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
        result: &Result<WriteOutcome, CapError>,
    ) {
        let outcome = match result {
            Ok(WriteOutcome::Queued) => Outcome::Ok,
            Ok(WriteOutcome::Unchanged) => Outcome::Unchanged,
            Err(e) => Outcome::of_error(e),
        };
        self.record(Capability::SetLeader, outcome, || Call::SetLeader {
            partition: partition.to_string(),
            leader,
            epoch,
        });
    }

    /// Records a `transfer` call's answer.
    pub(crate) fn transfer(
        &self,
        partition: &PartitionId,
        to: NodeId,
        result: &Result<(), CapError>,
    ) {
        let outcome = result
            .as_ref()
            .map_or_else(Outcome::of_error, |()| Outcome::Ok);
        self.record(Capability::Transfer, outcome, || Call::Transfer {
            partition: partition.to_string(),
            to,
        });
    }

    /// Records an `emit` call's answer.
    pub(crate) fn emit(&self, sink: &str, payload: &str, result: &Result<(), CapError>) {
        let outcome = result
            .as_ref()
            .map_or_else(Outcome::of_error, |()| Outcome::Ok);
        self.record(Capability::Emit, outcome, || Call::emit(sink, payload));
    }

    /// Starts or stops keeping calls.
    pub(crate) fn set_capture(&self, on: bool) {
        self.capture.store(on, Ordering::Relaxed);
    }

    pub(crate) fn capturing(&self) -> bool {
        self.capture.load(Ordering::Relaxed)
    }

    /// The calls kept since the last take.
    pub(crate) fn take(&self) -> Vec<CallRecord> {
        let mut captured = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        captured.bytes = 0;
        std::mem::take(&mut captured.calls)
    }

    /// Every (capability, outcome) counted at least once.
    pub fn counts(&self) -> Vec<CallCount> {
        let mut out = Vec::new();
        for capability in Capability::ALL {
            for outcome in Outcome::ALL {
                let count =
                    self.counts[capability as usize][outcome.index()].load(Ordering::Relaxed);
                if count > 0 {
                    out.push(CallCount {
                        capability,
                        outcome,
                        count,
                    });
                }
            }
        }
        out
    }
}

/// Calls of one capability answered one way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    pub capability: Capability,
    pub outcome: Outcome,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_always_and_keeps_only_while_capturing() {
        let ledger = CallLedger::default();
        let p = PartitionId {
            topic: "t".into(),
            partition: 0,
        };
        ledger.set_leader(&p, 1, 2, &Ok(WriteOutcome::Queued));
        assert!(ledger.take().is_empty());
        ledger.set_capture(true);
        ledger.transfer(&p, 3, &Err(CapError::NotAReplica(3)));
        let kept = ledger.take();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].outcome, Outcome::NotAReplica);
        assert_eq!(kept[0].call.to_string(), "transfer(t-0 -> node 3)");
        let counts = ledger.counts();
        assert_eq!(counts.len(), 2);
        assert!(counts.iter().any(|c| c.capability == Capability::SetLeader
            && c.outcome == Outcome::Ok
            && c.count == 1));
    }

    #[test]
    fn a_batch_capture_is_bounded_in_calls_and_bytes() {
        let ledger = CallLedger::default();
        ledger.set_capture(true);
        // Longer than the preview: what is kept is bounded whatever was sent.
        let big = "x".repeat(1_000);
        for _ in 0..(MAX_CAPTURED_CALLS + 50) {
            ledger.emit("s", &big, &Ok(()));
        }
        let kept = ledger.take();
        let bytes: usize = kept.iter().map(|r| r.call.bytes()).sum();
        assert!(bytes <= MAX_CAPTURED_BYTES, "{bytes}");
        assert!(kept.len() < MAX_CAPTURED_CALLS);
        assert_eq!(
            kept.len() as u64 + ledger.capture_overflow.load(Ordering::Relaxed),
            (MAX_CAPTURED_CALLS + 50) as u64
        );
        // Payloads are kept as a preview and a digest, never whole.
        let Call::Emit { payload, .. } = &kept[0].call else {
            panic!()
        };
        assert!(payload.len() < PAYLOAD_PREVIEW + 100);
    }
}
