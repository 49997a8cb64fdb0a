//! Where a node's lanes report their batches when someone wants them: the
//! shadow comparisons ([`crate::shadow`]) and the recorded trace
//! ([`crate::trace`]). With neither, lanes capture nothing and pay one
//! atomic load per batch.

use crate::calls::CallRecord;
use crate::config::PluginConfig;
use crate::contract::{LeadershipEvent, NodeId};
use crate::queue::PartitionKey;
use crate::shadow::{LaneId, Participant, ShadowLedger, ShadowStats};
use crate::trace::{TraceRecord, TraceStats, TraceWriter, TracedEvent};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

pub(crate) struct Recorders {
    node: NodeId,
    trace: Option<TraceWriter>,
    ledger: Mutex<ShadowLedger>,
    /// Whether lanes capture their calls: a trace, or a shadow to compare.
    capture: AtomicBool,
}

impl Recorders {
    pub(crate) fn new(node: NodeId, trace: Option<TraceWriter>) -> Self {
        Self {
            node,
            capture: AtomicBool::new(trace.is_some()),
            trace,
            ledger: Mutex::default(),
        }
    }

    pub(crate) fn capturing(&self) -> bool {
        self.capture.load(Ordering::Relaxed)
    }

    fn ledger(&self) -> MutexGuard<'_, ShadowLedger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lanes compared from now on (after a start, apply or promote).
    pub(crate) fn set_lanes(&self, lanes: BTreeMap<LaneId, Participant>) {
        let mut ledger = self.ledger();
        ledger.set_lanes(lanes);
        self.capture.store(
            self.trace.is_some() || ledger.has_shadows(),
            Ordering::Relaxed,
        );
    }

    /// An event handed to the runtime.
    pub(crate) fn event(&self, key: PartitionKey, event: &LeadershipEvent) {
        if let Some(trace) = &self.trace {
            trace.record(TraceRecord::Event {
                node: self.node,
                event: TracedEvent::new(key, event),
            });
        }
    }

    /// A lane handled a batch.
    pub(crate) fn batch(
        &self,
        lane: LaneId,
        config: &PluginConfig,
        keys: &[PartitionKey],
        events: &[LeadershipEvent],
        calls: Vec<CallRecord>,
        failed: bool,
    ) {
        if let Some(trace) = &self.trace {
            trace.record(TraceRecord::Batch {
                node: self.node,
                plugin: config.name.clone(),
                mode: config.mode,
                events: keys
                    .iter()
                    .zip(events)
                    .map(|(k, e)| TracedEvent::new(*k, e))
                    .collect(),
                calls: calls.clone(),
                failed,
                at_ms: crate::trace::now_ms(),
            });
        }
        let mut ledger = self.ledger();
        if ledger.has_shadows() {
            ledger.batch(lane, keys, events, calls, Instant::now());
        }
    }

    pub(crate) fn shadow_results(&self) -> BTreeMap<String, ShadowStats> {
        self.ledger().results(Instant::now())
    }

    pub(crate) fn trace_stats(&self) -> Option<TraceStats> {
        self.trace.as_ref().map(TraceWriter::stats)
    }
}
