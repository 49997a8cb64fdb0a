//! The Kafka record batch (v2, "magic 2") and the checks Kafka makes on a
//! producer's batch before appending it. The produce handler runs them
//! before a batch is proposed to Raft, and [`super::PartitionLog::apply`]
//! runs them again when an entry is applied (on every replica and on
//! replay), so nothing that reached a Raft log can move a high watermark
//! by more records than the batch really holds.
//!
//! The checks depend on the batch's bytes only, never on a node's config
//! (every replica must take the same decision). Size limits, which are
//! config, are the produce handler's (`kafka::batch`).
//!
//! Compressed batches are checked up to their header: this broker carries
//! no codecs, so their records are not decompressed. Their record count is
//! the header's, which must still agree with `lastOffsetDelta`.

use std::fmt;

/// Byte offsets of the v2 batch header fields (all big-endian).
pub const BASE_OFFSET: usize = 0; // i64
const BATCH_LENGTH: usize = 8; // i32: bytes after this field
const PARTITION_LEADER_EPOCH: usize = 12; // i32, written by the leader
const MAGIC: usize = 16; // i8
const CRC: usize = 17; // u32, CRC-32C of everything from ATTRIBUTES on
const ATTRIBUTES: usize = 21; // i16
pub const LAST_OFFSET_DELTA: usize = 23; // i32
const BASE_TIMESTAMP: usize = 27; // i64
const MAX_TIMESTAMP: usize = 35; // i64
const PRODUCER_ID: usize = 43; // i64
const PRODUCER_EPOCH: usize = 51; // i16
const BASE_SEQUENCE: usize = 53; // i32
const RECORD_COUNT: usize = 57; // i32
/// The header's length: the records start here.
pub const HEADER_LEN: usize = 61;
/// Bytes before the `batchLength` field's count starts (base offset, length).
const LOG_OVERHEAD: usize = 12;

const COMPRESSION_MASK: i16 = 0x07;
/// Codecs Kafka defines: none, gzip, snappy, lz4, zstd.
const MAX_COMPRESSION: i16 = 4;
const LOG_APPEND_TIME: i16 = 0x08;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

/// Why bytes are not an acceptable record batch, in Kafka's two classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Damaged bytes: framing or CRC (Kafka's `CorruptRecordException`,
    /// answered CORRUPT_MESSAGE).
    Corrupt(Corruption),
    /// Intact but unacceptable or lying content (Kafka's
    /// `InvalidRecordException`, answered INVALID_RECORD).
    Invalid(String),
}

/// How a batch's bytes are damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("record batch truncated: {left} bytes left, a batch header is {HEADER_LEN}")]
    Truncated { left: usize },
    #[error("record batch length {length} does not fit the {sent} bytes sent")]
    LengthPastEnd { length: i32, sent: usize },
    #[error("record batch of {len} bytes is shorter than its {HEADER_LEN}-byte header")]
    ShorterThanHeader { len: usize },
    #[error("record batch length field {length} does not match the {len} bytes of the batch")]
    LengthMismatch { length: i32, len: usize },
    #[error("record batch CRC {stored:#010x} does not match its content ({computed:#010x})")]
    Crc { stored: u32, computed: u32 },
}

impl std::error::Error for BatchError {}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Corrupt(c) => c.fmt(f),
            BatchError::Invalid(m) => f.write_str(m),
        }
    }
}

fn invalid(message: String) -> BatchError {
    BatchError::Invalid(message)
}

/// What the partition log needs of a checked batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Records in the batch (= `lastOffsetDelta` + 1, checked).
    pub records: i32,
    /// `producerId`; negative: not an idempotent batch.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("length checked"))
}

pub fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("length checked"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("length checked"))
}

/// Splits a produced record set into its batches by their length fields.
/// A length that does not fit the bytes is `Corrupt`; the batches
/// themselves are not checked here (see [`check`]).
pub fn split(mut records: &[u8]) -> Result<Vec<&[u8]>, BatchError> {
    let mut batches = Vec::new();
    while !records.is_empty() {
        if records.len() < HEADER_LEN {
            return Err(BatchError::Corrupt(Corruption::Truncated {
                left: records.len(),
            }));
        }
        let length = i32_at(records, BATCH_LENGTH);
        let total = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|t| (HEADER_LEN..=records.len()).contains(t))
            .ok_or(BatchError::Corrupt(Corruption::LengthPastEnd {
                length,
                sent: records.len(),
            }))?;
        let (batch, rest) = records.split_at(total);
        batches.push(batch);
        records = rest;
    }
    Ok(batches)
}

