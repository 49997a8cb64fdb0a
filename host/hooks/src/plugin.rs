//! One loaded plugin: its long-lived instance, the call limits, failure
//! classification and the operator's `on_error` policy.

use crate::config::{ErrorPolicy, PluginConfig};
use crate::contract::{LeadershipEvent, LeadershipHook};
use crate::engine::HookEngine;
use crate::load::Validated;
use crate::state::{PluginContext, PluginState};
use crate::stats::PluginCounters;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wasmtime::{Store, Trap};

/// Longest failure message kept (wasm backtraces can be long).
const MAX_FAILURE_MESSAGE: usize = 1024;
/// Ceiling of the retry backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Trap,
    Panic,
    Timeout,
    OutOfMemory,
    /// on-events returned Err.
    Error,
    /// Instantiation or init failed.
    Init,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

struct Live {
    store: Store<PluginState>,
    bindings: LeadershipHook,
}

pub struct Plugin {
    config: PluginConfig,
    engine: HookEngine,
    validated: Validated,
    ctx: Arc<PluginContext>,
    live: Option<Live>,
    consecutive_failures: u32,
}

impl Plugin {
    pub(crate) fn new(
        config: PluginConfig,
        engine: HookEngine,
        validated: Validated,
        ctx: Arc<PluginContext>,
    ) -> Self {
        Self {
            config,
            engine,
            validated,
            ctx,
            live: None,
            consecutive_failures: 0,
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

    /// Creates the instance and runs init, unless one is live already.
    pub(crate) fn ensure_instance(&mut self) -> Result<(), Failure> {
        if self.live.is_some() {
            return Ok(());
        }
        let mut store = Store::new(
            self.engine.engine(),
            PluginState::new(self.ctx.clone(), self.config.limits.memory_bytes()),
        );
        store.limiter(|state| &mut state.limiter);
        store_arm(&mut store, self.config.limits.timeout());
        PluginCounters::bump(&self.ctx.counters.instances);
        let init_failed = |message: String| Failure {
            kind: FailureKind::Init,
            message,
        };
        let bindings = match self.validated.pre.instantiate(&mut store) {
            Ok(bindings) => bindings,
            Err(e) => {
                return Err(init_failed(format!(
                    "instantiate failed: {}",
                    classify(&store, e)
                )));
            }
        };
        match bindings.call_init(&mut store, &self.config.config_json()) {
            Ok(Ok(())) => {
                self.live = Some(Live { store, bindings });
                Ok(())
            }
            Ok(Err(message)) => Err(init_failed(format!("init returned an error: {message}"))),
            Err(e) => Err(init_failed(format!("init failed: {}", classify(&store, e)))),
        }
    }

    /// One attempt: instance (re)created if needed, then on-events.
    fn call_once(&mut self, events: &[LeadershipEvent]) -> Result<(), Failure> {
        self.ensure_instance()?;
        let live = self
            .live
            .as_mut()
            .expect("ensure_instance leaves a live instance");
        store_arm(&mut live.store, self.config.limits.timeout());
        match live.bindings.call_on_events(&mut live.store, events) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Failure {
                kind: FailureKind::Error,
                message,
            }),
            Err(e) => {
                let failure = classify(&live.store, e);
                // A trapped instance is poisoned: the next call gets a fresh one.
                self.live = None;
                Err(failure)
            }
        }
    }

    /// Delivers one batch under the plugin's `on_error` policy. Returns the
    /// last failure if the batch was given up on.
    pub fn deliver(&mut self, events: &[LeadershipEvent]) -> Result<(), Failure> {
        if self.is_disabled() {
            return Ok(());
        }
        let policy = self.config.on_error;
        let attempts = 1 + match policy.policy {
            ErrorPolicy::Retry => policy.retries,
            _ => 0,
        };
        let mut backoff = Duration::from_millis(policy.backoff_ms);
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                PluginCounters::bump(&self.ctx.counters.retries);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            match self.call_once(events) {
                Ok(()) => {
                    self.consecutive_failures = 0;
                    let c = &self.ctx.counters;
                    PluginCounters::bump(&c.batches);
                    c.events.fetch_add(events.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Err(failure) => {
                    self.record(&failure, attempt + 1, attempts);
                    last = Some(failure);
                }
            }
        }
        PluginCounters::bump(&self.ctx.counters.skipped_batches);
        self.consecutive_failures += 1;
        if policy.policy == ErrorPolicy::Disable
            && self.consecutive_failures >= policy.disable_after
        {
            self.ctx.counters.disabled.store(true, Ordering::Relaxed);
            tracing::error!(
                plugin = %self.ctx.name,
                failures = self.consecutive_failures,
                "plugin disabled after consecutive failures; reload it to enable it again"
            );
        }
        Err(last.expect("at least one attempt was made"))
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
        });
        if let Ok(mut last) = c.last_error.lock() {
            *last = Some(failure.to_string());
        }
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

fn store_arm(store: &mut Store<PluginState>, timeout: Duration) {
    store.set_epoch_deadline(HookEngine::deadline_ticks(timeout));
    store.data_mut().limiter.hit = false;
    store.data().stderr.clear_tail();
}

/// Names what went wrong in a call that did not return normally.
fn classify(store: &Store<PluginState>, error: wasmtime::Error) -> Failure {
    let trap = error.downcast_ref::<Trap>().copied();
    let stderr = store.data().stderr.tail();
    let (kind, what) = if trap == Some(Trap::Interrupt) {
        (FailureKind::Timeout, "exceeded its time limit".to_owned())
    } else if store.data().limiter.hit {
        (
            FailureKind::OutOfMemory,
            "exceeded its memory limit".to_owned(),
        )
    } else if let Some(at) = stderr.find("panicked at") {
        let panic = stderr[at..].trim_end().to_owned();
        (FailureKind::Panic, panic)
    } else {
        let root = error.root_cause().to_string();
        (FailureKind::Trap, format!("trapped: {root}"))
    };
    let mut message = what;
    if message.len() > MAX_FAILURE_MESSAGE {
        let mut cut = MAX_FAILURE_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    Failure { kind, message }
}

impl Plugin {
    pub fn info(&self) -> crate::chain::PluginInfo {
        crate::chain::PluginInfo {
            name: self.config.name.clone(),
            origin: self.validated.origin.clone(),
            contract_version: self.validated.contract_version.clone(),
            capabilities: self.validated.capabilities.clone(),
        }
    }

    pub fn config(&self) -> &PluginConfig {
        &self.config
    }
}
