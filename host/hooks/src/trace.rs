//! Recorded traces: every leadership event a node's runtime is handed and
//! every batch a plugin handled, with its capability calls and their
//! outcomes, as JSON lines (`[trace] path = ...` in the node config). The
//! harness replays them (`leaderhook plugin test PLUGIN --trace FILE`).
//!
//! Never slows the caller: records go through a bounded queue
//! ([`QUEUE_RECORDS`]) to a writer thread; when it is full a record is
//! dropped and counted. The file is bounded in bytes: past `max_bytes` it is
//! rotated (`path` → `path.1` → … → `path.<keep>`, the oldest deleted).

use crate::calls::CallRecord;
use crate::config::Mode;
use crate::contract::{LeadershipEvent, NodeId, PartitionId, Transition};
use crate::queue::PartitionKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Records waiting for the writer before new ones are dropped.
pub const QUEUE_RECORDS: usize = 16_384;

/// `[trace]` in a node config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// The JSON-lines file (relative to the config file).
    pub path: PathBuf,
    /// Bytes a file may reach before it is rotated (default 64 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept besides the current one (default 3).
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_max_bytes() -> u64 {
    64 << 20
}

fn default_keep() -> usize {
    3
}

impl TraceConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_bytes < 4096 {
            return Err("trace.max_bytes must be at least 4096".into());
        }
        if self.keep > 100 {
            return Err("trace.keep must be at most 100".into());
        }
        Ok(())
    }
}

/// A leadership event in a trace (the contract's event, in the trace's own
/// stable format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracedEvent {
    /// The host's key of the partition's incarnation.
    pub key: u64,
    pub topic: String,
    pub partition: u32,
    pub transition: TracedTransition,
    pub observer: NodeId,
    pub leader: Option<NodeId>,
    pub previous_leader: Option<NodeId>,
    pub term: u64,
    pub replicas: Vec<NodeId>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TracedTransition {
    BecameLeader,
    SteppedDown,
    LeaderObserved,
    LeaderLost,
}

impl TracedEvent {
    pub fn new(key: PartitionKey, e: &LeadershipEvent) -> Self {
        Self {
            key: key.0,
            topic: e.partition.topic.clone(),
            partition: e.partition.partition,
            transition: match e.transition {
                Transition::BecameLeader => TracedTransition::BecameLeader,
                Transition::SteppedDown => TracedTransition::SteppedDown,
                Transition::LeaderObserved => TracedTransition::LeaderObserved,
                Transition::LeaderLost => TracedTransition::LeaderLost,
            },
            observer: e.observer,
            leader: e.leader,
            previous_leader: e.previous_leader,
            term: e.term,
            replicas: e.replicas.clone(),
            at_ms: e.at_ms,
        }
    }

    pub fn event(&self) -> LeadershipEvent {
        LeadershipEvent {
            partition: PartitionId {
                topic: self.topic.clone(),
                partition: self.partition,
            },
            transition: match self.transition {
                TracedTransition::BecameLeader => Transition::BecameLeader,
                TracedTransition::SteppedDown => Transition::SteppedDown,
                TracedTransition::LeaderObserved => Transition::LeaderObserved,
                TracedTransition::LeaderLost => Transition::LeaderLost,
            },
            observer: self.observer,
            leader: self.leader,
            previous_leader: self.previous_leader,
            term: self.term,
            replicas: self.replicas.clone(),
            at_ms: self.at_ms,
        }
    }
}

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum TraceRecord {
    /// An event handed to the node's runtime.
    Event {
        node: NodeId,
        #[serde(flatten)]
        event: TracedEvent,
    },
    /// A batch one plugin handled, the calls it made and their outcomes.
    Batch {
        node: NodeId,
        plugin: String,
        mode: Mode,
        events: Vec<TracedEvent>,
        calls: Vec<CallRecord>,
        /// The batch was given up on (after the `on_error` policy).
        failed: bool,
        /// When the plugin was done with it (unix milliseconds; 0 in traces recorded before
        /// this field existed: [`TraceRecord::at_ms`] then takes its newest event's time).
        #[serde(default)]
        at_ms: u64,
    },
}

impl TraceRecord {
    /// The node that recorded it.
    pub fn node(&self) -> NodeId {
        match self {
            TraceRecord::Event { node, .. } | TraceRecord::Batch { node, .. } => *node,
        }
    }

    /// When it happened, in unix milliseconds of its node's clock: an event's time, a batch's
    /// end (for a batch recorded without one, the time of its newest event: it was handled
    /// after that).
    pub fn at_ms(&self) -> u64 {
        match self {
            TraceRecord::Event { event, .. } => event.at_ms,
            TraceRecord::Batch { at_ms, events, .. } if *at_ms == 0 => {
                events.iter().map(|e| e.at_ms).max().unwrap_or(0)
            }
            TraceRecord::Batch { at_ms, .. } => *at_ms,
        }
    }
}

