//! A partition's records as applied from its Raft group: Kafka record
//! batches kept as sent, with their base offset rewritten at apply time.
//! Every replica applies the same entries in the same order, so offsets
//! agree everywhere. In memory; rebuilt by replaying the group's Raft log
//! when a node starts (the log itself is the durable copy).

use bytes::Bytes;

/// Byte offset of `baseOffset` (i64) in a Kafka record batch (v2).
const BASE_OFFSET: usize = 0;
/// Byte offset of `lastOffsetDelta` (i32) in a record batch (v2).
const LAST_OFFSET_DELTA: usize = 23;
/// Shortest valid record batch header (v2).
pub const BATCH_HEADER_LEN: usize = 61;

#[derive(Debug, Clone, Default)]
pub struct PartitionLog {
    /// (base offset, batch bytes with that base offset written in).
    batches: Vec<(i64, Bytes)>,
    next_offset: i64,
}

impl PartitionLog {
    /// Appends one record batch and returns its base offset. The batch's
    /// record count comes from its own `lastOffsetDelta`.
    pub fn append(&mut self, batch: &[u8]) -> Result<i64, String> {
        if batch.len() < BATCH_HEADER_LEN {
            return Err(format!(
                "record batch of {} bytes is too short",
                batch.len()
            ));
        }
        let delta = i32::from_be_bytes(
            batch[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4]
                .try_into()
                .expect("length checked"),
        );
        if delta < 0 {
            return Err(format!("negative lastOffsetDelta {delta}"));
        }
        let base = self.next_offset;
        let mut stored = batch.to_vec();
        stored[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base.to_be_bytes());
        self.batches.push((base, Bytes::from(stored)));
        self.next_offset = base + i64::from(delta) + 1;
        Ok(base)
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

    fn batch(records: i32) -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEADER_LEN + 10];
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(records - 1).to_be_bytes());
        b
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
        assert!(log.append(&[0; 10]).is_err());
    }
}
