//! 10,000 partitions failing over at once (one node of three killed),
//! through the default plugin, in the harness. Baseline in the same run:
//! the same failover with no plugin (the simulation's own cost).
//!
//! `cargo bench --bench failover`. Without `--bench` on the command line
//! (`cargo test --benches`, CI) or with `LEADERHOOK_BENCH_SMOKE=1`: 300
//! partitions, two runs, figures printed, not judged; a failure (an
//! assignment not following Raft) exits non-zero.

use leaderhook_harness::Harness;
use leaderhook_hooks::{Grant, HookEngine, PluginConfig, guest_build};
use std::time::{Duration, Instant};

fn failover(
    engine: &HookEngine,
    plugins: Vec<PluginConfig>,
    partitions: u32,
) -> (Duration, u64, usize) {
    let mut h = Harness::new(engine.clone(), [1, 2, 3], plugins).expect("harness");
    h.create_topic("orders", partitions, 3).expect("topic");
    let before = h.delivered();
    let start = Instant::now();
    h.kill(1).expect("kill settles");
    let elapsed = start.elapsed();
    let moved = h
        .partitions()
        .values()
        .filter(|p| p.replicas[0] == 1)
        .count();
    (elapsed, h.delivered() - before, moved)
}

fn main() {
    let smoke = std::env::var_os("LEADERHOOK_BENCH_SMOKE").is_some()
        || !std::env::args().any(|a| a == "--bench");
    let (partitions, runs): (u32, usize) = if smoke { (300, 2) } else { (10_000, 5) };
    let root = guest_build::workspace_root(env!("CARGO_MANIFEST_DIR").as_ref());
    let wasm =
        guest_build::build_guests(&root, &["assign-leader"]).unwrap_or_else(|e| panic!("{e}"));
    let engine = HookEngine::new().expect("engine");
    let plugin = || {
        vec![PluginConfig::new(
            "assign-leader",
            wasm[0].to_string_lossy(),
            &[Grant::Assignments],
        )]
    };
    let mut with_plugin = Vec::new();
    let mut baseline = Vec::new();
    let mut events = 0;
    let mut moved = 0;
    for _ in 0..runs {
        let (t, e, m) = failover(&engine, plugin(), partitions);
        with_plugin.push(t);
        (events, moved) = (e, m);
        baseline.push(failover(&engine, vec![], partitions).0);
    }
    // Check the outcome once more, outside the timings: every assignment
    // follows Raft after the failover.
    let mut h = Harness::new(engine.clone(), [1, 2, 3], plugin()).expect("harness");
    h.create_topic("orders", partitions, 3).expect("topic");
    h.kill(1).expect("kill");
    let wrong = h
        .partitions()
        .values()
        .filter(|p| p.leader != p.raft_leader)
        .count();
    assert_eq!(wrong, 0, "assignments must follow Raft after the failover");

    with_plugin.sort();
    baseline.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "failover: {partitions} partitions, node 1 of 3 killed, {moved} leaders moved, {events} events delivered{}",
        if smoke {
            " [smoke: figures not judged]"
        } else {
            ""
        }
    );
    println!(
        "  with assign-leader: median {:.1} ms (min {:.1}, max {:.1}) over {runs} runs",
        ms(median(&with_plugin)),
        ms(with_plugin[0]),
        ms(with_plugin[runs - 1])
    );
    println!(
        "  no plugin (simulation only): median {:.1} ms",
        ms(median(&baseline))
    );
    println!(
        "failover settle_ms={:.1} baseline_ms={:.1} ratio={:.2}",
        ms(median(&with_plugin)),
        ms(median(&baseline)),
        ms(median(&with_plugin)) / ms(median(&baseline))
    );
}
