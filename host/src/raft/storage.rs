//! Durable storage for every Raft group of a node, on one `raft-engine` instance.
//!
//! A node runs one Raft group per partition replica plus the metadata group. All
//! of them share a single [`LogStore`] (one raft-engine directory, one append-only
//! log, one `fsync` per Raft round): raft-engine keys everything by a `u64` region
//! id, which here is the Raft group id.
//!
//! Per group, raft-engine holds:
//!
//! - the log entries (`raft::prelude::Entry`, protobuf-encoded);
//! - key [`KEY_HARD_STATE`]: the `HardState` (protobuf);
//! - key [`KEY_CONF_STATE`]: the `ConfState` (protobuf);
//! - key [`KEY_APPLIED`]: the last applied index (8 bytes little-endian), for
//!   a state machine that keeps nothing else on disk (the raft-rs tests below).
//!   The broker's state machines keep theirs with their state: a partition in
//!   its checkpoint ([`KEY_STATE`]), the metadata group in its snapshot;
//! - key [`KEY_STATE`]: a partition's latest checkpoint;
//! - key [`KEY_TRUNCATED`]: the truncated state `(index, term)` (16 bytes
//!   little-endian): the last entry discarded by a compaction. A fresh
//!   group is truncated at `(0, 0)`, so its first index is 1.
//!
//! The Raft loop collects the writes of every group's `Ready` into one
//! [`WriteBatch`] and persists it with [`LogStore::write`]: synced, in
//! pieces of bounded size (a crash may keep a prefix of a round, never a
//! group's states without the entries before them).
//!
//! # Snapshots
//!
//! - key [`KEY_SNAPSHOT`]: the group's latest snapshot. A group whose state
//!   machine takes snapshots saves one with [`LogStore::save_snapshot`],
//!   which may also compact the log up to (never past) its index, so a
//!   leader always has a snapshot for a follower behind its first index. A
//!   follower persists a snapshot it received with [`WriteBatch::snapshot`]:
//!   its log is replaced (old entries dropped, truncated at the snapshot).
//!
//! A group that never saved a snapshot answers `SnapshotTemporarilyUnavailable`
//! (and never compacts), so a follower behind it waits rather than jumping past
//! entries it never applied.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ::raft::prelude::{ConfState, Entry, HardState, Snapshot};
use ::raft::util::limit_size;
use ::raft::{GetEntriesContext, RaftState, StorageError};
use anyhow::{Context, anyhow, bail};
use raft_engine::{Command, Config, Engine, LogBatch, MessageExt, ReadableSize};

/// Key of a group's `HardState` (protobuf).
pub const KEY_HARD_STATE: &[u8] = b"hard_state";
/// Key of a group's `ConfState` (protobuf).
pub const KEY_CONF_STATE: &[u8] = b"conf_state";
/// Key of a group's last applied index (`u64` little-endian).
pub const KEY_APPLIED: &[u8] = b"applied";
/// Key of a group's truncated state: index then term (`u64` little-endian each).
pub const KEY_TRUNCATED: &[u8] = b"truncated";
/// Key of a group's latest snapshot (protobuf `Snapshot`: metadata and the
/// state machine's data at its index).
pub const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// Key of a partition group's latest local checkpoint of its state machine
/// (the partition log's own format): where a restart resumes applying.
pub const KEY_STATE: &[u8] = b"state";

/// Tells raft-engine how to index a Raft entry.
#[derive(Clone, Copy, Debug)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// One per node: a raft-engine instance under one directory holding every
/// group's log. Cheap to clone (an `Arc` inside).
///
/// raft-engine locks its directory: to reopen it in the same process, every
/// clone of the `LogStore` and of its [`GroupStorage`]s must be dropped first.
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<Engine>,
    /// Fault injection for tests: every synced write fails once set.
    fail_writes: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.engine.path())
            .finish()
    }
}

/// How the raft-engine files of a node are sized and reclaimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Size at which a log file is closed and a new one started.
    pub file_bytes: u64,
    /// Once the log files exceed this, purging rewrites the live entries of
    /// the oldest files so they can go.
    pub purge_threshold_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            // Many small groups share the log: smaller files let purging
            // reclaim space sooner than the 128 MiB default.
            file_bytes: 32 << 20,
            purge_threshold_bytes: 256 << 20,
        }
    }
}

impl LogStore {
    /// Opens (creating it if needed) the store under `dir` and replays it.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// [`LogStore::open`] with file sizes and the purge threshold given.
    pub fn open_with(dir: &Path, options: StoreOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating raft log directory {}", dir.display()))?;
        let dir_str = dir
            .to_str()
            .ok_or_else(|| anyhow!("raft log directory {} is not UTF-8", dir.display()))?;
        let config = Config {
            dir: dir_str.to_owned(),
            target_file_size: ReadableSize(options.file_bytes),
            // Once the log files exceed this, `purge` rewrites the few live entries
            // of old files and asks for the groups holding them back to compact.
            purge_threshold: ReadableSize(options.purge_threshold_bytes),
            // Records are stored as sent (often compressed by the producer
            // already) and read back entry by entry: no second compression.
            batch_compression_threshold: ReadableSize(0),
            // Purged files are deleted, not kept for reuse: deleting a topic
            // or retention must free the disk.
            enable_log_recycle: false,
            // Default, stated for the record: a torn last write (crash during a
            // write) is dropped, not an error.
            recovery_mode: raft_engine::RecoveryMode::TolerateTailCorruption,
            ..Config::default()
        };
        let engine = Engine::open(config)
            .with_context(|| format!("opening raft log in {}", dir.display()))?;
        Ok(LogStore {
            engine: Arc::new(engine),
            fail_writes: Arc::default(),
        })
    }

    /// Groups that have any state on disk (for restart), ascending.
    pub fn group_ids(&self) -> Vec<u64> {
        let mut ids = self.engine.raft_groups();
        ids.sort_unstable();
        ids
    }

    /// The storage of one group (cheap; creates nothing on disk by itself).
    pub fn group(&self, group_id: u64) -> GroupStorage {
        GroupStorage {
            group_id,
            engine: Arc::clone(&self.engine),
        }
    }

