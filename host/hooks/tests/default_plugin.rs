//! The default assign-leader plugin, compiled to wasm, against sequences of
//! events including late and duplicate ones.

mod support;

use leaderhook_hooks::{HookRuntime, HooksConfig, PluginChain};
use std::time::Duration;
use support::*;

const IDLE: Duration = Duration::from_secs(10);

#[test]
fn became_leader_writes_the_observer_at_the_term() {
    init_tracing();
    let cluster = cluster();
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[assign_leader()]).unwrap();
    let e = became_leader(&cluster, 0, 2, 1);
    assert!(chain.deliver(&[e]).is_empty());
    assert_eq!(cluster.assignment(&p(0)), Some((Some(2), 1)));
    assert_eq!(
        cluster.assignment(&p(1)),
        Some((None, 0)),
        "other partitions untouched"
    );
}

#[test]
fn other_transitions_do_not_write() {
    let cluster = cluster();
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[assign_leader()]).unwrap();
    // Node 1 observes node 2's election: only node 2's own event writes.
    let observed = cluster.elect(&p(0), 2, 1, 1);
    assert!(chain.deliver(&[observed]).is_empty());
    assert_eq!(cluster.assignment(&p(0)), Some((None, 0)));
    assert_eq!(cluster.writes(), 0);
}

#[test]
fn late_and_duplicate_events_in_one_batch_never_move_the_assignment_back() {
    let cluster = cluster();
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[assign_leader()]).unwrap();
    let t1 = became_leader(&cluster, 0, 1, 1);
    let t3 = became_leader(&cluster, 0, 2, 3);
    let t5 = became_leader(&cluster, 0, 3, 5);
    // Delivered out of order and twice, straight to the chain (no queue to
    // reorder them): only the host's term fencing stands in the way.
    let failures = chain.deliver(&[t3.clone(), t5.clone(), t1.clone(), t3, t5.clone(), t1, t5]);
    assert!(
        failures.is_empty(),
        "stale terms are ignored, not errors: {failures:?}"
    );
    assert_eq!(cluster.assignment(&p(0)), Some((Some(3), 5)));
    assert_eq!(
        cluster.writes(),
        2,
        "t3 then t5 written; duplicates and late t1 refused"
    );
    let stats = &chain.stats()[0];
    // t1 (twice) and t3 (after t5) are stale; t5 repeated is a no-op.
    assert_eq!(stats.refused_calls, 3);
    assert_eq!(stats.errors, 0);
}

#[test]
fn a_newer_epoch_written_elsewhere_fences_this_nodes_late_event() {
    let cluster = cluster();
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[assign_leader()]).unwrap();
    let late = became_leader(&cluster, 1, 1, 4);
    // Another node's plugin already wrote leader 3 at epoch 7.
    cluster.store_assignment(&p(1), 3, 7);
    assert!(chain.deliver(&[late]).is_empty());
    assert_eq!(cluster.assignment(&p(1)), Some((Some(3), 7)));
}

#[test]
fn the_runtime_applies_a_whole_election_history_through_the_queue() {
    let cluster = cluster();
    let config = HooksConfig {
        plugins: vec![assign_leader()],
        ..HooksConfig::default()
    };
    let runtime = HookRuntime::start(engine(), caps(&cluster), &config).unwrap();
    // Four partitions, each through several elections; leader = term % 3 + 1.
    for term in 1..=6 {
        for partition in 0..4 {
            let leader = (term + partition as u64) % 3 + 1;
            let event = became_leader(&cluster, partition, leader, term);
            submit(&runtime, event.clone());
            submit(&runtime, event); // duplicate
        }
    }
    // A late event for a term already delivered is dropped before the plugin.
    assert!(runtime.wait_idle(IDLE));
    let stale = cluster.elect(&p(0), 1, 2, 1);
    assert_eq!(
        submit(&runtime, stale),
        leaderhook_hooks::queue::Push::Stale
    );
    assert!(runtime.wait_idle(IDLE));
    for partition in 0..4u32 {
        let leader = (6 + partition as u64) % 3 + 1;
        assert_eq!(cluster.assignment(&p(partition)), Some((Some(leader), 6)));
    }
    let stats = runtime.stats();
    assert_eq!(stats.queue.submitted, 49);
    assert_eq!(stats.queue.delivered, 48);
    assert_eq!(stats.queue.stale, 1);
    assert_eq!(stats.plugins[0].events, 48);
    assert_eq!(stats.plugins[0].failures(), 0);
}
