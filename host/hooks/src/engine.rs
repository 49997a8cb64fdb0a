//! One wasmtime [`Engine`] per process, with the linker every plugin is
//! instantiated against and the ticker that drives epoch interruption (how
//! a call running wasm notices its deadline, see [`crate::plugin`]).

use crate::artifact::{ArtifactCache, ArtifactKey, CacheStats};
use crate::contract::{Line, since_v0_1_0, since_v0_2_0};
use crate::load::{self, LoadError, PluginSource, Validated};
use crate::state::{LogTap, PluginState};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

/// How often the epoch advances: how often a call running wasm checks its
/// deadline and cancellation.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Most distinct load-time warnings an engine remembers.
const MAX_WARNED: usize = 4096;

/// Cheap to clone; the ticker thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct HookEngine {
    inner: Arc<Inner>,
    /// Where plugins loaded through this handle also send their log lines.
    log_tap: Option<Arc<dyn LogTap>>,
}

struct Inner {
    engine: Engine,
    /// One linker per contract line, each with that line's imports only.
    linkers: [Linker<PluginState>; Line::ALL.len()],
    builtins: HashMap<String, &'static [u8]>,
    cache: Option<ArtifactCache>,
    /// Components compiled in this process, by SHA-256 of their bytes:
    /// loading the same plugin again (another node's runtime, a reload of
    /// an unchanged file) never recompiles.
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    /// Load-time warnings already given (see [`HookEngine::first_warning`]).
    warned: Mutex<HashSet<String>>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl HookEngine {
    pub fn new() -> anyhow::Result<Self> {
        Self::builder().build()
    }

    pub fn builder() -> HookEngineBuilder {
        HookEngineBuilder::default()
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The same engine (compiled plugins and all), whose plugins loaded
    /// from now on also hand every line they log to `tap`: the harness
    /// keeps each simulated node's lines this way.
    pub fn with_log_tap(&self, tap: Arc<dyn LogTap>) -> Self {
        Self {
            inner: self.inner.clone(),
            log_tap: Some(tap),
        }
    }

    pub(crate) fn log_tap(&self) -> Option<Arc<dyn LogTap>> {
        self.log_tap.clone()
    }

    /// The linker for plugins of `line`.
    pub(crate) fn linker(&self, line: Line) -> &Linker<PluginState> {
        &self.inner.linkers[line as usize]
    }

    /// Names of the plugins embedded in this binary (`builtin:<name>`).
    pub fn builtin_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inner.builtins.keys().map(String::as_str).collect();
        names.sort();
        names
    }

    /// Reads a plugin from a path or `builtin:<name>`.
    pub fn source(&self, path: &str) -> Result<PluginSource, LoadError> {
        PluginSource::resolve(path, &self.inner.builtins)
    }

    /// Compiles and checks a plugin against the contract, using the
    /// precompiled-artifact cache when one is configured.
    pub fn load(&self, source: &PluginSource) -> Result<Validated, LoadError> {
        load::validate(self, source)
    }

    /// The compiled component for `bytes`, compiling (or reading the
    /// precompiled-artifact cache) only the first time.
    pub(crate) fn compile(&self, bytes: &[u8]) -> wasmtime::Result<Component> {
        let digest = load::sha256(bytes);
        let compiled = |map: &mut HashMap<_, _>| map.get(&digest).cloned();
        if let Some(component) = self
            .inner
            .compiled
            .lock()
            .ok()
            .and_then(|mut m| compiled(&mut m))
        {
            return Ok(component);
        }
        let component = match &self.inner.cache {
            Some(cache) => cache.compile(&self.inner.engine, bytes, &digest)?,
            None => Component::new(&self.inner.engine, bytes)?,
        };
        if let Ok(mut map) = self.inner.compiled.lock() {
            map.insert(digest, component.clone());
        }
        Ok(component)
    }

    /// Whether a load-time warning keyed `key` is new to this engine: one
    /// warning per plugin and cause, however many nodes (the harness) or
    /// reloads load it. At most [`MAX_WARNED`] keys are remembered; past
    /// that every warning is given again.
    pub(crate) fn first_warning(&self, key: String) -> bool {
        let Ok(mut warned) = self.inner.warned.lock() else {
            return true;
        };
        if warned.len() >= MAX_WARNED {
            return !warned.contains(&key);
        }
        warned.insert(key)
    }

    /// Ticks to allow for a call of `timeout`: rounded up, plus one because
    /// the current tick may end right after the call starts.
    pub fn deadline_ticks(timeout: Duration) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
    }

    /// What the precompiled-artifact cache did (all zero without one).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner
            .cache
            .as_ref()
            .map(ArtifactCache::stats)
            .unwrap_or_default()
    }
}

#[derive(Default)]
pub struct HookEngineBuilder {
    builtins: HashMap<String, &'static [u8]>,
    cache_dir: Option<PathBuf>,
    artifact_key: Option<ArtifactKey>,
}

impl HookEngineBuilder {
    /// Embeds a plugin reachable as `builtin:<name>`. It runs in the same
    /// sandbox as any other plugin: embedded is not privileged.
    pub fn builtin(mut self, name: &str, bytes: &'static [u8]) -> Self {
        self.builtins.insert(name.to_owned(), bytes);
        self
    }

    /// Caches precompiled artifacts in `dir`, keyed by content hash and
    /// verified with the [`artifact_key`](Self::artifact_key) before they
    /// are loaded (see [`crate::artifact`]).
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// The node-local key artifacts are tagged with; keep it outside the
    /// cache directory ([`ArtifactKey::load_or_create`]). Without one, a
    /// cache gets a random key per engine: nothing from an earlier process
    /// verifies, so nothing unverified is ever loaded, but every restart
    /// compiles again.
    pub fn artifact_key(mut self, key: ArtifactKey) -> Self {
        self.artifact_key = Some(key);
        self
    }

    pub fn build(self) -> anyhow::Result<HookEngine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Bounded native stack for plugins: deep recursion traps cleanly.
        config.max_wasm_stack(512 * 1024);
        let engine = Engine::new(&config)?;

        // Indexed by `Line as usize`, in `Line::ALL` order.
        let linkers = [
            linker_for(&engine, Line::V0_1)?,
            linker_for(&engine, Line::V0_2)?,
        ];

        let cache = match self.cache_dir {
            None => None,
            Some(dir) => {
                let key = match self.artifact_key {
                    Some(key) => key,
                    None => {
                        tracing::warn!(
                            cache_dir = %dir.display(),
                            "no artifact key given: precompiled plugins from earlier runs \
                             cannot be verified and will be compiled again"
                        );
                        ArtifactKey::generate()?
                    }
                };
                Some(ArtifactCache::new(dir, key, &engine))
            }
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), ticker_stop.clone())?;
        Ok(HookEngine {
            log_tap: None,
            inner: Arc::new(Inner {
                engine,
                linkers,
                builtins: self.builtins,
                cache,
                compiled: Mutex::default(),
                warned: Mutex::default(),
                ticker_stop,
            }),
        })
    }
}

/// WASI (async: a plugin blocked in poll or sleep waits in a future its
/// call's deadline can abandon, not on the thread) and `line`'s imports.
fn linker_for(engine: &Engine, line: Line) -> anyhow::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    match line {
        Line::V0_1 => {
            since_v0_1_0::LeadershipHook::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| {
                state
            })?
        }
        Line::V0_2 => {
            since_v0_2_0::LeadershipHook::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| {
                state
            })?
        }
    }
    Ok(linker)
}

fn spawn_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("leaderhook-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
    Ok(())
}
