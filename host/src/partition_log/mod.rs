//! A partition's log: its Raft group's log *is* the partition log (as in
//! Redpanda). Each entry holds one record batch whose offsets the leader
//! assigned before proposing it ([`entry`]); records are stored once, in
//! the Raft log on disk, and read from there when fetched ([`reader`]).
//! What lives in memory per partition is small and bounded by the data
//! only through a sparse index (one point per [`INDEX_INTERVAL`] bytes):
//! [`PartitionLog`] — offsets, the sparse index, the idempotent producers
//! ([`producers`]).
//!
//! Every replica applies the same entries in the same order, so offsets
//! agree everywhere; a replica checks each batch again when it applies it
//! (`record_batch::check_stored`) and that its base offset continues the
//! log. The leader decides (dedup of retried idempotent batches, offsets)
//! before proposing; replicas only record.
//!
//! A replica saves a [`Checkpoint`] of this state now and then and restarts
//! from it plus the entries after it; retention moves the log start and
//! compacts the Raft log behind it (a follower further behind gets a Raft
//! snapshot: the checkpoint at the compaction point, no records, since
//! every record it lacks was deleted).

pub mod entry;
pub mod producers;
pub mod reader;
pub mod record_batch;

use producers::{ProducerBatch, Producers, SequenceError, seq_add};
use record_batch::BatchError;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tokio::sync::watch;

pub use producers::DEDUP_WINDOW;

/// Bytes of records between two points of the sparse index: a lookup reads
/// at most about this much before the batch it wants.
pub const INDEX_INTERVAL: u64 = 64 << 10;

/// Why a produced batch is not appended (the leader's decision).
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

impl From<SequenceError> for Refused {
    fn from(e: SequenceError) -> Self {
        match e {
            SequenceError::OutOfOrder(m) => Refused::OutOfOrderSequence(m),
            SequenceError::OldEpoch(m) => Refused::InvalidProducerEpoch(m),
        }
    }
}

/// An entry that cannot be applied: the log is not what its leader wrote
/// (a bug or a damaged disk). The replica must stop, never guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("entry {index}: {source}")]
    Entry {
        index: u64,
        source: entry::EntryError,
    },
    #[error("entry {index}: invalid record batch: {source}")]
    Batch { index: u64, source: BatchError },
    #[error("entry {index}: batch at offset {found} where the log continues at {expected}")]
    Discontinuous {
        index: u64,
        expected: i64,
        found: i64,
    },
}

/// What applying an entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A record batch at this base offset.
    Batch(i64),
    /// A partition command.
    Control(entry::Control),
}

/// One point of the sparse index: where a batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPoint {
    /// Raft index of the entry holding the batch.
    pub index: u64,
    /// The batch's base offset.
    pub offset: i64,
    /// The largest record timestamp of every batch before this one.
    pub max_timestamp_before: i64,
    /// Record bytes applied before this batch since the partition began.
    pub bytes_before: u64,
}

/// The idempotent producer fields of a batch, if it has a producer id.
pub fn producer_batch(header: &record_batch::BatchHeader) -> Option<ProducerBatch> {
    (header.producer_id >= 0).then(|| ProducerBatch {
        producer_id: header.producer_id,
        epoch: header.producer_epoch,
        first_sequence: header.base_sequence,
        last_sequence: seq_add(header.base_sequence, header.records - 1),
    })
}

/// The applied state of a partition (see the module documentation).
#[derive(Debug)]
pub struct PartitionLog {
    state: Checkpoint,
    /// The high watermark, for long-polling fetches to wait on.
    appended: watch::Sender<i64>,
}

