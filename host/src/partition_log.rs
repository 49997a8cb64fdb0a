//! A partition's records as applied from its Raft group: Kafka record
//! batches kept as sent, with their base offset rewritten at apply time.
//! Every replica applies the same entries in the same order, so offsets
//! agree everywhere. In memory; rebuilt by replaying the group's Raft log
//! when a node starts (the log itself is the durable copy).
//!
//! Every batch is checked before it is appended ([`record_batch::check`],
//! the same checks the produce handler made before proposing it): an entry
//! that lies about its record count, whatever way it reached the Raft log,
//! is refused and moves no offset.
//!
//! Idempotent producers (batches with a producer id) are checked here, at
//! apply time, so every replica — and every replay — takes the same
//! decision: per producer id the epoch and the last [`DEDUP_WINDOW`]
//! batches' sequence ranges are kept. A retried batch matching one of them
//! is not appended again and answers its original base offset; a sequence
//! gap or an old epoch is refused. The state is never trimmed (there is no
//! retention yet), so a producer unknown here has really appended nothing.

pub mod record_batch;

use bytes::Bytes;
use record_batch::{BASE_OFFSET, BatchError, LAST_OFFSET_DELTA, i32_at};

/// Where a v2 record batch carries its partition leader epoch (i32).
const PARTITION_LEADER_EPOCH: usize = 12;
use std::collections::{HashMap, VecDeque};
use tokio::sync::watch;

/// Batches remembered per producer: clients keep at most 5 requests in
/// flight per partition when idempotent, so a retry is one of the last 5.
pub const DEDUP_WINDOW: usize = 5;

/// Why an applied batch was not appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not an acceptable record batch ([`record_batch::check`]).
    Batch(BatchError),
    /// The batch does not continue its producer's sequence (a gap, or a
    /// retry older than the dedup window).
    OutOfOrderSequence(String),
    /// The producer epoch is older than one already appended.
    InvalidProducerEpoch(String),
}

/// What a partition remembers of one idempotent producer.
#[derive(Debug, Clone)]
struct Producer {
    epoch: i16,
    /// (first sequence, last sequence, base offset) of its last batches,
    /// oldest first, at most [`DEDUP_WINDOW`].
    recent: VecDeque<(i32, i32, i64)>,
}

#[derive(Debug)]
pub struct PartitionLog {
    /// (base offset, batch bytes with that base offset written in).
    batches: Vec<(i64, Bytes)>,
    /// Per batch, the largest `maxTimestamp` up to it (Kafka's time index):
    /// sorted, so a lookup by timestamp is a binary search.
    time_index: Vec<i64>,
    next_offset: i64,
    producers: HashMap<i64, Producer>,
    /// The high watermark, for long-polling fetches to wait on.
    appended: watch::Sender<i64>,
    /// (leader epoch = Raft term, first offset of that epoch), ascending:
    /// Kafka's leader epoch cache, for OffsetForLeaderEpoch.
    epochs: Vec<(u64, i64)>,
}

impl Default for PartitionLog {
    fn default() -> Self {
        Self {
            batches: Vec::new(),
            time_index: Vec::new(),
            next_offset: 0,
            producers: HashMap::new(),
            appended: watch::Sender::new(0),
            epochs: Vec::new(),
        }
    }
}