/// Checks one record batch (exactly its bytes) as Kafka checks a
/// producer's batch: v2 framing, CRC-32C, attributes, base offset 0, a
/// record count that matches `lastOffsetDelta`, producer fields, and (when
/// not compressed) every record's structure, offset delta and timestamp.
pub fn check(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    check_framed(batch, true)
}

/// [`check`] for a batch the leader has assigned its offsets to (any base
/// offset), as it is stored in the Raft log.
pub fn check_stored(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    check_framed(batch, false)
}

/// Writes what the leader decides into a checked batch: its base offset and
/// the partition leader epoch (the Raft term). Neither is covered by the
/// CRC, as in Kafka, where the leader writes both too.
pub fn assign(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// The batch's base offset (a stored batch's first offset).
pub fn base_offset(batch: &[u8]) -> i64 {
    i64_at(batch, BASE_OFFSET)
}

/// The batch's partition leader epoch (the term of the leader that wrote it).
pub fn leader_epoch(batch: &[u8]) -> i32 {
    i32_at(batch, PARTITION_LEADER_EPOCH)
}

fn check_framed(batch: &[u8], from_producer: bool) -> Result<BatchHeader, BatchError> {
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Corrupt(Corruption::ShorterThanHeader {
            len: batch.len(),
        }));
    }
    let length = i32_at(batch, BATCH_LENGTH);
    if i64::from(length) + LOG_OVERHEAD as i64 != batch.len() as i64 {
        return Err(BatchError::Corrupt(Corruption::LengthMismatch {
            length,
            len: batch.len() - LOG_OVERHEAD,
        }));
    }
    let magic = batch[MAGIC] as i8;
    if magic != 2 {
        return Err(invalid(format!(
            "record batch magic {magic}: only v2 batches (magic 2) are accepted"
        )));
    }
    let stored = u32::from_be_bytes(batch[CRC..CRC + 4].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&batch[ATTRIBUTES..]);
    if stored != computed {
        return Err(BatchError::Corrupt(Corruption::Crc { stored, computed }));
    }
    let attributes = i16_at(batch, ATTRIBUTES);
    let compression = attributes & COMPRESSION_MASK;
    if compression > MAX_COMPRESSION {
        return Err(invalid(format!(
            "record batch compression codec {compression} is unknown"
        )));
    }
    if attributes & CONTROL != 0 {
        return Err(invalid(
            "producers may not write control batches".to_string(),
        ));
    }
    if attributes & TRANSACTIONAL != 0 {
        return Err(invalid(
            "transactional batches are not accepted: this broker has no transactions".to_string(),
        ));
    }
    let base_offset = i64_at(batch, BASE_OFFSET);
    if from_producer && base_offset != 0 {
        return Err(invalid(format!(
            "a producer's record batch starts at base offset 0, not {base_offset}"
        )));
    }
    let records = i32_at(batch, RECORD_COUNT);
    let last_delta = i32_at(batch, LAST_OFFSET_DELTA);
    if records <= 0 {
        return Err(invalid(format!(
            "record batch claims {records} records: a batch holds at least one"
        )));
    }
    if i64::from(last_delta) + 1 != i64::from(records) {
        return Err(invalid(format!(
            "record batch claims {records} records but lastOffsetDelta {last_delta} \
             spans {} offsets",
            i64::from(last_delta) + 1
        )));
    }
    let header = BatchHeader {
        records,
        producer_id: i64_at(batch, PRODUCER_ID),
        producer_epoch: i16_at(batch, PRODUCER_EPOCH),
        base_sequence: i32_at(batch, BASE_SEQUENCE),
    };
    if header.producer_id >= 0 && (header.producer_epoch < 0 || header.base_sequence < 0) {
        return Err(invalid(format!(
            "producer {}: a batch with a producer id needs an epoch and a base sequence \
             (got epoch {}, sequence {})",
            header.producer_id, header.producer_epoch, header.base_sequence
        )));
    }
    if compression == 0 {
        walk_records(batch, |_, _| true)?;
    }
    Ok(header)
}

/// The batch's `maxTimestamp`.
pub fn max_timestamp(batch: &[u8]) -> i64 {
    i64_at(batch, MAX_TIMESTAMP)
}

