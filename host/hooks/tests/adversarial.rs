//! Hostile plugins (tests/plugins/adversary) under the configured limits:
//! the host survives, the failure is classified and counted, the instance is
//! recycled, and the on_error policy applies. Each test chains the default
//! plugin after the adversary to show the broker's real work goes on.

mod support;

use leaderhook_hooks::plugin::FailureKind;
use leaderhook_hooks::{ErrorPolicy, Grant, PluginChain, PluginConfig, PluginStats};
use std::time::{Duration, Instant};
use support::*;

/// Runs `adversary` then assign-leader on one became-leader event per round
/// (partition 0, terms 1..=rounds) and returns the adversary's stats and the
/// failure kinds it reported per round.
fn run(adversary: PluginConfig, rounds: u64) -> (PluginStats, Vec<Option<FailureKind>>) {
    init_tracing();
    let cluster = cluster();
    let mut chain =
        PluginChain::load(&engine(), &caps(&cluster), &[adversary, assign_leader()]).unwrap();
    let mut kinds = Vec::new();
    for term in 1..=rounds {
        let leader = term % 3 + 1;
        let failures = chain.deliver(&[became_leader(&cluster, 0, leader, term)]);
        assert!(
            failures.iter().all(|(name, _)| name != "assign-leader"),
            "the default plugin must be unaffected: {failures:?}"
        );
        kinds.push(failures.first().map(|(_, f)| f.kind));
        // The chained default plugin still did its job this round.
        assert_eq!(cluster.assignment(&p(0)), Some((Some(leader), term)));
    }
    (chain.stats().remove(0), kinds)
}

#[test]
fn infinite_loop_is_interrupted_at_the_time_limit() {
    let mut config = adversary("looper", "loop", &[]);
    config.limits.timeout_ms = 50;
    let (stats, kinds) = run(config, 2);
    assert_eq!(kinds, [Some(FailureKind::Timeout); 2]);
    assert_eq!(stats.timeouts, 2);
    assert_eq!(stats.instances, 2, "the interrupted instance is recycled");
    assert!(stats.last_error.unwrap().contains("time limit"));
}

/// How long one delivery to a looping plugin with `timeout_ms` lasts, timed
/// after the chain is loaded (compiling and the first instance are not the
/// call's time).
fn looping_call(timeout_ms: u64) -> Duration {
    let mut config = adversary("looper", "loop", &[]);
    config.limits.timeout_ms = timeout_ms;
    let cluster = cluster();
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[config]).unwrap();
    let started = Instant::now();
    let failures = chain.deliver(&[became_leader(&cluster, 0, 1, 1)]);
    let took = started.elapsed();
    let kinds: Vec<_> = failures.iter().map(|(_, f)| f.kind).collect();
    assert_eq!(kinds, [FailureKind::Timeout], "{failures:?}");
    took
}

#[test]
fn a_call_lasts_its_configured_time_limit() {
    // Neither limit is the default (100 ms): a runtime that ignored the
    // configured value would end both calls at the same time. A call can
    // never end before its limit; the upper bounds only say "not the other
    // limit" and "not forever", with room for a loaded machine.
    let short = looping_call(150);
    let long = looping_call(1_500);
    assert!(
        short >= Duration::from_millis(150) && short < Duration::from_millis(1_500),
        "a 150 ms limit ended the call after {short:?}"
    );
    assert!(
        long >= Duration::from_millis(1_500) && long < Duration::from_secs(15),
        "a 1500 ms limit ended the call after {long:?}"
    );
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let mut config = adversary("bomb", "memory", &[]);
    config.limits.memory_mib = 16;
    let (stats, kinds) = run(config, 2);
    assert_eq!(kinds, [Some(FailureKind::OutOfMemory); 2]);
    assert_eq!(stats.out_of_memory, 2);
    assert_eq!(stats.instances, 2);
}

#[test]
fn panic_is_reported_with_its_message() {
    let (stats, kinds) = run(adversary("panicker", "panic", &[]), 2);
    assert_eq!(kinds, [Some(FailureKind::Panic); 2]);
    assert_eq!(stats.panics, 2);
    assert_eq!(stats.instances, 2);
    let last = stats.last_error.unwrap();
    assert!(last.contains("adversary panicked on purpose"), "{last}");
}

#[test]
fn unbounded_recursion_is_a_trap() {
    // Rust's wasm stack lives in linear memory: overflowing it ends in an
    // out-of-bounds access trap (or wasmtime's own stack limit).
    let (stats, kinds) = run(adversary("recurser", "stack", &[]), 2);
    assert_eq!(kinds, [Some(FailureKind::Trap); 2]);
    assert_eq!(stats.traps, 2);
    let last = stats.last_error.unwrap();
    assert!(last.contains("wasm trap"), "names the trap: {last}");
    assert_eq!(stats.instances, 2, "the trapped instance was recycled");
}