/// The sequence `delta` after `seq`: sequences wrap from i32::MAX to 0.
fn seq_add(seq: i32, delta: i32) -> i32 {
    ((i64::from(seq) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

impl PartitionLog {
    /// Appends one record batch and returns its base offset — or, for a
    /// retry of an idempotent batch already appended, the base offset it
    /// got then (nothing is appended). The batch is checked first
    /// ([`record_batch::check`]): the offsets it takes are its checked
    /// record count, whatever its header claims.
    pub fn append(&mut self, batch: &[u8]) -> Result<i64, Refused> {
        let header = record_batch::check(batch).map_err(Refused::Batch)?;
        let delta = header.records - 1;
        let producer_id = header.producer_id;
        let idempotent = producer_id >= 0;
        let epoch = header.producer_epoch;
        let first = header.base_sequence;
        let last = seq_add(first, delta);
        if idempotent && let Some(base) = self.check_sequence(producer_id, epoch, first, last)? {
            return Ok(base);
        }
        let base = self.next_offset;
        let mut stored = batch.to_vec();
        stored[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base.to_be_bytes());
        // As Kafka does: the batch carries the leader epoch it was appended
        // in (outside the CRC), so consumers can validate positions later.
        if let Some((epoch, _)) = self.epochs.last() {
            let epoch = i32::try_from(*epoch).unwrap_or(i32::MAX);
            stored[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
                .copy_from_slice(&epoch.to_be_bytes());
        }
        self.batches.push((base, Bytes::from(stored)));
        let max_timestamp = record_batch::max_timestamp(batch);
        let so_far = self
            .time_index
            .last()
            .map_or(max_timestamp, |m| max_timestamp.max(*m));
        self.time_index.push(so_far);
        self.next_offset = base + i64::from(header.records);
        self.appended.send_replace(self.next_offset);
        if idempotent {
            let producer = self.producers.entry(producer_id).or_insert(Producer {
                epoch,
                recent: VecDeque::new(),
            });
            if producer.epoch != epoch {
                // A newer epoch starts its sequences over.
                producer.epoch = epoch;
                producer.recent.clear();
            }
            if producer.recent.len() == DEDUP_WINDOW {
                producer.recent.pop_front();
            }
            producer.recent.push_back((first, last, base));
        }
        Ok(base)
    }

    /// Changes whenever records are appended (its value: the high
    /// watermark); the sender goes away with the log.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.appended.subscribe()
    }

    /// Checks an idempotent batch against its producer's state: `Some`
    /// (the original base offset) for a duplicate, `None` to append it.
    fn check_sequence(
        &self,
        producer_id: i64,
        epoch: i16,
        first: i32,
        last: i32,
    ) -> Result<Option<i64>, Refused> {
        let known = self.producers.get(&producer_id);
        match known {
            Some(p) if epoch < p.epoch => Err(Refused::InvalidProducerEpoch(format!(
                "producer {producer_id}: epoch {epoch} is older than {}",
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
                    return Err(Refused::OutOfOrderSequence(format!(
                        "producer {producer_id} epoch {epoch}: sequence {first} where {expected} \
                         was expected"
                    )));
                }
                Ok(None)
            }
            // An unknown producer, or a new epoch, starts at sequence 0.
            // Nothing is ever trimmed here, so anything else is a real gap:
            // refused like any gap (librdkafka retries a refused batch that
            // follows a failed one, with its epoch bumped; UNKNOWN_PRODUCER_ID
            // would be fatal there, and kafka-python would take it for
            // retention and restart the sequence at 0).
            _ if first != 0 => Err(Refused::OutOfOrderSequence(format!(
                "producer {producer_id} epoch {epoch}: first batch starts at sequence {first}, \
                 not 0"
            ))),
            _ => Ok(None),
        }
    }

    /// Entries of Raft term `term` are applied from here on. The first
    /// entry of a term (a new leader's empty entry, or its first batch)
    /// starts that leader epoch at the current end of the log; an epoch
    /// that appended nothing is replaced by the next, as Kafka's leader
    /// epoch cache does.
    pub fn begin_epoch(&mut self, term: u64) {
        match self.epochs.last() {
            Some((last, _)) if *last >= term => {}
            Some((_, start)) if *start == self.next_offset => {
                *self.epochs.last_mut().expect("checked") = (term, self.next_offset);
            }
            _ => self.epochs.push((term, self.next_offset)),
        }
    }

    /// OffsetForLeaderEpoch, as Kafka answers it: the largest epoch at or
    /// below `epoch` and the offset where the epoch after it begins (the
    /// log end for the latest epoch); `None` for an epoch above any known.
    /// An epoch below every known one answers itself and the first
    /// epoch's start.
    pub fn end_offset_for_epoch(&self, epoch: u64) -> Option<(u64, i64)> {
        let (latest, _) = self.epochs.last()?;
        if epoch == *latest {
            return Some((epoch, self.next_offset));
        }
        let higher = self.epochs.iter().find(|(e, _)| *e > epoch)?;
        let floor = self.epochs.iter().rev().find(|(e, _)| *e <= epoch);
        Some((floor.map_or(epoch, |(e, _)| *e), higher.1))
    }

    /// The offset the next record gets: the high watermark, since only
    /// committed entries are applied.
    pub fn high_watermark(&self) -> i64 {
        self.next_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.batches.first().map_or(0, |(base, _)| *base)
    }

    /// The first offset whose record's timestamp is at least `target`,
    /// with that timestamp (Kafka's ListOffsets by timestamp); `None` if
    /// every record is older. Within a compressed batch, its first offset.
    pub fn offset_for_timestamp(&self, target: i64) -> Option<(i64, i64)> {
        let i = self.time_index.partition_point(|max| *max < target);
        let (base, batch) = self.batches.get(i)?;
        Some(match record_batch::first_at_or_after(batch, target) {
            Some((delta, timestamp)) => (base + i64::from(delta), timestamp),
            // Its maxTimestamp claimed more than its records hold.
            None => (*base, record_batch::max_timestamp(batch)),
        })
    }

    /// The offset of the record with the largest timestamp (the first
    /// one, if several), and that timestamp; `None` while empty.
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        self.offset_for_timestamp(*self.time_index.last()?)
    }

    /// Whole batches holding offsets from `offset` on, up to about
    /// `max_bytes` (at least one batch, as Kafka does).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Vec<Bytes> {
        // The first batch whose last offset is at or after `offset`.
        let start = self.batches.partition_point(|(base, bytes)| {
            base + i64::from(i32_at(bytes, LAST_OFFSET_DELTA)) < offset
        });
        let mut out = Vec::new();
        let mut size = 0;
        for (_, bytes) in &self.batches[start..] {
            if !out.is_empty() && size + bytes.len() > max_bytes {
                break;
            }
            size += bytes.len();
            out.push(bytes.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_from(producer: i64, epoch: i16, seq: i32, records: i32) -> Vec<u8> {
        let batch = record_batch::tests::batch_from(producer, epoch, seq, records);
        // What the produce handler checks before replicating it.
        crate::kafka::batch::check_produced(&batch, usize::MAX).unwrap();
        batch
    }

    fn batch(records: i32) -> Vec<u8> {
        batch_from(-1, -1, -1, records)
    }

    #[test]
    fn offsets_are_assigned_at_apply_and_written_into_the_batch() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(&batch(3)).unwrap(), 0);
        assert_eq!(log.append(&batch(2)).unwrap(), 3);
        assert_eq!(log.high_watermark(), 5);
        let read = log.read(4, 1 << 20);
        assert_eq!(read.len(), 1, "offset 4 is in the second batch");
        assert_eq!(i64::from_be_bytes(read[0][..8].try_into().unwrap()), 3);
        assert_eq!(log.read(0, 1).len(), 1, "at least one batch");
        assert!(log.read(5, 1 << 20).is_empty());
        assert!(matches!(
            log.append(&[0; 10]),
            Err(Refused::Batch(BatchError::Corrupt(_)))
        ));
    }

    #[test]
    fn a_lying_batch_is_refused_and_moves_no_offset() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(&batch(2)).unwrap(), 0);
        // One record claiming lastOffsetDelta 2^31 - 1, CRC resealed.
        let mut lie = batch(1);
        lie[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        let lie = record_batch::tests::resealed(lie);
        assert!(matches!(
            log.append(&lie),
            Err(Refused::Batch(BatchError::Invalid(_)))
        ));
        assert_eq!(log.high_watermark(), 2);
        assert_eq!(log.read(0, 1 << 20).len(), 1);
        assert_eq!(log.append(&batch(1)).unwrap(), 2);
    }

    #[test]
    fn offsets_are_found_by_timestamp() {
        let mut log = PartitionLog::default();
        assert_eq!(log.offset_for_timestamp(0), None);
        assert_eq!(log.max_timestamp_offset(), None);
        // Records at t0 + i within each batch (see batch_from): offsets
        // 0..3 at t0..t0+2, offsets 3..5 at t0..t0+1.
        let t0 = 1_700_000_000_000;
        log.append(&batch(3)).unwrap();
        log.append(&batch(2)).unwrap();
        assert_eq!(log.offset_for_timestamp(i64::MIN), Some((0, t0)));
        assert_eq!(log.offset_for_timestamp(t0 + 1), Some((1, t0 + 1)));
        assert_eq!(log.offset_for_timestamp(t0 + 2), Some((2, t0 + 2)));
        assert_eq!(log.offset_for_timestamp(t0 + 3), None);
        assert_eq!(log.max_timestamp_offset(), Some((2, t0 + 2)));
    }

    #[test]
    fn leader_epochs_answer_where_the_next_epoch_begins() {
        let mut log = PartitionLog::default();
        assert_eq!(log.end_offset_for_epoch(1), None);
        log.begin_epoch(2);
        log.append(&batch(3)).unwrap(); // epoch 2: 0..3
        log.begin_epoch(3); // a leader that appended nothing...
        log.begin_epoch(5); // ...is replaced by the next at the same offset
        log.begin_epoch(5);
        log.append(&batch(2)).unwrap(); // epoch 5: 3..5
        let stored = log.read(3, 1 << 20);
        assert_eq!(i32_at(&stored[0], PARTITION_LEADER_EPOCH), 5, "stamped");
        assert_eq!(i32_at(&log.read(0, 1)[0], PARTITION_LEADER_EPOCH), 2);
        assert_eq!(log.end_offset_for_epoch(5), Some((5, 5)), "latest: log end");
        assert_eq!(log.end_offset_for_epoch(2), Some((2, 3)));
        assert_eq!(log.end_offset_for_epoch(3), Some((2, 3)), "no entries of 3");
        assert_eq!(log.end_offset_for_epoch(4), Some((2, 3)));
        assert_eq!(
            log.end_offset_for_epoch(1),
            Some((1, 0)),
            "before the first"
        );
        assert_eq!(log.end_offset_for_epoch(6), None, "from the future");
        // An older term never moves the cache back.
        log.begin_epoch(4);
        assert_eq!(log.end_offset_for_epoch(5), Some((5, 5)));
    }

    #[tokio::test]
    async fn appends_wake_subscribers_with_the_high_watermark() {
        let mut log = PartitionLog::default();
        let mut appended = log.subscribe();
        assert!(!appended.has_changed().unwrap());
        log.append(&batch(3)).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), appended.changed())
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(*appended.borrow_and_update(), 3);
        // A refused batch or a retried duplicate wakes nobody.
        let _ = log.append(&[0; 10]);
        assert!(!appended.has_changed().unwrap());
        drop(log);
        assert!(appended.changed().await.is_err(), "the log is gone");
    }

    #[test]
    fn non_idempotent_batches_are_appended_every_time() {
        let mut log = PartitionLog::default();
        let b = batch(2);
        assert_eq!(log.append(&b).unwrap(), 0);
        assert_eq!(log.append(&b).unwrap(), 2, "no producer id: no dedup");
        assert_eq!(log.high_watermark(), 4);
        assert_eq!(log.read(0, 1 << 20).len(), 2);
    }

    #[test]
    fn a_retried_batch_answers_its_original_offset_and_appends_nothing() {
        let mut log = PartitionLog::default();
        let first = batch_from(7, 0, 0, 3);
        let second = batch_from(7, 0, 3, 2);
        assert_eq!(log.append(&first).unwrap(), 0);
        assert_eq!(log.append(&second).unwrap(), 3);
        assert_eq!(log.append(&first).unwrap(), 0, "retry of the first batch");
        assert_eq!(log.append(&second).unwrap(), 3, "retry of the second batch");
        assert_eq!(log.high_watermark(), 5);
        assert_eq!(log.read(0, 1 << 20).len(), 2);
        // The sequence carries on after the duplicates.
        assert_eq!(log.append(&batch_from(7, 0, 5, 1)).unwrap(), 5);
    }

    #[test]
    fn retries_are_recognised_within_the_window_only() {
        let mut log = PartitionLog::default();
        for i in 0..=DEDUP_WINDOW as i32 {
            assert_eq!(log.append(&batch_from(7, 0, i, 1)).unwrap(), i64::from(i));
        }
        // The last DEDUP_WINDOW batches are known; the one before is not.
        assert_eq!(log.append(&batch_from(7, 0, 1, 1)).unwrap(), 1);
        assert!(matches!(
            log.append(&batch_from(7, 0, 0, 1)),
            Err(Refused::OutOfOrderSequence(_))
        ));
        assert_eq!(log.high_watermark(), DEDUP_WINDOW as i64 + 1);
    }

    #[test]
    fn out_of_order_sequences_are_refused() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(&batch_from(7, 0, 0, 3)).unwrap(), 0);
        // A gap: sequence 3 is next.
        assert!(matches!(
            log.append(&batch_from(7, 0, 4, 1)),
            Err(Refused::OutOfOrderSequence(_))
        ));
        // Overlapping the last batch without matching it.
        assert!(matches!(
            log.append(&batch_from(7, 0, 1, 3)),
            Err(Refused::OutOfOrderSequence(_))
        ));
        // An unknown producer must start at 0.
        assert!(matches!(
            log.append(&batch_from(8, 0, 5, 1)),
            Err(Refused::OutOfOrderSequence(_))
        ));
        assert_eq!(log.high_watermark(), 3, "nothing refused was appended");
        assert_eq!(log.append(&batch_from(7, 0, 3, 1)).unwrap(), 3);
    }

    #[test]
    fn an_older_epoch_is_refused_and_a_newer_one_restarts_the_sequence() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(&batch_from(7, 1, 0, 2)).unwrap(), 0);
        assert!(matches!(
            log.append(&batch_from(7, 0, 2, 1)),
            Err(Refused::InvalidProducerEpoch(_))
        ));
        assert!(matches!(
            log.append(&batch_from(7, 2, 2, 1)),
            Err(Refused::OutOfOrderSequence(_))
        ));
        assert_eq!(log.append(&batch_from(7, 2, 0, 1)).unwrap(), 2);
        // Epoch 1 is fenced now, even for a retry of its own batch.
        assert!(matches!(
            log.append(&batch_from(7, 1, 0, 2)),
            Err(Refused::InvalidProducerEpoch(_))
        ));
        assert_eq!(log.high_watermark(), 3);
    }

    #[test]
    fn producers_are_independent() {
        let mut log = PartitionLog::default();
        assert_eq!(log.append(&batch_from(1, 0, 0, 2)).unwrap(), 0);
        assert_eq!(log.append(&batch_from(2, 0, 0, 2)).unwrap(), 2);
        assert_eq!(log.append(&batch_from(2, 0, 2, 1)).unwrap(), 4);
        assert_eq!(log.append(&batch_from(1, 0, 2, 1)).unwrap(), 5);
        // The same sequences from the other producer are not duplicates.
        assert_eq!(log.append(&batch_from(1, 0, 0, 2)).unwrap(), 0);
        assert_eq!(log.append(&batch_from(2, 0, 0, 2)).unwrap(), 2);
        assert_eq!(log.high_watermark(), 6);
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(seq_add(i32::MAX, 1), 0);
        assert_eq!(seq_add(i32::MAX - 1, 3), 1);
        assert_eq!(seq_add(5, 2), 7);
    }

    #[test]
    fn a_replay_takes_the_same_decisions() {
        let entries = [
            batch_from(7, 0, 0, 2),
            batch_from(7, 0, 0, 2),
            batch_from(7, 0, 4, 1),
            batch(1),
            batch_from(7, 0, 2, 1),
        ];
        let run = || {
            let mut log = PartitionLog::default();
            let answers: Vec<_> = entries.iter().map(|e| log.append(e)).collect();
            (answers, log.read(0, 1 << 20))
        };
        let (answers, read) = run();
        assert_eq!(answers[1], Ok(0));
        assert!(answers[2].is_err());
        assert_eq!(answers[4], Ok(3));
        assert_eq!(run(), (answers, read));
    }
}