/// The first record of a checked batch whose timestamp is at least
/// `target`: (offset delta, timestamp). A compressed batch is not
/// decompressed: its first record stands for it, with its `maxTimestamp`.
pub fn first_at_or_after(batch: &[u8], target: i64) -> Option<(i32, i64)> {
    let attributes = i16_at(batch, ATTRIBUTES);
    let max = max_timestamp(batch);
    if attributes & COMPRESSION_MASK != 0 || attributes & LOG_APPEND_TIME != 0 {
        // Log append time: every record has the batch's timestamp.
        return (max >= target).then_some((0, max));
    }
    let mut found = None;
    let _ = walk_records(batch, |delta, timestamp| {
        if timestamp >= target {
            found = Some((delta, timestamp));
        }
        found.is_none()
    });
    found
}

/// Walks the records of an uncompressed batch, handing each one's offset
/// delta and timestamp to `visit` until it returns false. Refuses what
/// Kafka refuses: other than exactly `recordCount` records, each of the
/// length it claims, offset deltas 0, 1, 2…, negative sizes, timestamps
/// that overflow, bytes left over.
fn walk_records(batch: &[u8], mut visit: impl FnMut(i32, i64) -> bool) -> Result<(), BatchError> {
    let count = i32_at(batch, RECORD_COUNT);
    let base_timestamp = i64_at(batch, BASE_TIMESTAMP);
    let mut rest = &batch[HEADER_LEN..];
    for index in 0..count {
        let at = |what: &str| format!("record {index} of {count}: {what}");
        let length = varint(&mut rest).map_err(|e| invalid(at(e)))?;
        let length = usize::try_from(length)
            .ok()
            .filter(|l| *l <= rest.len())
            .ok_or_else(|| {
                invalid(at(&format!(
                    "length {length} does not fit the {} bytes left in the batch",
                    rest.len()
                )))
            })?;
        let (mut body, after) = rest.split_at(length);
        rest = after;
        let timestamp =
            check_record(&mut body, index, base_timestamp).map_err(|e| invalid(at(&e)))?;
        if !body.is_empty() {
            return Err(invalid(at(&format!(
                "{} bytes left after its last header",
                body.len()
            ))));
        }
        if !visit(index, timestamp) {
            return Ok(());
        }
    }
    if !rest.is_empty() {
        return Err(invalid(format!(
            "record batch declares {count} records but {} bytes follow the last one",
            rest.len()
        )));
    }
    Ok(())
}

/// One record's body: attributes, timestamp delta, offset delta, key,
/// value, headers. Returns the record's timestamp.
fn check_record(body: &mut &[u8], index: i32, base_timestamp: i64) -> Result<i64, String> {
    take(body, 1)?; // attributes: unused in v2
    let timestamp_delta = varlong(body)?;
    let Some(timestamp) = base_timestamp.checked_add(timestamp_delta) else {
        return Err(format!(
            "timestamp delta {timestamp_delta} overflows the base timestamp {base_timestamp}"
        ));
    };
    let offset_delta = varint(body)?;
    if offset_delta != index {
        return Err(format!("offset delta {offset_delta}, expected {index}"));
    }
    bytes_field(body, "key", true)?;
    bytes_field(body, "value", true)?;
    let headers = varint(body)?;
    if headers < 0 {
        return Err(format!("negative header count {headers}"));
    }
    for _ in 0..headers {
        bytes_field(body, "header key", false)?;
        bytes_field(body, "header value", true)?;
    }
    Ok(timestamp)
}

/// A varint-length-prefixed byte field; -1 is null where `nullable`.
fn bytes_field(body: &mut &[u8], what: &str, nullable: bool) -> Result<(), String> {
    let len = varint(body)?;
    if len == -1 && nullable {
        return Ok(());
    }
    let n = usize::try_from(len).map_err(|_| format!("{what} length {len} is negative"))?;
    take(body, n).map_err(|_| {
        format!(
            "{what} length {len} exceeds the {} bytes left in the record",
            body.len()
        )
    })?;
    Ok(())
}

fn take<'a>(body: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if body.len() < n {
        return Err("truncated");
    }
    let (head, rest) = body.split_at(n);
    *body = rest;
    Ok(head)
}

