//! Counters an operator reads to see what plugins did.

use crate::calls::{CallCount, CallLedger};
use crate::config::Mode;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Live counters of one plugin, shared by its host imports and the
/// dispatcher; they survive instance recycling and reloads.
#[derive(Debug, Default)]
pub struct PluginCounters {
    pub batches: AtomicU64,
    pub events: AtomicU64,
    pub ticks: AtomicU64,
    pub traps: AtomicU64,
    pub panics: AtomicU64,
    pub timeouts: AtomicU64,
    pub out_of_memory: AtomicU64,
    pub errors: AtomicU64,
    pub init_failures: AtomicU64,
    pub retries: AtomicU64,
    pub skipped_batches: AtomicU64,
    pub instances: AtomicU64,
    pub reloads: AtomicU64,
    pub refused_calls: AtomicU64,
    pub refused_while_stale: AtomicU64,
    pub ungranted_calls: AtomicU64,
    pub log_lines: AtomicU64,
    pub log_suppressed: AtomicU64,
    pub truncated: AtomicU64,
    pub over_quota_set_leader: AtomicU64,
    pub over_quota_transfer: AtomicU64,
    pub over_quota_emit: AtomicU64,
    pub cancelled: AtomicU64,
    pub disabled: AtomicBool,
    /// Set with `disabled` when the `on_error` policy disabled the plugin
    /// (not the operator).
    pub auto_disabled: AtomicBool,
    /// Batches given up on in a row (0 after a batch that succeeded).
    pub consecutive_failures: AtomicU64,
    /// Bounded by [`crate::text::MAX_TEXT`] (plus the failure kind).
    pub last_error: Mutex<Option<String>>,
    /// Time of each `on-events` call (each attempt).
    pub latency: LatencyHistogram,
    /// Capability calls by capability and outcome (and the current batch's
    /// calls while captured).
    pub calls: CallLedger,
}

impl PluginCounters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, name: &str) -> PluginStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PluginStats {
            name: name.to_owned(),
            batches: get(&self.batches),
            events: get(&self.events),
            ticks: get(&self.ticks),
            traps: get(&self.traps),
            panics: get(&self.panics),
            timeouts: get(&self.timeouts),
            out_of_memory: get(&self.out_of_memory),
            errors: get(&self.errors),
            init_failures: get(&self.init_failures),
            retries: get(&self.retries),
            skipped_batches: get(&self.skipped_batches),
            instances: get(&self.instances),
            reloads: get(&self.reloads),
            refused_calls: get(&self.refused_calls),
            refused_while_stale: get(&self.refused_while_stale),
            ungranted_calls: get(&self.ungranted_calls),
            log_lines: get(&self.log_lines),
            log_suppressed: get(&self.log_suppressed),
            truncated: get(&self.truncated),
            over_quota: OverQuotaStats {
                set_leader: get(&self.over_quota_set_leader),
                transfer: get(&self.over_quota_transfer),
                emit: get(&self.over_quota_emit),
            },
            cancelled: get(&self.cancelled),
            queue: QueueStats::default(),
            disabled: self.disabled.load(Ordering::Relaxed),
            state: self.run_state(),
            mode: Mode::Active,
            consecutive_failures: get(&self.consecutive_failures),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
            latency: self.latency.snapshot(),
            calls: self.calls.counts(),
            capture_overflow: get(&self.calls.capture_overflow),
            shadow: None,
        }
    }

    /// Enabled and not failing, failing, or switched off (and by whom).
    pub fn run_state(&self) -> RunState {
        if self.disabled.load(Ordering::Relaxed) {
            if self.auto_disabled.load(Ordering::Relaxed) {
                RunState::AutoDisabled
            } else {
                RunState::Disabled
            }
        } else if self.consecutive_failures.load(Ordering::Relaxed) > 0 {
            RunState::Failing
        } else {
            RunState::Enabled
        }
    }

    /// Switches the plugin off or on by the operator's command (which also
    /// lifts a disable by the `on_error` policy).
    pub(crate) fn set_disabled(&self, disabled: bool) {
        self.auto_disabled.store(false, Ordering::Relaxed);
        self.disabled.store(disabled, Ordering::Relaxed);
        if !disabled {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }
}

/// What an operator sees of a plugin's health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Receiving events; its last batch succeeded (or it had none yet).
    #[default]
    Enabled,
    /// Switched off by the operator (`plugin disable`).
    Disabled,
    /// Its last batch failed (after the `on_error` policy).
    Failing,
    /// Switched off by its `on_error = { policy = "disable" }`.
    AutoDisabled,
}

impl RunState {
    pub fn name(self) -> &'static str {
        match self {
            RunState::Enabled => "enabled",
            RunState::Disabled => "disabled",
            RunState::Failing => "failing",
            RunState::AutoDisabled => "auto-disabled",
        }
    }

    /// Handling events successfully.
    pub fn is_healthy(self) -> bool {
        self == RunState::Enabled
    }
}

/// Upper bounds (µs) of the call-time histogram's buckets; the last bucket
/// is unbounded.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    10_000_000,
];