    /// Removes every trace of a group (topic deleted): entries and state keys.
    /// Its [`GroupStorage`]s then read as a brand-new group.
    ///
    /// Not synced (the Raft loop must not wait on a disk per group): the next
    /// synced round makes it durable, and a crash before that leaves the
    /// group on disk, where the startup sweep of groups no topic owns finds it.
    pub fn remove_group(&self, group_id: u64) -> anyhow::Result<()> {
        let mut batch = LogBatch::default();
        batch.add_command(group_id, Command::Clean);
        self.engine
            .write(&mut batch, false)
            .with_context(|| format!("removing raft group {group_id}"))?;
        Ok(())
    }

    /// Saves a partition group's checkpoint ([`KEY_STATE`]). Not synced:
    /// the next synced round makes it durable; a crash before that resumes
    /// from the previous checkpoint (more entries to replay, nothing lost).
    pub fn save_state(&self, group_id: u64, state: Vec<u8>) -> anyhow::Result<()> {
        let mut batch = LogBatch::default();
        batch.put(group_id, KEY_STATE.to_vec(), state)?;
        self.engine
            .write(&mut batch, false)
            .with_context(|| format!("saving a checkpoint of raft group {group_id}"))?;
        Ok(())
    }

    /// Test fault: from now on every synced write fails, as a dying disk's
    /// would.
    pub fn inject_write_failures(&self) {
        self.fail_writes
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Persists a batch of writes for many groups, synced. Nothing is
    /// written if any group's append would leave a hole or overwrite
    /// compacted entries (those are errors, where raft's `MemStorage`
    /// panics).
    ///
    /// The batch goes to raft-engine in pieces of about [`WRITE_PIECE_BYTES`]
    /// (unsynced, then the last one synced), not as one write: raft-engine
    /// reads the last write of every log file whole when it opens, so one
    /// round of a busy follower (up to 100 MiB were seen) written at once
    /// made restarts read gigabytes at 2 GiB stored. A crash between pieces
    /// leaves a prefix of the round on disk (each group's entries before its
    /// states), which Raft tolerates: nothing of the round was acknowledged,
    /// as its messages go out after the synced write.
    pub fn write(&self, batch: WriteBatch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.fail_writes.load(std::sync::atomic::Ordering::Relaxed) {
            bail!("injected storage failure (fault injection enabled for tests)");
        }
        for (&group_id, write) in &batch.groups {
            self.check_append(group_id, write)?;
        }
        let mut pieces = Pieces::new(&self.engine, WRITE_PIECE_BYTES);
        for (&group_id, write) in &batch.groups {
            if let Some(snapshot) = &write.snapshot {
                let storage = self.group(group_id);
                let meta = snapshot.get_metadata();
                // Clean drops entries and keys; what the group keeps is put
                // again after it in the same piece (atomic, ordered).
                let mut hs = storage.hard_state();
                hs.commit = hs.commit.max(meta.index);
                hs.term = hs.term.max(meta.term);
                let log_batch = pieces.current();
                log_batch.add_command(group_id, Command::Clean);
                log_batch.put_message(group_id, KEY_SNAPSHOT.to_vec(), snapshot)?;
                log_batch.put_message(group_id, KEY_CONF_STATE.to_vec(), meta.get_conf_state())?;
                log_batch.put_message(group_id, KEY_HARD_STATE.to_vec(), &hs)?;
                log_batch.put(
                    group_id,
                    KEY_TRUNCATED.to_vec(),
                    truncated_value(meta.index, meta.term),
                )?;
                pieces.flush_if_full()?;
            }
            for entries in pieces_of(&write.entries, WRITE_PIECE_BYTES) {
                pieces
                    .current()
                    .add_entries::<EntryExt>(group_id, entries)
                    .with_context(|| format!("raft group {group_id}: encoding entries"))?;
                pieces.flush_if_full()?;
            }
            // Entries first, then the states (in the same piece as the last
            // entries): the states never name entries that are not on disk.
            let log_batch = pieces.current();
            if let Some(hs) = &write.hard_state {
                log_batch.put_message(group_id, KEY_HARD_STATE.to_vec(), hs)?;
            }
            if let Some(cs) = &write.conf_state {
                log_batch.put_message(group_id, KEY_CONF_STATE.to_vec(), cs)?;
            }
            if let Some(applied) = write.applied {
                log_batch.put(
                    group_id,
                    KEY_APPLIED.to_vec(),
                    applied.to_le_bytes().to_vec(),
                )?;
            }
        }
        pieces.finish()
    }

    /// The checks of [`write`](Self::write) for one group, before anything
    /// is written.
    fn check_append(&self, group_id: u64, write: &GroupWrite) -> anyhow::Result<()> {
        if let Some(error) = &write.error {
            bail!("raft group {group_id}: {error}");
        }
        let Some(first) = write.entries.first().map(|e| e.index) else {
            return Ok(());
        };
        let storage = self.group(group_id);
        let (first_index, last_index) = match &write.snapshot {
            Some(snapshot) => {
                let index = snapshot.get_metadata().index;
                (index + 1, index)
            }
            None => (storage.first_index_inner(), storage.last_index()),
        };
        if first < first_index {
            bail!(
                "raft group {group_id}: append at {first} overwrites compacted entries \
                 (first index {first_index})"
            );
        }
        if first > last_index + 1 {
            bail!(
                "raft group {group_id}: append at {first} leaves a hole \
                 (last index {last_index})"
            );
        }
        Ok(())
    }

    /// Saves a snapshot the group's state machine took at `snapshot`'s index
    /// and compacts the log up to `compact_to` (at most that index; older
    /// entries stay for followers that are only a little behind). Not
    /// synced: the snapshot and the compaction are one atomic batch, so a
    /// crash that loses it leaves the entries in place.
    pub fn save_snapshot(
        &self,
        group_id: u64,
        snapshot: &Snapshot,
        compact_to: u64,
    ) -> anyhow::Result<()> {
        self.save_snapshot_with_state(group_id, snapshot, compact_to, None)
    }

    /// [`save_snapshot`](Self::save_snapshot), and a new checkpoint
    /// ([`KEY_STATE`]) in the same atomic batch: a compaction never leaves
    /// the checkpoint a restart resumes from behind the log's first entry.
    pub fn save_snapshot_with_state(
        &self,
        group_id: u64,
        snapshot: &Snapshot,
        compact_to: u64,
        state: Option<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let index = snapshot.get_metadata().index;
        if compact_to > index {
            bail!("raft group {group_id}: compact to {compact_to} past the snapshot at {index}");
        }
        let storage = self.group(group_id);
        let mut batch = LogBatch::default();
        batch.put_message(group_id, KEY_SNAPSHOT.to_vec(), snapshot)?;
        // What a snapshot holds is applied, so committed: a commit index
        // raft-rs reported only in a LightReady (not persisted) is saved
        // here, or a restart would find the snapshot (and the log's start)
        // past the stored commit, which raft-rs refuses.
        let mut hs = storage.hard_state();
        if hs.commit < index {
            hs.commit = index;
            batch.put_message(group_id, KEY_HARD_STATE.to_vec(), &hs)?;
        }
        if let Some(state) = state {
            batch.put(group_id, KEY_STATE.to_vec(), state)?;
        }
        let (truncated_index, _) = storage.truncated();
        if compact_to > truncated_index && compact_to <= storage.last_index() {
            let term = ::raft::Storage::term(&storage, compact_to)
                .map_err(|e| anyhow!("raft group {group_id}: term of {compact_to}: {e}"))?;
            batch.put(
                group_id,
                KEY_TRUNCATED.to_vec(),
                truncated_value(compact_to, term),
            )?;
            // raft-engine's Compact removes entries *below* its index.
            batch.add_command(
                group_id,
                Command::Compact {
                    index: compact_to + 1,
                },
            );
        }
        self.engine
            .write(&mut batch, false)
            .with_context(|| format!("saving a snapshot of raft group {group_id}"))?;
        Ok(())
    }

    /// Lets raft-engine reclaim old log files (deleted groups, compacted
    /// entries). Returns the groups raft-engine asks to compact (their old
    /// entries keep old files alive), ascending. It may rewrite live
    /// entries, so it runs on its own thread ([`LogStore::spawn_purger`]),
    /// never on the Raft loop.
    pub fn purge(&self) -> anyhow::Result<Vec<u64>> {
        let mut ids = self
            .engine
            .purge_expired_files()
            .context("purging raft log files")?;
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

impl LogStore {
    /// Runs [`LogStore::purge`] every `every` on a thread of its own until
    /// `stop` is set, logging what it could not do.
    pub fn spawn_purger(
        &self,
        every: std::time::Duration,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let store = self.clone();
        std::thread::Builder::new()
            .name("leaderhook-purge".into())
            .spawn(move || {
                let tick = std::time::Duration::from_millis(100).min(every);
                let mut next = std::time::Instant::now() + every;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    if std::time::Instant::now() < next {
                        continue;
                    }
                    next = std::time::Instant::now() + every;
                    match store.purge() {
                        Ok(behind) if !behind.is_empty() => tracing::debug!(
                            groups = ?behind,
                            "raft log purge: these groups' old entries keep old files alive"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!("raft log purge failed: {e:#}"),
                    }
                }
            })
    }
}

/// Writes of one Raft round for many groups, persisted by [`LogStore::write`].
#[derive(Default, Debug)]
pub struct WriteBatch {
    groups: BTreeMap<u64, GroupWrite>,
}

/// Bytes of one raft-engine write (see [`LogStore::write`]); a single
/// entry larger than this is a piece of its own.
pub const WRITE_PIECE_BYTES: usize = 1 << 20;

/// Consecutive runs of `entries` of about `limit` bytes of data each (at
/// least one entry per run).
fn pieces_of(entries: &[Entry], limit: usize) -> impl Iterator<Item = &[Entry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let end = rest
            .iter()
            .position(|e| {
                bytes += e.data.len() + e.context.len();
                bytes > limit
            })
            .map_or(rest.len(), |i| i.max(1));
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(run)
    })
}

/// One batch written to raft-engine as several writes of bounded size.
struct Pieces<'a> {
    engine: &'a Engine,
    limit: usize,
    /// A full piece not written yet: the last write must carry data, since
    /// raft-engine skips an empty write, sync included.
    full: Option<LogBatch>,
    batch: LogBatch,
}

