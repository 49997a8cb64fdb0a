//! One loaded plugin: its long-lived instance, the call limits, failure
//! classification and the operator's `on_error` policy.
//!
//! Every call (`init` with instantiation, or `on-events`) runs as a future
//! with a deadline, and ends by its time limit whatever the plugin does:
//! - running wasm: the epoch callback (every [`EPOCH_TICK`]) traps it once
//!   the time limit's worth of ticks has passed or the call was cancelled
//!   (ticks, not the wall clock: a process starved of CPU ticks slower, so
//!   a call that was merely descheduled is not cut short);
//! - blocked in a WASI host future (sleep, poll, a clock subscription): the
//!   deadline timer or the cancel token wins the race and the call future
//!   is dropped. wasmtime then resumes the call's fiber with an error, so it
//!   unwinds at once (`StoreFiber::dispose`); the instance may be
//!   half-way through anything, so it is discarded like after a trap.
//!
//! [`EPOCH_TICK`]: crate::engine::EPOCH_TICK

use crate::cancel::CancelToken;
use crate::config::{ErrorPolicy, Limits, PluginConfig};
use crate::contract::{Call, Hook, LeadershipEvent};
use crate::engine::HookEngine;
use crate::exec;
use crate::limits::Quotas;
use crate::load::Validated;
use crate::state::{PluginContext, PluginState};
use crate::stats::PluginCounters;
use crate::text::{self, MAX_TEXT};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Ceiling of the retry backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Trap,
    Panic,
    /// The call (on-events, or instantiation and init) passed its time limit.
    Timeout,
    OutOfMemory,
    /// on-events returned Err.
    Error,
    /// init returned Err (a trap, timeout... during init has its own kind).
    Init,
    /// Abandoned: the operator disabled or reloaded the plugin, or the
    /// runtime shut down. Not the plugin's failure; not counted as one.
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    /// At most [`MAX_TEXT`] bytes of the plugin's own text, plus a marker.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// Why the epoch callback stopped a call (the error it returns, found again
/// by downcasting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Interrupted {
    #[error("the call passed its deadline")]
    Deadline,
    #[error("the call was cancelled")]
    Cancelled,
}

/// How a guarded call ended.
enum Ended<T> {
    Returned(wasmtime::Result<T>),
    /// The deadline passed while the call waited on a host future.
    TimedOut,
    /// Cancelled while the call waited on a host future.
    Cancelled,
}

/// Races a call against its deadline and the cancel token. Whichever ends
/// first ends the call: the losing call future is dropped here.
async fn guarded<T>(
    call: impl Future<Output = wasmtime::Result<T>>,
    deadline: Instant,
    cancel: &CancelToken,
) -> Ended<T> {
    let mut call = std::pin::pin!(call);
    // Most calls never wait on a host future: they finish in their first
    // poll (the epoch callback bounds that), with no timer armed.
    let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
    if let Poll::Ready(result) = first {
        return Ended::Returned(result);
    }
    tokio::select! {
        biased;
        result = call => Ended::Returned(result),
        () = tokio::time::sleep_until(deadline.into()) => Ended::TimedOut,
        () = cancel.cancelled() => Ended::Cancelled,
    }
}

struct Live {
    store: Store<PluginState>,
    bindings: Hook,
}

pub struct Plugin {
    config: PluginConfig,
    engine: HookEngine,
    validated: Validated,
    ctx: Arc<PluginContext>,
    live: Option<Live>,
    /// The quotas while no instance holds them: they outlive instances.
    quotas: Option<Quotas>,
    cancel: CancelToken,
    consecutive_failures: u32,
    /// Hex SHA-256 of the plugin's bytes.
    content_hash: String,
}

