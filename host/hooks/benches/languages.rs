//! The same policy in two guest languages, measured in one run: the Rust
//! `audit-notify` and the Python `audit-py` (componentize-py), both emitting
//! one JSON record per event to a notify sink. Cold load (compile from
//! source, and from a precompiled artifact as a restarted node has) and
//! per-event dispatch cost.
//!
//! A plain bench binary: `cargo bench -p leaderhook-hooks --bench languages`
//! (`-- --quick` for fewer rounds). Needs componentize-py (see
//! `docs/plugin-guide.md`). The last lines are the summary, one per plugin:
//! `languages <plugin> compile_ms=.. precompiled_ms=.. batch1_us=.. batch64_ns_per_event=..`.

use leaderhook_hooks::{
    ArtifactKey, Capabilities, Grant, HookEngine, LeadershipEvent, MemoryCluster, PartitionId,
    PluginChain, PluginConfig, guest_build,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "t";
const PARTITIONS: u32 = 64;
const REPLICAS: [u64; 3] = [1, 2, 3];
const SINK: &str = "audit";

struct Rounds {
    warmup: usize,
    batch_1: usize,
    batch_64: usize,
    cold_loads: usize,
    cached_loads: usize,
}

impl Rounds {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                warmup: 10,
                batch_1: 300,
                batch_64: 30,
                cold_loads: 1,
                cached_loads: 3,
            }
        } else {
            Self {
                warmup: 50,
                batch_1: 3_000,
                batch_64: 200,
                cold_loads: 3,
                cached_loads: 10,
            }
        }
    }
}

struct Figures {
    name: &'static str,
    bytes: u64,
    compile: Duration,
    precompiled: Duration,
    batch_1_us: f64,
    batch_64_ns: f64,
}

fn cluster() -> Arc<MemoryCluster> {
    let cluster = MemoryCluster::new(1, &REPLICAS);
    cluster.add_topic(TOPIC, PARTITIONS, &REPLICAS);
    cluster.add_sink(SINK);
    Arc::new(cluster)
}

/// `batch` became-leader events at `term`, one per partition.
fn events(cluster: &MemoryCluster, batch: u32, term: u64) -> Vec<LeadershipEvent> {
    let leader = REPLICAS[(term % 3) as usize];
    (0..batch)
        .map(|p| cluster.elect(&PartitionId::new(TOPIC, p), leader, term, leader))
        .collect()
}

/// Mean ns per event over `rounds` deliveries of `batch` events.
fn dispatch(
    chain: &mut PluginChain,
    cluster: &MemoryCluster,
    batch: u32,
    warmup: usize,
    rounds: usize,
) -> f64 {
    let mut term = 0;
    let mut next = || {
        term += 1;
        events(cluster, batch, term)
    };
    for _ in 0..warmup {
        assert!(chain.deliver(&next()).is_empty());
    }
    let before = cluster.notifications().len();
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        let batch = next();
        let start = Instant::now();
        let failures = chain.deliver(black_box(&batch));
        total += start.elapsed();
        assert!(failures.is_empty(), "{failures:?}");
    }
    let emitted = cluster.notifications().len() - before;
    assert_eq!(emitted, batch as usize * rounds, "one record per event");
    total.as_nanos() as f64 / (batch as usize * rounds) as f64
}

fn measure(name: &'static str, path: &str, rounds: &Rounds) -> Figures {
    let mut config = PluginConfig::new(name, path, &[Grant::Notify]);
    config.config.insert("sink".into(), SINK.into());
    config.limits.emit_per_batch = u32::MAX;
    config.limits.emit_per_sec = u32::MAX;
    config.limits.timeout_ms = 10_000;
    config.limits.memory_mib = 256;

    // Cold load from source: a fresh engine each time, so nothing is cached.
    let mut compile = Duration::ZERO;
    for _ in 0..rounds.cold_loads {
        let engine = HookEngine::new().expect("engine");
        let source = engine.source(path).expect("read plugin");
        let start = Instant::now();
        black_box(engine.load(&source).expect("compile plugin"));
        compile += start.elapsed();
    }
    let compile = compile / rounds.cold_loads as u32;

    // Precompiled: the artifact a node caches on its first load.
    let cache = tempfile::tempdir().expect("temp dir");
    let key = ArtifactKey::from_bytes([7; 32]);
    let with_cache = || {
        HookEngine::builder()
            .cache_dir(Some(cache.path().to_owned()))
            .artifact_key(key.clone())
            .build()
            .expect("engine")
    };
    let populate = with_cache();
    let source = populate.source(path).expect("read plugin");
    populate.load(&source).expect("populate the cache");
    let mut precompiled = Duration::ZERO;
    for _ in 0..rounds.cached_loads {
        let engine = with_cache();
        let start = Instant::now();
        black_box(engine.load(&source).expect("load precompiled"));
        precompiled += start.elapsed();
    }
    let precompiled = precompiled / rounds.cached_loads as u32;

    let cluster = cluster();
    let caps: Arc<dyn Capabilities> = cluster.clone();
    let mut chain =
        PluginChain::load(&populate, &caps, std::slice::from_ref(&config)).expect("load");
    let batch_1_us = dispatch(&mut chain, &cluster, 1, rounds.warmup, rounds.batch_1) / 1_000.0;
    let batch_64_ns = dispatch(&mut chain, &cluster, 64, rounds.warmup, rounds.batch_64);
    Figures {
        name,
        bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
        compile,
        precompiled,
        batch_1_us,
        batch_64_ns,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = Rounds::new(quick);
    let root = guest_build::workspace_root(env!("CARGO_MANIFEST_DIR").as_ref());
    let rust =
        guest_build::build_guests(&root, &["audit-notify"]).unwrap_or_else(|e| panic!("{e}"));
    let python =
        guest_build::build_python_guest(&root, "audit-py").unwrap_or_else(|e| panic!("{e}"));
    let plugins = [
        (
            "audit-notify (Rust)",
            rust[0].to_string_lossy().into_owned(),
        ),
        ("audit-py (Python)", python.to_string_lossy().into_owned()),
    ];
    let figures: Vec<Figures> = plugins
        .iter()
        .map(|(name, path)| measure(name, path, &rounds))
        .collect();
    println!(
        "{:<22} {:>10} {:>14} {:>16} {:>16} {:>20}",
        "plugin",
        "size",
        "compile (ms)",
        "precompiled (ms)",
        "batch=1 (us/ev)",
        "batch=64 (ns/event)"
    );
    for f in &figures {
        println!(
            "{:<22} {:>8.1}MB {:>14.1} {:>16.2} {:>16.2} {:>20.0}",
            f.name,
            f.bytes as f64 / 1e6,
            f.compile.as_secs_f64() * 1e3,
            f.precompiled.as_secs_f64() * 1e3,
            f.batch_1_us,
            f.batch_64_ns
        );
    }
    let (rust, python) = (&figures[0], &figures[1]);
    println!(
        "python/rust: compile {:.0}x, precompiled {:.0}x, batch=1 {:.1}x, batch=64 {:.1}x",
        python.compile.as_secs_f64() / rust.compile.as_secs_f64(),
        python.precompiled.as_secs_f64() / rust.precompiled.as_secs_f64(),
        python.batch_1_us / rust.batch_1_us,
        python.batch_64_ns / rust.batch_64_ns
    );
}
