//! Notification sinks named by the operator. Plugins' `notify.emit` only
//! queues; a writer thread does the I/O so a plugin never waits on a disk.
//!
//! Bounded: at most [`QUEUE`] notifications and [`QUEUE_BYTES`] bytes of
//! payload wait for the writer (beyond that `emit` answers "unavailable"),
//! and a payload keeps at most [`MAX_PAYLOAD`] bytes (the plugin runtime
//! cuts it before it gets here). A file sink's file is opened once and kept
//! open (reopened only after a write to it failed), and written a whole
//! line at a time. A topic sink appends records to a topic of this cluster
//! through its Kafka listeners ([`crate::topic_sink`]), the notifications
//! drained together as one batch.

use crate::config::{Sink, SinkKind};
use crate::topic_sink::TopicProducer;
use leaderhook_hooks::Backlog;
use leaderhook_hooks::text::{self, MAX_PAYLOAD};
use leaderhook_hooks::{Grant, PluginConfig};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Notifications waiting for the writer before `emit` reports unavailable.
pub const QUEUE: usize = 10_000;
/// Payload bytes waiting for the writer before `emit` reports unavailable.
pub const QUEUE_BYTES: usize = 8 << 20;

pub struct Sinks {
    names: BTreeMap<String, Sink>,
    queue: SyncSender<(String, String)>,
    /// The queue's bound in notifications.
    count: usize,
    budget: Arc<ByteBudget>,
    files_opened: Arc<AtomicU64>,
}

impl Sinks {
    /// Sinks without a cluster to write topic sinks to (tests).
    pub fn start(sinks: &[Sink]) -> Self {
        Self::start_for_cluster(sinks, Vec::new())
    }

    /// Sinks whose topic sinks write through `kafka`, the cluster's Kafka
    /// listeners.
    pub fn start_for_cluster(sinks: &[Sink], kafka: Vec<SocketAddr>) -> Self {
        Self::with_bounds(sinks, QUEUE, QUEUE_BYTES, kafka)
    }

    fn with_bounds(sinks: &[Sink], count: usize, bytes: usize, kafka: Vec<SocketAddr>) -> Self {
        let names: BTreeMap<String, Sink> =
            sinks.iter().map(|s| (s.name.clone(), s.clone())).collect();
        let (queue, rx) = sync_channel::<(String, String)>(count);
        let budget = Arc::new(ByteBudget::new(bytes));
        let files_opened = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            sinks: names.clone(),
            files: HashMap::new(),
            topics: names
                .values()
                .filter(|s| s.kind == SinkKind::Topic)
                .map(|s| {
                    let producer = TopicProducer::new(kafka.clone(), s.topic_name().to_owned());
                    (s.name.clone(), (producer, Vec::new()))
                })
                .collect(),
            budget: budget.clone(),
            files_opened: files_opened.clone(),
        };
        let _ = std::thread::Builder::new()
            .name("leaderhook-sinks".into())
            .spawn(move || writer.run(rx));
        Self {
            names,
            queue,
            count,
            budget,
            files_opened,
        }
    }

    pub fn has(&self, sink: &str) -> bool {
        self.names.contains_key(sink)
    }

    pub fn emit(&self, sink: &str, payload: &str) -> Result<(), Backlog> {
        // Cut unless the runtime already did (its cut carries a marker).
        let payload = if payload.len() > MAX_PAYLOAD + text::MAX_MARKER {
            text::bounded(payload, MAX_PAYLOAD)
        } else {
            payload.to_owned()
        };
        let size = payload.len();
        if !self.budget.try_reserve(size) {
            return Err(Backlog::NotificationBytes(self.budget.limit));
        }
        self.queue
            .try_send((sink.to_owned(), payload))
            .map_err(|_| {
                self.budget.release(size);
                Backlog::Notifications(self.count)
            })
    }

    /// Files opened by the writer so far (a file sink opens its file once).
    pub fn files_opened(&self) -> u64 {
        self.files_opened.load(Ordering::Relaxed)
    }
}

/// Bytes in flight between `emit` and the writer.
struct ByteBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ByteBudget {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

struct Writer {
    sinks: BTreeMap<String, Sink>,
    /// Open file sinks, by sink name.
    files: HashMap<String, BufWriter<std::fs::File>>,
    /// Topic sinks and the notifications drained for them, by sink name.
    topics: HashMap<String, (TopicProducer, Vec<String>)>,
    budget: Arc<ByteBudget>,
    files_opened: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, rx: Receiver<(String, String)>) {
        while let Ok(first) = rx.recv() {
            self.write(first);
            while let Ok(next) = rx.try_recv() {
                self.write(next);
            }
            // The queue is empty: what was written reaches the files and
            // topics.
            for (producer, pending) in self.topics.values_mut() {
                producer.send(pending);
                pending.clear();
            }
            let mut failed = Vec::new();
            for (sink, file) in &mut self.files {
                if let Err(e) = file.flush() {
                    tracing::warn!(sink = %sink, "cannot write notifications: {e}");
                    failed.push(sink.clone());
                }
            }
            for sink in failed {
                self.files.remove(&sink);
            }
        }
    }