impl Plugin {
    pub(crate) fn new(
        config: PluginConfig,
        engine: HookEngine,
        validated: Validated,
        ctx: Arc<PluginContext>,
        content_hash: String,
    ) -> Self {
        let quotas = Quotas::new(&config.limits);
        Self {
            config,
            engine,
            validated,
            ctx,
            live: None,
            quotas: Some(quotas),
            cancel: CancelToken::default(),
            consecutive_failures: 0,
            content_hash,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn origin(&self) -> &str {
        &self.validated.origin
    }

    pub(crate) fn counters(&self) -> &Arc<PluginCounters> {
        &self.ctx.counters
    }

    pub fn is_disabled(&self) -> bool {
        self.ctx.counters.disabled.load(Ordering::Relaxed)
    }

    /// From now on, `cancel` abandons this plugin's calls (the lane it runs
    /// in hands it its own token).
    pub(crate) fn attach(&mut self, cancel: &CancelToken) {
        self.cancel = cancel.clone();
        if let Some(live) = &mut self.live {
            live.store.data_mut().cancel = cancel.clone();
        }
    }

    fn discard_instance(&mut self) {
        if let Some(live) = self.live.take() {
            self.quotas = Some(live.store.data().quotas.clone());
        }
    }

    /// Creates the instance and runs init, unless one is live already;
    /// blocking (see [`exec::block_on`]).
    pub(crate) fn ensure_instance_blocking(&mut self) -> Result<(), Failure> {
        exec::block_on(self.ensure_instance(Instant::now()))
    }

    /// Creates the instance and runs init, unless one is live already.
    /// Instantiation and init share one time limit, from `now`.
    async fn ensure_instance(&mut self, now: Instant) -> Result<(), Failure> {
        if self.live.is_some() {
            return Ok(());
        }
        let quotas = self
            .quotas
            .take()
            .unwrap_or_else(|| Quotas::new(&self.config.limits));
        let state = PluginState::new(
            self.ctx.clone(),
            self.config.limits.memory_bytes(),
            quotas,
            self.cancel.clone(),
        );
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.cancel.is_cancelled() {
                return Err(Interrupted::Cancelled.into());
            }
            if state.ticks_left <= 1 {
                return Err(Interrupted::Deadline.into());
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Continue(1))
        });
        PluginCounters::bump(&self.ctx.counters.instances);
        let timeout = self.config.limits.timeout();
        let deadline = now + timeout;
        store.data_mut().begin_call(now, timeout);
        store.set_epoch_deadline(1);
        let config_json = self.config.config_json();
        let pre = &self.validated.pre;
        let ended = {
            let store = &mut store;
            let start = async move {
                let bindings = pre.instantiate_async(&mut *store).await?;
                let result = bindings.call_init(&mut *store, &config_json).await?;
                Ok((bindings, result))
            };
            guarded(start, deadline, &self.cancel).await
        };
        store.data_mut().end_call();
        let failure = match ended {
            Ended::Returned(Ok((bindings, Ok(())))) => {
                self.live = Some(Live { store, bindings });
                return Ok(());
            }
            Ended::Returned(Ok((_, Err(mut message)))) => {
                bound_message(&self.ctx, &mut message);
                Failure {
                    kind: FailureKind::Init,
                    message: format!("init returned an error: {message}"),
                }
            }
            Ended::Returned(Err(e)) => {
                let mut failure = classify(&self.ctx, &self.config.limits, &store, e);
                failure.message = format!("init: {}", failure.message);
                failure
            }
            Ended::TimedOut => timed_out(&self.config.limits, "init"),
            Ended::Cancelled => cancelled(),
        };
        self.quotas = Some(store.data().quotas.clone());
        Err(failure)
    }

    /// One attempt, from `now`: instance (re)created if needed, then
    /// on-events or on-tick.
    async fn call_once(&mut self, call: Call<'_>, now: Instant) -> Result<(), Failure> {
        let now = if self.live.is_some() {
            now
        } else {
            self.ensure_instance(now).await?;
            Instant::now()
        };
        let limits = &self.config.limits;
        let Live { store, bindings } = self
            .live
            .as_mut()
            .expect("ensure_instance leaves a live instance");
        let deadline = now + limits.timeout();
        store.data_mut().begin_call(now, limits.timeout());
        store.set_epoch_deadline(1);
        let ended = guarded(bindings.call(&mut *store, call), deadline, &self.cancel).await;
        store.data_mut().end_call();
        let failure = match ended {
            Ended::Returned(Ok(Ok(()))) => return Ok(()),
            Ended::Returned(Ok(Err(mut message))) => {
                // An error result keeps the instance (and its state).
                bound_message(&self.ctx, &mut message);
                return Err(Failure {
                    kind: FailureKind::Error,
                    message,
                });
            }
            Ended::Returned(Err(e)) => {
                let mut failure = classify(&self.ctx, limits, store, e);
                // A tick's failure says so (a batch's is the default).
                if matches!(call, Call::Tick(_)) && failure.kind != FailureKind::Cancelled {
                    failure.message = format!("on-tick {}", failure.message);
                }
                failure
            }
            Ended::TimedOut => timed_out(limits, call.name()),
            Ended::Cancelled => cancelled(),
        };
        // The instance stopped mid-call: poisoned. The next call gets a
        // fresh one.
        self.discard_instance();
        Err(failure)
    }

