//! The operator's plugin commands on a node: what runs (`plugin list`),
//! the config file as the source of truth (`plugin apply`, SIGHUP), shadow
//! comparisons (`plugin diff`) and promotion (`plugin promote`).

use super::{Admin, Failure, FailureKind};
use crate::config::NodeConfig;
use leaderhook_hooks::dispatch::RuntimeOptions;
use leaderhook_hooks::shadow::ShadowStats;
use leaderhook_hooks::trace::TraceStats;
use leaderhook_hooks::{
    ApplyReport, Grant, HooksConfig, NodeId, PluginConfig, PluginInfo, PluginStats, TraceWriter,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The name of the safety net's plugin (the embedded default).
pub const FALLBACK_NAME: &str = "fallback";

/// The runtime's safety net (unless `[dispatch] fail_to_default = false`)
/// and trace (if `[trace]` is set) for a node config.
pub fn runtime_options(config: &NodeConfig) -> anyhow::Result<RuntimeOptions> {
    let trace = match &config.trace {
        Some(trace) => Some(
            TraceWriter::start(trace)
                .map_err(|e| anyhow::anyhow!("[trace] path = {}: {e}", trace.path.display()))?,
        ),
        None => None,
    };
    Ok(RuntimeOptions {
        fallback: config.dispatch.fail_to_default.then(|| {
            PluginConfig::new(
                FALLBACK_NAME,
                crate::builtin::DEFAULT_PLUGIN_PATH,
                &[Grant::Assignments],
            )
        }),
        trace,
        node: config.node_id,
    })
}

/// One plugin as `plugin list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginEntry {
    pub info: PluginInfo,
    pub stats: PluginStats,
}

/// Every plugin of a node, the safety net and the trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginsView {
    pub node: NodeId,
    pub plugins: Vec<PluginEntry>,
    pub fallback: Option<FallbackView>,
    pub trace: Option<TraceStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FallbackView {
    /// Whether the embedded default plugin writes the assignments now.
    pub engaged: bool,
    pub switches: u64,
    pub plugin: PluginEntry,
}

/// A shadow plugin's comparison, as `plugin diff` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffView {
    pub node: NodeId,
    pub plugin: String,
    pub shadow: ShadowStats,
}

impl Admin {
    pub(super) fn plugins_view(&self) -> PluginsView {
        let stats = self.hooks.stats();
        let plugins = self
            .hooks
            .plugins()
            .into_iter()
            .filter_map(|info| {
                let stats = stats.plugins.iter().find(|s| s.name == info.name)?.clone();
                Some(PluginEntry { info, stats })
            })
            .collect();
        let fallback = stats
            .fallback
            .zip(self.hooks.fallback_info())
            .map(|(f, info)| FallbackView {
                engaged: f.engaged,
                switches: f.switches,
                plugin: PluginEntry {
                    info,
                    stats: f.plugin,
                },
            });
        PluginsView {
            node: self.node,
            plugins,
            fallback,
            trace: stats.trace,
        }
    }

    pub(super) fn diff(&self, plugin: &str) -> Result<DiffView, Failure> {
        let info = self
            .hooks
            .plugins()
            .into_iter()
            .find(|p| p.name == plugin)
            .ok_or_else(|| Failure::unknown(format!("no plugin named `{plugin}` is loaded")))?;
        let shadow = self.hooks.shadow_results().remove(plugin).ok_or_else(|| {
            Failure::refused(format!(
                "plugin `{plugin}` is {}, not in shadow mode: nothing is compared",
                info.mode.name()
            ))
        })?;
        Ok(DiffView {
            node: self.node,
            plugin: plugin.to_owned(),
            shadow,
        })
    }