/// Call times in fixed buckets, lock-free (one atomic add per bucket hit).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatencyStats {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count = counts.iter().sum();
        LatencyStats {
            p50_us: quantile(&counts, count, 0.50),
            p99_us: quantile(&counts, count, 0.99),
            counts,
            count,
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// The upper bound of the bucket holding the `q` quantile (`None` for no
/// calls, `u64::MAX` past the last bound).
fn quantile(counts: &[u64], count: u64, q: f64) -> Option<u64> {
    if count == 0 {
        return None;
    }
    let rank = ((count as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(LATENCY_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX));
        }
    }
    Some(u64::MAX)
}

/// A copy of a [`LatencyHistogram`]: per-bucket counts (not cumulative),
/// bounds in [`LATENCY_BUCKETS_US`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_us: u64,
    /// Upper bound of the bucket holding the median call, in µs.
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// A point-in-time copy of [`PluginCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStats {
    pub name: String,
    /// on-events calls that returned Ok.
    pub batches: u64,
    /// Events delivered in those calls.
    pub events: u64,
    /// on-tick calls that returned Ok.
    pub ticks: u64,
    pub traps: u64,
    pub panics: u64,
    pub timeouts: u64,
    pub out_of_memory: u64,
    /// on-events calls that returned Err.
    pub errors: u64,
    pub init_failures: u64,
    pub retries: u64,
    /// Batches given up on after the on_error policy.
    pub skipped_batches: u64,
    /// Instances created (1 + recycles after traps).
    pub instances: u64,
    pub reloads: u64,
    /// Capability calls refused (fencing, bad partition, bad sink...).
    pub refused_calls: u64,
    /// `set-leader` calls refused while the stored assignment differed from
    /// the leader this host knows Raft elected (logged as warnings).
    pub refused_while_stale: u64,
    /// Capability calls refused because the capability was not granted.
    pub ungranted_calls: u64,
    /// Lines written to the host log (`log` calls and stdout/stderr lines).
    pub log_lines: u64,
    /// Lines dropped by the log limits (`limits.log_per_batch`, `log_per_sec`).
    pub log_suppressed: u64,
    /// Outputs cut to their size bound (error strings, log messages,
    /// stdout/stderr lines, notification payloads).
    pub truncated: u64,
    /// Capability calls refused because they were over quota.
    pub over_quota: OverQuotaStats,
    /// Calls abandoned because the operator disabled or reloaded the plugin
    /// or the runtime shut down (not failures).
    pub cancelled: u64,
    /// This plugin's own queue (filled in by the runtime; zero when the
    /// plugin is driven without one, e.g. by the harness).
    pub queue: QueueStats,
    pub disabled: bool,
    /// enabled, disabled (by the operator), failing, auto-disabled.
    pub state: RunState,
    /// active or shadow (filled in by the runtime).
    pub mode: Mode,
    pub consecutive_failures: u64,
    /// The last failure, at most [`crate::text::MAX_TEXT`] bytes of message.
    pub last_error: Option<String>,
    /// Time of each on-events call.
    pub latency: LatencyStats,
    /// Capability calls by capability and outcome.
    pub calls: Vec<CallCount>,
    /// Calls not kept for comparison or tracing because a batch's capture
    /// was full.
    pub capture_overflow: u64,
    /// A shadow plugin's agreement with the active chain.
    pub shadow: Option<crate::shadow::ShadowStats>,
}

/// Capability calls refused over quota, per capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverQuotaStats {
    pub set_leader: u64,
    pub transfer: u64,
    pub emit: u64,
}

impl PluginStats {
    /// Every failed call, of any kind.
    pub fn failures(&self) -> u64 {
        self.traps
            + self.panics
            + self.timeouts
            + self.out_of_memory
            + self.errors
            + self.init_failures
    }
}

/// Counters of a dispatch queue (one per plugin; the runtime's totals are
/// sums over its plugins, except `submitted`, counted once per event).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub submitted: u64,
    pub delivered: u64,
    /// Events replaced by a newer event of the same partition under pressure.
    pub coalesced: u64,
    /// Events dropped because the queue was full of other partitions.
    pub dropped: u64,
    /// Events dropped because a newer term of the partition was already delivered.
    pub stale: u64,
    pub pending: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_name_the_bucket_bound() {
        let h = LatencyHistogram::default();
        assert_eq!(h.snapshot().p50_us, None);
        for _ in 0..98 {
            h.observe(Duration::from_micros(70));
        }
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_us, Some(100));
        assert_eq!(s.p99_us, Some(5_000));
        assert_eq!(*s.counts.last().unwrap(), 1, "past the last bound");
    }

    #[test]
    fn states_tell_who_switched_a_plugin_off() {
        let c = PluginCounters::default();
        assert_eq!(c.run_state(), RunState::Enabled);
        c.consecutive_failures.store(2, Ordering::Relaxed);
        assert_eq!(c.run_state(), RunState::Failing);
        c.auto_disabled.store(true, Ordering::Relaxed);
        c.disabled.store(true, Ordering::Relaxed);
        assert_eq!(c.run_state(), RunState::AutoDisabled);
        c.set_disabled(true);
        assert_eq!(c.run_state(), RunState::Disabled);
        c.set_disabled(false);
        assert_eq!(c.run_state(), RunState::Enabled);
    }
}
