//! The operator's plugin configuration, read from TOML:
//!
//! ```toml
//! [dispatch]
//! queue_capacity = 65536   # pending events per plugin before coalescing / dropping
//! queue_bytes = 16777216   # and the same bound in bytes
//! max_batch = 1024         # events per on-events call
//!
//! [[plugins]]
//! name = "assign-leader"
//! path = "builtin:assign-leader"     # or a .wasm path, relative to the config file
//! grants = ["assignments"]           # assignments | leadership | notify
//! limits = { timeout_ms = 100, memory_mib = 64 }   # and quotas: see [`Limits`]
//! on_error = { policy = "retry", retries = 3, backoff_ms = 10, max_retry_ms = 2000 }
//! [plugins.config]                   # handed to the plugin's init as JSON
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `[dispatch]` table and the `[[plugins]]` array. The broker embeds
/// both in its node config; `leaderhook demo` reads them alone.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    #[serde(default)]
    pub dispatch: DispatchConfig,
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Pending events the queue holds. When full, each partition's pending
    /// events are coalesced to its newest; if that is not enough, the new
    /// event is dropped and counted (the broker's resync heals it).
    pub queue_capacity: usize,
    /// Bytes of pending events one plugin's queue holds (each event counted
    /// at its size in memory, topic name and replica list included); the
    /// same overflow rules apply as for `queue_capacity`.
    pub queue_bytes: usize,
    /// Most events handed to one on-events call.
    pub max_batch: usize,
    /// Directory for precompiled plugin artifacts, keyed by content hash.
    pub cache_dir: Option<PathBuf>,
    /// The safety net: while no enabled, healthy, active plugin holding the
    /// `assignments` grant is in the chain, the embedded default plugin
    /// keeps the assignments following Raft (see `crate::fallback`). Only
    /// negative-control tests switch it off.
    pub fail_to_default: bool,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            queue_bytes: 16 << 20,
            max_batch: 1024,
            cache_dir: None,
            fail_to_default: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    /// A `.wasm` file, or `builtin:<name>` for a plugin shipped in the binary.
    pub path: String,
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Handed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub on_error: OnError,
    /// `active` (default) or `shadow`: a shadow plugin receives the live
    /// events but its capability calls are only recorded and compared.
    #[serde(default)]
    pub mode: Mode,
    /// Calls the plugin's `on-tick` every this many milliseconds (contract
    /// 0.2 and later); none when absent. At least [`MIN_TICK_MS`].
    #[serde(default)]
    pub tick_ms: Option<u64>,
}

/// Whether a plugin's capability calls take effect.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Its calls are applied.
    #[default]
    Active,
    /// Its calls are validated against the real state, answered as they
    /// would have been, recorded and compared with the active chain's; never
    /// applied.
    Shadow,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Active => "active",
            Mode::Shadow => "shadow",
        }
    }
}

/// Capabilities a plugin may be granted. `log` and the read-only `cluster`
/// view are always available.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// `assignments.set-leader`
    Assignments,
    /// `leadership.transfer`
    Leadership,
    /// `notify.emit`
    Notify,
}

impl Grant {
    pub const ALL: [Grant; 3] = [Grant::Assignments, Grant::Leadership, Grant::Notify];

    pub fn name(self) -> &'static str {
        match self {
            Grant::Assignments => "assignments",
            Grant::Leadership => "leadership",
            Grant::Notify => "notify",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall time one call (`init` or `on-events`, instantiation included)
    /// may take, whatever the plugin does: computing, blocking in a WASI
    /// call (sleep, poll) or calling host functions.
    pub timeout_ms: u64,
    /// Memory one instance may hold: the sum of its linear memories, with
    /// table elements counted at [`TABLE_ELEMENT_BYTES`] each.
    pub memory_mib: u64,
    /// `assignments.set-leader` calls per batch (one `init` or `on-events`
    /// call) and per second.
    pub set_leader_per_batch: u32,
    pub set_leader_per_sec: u32,
    /// `leadership.transfer` calls per batch and per second.
    pub transfer_per_batch: u32,
    pub transfer_per_sec: u32,
    /// `notify.emit` calls per batch and per second.
    pub emit_per_batch: u32,
    pub emit_per_sec: u32,
    /// Lines the plugin may write to the host log (`log` calls and
    /// stdout/stderr lines together) per batch and per second; the rest are
    /// suppressed and summarised.
    pub log_per_batch: u32,
    pub log_per_sec: u32,
}

/// What one table element counts for against `memory_mib` (a table holds
/// a pointer-sized reference per element, plus bookkeeping).
pub const TABLE_ELEMENT_BYTES: usize = 16;

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: 100,
            memory_mib: 64,
            set_leader_per_batch: 4096,
            set_leader_per_sec: 50_000,
            transfer_per_batch: 1024,
            transfer_per_sec: 2_000,
            emit_per_batch: 4096,
            emit_per_sec: 10_000,
            log_per_batch: 100,
            log_per_sec: 200,
        }
    }
}

impl Limits {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// What happens when a call fails (trap, panic, timeout, out of memory, or an
/// error result).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OnError {
    pub policy: ErrorPolicy,
    /// `retry`: attempts after the first.
    pub retries: u32,
    /// `retry`: delay before the first retry; doubles per attempt, up to 1 s.
    pub backoff_ms: u64,
    /// `retry`: no retry starts later than this after the batch's first
    /// attempt began, whatever `retries` says (the attempt running at that
    /// moment still ends within `timeout_ms`).
    pub max_retry_ms: u64,
    /// `disable`: consecutive failed batches before the plugin is disabled
    /// (until it is reloaded).
    pub disable_after: u32,
}

