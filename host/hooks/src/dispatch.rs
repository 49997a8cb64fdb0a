//! The dispatcher: a bounded queue in front of a [`PluginChain`] running on
//! its own thread. [`HookRuntime::submit`] only takes a short lock and never
//! waits on a plugin, so the Raft loop that calls it keeps ticking whatever
//! the plugins do. See [`crate::queue`] for the overflow rules.

use crate::capabilities::Capabilities;
use crate::chain::{self, PluginChain, PluginInfo};
use crate::config::{DispatchConfig, HooksConfig};
use crate::contract::LeadershipEvent;
use crate::engine::HookEngine;
use crate::load::LoadError;
use crate::plugin::Plugin;
use crate::queue::{PendingQueue, Push};
use crate::stats::{PluginCounters, PluginStats, QueueStats};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no plugin named `{0}` is loaded")]
    UnknownPlugin(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the dispatcher has stopped")]
    Stopped,
}

pub struct HookRuntime {
    shared: Arc<Shared>,
    engine: HookEngine,
    caps: Arc<dyn Capabilities>,
    thread: Option<JoinHandle<()>>,
}

/// Everything a reader needs without asking the dispatcher thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeStats {
    pub queue: QueueStats,
    pub plugins: Vec<PluginStats>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when there is work (events or commands) or on shutdown.
    work: Condvar,
    /// Signalled when the dispatcher finishes a round.
    progress: Condvar,
    max_batch: usize,
}

struct State {
    queue: PendingQueue,
    /// Test hook: events to drop on submit (see `drop_next_events`).
    drop_next: u64,
    commands: VecDeque<Command>,
    busy: bool,
    shutdown: bool,
    stats: QueueStats,
    plugins: Vec<PluginEntry>,
}

#[derive(Clone)]
struct PluginEntry {
    info: PluginInfo,
    config: crate::config::PluginConfig,
    counters: Arc<PluginCounters>,
}

enum Command {
    Replace(Box<Plugin>, mpsc::Sender<()>),
}

impl HookRuntime {
    /// Loads every configured plugin (refusing the first bad one) and starts
    /// the dispatcher thread.
    pub fn start(
        engine: HookEngine,
        caps: Arc<dyn Capabilities>,
        config: &HooksConfig,
    ) -> Result<Self, LoadError> {
        let chain = PluginChain::load(&engine, &caps, &config.plugins)?;
        Ok(Self::with_chain(
            engine,
            caps,
            &config.dispatch,
            chain,
            config,
        ))
    }