    /// Re-reads this node's config file and applies its plugin changes:
    /// all validated and loaded first, nothing changed if any fails.
    pub fn apply_config(&self) -> Result<ApplyReport, Failure> {
        let file = self.config_file.as_ref().ok_or_else(|| {
            Failure::refused("this node was started without a config file to re-read")
        })?;
        let config = NodeConfig::from_file(file)
            .map_err(|e| Failure::new(FailureKind::BadRequest, format!("{e:#}")))?;
        // Sinks are opened at start: plugins are checked against those.
        crate::sinks::check_plugin_sinks(&self.sinks, &config.plugins).map_err(|e| {
            Failure::new(
                FailureKind::BadRequest,
                format!("{}: {e} (sinks change at a restart)", file.display()),
            )
        })?;
        let hooks = HooksConfig {
            dispatch: config.dispatch.clone(),
            plugins: config.plugins.clone(),
        };
        let mut report = self
            .hooks
            .apply(&hooks)
            .map_err(|e| Failure::new(FailureKind::Refused, format!("{}: {e}", file.display())))?;
        if config.sinks != self.sinks {
            report
                .notes
                .push("[[sinks]] changes take effect at the next restart".into());
        }
        if config.trace != self.trace {
            report
                .notes
                .push("[trace] changes take effect at the next restart".into());
        }
        Ok(report)
    }

    /// [`Self::apply_config`] for SIGHUP: the outcome goes to the log.
    pub fn apply_config_logged(&self, why: &str) {
        match self.apply_config() {
            Ok(report) => tracing::warn!(
                trigger = why,
                added = ?report.added,
                removed = ?report.removed,
                changed = ?report.changed,
                reordered = report.reordered,
                notes = ?report.notes,
                "plugin configuration re-read"
            ),
            Err(failure) => tracing::error!(
                trigger = why,
                "plugin configuration not applied, nothing changed: {}",
                failure.message
            ),
        }
    }

    pub(super) fn promote(
        &self,
        plugin: &str,
        replacing: Option<&str>,
        persist: bool,
    ) -> Result<serde_json::Value, Failure> {
        self.hooks
            .promote(plugin, replacing)
            .map_err(super::plugin_failure)?;
        let persisted = if persist {
            let file = self.config_file.as_ref().ok_or_else(|| {
                Failure::refused("promoted, but this node has no config file to persist it in")
            })?;
            persist_promotion(file, plugin, replacing).map_err(|e| {
                Failure::new(
                    FailureKind::Failed,
                    format!("promoted, but {} was not updated: {e:#}", file.display()),
                )
            })?;
            Some(file.display().to_string())
        } else {
            None
        };
        Ok(serde_json::json!({
            "promoted": plugin,
            "replaced": replacing,
            "persisted_in": persisted,
        }))
    }
}

/// Writes a promotion into a node config: the plugin's `mode` becomes
/// active, and the replaced plugin's entry goes. Comments and layout are
/// kept; the file is replaced whole (owner-only, like `cluster init`).
pub fn persist_promotion(file: &Path, plugin: &str, replacing: Option<&str>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)?;
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    let plugins = doc
        .get_mut("plugins")
        .and_then(|p| p.as_array_of_tables_mut())
        .ok_or_else(|| anyhow::anyhow!("no [[plugins]] tables"))?;
    let named =
        |t: &toml_edit::Table, name: &str| t.get("name").and_then(|n| n.as_str()) == Some(name);
    let entry = plugins
        .iter_mut()
        .find(|t| named(t, plugin))
        .ok_or_else(|| anyhow::anyhow!("no [[plugins]] entry named {plugin:?}"))?;
    entry.remove("mode");
    if let Some(other) = replacing {
        plugins.retain(|t| !named(t, other));
    }
    let tmp = file.with_extension("toml.tmp");
    crate::cluster::write_private(&tmp, &doc.to_string())?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promotion_is_written_keeping_comments() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node1.toml");
        std::fs::write(
            &file,
            "node_id = 1 # me\n\n[[plugins]]\nname = \"assign-leader\"\npath = \"builtin:assign-leader\"\n\n\
             [[plugins]]\n# the candidate\nname = \"candidate\"\npath = \"c.wasm\"\nmode = \"shadow\"\n",
        )
        .unwrap();
        persist_promotion(&file, "candidate", Some("assign-leader")).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("node_id = 1 # me"), "{text}");
        assert!(text.contains("# the candidate"), "{text}");
        assert!(!text.contains("assign-leader"), "{text}");
        assert!(!text.contains("shadow"), "{text}");
        assert!(persist_promotion(&file, "nobody", None).is_err());
    }
}
