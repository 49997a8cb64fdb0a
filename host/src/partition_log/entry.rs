//! What a partition group's Raft entries hold: the partition log itself.
//!
//! # Stored format
//!
//! An entry is one format byte ([`FORMAT_V1`]), one kind byte, then:
//! - [`KIND_RECORDS`]: one Kafka record batch (v2) exactly as consumers
//!   read it: the leader wrote its base offset and partition leader epoch
//!   in before proposing it, so the bytes are served as stored;
//! - [`KIND_CONTROL`]: a [`Control`] as JSON (the partition's own commands,
//!   such as moving its log start offset for retention).
//!
//! The broker's own format, versioned by its first byte: an entry of an
//! unknown format is refused, never guessed at.

use serde::{Deserialize, Serialize};

pub const FORMAT_V1: u8 = 1;
pub const KIND_RECORDS: u8 = 1;
pub const KIND_CONTROL: u8 = 2;
/// Bytes before an entry's payload.
pub const PREFIX_LEN: usize = 2;

/// A partition's own commands, replicated like its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Retention: records before `log_start_offset` are deleted; the
    /// entries up to Raft index `index` (which hold exactly those) may be
    /// compacted away on every replica.
    DeletePrefix { index: u64, log_start_offset: i64 },
}

/// A decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    Records(&'a [u8]),
    Control(Control),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("partition entry of stored format {0}; this release reads format {FORMAT_V1}")]
    UnknownFormat(u8),
    #[error("partition entry of unknown kind {0}")]
    UnknownKind(u8),
    #[error("partition control entry does not decode: {0}")]
    Malformed(String),
    #[error("empty partition entry")]
    Empty,
}

/// The entry holding a record batch, built in one allocation.
pub fn records(batch: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(PREFIX_LEN + batch.len());
    entry.extend_from_slice(&[FORMAT_V1, KIND_RECORDS]);
    entry.extend_from_slice(batch);
    entry
}

pub fn control(control: &Control) -> Vec<u8> {
    let mut entry = vec![FORMAT_V1, KIND_CONTROL];
    serde_json::to_writer(&mut entry, control).expect("controls serialise");
    entry
}

pub fn decode(entry: &[u8]) -> Result<Entry<'_>, EntryError> {
    match entry {
        [] => Err(EntryError::Empty),
        [FORMAT_V1, KIND_RECORDS, batch @ ..] => Ok(Entry::Records(batch)),
        [FORMAT_V1, KIND_CONTROL, json @ ..] => serde_json::from_slice(json)
            .map(Entry::Control)
            .map_err(|e| EntryError::Malformed(e.to_string())),
        [FORMAT_V1, kind, ..] => Err(EntryError::UnknownKind(*kind)),
        [FORMAT_V1] => Err(EntryError::UnknownKind(0)),
        [format, ..] => Err(EntryError::UnknownFormat(*format)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_unknown_ones_are_refused() {
        assert_eq!(
            decode(&records(b"batch")),
            Ok(Entry::Records(&b"batch"[..]))
        );
        let c = Control::DeletePrefix {
            index: 9,
            log_start_offset: 120,
        };
        assert_eq!(decode(&control(&c)), Ok(Entry::Control(c)));
        assert_eq!(decode(&[]), Err(EntryError::Empty));
        assert_eq!(decode(&[7, 1, 2]), Err(EntryError::UnknownFormat(7)));
        assert_eq!(decode(&[FORMAT_V1, 9]), Err(EntryError::UnknownKind(9)));
        assert!(matches!(
            decode(&[FORMAT_V1, KIND_CONTROL, b'{']),
            Err(EntryError::Malformed(_))
        ));
        // The first wave stored bare batches: their first byte is the high
        // byte of a base offset (0), never this format.
        assert_eq!(decode(&[0, 0, 0]), Err(EntryError::UnknownFormat(0)));
    }
}
