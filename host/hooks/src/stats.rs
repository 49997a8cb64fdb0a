//! Counters an operator reads to see what plugins did.

use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// Bounded by [`crate::text::MAX_TEXT`] (plus the failure kind).
    pub last_error: Mutex<Option<String>>,
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
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }
}

/// A point-in-time copy of [`PluginCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    /// The last failure, at most [`crate::text::MAX_TEXT`] bytes of message.
    pub last_error: Option<String>,
}

/// Capability calls refused over quota, per capability.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
