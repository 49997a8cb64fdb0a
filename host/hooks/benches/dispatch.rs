//! Dispatch cost of the default `assign-leader` plugin, side by side with
//! the same assignment update done natively, and plugin cold-load time.
//!
//! A plain bench binary (no harness): `cargo bench --bench dispatch`. Pass
//! `--quick` (`cargo bench --bench dispatch -- --quick`) for fewer rounds.
//! Without `--bench` on the command line (`cargo test --benches`, CI) or
//! with `LEADERHOOK_BENCH_SMOKE=1` it runs in smoke mode: a handful of
//! rounds, figures printed, not judged; a failure exits non-zero.
//!
//! Every timed delivery carries became-leader events at a fresh term, so
//! each event goes all the way through `set-leader`: the host's fencing check
//! and an applied write. The final line is the summary:
//! `dispatch per_event_ns=.. native_ns=.. ratio=..`.

use leaderhook_hooks::{
    ArtifactKey, Capabilities, Grant, HookEngine, LeadershipEvent, MemoryCluster, PartitionId,
    PluginChain, PluginConfig, Transition, WriteOutcome, fence, guest_build,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "t";
const PARTITIONS: u32 = 1024;
const REPLICAS: [u64; 3] = [1, 2, 3];

/// How many rounds each measurement runs.
struct Rounds {
    warmup: usize,
    batch_1: usize,
    batch_64: usize,
    batch_1024: usize,
    native_1024: usize,
    cold_loads: usize,
    cached_loads: usize,
}

impl Rounds {
    fn new(smoke: bool, quick: bool) -> Self {
        if smoke {
            Self {
                warmup: 4,
                batch_1: 50,
                batch_64: 5,
                batch_1024: 3,
                native_1024: 5,
                cold_loads: 1,
                cached_loads: 1,
            }
        } else if quick {
            Self {
                warmup: 20,
                batch_1: 5_000,
                batch_64: 300,
                batch_1024: 40,
                native_1024: 200,
                cold_loads: 2,
                cached_loads: 5,
            }
        } else {
            Self {
                warmup: 100,
                batch_1: 50_000,
                batch_64: 3_000,
                batch_1024: 300,
                native_1024: 2_000,
                cold_loads: 5,
                cached_loads: 20,
            }
        }
    }
}

/// A 3-node cluster, node 1 local, with one topic of [`PARTITIONS`]
/// partitions on every node.
fn new_cluster() -> Arc<MemoryCluster> {
    let cluster = MemoryCluster::new(1, &REPLICAS);
    cluster.add_topic(TOPIC, PARTITIONS, &REPLICAS);
    Arc::new(cluster)
}

/// Hands out ever-increasing terms, so every round of elections is newer
/// than anything stored and each became-leader event results in a write.
struct Elections {
    cluster: Arc<MemoryCluster>,
    partitions: Vec<PartitionId>,
    term: u64,
}

impl Elections {
    fn new(cluster: Arc<MemoryCluster>) -> Self {
        let partitions = (0..PARTITIONS)
            .map(|p| PartitionId::new(TOPIC, p))
            .collect();
        Self {
            cluster,
            partitions,
            term: 0,
        }
    }

    /// One round: partitions `0..batch` elect a leader at a fresh term, and
    /// the new leader observes it (became-leader).
    fn round(&mut self, batch: usize) -> Vec<LeadershipEvent> {
        self.term += 1;
        let leader = REPLICAS[(self.term % 3) as usize];
        self.partitions[..batch]
            .iter()
            .map(|p| {
                let event = self.cluster.elect(p, leader, self.term, leader);
                debug_assert_eq!(event.transition, Transition::BecameLeader);
                event
            })
            .collect()
    }
}

struct Timing {
    events: u64,
    total: Duration,
    /// One entry per call.
    calls: Vec<Duration>,
}

impl Timing {
    fn ns_per_event(&self) -> f64 {
        self.total.as_nanos() as f64 / self.events as f64
    }

    /// The `pct`th percentile of call durations, in µs (nearest rank).
    fn percentile_us(&self, pct: f64) -> f64 {
        let mut sorted = self.calls.clone();
        sorted.sort_unstable();
        let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1].as_nanos() as f64 / 1_000.0
    }
}

