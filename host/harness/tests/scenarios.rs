//! Every example plugin passes its scenario files, and a wrong expectation
//! fails with a readable diff.

mod support;

use leaderhook_harness::Scenario;
use std::path::{Path, PathBuf};
use support::*;

fn scenario_files(plugin: &str) -> Vec<PathBuf> {
    let dir = root().join("plugins").join(plugin).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{plugin} has no scenarios");
    files
}

#[test]
fn every_example_plugin_passes_its_scenarios() {
    let plugins = example_plugins();
    assert!(plugins.len() >= 5, "{plugins:?}");
    for plugin_name in &plugins {
        for file in scenario_files(plugin_name) {
            let scenario = Scenario::from_file(&file).unwrap();
            let report = scenario.run(engine(), Some(&plugin(plugin_name))).unwrap();
            assert!(report.passed(), "{}:\n{}", file.display(), report.render());
            assert!(
                report.checks().count() >= 3,
                "{}: too few checks",
                file.display()
            );
        }
    }
}

fn with_wrong_expectation() -> Scenario {
    let file = root().join("plugins/leader-balance/scenarios/spread.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(
            r#"leader_counts = { "1" = 3, "2" = 2, "3" = 1 }"#,
            r#"leader_counts = { "1" = 2, "2" = 2, "3" = 2 }"#,
        )
        .replace(
            r#"transfers = ["orders-0 -> 2", "orders-1 -> 3", "orders-2 -> 2"]"#,
            r#"transfers = ["orders-0 -> 2", "orders-1 -> 2"]"#,
        );
    Scenario::from_toml(&text, &file).unwrap()
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let report = with_wrong_expectation()
        .run(engine(), Some(&plugin("leader-balance")))
        .unwrap();
    assert!(!report.passed());
    let text = report.render();
    for line in [
        "FAIL leader counts",
        "node 1: expected 2 leaders, got 3",
        "node 3: expected 2 leaders, got 1",
        "actual leader counts: 1=3 2=2 3=1",
        "FAIL transfers requested",
        "expected: [orders-0 -> 2, orders-1 -> 2]",
        "actual:   [orders-0 -> 2, orders-1 -> 3, orders-2 -> 2]",
        "#2: expected orders-1 -> 2, got orders-1 -> 3",
        "#3: unexpected orders-2 -> 2",
        "PASS assignments follow Raft",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(
        text.ends_with(" failed\n") && !text.contains(" 0 failed"),
        "{text}"
    );
}

#[test]
fn a_scenario_that_cannot_run_says_why() {
    let file = Path::new("/tmp/broken.toml");
    let err = Scenario::from_toml(
        "name = \"x\"\n[cluster]\nnodes = [1]\n[[step]]\ndo = \"explode\"\n",
        file,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("/tmp/broken.toml: "), "{err}");
    assert!(err.contains("unknown variant `explode`"), "{err}");

    let scenario = Scenario::from_toml(
        "name = \"x\"\n[cluster]\nnodes = [1]\n[[step]]\ndo = \"kill\"\nnode = 7\n",
        file,
    )
    .unwrap();
    let err = scenario
        .run(engine(), Some(&plugin("assign-leader")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step 1 (kill node 7): node 7 is not in the cluster"),
        "{err}"
    );
}
