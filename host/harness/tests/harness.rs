//! The harness's own behaviour: the simulated Raft, the default plugin
//! keeping assignments on Raft's leaders, and determinism.

mod support;

use leaderhook_harness::random::random_timeline;
use leaderhook_harness::{Harness, HarnessError};
use leaderhook_hooks::{Grant, PartitionId, PluginConfig};
use support::*;

fn default_plugin() -> Vec<PluginConfig> {
    vec![PluginConfig::new(
        "assign-leader",
        "builtin:assign-leader",
        &[Grant::Assignments],
    )]
}

fn p(partition: u32) -> PartitionId {
    PartitionId::new("orders", partition)
}

fn follows_raft(h: &Harness) -> bool {
    h.partitions().values().all(|p| p.leader == p.raft_leader)
}

#[test]
fn default_plugin_keeps_assignments_on_raft_leaders() {
    let mut h = Harness::new(engine(), [1, 2, 3], default_plugin()).unwrap();
    h.create_topic("orders", 6, 3).unwrap();
    assert!(follows_raft(&h));
    assert_eq!(
        h.leader_counts().values().copied().collect::<Vec<_>>(),
        [2, 2, 2]
    );

    h.kill(2).unwrap();
    assert!(follows_raft(&h));
    assert_eq!(h.leader_counts()[&2], 0);
    assert!(
        h.partitions().values().all(|p| p.raft_leader.is_some()),
        "2 of 3 alive: quorum"
    );

    h.kill(3).unwrap();
    // One of three alive: no partition has a quorum, Raft has no leaders.
    // The assignments keep the last leader written: only a new term moves them.
    assert!(h.partitions().values().all(|p| p.raft_leader.is_none()));

    h.revive(2).unwrap();
    assert!(follows_raft(&h), "{:#?}", h.partitions());
    h.elect(&p(0), 2).unwrap();
    assert_eq!(h.assignment(&p(0)), Some(2));
    assert!(h.failures().is_empty(), "{:?}", h.failures());
}

#[test]
fn without_the_default_plugin_assignments_never_follow() {
    let mut h = Harness::new(engine(), [1, 2, 3], vec![]).unwrap();
    h.create_topic("orders", 3, 3).unwrap();
    assert!(h.partitions().values().all(|p| p.leader.is_none()));
    assert_eq!(h.raft_leader(&p(0)), Some(1));
}

#[test]
fn invalid_actions_are_refused_with_a_reason() {
    let mut h = Harness::new(engine(), [1, 2, 3], default_plugin()).unwrap();
    h.create_topic("orders", 1, 2).unwrap();
    let err = h.elect(&p(0), 3).unwrap_err().to_string();
    assert_eq!(err, "elect: node 3 is not an alive replica of orders-0");
    let err = h.create_topic("orders", 1, 1).unwrap_err().to_string();
    assert_eq!(err, "topic orders already exists");
    let err = h.create_topic("big", 1, 4).unwrap_err().to_string();
    assert_eq!(
        err,
        "topic big: replication factor 4 needs that many alive nodes (3 alive)"
    );
    assert!(matches!(h.kill(9), Err(HarnessError::Invalid(_))));
}

/// Everything observable after a random timeline, as text.
fn random_run(seed: u64) -> String {
    let nodes = [1, 2, 3, 4, 5];
    let mut h = Harness::new(engine(), nodes, default_plugin()).unwrap();
    h.create_topic("orders", 8, 3).unwrap();
    let log = random_timeline(&mut h, &nodes, seed, 60).unwrap();
    format!(
        "{log:?}\n{:?}\n{:?}\ndelivered={}\n{:?}",
        h.partitions(),
        h.leader_counts(),
        h.delivered(),
        h.failures()
    )
}

#[test]
fn a_seeded_random_timeline_gives_identical_results_twice() {
    let first = random_run(42);
    assert_eq!(first, random_run(42));
    assert_ne!(first, random_run(43), "the seed matters");
    assert!(first.contains("kill") && first.contains("elect"), "{first}");
}