/// Delivers `rounds` batches of `batch` fresh elections through the chain,
/// timing only `chain.deliver`, and checks every event was written.
fn time_plugin(
    chain: &mut PluginChain,
    elections: &mut Elections,
    batch: usize,
    warmup: usize,
    rounds: usize,
) -> Timing {
    for _ in 0..warmup {
        let events = elections.round(batch);
        let failures = chain.deliver(&events);
        assert!(failures.is_empty(), "plugin failed: {failures:?}");
    }
    let writes_before = elections.cluster.writes();
    let mut calls = Vec::with_capacity(rounds);
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        let events = elections.round(batch);
        let start = Instant::now();
        let failures = chain.deliver(black_box(&events));
        let took = start.elapsed();
        assert!(failures.is_empty(), "plugin failed: {failures:?}");
        total += took;
        calls.push(took);
    }
    let events = (batch * rounds) as u64;
    let writes = elections.cluster.writes() - writes_before;
    assert_eq!(writes, events, "every timed event must result in one write");
    Timing {
        events,
        total,
        calls,
    }
}

/// Times delivering the same batch again and again: the plugin's calls all
/// come back `unchanged`, so nothing is written. Diagnostic only.
fn time_plugin_replay(
    chain: &mut PluginChain,
    events: &[LeadershipEvent],
    rounds: usize,
) -> Timing {
    let mut calls = Vec::with_capacity(rounds);
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        let start = Instant::now();
        let failures = chain.deliver(black_box(events));
        let took = start.elapsed();
        assert!(failures.is_empty(), "plugin failed: {failures:?}");
        total += took;
        calls.push(took);
    }
    Timing {
        events: (events.len() * rounds) as u64,
        total,
        calls,
    }
}

/// What the host does for the plugin, minus wasm: for each became-leader
/// event, the fencing check against the partition's view, then the write.
fn native_assign(caps: &dyn Capabilities, events: &[LeadershipEvent]) -> Result<(), String> {
    for event in events {
        if event.transition != Transition::BecameLeader {
            continue;
        }
        let view = caps
            .partition(&event.partition)
            .ok_or_else(|| format!("{}: unknown partition", event.partition))?;
        match fence::check_set_leader(&view, event.observer, event.term) {
            Ok(WriteOutcome::Queued) => caps
                .set_leader(&event.partition, event.observer, event.term)
                .map_err(|e| format!("{}: {e}", event.partition))?,
            Ok(WriteOutcome::Unchanged) | Err(_) => {}
        }
    }
    Ok(())
}

