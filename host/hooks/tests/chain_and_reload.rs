//! Plugins chained in config order, and reloading a plugin at run time.

mod support;

use leaderhook_hooks::{Grant, HookRuntime, HooksConfig, PluginChain, ReloadError};
use std::time::Duration;
use support::*;

const IDLE: Duration = Duration::from_secs(10);

fn notifier(tag: &str) -> leaderhook_hooks::PluginConfig {
    let mut config = adversary(tag, "notify", &[Grant::Notify]);
    config.config.insert("tag".into(), tag.into());
    config
}

#[test]
fn plugins_run_in_config_order_on_each_batch() {
    let cluster = cluster();
    let configs = [notifier("first"), notifier("second"), notifier("third")];
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &configs).unwrap();
    let batch = [
        became_leader(&cluster, 0, 1, 1),
        became_leader(&cluster, 1, 2, 1),
    ];
    assert!(chain.deliver(&batch).is_empty());
    let payloads: Vec<String> = cluster
        .notifications()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        payloads,
        [
            "first:t-0:1",
            "first:t-1:1",
            "second:t-0:1",
            "second:t-1:1",
            "third:t-0:1",
            "third:t-1:1"
        ]
    );
}

#[test]
fn a_failing_plugin_does_not_stop_the_ones_after_it() {
    let cluster = cluster();
    let configs = [
        adversary("panicker", "panic", &[]),
        assign_leader(),
        notifier("after"),
    ];
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &configs).unwrap();
    let failures = chain.deliver(&[became_leader(&cluster, 0, 3, 2)]);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "panicker");
    assert_eq!(cluster.assignment(&p(0)), Some((Some(3), 2)));
    assert_eq!(cluster.notifications().len(), 1);
}

/// A runtime with one plugin named "policy" that starts as a notifier.
fn runtime_with_policy(cluster: &std::sync::Arc<leaderhook_hooks::MemoryCluster>) -> HookRuntime {
    let mut policy = notifier("old");
    policy.name = "policy".into();
    policy.grants = vec![Grant::Notify, Grant::Assignments];
    let config = HooksConfig {
        plugins: vec![policy],
        ..HooksConfig::default()
    };
    HookRuntime::start(engine(), caps(cluster), &config).unwrap()
}

#[test]
fn reload_swaps_in_a_good_new_version() {
    let cluster = cluster();
    let runtime = runtime_with_policy(&cluster);
    submit(&runtime, became_leader(&cluster, 0, 1, 1));
    assert!(runtime.wait_idle(IDLE));
    assert_eq!(cluster.notifications().len(), 1);
    assert_eq!(cluster.writes(), 0);

    runtime
        .reload("policy", Some(&plugins().assign_leader))
        .unwrap();
    assert_eq!(runtime.plugins()[0].origin, plugins().assign_leader);
    submit(&runtime, became_leader(&cluster, 0, 2, 2));
    assert!(runtime.wait_idle(IDLE));
    assert_eq!(
        cluster.notifications().len(),
        1,
        "the old version no longer runs"
    );
    assert_eq!(
        cluster.assignment(&p(0)),
        Some((Some(2), 2)),
        "the new one does"
    );
    let stats = &runtime.stats().plugins[0];
    assert_eq!(stats.reloads, 1);
    assert_eq!(stats.events, 2, "counters carry over the reload");
}

#[test]
fn a_broken_new_version_is_refused_and_the_old_one_keeps_running() {
    let cluster = cluster();
    let runtime = runtime_with_policy(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    let garbage = garbage.to_string_lossy().into_owned();

    for (path, expected) in [
        (garbage.as_str(), "not a WebAssembly file"),
        (plugins().wrong_version.as_str(), "leaderhook:plugin@0.3.0"),
        ("/nonexistent.wasm", "plugin file not found"),
    ] {
        let err = runtime.reload("policy", Some(path)).unwrap_err();
        assert!(matches!(err, ReloadError::Load(_)), "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(matches!(
        runtime.reload("nobody", None),
        Err(ReloadError::UnknownPlugin(_))
    ));

    submit(&runtime, became_leader(&cluster, 3, 1, 1));
    assert!(runtime.wait_idle(IDLE));
    assert_eq!(
        cluster.notifications(),
        [("trace".to_owned(), "old:t-3:1".to_owned())]
    );
    assert_eq!(runtime.plugins()[0].origin, plugins().adversary);
    assert_eq!(runtime.stats().plugins[0].reloads, 0);
}

#[test]
fn reload_re_enables_a_disabled_plugin() {
    let cluster = cluster();
    let mut failing = adversary("policy", "error", &[Grant::Assignments]);
    failing.on_error = policy(leaderhook_hooks::ErrorPolicy::Disable);
    failing.on_error.disable_after = 1;
    let config = HooksConfig {
        plugins: vec![failing],
        ..HooksConfig::default()
    };
    let runtime = HookRuntime::start(engine(), caps(&cluster), &config).unwrap();
    submit(&runtime, became_leader(&cluster, 0, 1, 1));
    assert!(runtime.wait_idle(IDLE));
    assert!(runtime.stats().plugins[0].disabled);

    runtime
        .reload("policy", Some(&plugins().assign_leader))
        .unwrap();
    assert!(!runtime.stats().plugins[0].disabled);
    submit(&runtime, became_leader(&cluster, 0, 2, 2));
    assert!(runtime.wait_idle(IDLE));
    assert_eq!(cluster.assignment(&p(0)), Some((Some(2), 2)));
}
