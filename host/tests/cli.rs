//! The `leaderhook` binary: the demo with and without the default plugin,
//! and `plugin check`.

use std::process::{Command, Output};

fn leaderhook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leaderhook"))
        .args(args)
        .output()
        .expect("run leaderhook")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn demo_with_the_builtin_default_plugin_follows_raft() {
    let out = leaderhook(&["demo"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("all assignments follow Raft's leaders"),
        "{stdout}"
    );
    assert!(!stdout.contains("DIFFERS"), "{stdout}");
    // The restarted node's late event reached the plugin and was fenced.
    assert!(
        stdout.contains("node 1 assign-leader: events=2 failures=0 refused_calls=1"),
        "{stdout}"
    );
}

#[test]
fn demo_without_the_default_plugin_reproduces_the_original_bug() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("no-plugins.toml");
    std::fs::write(&config, "[dispatch]\nmax_batch = 64\n").unwrap();
    let out = leaderhook(&["demo", "--config", config.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("DIFFERS"), "{stdout}");
    assert!(
        text(&out.stderr).contains("3 of 3 partitions name the wrong leader"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn demo_with_a_broken_config_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[plugins]]\nname = \"x\"\npath = \"missing.wasm\"\n",
    )
    .unwrap();
    let out = leaderhook(&["demo", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let missing = dir.path().join("missing.wasm");
    assert!(
        stderr.contains(&format!("{}: plugin file not found", missing.display())),
        "{stderr}"
    );
}

#[test]
fn plugin_check_prints_contract_and_imports() {
    let out = leaderhook(&["plugin", "check", "builtin:assign-leader"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("contract: leaderhook:plugin@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("imports: assignments, log"), "{stdout}");
}

#[test]
fn plugin_check_refuses_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.wasm");
    std::fs::write(&file, b"garbage").unwrap();
    let out = leaderhook(&["plugin", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a WebAssembly file"),
        "{}",
        text(&out.stderr)
    );
}

/// The default plugin's own scenario, through `leaderhook plugin test`.
fn failover_scenario() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/assign-leader/scenarios/failover.toml")
}

#[test]
fn plugin_test_passes_a_good_scenario() {
    let scenario = failover_scenario();
    let out = leaderhook(&[
        "plugin",
        "test",
        "builtin:assign-leader",
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("10 passed, 0 failed"), "{stdout}");
}

#[test]
fn plugin_test_fails_a_wrong_expectation_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.toml");
    let text_in = std::fs::read_to_string(failover_scenario())
        .unwrap()
        .replace(
            r#"assignments = { "orders-0" = 2 }"#,
            r#"assignments = { "orders-0" = 3 }"#,
        );
    std::fs::write(&wrong, text_in).unwrap();
    let out = leaderhook(&[
        "plugin",
        "test",
        "builtin:assign-leader",
        "--scenario",
        wrong.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL assignments"), "{stdout}");
    assert!(
        stdout.contains("orders-0: expected leader 3, got 2"),
        "{stdout}"
    );
    assert!(stdout.contains("9 passed, 1 failed"), "{stdout}");
    assert!(
        text(&out.stderr).contains("1 of 1 scenarios failed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn cluster_up_topics_create_status_and_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_leaderhook"))
        .args(["cluster", "up", "--dir", dir_arg])
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let result = std::panic::catch_unwind(|| {
        // `cluster up` initialised a 3-node cluster in the empty directory.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !dir.path().join("node3.toml").exists() {
            assert!(std::time::Instant::now() < deadline, "no configs written");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = leaderhook(&[
            "topics",
            "create",
            "orders",
            "--partitions",
            "2",
            "--replication",
            "3",
            "--dir",
            dir_arg,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("created topic orders"),
            "{}",
            text(&out.stdout)
        );
        let again = leaderhook(&["topics", "create", "orders", "--dir", dir_arg]);
        assert!(!again.status.success());
        assert!(
            text(&again.stderr).contains("topic orders already exists"),
            "{}",
            text(&again.stderr)
        );
        // Status eventually shows both partitions on every node with the
        // assignment naming Raft's leader.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let out = leaderhook(&["status", "--dir", dir_arg]);
            let stdout = text(&out.stdout);
            let rows = stdout
                .lines()
                .filter(|l| l.trim_start().starts_with("orders-"))
                .count();
            if rows == 6
                && !stdout.contains("assignment differs")
                && stdout.matches("Leader").count() == 2
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "status never settled:\n{stdout}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        // Deleting the topic removes its replicas from every node.
        let out = leaderhook(&["topics", "delete", "orders", "--dir", dir_arg]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let stdout = text(&leaderhook(&["status", "--dir", dir_arg]).stdout);
            if stdout.matches("node ").count() == 3 && !stdout.contains("orders-") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not deleted:\n{stdout}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    // SIGTERM: `cluster up` stops every node and exits cleanly.
    let pid = up.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = up.wait().unwrap();
    result.unwrap();
    assert!(status.success(), "cluster up exited with {status}");
    let out = leaderhook(&["status", "--dir", dir.path().to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("cannot reach"),
        "nodes still up: {}",
        text(&out.stdout)
    );
}
