//! The plugins of a node in config order, called one after the other on
//! each batch, on the caller's thread: the test harness and the benchmarks
//! drive one directly, for determinism. (The runtime gives each plugin its
//! own lane instead, see [`crate::dispatch`].) Each call blocks its thread
//! until the plugins return (each within its time limit).

use crate::calls::CallRecord;
use crate::capabilities::Capabilities;
use crate::config::{Grant, Mode, PluginConfig};
use crate::contract::LeadershipEvent;
use crate::engine::HookEngine;
use crate::load::LoadError;
use crate::plugin::{Failure, Plugin};
use crate::state::PluginContext;
use crate::stats::{PluginCounters, PluginStats};
use std::sync::Arc;

/// What an operator sees of a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    pub name: String,
    /// A path or `builtin:<name>`.
    pub origin: String,
    /// Hex SHA-256 of the plugin's bytes.
    #[serde(default)]
    pub content_hash: String,
    pub contract_version: String,
    /// The contract interfaces it imports.
    pub capabilities: Vec<String>,
    /// What the operator granted it.
    #[serde(default)]
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub mode: Mode,
}

/// A plugin's name and the capability calls it made in a batch.
pub type PluginCalls = (String, Vec<CallRecord>);

pub struct PluginChain {
    plugins: Vec<Plugin>,
}

impl PluginChain {
    /// Loads, validates and initialises every configured plugin. The first
    /// refusal is returned; nothing is half-started.
    pub fn load(
        engine: &HookEngine,
        caps: &Arc<dyn Capabilities>,
        configs: &[PluginConfig],
    ) -> Result<Self, LoadError> {
        let plugins = configs
            .iter()
            .map(|config| load_plugin(engine, caps, config, Arc::default()))
            .collect::<Result<_, _>>()?;
        Ok(Self { plugins })
    }

    /// [`Self::deliver`], also returning each plugin's capability calls in
    /// the batch, with their outcomes (in chain order).
    pub fn deliver_recorded(
        &mut self,
        events: &[LeadershipEvent],
    ) -> (Vec<(String, Failure)>, Vec<PluginCalls>) {
        for plugin in &self.plugins {
            plugin.counters().calls.set_capture(true);
            plugin.counters().calls.take();
        }
        let failures = self.deliver(events);
        let calls = self
            .plugins
            .iter()
            .map(|p| {
                p.counters().calls.set_capture(false);
                (p.name().to_owned(), p.counters().calls.take())
            })
            .collect();
        (failures, calls)
    }

    /// Delivers a batch to each plugin in order. A failing plugin does not
    /// stop the ones after it; its failures are returned by name.
    pub fn deliver(&mut self, events: &[LeadershipEvent]) -> Vec<(String, Failure)> {
        let plugins = &mut self.plugins;
        crate::exec::block_on(async move {
            let mut failures = Vec::new();
            for plugin in plugins {
                if let Err(failure) = plugin.deliver_async(events).await {
                    failures.push((plugin.name().to_owned(), failure));
                }
            }
            failures
        })
    }

    /// Calls `on-tick(now_ms)` on the plugin named `name` (the caller keeps
    /// the schedule: the harness ticks on its simulated clock). `None` if
    /// there is no such plugin.
    pub fn tick(&mut self, name: &str, now_ms: u64) -> Option<Result<(), Failure>> {
        let plugin = self.plugins.iter_mut().find(|p| p.name() == name)?;
        Some(plugin.tick(now_ms))
    }

    /// Swaps in an already-initialised replacement for the plugin of the
    /// same name. Returns false if there is no such plugin.
    pub fn replace(&mut self, replacement: Plugin) -> bool {
        match self
            .plugins
            .iter_mut()
            .find(|p| p.name() == replacement.name())
        {
            Some(slot) => {
                *slot = replacement;
                true
            }
            None => false,
        }
    }

    pub fn stats(&self) -> Vec<PluginStats> {
        self.plugins
            .iter()
            .map(|p| p.counters().snapshot(p.name()))
            .collect()
    }

    pub fn info(&self) -> Vec<PluginInfo> {
        self.plugins.iter().map(Plugin::info).collect()
    }
}

/// Loads one plugin and runs its init, so a plugin that refuses its config
/// is refused here, before it replaces anything.
pub(crate) fn load_plugin(
    engine: &HookEngine,
    caps: &Arc<dyn Capabilities>,
    config: &PluginConfig,
    counters: Arc<PluginCounters>,
) -> Result<Plugin, LoadError> {
    let source = engine.source(&config.path)?;
    let validated = engine.load(&source)?;
    validated.check_entry(engine, config)?;
    // A shadow's calls are validated against the real state and go nowhere.
    let caps: Arc<dyn Capabilities> = match config.mode {
        Mode::Active => caps.clone(),
        Mode::Shadow => Arc::new(crate::shadow::ShadowCaps(caps.clone())),
    };
    let ctx = Arc::new(PluginContext::new(
        &config.name,
        config.grants.clone(),
        caps,
        counters,
        &config.limits,
        engine.log_tap(),
    ));
    let content_hash = {
        use sha2::{Digest, Sha256};
        Sha256::digest(&source.bytes[..])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut plugin = Plugin::new(config.clone(), engine.clone(), validated, ctx, content_hash);
    plugin
        .ensure_instance_blocking()
        .map_err(|failure| LoadError::Init {
            origin: source.origin.clone(),
            name: config.name.clone(),
            message: failure.message,
        })?;
    plugin.counters().set_disabled(false);
    Ok(plugin)
}
