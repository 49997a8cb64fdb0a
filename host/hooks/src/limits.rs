//! Per-plugin bounds enforced inside calls: an instance's memory (all its
//! linear memories and tables together), and quotas on capability calls
//! (per batch and per second).

use crate::config::{Limits, TABLE_ELEMENT_BYTES};
use std::time::Instant;
use wasmtime::ResourceLimiter;

/// Most core instances, memories and tables one plugin instance may create.
/// A component built by `cargo` for wasm32-wasip2 has a handful of each.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 64;

/// Caps an instance's total memory (the sum of its linear memories, plus
/// its tables' elements) and remembers whether the cap was hit, so the
/// resulting trap is reported as out-of-memory rather than a plain trap.
///
/// A growth that wasmtime refuses after this limiter allowed it (beyond a
/// memory's own declared maximum) stays counted: the budget errs on the
/// strict side.
pub(crate) struct InstanceLimiter {
    limit: usize,
    used: usize,
    pub(crate) hit: bool,
}

impl InstanceLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            hit: false,
        }
    }

    /// Bytes counted against the limit so far.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    fn grow(&mut self, bytes: usize) -> bool {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                true
            }
            _ => {
                self.hit = true;
                false
            }
        }
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(desired.saturating_sub(current)))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        Ok(self.grow(elements.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// A token bucket refilled at `per_sec`, holding at most one second's worth.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    per_sec: u32,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(per_sec: u32, now: Instant) -> Self {
        Self {
            per_sec,
            tokens: f64::from(per_sec),
            last: now,
        }
    }

    pub(crate) fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens =
            (self.tokens + elapsed * f64::from(self.per_sec)).min(f64::from(self.per_sec));
    }

    pub(crate) fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The capability calls that have quotas (`log` has its own gate, see
/// [`crate::loggate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoted {
    SetLeader,
    Transfer,
    Emit,
}

impl Quoted {
    pub fn name(self) -> &'static str {
        match self {
            Quoted::SetLeader => "set-leader",
            Quoted::Transfer => "transfer",
            Quoted::Emit => "emit",
        }
    }
}

/// Why a call was over quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverQuota {
    PerBatch(Quoted, u32),
    PerSec(Quoted, u32),
}