    fn write(&mut self, (sink, payload): (String, String)) {
        self.budget.release(payload.len());
        let Some(config) = self.sinks.get(&sink) else {
            return;
        };
        match (config.kind, &config.path) {
            (SinkKind::Topic, _) => {
                if let Some((_, pending)) = self.topics.get_mut(&sink) {
                    pending.push(payload);
                }
            }
            (SinkKind::Log, _) | (SinkKind::File, None) => {
                tracing::info!(target: "leaderhook::sink", sink = %sink, "{payload}");
            }
            (SinkKind::File, Some(path)) => {
                if !self.files.contains_key(&sink) {
                    match std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                    {
                        Ok(file) => {
                            self.files_opened.fetch_add(1, Ordering::Relaxed);
                            self.files.insert(sink.clone(), BufWriter::new(file));
                        }
                        Err(e) => {
                            tracing::warn!(sink = %sink, file = %path.display(), "cannot open the sink's file: {e}");
                            return;
                        }
                    }
                }
                let file = self.files.get_mut(&sink).expect("opened above");
                // One write of the whole line: the buffer only ever holds
                // whole lines, so each flush appends whole lines (a file
                // several nodes append to gets no torn ones).
                let mut line = payload;
                line.push('\n');
                if let Err(e) = file.write_all(line.as_bytes()) {
                    tracing::warn!(sink = %sink, file = %path.display(), "cannot write notification: {e}");
                    self.files.remove(&sink);
                }
            }
        }
    }
}

/// Refuses plugins whose config names a sink the node does not declare
/// (the `sink` key of a plugin granted `notify`, the convention of the
/// example plugins): they would load, then fail at their first notification.
pub fn check_plugin_sinks(sinks: &[Sink], plugins: &[PluginConfig]) -> Result<(), String> {
    for (i, plugin) in plugins.iter().enumerate() {
        if !plugin.grants.contains(&Grant::Notify) {
            continue;
        }
        let Some(named) = plugin.config.get("sink").and_then(|s| s.as_str()) else {
            continue;
        };
        if !sinks.iter().any(|s| s.name == named) {
            let declared: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "plugins[{i}] (name {:?}): its config names sink {named:?}, which this node \
                 does not declare (declared: {}); add a [[sinks]] table named {named:?}",
                plugin.name,
                if declared.is_empty() {
                    "none".to_owned()
                } else {
                    declared.join(", ")
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_plugin_naming_an_undeclared_sink_is_refused() {
        let log = Sink {
            name: "audit".into(),
            kind: SinkKind::Log,
            path: None,
            topic: None,
        };
        let mut alert = PluginConfig::new("alert", "alert.wasm", &[Grant::Notify]);
        alert.config.insert("sink".into(), "pager".into());
        let err = check_plugin_sinks(std::slice::from_ref(&log), std::slice::from_ref(&alert))
            .unwrap_err();
        assert!(err.contains("names sink \"pager\""), "{err}");
        assert!(err.contains("declared: audit"), "{err}");
        alert.config.insert("sink".into(), "audit".into());
        assert!(check_plugin_sinks(&[log], std::slice::from_ref(&alert)).is_ok());
        // Not granted notify: it cannot emit, so its config is its own business.
        alert.grants.clear();
        alert.config.insert("sink".into(), "nowhere".into());
        assert!(check_plugin_sinks(&[], &[alert]).is_ok());
    }

    fn file_sink(path: &std::path::Path) -> Sink {
        Sink {
            name: "audit".into(),
            kind: SinkKind::File,
            path: Some(path.to_owned()),
            topic: None,
        }
    }

    #[test]
    fn the_byte_budget_refuses_what_does_not_fit_and_frees_what_was_written() {
        let budget = ByteBudget::new(10);
        assert!(budget.try_reserve(6));
        assert!(!budget.try_reserve(5), "11 bytes would not fit");
        assert!(budget.try_reserve(4));
        budget.release(6);
        assert!(budget.try_reserve(5));
        assert!(!budget.try_reserve(usize::MAX), "no overflow");
    }

    #[test]
    fn emit_refuses_once_the_queued_bytes_reach_the_bound() {
        // What the writer drains meanwhile is up to the scheduler; a payload
        // larger than the whole byte budget is refused whatever it does.
        let dir = tempfile::tempdir().unwrap();
        let sinks = Sinks::with_bounds(&[file_sink(&dir.path().join("a"))], 10, 100, Vec::new());
        let err = sinks.emit("audit", &"x".repeat(101)).unwrap_err();
        assert_eq!(err, Backlog::NotificationBytes(100));
        assert!(sinks.emit("audit", &"x".repeat(100)).is_ok());
    }

    #[test]
    fn a_file_sink_keeps_its_file_open_and_payloads_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sinks = Sinks::start(&[file_sink(&path)]);
        for i in 0..100 {
            sinks.emit("audit", &format!("record {i}")).unwrap();
        }
        sinks.emit("audit", &"y".repeat(MAX_PAYLOAD * 4)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 101 {
                let last = text.lines().last().unwrap();
                assert!(last.len() <= MAX_PAYLOAD + 100, "{}", last.len());
                assert!(last.ends_with(&format!("[truncated, {} bytes in all]", MAX_PAYLOAD * 4)));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {} lines written",
                text.lines().count()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sinks.files_opened(), 1, "opened once for 101 notifications");
    }
}