/// What a partition's applied state is made of; saved as a checkpoint
/// (the format byte [`entry::FORMAT_V1`], then JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Raft index of the last entry applied.
    pub applied: u64,
    /// The first offset still stored (retention moves it).
    pub log_start_offset: i64,
    /// The offset the next batch takes: the high watermark.
    pub next_offset: i64,
    /// The sparse index of the stored batches, oldest first.
    pub points: VecDeque<IndexPoint>,
    /// Record bytes applied since the partition began.
    pub bytes_applied: u64,
    /// Record bytes since the last point.
    pub bytes_since_point: u64,
    /// The largest record timestamp applied, and the Raft index of the
    /// batch holding it (ListOffsets max-timestamp).
    pub max_timestamp: Option<(i64, u64)>,
    pub producers: Producers,
}

impl Default for PartitionLog {
    fn default() -> Self {
        Self::from_checkpoint(Checkpoint::default())
    }
}

impl PartitionLog {
    pub fn from_checkpoint(state: Checkpoint) -> Self {
        let appended = watch::Sender::new(state.next_offset);
        Self { state, appended }
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.state
    }

    /// Applies one committed, non-empty entry at Raft `index`.
    pub fn apply(&mut self, index: u64, data: &[u8], now_ms: u64) -> Result<Applied, ApplyError> {
        let decoded = entry::decode(data).map_err(|source| ApplyError::Entry { index, source })?;
        let result = match decoded {
            entry::Entry::Records(batch) => {
                self.apply_batch(index, batch, now_ms).map(Applied::Batch)
            }
            entry::Entry::Control(control) => {
                self.apply_control(&control);
                Ok(Applied::Control(control))
            }
        };
        self.state.applied = index;
        result
    }

    /// Marks an entry without records (a new leader's empty entry) applied.
    pub fn skip(&mut self, index: u64) {
        self.state.applied = index;
    }

    /// The state a follower starts from when it receives a Raft snapshot at
    /// `index`, the point retention compacted to: no records (every one it
    /// lacks was deleted), the log starting at `log_start_offset`, and the
    /// producers as known now (recording is monotonic, so replaying the
    /// entries after `index` over them is safe).
    pub fn snapshot_at(&self, index: u64, log_start_offset: i64) -> Checkpoint {
        let bytes_applied = self
            .state
            .points
            .front()
            .map_or(self.state.bytes_applied, |p| p.bytes_before);
        Checkpoint {
            applied: index,
            log_start_offset,
            next_offset: log_start_offset,
            points: VecDeque::new(),
            bytes_applied,
            bytes_since_point: INDEX_INTERVAL,
            max_timestamp: None,
            producers: self.state.producers.clone(),
        }
    }

    fn apply_batch(&mut self, index: u64, batch: &[u8], now_ms: u64) -> Result<i64, ApplyError> {
        let header = record_batch::check_stored(batch)
            .map_err(|source| ApplyError::Batch { index, source })?;
        let base = record_batch::base_offset(batch);
        let s = &mut self.state;
        if base != s.next_offset {
            return Err(ApplyError::Discontinuous {
                index,
                expected: s.next_offset,
                found: base,
            });
        }
        if s.points.is_empty() || s.bytes_since_point >= INDEX_INTERVAL {
            s.points.push_back(IndexPoint {
                index,
                offset: base,
                max_timestamp_before: s.max_timestamp.map_or(i64::MIN, |(t, _)| t),
                bytes_before: s.bytes_applied,
            });
            s.bytes_since_point = 0;
        }
        let len = batch.len() as u64;
        s.bytes_applied += len;
        s.bytes_since_point += len;
        let max = record_batch::max_timestamp(batch);
        if s.max_timestamp.is_none_or(|(t, _)| max > t) {
            s.max_timestamp = Some((max, index));
        }
        if let Some(p) = producer_batch(&header) {
            s.producers.record(&p, base, now_ms);
        }
        s.next_offset = base + i64::from(header.records);
        self.appended.send_replace(s.next_offset);
        Ok(base)
    }

