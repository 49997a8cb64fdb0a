//! The dispatcher never blocks its caller: a plugin stuck in a call does not
//! slow `submit`, and a storm is coalesced per partition to the newest event.

mod support;

use leaderhook_hooks::queue::Push;
use leaderhook_hooks::{HookRuntime, HooksConfig};
use std::time::{Duration, Instant};
use support::*;

#[test]
fn submit_does_not_wait_for_a_stuck_plugin_and_storms_coalesce() {
    init_tracing();
    let cluster = cluster();
    let mut stuck = adversary("stuck", "loop", &[]);
    stuck.limits.timeout_ms = 2_000;
    let mut config = HooksConfig {
        plugins: vec![stuck, assign_leader()],
        ..HooksConfig::default()
    };
    config.dispatch.queue_capacity = 8;
    let runtime = HookRuntime::start(engine(), caps(&cluster), &config).unwrap();

    // The first event sends the stuck plugin into its loop...
    submit(&runtime, became_leader(&cluster, 0, 1, 1));
    // ...wait until its worker has taken it, then storm: 4 partitions,
    // 50 elections each.
    // (Well within the stuck call's 2 s, or the check below could not hold.)
    let deadline = Instant::now() + Duration::from_secs(30);
    while runtime.stats().plugins[0].queue.pending > 0 {
        assert!(
            Instant::now() < deadline,
            "the stuck plugin's worker never took the first event"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut outcomes = Vec::new();
    for term in 2..=51 {
        for partition in 0..4 {
            let leader = (term + partition as u64) % 3 + 1;
            outcomes.push(submit(
                &runtime,
                became_leader(&cluster, partition, leader, term),
            ));
        }
    }
    // Every submit returned while the plugin was still stuck in its first call.
    let during = runtime.stats();
    assert_eq!(
        during.plugins[0].timeouts, 0,
        "the first call has not even timed out yet"
    );
    let stuck_queue = &during.plugins[0].queue;
    assert!(stuck_queue.pending <= 8, "bounded: {}", stuck_queue.pending);
    assert!(stuck_queue.coalesced > 0);
    assert_eq!(
        during.queue.dropped, 0,
        "4 partitions always fit in 8 slots"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Push::Queued | Push::Coalesced(_)))
    );

    assert!(runtime.wait_idle(Duration::from_secs(60)));
    // Coalescing kept each partition's newest event: the assignments are final.
    for partition in 0..4u32 {
        let leader = (51 + partition as u64) % 3 + 1;
        assert_eq!(cluster.assignment(&p(partition)), Some((Some(leader), 51)));
    }
}

#[test]
fn an_operator_can_switch_a_plugin_off_and_on() {
    init_tracing();
    let cluster = cluster();
    let config = HooksConfig {
        plugins: vec![assign_leader()],
        ..HooksConfig::default()
    };
    let runtime = HookRuntime::start(engine(), caps(&cluster), &config).unwrap();
    runtime.set_enabled("assign-leader", false).unwrap();
    submit(&runtime, became_leader(&cluster, 0, 2, 5));
    assert!(runtime.wait_idle(Duration::from_secs(30)));
    assert_eq!(
        cluster.assignment(&p(0)),
        Some((None, 0)),
        "disabled: no write"
    );
    assert!(runtime.stats().plugins[0].disabled);

    runtime.set_enabled("assign-leader", true).unwrap();
    submit(&runtime, became_leader(&cluster, 0, 2, 6));
    assert!(runtime.wait_idle(Duration::from_secs(30)));
    assert_eq!(cluster.assignment(&p(0)), Some((Some(2), 6)));
    assert!(!runtime.stats().plugins[0].disabled);

    let unknown = runtime.set_enabled("nope", false).unwrap_err();
    assert_eq!(unknown.to_string(), "no plugin named `nope` is loaded");
}
