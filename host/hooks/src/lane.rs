//! One plugin's lane: its own bounded queue and its own worker thread, so a
//! plugin that is stuck, slow, failing or retrying delays only its own
//! events. The runtime ([`crate::dispatch`]) fans every event out to all
//! lanes.
//!
//! The operator's commands reach a busy worker through the lane's
//! [`CancelToken`]: disabling, reloading and shutting down record their
//! reason in the lane's state and cancel, under the lane's lock; the worker
//! clears the token under the same lock before it reads the state, so a
//! cancel is never lost and never outlives its reason.

use crate::cancel::CancelToken;
use crate::chain::PluginInfo;
use crate::config::{DispatchConfig, PluginConfig};
use crate::contract::LeadershipEvent;
use crate::exec;
use crate::plugin::{FailureKind, Plugin};
use crate::queue::{PartitionKey, PendingQueue, Push};
use crate::record::Recorders;
use crate::shadow::LaneId;
use crate::stats::{PluginCounters, PluginStats, QueueStats};
use crate::tick::{self, TickSchedule};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

/// The worker stopped (the runtime is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

pub(crate) struct Lane {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on new events, commands and shutdown.
    work: Condvar,
    /// Signalled when the worker finishes a round.
    progress: Condvar,
    cancel: CancelToken,
    counters: Arc<PluginCounters>,
    max_batch: usize,
    id: LaneId,
    /// Where batches and their calls go when shadows or a trace want them.
    recorders: Arc<Recorders>,
    /// Active and granted `assignments` (read on every submit, so not
    /// behind the lock).
    writes_assignments: AtomicBool,
}

struct State {
    queue: PendingQueue,
    replacement: Option<(Box<Plugin>, mpsc::Sender<()>)>,
    busy: bool,
    shutdown: bool,
    stats: QueueStats,
    info: PluginInfo,
    config: PluginConfig,
}