#[test]
fn error_results_are_counted_and_keep_the_instance() {
    let (stats, kinds) = run(adversary("failer", "error", &[]), 3);
    assert_eq!(kinds, [Some(FailureKind::Error); 3]);
    assert_eq!(stats.errors, 3);
    assert_eq!(
        stats.instances, 1,
        "an error result is not a trap: state is kept"
    );
    assert_eq!(stats.skipped_batches, 3);
    assert!(
        stats
            .last_error
            .unwrap()
            .contains("adversary failed on purpose")
    );
}

#[test]
fn ungranted_calls_return_an_error_the_plugin_sees() {
    // Granted nothing: leadership.transfer and notify.emit are refused.
    let (stats, kinds) = run(adversary("sneaky", "ungranted", &[Grant::Assignments]), 1);
    assert_eq!(kinds, [Some(FailureKind::Error)]);
    assert_eq!(stats.ungranted_calls, 2);
    let seen = stats.last_error.unwrap();
    assert!(
        seen.contains("not granted") && seen.contains("leadership"),
        "{seen}"
    );
}

#[test]
fn granted_calls_go_through() {
    let cluster = cluster();
    let config = adversary("allowed", "ungranted", &[Grant::Leadership, Grant::Notify]);
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[config]).unwrap();
    let failures = chain.deliver(&[became_leader(&cluster, 2, 3, 1)]);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(cluster.transfers(), [(p(2), 3)]);
    assert_eq!(cluster.notifications().len(), 1);
}

#[test]
fn untrusted_writes_are_refused_by_the_host() {
    for (mode, expect) in [
        ("stale-write", "stale"),
        ("future-epoch", "future"),
        ("not-replica", "999999"),
    ] {
        let cluster = cluster();
        let config = adversary(mode, mode, &[Grant::Assignments]);
        let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[config]).unwrap();
        cluster.store_assignment(&p(0), 2, 3);
        let failures = chain.deliver(&[became_leader(&cluster, 0, 1, 4)]);
        assert_eq!(failures.len(), 1, "{mode}");
        let message = failures[0].1.message.to_lowercase();
        assert!(message.contains(expect), "{mode}: {message}");
        assert_eq!(
            cluster.assignment(&p(0)),
            Some((Some(2), 3)),
            "{mode}: untouched"
        );
        assert_eq!(chain.stats()[0].refused_calls, 1, "{mode}");
    }
}

#[test]
fn the_sandbox_has_no_filesystem_environment_or_network() {
    let (stats, _) = run(adversary("escaper", "escape", &[]), 1);
    let report = stats.last_error.unwrap();
    assert_eq!(
        report,
        "Error: read_root=denied read_file=denied write_file=denied env=denied args=denied \
         tcp=denied udp=denied clock=ok"
    );
}

#[test]
fn retry_policy_retries_with_backoff_then_skips() {
    let mut config = adversary("failer", "error", &[]);
    config.on_error = policy(ErrorPolicy::Retry);
    config.on_error.retries = 2;
    let (stats, _) = run(config, 1);
    assert_eq!(stats.errors, 3, "first attempt and two retries");
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.skipped_batches, 1);
}

#[test]
fn retry_policy_recovers_a_flaky_plugin() {
    let cluster = cluster();
    let mut config = adversary("flaky", "flaky", &[Grant::Assignments]);
    config.config.insert("fail_times".into(), 2.into());
    config.on_error = policy(ErrorPolicy::Retry);
    config.on_error.retries = 3;
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[config]).unwrap();
    let failures = chain.deliver(&[became_leader(&cluster, 0, 2, 1)]);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        cluster.assignment(&p(0)),
        Some((Some(2), 1)),
        "the third attempt wrote"
    );
    let stats = &chain.stats()[0];
    assert_eq!((stats.errors, stats.retries, stats.batches), (2, 2, 1));
}

#[test]
fn disable_policy_disables_after_consecutive_failures() {
    let mut config = adversary("failer", "panic", &[]);
    config.on_error = policy(ErrorPolicy::Disable);
    config.on_error.disable_after = 2;
    let (stats, kinds) = run(config, 4);
    assert_eq!(
        kinds,
        [
            Some(FailureKind::Panic),
            Some(FailureKind::Panic),
            None,
            None
        ]
    );
    assert_eq!(stats.panics, 2, "not called once disabled");
    assert!(stats.disabled);
}

#[test]
fn plugin_output_reaches_the_host_log() {
    // Capture this thread's log: the chain calls the plugin synchronously.
    let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || SharedWriter(writer.clone()))
        .with_ansi(false)
        .finish();
    let cluster = cluster();
    let mut config = adversary("talker", "print", &[]);
    config.config.insert("tag".into(), "xyzzy".into());
    tracing::subscriber::with_default(subscriber, || {
        let mut chain = PluginChain::load(&engine(), &caps(&cluster), &[config]).unwrap();
        assert!(
            chain
                .deliver(&[became_leader(&cluster, 0, 1, 1)])
                .is_empty()
        );
    });
    let log = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    for line in ["adversary stdout xyzzy", "adversary stderr xyzzy"] {
        let found = log
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(
            found.contains("talker"),
            "tagged with the plugin name: {found}"
        );
    }
}

struct SharedWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
