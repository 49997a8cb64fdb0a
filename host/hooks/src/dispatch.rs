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
use crate::chain::{self, PluginInfo};
use crate::config::{DispatchConfig, Grant, HooksConfig, Mode, PluginConfig};
use crate::contract::LeadershipEvent;
use crate::engine::HookEngine;
use crate::lane::Lane;
use crate::load::LoadError;
use crate::plugin::Plugin;
use crate::queue::{PartitionKey, Push};
use crate::record::Recorders;
use crate::shadow::{LaneId, Participant, ShadowStats};
use crate::stats::{PluginCounters, PluginStats, QueueStats};
use crate::trace::{TraceStats, TraceWriter};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no plugin named `{0}` is loaded")]
    UnknownPlugin(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the dispatcher has stopped")]
    Stopped,
    #[error("plugin `{0}` is not in shadow mode")]
    NotShadow(String),
    #[error("plugin `{0}` is in shadow mode: `--replacing` names an active plugin")]
    ReplacingShadow(String),
    #[error("invalid plugin configuration: {0}")]
    Invalid(String),
}

/// The runtime's optional parts.
#[derive(Default)]
pub struct RuntimeOptions {
    /// The plugin that takes over the assignments while no healthy active
    /// plugin holds the `assignments` grant (the broker passes its embedded
    /// default; `[dispatch] fail_to_default = false` leaves it out).
    pub fallback: Option<PluginConfig>,
    /// Records events and batches (`[trace]`).
    pub trace: Option<TraceWriter>,
    /// The node the runtime runs on (named in trace records).
    pub node: crate::contract::NodeId,
}

pub struct HookRuntime {
    /// The chain, in config order (active and shadow plugins). Replaced
    /// whole by `apply` and `promote`; `submit` reads it.
    lanes: RwLock<Arc<Vec<Arc<Lane>>>>,
    fallback: Option<Fallback>,
    engine: HookEngine,
    caps: Arc<dyn Capabilities>,
    dispatch: DispatchConfig,
    recorders: Arc<Recorders>,
    next_lane: AtomicU64,
    /// One reconfiguration (apply, promote, reload) at a time.
    reconfiguring: Mutex<()>,
    submitted: AtomicU64,
    /// Test hook: events to drop on submit (see `drop_next_events`).
    drop_next: AtomicU64,
    dropped_by_hook: AtomicU64,
}

/// The safety net: the embedded default plugin's lane, fed while no
/// healthy active plugin holding `assignments` is in the chain.
struct Fallback {
    lane: Arc<Lane>,
    engaged: Arc<AtomicBool>,
    switches: AtomicU64,
}

/// Everything a reader needs without asking the workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeStats {
    /// Totals over the plugins' queues (`submitted` counts each event once).
    pub queue: QueueStats,
    /// Per plugin, its own queue included.
    pub plugins: Vec<PluginStats>,
    /// The safety net, if the runtime has one.
    #[serde(default)]
    pub fallback: Option<FallbackStats>,
    /// The recorded trace, if one is configured.
    #[serde(default)]
    pub trace: Option<TraceStats>,
}

/// What the safety net is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FallbackStats {
    /// Whether the embedded default plugin writes the assignments now.
    pub engaged: bool,
    /// Times it took over or handed back.
    pub switches: u64,
    pub plugin: PluginStats,
}

/// What `apply` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApplyReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Reloaded: a new path, file content, config table, limits, grants,
    /// policy or mode.
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Whether the chain's order changed.
    pub reordered: bool,
    /// Settings that take effect only at a restart.
    pub notes: Vec<String>,
}

impl ApplyReport {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.reordered
    }
}

/// Why `apply` changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid plugin configuration: {0}")]
    Invalid(String),
    #[error("plugin `{name}` refused, nothing changed: {source}")]
    Load {
        name: String,
        #[source]
        source: LoadError,
    },
    #[error("the dispatcher has stopped")]
    Stopped,
}

impl HookRuntime {
    /// Loads and initialises every configured plugin (refusing the first
    /// bad one) and starts one worker per plugin. No safety net, no trace.
    pub fn start(
        engine: HookEngine,
        caps: Arc<dyn Capabilities>,
        config: &HooksConfig,
    ) -> Result<Self, LoadError> {
        Self::start_with(engine, caps, config, RuntimeOptions::default())
    }

