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

#[test]
fn writes_and_transfers_land_after_their_latency() {
    use leaderhook_harness::sim::Timing;
    let mut preferred = PluginConfig::new(
        "preferred-leader",
        plugin("preferred-leader"),
        &[Grant::Leadership],
    );
    preferred.tick_ms = None;
    let mut chain = default_plugin();
    chain.push(preferred);
    let mut h = Harness::new(engine(), [1, 2, 3], chain).unwrap();
    h.create_topic("orders", 3, 3).unwrap();
    h.set_timing(Timing {
        write_latency_ms: 100,
        transfer_latency_ms: 300,
        catch_up_ms: 0,
    });

    h.kill(1).unwrap();
    // Raft moved at once; the stored assignment (and the leader counts read
    // from it) lag until the write lands.
    assert_eq!(h.raft_leader(&p(0)), Some(2));
    assert_eq!(h.assignment(&p(0)), Some(1));
    assert_eq!(h.leader_counts()[&1], 1);
    h.advance(99).unwrap();
    assert_eq!(h.assignment(&p(0)), Some(1), "not yet");
    h.advance(1).unwrap();
    assert_eq!(h.assignment(&p(0)), Some(2));
    assert!(follows_raft(&h));

    // The preferred replica comes back: the failback is asked for at once,
    // but Raft acts on it 300 ms later, and the write follows 100 ms after.
    h.revive(1).unwrap();
    let asked = h.now_ms();
    assert_eq!(h.transfers().len(), 1, "{:?}", h.transfers());
    assert_eq!(h.transfers()[0].by, 1);
    h.advance(299).unwrap();
    assert_eq!(h.raft_leader(&p(0)), Some(2), "in flight");
    h.advance(1).unwrap();
    assert_eq!(h.raft_leader(&p(0)), Some(1));
    assert_eq!(h.now_ms(), asked + 300);
    assert_eq!(h.assignment(&p(0)), Some(2), "the write is in flight");
    h.advance(100).unwrap();
    assert_eq!(h.assignment(&p(0)), Some(1));
    assert!(follows_raft(&h));
    assert!(h.failures().is_empty(), "{:?}", h.failures());
}

#[test]
fn advance_drives_ticks_and_records_log_lines_per_node() {
    let mut ticker = PluginConfig::new("ticker", adversary(), &[]);
    ticker.config.insert("mode".into(), "tick-count".into());
    ticker.tick_ms = Some(1000);
    let mut h = Harness::new(engine(), [1, 2], vec![ticker]).unwrap();
    h.advance(2500).unwrap();
    let lines: Vec<(u64, String)> = h.logs().into_iter().map(|l| (l.node, l.message)).collect();
    assert_eq!(
        lines,
        [
            (1, "tick 1 at 1000".to_owned()),
            (2, "tick 1 at 1000".to_owned()),
            (1, "tick 2 at 2000".to_owned()),
            (2, "tick 2 at 2000".to_owned()),
        ]
    );
    // A killed node's plugins stop ticking; a revived node's start again,
    // one interval after the revival.
    h.kill(2).unwrap();
    h.advance(1000).unwrap();
    h.revive(2).unwrap();
    h.advance(1000).unwrap();
    let last: Vec<(u64, String)> = h
        .logs()
        .into_iter()
        .skip(4)
        .map(|l| (l.node, l.message))
        .collect();
    assert_eq!(
        last,
        [
            (1, "tick 3 at 3000".to_owned()),
            (1, "tick 4 at 4000".to_owned()),
            (2, "tick 1 at 4500".to_owned()),
        ]
    );
}

/// A well-mixed 64-bit value from a seed and a step (splitmix64), so that
/// neighbouring seeds give unrelated timelines.
fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What must hold after every step of any timeline: every partition Raft
/// leads is assigned to that leader at its term (Kafka's leader epoch), no
/// assignment runs ahead of Raft's term or names a non-replica, and no
/// plugin call failed.
fn check_follows_raft(h: &Harness, seed: u64, log: &[String]) {
    for (id, part) in h.partitions() {
        if let Some(leader) = part.raft_leader {
            assert_eq!(
                (part.leader, part.epoch),
                (Some(leader), part.term),
                "seed {seed}: {id} is led by {leader} at term {}, assigned {:?} at epoch {} after {log:?}",
                part.term,
                part.leader,
                part.epoch
            );
        }
        assert!(
            part.epoch <= part.term,
            "seed {seed}: {id} assigned at epoch {} beyond Raft's term {}",
            part.epoch,
            part.term
        );
        assert!(
            part.leader.is_none_or(|l| part.replicas.contains(&l)),
            "seed {seed}: {id} assigned to {:?}, not a replica of {:?}",
            part.leader,
            part.replicas
        );
    }
    assert!(
        h.failures().is_empty(),
        "seed {seed}: plugin failures {:?} after {log:?}",
        h.failures()
    );
}

#[test]
fn an_advance_that_would_tick_without_bound_is_refused() {
    let mut ticker = PluginConfig::new("ticker", adversary(), &[]);
    ticker.config.insert("mode".into(), "tick-count".into());
    ticker.tick_ms = Some(10);
    let mut h = Harness::new(engine(), [1, 2, 3], vec![ticker]).unwrap();
    let err = h.advance(u64::MAX).unwrap_err();
    assert!(matches!(err, HarnessError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("on-tick calls"), "{err}");
    assert_eq!(h.now_ms(), 0, "nothing happened");
    assert!(h.logs().is_empty());
}

#[test]
fn over_many_random_timelines_assignments_follow_raft_and_no_plugin_fails() {
    const SEEDS: u64 = 64;
    const STEPS: u64 = 40;
    let nodes = [1, 2, 3, 4, 5];
    let (mut kills, mut elections) = (0, 0);
    for seed in 1..=SEEDS {
        let mut h = Harness::new(engine(), nodes, default_plugin()).unwrap();
        h.create_topic("orders", 8, 3).unwrap();
        let mut log = Vec::new();
        check_follows_raft(&h, seed, &log);
        // One step at a time, so the property is checked after each.
        for step in 0..STEPS {
            log.extend(random_timeline(&mut h, &nodes, mix(seed, step), 1).unwrap());
            check_follows_raft(&h, seed, &log);
        }
        kills += log.iter().filter(|l| l.starts_with("kill")).count();
        elections += log.iter().filter(|l| l.starts_with("elect")).count();
    }
    // The timelines did exercise failover and elections.
    assert!(
        kills > SEEDS as usize && elections > SEEDS as usize,
        "{kills} kills, {elections} elections"
    );
}