impl Lane {
    pub(crate) fn start(
        plugin: Plugin,
        dispatch: &DispatchConfig,
        id: LaneId,
        recorders: Arc<Recorders>,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: PendingQueue::with_bytes(dispatch.queue_capacity, dispatch.queue_bytes),
                replacement: None,
                busy: false,
                shutdown: false,
                stats: QueueStats::default(),
                info: plugin.info(),
                config: plugin.config().clone(),
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            cancel: CancelToken::default(),
            counters: plugin.counters().clone(),
            max_batch: dispatch.max_batch.max(1),
            id,
            recorders,
            writes_assignments: AtomicBool::new(writes_assignments(plugin.config())),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("leaderhook-plugin-{}", plugin.name()))
                .spawn(move || run(shared, plugin))
                .expect("spawning a plugin worker thread")
        };
        Self {
            shared,
            thread: Some(thread),
        }
    }

    pub(crate) fn name(&self) -> String {
        self.shared.lock().info.name.clone()
    }

    pub(crate) fn info(&self) -> PluginInfo {
        self.shared.lock().info.clone()
    }

    pub(crate) fn config(&self) -> PluginConfig {
        self.shared.lock().config.clone()
    }

    pub(crate) fn counters(&self) -> &Arc<PluginCounters> {
        &self.shared.counters
    }

    pub(crate) fn id(&self) -> LaneId {
        self.shared.id
    }

    /// An active plugin granted `assignments`, enabled, whose last batch
    /// succeeded: while one is in the chain the safety net stays off.
    pub(crate) fn guards_assignments(&self) -> bool {
        self.shared.writes_assignments.load(Ordering::Relaxed)
            && self.shared.counters.run_state().is_healthy()
    }

    /// Queues an event; never waits on the plugin. A disabled plugin's lane
    /// takes nothing.
    pub(crate) fn push(&self, key: PartitionKey, event: LeadershipEvent) -> Push {
        if self.shared.counters.disabled.load(Ordering::Relaxed) {
            return Push::Dropped;
        }
        let mut state = self.shared.lock();
        state.stats.submitted += 1;
        let push = state.queue.push(key, event);
        match push {
            Push::Queued => {}
            Push::Coalesced(n) => state.stats.coalesced += n as u64,
            Push::Dropped => state.stats.dropped += 1,
            Push::Stale => state.stats.stale += 1,
        }
        drop(state);
        if matches!(push, Push::Queued | Push::Coalesced(_)) {
            self.shared.work.notify_one();
        }
        push
    }

    /// Drops a partition's pending events and memory.
    pub(crate) fn forget(&self, key: PartitionKey) {
        self.shared.lock().queue.forget(key);
    }

    /// Swaps in an initialised replacement: the call in progress, if any,
    /// is abandoned and its batch handed to the replacement. Returns once
    /// the swap is done.
    pub(crate) fn replace(&self, plugin: Plugin) -> Result<(), Stopped> {
        let (done_tx, done_rx) = mpsc::channel();
        {
            let mut state = self.shared.lock();
            if state.shutdown {
                return Err(Stopped);
            }
            state.info = plugin.info();
            state.config = plugin.config().clone();
            (self.shared.writes_assignments)
                .store(writes_assignments(plugin.config()), Ordering::Relaxed);
            state.replacement = Some((Box::new(plugin), done_tx));
            self.shared.cancel.cancel();
        }
        self.shared.work.notify_one();
        done_rx.recv().map_err(|_| Stopped)
    }

    /// Turns the plugin off (its call in progress is abandoned, its pending
    /// events dropped) or back on.
    pub(crate) fn set_enabled(&self, enabled: bool) {
        let _state = self.shared.lock();
        self.shared.counters.set_disabled(!enabled);
        if !enabled {
            self.shared.cancel.cancel();
            self.shared.work.notify_one();
        }
    }

    /// Starts shutting down without waiting (see `Drop`).
    pub(crate) fn signal_shutdown(&self) {
        let mut state = self.shared.lock();
        state.shutdown = true;
        self.shared.cancel.cancel();
        drop(state);
        self.shared.work.notify_all();
        self.shared.progress.notify_all();
    }

    /// Waits until the lane has nothing pending and is not in a call.
    /// Returns false at the deadline.
    pub(crate) fn wait_idle(&self, deadline: Instant) -> bool {
        let mut state = self.shared.lock();
        while !state.shutdown
            && (!state.queue.is_empty() || state.replacement.is_some() || state.busy)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .progress
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    pub(crate) fn stats(&self) -> PluginStats {
        let (name, queue, mode) = {
            let state = self.shared.lock();
            let mut queue = state.stats.clone();
            queue.pending = state.queue.len() as u64;
            (state.info.name.clone(), queue, state.config.mode)
        };
        let mut stats = self.shared.counters.snapshot(&name);
        stats.queue = queue;
        stats.mode = mode;
        stats
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.signal_shutdown();
        if let Some(thread) = self.thread.take() {
            // The call in progress was cancelled: it ends at its next epoch
            // tick or at once if it waits on a host future.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Never held across a plugin call; a poisoned lock means a bug in
        // this file, the state itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn writes_assignments(config: &PluginConfig) -> bool {
    config.mode == crate::config::Mode::Active
        && config.grants.contains(&crate::config::Grant::Assignments)
}

/// What the worker does next.
enum Work {
    Batch(Vec<PartitionKey>, Vec<LeadershipEvent>),
    /// The plugin's `on-tick` is due (see [`crate::tick`]).
    Tick,
}

/// The worker: takes batches from the lane's queue and delivers them, and
/// calls `on-tick` when it is due.
fn run(shared: Arc<Shared>, mut plugin: Plugin) {
    let runtime = exec::new_runtime();
    plugin.attach(&shared.cancel);
    let mut ticks = TickSchedule::new(plugin.tick_interval(), Instant::now());
    loop {
        let work = {
            let mut state = shared.lock();
            let tick_due = loop {
                // Every reason for a cancel is in `state`, read below.
                shared.cancel.reset();
                if state.shutdown {
                    return;
                }
                if let Some((replacement, done)) = state.replacement.take() {
                    plugin = *replacement;
                    plugin.attach(&shared.cancel);
                    ticks = TickSchedule::new(plugin.tick_interval(), Instant::now());
                    shared.counters.set_disabled(false);
                    let _ = done.send(());
                    continue;
                }
                let disabled = shared.counters.disabled.load(Ordering::Relaxed);
                if disabled {
                    state.queue.clear();
                } else if ticks.due(Instant::now()) {
                    break true;
                } else if !state.queue.is_empty() {
                    break false;
                }
                shared.progress.notify_all();
                state = match ticks.wait(Instant::now()).filter(|_| !disabled) {
                    Some(left) => shared
                        .work
                        .wait_timeout(state, left)
                        .map(|(s, _)| s)
                        .unwrap_or_else(|e| e.into_inner().0),
                    None => shared.work.wait(state).unwrap_or_else(|e| e.into_inner()),
                };
            };
            state.busy = true;
            if tick_due {
                Work::Tick
            } else {
                let (keys, batch) = state.queue.take_keyed_batch(shared.max_batch);
                Work::Batch(keys, batch)
            }
        };
        let (keys, batch) = match work {
            Work::Batch(keys, batch) => (keys, batch),
            Work::Tick => {
                // A tick's calls are counted, never captured: recorded
                // batches (shadow comparisons, traces) are events only.
                shared.counters.calls.set_capture(false);
                let _ = runtime.block_on(plugin.tick_async(tick::now_ms()));
                shared.counters.calls.take();
                ticks.ticked(Instant::now());
                shared.lock().busy = false;
                shared.progress.notify_all();
                continue;
            }
        };
        let calls = &shared.counters.calls;
        let capture = shared.recorders.capturing();
        calls.set_capture(capture);
        let outcome = runtime.block_on(plugin.deliver_async(&batch));
        let cancelled = matches!(&outcome, Err(f) if f.kind == FailureKind::Cancelled);
        if capture && !cancelled {
            shared.recorders.batch(
                shared.id,
                plugin.config(),
                &keys,
                &batch,
                calls.take(),
                outcome.is_err(),
            );
        }
        let mut state = shared.lock();
        state.busy = false;
        match outcome {
            Err(failure) if failure.kind == FailureKind::Cancelled => {
                if state.replacement.is_some() {
                    // Reloaded mid-call: the new version gets the batch.
                    for (key, event) in keys.into_iter().zip(batch) {
                        state.queue.push(key, event);
                    }
                }
            }
            _ => state.stats.delivered += batch.len() as u64,
        }
        drop(state);
        shared.progress.notify_all();
    }
}
