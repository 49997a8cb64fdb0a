//! Plugins of both contract lines the host implements, loaded side by side;
//! plugins of other lines, or of two lines at once, refused.

mod support;

use leaderhook_hooks::{Grant, LoadError, PluginChain};
use support::*;

/// The frozen-line fixture, writing assignments and reporting to `trace`.
fn v0_1(name: &str, extra: &[(&str, toml::Value)]) -> leaderhook_hooks::PluginConfig {
    let mut config = leaderhook_hooks::PluginConfig::new(
        name,
        &plugins().contract_v0_1,
        &[Grant::Assignments, Grant::Notify],
    );
    for (k, v) in extra {
        config.config.insert((*k).into(), v.clone());
    }
    config
}

#[test]
fn a_0_1_plugin_and_a_0_2_plugin_run_side_by_side_in_one_chain() {
    let cluster = cluster();
    let mut ticker = adversary("ticker", "tick-count", &[]);
    ticker.tick_ms = Some(1000);
    let chain = [
        v0_1("old", &[("sink", "trace".into())]),
        adversary_with("new", "notify", &[Grant::Notify], &[("tag", "v0.2".into())]),
        ticker,
    ];
    let mut chain = PluginChain::load(&engine(), &caps(&cluster), &chain).unwrap();
    let info = chain.info();
    let versions: Vec<&str> = info.iter().map(|i| i.contract_version.as_str()).collect();
    assert_eq!(versions, ["0.1.0", "0.2.0", "0.2.0"]);

    let failures = chain.deliver(&[became_leader(&cluster, 2, 1, 3)]);
    assert!(failures.is_empty(), "{failures:?}");
    // The 0.1 plugin did assign-leader's job through the converted imports...
    assert_eq!(cluster.assignment(&p(2)), Some((Some(1), 3)));
    // ...and read the cluster view (4 partitions of 3 replicas, 3 nodes;
    // the write it is about to make is not counted yet)...
    let notifications = cluster.notifications();
    assert_eq!(
        notifications,
        [
            (
                "trace".to_owned(),
                "v0.1:t-2:3:replicas=[1, 2, 3]:nodes=3:led=0".to_owned()
            ),
            ("trace".to_owned(), "v0.2:t-2:3".to_owned()),
        ]
    );
    // ...the 0.2 plugins did theirs, and the tick reaches only the one
    // asked (the 0.1 plugin has no on-tick and cannot be given tick_ms).
    assert!(chain.tick("ticker", 5000).unwrap().is_ok());
    assert!(chain.tick("nobody", 5000).is_none());
    let stats = chain.stats();
    assert_eq!(stats[2].ticks, 1);
    assert_eq!((stats[0].events, stats[1].events), (1, 1));
}

#[test]
fn a_refusal_the_0_1_line_has_no_case_for_reaches_it_as_unavailable() {
    let cluster = cluster();
    // Raft elected node 1 at term 3; the plugin first names node 2 at that
    // term: 0.2 says `not-elected(1)`, 0.1 has no such case.
    let mut chain = PluginChain::load(
        &engine(),
        &caps(&cluster),
        &[v0_1("old", &[("wrong_leader", true.into())])],
    )
    .unwrap();
    let failures = chain.deliver(&[became_leader(&cluster, 0, 1, 3)]);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let message = &failures[0].1.message;
    assert!(
        message.starts_with("refused: CapError::Unavailable("),
        "{message}"
    );
    assert!(message.contains("(node 1 is)"), "{message}");
}

#[test]
fn ticks_for_a_0_1_plugin_are_refused_at_load_naming_its_line() {
    let cluster = cluster();
    let mut config = v0_1("old", &[]);
    config.tick_ms = Some(1000);
    let err = PluginChain::load(&engine(), &caps(&cluster), &[config])
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::TicksUnsupported { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("plugin `old` sets tick_ms")
            && message.contains("leaderhook:plugin@0.1.0, which has no on-tick"),
        "{message}"
    );
}

/// A component importing an interface of each line: which line's world it
/// implements cannot be told, and it is refused naming both.
#[test]
fn a_component_claiming_both_lines_is_refused_naming_both() {
    let wat = r#"(component
        (import "leaderhook:plugin/log@0.1.0" (instance))
        (import "leaderhook:plugin/cluster@0.2.0" (instance))
    )"#;
    let bytes = wat::parse_str(wat).unwrap();
    let engine = engine();
    let source = leaderhook_hooks::PluginSource::from_bytes("both.wasm", bytes);
    let err = engine.load(&source).err().unwrap();
    assert!(matches!(err, LoadError::MixedContractLines { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "both.wasm: imports interfaces of two contract lines, leaderhook:plugin@0.1.0 and \
         @0.2.0; a plugin is built against one line"
    );
}

/// A component of an unknown line (here a made-up 0.9.0 import) is refused
/// naming the version found and every line the host implements.
#[test]
fn an_unknown_line_is_refused_naming_both_versions() {
    let wat = r#"(component (import "leaderhook:plugin/log@0.9.0" (instance)))"#;
    let source =
        leaderhook_hooks::PluginSource::from_bytes("future.wasm", wat::parse_str(wat).unwrap());
    let err = engine().load(&source).err().unwrap();
    assert_eq!(
        err.to_string(),
        "future.wasm: built against contract leaderhook:plugin@0.9.0, but this host implements \
         leaderhook:plugin@0.1.x and leaderhook:plugin@0.2.x"
    );
    // The built fixture of another line, too (tests/plugins/wrong-version).
    let path = &plugins().wrong_version;
    let err = engine()
        .load(&engine().source(path).unwrap())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("leaderhook:plugin@0.3.0, but this host implements leaderhook:plugin@0.1.x"),
        "{err}"
    );
}