impl<'a> Pieces<'a> {
    fn new(engine: &'a Engine, limit: usize) -> Self {
        Self {
            engine,
            limit,
            full: None,
            batch: LogBatch::default(),
        }
    }

    fn current(&mut self) -> &mut LogBatch {
        &mut self.batch
    }

    /// Starts a new piece once the current one reaches the limit, writing
    /// the one before it (unsynced).
    fn flush_if_full(&mut self) -> anyhow::Result<()> {
        if self.batch.approximate_size() >= self.limit {
            self.write_full()?;
            self.full = Some(std::mem::take(&mut self.batch));
        }
        Ok(())
    }

    fn write_full(&mut self) -> anyhow::Result<()> {
        if let Some(mut full) = self.full.take() {
            self.engine
                .write(&mut full, false)
                .context("writing raft log batch")?;
        }
        Ok(())
    }

    /// Writes the rest, the last piece synced: every piece before it is
    /// durable with it.
    fn finish(mut self) -> anyhow::Result<()> {
        let mut last = if self.batch.is_empty() {
            self.full.take().unwrap_or_default()
        } else {
            self.write_full()?;
            std::mem::take(&mut self.batch)
        };
        self.engine
            .write(&mut last, true)
            .context("writing raft log batch")?;
        Ok(())
    }
}

#[derive(Default, Debug)]
struct GroupWrite {
    /// A snapshot received from the leader: replaces the whole log first.
    snapshot: Option<Snapshot>,
    /// Consecutive entries to append (conflicting suffixes already merged).
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    conf_state: Option<ConfState>,
    applied: Option<u64>,
    /// A malformed append, reported by `LogStore::write`.
    error: Option<String>,
}

impl WriteBatch {
    /// Appends entries to a group's log, replacing any conflicting suffix (on disk
    /// or earlier in this batch), like raft's `MemStorage::append`. The entries
    /// must have consecutive indexes; a hole is reported by [`LogStore::write`].
    pub fn append(&mut self, group: u64, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let write = self.groups.entry(group).or_default();
        if write.error.is_some() {
            return;
        }
        if let Some(pair) = entries.windows(2).find(|w| w[1].index != w[0].index + 1) {
            write.error = Some(format!(
                "appended entries are not consecutive ({} then {})",
                pair[0].index, pair[1].index
            ));
            return;
        }
        let new_first = entries[0].index;
        match (write.entries.first(), write.entries.last()) {
            (Some(first), Some(last)) if new_first >= first.index => {
                if new_first > last.index + 1 {
                    write.error = Some(format!(
                        "append at {new_first} leaves a hole after {}",
                        last.index
                    ));
                    return;
                }
                let keep = (new_first - first.index) as usize;
                write.entries.truncate(keep);
            }
            // Nothing pending, or the new entries replace all pending ones: the
            // disk-side checks happen in `LogStore::write`.
            _ => write.entries.clear(),
        }
        write.entries.extend_from_slice(entries);
    }

