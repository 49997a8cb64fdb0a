//! Notification sinks named by the operator. Plugins' `notify.emit` only
//! queues; a writer thread does the I/O so a plugin never waits on a disk.

use crate::config::{Sink, SinkKind};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{SyncSender, sync_channel};

/// Notifications waiting for the writer before `emit` reports unavailable.
const QUEUE: usize = 10_000;

pub struct Sinks {
    names: BTreeMap<String, Sink>,
    queue: SyncSender<(String, String)>,
}

impl Sinks {
    pub fn start(sinks: &[Sink]) -> Self {
        let names: BTreeMap<String, Sink> =
            sinks.iter().map(|s| (s.name.clone(), s.clone())).collect();
        let (queue, rx) = sync_channel::<(String, String)>(QUEUE);
        let kinds = names.clone();
        let _ = std::thread::Builder::new()
            .name("leaderhook-sinks".into())
            .spawn(move || {
                for (sink, payload) in rx {
                    let Some(config) = kinds.get(&sink) else { continue };
                    match (config.kind, &config.path) {
                        (SinkKind::Log, _) | (SinkKind::File, None) => {
                            tracing::info!(target: "leaderhook::sink", sink = %sink, "{payload}");
                        }
                        (SinkKind::File, Some(path)) => {
                            let written = std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(path)
                                .and_then(|mut f| writeln!(f, "{payload}"));
                            if let Err(e) = written {
                                tracing::warn!(sink = %sink, file = %path.display(), "cannot write notification: {e}");
                            }
                        }
                    }
                }
            });
        Self { names, queue }
    }

    pub fn has(&self, sink: &str) -> bool {
        self.names.contains_key(sink)
    }

    pub fn emit(&self, sink: &str, payload: &str) -> Result<(), String> {
        self.queue
            .try_send((sink.to_owned(), payload.to_owned()))
            .map_err(|_| "the sink queue is full".to_string())
    }
}
