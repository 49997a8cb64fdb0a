//! How much one plugin may write to the host log: `log` calls and
//! stdout/stderr lines share one gate, limited per batch and per second
//! (`limits.log_per_batch`, `limits.log_per_sec`). Lines over the limit are
//! dropped and counted, and a summary ("N lines suppressed") is logged at
//! most once per [`SUMMARY_EVERY`].

use crate::limits::Bucket;
use crate::stats::PluginCounters;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shortest interval between two "lines suppressed" summaries of a plugin.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(1);
/// Warnings about one plugin's failed calls logged per second at most.
pub const FAILURE_WARNINGS_PER_SEC: u32 = 10;

pub(crate) struct LogGate {
    plugin: Arc<str>,
    /// What the lines are, for the summary.
    what: &'static str,
    /// Where suppressed lines are counted, if anywhere.
    counters: Option<Arc<PluginCounters>>,
    per_batch: u32,
    /// Outside the lock: reset on every call, which is the hot path.
    used_in_batch: AtomicU32,
    /// Some lines were suppressed since the last summary (read without the
    /// lock after every call).
    owes_summary: AtomicBool,
    state: Mutex<GateState>,
}

struct GateState {
    bucket: Bucket,
    /// Suppressed since the last summary.
    suppressed: u64,
    last_summary: Instant,
}

impl LogGate {
    /// The gate for a plugin's own output, suppressions counted.
    pub(crate) fn output(
        plugin: Arc<str>,
        counters: Arc<PluginCounters>,
        per_batch: u32,
        per_sec: u32,
    ) -> Self {
        Self::new(
            plugin,
            "plugin log lines",
            Some(counters),
            per_batch,
            per_sec,
        )
    }

    /// The gate for the host's warnings about a plugin's failed calls
    /// (the failures themselves are counted anyway).
    pub(crate) fn failures(plugin: Arc<str>) -> Self {
        Self::new(
            plugin,
            "failure warnings",
            None,
            u32::MAX,
            FAILURE_WARNINGS_PER_SEC,
        )
    }

    fn new(
        plugin: Arc<str>,
        what: &'static str,
        counters: Option<Arc<PluginCounters>>,
        per_batch: u32,
        per_sec: u32,
    ) -> Self {
        let now = Instant::now();
        Self {
            plugin,
            what,
            counters,
            per_batch,
            used_in_batch: AtomicU32::new(0),
            owes_summary: AtomicBool::new(false),
            state: Mutex::new(GateState {
                bucket: Bucket::new(per_sec, now),
                suppressed: 0,
                last_summary: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A batch starts: the per-batch allowance is renewed.
    pub(crate) fn begin_batch(&self) {
        self.used_in_batch.store(0, Ordering::Relaxed);
    }

    /// Whether one more line may be written. Refusals are counted.
    pub(crate) fn admit(&self) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        state.bucket.refill(now);
        let used = self.used_in_batch.load(Ordering::Relaxed);
        let admitted = used < self.per_batch && state.bucket.take();
        if admitted {
            self.used_in_batch.store(used + 1, Ordering::Relaxed);
        } else {
            state.suppressed += 1;
            self.owes_summary.store(true, Ordering::Relaxed);
            if let Some(counters) = &self.counters {
                counters.log_suppressed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.summarize_locked(&mut state, now);
        admitted
    }

    /// Logs the summary if lines were suppressed and one is due (called
    /// on every line and after every batch).
    pub(crate) fn summarize(&self) {
        if !self.owes_summary.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let mut state = self.lock();
        self.summarize_locked(&mut state, now);
    }

    fn summarize_locked(&self, state: &mut GateState, now: Instant) {
        if state.suppressed == 0 || now.duration_since(state.last_summary) < SUMMARY_EVERY {
            return;
        }
        let suppressed = std::mem::take(&mut state.suppressed);
        self.owes_summary.store(false, Ordering::Relaxed);
        let since = now.duration_since(state.last_summary);
        state.last_summary = now;
        tracing::warn!(
            target: "leaderhook::plugin",
            plugin = %self.plugin,
            suppressed,
            "{suppressed} {} suppressed in the last {:.1} s (over the plugin's log limits)",
            self.what,
            since.as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_batch_allowance_are_suppressed_and_counted() {
        let counters = Arc::new(PluginCounters::default());
        let gate = LogGate::output("p".into(), counters.clone(), 3, 1000);
        let admitted = (0..10).filter(|_| gate.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(counters.log_suppressed.load(Ordering::Relaxed), 7);
        gate.begin_batch();
        assert!(gate.admit(), "a new batch has a new allowance");
    }

    #[test]
    fn lines_over_the_rate_are_suppressed() {
        let counters = Arc::new(PluginCounters::default());
        // 2 per second: only a stall of half a second inside the loop
        // below would let a third line through.
        let gate = LogGate::output("p".into(), counters.clone(), 1000, 2);
        let admitted = (0..20)
            .filter(|_| {
                gate.begin_batch();
                gate.admit()
            })
            .count();
        assert_eq!(admitted, 2, "one second's worth, however many batches");
        assert_eq!(counters.log_suppressed.load(Ordering::Relaxed), 18);
    }
}