    /// Replaces a group's log with a snapshot received from its leader:
    /// entries and state are dropped, the log is truncated at the snapshot's
    /// index, its conf state and the snapshot itself are stored. Entries
    /// appended in the same batch follow it.
    pub fn snapshot(&mut self, group: u64, snapshot: &Snapshot) {
        let write = self.groups.entry(group).or_default();
        write.entries.clear();
        write.snapshot = Some(snapshot.clone());
    }

    /// Sets a group's `HardState` (the last one in the batch wins).
    pub fn hard_state(&mut self, group: u64, hs: &HardState) {
        self.groups.entry(group).or_default().hard_state = Some(hs.clone());
    }

    /// Sets a group's `ConfState` (the last one in the batch wins).
    pub fn conf_state(&mut self, group: u64, cs: &ConfState) {
        self.groups.entry(group).or_default().conf_state = Some(cs.clone());
    }

    /// Sets a group's last applied index ([`KEY_APPLIED`]).
    pub fn applied(&mut self, group: u64, index: u64) {
        self.groups.entry(group).or_default().applied = Some(index);
    }

    /// True if there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// The storage of one Raft group; implements [`raft::Storage`].
///
/// Reads go straight to raft-engine (its index is in memory; entries are read
/// from the log files). Writes go through [`WriteBatch`] and [`LogStore::write`].
///
/// State that cannot be decoded (corruption raft-engine's checksums missed)
/// makes the accessors panic: no safe default exists for a vote or a commit.
#[derive(Clone)]
pub struct GroupStorage {
    group_id: u64,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for GroupStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupStorage")
            .field("group_id", &self.group_id)
            .finish()
    }
}

impl GroupStorage {
    /// The Raft group id.
    pub fn id(&self) -> u64 {
        self.group_id
    }

    /// For a brand-new group: writes the initial `ConfState` (voters) if the
    /// group has no state yet. Returns true if it was new. Not atomic against
    /// concurrent writers of the same group: call it from the Raft loop.
    ///
    /// Not synced, so opening a thousand groups costs no thousand fsyncs on
    /// the Raft loop: the round's synced write, which every vote or append of
    /// the group waits for, makes it durable first (same log, written
    /// before). A crash before that loses nothing: the group is created again
    /// when the metadata log replays its topic's creation.
    pub fn initialize(&self, voters: &[u64]) -> anyhow::Result<bool> {
        let fresh = self.engine.get(self.group_id, KEY_CONF_STATE).is_none()
            && self.engine.get(self.group_id, KEY_HARD_STATE).is_none()
            && self.engine.last_index(self.group_id).is_none();
        if !fresh {
            return Ok(false);
        }
        if voters.is_empty() {
            bail!("raft group {}: no voters to initialize with", self.group_id);
        }
        let cs = ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        };
        let mut batch = LogBatch::default();
        batch.put_message(self.group_id, KEY_CONF_STATE.to_vec(), &cs)?;
        self.engine
            .write(&mut batch, false)
            .with_context(|| format!("initializing raft group {}", self.group_id))?;
        Ok(true)
    }

    /// The last applied index persisted (0 if none).
    pub fn applied(&self) -> u64 {
        self.engine
            .get(self.group_id, KEY_APPLIED)
            .map_or(0, |v| decode_u64(&v, 0, self.group_id, "applied"))
    }

    /// The latest checkpoint saved ([`KEY_STATE`]), if any.
    pub fn stored_state(&self) -> Option<Vec<u8>> {
        self.engine.get(self.group_id, KEY_STATE)
    }

    /// The latest snapshot saved or received, if any.
    pub fn stored_snapshot(&self) -> Option<Snapshot> {
        self.engine.get(self.group_id, KEY_SNAPSHOT)?;
        Some(self.message(KEY_SNAPSHOT))
    }

    /// The persisted `HardState` (default if none).
    pub fn hard_state(&self) -> HardState {
        self.message(KEY_HARD_STATE)
    }

    /// The persisted `ConfState` (default, i.e. uninitialized, if none).
    pub fn conf_state(&self) -> ConfState {
        self.message(KEY_CONF_STATE)
    }

    /// The truncated state `(index, term)`: the last compacted entry, `(0, 0)`
    /// for a group never compacted.
    pub fn truncated(&self) -> (u64, u64) {
        match self.engine.get(self.group_id, KEY_TRUNCATED) {
            None => (0, 0),
            Some(v) => (
                decode_u64(&v, 0, self.group_id, "truncated"),
                decode_u64(&v, 8, self.group_id, "truncated"),
            ),
        }
    }

    /// Index of the last entry (the truncated index if there is none).
    pub fn last_index(&self) -> u64 {
        self.engine
            .last_index(self.group_id)
            .unwrap_or_else(|| self.truncated().0)
    }

    fn first_index_inner(&self) -> u64 {
        self.truncated().0 + 1
    }

    /// Discards entries up to and including `index` (must be <= applied and
    /// <= last index). Compacting at or below the truncated index does nothing.
    ///
    /// Not synced: the truncated state and the discard are one atomic batch, so
    /// a crash that loses it only leaves the entries in place; the next synced
    /// write persists it.
    pub fn compact(&self, index: u64) -> anyhow::Result<()> {
        let (truncated, _) = self.truncated();
        if index <= truncated {
            return Ok(());
        }
        let applied = self.applied();
        if index > applied {
            bail!(
                "raft group {}: compact to {index} beyond applied {applied}",
                self.group_id
            );
        }
        let last = self.last_index();
        if index > last {
            bail!(
                "raft group {}: compact to {index} beyond last index {last}",
                self.group_id
            );
        }
        let term = ::raft::Storage::term(self, index)
            .map_err(|e| anyhow!("raft group {}: term of {index}: {e}", self.group_id))?;
        let mut batch = LogBatch::default();
        batch.put(
            self.group_id,
            KEY_TRUNCATED.to_vec(),
            truncated_value(index, term),
        )?;
        // raft-engine's Compact removes entries *below* its index.
        batch.add_command(self.group_id, Command::Compact { index: index + 1 });
        self.engine
            .write(&mut batch, false)
            .with_context(|| format!("compacting raft group {}", self.group_id))?;
        Ok(())
    }

    fn message<M: protobuf::Message>(&self, key: &[u8]) -> M {
        match self.engine.get_message::<M>(self.group_id, key) {
            Ok(m) => m.unwrap_or_else(M::new),
            Err(e) => panic!(
                "raft group {}: undecodable {}: {e}",
                self.group_id,
                String::from_utf8_lossy(key)
            ),
        }
    }
}

