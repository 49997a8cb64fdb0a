//! Idempotent producers' state in one partition: per producer id, its
//! epoch and the sequence ranges (with their base offsets) of its last
//! [`DEDUP_WINDOW`] batches.
//!
//! The partition's leader decides with it before proposing a batch
//! ([`Producers::check`]: a retry answers its original offset, a gap or an
//! old epoch is refused); every replica records what it applies
//! ([`Producers::record`]). Recording is monotonic — an older batch than
//! one already known changes nothing — so a replica restored from a
//! snapshot taken later than its log position can replay the entries after
//! it safely. Producers silent for longer than the configured expiry
//! (Kafka's `transactional.id.expiration.ms`/`producer.id.expiration.ms`,
//! 7 days by default) are forgotten, locally on each replica.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Batches remembered per producer: clients keep at most 5 requests in
/// flight per partition when idempotent, so a retry is one of the last 5.
pub const DEDUP_WINDOW: usize = 5;

/// Why a producer's batch is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceError {
    /// The batch does not continue its producer's sequence (a gap, or a
    /// retry older than the dedup window).
    OutOfOrder(String),
    /// The producer epoch is older than one already appended.
    OldEpoch(String),
}

/// One batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Producer {
    epoch: i16,
    /// (first sequence, last sequence, base offset) of its last batches,
    /// oldest first, at most [`DEDUP_WINDOW`].
    recent: VecDeque<(i32, i32, i64)>,
    /// When a batch of it was last applied here (ms since the Unix epoch).
    last_seen_ms: u64,
}

/// The state of every idempotent producer of a partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producers {
    by_id: BTreeMap<i64, Producer>,
}

