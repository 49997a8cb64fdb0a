//! The runtime: one lane per plugin (its own bounded queue and worker, see
//! `lane.rs`), and [`HookRuntime::submit`] fanning each event out to every
//! lane. Submitting only takes each lane's lock briefly and never waits on
//! a plugin, so the Raft loop that calls it keeps ticking whatever the
//! plugins do; and a plugin that is stuck, slow, failing or retrying delays
//! only its own events, never the plugins after it in the chain.
//!
//! What stays ordered: each plugin sees a partition's events in term order
//! and never a term below one it was already handed for that partition
//! (see [`crate::queue`]). Plugins no longer run in lock step: a plugin may
//! see an event before the plugin configured ahead of it has.

use crate::capabilities::Capabilities;
use crate::chain::{self, PluginChain, PluginInfo};
use crate::config::HooksConfig;
use crate::contract::LeadershipEvent;
use crate::engine::HookEngine;
use crate::lane::Lane;
use crate::load::LoadError;
use crate::queue::{PartitionKey, Push};
use crate::stats::{PluginCounters, PluginStats, QueueStats};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    lanes: Vec<Lane>,
    engine: HookEngine,
    caps: Arc<dyn Capabilities>,
    submitted: AtomicU64,
    /// Test hook: events to drop on submit (see `drop_next_events`).
    drop_next: AtomicU64,
    dropped_by_hook: AtomicU64,
}

/// Everything a reader needs without asking the workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeStats {
    /// Totals over the plugins' queues (`submitted` counts each event once).
    pub queue: QueueStats,
    /// Per plugin, its own queue included.
    pub plugins: Vec<PluginStats>,
}

impl HookRuntime {
    /// Loads and initialises every configured plugin (refusing the first
    /// bad one) and starts one worker per plugin.
    pub fn start(
        engine: HookEngine,
        caps: Arc<dyn Capabilities>,
        config: &HooksConfig,
    ) -> Result<Self, LoadError> {
        let chain = PluginChain::load(&engine, &caps, &config.plugins)?;
        let lanes = chain
            .into_plugins()
            .into_iter()
            .map(|plugin| Lane::start(plugin, &config.dispatch))
            .collect();
        Ok(Self {
            lanes,
            engine,
            caps,
            submitted: AtomicU64::new(0),
            drop_next: AtomicU64::new(0),
            dropped_by_hook: AtomicU64::new(0),
        })
    }

    /// Queues an event for every enabled plugin, keyed by `key` (an id the
    /// host gives each incarnation of a partition, never reused). Never
    /// blocks on a plugin. Returns the outcome in the lane that took it
    /// best (queued, then coalesced, stale, dropped).
    pub fn submit(&self, key: PartitionKey, event: LeadershipEvent) -> Push {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        if self
            .drop_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            self.dropped_by_hook.fetch_add(1, Ordering::Relaxed);
            return Push::Dropped;
        }
        let Some((last, others)) = self.lanes.split_last() else {
            return Push::Dropped;
        };
        let mut best = Push::Dropped;
        for lane in others {
            best = better(best, lane.push(key, event.clone()));
        }
        better(best, last.push(key, event))
    }

    /// Forgets a partition (it was deleted): its pending events are dropped
    /// and its delivered terms forgotten in every plugin's queue.
    pub fn forget(&self, key: PartitionKey) {
        for lane in &self.lanes {
            lane.forget(key);
        }
    }

    /// Test hook: drops the next `count` submitted events, as a full queue
    /// would, so tests can show that lost events heal (the broker's resync).
    pub fn drop_next_events(&self, count: u64) {
        self.drop_next.store(count, Ordering::Relaxed);
    }

    /// Waits until every queued event has been handled by every plugin.
    /// Returns false on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.lanes.iter().all(|lane| lane.wait_idle(deadline))
    }

    fn lane(&self, name: &str) -> Result<&Lane, ReloadError> {
        self.lanes
            .iter()
            .find(|lane| lane.name() == name)
            .ok_or_else(|| ReloadError::UnknownPlugin(name.to_owned()))
    }

    /// Replaces plugin `name` with the file at `path` (or its current path
    /// again). The new version is loaded, checked and initialised first; if
    /// anything fails the old version keeps running and the error is
    /// returned. On success the old version's call in progress, if any, is
    /// abandoned (its batch goes to the new version), and this returns once
    /// the new version is in place.
    pub fn reload(&self, name: &str, path: Option<&str>) -> Result<(), ReloadError> {
        let lane = self.lane(name)?;
        let mut config = lane.config();
        if let Some(path) = path {
            config.path = path.to_owned();
        }
        let plugin = chain::load_plugin(&self.engine, &self.caps, &config, lane.counters().clone())
            .inspect_err(|e| {
                tracing::error!(
                    plugin = name,
                    "reload refused, the old version keeps running: {e}"
                )
            })?;
        lane.replace(plugin).map_err(|_| ReloadError::Stopped)?;
        PluginCounters::bump(&lane.counters().reloads);
        tracing::info!(plugin = name, "plugin reloaded");
        Ok(())
    }

    /// Turns plugin `name` off or back on, at once: disabling abandons its
    /// call in progress and drops its pending events; a disabled plugin
    /// receives no events. Enabling also lifts a disable by its `on_error`
    /// policy.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), ReloadError> {
        self.lane(name)?.set_enabled(enabled);
        tracing::warn!(plugin = name, enabled, "plugin switched by the operator");
        Ok(())
    }

    pub fn stats(&self) -> RuntimeStats {
        let plugins: Vec<PluginStats> = self.lanes.iter().map(Lane::stats).collect();
        let mut queue = QueueStats {
            submitted: self.submitted.load(Ordering::Relaxed),
            dropped: self.dropped_by_hook.load(Ordering::Relaxed),
            ..QueueStats::default()
        };
        for p in &plugins {
            queue.delivered += p.queue.delivered;
            queue.coalesced += p.queue.coalesced;
            queue.dropped += p.queue.dropped;
            queue.stale += p.queue.stale;
            queue.pending += p.queue.pending;
        }
        RuntimeStats { queue, plugins }
    }

    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.lanes.iter().map(Lane::info).collect()
    }
}

impl Drop for HookRuntime {
    fn drop(&mut self) {
        // Every worker is told first (each call in progress is cancelled),
        // then each is joined as the lanes drop.
        for lane in &self.lanes {
            lane.signal_shutdown();
        }
    }
}

/// The outcome that took the event better.
fn better(a: Push, b: Push) -> Push {
    fn rank(p: Push) -> usize {
        match p {
            Push::Queued => 3,
            Push::Coalesced(_) => 2,
            Push::Stale => 1,
            Push::Dropped => 0,
        }
    }
    if rank(b) > rank(a) { b } else { a }
}