/// The value of [`KEY_TRUNCATED`].
fn truncated_value(index: u64, term: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(16);
    value.extend_from_slice(&index.to_le_bytes());
    value.extend_from_slice(&term.to_le_bytes());
    value
}

fn decode_u64(v: &[u8], at: usize, group: u64, what: &str) -> u64 {
    match v.get(at..at + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
        None => panic!("raft group {group}: undecodable {what} ({} bytes)", v.len()),
    }
}

fn engine_error(e: raft_engine::Error) -> ::raft::Error {
    match e {
        raft_engine::Error::EntryCompacted => ::raft::Error::Store(StorageError::Compacted),
        raft_engine::Error::EntryNotFound => ::raft::Error::Store(StorageError::Unavailable),
        other => ::raft::Error::Store(StorageError::Other(Box::new(other))),
    }
}

impl ::raft::Storage for GroupStorage {
    fn initial_state(&self) -> ::raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state(), self.conf_state()))
    }

    /// Entries `[low, high)`, at most `max_size` bytes but at least one entry.
    ///
    /// # Panics
    ///
    /// If `high > last_index + 1`, like `MemStorage`.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> ::raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low < self.first_index_inner() {
            return Err(::raft::Error::Store(StorageError::Compacted));
        }
        let last = self.last_index();
        if high > last + 1 {
            panic!(
                "raft group {}: index out of bound (last: {}, high: {high})",
                self.group_id,
                last + 1
            );
        }
        let mut entries = Vec::with_capacity(high.saturating_sub(low) as usize);
        if low >= high {
            return Ok(entries);
        }
        // raft-engine applies the same size rule (encoded sizes, at least one
        // entry), which spares reading entries we would drop; `limit_size` keeps
        // raft's exact semantics.
        let engine_max = max_size.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        self.engine
            .fetch_entries_to::<EntryExt>(self.group_id, low, high, engine_max, &mut entries)
            .map_err(engine_error)?;
        limit_size(&mut entries, max_size);
        Ok(entries)
    }

    /// Term of `idx` in `[first_index - 1, last_index]`; the entry just before
    /// the first index answers from the truncated state.
    fn term(&self, idx: u64) -> ::raft::Result<u64> {
        let (truncated_index, truncated_term) = self.truncated();
        if idx == truncated_index {
            return Ok(truncated_term);
        }
        if idx < truncated_index {
            return Err(::raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index() {
            return Err(::raft::Error::Store(StorageError::Unavailable));
        }
        match self
            .engine
            .get_entry::<EntryExt>(self.group_id, idx)
            .map_err(engine_error)?
        {
            Some(e) => Ok(e.term),
            None => Err(::raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> ::raft::Result<u64> {
        Ok(self.first_index_inner())
    }

    fn last_index(&self) -> ::raft::Result<u64> {
        Ok(GroupStorage::last_index(self))
    }

    /// The latest snapshot saved or received, if it is recent enough;
    /// otherwise `SnapshotTemporarilyUnavailable` (raft-rs asks again later).
    /// A group that never saved one never compacts either, so it never
    /// needs one; answering with an empty snapshot would let a lagging
    /// follower jump past entries it never applied.
    fn snapshot(&self, request_index: u64, _to: u64) -> ::raft::Result<Snapshot> {
        match self.stored_snapshot() {
            Some(snapshot) if snapshot.get_metadata().index >= request_index => Ok(snapshot),
            _ => Err(::raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::raft::Storage;
    use ::raft::prelude::{Config as RaftConfig, RawNode};
    use protobuf::Message as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Entry::default()
        }
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    fn store_err(e: StorageError) -> ::raft::Error {
        ::raft::Error::Store(e)
    }

    fn append(store: &LogStore, group: u64, entries: &[Entry]) {
        let mut batch = WriteBatch::default();
        batch.append(group, entries);
        store.write(batch).unwrap();
    }

    #[test]
    fn append_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let g = store.group(7);
        assert_eq!(g.id(), 7);
        assert_eq!(g.first_index().unwrap(), 1);
        assert_eq!(Storage::last_index(&g).unwrap(), 0);
        assert_eq!(g.term(0).unwrap(), 0);
        assert_eq!(g.term(1), Err(store_err(StorageError::Unavailable)));
        assert!(g.entries(1, 1, None, ctx()).unwrap().is_empty());

        let ents: Vec<Entry> = (1..=5).map(|i| entry(i, 1 + i / 3)).collect();
        append(&store, 7, &ents);
        assert_eq!(g.first_index().unwrap(), 1);
        assert_eq!(g.last_index(), 5);
        assert_eq!(g.term(0).unwrap(), 0);
        assert_eq!(g.term(3).unwrap(), 2);
        assert_eq!(g.term(6), Err(store_err(StorageError::Unavailable)));
        assert_eq!(g.entries(1, 6, None, ctx()).unwrap(), ents);
        assert_eq!(g.entries(2, 4, None, ctx()).unwrap(), ents[1..3].to_vec());

        // max_size: like MemStorage, at least one entry, then as many as fit.
        let size = u64::from(ents[0].compute_size());
        assert_eq!(g.entries(1, 6, 0, ctx()).unwrap(), ents[..1].to_vec());
        assert_eq!(g.entries(1, 6, size, ctx()).unwrap(), ents[..1].to_vec());
        assert_eq!(
            g.entries(1, 6, size * 2 + size / 2, ctx()).unwrap(),
            ents[..2].to_vec()
        );
        assert_eq!(g.entries(1, 6, size * 5, ctx()).unwrap(), ents);
        assert_eq!(g.entries(1, 6, u64::MAX, ctx()).unwrap(), ents);

        // Appending right after the end extends; a hole is refused, atomically.
        append(&store, 7, &[entry(6, 2)]);
        assert_eq!(g.last_index(), 6);
        let mut batch = WriteBatch::default();
        batch.hard_state(7, &HardState::default());
        batch.append(7, &[entry(8, 2)]);
        assert!(store.write(batch).is_err());
        let mut batch = WriteBatch::default();
        batch.append(7, &[entry(7, 2), entry(9, 2)]);
        assert!(store.write(batch).is_err());
        assert_eq!(g.last_index(), 6);
    }

    fn big_entry(index: u64, bytes: usize) -> Entry {
        Entry {
            index,
            term: 1,
            data: vec![index as u8; bytes].into(),
            ..Entry::default()
        }
    }

    #[test]
    fn pieces_hold_about_the_limit_and_at_least_one_entry() {
        let ents: Vec<Entry> = (1..=10).map(|i| big_entry(i, 300)).collect();
        let runs: Vec<Vec<u64>> = pieces_of(&ents, 1000)
            .map(|run| run.iter().map(|e| e.index).collect())
            .collect();
        assert_eq!(
            runs,
            [vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
        );
        // An entry larger than the limit is a run of its own.
        let ents = [big_entry(1, 10), big_entry(2, 5000), big_entry(3, 10)];
        let runs: Vec<usize> = pieces_of(&ents, 1000).map(<[Entry]>::len).collect();
        assert_eq!(runs, [1, 1, 1]);
        assert_eq!(pieces_of(&[], 1000).count(), 0);
    }

    /// Writes of raft-engine larger than `bytes` so far in this process
    /// (its own histogram, in the default registry; none before the first).
    fn engine_writes_above(bytes: f64) -> u64 {
        let families = prometheus::default_registry().gather();
        // Registered at raft-engine's first write in this process.
        let Some(family) = families
            .iter()
            .find(|f| f.get_name() == "raft_engine_write_size")
        else {
            return 0;
        };
        let histogram = family.get_metric()[0].get_histogram();
        let at_or_below = histogram
            .get_bucket()
            .iter()
            .filter(|b| b.get_upper_bound() >= bytes)
            .map(|b| b.get_cumulative_count())
            .min()
            .expect("a bucket at or above the bound");
        histogram.get_sample_count() - at_or_below
    }

    /// A round far larger than a piece (a follower catching up) is written
    /// in pieces, so raft-engine never holds (or rereads at open) one huge
    /// write, and all of it is there after a restart with its states.
    #[test]
    fn a_large_round_is_written_in_pieces_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ents: Vec<Entry> = (1..=48).map(|i| big_entry(i, 256 << 10)).collect();
        let hs = HardState {
            term: 1,
            commit: 40,
            ..HardState::default()
        };
        // Pieces are about WRITE_PIECE_BYTES (1 MiB): none reaches 4 MiB.
        let limit = f64::from(4 << 20);
        let above_before = engine_writes_above(limit);
        {
            let store = LogStore::open(dir.path()).unwrap();
            let mut batch = WriteBatch::default();
            batch.append(3, &ents[..24]);
            batch.append(4, &ents);
            batch.hard_state(4, &hs);
            store.write(batch).unwrap();
        }
        assert_eq!(
            engine_writes_above(limit),
            above_before,
            "a write above {limit} bytes: 18 MiB went as one piece"
        );
        let store = LogStore::open(dir.path()).unwrap();
        let (g3, g4) = (store.group(3), store.group(4));
        assert_eq!((g3.last_index(), g4.last_index()), (24, 48));
        assert_eq!(g4.entries(1, 49, None, ctx()).unwrap(), ents);
        assert_eq!(g3.entries(1, 25, None, ctx()).unwrap(), ents[..24]);
        assert_eq!(g4.hard_state(), hs);
    }

    #[test]
    #[should_panic(expected = "index out of bound")]
    fn entries_beyond_last_panics() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        append(&store, 1, &[entry(1, 1)]);
        let _ = store.group(1).entries(1, 3, None, ctx());
    }

    #[test]
    fn overwrite_conflicting_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let g = store.group(1);
        append(&store, 1, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>());

        // A new leader's entries replace 3..=5 on disk.
        append(&store, 1, &[entry(3, 2), entry(4, 2)]);
        assert_eq!(g.last_index(), 4);
        assert_eq!(
            g.entries(1, 5, None, ctx()).unwrap(),
            vec![entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]
        );
        assert_eq!(g.term(5), Err(store_err(StorageError::Unavailable)));

        // Within one batch: the later append cuts the earlier one.
        let mut batch = WriteBatch::default();
        batch.append(1, &[entry(5, 2), entry(6, 2), entry(7, 2)]);
        batch.append(1, &[entry(6, 3)]);
        batch.append(1, &[entry(7, 3)]);
        store.write(batch).unwrap();
        assert_eq!(g.last_index(), 7);
        assert_eq!(
            g.entries(5, 8, None, ctx()).unwrap(),
            vec![entry(5, 2), entry(6, 3), entry(7, 3)]
        );

        // A batch append starting before the pending ones replaces them all.
        let mut batch = WriteBatch::default();
        batch.append(1, &[entry(8, 3), entry(9, 3)]);
        batch.append(1, &[entry(2, 4)]);
        store.write(batch).unwrap();
        assert_eq!(g.last_index(), 2);
        assert_eq!(
            g.entries(1, 3, None, ctx()).unwrap(),
            vec![entry(1, 1), entry(2, 4)]
        );

        // Survives a reopen.
        drop(g);
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        let g = store.group(1);
        assert_eq!(
            g.entries(1, 3, None, ctx()).unwrap(),
            vec![entry(1, 1), entry(2, 4)]
        );
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 4,
            ..HardState::default()
        };
        let cs = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            ..ConfState::default()
        };
        let ents: Vec<Entry> = (1..=5).map(|i| entry(i, 3)).collect();
        {
            let store = LogStore::open(dir.path()).unwrap();
            let g = store.group(9);
            assert!(g.initialize(&[1, 2, 3]).unwrap());
            assert!(!g.initialize(&[1, 2, 3]).unwrap());
            let mut batch = WriteBatch::default();
            batch.append(9, &ents);
            batch.hard_state(9, &hs);
            batch.conf_state(9, &cs);
            batch.applied(9, 4);
            store.write(batch).unwrap();
            store.write(WriteBatch::default()).unwrap();
        }
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.group_ids(), vec![9]);
        let g = store.group(9);
        assert!(!g.initialize(&[1]).unwrap());
        assert_eq!(g.hard_state(), hs);
        assert_eq!(g.conf_state(), cs);
        assert_eq!(g.applied(), 4);
        let state = g.initial_state().unwrap();
        assert_eq!(state.hard_state, hs);
        assert_eq!(state.conf_state, cs);
        assert_eq!(g.entries(1, 6, None, ctx()).unwrap(), ents);
        assert_eq!(g.last_index(), 5);
        assert_eq!(g.truncated(), (0, 0));

        // A fresh group reads as uninitialized.
        let fresh = store.group(10);
        assert!(!fresh.initial_state().unwrap().initialized());
        assert_eq!(fresh.applied(), 0);
        assert_eq!(store.group_ids(), vec![9]);
    }

    fn snapshot_at(index: u64, term: u64, data: &[u8]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        snapshot.data = data.to_vec().into();
        snapshot
    }

    #[test]
    fn a_saved_snapshot_compacts_no_further_than_asked_and_is_served() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            let g = store.group(9);
            g.initialize(&[1, 2, 3]).unwrap();
            assert_eq!(
                g.snapshot(0, 2),
                Err(store_err(StorageError::SnapshotTemporarilyUnavailable)),
                "never saved: none to give"
            );
            append(
                &store,
                9,
                &(1..=10).map(|i| entry(i, 2)).collect::<Vec<_>>(),
            );
            // The stored commit lags what was applied (raft-rs reports a
            // leader's commit after its own persist only in a LightReady).
            let mut batch = WriteBatch::default();
            batch.hard_state(
                9,
                &HardState {
                    term: 2,
                    vote: 1,
                    commit: 3,
                    ..HardState::default()
                },
            );
            store.write(batch).unwrap();
            // Snapshot at 8, compacting to 5: entries 6..=10 stay.
            store
                .save_snapshot(9, &snapshot_at(8, 2, b"state at 8"), 5)
                .unwrap();
            assert!(store.save_snapshot(9, &snapshot_at(8, 2, b"x"), 9).is_err());
        }
        let store = LogStore::open(dir.path()).unwrap();
        let g = store.group(9);
        let hs = g.hard_state();
        assert_eq!(
            (hs.term, hs.vote, hs.commit),
            (2, 1, 8),
            "the snapshot's index is committed"
        );
        assert_eq!(g.first_index().unwrap(), 6);
        assert_eq!(g.term(5).unwrap(), 2);
        assert_eq!(
            g.entries(5, 7, None, ctx()),
            Err(store_err(StorageError::Compacted))
        );
        assert_eq!(g.entries(6, 11, None, ctx()).unwrap().len(), 5);
        let served = g.snapshot(0, 2).unwrap();
        assert_eq!(served.get_metadata().index, 8);
        assert_eq!(&served.data[..], b"state at 8");
        assert_eq!(
            g.snapshot(9, 2),
            Err(store_err(StorageError::SnapshotTemporarilyUnavailable)),
            "older than asked for"
        );
    }

    #[test]
    fn a_received_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            let g = store.group(9);
            g.initialize(&[1, 2, 3]).unwrap();
            // A follower with a stale tail (terms 1) far behind the leader.
            append(&store, 9, &(1..=4).map(|i| entry(i, 1)).collect::<Vec<_>>());
            let mut batch = WriteBatch::default();
            batch.snapshot(9, &snapshot_at(20, 5, b"state at 20"));
            // The leader's entries that follow the snapshot, same round.
            batch.append(9, &[entry(21, 5), entry(22, 5)]);
            store.write(batch).unwrap();
            let mut bad = WriteBatch::default();
            bad.append(9, &[entry(20, 5)]);
            assert!(
                store.write(bad).is_err(),
                "20 is compacted into the snapshot"
            );
        }
        let store = LogStore::open(dir.path()).unwrap();
        let g = store.group(9);
        assert_eq!(g.truncated(), (20, 5));
        assert_eq!(g.first_index().unwrap(), 21);
        assert_eq!(GroupStorage::last_index(&g), 22);
        assert_eq!(g.term(20).unwrap(), 5);
        assert_eq!(g.conf_state().voters, vec![1, 2, 3]);
        assert_eq!(g.hard_state().commit, 20);
        assert_eq!(
            g.entries(1, 3, None, ctx()),
            Err(store_err(StorageError::Compacted))
        );
        assert_eq!(
            g.entries(21, 23, None, ctx()).unwrap(),
            vec![entry(21, 5), entry(22, 5)]
        );
        assert_eq!(&g.stored_snapshot().unwrap().data[..], b"state at 20");
    }

    #[test]
    fn groups_are_independent() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert!(store.group_ids().is_empty());

        let mut batch = WriteBatch::default();
        assert!(batch.is_empty());
        let hs1 = HardState {
            term: 1,
            ..HardState::default()
        };
        let hs2 = HardState {
            term: 2,
            ..HardState::default()
        };
        batch.append(1, &(1..=3).map(|i| entry(i, 1)).collect::<Vec<_>>());
        batch.append(2, &(1..=6).map(|i| entry(i, 2)).collect::<Vec<_>>());
        batch.hard_state(1, &hs1);
        batch.hard_state(2, &hs2);
        batch.applied(2, 5);
        batch.conf_state(3, &ConfState::default());
        assert!(!batch.is_empty());
        store.write(batch).unwrap();

        assert_eq!(store.group_ids(), vec![1, 2, 3]);
        let (g1, g2, g3) = (store.group(1), store.group(2), store.group(3));
        assert_eq!(
            (g1.last_index(), g2.last_index(), g3.last_index()),
            (3, 6, 0)
        );
        assert_eq!(g1.hard_state(), hs1);
        assert_eq!(g2.hard_state(), hs2);
        assert_eq!((g1.applied(), g2.applied()), (0, 5));
        assert_eq!(g1.term(2).unwrap(), 1);
        assert_eq!(g2.term(2).unwrap(), 2);

        // A conflicting append in group 1 leaves group 2 alone.
        append(&store, 1, &[entry(2, 5)]);
        assert_eq!((g1.last_index(), g2.last_index()), (2, 6));

        store.remove_group(2).unwrap();
        assert_eq!(store.group_ids(), vec![1, 3]);
        assert_eq!(g2.last_index(), 0);
        assert_eq!(g2.hard_state(), HardState::default());
        assert_eq!(g2.applied(), 0);
        assert_eq!(g1.last_index(), 2);
        // Removing an unknown group is fine.
        store.remove_group(42).unwrap();

        drop((g1, g2, g3));
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.group_ids(), vec![1, 3]);
        assert_eq!(store.group(2).last_index(), 0);
        assert_eq!(store.group(1).hard_state(), hs1);

        // A removed group can be created again from scratch.
        let g2 = store.group(2);
        assert!(g2.initialize(&[1]).unwrap());
        append(&store, 2, &[entry(1, 1)]);
        assert_eq!(g2.last_index(), 1);
    }

    #[test]
    fn compact() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let g = store.group(5);
        let ents: Vec<Entry> = (1..=10).map(|i| entry(i, i / 4 + 1)).collect();
        let mut batch = WriteBatch::default();
        batch.append(5, &ents);
        batch.applied(5, 6);
        store.write(batch).unwrap();

        assert!(g.compact(7).is_err(), "beyond applied");
        g.compact(5).unwrap();
        assert_eq!(g.truncated(), (5, 2));
        assert_eq!(g.first_index().unwrap(), 6);
        assert_eq!(g.last_index(), 10);
        assert_eq!(g.term(5).unwrap(), 2);
        assert_eq!(g.term(4), Err(store_err(StorageError::Compacted)));
        assert_eq!(
            g.entries(5, 8, None, ctx()),
            Err(store_err(StorageError::Compacted))
        );
        assert_eq!(g.entries(6, 11, None, ctx()).unwrap(), ents[5..].to_vec());
        // At or below the truncated index: nothing to do.
        g.compact(3).unwrap();
        assert_eq!(g.first_index().unwrap(), 6);

        // Appending over compacted entries is refused.
        let mut batch = WriteBatch::default();
        batch.append(5, &[entry(5, 9)]);
        assert!(store.write(batch).is_err());

        // Compact everything, then keep appending; it all survives a reopen.
        let mut batch = WriteBatch::default();
        batch.applied(5, 10);
        store.write(batch).unwrap();
        g.compact(10).unwrap();
        assert_eq!(g.first_index().unwrap(), 11);
        assert_eq!(g.last_index(), 10);
        assert_eq!(g.term(10).unwrap(), 3);
        assert!(g.entries(11, 11, None, ctx()).unwrap().is_empty());
        append(&store, 5, &[entry(11, 4), entry(12, 4)]);
        drop(g);
        drop(store);

        let store = LogStore::open(dir.path()).unwrap();
        let g = store.group(5);
        assert_eq!(g.truncated(), (10, 3));
        assert_eq!(g.first_index().unwrap(), 11);
        assert_eq!(g.last_index(), 12);
        assert_eq!(g.term(10).unwrap(), 3);
        assert_eq!(
            g.entries(11, 13, None, ctx()).unwrap(),
            vec![entry(11, 4), entry(12, 4)]
        );
        assert_eq!(
            g.entries(10, 13, None, ctx()),
            Err(store_err(StorageError::Compacted))
        );
        assert_eq!(
            g.snapshot(0, 2),
            Err(store_err(StorageError::SnapshotTemporarilyUnavailable))
        );
        store.purge().unwrap();
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<LogStore>();
        check::<GroupStorage>();
        check::<WriteBatch>();
    }

    fn raft_config(applied: u64) -> RaftConfig {
        RaftConfig {
            id: 1,
            election_tick: 10,
            heartbeat_tick: 3,
            applied,
            ..RaftConfig::default()
        }
    }

    fn logger() -> slog::Logger {
        slog::Logger::root(slog::Discard, slog::o!())
    }

    /// Persists and advances every Ready; returns the data of applied entries.
    fn drive(store: &LogStore, node: &mut RawNode<GroupStorage>) -> Vec<Vec<u8>> {
        let group = node.store().id();
        let mut applied = Vec::new();
        let mut apply = |batch: &mut WriteBatch, entries: &[Entry]| {
            for e in entries {
                if !e.data.is_empty() {
                    applied.push(e.data.to_vec());
                }
                batch.applied(group, e.index);
            }
        };
        while node.has_ready() {
            let mut ready = node.ready();
            assert!(ready.snapshot().is_empty());
            let mut batch = WriteBatch::default();
            apply(&mut batch, &ready.take_committed_entries());
            batch.append(group, ready.entries());
            if let Some(hs) = ready.hs() {
                batch.hard_state(group, hs);
            }
            store.write(batch).unwrap();
            let mut light = node.advance(ready);
            let mut batch = WriteBatch::default();
            if let Some(commit) = light.commit_index() {
                let mut hs = node.store().hard_state();
                hs.commit = commit;
                batch.hard_state(group, &hs);
            }
            apply(&mut batch, &light.take_committed_entries());
            store.write(batch).unwrap();
            node.advance_apply();
        }
        applied
    }

    #[test]
    fn raw_node_campaigns_proposes_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let group = 100;
        {
            let store = LogStore::open(dir.path()).unwrap();
            let storage = store.group(group);
            assert!(storage.initialize(&[1]).unwrap());
            let mut node = RawNode::new(&raft_config(0), storage, &logger()).unwrap();
            node.campaign().unwrap();
            drive(&store, &mut node);
            assert_eq!(node.raft.state, ::raft::StateRole::Leader);
            node.propose(vec![], b"hello".to_vec()).unwrap();
            node.propose(vec![], b"world".to_vec()).unwrap();
            assert_eq!(
                drive(&store, &mut node),
                vec![b"hello".to_vec(), b"world".to_vec()]
            );
            // Empty leader entry at 1, then the two proposals.
            assert_eq!(node.store().last_index(), 3);
            assert_eq!(node.store().applied(), 3);
            assert_eq!(node.store().hard_state().commit, 3);
        }

        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.group_ids(), vec![group]);
        let storage = store.group(group);
        let entries = storage.entries(1, 4, None, ctx()).unwrap();
        let data: Vec<&[u8]> = entries.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, vec![&b""[..], b"hello", b"world"]);
        assert!(entries.iter().all(|e| e.term == 1));
        let hs = storage.hard_state();
        assert_eq!((hs.term, hs.vote, hs.commit), (1, 1, 3));

        // Restarted with the persisted applied index: nothing re-applied, and
        // the node can lead again and keep going.
        let applied = storage.applied();
        let mut node = RawNode::new(&raft_config(applied), storage, &logger()).unwrap();
        assert!(drive(&store, &mut node).is_empty());
        node.campaign().unwrap();
        drive(&store, &mut node);
        assert_eq!(node.raft.state, ::raft::StateRole::Leader);
        assert_eq!(node.raft.term, 2);
        node.propose(vec![], b"again".to_vec()).unwrap();
        assert_eq!(drive(&store, &mut node), vec![b"again".to_vec()]);
        assert_eq!(node.store().last_index(), 5);

        // Compaction below applied keeps the node working.
        node.store().compact(4).unwrap();
        node.propose(vec![], b"more".to_vec()).unwrap();
        assert_eq!(drive(&store, &mut node), vec![b"more".to_vec()]);
    }
}
