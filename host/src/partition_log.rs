//! A partition's records as applied from its Raft group: Kafka record
//! batches kept as sent, with their base offset rewritten at apply time.
//! Every replica applies the same entries in the same order, so offsets
//! agree everywhere. In memory; rebuilt by replaying the group's Raft log
//! when a node starts (the log itself is the durable copy).
//!
//! Idempotent producers (batches with a producer id) are checked here, at
//! apply time, so every replica — and every replay — takes the same
//! decision: per producer id the epoch and the last [`DEDUP_WINDOW`]
//! batches' sequence ranges are kept. A retried batch matching one of them
//! is not appended again and answers its original base offset; a sequence
//! gap or an old epoch is refused. The state is never trimmed (there is no
//! retention yet), so a producer unknown here has really appended nothing.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// Byte offset of `baseOffset` (i64) in a Kafka record batch (v2).
const BASE_OFFSET: usize = 0;
/// Byte offset of `lastOffsetDelta` (i32) in a record batch (v2).
const LAST_OFFSET_DELTA: usize = 23;
/// Byte offsets of `producerId` (i64), `producerEpoch` (i16) and
/// `baseSequence` (i32) in a record batch (v2).
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
/// Shortest valid record batch header (v2).
pub const BATCH_HEADER_LEN: usize = 61;
/// Batches remembered per producer: clients keep at most 5 requests in
/// flight per partition when idempotent, so a retry is one of the last 5.
pub const DEDUP_WINDOW: usize = 5;

/// Why an applied batch was not appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a usable record batch.
    Malformed(String),
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

#[derive(Debug, Clone, Default)]
pub struct PartitionLog {
    /// (base offset, batch bytes with that base offset written in).
    batches: Vec<(i64, Bytes)>,
    next_offset: i64,
    producers: HashMap<i64, Producer>,
}

fn i32_at(batch: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(batch[at..at + 4].try_into().expect("length checked"))
}

/// The sequence `delta` after `seq`: sequences wrap from i32::MAX to 0.
fn seq_add(seq: i32, delta: i32) -> i32 {
    ((i64::from(seq) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

impl PartitionLog {
    /// Appends one record batch and returns its base offset — or, for a
    /// retry of an idempotent batch already appended, the base offset it
    /// got then (nothing is appended). The batch's record count comes from
    /// its own `lastOffsetDelta`.
    pub fn append(&mut self, batch: &[u8]) -> Result<i64, Refused> {
        if batch.len() < BATCH_HEADER_LEN {
            return Err(Refused::Malformed(format!(
                "record batch of {} bytes is too short",
                batch.len()
            )));
        }
        let delta = i32_at(batch, LAST_OFFSET_DELTA);
        if delta < 0 {
            return Err(Refused::Malformed(format!(
                "negative lastOffsetDelta {delta}"
            )));
        }
        let producer_id = i64::from_be_bytes(
            batch[PRODUCER_ID..PRODUCER_ID + 8]
                .try_into()
                .expect("length checked"),
        );
        let idempotent = producer_id >= 0;
        let epoch = i16::from_be_bytes(
            batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2]
                .try_into()
                .expect("length checked"),
        );
        let first = i32_at(batch, BASE_SEQUENCE);
        let last = seq_add(first, delta);
        if idempotent && let Some(base) = self.check_sequence(producer_id, epoch, first, last)? {
            return Ok(base);
        }
        let base = self.next_offset;
        let mut stored = batch.to_vec();
        stored[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base.to_be_bytes());
        self.batches.push((base, Bytes::from(stored)));
        self.next_offset = base + i64::from(delta) + 1;
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

    /// Checks an idempotent batch against its producer's state: `Some`
    /// (the original base offset) for a duplicate, `None` to append it.
    fn check_sequence(
        &self,
        producer_id: i64,
        epoch: i16,
        first: i32,
        last: i32,
    ) -> Result<Option<i64>, Refused> {
        if first < 0 || epoch < 0 {
            return Err(Refused::Malformed(format!(
                "producer {producer_id}: a batch with a producer id needs an epoch and a \
                 sequence (got epoch {epoch}, sequence {first})"
            )));
        }
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

    /// The offset the next record gets: the high watermark, since only
    /// committed entries are applied.
    pub fn high_watermark(&self) -> i64 {
        self.next_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.batches.first().map_or(0, |(base, _)| *base)
    }

    /// Whole batches holding offsets from `offset` on, up to about
    /// `max_bytes` (at least one batch, as Kafka does).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Vec<Bytes> {
        // The first batch whose last offset is at or after `offset`.
        let start = self.batches.partition_point(|(base, bytes)| {
            let delta = i32::from_be_bytes(
                bytes[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4]
                    .try_into()
                    .expect("stored batches are valid"),
            );
            base + i64::from(delta) < offset
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
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// A real v2 batch of `records` records from `producer` (-1: not
    /// idempotent) at `epoch`, sequences from `seq`, as a client sends it.
    fn batch_from(producer: i64, epoch: i16, seq: i32, records: i32) -> Vec<u8> {
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: producer,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                // The encoder takes baseSequence from the first record and
                // keeps one batch while offset - sequence is constant.
                sequence: if producer < 0 { i - 1 } else { seq + i },
                timestamp: 1_700_000_000_000,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{seq}-{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        // What the produce handler checks before replicating it.
        crate::kafka::batch::check_single_batch(&buf).unwrap();
        buf.to_vec()
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
        assert!(matches!(log.append(&[0; 10]), Err(Refused::Malformed(_))));
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