    fn with_chain(
        engine: HookEngine,
        caps: Arc<dyn Capabilities>,
        dispatch: &DispatchConfig,
        chain: PluginChain,
        config: &HooksConfig,
    ) -> Self {
        let plugins = chain
            .info()
            .into_iter()
            .zip(chain.counters())
            .zip(&config.plugins)
            .map(|((info, (_, counters)), config)| PluginEntry {
                info,
                config: config.clone(),
                counters,
            })
            .collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: PendingQueue::new(dispatch.queue_capacity),
                drop_next: 0,
                commands: VecDeque::new(),
                busy: false,
                shutdown: false,
                stats: QueueStats::default(),
                plugins,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            max_batch: dispatch.max_batch.max(1),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("leaderhook-dispatch".into())
                .spawn(move || run(shared, chain))
                .expect("spawning the dispatcher thread")
        };
        Self {
            shared,
            engine,
            caps,
            thread: Some(thread),
        }
    }

    /// Queues an event for every plugin. Never blocks on a plugin.
    pub fn submit(&self, event: LeadershipEvent) -> Push {
        let mut state = self.shared.lock();
        state.stats.submitted += 1;
        if state.drop_next > 0 {
            state.drop_next -= 1;
            state.stats.dropped += 1;
            return Push::Dropped;
        }
        let push = state.queue.push(event);
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

    /// Test hook: drops the next `count` submitted events, as a full queue
    /// would, so tests can show that lost events heal (the broker's resync).
    pub fn drop_next_events(&self, count: u64) {
        self.shared.lock().drop_next = count;
    }

    /// Waits until every queued event has been handled by every plugin.
    /// Returns false on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while !state.queue.is_empty() || !state.commands.is_empty() || state.busy {
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

    /// Replaces plugin `name` with the file at `path` (or its current path
    /// again). The new version is loaded, checked and initialised first; if
    /// anything fails the old version keeps running and the error is
    /// returned. On success, the swap happens between two batches and this
    /// returns once it has.
    pub fn reload(&self, name: &str, path: Option<&str>) -> Result<(), ReloadError> {
        let entry = self
            .shared
            .lock()
            .plugins
            .iter()
            .find(|p| p.info.name == name)
            .cloned()
            .ok_or_else(|| ReloadError::UnknownPlugin(name.to_owned()))?;
        let mut config = entry.config.clone();
        if let Some(path) = path {
            config.path = path.to_owned();
        }
        let plugin = chain::load_plugin(&self.engine, &self.caps, &config, entry.counters.clone())
            .inspect_err(|e| {
                tracing::error!(
                    plugin = name,
                    "reload refused, the old version keeps running: {e}"
                )
            })?;
        let info = plugin.info();
        let (done_tx, done_rx) = mpsc::channel();
        {
            let mut state = self.shared.lock();
            if state.shutdown {
                return Err(ReloadError::Stopped);
            }
            state
                .commands
                .push_back(Command::Replace(Box::new(plugin), done_tx));
            if let Some(slot) = state.plugins.iter_mut().find(|p| p.info.name == name) {
                slot.info = info;
                slot.config = config;
            }
        }
        self.shared.work.notify_one();
        done_rx.recv().map_err(|_| ReloadError::Stopped)?;
        PluginCounters::bump(&entry.counters.reloads);
        tracing::info!(plugin = name, "plugin reloaded");
        Ok(())
    }

    /// Turns plugin `name` off or back on, at once (it takes effect from
    /// the next batch). A disabled plugin receives no events and keeps its
    /// instance; enabling also lifts a disable by its `on_error` policy.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), ReloadError> {
        let state = self.shared.lock();
        let entry = state
            .plugins
            .iter()
            .find(|p| p.info.name == name)
            .ok_or_else(|| ReloadError::UnknownPlugin(name.to_owned()))?;
        entry.counters.disabled.store(!enabled, Ordering::Relaxed);
        tracing::warn!(plugin = name, enabled, "plugin switched by the operator");
        Ok(())
    }

    pub fn stats(&self) -> RuntimeStats {
        let state = self.shared.lock();
        let mut queue = state.stats.clone();
        queue.pending = state.queue.len() as u64;
        RuntimeStats {
            queue,
            plugins: state
                .plugins
                .iter()
                .map(|p| p.counters.snapshot(&p.info.name))
                .collect(),
        }
    }

    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.shared
            .lock()
            .plugins
            .iter()
            .map(|p| p.info.clone())
            .collect()
    }
}

impl Drop for HookRuntime {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        if let Some(thread) = self.thread.take() {
            // A plugin call in progress ends within its time limit.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across a plugin call, so a poisoned lock
        // means a bug in this file; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn run(shared: Arc<Shared>, mut chain: PluginChain) {
    loop {
        let (commands, batch) = {
            let mut state = shared.lock();
            while state.queue.is_empty() && state.commands.is_empty() && !state.shutdown {
                state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.shutdown {
                return;
            }
            state.busy = true;
            let commands: Vec<Command> = state.commands.drain(..).collect();
            (commands, state.queue.take_batch(shared.max_batch))
        };
        for Command::Replace(plugin, done) in commands {
            plugin.counters().disabled.store(false, Ordering::Relaxed);
            chain.replace(*plugin);
            let _ = done.send(());
        }
        if !batch.is_empty() {
            chain.deliver(&batch);
        }
        let mut state = shared.lock();
        state.busy = false;
        state.stats.delivered += batch.len() as u64;
        drop(state);
        shared.progress.notify_all();
    }
}