    /// Delivers one batch under the plugin's `on_error` policy, blocking
    /// (see [`exec::block_on`]). Returns the last failure if the batch was
    /// given up on.
    pub fn deliver(&mut self, events: &[LeadershipEvent]) -> Result<(), Failure> {
        exec::block_on(self.deliver_async(events))
    }

    /// Delivers one batch under the plugin's `on_error` policy: `retry`
    /// retries at most `retries` times and starts no retry later than
    /// `max_retry_ms` after the first attempt; a cancel ends the batch at
    /// once, backoff included.
    pub(crate) async fn deliver_async(
        &mut self,
        events: &[LeadershipEvent],
    ) -> Result<(), Failure> {
        self.call_async(Call::Events(events)).await
    }

    /// Calls `on-tick(now_ms)` under the same time limit and `on_error`
    /// policy as a batch of events; blocking (see [`exec::block_on`]).
    pub fn tick(&mut self, now_ms: u64) -> Result<(), Failure> {
        exec::block_on(self.tick_async(now_ms))
    }

    pub(crate) async fn tick_async(&mut self, now_ms: u64) -> Result<(), Failure> {
        self.call_async(Call::Tick(now_ms)).await
    }

    /// How often the operator wants `on-tick` called, if at all.
    pub fn tick_interval(&self) -> Option<Duration> {
        self.config.tick_ms.map(Duration::from_millis)
    }