/// The milliseconds since the unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One history out of the records of several nodes (each node's trace files read in the order
/// given): each node's records keep the order that node wrote them in, and the nodes' records
/// are merged by [`TraceRecord::at_ms`], a tie going to the node whose records came first in
/// the input. A cluster-wide replay thus sees what happened across nodes in the order it
/// happened (as far as the nodes' clocks agree), whatever order the files are given in.
pub fn merge_by_time(records: Vec<TraceRecord>) -> Vec<TraceRecord> {
    use std::collections::VecDeque;
    // Per node, in order of first appearance.
    let mut nodes: Vec<(NodeId, VecDeque<TraceRecord>)> = Vec::new();
    for record in records {
        let node = record.node();
        match nodes.iter_mut().find(|(n, _)| *n == node) {
            Some((_, queue)) => queue.push_back(record),
            None => nodes.push((node, VecDeque::from([record]))),
        }
    }
    let total = nodes.iter().map(|(_, q)| q.len()).sum();
    let mut merged = Vec::with_capacity(total);
    // Nodes are few: a scan of the heads per record is cheaper than a heap's upkeep.
    while let Some(next) = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, (_, q))| q.front().map(|r| (r.at_ms(), i)))
        .min()
        .map(|(_, i)| i)
    {
        merged.extend(nodes[next].1.pop_front());
    }
    merged
}

/// What the writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStats {
    pub written: u64,
    pub dropped: u64,
    pub rotations: u64,
    pub write_errors: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    rotations: AtomicU64,
    write_errors: AtomicU64,
}

/// Hands records to the writer thread (which ends when this is dropped).
pub struct TraceWriter {
    tx: SyncSender<TraceRecord>,
    counters: Arc<Counters>,
    pub path: PathBuf,
}

impl TraceWriter {
    /// Opens (appending to) the file and starts the writer thread.
    pub fn start(config: &TraceConfig) -> std::io::Result<Self> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = open_append(&config.path)?;
        let mut size = file.metadata()?.len();
        if size > 0 && !ends_with_newline(&config.path)? {
            // The last run was killed mid-line: end that line, so the torn
            // record stays alone on its line (readers skip it).
            file.write_all(b"\n")?;
            size += 1;
        }
        let (tx, rx) = sync_channel(QUEUE_RECORDS);
        let counters = Arc::new(Counters::default());
        let writer = FileWriter {
            config: config.clone(),
            out: std::io::BufWriter::new(file),
            size,
            counters: counters.clone(),
        };
        std::thread::Builder::new()
            .name("leaderhook-trace".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            tx,
            counters,
            path: config.path.clone(),
        })
    }

    /// Queues a record; drops (and counts) it when the writer is behind.
    pub fn record(&self, record: TraceRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> TraceStats {
        let c = &self.counters;
        TraceStats {
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
        }
    }
}