/// A zigzag varint of at most `max_bytes` bytes (5 for 32 bits, 10 for 64).
fn zigzag(body: &mut &[u8], max_bytes: usize) -> Result<i64, &'static str> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let byte = *take(body, 1)?.first().expect("one byte");
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err("varint too long")
}

fn varint(body: &mut &[u8]) -> Result<i32, &'static str> {
    let v = zigzag(body, 5)?;
    i32::try_from(v).map_err(|_| "varint out of range")
}

fn varlong(body: &mut &[u8]) -> Result<i64, &'static str> {
    zigzag(body, 10)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// A real v2 batch of `records` records from `producer` (-1: not
    /// idempotent) at `epoch`, sequences from `seq`, as a client sends it.
    pub(crate) fn batch_from(producer: i64, epoch: i16, seq: i32, records: i32) -> Vec<u8> {
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
                timestamp: 1_700_000_000_000 + i64::from(i),
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{seq}-{i}"))),
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]
                .into_iter()
                .collect(),
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
        buf.to_vec()
    }

    pub(crate) fn batch(records: i32) -> Vec<u8> {
        batch_from(-1, -1, -1, records)
    }

    /// A one-record batch carrying `value`, timestamped `timestamp`.
    pub(crate) fn batch_with_value(value: &[u8], timestamp: i64) -> Vec<u8> {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    /// `batch` with its CRC recomputed, as a liar would send it.
    pub(crate) fn resealed(mut batch: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn with_i32(mut batch: Vec<u8>, at: usize, value: i32) -> Vec<u8> {
        batch[at..at + 4].copy_from_slice(&value.to_be_bytes());
        resealed(batch)
    }

    fn invalid_because(batch: &[u8], why: &str) {
        match check(batch) {
            Err(BatchError::Invalid(m)) => assert!(m.contains(why), "{m:?} lacks {why:?}"),
            other => panic!("expected Invalid({why:?}), got {other:?}"),
        }
    }

    #[test]
    fn a_clients_batch_passes_and_reports_its_header() {
        let header = check(&batch(3)).unwrap();
        assert_eq!(header.records, 3);
        assert!(header.producer_id < 0);
        let header = check(&batch_from(7, 2, 10, 4)).unwrap();
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (7, 2, 10)
        );
    }

    #[test]
    fn a_record_count_that_disagrees_with_the_offsets_is_invalid() {
        // One record claiming to span 2^31 offsets: the high watermark lie.
        let lie = with_i32(batch(1), LAST_OFFSET_DELTA, i32::MAX);
        invalid_because(&lie, "lastOffsetDelta 2147483647");
        // Count and delta agree but the records are not there.
        let lie = with_i32(with_i32(batch(1), LAST_OFFSET_DELTA, 4), RECORD_COUNT, 5);
        invalid_because(&lie, "record 1 of 5");
        // More records than declared.
        let lie = with_i32(with_i32(batch(3), LAST_OFFSET_DELTA, 1), RECORD_COUNT, 2);
        invalid_because(&lie, "follow the last one");
        invalid_because(&with_i32(batch(1), RECORD_COUNT, 0), "at least one");
        let negative = with_i32(with_i32(batch(1), RECORD_COUNT, -1), LAST_OFFSET_DELTA, -2);
        invalid_because(&negative, "claims -1 records");
    }

    #[test]
    fn damaged_bytes_are_corrupt() {
        let good = batch(2);
        let mut flipped = good.clone();
        flipped[HEADER_LEN + 3] ^= 1;
        assert!(matches!(
            check(&flipped),
            Err(BatchError::Corrupt(Corruption::Crc { .. }))
        ));
        assert_eq!(
            check(&good[..40]),
            Err(BatchError::Corrupt(Corruption::ShorterThanHeader {
                len: 40
            }))
        );
        // The length field must match the bytes exactly.
        let long = with_i32(good.clone(), BATCH_LENGTH, good.len() as i32);
        assert!(matches!(
            check(&long),
            Err(BatchError::Corrupt(Corruption::LengthMismatch { .. }))
        ));
        let short = with_i32(good.clone(), BATCH_LENGTH, 49);
        assert!(matches!(
            check(&short),
            Err(BatchError::Corrupt(Corruption::LengthMismatch {
                length: 49,
                ..
            }))
        ));
    }

    #[test]
    fn header_fields_kafka_refuses_are_invalid() {
        let mut old = batch(1);
        old[MAGIC] = 1;
        invalid_because(&resealed(old), "magic 1");
        let mut offset = batch(1);
        offset[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&5i64.to_be_bytes());
        invalid_because(&resealed(offset), "base offset 0, not 5");
        let attributes = |bits: i16| {
            let mut b = batch(1);
            b[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&bits.to_be_bytes());
            resealed(b)
        };
        invalid_because(&attributes(CONTROL), "control");
        invalid_because(&attributes(TRANSACTIONAL), "transactional");
        invalid_because(&attributes(6), "codec 6");
        // A compressed batch's records are not walked, its header is.
        assert!(check(&attributes(1)).is_ok());
        let lie = with_i32(attributes(1), LAST_OFFSET_DELTA, 1000);
        invalid_because(&lie, "lastOffsetDelta 1000");
        // A producer id without a sequence.
        invalid_because(
            &with_i32(batch_from(7, 0, 0, 1), BASE_SEQUENCE, -1),
            "sequence -1",
        );
    }

    /// A batch with one record whose body is `body` (count and CRC right).
    fn one_record(body: &[u8]) -> Vec<u8> {
        let mut b = batch(1);
        b.truncate(HEADER_LEN);
        b.push((body.len() as u8) << 1); // zigzag length, < 64
        b.extend_from_slice(body);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        with_i32(b, BATCH_LENGTH, len)
    }

    #[test]
    fn every_record_is_walked() {
        // attributes, timestamp delta 0, offset delta 0, key null, value "v", 0 headers
        let good = [0, 0, 0, 1, 2, b'v', 0];
        assert!(check(&one_record(&good)).is_ok());
        invalid_because(&one_record(&[0, 0, 2, 1, 2, b'v', 0]), "offset delta 1");
        invalid_because(&one_record(&[0, 0, 0, 3, 2, b'v', 0]), "key length -2");
        invalid_because(&one_record(&[0, 0, 0, 1, 20, b'v', 0]), "value length 10");
        invalid_because(
            &one_record(&[0, 0, 0, 1, 2, b'v', 1]),
            "negative header count",
        );
        invalid_because(
            &one_record(&[0, 0, 0, 1, 2, b'v', 2, 1, 0]),
            "header key length -1",
        );
        invalid_because(&one_record(&[0, 0, 0, 1, 2, b'v', 0, 9]), "1 bytes left");
        invalid_because(&one_record(&[0, 0, 0, 1, 2, b'v']), "truncated");
        invalid_because(&one_record(&[0, 0xff, 0xff, 0xff]), "truncated");
        let long_varint = [0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 2, b'v', 0];
        invalid_because(&one_record(&long_varint), "varint too long");
        // A timestamp delta of i64::MAX on a positive base timestamp.
        let mut overflow = vec![0];
        overflow.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        overflow.extend_from_slice(&[0, 1, 2, b'v', 0]);
        invalid_because(&one_record(&overflow), "overflows");
        // A record claiming more bytes than the batch has.
        let mut b = batch(1);
        b.truncate(HEADER_LEN);
        b.extend_from_slice(&[100, 0]);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        invalid_because(&with_i32(b, BATCH_LENGTH, len), "length 50 does not fit");
    }

    #[test]
    fn records_are_found_by_timestamp() {
        // Records at 1_700_000_000_000 + i (see batch_from).
        let b = batch(4);
        let t0 = 1_700_000_000_000;
        assert_eq!(first_at_or_after(&b, i64::MIN), Some((0, t0)));
        assert_eq!(first_at_or_after(&b, t0 + 2), Some((2, t0 + 2)));
        assert_eq!(first_at_or_after(&b, t0 + 3), Some((3, t0 + 3)));
        assert_eq!(first_at_or_after(&b, t0 + 4), None);
        assert_eq!(max_timestamp(&b), t0 + 3);
    }

    #[test]
    fn split_finds_batches_by_their_lengths() {
        let (a, b) = (batch(1), batch(2));
        let both = [a.clone(), b.clone()].concat();
        assert_eq!(split(&both).unwrap(), vec![&a[..], &b[..]]);
        assert!(split(&[]).unwrap().is_empty());
        assert!(matches!(
            split(&both[..a.len() + 20]),
            Err(BatchError::Corrupt(_))
        ));
        let mut huge = a.clone();
        huge[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(split(&huge), Err(BatchError::Corrupt(_))));
        huge[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(split(&huge), Err(BatchError::Corrupt(_))));
    }
}