    /// One call (a batch or a tick) under the plugin's `on_error` policy.
    pub(crate) async fn call_async(&mut self, call: Call<'_>) -> Result<(), Failure> {
        if self.is_disabled() {
            return Ok(());
        }
        let policy = self.config.on_error;
        let attempts = 1 + match policy.policy {
            ErrorPolicy::Retry => policy.retries,
            _ => 0,
        };
        let started = Instant::now();
        let mut backoff = Duration::from_millis(policy.backoff_ms);
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                if started.elapsed() + backoff > policy.max_retry() {
                    tracing::warn!(
                        plugin = %self.ctx.name,
                        attempts = attempt,
                        "giving up on the batch: on_error.max_retry_ms ({} ms) spent",
                        policy.max_retry_ms
                    );
                    break;
                }
                PluginCounters::bump(&self.ctx.counters.retries);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = self.cancel.cancelled() => return Err(self.record_cancel()),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            let now = if attempt == 0 {
                started
            } else {
                Instant::now()
            };
            let began = Instant::now();
            let outcome = self.call_once(call, now).await;
            if !matches!(&outcome, Err(f) if f.kind == FailureKind::Cancelled) {
                self.ctx.counters.latency.observe(began.elapsed());
            }
            match outcome {
                Ok(()) => {
                    self.consecutive_failures = 0;
                    let c = &self.ctx.counters;
                    c.consecutive_failures.store(0, Ordering::Relaxed);
                    match call {
                        Call::Events(events) => {
                            PluginCounters::bump(&c.batches);
                            c.events.fetch_add(events.len() as u64, Ordering::Relaxed);
                        }
                        Call::Tick(_) => PluginCounters::bump(&c.ticks),
                    }
                    return Ok(());
                }
                Err(failure) if failure.kind == FailureKind::Cancelled => {
                    return Err(self.record_cancel());
                }
                Err(failure) => {
                    self.record(&failure, attempt + 1, attempts);
                    last = Some(failure);
                }
            }
        }
        PluginCounters::bump(&self.ctx.counters.skipped_batches);
        self.consecutive_failures += 1;
        (self.ctx.counters.consecutive_failures)
            .store(u64::from(self.consecutive_failures), Ordering::Relaxed);
        if policy.policy == ErrorPolicy::Disable
            && self.consecutive_failures >= policy.disable_after
        {
            self.ctx
                .counters
                .auto_disabled
                .store(true, Ordering::Relaxed);
            self.ctx.counters.disabled.store(true, Ordering::Relaxed);
            tracing::error!(
                plugin = %self.ctx.name,
                failures = self.consecutive_failures,
                "plugin disabled after consecutive failures; reload it to enable it again"
            );
        }
        Err(last.expect("at least one attempt was made"))
    }

    fn record_cancel(&self) -> Failure {
        PluginCounters::bump(&self.ctx.counters.cancelled);
        tracing::info!(plugin = %self.ctx.name, "plugin call abandoned (disabled, reloaded or shutting down)");
        cancelled()
    }

    fn record(&self, failure: &Failure, attempt: u32, attempts: u32) {
        let c = &self.ctx.counters;
        PluginCounters::bump(match failure.kind {
            FailureKind::Trap => &c.traps,
            FailureKind::Panic => &c.panics,
            FailureKind::Timeout => &c.timeouts,
            FailureKind::OutOfMemory => &c.out_of_memory,
            FailureKind::Error => &c.errors,
            FailureKind::Init => &c.init_failures,
            FailureKind::Cancelled => &c.cancelled,
        });
        if let Ok(mut last) = c.last_error.lock() {
            *last = Some(failure.to_string());
        }
        if self.ctx.failure_gate.admit() {
            tracing::warn!(
                plugin = %self.ctx.name,
                kind = ?failure.kind,
                attempt,
                attempts,
                "plugin call failed: {}",
                failure.message
            );
        }
    }

    pub fn info(&self) -> crate::chain::PluginInfo {
        crate::chain::PluginInfo {
            name: self.config.name.clone(),
            origin: self.validated.origin.clone(),
            content_hash: self.content_hash.clone(),
            contract_version: self.validated.contract_version.clone(),
            capabilities: self.validated.capabilities.clone(),
            grants: self.config.grants.clone(),
            mode: self.config.mode,
        }
    }

    pub fn config(&self) -> &PluginConfig {
        &self.config
    }
}

fn bound_message(ctx: &PluginContext, message: &mut String) {
    if text::bound(message, MAX_TEXT) {
        PluginCounters::bump(&ctx.counters.truncated);
    }
}

fn timed_out(limits: &Limits, call: &str) -> Failure {
    Failure {
        kind: FailureKind::Timeout,
        message: format!(
            "{call} exceeded its time limit ({} ms) waiting in a host call",
            limits.timeout_ms
        ),
    }
}

/// Names what went wrong in a call that did not return normally.
fn classify(
    ctx: &PluginContext,
    limits: &Limits,
    store: &Store<PluginState>,
    error: wasmtime::Error,
) -> Failure {
    let interrupted = error.downcast_ref::<Interrupted>().copied();
    let (kind, mut message) = if interrupted == Some(Interrupted::Cancelled) {
        return cancelled();
    } else if interrupted == Some(Interrupted::Deadline)
        || error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
    {
        (
            FailureKind::Timeout,
            format!("exceeded its time limit ({} ms)", limits.timeout_ms),
        )
    } else if store.data().limiter.hit {
        (
            FailureKind::OutOfMemory,
            format!("exceeded its memory limit ({} MiB)", limits.memory_mib),
        )
    } else {
        let stderr = store.data().stderr.tail();
        match stderr.find("panicked at") {
            Some(at) => (FailureKind::Panic, stderr[at..].trim_end().to_owned()),
            None => (
                FailureKind::Trap,
                format!("trapped: {}", error.root_cause()),
            ),
        }
    };
    bound_message(ctx, &mut message);
    Failure { kind, message }
}

fn cancelled() -> Failure {
    Failure {
        kind: FailureKind::Cancelled,
        message: "cancelled".into(),
    }
}