impl Default for OnError {
    fn default() -> Self {
        Self {
            policy: ErrorPolicy::Skip,
            retries: 3,
            backoff_ms: 10,
            max_retry_ms: 2_000,
            disable_after: 3,
        }
    }
}

impl OnError {
    pub fn max_retry(&self) -> Duration {
        Duration::from_millis(self.max_retry_ms)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorPolicy {
    /// Log, count, and move on to the next batch.
    Skip,
    /// Retry the same batch with exponential backoff, then skip.
    Retry,
    /// Skip, and disable the plugin after `disable_after` consecutive failures.
    Disable,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
}

impl HooksConfig {
    /// Reads and validates a config file. Relative plugin paths are resolved
    /// against the file's directory.
    pub fn from_file(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::from_toml(&text, file)
    }

    /// Parses and validates config text; `file` names it in errors and
    /// anchors relative paths.
    pub fn from_toml(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_owned(),
            message,
        };
        let mut config: HooksConfig = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        let base = file.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Validates and resolves `[dispatch]` and `[[plugins]]` read as part of
    /// a larger file (the broker's node config).
    pub fn from_parts(
        dispatch: DispatchConfig,
        plugins: Vec<PluginConfig>,
        file: &Path,
    ) -> Result<Self, ConfigError> {
        let mut config = HooksConfig { dispatch, plugins };
        config.validate().map_err(|message| ConfigError::Invalid {
            file: file.to_owned(),
            message,
        })?;
        config.resolve_paths(file.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Checks what serde cannot: names, limits and sizes that make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.dispatch.queue_capacity == 0 {
            return Err("dispatch.queue_capacity must be at least 1".into());
        }
        if self.dispatch.queue_bytes == 0 {
            return Err("dispatch.queue_bytes must be at least 1".into());
        }
        if self.dispatch.max_batch == 0 {
            return Err("dispatch.max_batch must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.plugins.iter().enumerate() {
            let at = format!("plugins[{i}] (name {:?})", p.name);
            if p.name.trim().is_empty() {
                return Err(format!("plugins[{i}]: name must not be empty"));
            }
            if !seen.insert(p.name.as_str()) {
                return Err(format!("{at}: duplicate plugin name"));
            }
            if p.path.trim().is_empty() {
                return Err(format!("{at}: path must not be empty"));
            }
            if p.limits.timeout_ms == 0 {
                return Err(format!("{at}: limits.timeout_ms must be at least 1"));
            }
            if p.limits.timeout_ms > MAX_TIMEOUT_MS {
                return Err(format!(
                    "{at}: limits.timeout_ms must be at most {MAX_TIMEOUT_MS}"
                ));
            }
            if p.limits.memory_mib == 0 {
                return Err(format!("{at}: limits.memory_mib must be at least 1"));
            }
            if p.limits.memory_mib > MAX_MEMORY_MIB {
                return Err(format!(
                    "{at}: limits.memory_mib must be at most {MAX_MEMORY_MIB}"
                ));
            }
            if p.on_error.max_retry_ms > MAX_RETRY_MS {
                return Err(format!(
                    "{at}: on_error.max_retry_ms must be at most {MAX_RETRY_MS}"
                ));
            }
            if let Some(tick_ms) = p.tick_ms
                && !(MIN_TICK_MS..=MAX_TICK_MS).contains(&tick_ms)
            {
                return Err(format!(
                    "{at}: tick_ms must be between {MIN_TICK_MS} and {MAX_TICK_MS}"
                ));
            }
            if p.on_error.policy == ErrorPolicy::Disable && p.on_error.disable_after == 0 {
                return Err(format!("{at}: on_error.disable_after must be at least 1"));
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in &mut self.plugins {
            if !p.path.starts_with(BUILTIN_PREFIX) && Path::new(&p.path).is_relative() {
                p.path = base.join(&p.path).to_string_lossy().into_owned();
            }
        }
        if let Some(dir) = &mut self.dispatch.cache_dir
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
    }
}

/// Longest `limits.timeout_ms` accepted (a minute).
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Largest `limits.memory_mib` accepted (4 GiB, a 32-bit memory's reach).
pub const MAX_MEMORY_MIB: u64 = 4096;
/// Shortest `tick_ms` accepted: ticks are for periodic policy, not a busy loop.
pub const MIN_TICK_MS: u64 = 10;
/// Longest `tick_ms` accepted (a day).
pub const MAX_TICK_MS: u64 = 86_400_000;
/// Longest `on_error.max_retry_ms` accepted (ten minutes).
pub const MAX_RETRY_MS: u64 = 600_000;

/// Prefix of plugin paths that name a plugin embedded in the binary.
pub const BUILTIN_PREFIX: &str = "builtin:";

impl PluginConfig {
    /// A config entry with default limits and policy.
    pub fn new(name: impl Into<String>, path: impl Into<String>, grants: &[Grant]) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            grants: grants.to_vec(),
            config: toml::Table::new(),
            limits: Limits::default(),
            on_error: OnError::default(),
            mode: Mode::Active,
            tick_ms: None,
        }
    }

    /// The config table as the JSON string `init` receives.
    pub fn config_json(&self) -> String {
        // A TOML table always converts to JSON (datetimes become strings).
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into())
    }
}