/// The sequence `delta` after `seq`: sequences wrap from i32::MAX to 0.
pub fn seq_add(seq: i32, delta: i32) -> i32 {
    ((i64::from(seq) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

impl Producers {
    /// Judges a batch: `Ok(Some(base))` for a retry of a batch already
    /// appended at `base`, `Ok(None)` to append it.
    pub fn check(&self, b: &ProducerBatch) -> Result<Option<i64>, SequenceError> {
        let (pid, epoch, first, last) = (b.producer_id, b.epoch, b.first_sequence, b.last_sequence);
        match self.by_id.get(&pid) {
            Some(p) if epoch < p.epoch => Err(SequenceError::OldEpoch(format!(
                "producer {pid}: epoch {epoch} is older than {}",
                p.epoch
            ))),
            Some(p) if epoch == p.epoch => {
                if let Some(&(_, _, base)) =
                    p.recent.iter().find(|(f, l, _)| (*f, *l) == (first, last))
                {
                    return Ok(Some(base));
                }
                let expected = p.recent.back().map_or(0, |(_, l, _)| seq_add(*l, 1));
                if first != expected {
                    return Err(SequenceError::OutOfOrder(format!(
                        "producer {pid} epoch {epoch}: sequence {first} where {expected} was \
                         expected"
                    )));
                }
                Ok(None)
            }
            // An unknown producer, or a new epoch, starts at sequence 0 (an
            // expired producer too: librdkafka retries a refused batch that
            // follows a failed one with its epoch bumped; UNKNOWN_PRODUCER_ID
            // would be fatal there).
            _ if first != 0 => Err(SequenceError::OutOfOrder(format!(
                "producer {pid} epoch {epoch}: first batch starts at sequence {first}, not 0"
            ))),
            _ => Ok(None),
        }
    }

    /// Records an applied batch at `base`. Monotonic: a batch older than
    /// the producer's newest known one (a replay after a later snapshot)
    /// changes nothing.
    pub fn record(&mut self, b: &ProducerBatch, base: i64, now_ms: u64) {
        let producer = self.by_id.entry(b.producer_id).or_insert(Producer {
            epoch: b.epoch,
            recent: VecDeque::new(),
            last_seen_ms: now_ms,
        });
        if b.epoch < producer.epoch {
            return;
        }
        if b.epoch > producer.epoch {
            // A newer epoch starts its sequences over.
            producer.epoch = b.epoch;
            producer.recent.clear();
        }
        if producer.recent.iter().any(|&(_, _, known)| known >= base) {
            return;
        }
        if producer.recent.len() == DEDUP_WINDOW {
            producer.recent.pop_front();
        }
        producer
            .recent
            .push_back((b.first_sequence, b.last_sequence, base));
        producer.last_seen_ms = producer.last_seen_ms.max(now_ms);
    }

    /// Forgets producers not seen for `max_age_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64, max_age_ms: u64) -> usize {
        let before = self.by_id.len();
        self.by_id
            .retain(|_, p| now_ms.saturating_sub(p.last_seen_ms) < max_age_ms);
        before - self.by_id.len()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, first: i32, records: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            epoch,
            first_sequence: first,
            last_sequence: seq_add(first, records - 1),
        }
    }

    /// Checks and records like a leader: the base offset assigned or the
    /// original one for a retry.
    fn append(
        p: &mut Producers,
        next: &mut i64,
        b: ProducerBatch,
        records: i64,
    ) -> Result<i64, SequenceError> {
        match p.check(&b)? {
            Some(base) => Ok(base),
            None => {
                let base = *next;
                p.record(&b, base, 0);
                *next += records;
                Ok(base)
            }
        }
    }

    #[test]
    fn retries_answer_their_original_offset_within_the_window() {
        let (mut p, mut next) = (Producers::default(), 0);
        assert_eq!(append(&mut p, &mut next, batch(7, 0, 0, 3), 3), Ok(0));
        assert_eq!(append(&mut p, &mut next, batch(7, 0, 3, 2), 2), Ok(3));
        assert_eq!(append(&mut p, &mut next, batch(7, 0, 0, 3), 3), Ok(0));
        assert_eq!(next, 5);
        for i in 5..5 + DEDUP_WINDOW as i32 {
            append(&mut p, &mut next, batch(7, 0, i, 1), 1).unwrap();
        }
        assert!(
            matches!(
                append(&mut p, &mut next, batch(7, 0, 3, 2), 2),
                Err(SequenceError::OutOfOrder(_))
            ),
            "out of the window now"
        );
    }

    #[test]
    fn gaps_old_epochs_and_strangers_are_refused() {
        let (mut p, mut next) = (Producers::default(), 0);
        append(&mut p, &mut next, batch(7, 1, 0, 2), 2).unwrap();
        assert!(matches!(
            p.check(&batch(7, 1, 5, 1)),
            Err(SequenceError::OutOfOrder(_))
        ));
        assert!(matches!(
            p.check(&batch(7, 0, 2, 1)),
            Err(SequenceError::OldEpoch(_))
        ));
        assert!(matches!(
            p.check(&batch(8, 0, 4, 1)),
            Err(SequenceError::OutOfOrder(_))
        ));
        assert!(matches!(
            p.check(&batch(7, 2, 3, 1)),
            Err(SequenceError::OutOfOrder(_))
        ));
        assert_eq!(
            p.check(&batch(7, 2, 0, 1)),
            Ok(None),
            "a new epoch starts over"
        );
    }

    #[test]
    fn recording_is_monotonic_so_replays_after_a_later_snapshot_change_nothing() {
        let (mut p, mut next) = (Producers::default(), 0);
        let batches = [batch(7, 0, 0, 2), batch(7, 0, 2, 2), batch(7, 0, 4, 1)];
        for b in batches {
            append(
                &mut p,
                &mut next,
                b,
                i64::from(b.last_sequence - b.first_sequence + 1),
            )
            .unwrap();
        }
        let snapshot = p.clone();
        // Replaying the batches (entries after an older log position).
        let mut replayed = snapshot.clone();
        replayed.record(&batches[0], 0, 0);
        replayed.record(&batches[1], 2, 0);
        assert_eq!(replayed, snapshot);
        assert_eq!(replayed.check(&batch(7, 0, 5, 1)), Ok(None));
    }

    #[test]
    fn silent_producers_expire() {
        let mut p = Producers::default();
        p.record(&batch(1, 0, 0, 1), 0, 1_000);
        p.record(&batch(2, 0, 0, 1), 1, 5_000);
        assert_eq!(p.expire(7_000, 3_000), 1);
        assert_eq!(p.len(), 1);
        assert_eq!(p.check(&batch(2, 0, 0, 1)), Ok(Some(1)));
        // Forgotten: its next batch must start over at 0.
        assert!(p.check(&batch(1, 0, 1, 1)).is_err());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Producers>(&json).unwrap(), p);
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(seq_add(i32::MAX, 1), 0);
        assert_eq!(seq_add(i32::MAX - 1, 3), 1);
        assert_eq!(seq_add(5, 2), 7);
    }
}