    fn apply_control(&mut self, control: &entry::Control) {
        match *control {
            entry::Control::DeletePrefix {
                index,
                log_start_offset,
            } => {
                let s = &mut self.state;
                if log_start_offset <= s.log_start_offset {
                    return; // an older decision, superseded
                }
                s.log_start_offset = log_start_offset.min(s.next_offset);
                while s
                    .points
                    .front()
                    .is_some_and(|p| p.index <= index || p.offset < s.log_start_offset)
                {
                    s.points.pop_front();
                }
            }
        }
    }

    /// Changes whenever records are appended (its value: the high
    /// watermark); the sender goes away with the log.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.appended.subscribe()
    }

    /// The offset the next record gets: the high watermark, since only
    /// committed entries are applied.
    pub fn high_watermark(&self) -> i64 {
        self.state.next_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.log_start_offset
    }

    pub fn applied(&self) -> u64 {
        self.state.applied
    }

    pub fn producers(&self) -> &Producers {
        &self.state.producers
    }

    pub fn producers_mut(&mut self) -> &mut Producers {
        &mut self.state.producers
    }

    /// Record bytes stored (from the log start on).
    pub fn stored_bytes(&self) -> u64 {
        let first = self
            .state
            .points
            .front()
            .map_or(self.state.bytes_applied, |p| p.bytes_before);
        self.state.bytes_applied - first
    }

    /// Where to start reading for `offset`: the Raft index of the last
    /// indexed batch at or before it (reading forward from there finds it).
    /// `None` when nothing is stored at or after it.
    pub fn locate(&self, offset: i64) -> Option<u64> {
        let points = &self.state.points;
        let i = points.partition_point(|p| p.offset <= offset);
        let at = if i == 0 {
            points.front()?
        } else {
            &points[i - 1]
        };
        (offset < self.state.next_offset).then_some(at.index)
    }

    /// Where to start reading for the first record whose timestamp is at
    /// least `target`: the last indexed batch before which every record is
    /// older (reading forward from there finds it). `None` if every stored
    /// record is older.
    pub fn locate_timestamp(&self, target: i64) -> Option<u64> {
        if self.state.max_timestamp.is_none_or(|(t, _)| t < target) {
            return None;
        }
        let points = &self.state.points;
        let i = points.partition_point(|p| p.max_timestamp_before < target);
        let at = if i == 0 {
            points.front()?
        } else {
            &points[i - 1]
        };
        Some(at.index)
    }

    /// The Raft index of the batch holding the largest timestamp.
    pub fn max_timestamp(&self) -> Option<(i64, u64)> {
        self.state.max_timestamp
    }

    /// The prefix retention deletes, as Kafka deletes whole segments: up to
    /// the last index point before which every record is older than
    /// `older_than_ms` (retention.ms), or whose removal still leaves at
    /// least `keep_bytes` stored (retention.bytes). Returns the Raft index
    /// the entries up to which go, and the new log start offset. The run
    /// after the last point is never deleted (Kafka's active segment).
    pub fn retention_cut(
        &self,
        older_than_ms: Option<i64>,
        keep_bytes: Option<u64>,
    ) -> Option<(u64, i64)> {
        let s = &self.state;
        let mut cut = None;
        for p in s.points.iter().skip(1) {
            let old = older_than_ms.is_some_and(|limit| p.max_timestamp_before < limit);
            let big = keep_bytes.is_some_and(|keep| s.bytes_applied - p.bytes_before >= keep);
            if !(old || big) {
                break;
            }
            cut = Some((p.index - 1, p.offset));
        }
        cut
    }
}

/// A checkpoint as stored: format byte, then JSON.
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut bytes = vec![entry::FORMAT_V1];
    serde_json::to_writer(&mut bytes, checkpoint).expect("checkpoints serialise");
    bytes
}

pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, entry::EntryError> {
    match bytes.split_first() {
        Some((&entry::FORMAT_V1, json)) => {
            serde_json::from_slice(json).map_err(|e| entry::EntryError::Malformed(e.to_string()))
        }
        Some((&format, _)) => Err(entry::EntryError::UnknownFormat(format)),
        None => Err(entry::EntryError::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition_log::record_batch::tests::{batch_from, resealed};
    use crate::raft::storage::{LogStore, WriteBatch};
    use raft::prelude::Entry as RaftEntry;

    /// A batch as a leader stores it: offsets and epoch written in.
    fn stored(producer: i64, seq: i32, records: i32, base: i64) -> Vec<u8> {
        let mut b = batch_from(producer, if producer < 0 { -1 } else { 0 }, seq, records);
        record_batch::assign(&mut b, base, 1);
        entry::records(&b)
    }

    #[test]
    fn batches_continue_the_log_or_the_replica_stops() {
        let mut log = PartitionLog::default();
        assert_eq!(
            log.apply(1, &stored(-1, -1, 3, 0), 0),
            Ok(Applied::Batch(0))
        );
        assert_eq!(
            log.apply(2, &stored(-1, -1, 2, 3), 0),
            Ok(Applied::Batch(3))
        );
        assert_eq!((log.high_watermark(), log.applied()), (5, 2));
        assert!(matches!(
            log.apply(3, &stored(-1, -1, 1, 9), 0),
            Err(ApplyError::Discontinuous {
                expected: 5,
                found: 9,
                ..
            })
        ));
        // A batch lying about its record count, however it got there.
        let mut lie = batch_from(-1, -1, -1, 1);
        lie[record_batch::LAST_OFFSET_DELTA..record_batch::LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&i32::MAX.to_be_bytes());
        let mut lie = resealed(lie);
        record_batch::assign(&mut lie, 5, 1);
        assert!(matches!(
            log.apply(3, &entry::records(&lie), 0),
            Err(ApplyError::Batch { .. })
        ));
        assert_eq!(log.high_watermark(), 5, "nothing moved");
        assert!(matches!(
            log.apply(3, &[9, 9], 0),
            Err(ApplyError::Entry {
                source: entry::EntryError::UnknownFormat(9),
                ..
            })
        ));
    }

    #[test]
    fn idempotent_batches_are_recorded_for_the_next_leader() {
        let mut log = PartitionLog::default();
        log.apply(1, &stored(7, 0, 2, 0), 0).unwrap();
        let retry = ProducerBatch {
            producer_id: 7,
            epoch: 0,
            first_sequence: 0,
            last_sequence: 1,
        };
        assert_eq!(log.producers().check(&retry), Ok(Some(0)));
    }

    #[tokio::test]
    async fn appends_wake_subscribers_with_the_high_watermark() {
        let mut log = PartitionLog::default();
        let mut appended = log.subscribe();
        assert!(!appended.has_changed().unwrap());
        log.apply(1, &stored(-1, -1, 3, 0), 0).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), appended.changed())
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(*appended.borrow_and_update(), 3);
        drop(log);
        assert!(appended.changed().await.is_err(), "the log is gone");
    }

    /// A log of `n` one-record batches of `size` bytes each, applied and
    /// stored in a real raft-engine group (index i holds offset i - 1).
    fn stored_log(dir: &std::path::Path, n: i64, pad: usize) -> (LogStore, PartitionLog) {
        let store = LogStore::open(dir).unwrap();
        let mut log = PartitionLog::default();
        let mut entries = Vec::new();
        for i in 0..n {
            let mut b = record_batch::tests::batch_with_value(&vec![b'x'; pad], 1_000 + i);
            record_batch::assign(&mut b, i, 1);
            let data = entry::records(&b);
            log.apply(i as u64 + 1, &data, 0).unwrap();
            entries.push(RaftEntry {
                index: i as u64 + 1,
                term: 1,
                data: data.into(),
                ..Default::default()
            });
        }
        let mut batch = WriteBatch::default();
        batch.append(9, &entries);
        store.write(batch).unwrap();
        (store, log)
    }

    #[test]
    fn reads_come_from_the_log_on_disk_through_the_sparse_index() {
        let dir = tempfile::tempdir().unwrap();
        // 10 KiB batches: a point every 7 of them or so.
        let (store, log) = stored_log(dir.path(), 40, 10 << 10);
        assert!(
            log.checkpoint().points.len() > 3,
            "{:?}",
            log.checkpoint().points.len()
        );
        let storage = store.group(9);
        for offset in [0, 1, 17, 39] {
            let from = log.locate(offset).unwrap();
            let batches = reader::read(&storage, from, log.applied(), offset, 1).unwrap();
            assert_eq!(batches.len(), 1, "at least one batch");
            assert_eq!(record_batch::base_offset(&batches[0]), offset);
        }
        let from = log.locate(10).unwrap();
        let batches = reader::read(&storage, from, log.applied(), 10, 35 << 10).unwrap();
        let offsets: Vec<_> = batches
            .iter()
            .map(|b| record_batch::base_offset(b))
            .collect();
        assert_eq!(
            offsets,
            vec![10, 11, 12],
            "whole batches up to the byte limit"
        );
        assert_eq!(log.locate(40), None, "nothing at the high watermark yet");
        // Never past what is applied.
        let only = reader::read(&storage, log.locate(0).unwrap(), 5, 0, usize::MAX).unwrap();
        assert_eq!(only.len(), 5);
    }

    #[test]
    fn timestamps_are_found_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        // Record i has timestamp 1_000 + i (see stored_log).
        let (store, log) = stored_log(dir.path(), 40, 10 << 10);
        let storage = store.group(9);
        let find = |t| {
            let from = log.locate_timestamp(t)?;
            reader::find_timestamp(&storage, from, log.applied(), t).unwrap()
        };
        assert_eq!(find(i64::MIN), Some((0, 1_000)));
        assert_eq!(find(1_025), Some((25, 1_025)));
        assert_eq!(find(1_040), None);
        assert_eq!(log.max_timestamp().map(|(t, _)| t), Some(1_039));
    }

    #[test]
    fn retention_cuts_whole_runs_by_time_or_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, mut log) = stored_log(dir.path(), 40, 10 << 10);
        let points = log.checkpoint().points.clone();
        // Nothing is old enough, and no size limit: nothing goes.
        assert_eq!(log.retention_cut(Some(0), None), None);
        // Everything before timestamp 1_020: the runs before the last point
        // at or below offset 20.
        let (index, start) = log.retention_cut(Some(1_020), None).unwrap();
        let cut = points.iter().rev().find(|p| p.offset <= 20).unwrap();
        assert_eq!((index, start), (cut.index - 1, cut.offset));
        // By bytes: what stays is at least the limit.
        let (_, start) = log.retention_cut(None, Some(100 << 10)).unwrap();
        let kept = 40 - start;
        assert!((10..20).contains(&kept), "kept {kept} batches of 10 KiB");
        // Applying the decision moves the log start; reads below it find none.
        let control = entry::control(&entry::Control::DeletePrefix {
            index,
            log_start_offset: cut.offset,
        });
        log.apply(41, &control, 0).unwrap();
        assert_eq!(log.log_start_offset(), cut.offset);
        assert!(log.checkpoint().points.front().unwrap().offset >= log.log_start_offset());
        assert!(log.stored_bytes() < 40 * (10 << 10));
    }

    #[test]
    fn checkpoints_round_trip_and_snapshots_carry_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, log) = stored_log(dir.path(), 40, 10 << 10);
        let bytes = encode_checkpoint(log.checkpoint());
        assert_eq!(bytes[0], entry::FORMAT_V1);
        let back = PartitionLog::from_checkpoint(decode_checkpoint(&bytes).unwrap());
        assert_eq!(back.checkpoint(), log.checkpoint());
        assert_eq!(back.high_watermark(), 40);
        let snap = log.snapshot_at(12, 11);
        assert_eq!(
            (snap.applied, snap.log_start_offset, snap.next_offset),
            (12, 11, 11)
        );
        assert!(snap.points.is_empty());
        assert!(decode_checkpoint(b"{}").is_err());
    }
}