    /// [`Self::start`] with a safety net and a trace.
    pub fn start_with(
        engine: HookEngine,
        caps: Arc<dyn Capabilities>,
        config: &HooksConfig,
        options: RuntimeOptions,
    ) -> Result<Self, LoadError> {
        let recorders = Arc::new(Recorders::new(options.node, options.trace));
        let mut runtime = Self {
            lanes: RwLock::default(),
            fallback: None,
            engine,
            caps,
            dispatch: config.dispatch.clone(),
            recorders,
            next_lane: AtomicU64::new(1),
            reconfiguring: Mutex::new(()),
            submitted: AtomicU64::new(0),
            drop_next: AtomicU64::new(0),
            dropped_by_hook: AtomicU64::new(0),
        };
        let mut lanes = Vec::new();
        for plugin_config in &config.plugins {
            let plugin = runtime.load(plugin_config, Arc::default())?;
            lanes.push(runtime.start_lane(plugin));
        }
        if let Some(fallback) = options.fallback {
            let plugin = runtime.load(&fallback, Arc::default())?;
            runtime.fallback = Some(Fallback {
                lane: runtime.start_lane(plugin),
                engaged: Arc::default(),
                switches: AtomicU64::new(0),
            });
        }
        *runtime.lanes.get_mut().unwrap_or_else(|e| e.into_inner()) = Arc::new(lanes);
        runtime.compare_lanes();
        runtime.update_fallback(&runtime.chain());
        Ok(runtime)
    }

    fn load(
        &self,
        config: &PluginConfig,
        counters: Arc<PluginCounters>,
    ) -> Result<Plugin, LoadError> {
        chain::load_plugin(&self.engine, &self.caps, config, counters)
    }

    fn start_lane(&self, plugin: Plugin) -> Arc<Lane> {
        let id = self.next_lane.fetch_add(1, Ordering::Relaxed);
        Arc::new(Lane::start(
            plugin,
            &self.dispatch,
            id,
            self.recorders.clone(),
        ))
    }