fn ends_with_newline(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

struct FileWriter {
    config: TraceConfig,
    out: std::io::BufWriter<std::fs::File>,
    size: u64,
    counters: Arc<Counters>,
}

impl FileWriter {
    fn run(mut self, rx: Receiver<TraceRecord>) {
        while let Ok(first) = rx.recv() {
            self.write(&first);
            while let Ok(next) = rx.try_recv() {
                self.write(&next);
            }
            // Nothing waiting: what was written reaches the file.
            if self.out.flush().is_err() {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = self.out.flush();
    }

    fn write(&mut self, record: &TraceRecord) {
        let mut line = serde_json::to_vec(record).expect("trace records serialise");
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.config.max_bytes {
            self.rotate();
        }
        match self.out.write_all(&line) {
            Ok(()) => {
                self.size += line.len() as u64;
                self.counters.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if self.counters.write_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(path = %self.config.path.display(), "cannot write the trace: {e}");
                }
            }
        }
    }

    /// `path` → `path.1` → … → `path.<keep>`; a fresh `path`.
    fn rotate(&mut self) {
        let _ = self.out.flush();
        let path = &self.config.path;
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
        if self.config.keep == 0 {
            let _ = std::fs::remove_file(path);
        } else {
            let _ = std::fs::remove_file(numbered(self.config.keep));
            for n in (1..self.config.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            let _ = std::fs::rename(path, numbered(1));
        }
        match open_append(path) {
            Ok(file) => {
                self.out = std::io::BufWriter::new(file);
                self.size = 0;
                self.counters.rotations.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %path.display(), "cannot rotate the trace: {e}");
            }
        }
    }
}

/// Reads trace files (each node's oldest first; nodes merged by time, see
/// [`read_tolerant`]), skipping nothing: a line that is not a record is an
/// error naming the file and line.
pub fn read(files: &[PathBuf]) -> Result<Vec<TraceRecord>, String> {
    match read_tolerant(files)? {
        (records, 0) => Ok(records),
        (_, torn) => Err(format!("{torn} trace lines are cut short")),
    }
}

/// [`read`], but a line cut short (the JSON ends early: a node killed while
/// writing it) is skipped and counted instead of refused. Any other line
/// that is not a record is still an error naming the file and line.
///
/// The records of several nodes are merged by time ([`merge_by_time`]);
/// those of one node (its rotated files given oldest first: `path.2`,
/// `path.1`, `path`) keep their order.
pub fn read_tolerant(files: &[PathBuf]) -> Result<(Vec<TraceRecord>, usize), String> {
    let mut records = Vec::new();
    let mut torn = 0;
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(record) => records.push(record),
                Err(e) if e.is_eof() => torn += 1,
                Err(e) => {
                    return Err(format!(
                        "{}:{}: not a trace record: {e}",
                        file.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    Ok((merge_by_time(records), torn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn event(term: u64) -> TraceRecord {
        TraceRecord::Event {
            node: 1,
            event: TracedEvent {
                key: 7,
                topic: "orders".into(),
                partition: 0,
                transition: TracedTransition::BecameLeader,
                observer: 1,
                leader: Some(1),
                previous_leader: None,
                term,
                replicas: vec![1, 2, 3],
                at_ms: 1,
            },
        }
    }

    #[test]
    fn records_round_trip_and_files_rotate_within_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let config = TraceConfig {
            path: dir.path().join("trace.jsonl"),
            max_bytes: 4096,
            keep: 2,
        };
        let writer = TraceWriter::start(&config).unwrap();
        for term in 0..200 {
            writer.record(event(term));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while writer.stats().written + writer.stats().dropped < 200 {
            assert!(Instant::now() < deadline, "{:?}", writer.stats());
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(writer);
        std::thread::sleep(Duration::from_millis(100));
        let files = [
            dir.path().join("trace.jsonl.2"),
            dir.path().join("trace.jsonl.1"),
            dir.path().join("trace.jsonl"),
        ];
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len <= 4096, "{} is {len} bytes", f.display());
        }
        assert!(!dir.path().join("trace.jsonl.3").exists(), "keep = 2");
        let records = read(&files).unwrap();
        // The newest records survive, in order.
        let terms: Vec<u64> = records
            .iter()
            .map(|r| match r {
                TraceRecord::Event { event, .. } => event.term,
                TraceRecord::Batch { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(*terms.last().unwrap(), 199);
        assert!(terms.windows(2).all(|w| w[1] == w[0] + 1), "{terms:?}");
    }

    /// Lines as the writer records them, of a failover seen by three nodes:
    /// node 1 leads orders-0 at term 2 and is killed, node 2 wins term 3,
    /// node 1 comes back and sees it. Node 1's trace rotated once; its
    /// last batch was recorded before batches carried their own time.
    const NODE1_OLDER: &str = concat!(
        r#"{"record":"event","node":1,"key":7,"topic":"orders","partition":0,"transition":"became-leader","observer":1,"leader":1,"previous_leader":null,"term":2,"replicas":[1,2,3],"at_ms":1000}"#,
        "\n",
        r#"{"record":"batch","node":1,"plugin":"assign-leader","mode":"active","events":[{"key":7,"topic":"orders","partition":0,"transition":"became-leader","observer":1,"leader":1,"previous_leader":null,"term":2,"replicas":[1,2,3],"at_ms":1000}],"calls":[{"call":"set-leader","partition":"orders-0","leader":1,"epoch":2,"outcome":"ok"}],"failed":false,"at_ms":1005}"#,
        "\n",
    );
    const NODE1: &str = concat!(
        r#"{"record":"event","node":1,"key":7,"topic":"orders","partition":0,"transition":"leader-observed","observer":1,"leader":2,"previous_leader":null,"term":3,"replicas":[1,2,3],"at_ms":3000}"#,
        "\n",
        r#"{"record":"batch","node":1,"plugin":"assign-leader","mode":"active","events":[{"key":7,"topic":"orders","partition":0,"transition":"leader-observed","observer":1,"leader":2,"previous_leader":null,"term":3,"replicas":[1,2,3],"at_ms":3000}],"calls":[],"failed":false}"#,
        "\n",
        // Written after the batch, stamped earlier (an event is stamped when
        // Raft reports it, recorded when it is handed over): kept after it.
        r#"{"record":"event","node":1,"key":7,"topic":"orders","partition":0,"transition":"leader-observed","observer":1,"leader":2,"previous_leader":null,"term":3,"replicas":[1,2,3],"at_ms":2999}"#,
        "\n",
    );
    const NODE2: &str = concat!(
        r#"{"record":"event","node":2,"key":7,"topic":"orders","partition":0,"transition":"became-leader","observer":2,"leader":2,"previous_leader":1,"term":3,"replicas":[1,2,3],"at_ms":2000}"#,
        "\n",
        r#"{"record":"batch","node":2,"plugin":"assign-leader","mode":"active","events":[{"key":7,"topic":"orders","partition":0,"transition":"became-leader","observer":2,"leader":2,"previous_leader":1,"term":3,"replicas":[1,2,3],"at_ms":2000}],"calls":[{"call":"set-leader","partition":"orders-0","leader":2,"epoch":3,"outcome":"ok"}],"failed":false,"at_ms":2004}"#,
        "\n",
    );
    const NODE3: &str = concat!(
        r#"{"record":"event","node":3,"key":7,"topic":"orders","partition":0,"transition":"leader-observed","observer":3,"leader":1,"previous_leader":null,"term":2,"replicas":[1,2,3],"at_ms":1001}"#,
        "\n",
        r#"{"record":"event","node":3,"key":7,"topic":"orders","partition":0,"transition":"leader-observed","observer":3,"leader":2,"previous_leader":1,"term":3,"replicas":[1,2,3],"at_ms":3000}"#,
        "\n",
    );

    /// Each record as `node kind time`.
    fn timeline(records: &[TraceRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                let kind = match r {
                    TraceRecord::Event { .. } => "event",
                    TraceRecord::Batch { .. } => "batch",
                };
                format!("{} {kind} {}", r.node(), r.at_ms())
            })
            .collect()
    }

    #[test]
    fn the_traces_of_several_nodes_replay_merged_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let n1_older = file("trace-1.jsonl.1", NODE1_OLDER);
        let n1 = file("trace-1.jsonl", NODE1);
        let n2 = file("trace-2.jsonl", NODE2);
        let n3 = file("trace-3.jsonl", NODE3);

        let records = read(&[n1_older.clone(), n1.clone(), n2.clone(), n3.clone()]).unwrap();
        assert_eq!(
            timeline(&records),
            [
                "1 event 1000",
                "3 event 1001",
                "1 batch 1005",
                "2 event 2000",
                "2 batch 2004",
                // Ties go to the node given first; node 1's own order holds
                // (its batch without a time of its own is placed at its
                // event's, and its late-stamped event stays after it).
                "1 event 3000",
                "1 batch 3000",
                "1 event 2999",
                "3 event 3000",
            ]
        );
        // The batch lines were read whole.
        let TraceRecord::Batch { calls, at_ms, .. } = &records[4] else {
            panic!("{records:?}")
        };
        assert_eq!((calls.len(), *at_ms), (1, 2004));

        // Given in another order, the same history: only ties between
        // nodes follow the order the nodes came in.
        let reversed = read(&[n3, n2, n1_older, n1]).unwrap();
        assert_eq!(
            timeline(&reversed),
            [
                "1 event 1000",
                "3 event 1001",
                "1 batch 1005",
                "2 event 2000",
                "2 batch 2004",
                "3 event 3000",
                "1 event 3000",
                "1 batch 3000",
                "1 event 2999",
            ]
        );
    }

    #[test]
    fn a_line_that_is_not_a_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.jsonl");
        std::fs::write(&file, "{\"record\":\"nonsense\"}\n").unwrap();
        let err = read(std::slice::from_ref(&file)).unwrap_err();
        assert!(err.contains("t.jsonl:1: not a trace record"), "{err}");
    }

    #[test]
    fn a_line_cut_by_a_crash_is_ended_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let config = TraceConfig {
            path: dir.path().join("trace.jsonl"),
            max_bytes: 1 << 20,
            keep: 1,
        };
        let whole = serde_json::to_string(&event(1)).unwrap();
        // A record, then half of one: kill -9 in the middle of a write.
        std::fs::write(
            &config.path,
            format!("{whole}\n{}", &whole[..whole.len() / 2]),
        )
        .unwrap();
        let writer = TraceWriter::start(&config).unwrap();
        writer.record(event(2));
        let deadline = Instant::now() + Duration::from_secs(30);
        while writer.stats().written < 1 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(writer);
        std::thread::sleep(Duration::from_millis(100));
        let files = [config.path.clone()];
        let (records, torn) = read_tolerant(&files).unwrap();
        assert_eq!((records.len(), torn), (2, 1));
        assert!(read(&files).is_err(), "the strict reader refuses it");
    }
}
