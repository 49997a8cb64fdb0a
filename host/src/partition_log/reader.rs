//! Reads a partition's records where they are stored: its Raft group's
//! committed entries in raft-engine (page cache; nothing is kept in
//! memory). A read starts at an index point ([`super::PartitionLog::locate`])
//! and goes forward, never past the applied (committed) entries.

use super::entry::{self, Entry, PREFIX_LEN};
use super::record_batch;
use crate::raft::storage::GroupStorage;
use bytes::Bytes;

/// Entries fetched from raft-engine per call.
const CHUNK_ENTRIES: u64 = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Retention removed the entries meanwhile: the caller looks again.
    #[error("the entries were removed by retention while being read")]
    Compacted,
    #[error("reading the partition's log: {0}")]
    Storage(String),
    #[error(transparent)]
    Entry(#[from] entry::EntryError),
}

fn storage_error(e: raft::Error) -> ReadError {
    match e {
        raft::Error::Store(raft::StorageError::Compacted) => ReadError::Compacted,
        other => ReadError::Storage(other.to_string()),
    }
}

/// Visits the stored record batches from Raft index `from` through
/// `applied`, in order, until `visit` returns false. `budget` bounds the
/// bytes fetched per call to raft-engine.
fn each_batch(
    storage: &GroupStorage,
    from: u64,
    applied: u64,
    budget: u64,
    mut visit: impl FnMut(Bytes) -> bool,
) -> Result<(), ReadError> {
    let mut low = from;
    while low <= applied {
        let high = (applied + 1).min(low + CHUNK_ENTRIES);
        let entries = raft::Storage::entries(
            storage,
            low,
            high,
            budget,
            raft::GetEntriesContext::empty(false),
        )
        .map_err(storage_error)?;
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for e in entries {
            if e.data.is_empty() {
                continue; // a new leader's empty entry
            }
            if let Entry::Records(_) = entry::decode(&e.data)?
                && !visit(e.data.slice(PREFIX_LEN..))
            {
                return Ok(());
            }
        }
        low = last + 1;
    }
    Ok(())
}

/// Whole batches holding offsets from `offset` on, up to about `max_bytes`
/// (at least one batch, as Kafka does), read from Raft index `from`.
pub fn read(
    storage: &GroupStorage,
    from: u64,
    applied: u64,
    offset: i64,
    max_bytes: usize,
) -> Result<Vec<Bytes>, ReadError> {
    let mut out = Vec::new();
    let mut size = 0usize;
    let budget = (max_bytes as u64).clamp(64 << 10, 8 << 20);
    each_batch(storage, from, applied, budget, |batch| {
        let last = record_batch::base_offset(&batch)
            + i64::from(record_batch::i32_at(
                &batch,
                record_batch::LAST_OFFSET_DELTA,
            ));
        if last < offset {
            return true;
        }
        if !out.is_empty() && size + batch.len() > max_bytes {
            return false;
        }
        size += batch.len();
        out.push(batch);
        size < max_bytes
    })?;
    Ok(out)
}

/// The first record whose timestamp is at least `target`, read from Raft
/// index `from`: (offset, timestamp). Within a compressed batch, its first
/// offset (its records are not decompressed).
pub fn find_timestamp(
    storage: &GroupStorage,
    from: u64,
    applied: u64,
    target: i64,
) -> Result<Option<(i64, i64)>, ReadError> {
    let mut found = None;
    each_batch(storage, from, applied, 1 << 20, |batch| {
        if record_batch::max_timestamp(&batch) < target {
            return true;
        }
        let base = record_batch::base_offset(&batch);
        found = Some(match record_batch::first_at_or_after(&batch, target) {
            Some((delta, timestamp)) => (base + i64::from(delta), timestamp),
            // Its maxTimestamp claimed more than its records hold.
            None => (base, record_batch::max_timestamp(&batch)),
        });
        false
    })?;
    Ok(found)
}