impl std::fmt::Display for OverQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverQuota::PerBatch(call, n) => {
                write!(
                    f,
                    "over quota: {} is limited to {n} calls per batch",
                    call.name()
                )
            }
            OverQuota::PerSec(call, n) => {
                write!(
                    f,
                    "over quota: {} is limited to {n} calls per second",
                    call.name()
                )
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Quota {
    call: Quoted,
    per_batch: u32,
    used: u32,
    bucket: Bucket,
    /// A refusal in this batch has been logged.
    warned: bool,
}

impl Quota {
    fn new(call: Quoted, per_batch: u32, per_sec: u32, now: Instant) -> Self {
        Self {
            call,
            per_batch,
            used: 0,
            bucket: Bucket::new(per_sec, now),
            warned: false,
        }
    }

    fn take(&mut self) -> Result<(), OverQuota> {
        if self.used >= self.per_batch {
            return Err(OverQuota::PerBatch(self.call, self.per_batch));
        }
        if !self.bucket.take() {
            return Err(OverQuota::PerSec(self.call, self.bucket.per_sec));
        }
        self.used += 1;
        Ok(())
    }
}

/// One plugin's quotas. They outlive instances (a plugin that traps gets a
/// fresh instance, not a fresh budget). The clock is read once per batch:
/// a batch lasts at most its time limit.
#[derive(Debug, Clone)]
pub(crate) struct Quotas {
    set_leader: Quota,
    transfer: Quota,
    emit: Quota,
}

impl Quotas {
    pub(crate) fn new(limits: &Limits) -> Self {
        let now = Instant::now();
        Self {
            set_leader: Quota::new(
                Quoted::SetLeader,
                limits.set_leader_per_batch,
                limits.set_leader_per_sec,
                now,
            ),
            transfer: Quota::new(
                Quoted::Transfer,
                limits.transfer_per_batch,
                limits.transfer_per_sec,
                now,
            ),
            emit: Quota::new(
                Quoted::Emit,
                limits.emit_per_batch,
                limits.emit_per_sec,
                now,
            ),
        }
    }

    /// A new batch (an `init` or `on-events` call) starts.
    pub(crate) fn begin_batch(&mut self, now: Instant) {
        for quota in [&mut self.set_leader, &mut self.transfer, &mut self.emit] {
            quota.used = 0;
            quota.warned = false;
            quota.bucket.refill(now);
        }
    }

    fn quota(&mut self, call: Quoted) -> &mut Quota {
        match call {
            Quoted::SetLeader => &mut self.set_leader,
            Quoted::Transfer => &mut self.transfer,
            Quoted::Emit => &mut self.emit,
        }
    }

    pub(crate) fn take(&mut self, call: Quoted) -> Result<(), OverQuota> {
        self.quota(call).take()
    }

    /// True the first time it is asked per batch and call: the refusal to
    /// log (the others are only counted).
    pub(crate) fn first_refusal(&mut self, call: Quoted) -> bool {
        !std::mem::replace(&mut self.quota(call).warned, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn memory_limit_is_the_sum_over_memories_and_tables() {
        let mut limiter = InstanceLimiter::new(16 << 20);
        // Two memories of 6 MiB each: 12 MiB in all, allowed.
        assert!(limiter.memory_growing(0, 6 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 6 << 20, None).unwrap());
        // The first grows by 5 MiB: 17 MiB in all, refused, though that
        // memory alone (11 MiB) is under the limit.
        assert!(!limiter.memory_growing(6 << 20, 11 << 20, None).unwrap());
        assert!(limiter.hit);
        // 4 MiB more fits; then a table of 2^18 elements (4 MiB) does not.
        assert!(limiter.memory_growing(6 << 20, 10 << 20, None).unwrap());
        assert_eq!(limiter.used(), 16 << 20);
        assert!(!limiter.table_growing(0, 1 << 18, None).unwrap());
    }

    #[test]
    fn tables_count_against_the_memory_limit() {
        let mut limiter = InstanceLimiter::new(1 << 20);
        let elements = (1 << 20) / TABLE_ELEMENT_BYTES;
        assert!(limiter.table_growing(0, elements, None).unwrap());
        assert!(!limiter.table_growing(elements, elements + 1, None).unwrap());
        assert!(limiter.hit);
    }

    #[test]
    fn quota_per_batch_resets_each_batch() {
        let limits = Limits {
            set_leader_per_batch: 2,
            ..Limits::default()
        };
        let mut quotas = Quotas::new(&limits);
        assert_eq!(quotas.take(Quoted::SetLeader), Ok(()));
        assert_eq!(quotas.take(Quoted::SetLeader), Ok(()));
        assert_eq!(
            quotas.take(Quoted::SetLeader),
            Err(OverQuota::PerBatch(Quoted::SetLeader, 2))
        );
        assert_eq!(
            quotas.take(Quoted::Transfer),
            Ok(()),
            "each call its own quota"
        );
        quotas.begin_batch(Instant::now());
        assert_eq!(quotas.take(Quoted::SetLeader), Ok(()));
    }

    #[test]
    fn quota_per_second_refills_with_time() {
        let limits = Limits {
            emit_per_sec: 10,
            ..Limits::default()
        };
        let start = Instant::now();
        let mut quotas = Quotas::new(&limits);
        quotas.begin_batch(start);
        for _ in 0..10 {
            assert_eq!(quotas.take(Quoted::Emit), Ok(()));
        }
        assert_eq!(
            quotas.take(Quoted::Emit),
            Err(OverQuota::PerSec(Quoted::Emit, 10))
        );
        // Another batch at once: still empty.
        quotas.begin_batch(start);
        assert!(quotas.take(Quoted::Emit).is_err());
        // Half a second later: five more.
        quotas.begin_batch(start + Duration::from_millis(500));
        for _ in 0..5 {
            assert_eq!(quotas.take(Quoted::Emit), Ok(()));
        }
        assert!(quotas.take(Quoted::Emit).is_err());
        // Long idle: the bucket holds one second's worth, no more.
        quotas.begin_batch(start + Duration::from_secs(100));
        for _ in 0..10 {
            assert_eq!(quotas.take(Quoted::Emit), Ok(()));
        }
        assert!(quotas.take(Quoted::Emit).is_err());
    }
}