fn time_native(batch: usize, warmup: usize, rounds: usize) -> Timing {
    let cluster = new_cluster();
    let caps: Arc<dyn Capabilities> = cluster.clone();
    let mut elections = Elections::new(cluster.clone());
    for _ in 0..warmup {
        let events = elections.round(batch);
        native_assign(&*caps, &events).expect("native update");
    }
    let writes_before = cluster.writes();
    let mut calls = Vec::with_capacity(rounds);
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        let events = elections.round(batch);
        let start = Instant::now();
        native_assign(&*caps, black_box(&events)).expect("native update");
        let took = start.elapsed();
        total += took;
        calls.push(took);
    }
    let events = (batch * rounds) as u64;
    assert_eq!(
        cluster.writes() - writes_before,
        events,
        "every native event must write"
    );
    Timing {
        events,
        total,
        calls,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let smoke = std::env::var_os("LEADERHOOK_BENCH_SMOKE").is_some()
        || !std::env::args().any(|a| a == "--bench");
    let rounds = Rounds::new(smoke, quick);

    let root = guest_build::workspace_root(env!("CARGO_MANIFEST_DIR").as_ref());
    let paths =
        guest_build::build_guests(&root, &["assign-leader"]).unwrap_or_else(|e| panic!("{e}"));
    let plugin_path = paths[0].to_string_lossy().into_owned();
    let mut config = PluginConfig::new("assign-leader", &plugin_path, &[Grant::Assignments]);
    // The bench writes far faster than any cluster elects (a million
    // set-leader calls a second at batch=1): it measures dispatch, so the
    // set-leader quota is lifted. Checking it still costs what it costs.
    config.limits.set_leader_per_batch = u32::MAX;
    config.limits.set_leader_per_sec = u32::MAX;
    let plugin_bytes = std::fs::metadata(&paths[0]).map(|m| m.len()).unwrap_or(0);
    println!(
        "plugin: {plugin_path} ({:.1} KiB){}",
        plugin_bytes as f64 / 1024.0,
        if smoke {
            "  [smoke: figures not judged]"
        } else if quick {
            "  [--quick]"
        } else {
            ""
        }
    );

    // --- Dispatch through the plugin, on this thread. ---
    let engine = HookEngine::new().expect("engine");
    let cluster = new_cluster();
    let caps: Arc<dyn Capabilities> = cluster.clone();
    let mut chain = PluginChain::load(&engine, &caps, std::slice::from_ref(&config))
        .expect("load assign-leader");
    let mut elections = Elections::new(cluster.clone());

    let b1 = time_plugin(&mut chain, &mut elections, 1, rounds.warmup, rounds.batch_1);
    println!(
        "wasm   batch=1     {:>9.1} ns/event  p50={:.2} us  p99={:.2} us  max={:.2} us  ({} calls)",
        b1.ns_per_event(),
        b1.percentile_us(50.0),
        b1.percentile_us(99.0),
        b1.percentile_us(100.0),
        b1.calls.len()
    );
    let b64 = time_plugin(
        &mut chain,
        &mut elections,
        64,
        rounds.warmup,
        rounds.batch_64,
    );
    println!(
        "wasm   batch=64    {:>9.1} ns/event  p50={:.2} us/call  ({} calls)",
        b64.ns_per_event(),
        b64.percentile_us(50.0),
        b64.calls.len()
    );
    let b1024 = time_plugin(
        &mut chain,
        &mut elections,
        PARTITIONS as usize,
        rounds.warmup / 4,
        rounds.batch_1024,
    );
    println!(
        "wasm   batch=1024  {:>9.1} ns/event  p50={:.2} us/call  ({} calls)",
        b1024.ns_per_event(),
        b1024.percentile_us(50.0),
        b1024.calls.len()
    );

    // Diagnostics: the same batch without the write, and without any host call.
    let last = elections.round(PARTITIONS as usize);
    assert!(chain.deliver(&last).is_empty());
    let replay = time_plugin_replay(&mut chain, &last, rounds.batch_1024);
    println!(
        "wasm   batch=1024  {:>9.1} ns/event  (diagnostic: replayed term, set-leader returns unchanged, no write)",
        replay.ns_per_event()
    );
    let observed: Vec<LeadershipEvent> = last
        .iter()
        .map(|e| LeadershipEvent {
            transition: Transition::LeaderObserved,
            ..e.clone()
        })
        .collect();
    let observed_only = time_plugin_replay(&mut chain, &observed, rounds.batch_1024);
    println!(
        "wasm   batch=1024  {:>9.1} ns/event  (diagnostic: leader-observed, no host call at all)",
        observed_only.ns_per_event()
    );

    // --- The same update natively. ---
    let native = time_native(PARTITIONS as usize, rounds.warmup, rounds.native_1024);
    println!(
        "native batch=1024  {:>9.1} ns/event  p50={:.2} us/call  ({} calls)",
        native.ns_per_event(),
        native.percentile_us(50.0),
        native.calls.len()
    );

    // --- Cold load: compile from source vs precompiled artifact. ---
    let mut compile_total = Duration::ZERO;
    for _ in 0..rounds.cold_loads {
        let engine = HookEngine::new().expect("engine");
        let source = engine.source(&plugin_path).expect("read plugin");
        let start = Instant::now();
        black_box(engine.load(&source).expect("compile plugin"));
        compile_total += start.elapsed();
    }
    let compile = compile_total / rounds.cold_loads as u32;

    let cache = tempfile::tempdir().expect("temp dir");
    // The node's artifact key: without one each engine would get a random
    // key and verify nothing from an earlier engine.
    let key = ArtifactKey::from_bytes([7; 32]);
    let populate = HookEngine::builder()
        .cache_dir(Some(cache.path().to_owned()))
        .artifact_key(key.clone())
        .build()
        .expect("engine");
    let source = populate.source(&plugin_path).expect("read plugin");
    populate.load(&source).expect("populate the cache");
    let artifacts = std::fs::read_dir(cache.path())
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(
        artifacts, 1,
        "loading through the cache must write one artifact"
    );
    // A fresh engine per load, as a restarted broker has: the engine's
    // in-process compile cache is empty, so only the artifact on disk helps.
    let mut cached_total = Duration::ZERO;
    for _ in 0..rounds.cached_loads {
        let engine = HookEngine::builder()
            .cache_dir(Some(cache.path().to_owned()))
            .artifact_key(key.clone())
            .build()
            .expect("engine");
        let start = Instant::now();
        black_box(engine.load(&source).expect("load precompiled plugin"));
        cached_total += start.elapsed();
    }
    let cached = cached_total / rounds.cached_loads as u32;
    println!(
        "load   compile from source {:.2} ms (mean of {}), precompiled artifact {:.2} ms (mean of {}), ratio {:.1}x",
        ms(compile),
        rounds.cold_loads,
        ms(cached),
        rounds.cached_loads,
        ms(compile) / ms(cached)
    );

    let wasm_ns = b1024.ns_per_event();
    let native_ns = native.ns_per_event();
    println!(
        "dispatch per_event_ns={wasm_ns:.1} native_ns={native_ns:.1} ratio={:.2}",
        wasm_ns / native_ns
    );
}