    /// The chain as it is now.
    fn chain(&self) -> Arc<Vec<Arc<Lane>>> {
        self.lanes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Tells the shadow comparisons which lanes to compare.
    fn compare_lanes(&self) {
        let mut lanes: BTreeMap<LaneId, Participant> = self
            .chain()
            .iter()
            .map(|lane| {
                let info = lane.info();
                let counters = lane.counters().clone();
                let participant = Participant {
                    shadow: info.mode == Mode::Shadow,
                    grants: info.grants,
                    receiving: Arc::new(move || !counters.disabled.load(Ordering::Relaxed)),
                    name: info.name,
                };
                (lane.id(), participant)
            })
            .collect();
        if let Some(fallback) = &self.fallback {
            let engaged = fallback.engaged.clone();
            lanes.insert(
                fallback.lane.id(),
                Participant {
                    shadow: false,
                    grants: vec![Grant::Assignments],
                    receiving: Arc::new(move || engaged.load(Ordering::Relaxed)),
                    name: fallback.lane.name(),
                },
            );
        }
        self.recorders.set_lanes(lanes);
    }

    /// Engages the safety net while no healthy active plugin holding the
    /// `assignments` grant is in the chain, releases it once one is; logs
    /// and counts each switch. Returns whether it is engaged.
    fn update_fallback(&self, lanes: &[Arc<Lane>]) -> bool {
        let Some(fallback) = &self.fallback else {
            return false;
        };
        let guarded = lanes.iter().any(|lane| lane.guards_assignments());
        let engage = !guarded;
        if fallback.engaged.swap(engage, Ordering::Relaxed) != engage {
            fallback.switches.fetch_add(1, Ordering::Relaxed);
            if engage {
                tracing::warn!(
                    "no enabled, healthy plugin holding the assignments grant: the embedded \
                     default plugin takes over the assignments on this node"
                );
            } else {
                tracing::warn!(
                    "a healthy plugin holding the assignments grant is back: the embedded \
                     default plugin hands the assignments back"
                );
            }
        }
        engage
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
        self.recorders.event(key, &event);
        let lanes = self.lanes.read().unwrap_or_else(|e| e.into_inner());
        let mut best = Push::Dropped;
        if self.update_fallback(&lanes)
            && let Some(fallback) = &self.fallback
        {
            best = fallback.lane.push(key, event.clone());
        }
        let Some((last, others)) = lanes.split_last() else {
            return best;
        };
        for lane in others {
            best = better(best, lane.push(key, event.clone()));
        }
        better(best, last.push(key, event))
    }

    /// Forgets a partition (it was deleted): its pending events are dropped
    /// and its delivered terms forgotten in every plugin's queue.
    pub fn forget(&self, key: PartitionKey) {
        for lane in self.chain().iter() {
            lane.forget(key);
        }
        if let Some(fallback) = &self.fallback {
            fallback.lane.forget(key);
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
        self.chain().iter().all(|lane| lane.wait_idle(deadline))
            && self
                .fallback
                .as_ref()
                .is_none_or(|f| f.lane.wait_idle(deadline))
    }

    fn lane(&self, name: &str) -> Result<Arc<Lane>, ReloadError> {
        self.chain()
            .iter()
            .find(|lane| lane.name() == name)
            .cloned()
            .ok_or_else(|| ReloadError::UnknownPlugin(name.to_owned()))
    }

    fn lock_reconfiguring(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reconfiguring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces plugin `name` with the file at `path` (or its current path
    /// again). The new version is loaded, checked and initialised first; if
    /// anything fails the old version keeps running and the error is
    /// returned. On success the old version's call in progress, if any, is
    /// abandoned (its batch goes to the new version), and this returns once
    /// the new version is in place.
    pub fn reload(&self, name: &str, path: Option<&str>) -> Result<(), ReloadError> {
        let _one = self.lock_reconfiguring();
        let lane = self.lane(name)?;
        let mut config = lane.config();
        if let Some(path) = path {
            config.path = path.to_owned();
        }
        let plugin = self
            .load(&config, lane.counters().clone())
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

    /// Makes the chain what `config` says (the config file is the source of
    /// truth): plugins added, removed, reordered, reloaded where their entry
    /// or file changed. Every new or changed plugin is loaded, checked and
    /// initialised first; if any is refused nothing changes. Unchanged
    /// plugins keep their instance, state and counters.
    pub fn apply(&self, config: &HooksConfig) -> Result<ApplyReport, ApplyError> {
        config.validate().map_err(ApplyError::Invalid)?;
        let _one = self.lock_reconfiguring();
        let current = self.chain();
        let mut report = ApplyReport::default();
        if config.dispatch != self.dispatch {
            report
                .notes
                .push("[dispatch] settings take effect at the next restart".into());
        }
        // Phase 1: load everything new or changed; nothing is touched yet.
        enum Slot {
            Keep(Arc<Lane>),
            Replace(Arc<Lane>, Plugin),
            New(Plugin),
        }
        let mut slots = Vec::new();
        for entry in &config.plugins {
            let existing = current.iter().find(|l| l.name() == entry.name);
            let slot = match existing {
                Some(lane) if !self.differs(lane, entry) => {
                    report.unchanged.push(entry.name.clone());
                    Slot::Keep(lane.clone())
                }
                Some(lane) => {
                    let plugin = self
                        .load(entry, lane.counters().clone())
                        .map_err(|source| ApplyError::Load {
                            name: entry.name.clone(),
                            source,
                        })?;
                    report.changed.push(entry.name.clone());
                    Slot::Replace(lane.clone(), plugin)
                }
                None => {
                    let plugin =
                        self.load(entry, Arc::default())
                            .map_err(|source| ApplyError::Load {
                                name: entry.name.clone(),
                                source,
                            })?;
                    report.added.push(entry.name.clone());
                    Slot::New(plugin)
                }
            };
            slots.push(slot);
        }
        report.removed = current
            .iter()
            .map(|l| l.name())
            .filter(|name| !config.plugins.iter().any(|p| &p.name == name))
            .collect();
        let kept_order: Vec<String> = current
            .iter()
            .map(|l| l.name())
            .filter(|n| config.plugins.iter().any(|p| &p.name == n))
            .collect();
        let new_order: Vec<&String> = config
            .plugins
            .iter()
            .map(|p| &p.name)
            .filter(|n| kept_order.contains(n))
            .collect();
        report.reordered = kept_order.iter().collect::<Vec<_>>() != new_order;
        if report.is_empty() {
            return Ok(report);
        }
        // Phase 2: swap, between batches.
        let mut lanes = Vec::new();
        for slot in slots {
            lanes.push(match slot {
                Slot::Keep(lane) => lane,
                Slot::Replace(lane, plugin) => {
                    lane.replace(plugin).map_err(|_| ApplyError::Stopped)?;
                    PluginCounters::bump(&lane.counters().reloads);
                    lane
                }
                Slot::New(plugin) => self.start_lane(plugin),
            });
        }
        let old = std::mem::replace(
            &mut *self.lanes.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(lanes),
        );
        self.compare_lanes();
        self.update_fallback(&self.chain());
        tracing::info!(
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            reordered = report.reordered,
            "plugin configuration applied"
        );
        // Removed lanes stop here (each abandons its call in progress).
        drop(old);
        Ok(report)
    }

    /// Whether a lane must be reloaded to match `entry`: another entry, or
    /// the same path holding other bytes now.
    fn differs(&self, lane: &Lane, entry: &PluginConfig) -> bool {
        if lane.config() != *entry {
            return true;
        }
        let hash = self.engine.source(&entry.path).map(|source| {
            use sha2::{Digest, Sha256};
            Sha256::digest(&source.bytes[..])
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        hash.map_or(true, |hash| hash != lane.info().content_hash)
    }

    /// Turns shadow plugin `name` active: it is loaded again in active mode
    /// (checked and initialised first; on failure nothing changes) and, with
    /// `replacing`, that active plugin leaves the chain in the same step.
    pub fn promote(&self, name: &str, replacing: Option<&str>) -> Result<(), ReloadError> {
        let _one = self.lock_reconfiguring();
        let lane = self.lane(name)?;
        let mut config = lane.config();
        if config.mode != Mode::Shadow {
            return Err(ReloadError::NotShadow(name.to_owned()));
        }
        if let Some(other) = replacing
            && self.lane(other)?.config().mode == Mode::Shadow
        {
            return Err(ReloadError::ReplacingShadow(other.to_owned()));
        }
        config.mode = Mode::Active;
        let plugin = self.load(&config, lane.counters().clone())?;
        lane.replace(plugin).map_err(|_| ReloadError::Stopped)?;
        let old = {
            let mut lanes = self.lanes.write().unwrap_or_else(|e| e.into_inner());
            let kept: Vec<Arc<Lane>> = lanes
                .iter()
                .filter(|l| replacing.is_none_or(|other| l.name() != other))
                .cloned()
                .collect();
            std::mem::replace(&mut *lanes, Arc::new(kept))
        };
        self.compare_lanes();
        self.update_fallback(&self.chain());
        tracing::warn!(plugin = name, replacing, "shadow plugin promoted to active");
        drop(old);
        Ok(())
    }

    /// Turns plugin `name` off or back on, at once: disabling abandons its
    /// call in progress and drops its pending events; a disabled plugin
    /// receives no events. Enabling also lifts a disable by its `on_error`
    /// policy.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), ReloadError> {
        self.lane(name)?.set_enabled(enabled);
        tracing::warn!(plugin = name, enabled, "plugin switched by the operator");
        self.update_fallback(&self.chain());
        Ok(())
    }

    pub fn stats(&self) -> RuntimeStats {
        let chain = self.chain();
        let engaged = self.update_fallback(&chain);
        let shadows = self.recorders.shadow_results();
        let plugins: Vec<PluginStats> = chain
            .iter()
            .map(|lane| {
                let mut stats = lane.stats();
                stats.shadow = shadows.get(&stats.name).cloned();
                stats
            })
            .collect();
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
        RuntimeStats {
            queue,
            plugins,
            fallback: self.fallback.as_ref().map(|f| FallbackStats {
                engaged,
                switches: f.switches.load(Ordering::Relaxed),
                plugin: f.lane.stats(),
            }),
            trace: self.recorders.trace_stats(),
        }
    }

    /// The chain's plugins, in order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.chain().iter().map(|l| l.info()).collect()
    }

    /// The embedded default plugin of the safety net, if there is one.
    pub fn fallback_info(&self) -> Option<PluginInfo> {
        self.fallback.as_ref().map(|f| f.lane.info())
    }

    /// Each shadow plugin's comparison with the active chain, by name.
    pub fn shadow_results(&self) -> BTreeMap<String, ShadowStats> {
        self.recorders.shadow_results()
    }
}

impl Drop for HookRuntime {
    fn drop(&mut self) {
        // Every worker is told first (each call in progress is cancelled),
        // then each is joined as the lanes drop.
        for lane in self.chain().iter() {
            lane.signal_shutdown();
        }
        if let Some(fallback) = &self.fallback {
            fallback.lane.signal_shutdown();
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
