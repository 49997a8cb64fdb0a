//! The `leaderhook` binary: the demo with and without the default plugin,
//! `plugin check`, `cluster up`, help texts, a closed stdout, log files.

use leaderhook_hooks::{CONTRACT_VERSION, guest_build};
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
        stdout.contains(&format!(
            "contract: leaderhook:plugin@{CONTRACT_VERSION} (host implements lines 0.1.0, 0.2.0)"
        )),
        "{stdout}"
    );
    // The SDK's version section, read from the component's core module.
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/Cargo.toml"),
    )
    .unwrap();
    let sdk_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("guest-sdk/Cargo.toml sets its version");
    assert!(
        stdout.contains(&format!("sdk: leaderhook-sdk {sdk_version}\n")),
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

#[test]
fn plugin_test_warns_once_per_ungranted_import() {
    let root = guest_build::workspace_root(env!("CARGO_MANIFEST_DIR").as_ref());
    let wasm = guest_build::build_guests(&root, &["preferred-leader"])
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);
    // preferred-leader imports `leadership`; this scenario grants nothing,
    // on three simulated nodes, each loading the plugin: one warning, not
    // one per node.
    let scenario = root.join("plugins/preferred-leader/scenarios/granted-nothing.toml");
    let out = leaderhook(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("imports a capability it is not granted"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("leadership"), "{stderr}");
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
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // What `cluster up` tells a newcomer, read as it comes (bounded).
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let said = said.clone();
        let stderr = up.stderr.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut said = said.lock().unwrap();
                if said.len() < 64 * 1024 {
                    *said += &line;
                    said.push('\n');
                }
            }
        })
    };
    let result = std::panic::catch_unwind(|| {
        // `cluster up` initialised a 3-node cluster in the empty directory.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !dir.path().join("node3.toml").exists() {
            assert!(std::time::Instant::now() < deadline, "no configs written");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // It printed the bootstrap servers, the metrics URLs and the next
        // commands.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !said.lock().unwrap().contains("plugin list") {
            assert!(
                std::time::Instant::now() < deadline,
                "no banner: {}",
                said.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let banner = said.lock().unwrap().clone();
        let kafka: Vec<String> = (1..=3)
            .map(|n| {
                let config = leaderhook::config::NodeConfig::from_file(
                    &dir.path().join(format!("node{n}.toml")),
                )
                .unwrap();
                let metrics = config.metrics_listen.unwrap();
                assert!(
                    banner.contains(&format!("metrics, node {n}: http://{metrics}/metrics")),
                    "{banner}"
                );
                config.kafka_listen.unwrap().to_string()
            })
            .collect();
        assert!(
            banner.contains(&format!("Kafka bootstrap servers: {}", kafka.join(","))),
            "{banner}"
        );
        for next in ["topics create orders", "status", "plugin list", "kcat -b"] {
            assert!(banner.contains(next), "{banner}");
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
        // The metrics URL it printed answers, with the partitions' groups.
        {
            use std::io::{Read, Write};
            let config =
                leaderhook::config::NodeConfig::from_file(&dir.path().join("node1.toml")).unwrap();
            let addr = config.metrics_listen.unwrap();
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            write!(
                stream,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut page = String::new();
            stream.take(4 << 20).read_to_string(&mut page).unwrap();
            assert!(page.starts_with("HTTP/1.1 200"), "{page:.300}");
            assert!(
                page.contains("leaderhook_raft_groups{role=\"leader\"}"),
                "{page:.3000}"
            );
        }
        // `status | head -1` stops quietly: exit 0, no panic.
        let piped = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; '{}' status --dir '{dir_arg}' | head -1",
                env!("CARGO_BIN_EXE_leaderhook")
            ))
            .output()
            .unwrap();
        assert!(piped.status.success(), "{}", text(&piped.stderr));
        assert_eq!(text(&piped.stdout), "node 1\n");
        assert!(
            !text(&piped.stderr).contains("panicked"),
            "{}",
            text(&piped.stderr)
        );

        // `--admin ADDR` takes its secret from $LEADERHOOK_SECRET (or a file), and is refused
        // with a wrong one.
        let config =
            leaderhook::config::NodeConfig::from_file(&dir.path().join("node2.toml")).unwrap();
        let admin_addr = config.admin_listen.to_string();
        let secret = config.security.secret.clone();
        let elsewhere = tempfile::tempdir().unwrap();
        let by_env = Command::new(env!("CARGO_BIN_EXE_leaderhook"))
            .args(["status", "--admin", &admin_addr])
            .current_dir(elsewhere.path())
            .env("LEADERHOOK_SECRET", &secret)
            .output()
            .unwrap();
        assert!(
            text(&by_env.stdout).starts_with("node 2\n"),
            "{}",
            text(&by_env.stdout)
        );
        let secret_file = elsewhere.path().join("secret");
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let by_file = Command::new(env!("CARGO_BIN_EXE_leaderhook"))
            .args(["status", "--admin", &admin_addr, "--secret-file"])
            .arg(&secret_file)
            .current_dir(elsewhere.path())
            .output()
            .unwrap();
        assert!(
            text(&by_file.stdout).starts_with("node 2\n"),
            "{}",
            text(&by_file.stdout)
        );
        let wrong = Command::new(env!("CARGO_BIN_EXE_leaderhook"))
            .args(["topics", "delete", "orders", "--admin", &admin_addr])
            .current_dir(elsewhere.path())
            .env("LEADERHOOK_SECRET", "x".repeat(64))
            .output()
            .unwrap();
        assert!(!wrong.status.success());
        assert!(
            text(&wrong.stderr).contains("authentication failed: wrong admin secret"),
            "{}",
            text(&wrong.stderr)
        );
        let none = Command::new(env!("CARGO_BIN_EXE_leaderhook"))
            .args(["status", "--admin", &admin_addr])
            .current_dir(elsewhere.path())
            .env_remove("LEADERHOOK_SECRET")
            .output()
            .unwrap();
        assert!(
            text(&none.stderr).contains("no admin secret for"),
            "{}",
            text(&none.stderr)
        );

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
    reader.join().unwrap();
    result.unwrap();
    assert!(status.success(), "cluster up exited with {status}");
    let out = leaderhook(&["status", "--dir", dir.path().to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("cannot reach"),
        "nodes still up: {}",
        text(&out.stdout)
    );
}

#[test]
fn topics_create_help_describes_topics_create() {
    let out = leaderhook(&["topics", "create", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.starts_with("Create a topic"), "{help}");
    // Not the description of the flattened node-target options.
    assert!(!help.contains("Which node(s) to ask"), "{help}");
    let delete = text(&leaderhook(&["topics", "delete", "--help"]).stdout);
    assert!(delete.starts_with("Delete a topic"), "{delete}");
}

/// Runs `args` with stdout a pipe whose reading end is already closed (as after
/// `| head -1` has read its line): every write fails with EPIPE.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_leaderhook"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    // No node runs: status prints a "cannot reach" line per node.
    assert!(
        leaderhook(&["cluster", "init", "--dir", dir_arg])
            .status
            .success()
    );
    for args in [
        &["status", "--dir", dir_arg][..],
        &["plugin", "check", "builtin:assign-leader"],
        &["demo"],
    ] {
        let out = with_closed_stdout(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn cluster_init_writes_a_private_secret_and_fault_injection_only_when_asked() {
    use std::os::unix::fs::PermissionsExt;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let init = |dir: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "cluster",
            "init",
            "--nodes",
            "2",
            "--dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        assert!(leaderhook(&args).status.success());
        let configs: Vec<_> = (1..=2)
            .map(|n| {
                leaderhook::config::NodeConfig::from_file(&dir.join(format!("node{n}.toml")))
                    .unwrap()
            })
            .collect();
        for n in 1..=2 {
            let mode = std::fs::metadata(dir.join(format!("node{n}.toml")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "node{n}.toml is readable by others");
        }
        configs
    };
    let plain = init(a.path(), &[]);
    let testing = init(b.path(), &["--fault-injection"]);
    // One secret and id per cluster, another for the next cluster.
    assert_eq!(plain[0].security.secret, plain[1].security.secret);
    assert_eq!(plain[0].security.cluster_id, plain[1].security.cluster_id);
    assert_ne!(plain[0].security.secret, testing[0].security.secret);
    assert_ne!(plain[0].security.cluster_id, testing[0].security.cluster_id);
    assert!(plain[0].security.secret.len() >= 64);
    assert!(!plain[0].testing.fault_injection);
    assert!(testing[0].testing.fault_injection);

    // A config without [security] does not start, and says why.
    let file = a.path().join("node1.toml");
    let text_in = std::fs::read_to_string(&file).unwrap();
    let start = text_in.find("[security]").unwrap();
    let end = start + text_in[start..].find("\n\n").unwrap();
    std::fs::write(&file, format!("{}{}", &text_in[..start], &text_in[end..])).unwrap();
    let out = leaderhook(&["broker", "--config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no [security] cluster_id and secret"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_log_file_gets_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    assert!(
        leaderhook(&["cluster", "init", "--nodes", "1", "--dir", dir_arg])
            .status
            .success()
    );
    let log_path = dir.path().join("node1.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut node = Command::new(env!("CARGO_BIN_EXE_leaderhook"))
        .args(["broker", "--config"])
        .arg(dir.path().join("node1.toml"))
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    // Until the node has started and raft-rs has logged its election.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let bytes = loop {
        let bytes = std::fs::read(&log_path).unwrap();
        let logged = String::from_utf8_lossy(&bytes);
        if logged.contains("node started") && logged.contains("became leader") {
            break bytes;
        }
        if std::time::Instant::now() > deadline {
            let _ = node.kill();
            panic!("the node did not log its start: {logged}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = node.kill();
    let _ = node.wait();
    assert!(!bytes.contains(&0x1b), "escape codes in the log file");
}

/// `topics create --config KEY=VALUE` stores supported topic configs and
/// refuses the others, naming them.
#[test]
fn topics_create_takes_configs_and_refuses_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let c = leaderhook::supervisor::LocalCluster::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_leaderhook")),
        dir.path(),
        &leaderhook::supervisor::ClusterSpec::default(),
    )
    .unwrap();
    // Wait until the cluster takes topics.
    c.create_topic("warmup", 1, 1, std::time::Duration::from_secs(60))
        .unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let ok = leaderhook(&[
        "topics",
        "create",
        "kept",
        "--config",
        "retention.ms=60000",
        "--config",
        "max.message.bytes=2048",
        "--dir",
        dir_arg,
    ]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let bad = leaderhook(&[
        "topics",
        "create",
        "odd",
        "--config",
        "cleanup.policy=compact",
        "--dir",
        dir_arg,
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("cleanup.policy"),
        "{}",
        text(&bad.stderr)
    );
    let malformed = leaderhook(&[
        "topics", "create", "x", "--config", "nope", "--dir", dir_arg,
    ]);
    assert!(!malformed.status.success());
    assert!(text(&malformed.stderr).contains("KEY=VALUE"));
}
