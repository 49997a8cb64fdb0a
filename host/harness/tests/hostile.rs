//! Hostile plugins before the default plugin in the simulated cluster (what
//! `leaderhook plugin test` runs): whatever the attacker does, each of its
//! calls ends within its time limit and is reported as a failure under its
//! name, and the default plugin after it keeps the assignments on Raft's
//! leaders through a node's death.

mod support;

use leaderhook_harness::{Harness, PluginFailure};
use leaderhook_hooks::plugin::FailureKind;
use leaderhook_hooks::{Grant, NodeId, PluginConfig, PluginStats};
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

/// The blocking attackers sleep ten minutes: uncontained, a run would miss
/// this deadline by far.
const DEADLINE: Duration = Duration::from_secs(60);
const SLEEP_MS: i64 = 600_000;

/// What a run leaves to assert on: every failure, and the alive nodes'
/// plugin stats.
struct Outcome {
    failures: Vec<PluginFailure>,
    stats: BTreeMap<NodeId, Vec<PluginStats>>,
}

fn attacker(mode: &str, extra: &[(&str, toml::Value)]) -> PluginConfig {
    let mut config = PluginConfig::new("attacker", adversary(), &[Grant::Assignments]);
    config.config.insert("mode".into(), mode.into());
    for (k, v) in extra {
        config.config.insert((*k).into(), v.clone());
    }
    config.limits.timeout_ms = 100;
    config
}

/// A 3-node cluster running `attacker` then assign-leader: a topic of 3
/// partitions, then node 1 killed; on its own thread, within `DEADLINE`.
fn failover_behind(attacker: PluginConfig) -> Outcome {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let h = failover_behind_here(attacker);
        let _ = tx.send(Outcome {
            failures: h.failures().to_vec(),
            stats: h.stats(),
        });
    });
    rx.recv_timeout(DEADLINE)
        .expect("the run ends within its deadline (or it failed: see above)")
}

fn failover_behind_here(attacker: PluginConfig) -> Harness {
    let default = PluginConfig::new(
        "assign-leader",
        "builtin:assign-leader",
        &[Grant::Assignments],
    );
    let mut h = Harness::new(engine(), [1, 2, 3], vec![attacker, default]).unwrap();
    h.create_topic("orders", 3, 3).unwrap();
    h.kill(1).unwrap();
    for (partition, p) in h.partitions() {
        assert!(p.raft_leader.is_some(), "{partition}: 2 of 3 alive");
        assert_eq!(p.leader, p.raft_leader, "{partition} follows Raft");
    }
    assert!(
        h.failures().iter().all(|f| f.plugin == "attacker"),
        "{:?}",
        h.failures()
    );
    h
}

#[test]
fn a_plugin_blocking_in_sleep_times_out_and_assignments_follow_raft() {
    let h = failover_behind(attacker("sleep", &[("sleep_ms", SLEEP_MS.into())]));
    assert!(!h.failures.is_empty());
    assert!(
        h.failures.iter().all(|f| f.kind == FailureKind::Timeout),
        "{:?}",
        h.failures
    );
    // Counted under the attacker's name on each node (node 1 is dead).
    for (node, stats) in h.stats {
        let failed = h.failures.iter().filter(|f| f.node == node).count();
        assert_eq!(stats[0].name, "attacker");
        assert_eq!(stats[0].timeouts, failed as u64, "node {node}");
    }
}

#[test]
fn a_plugin_blocking_in_init_times_out_and_assignments_follow_raft() {
    let h = failover_behind(attacker("block-reinit", &[("sleep_ms", SLEEP_MS.into())]));
    let kinds: Vec<FailureKind> = h.failures.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&FailureKind::Panic), "{kinds:?}");
    assert!(
        kinds.contains(&FailureKind::Timeout),
        "init blocked: {kinds:?}"
    );
}

#[test]
fn a_huge_error_is_reported_cut_and_assignments_follow_raft() {
    let h = failover_behind(attacker("huge-error", &[]));
    assert!(!h.failures.is_empty());
    for f in &h.failures {
        assert_eq!(f.kind, FailureKind::Error);
        assert!(f.message.len() < 5_000, "{}", f.message.len());
        assert!(f.message.ends_with("[truncated, 10485760 bytes in all]"));
    }
}
