//! Operators run plugins live (issue 11), in one real 3-node cluster driven
//! through the `leaderhook` CLI as an operator would, step by step (each
//! step builds on the chain the one before left; one cluster keeps CI
//! short):
//!
//! 1. `plugin list` shows each node's chain, a custom-named assignment
//!    plugin and a shadow candidate, the safety net standing by.
//! 2. Metrics scraped before and after a kill -9 of a leader: elections and
//!    leadership changes move, the assignment/Raft mismatch gauge returns
//!    to 0.
//! 3. Shadow mode: the candidate (preferred-leader) would move leadership
//!    back to the restarted node; `plugin diff` shows the transfer, nothing
//!    is applied. `plugin promote --persist` makes it act (and writes the
//!    config); the restarted node gets its leadership back.
//! 4. The trace recorded across those kill -9 cycles replays against the
//!    default plugin without a difference, and against a changed plugin
//!    with differences shown; the nodes' files are merged by time, so the
//!    order they are given in does not change the result.
//! 5. `plugin reload` to a broken file is refused on every node (the old
//!    version keeps running); to a new version that fails, behaviour
//!    changes: it is disabled, the embedded default takes over the
//!    assignments (the safety net), and a kill -9 still converges.
//! 6. Config edits applied by SIGHUP and `plugin apply`: added (a
//!    notifier writing to a topic sink, read back with kcat), reordered,
//!    a broken edit refused whole, removed; a reload racing a failover.

use leaderhook::admin::Request;
use leaderhook::admin::plugins::PluginsView;
use leaderhook::config::{NodeConfig, RaftConfig};
use leaderhook::raft::shared::Role;
use leaderhook::supervisor::{ClusterSpec, LocalCluster};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn wasm(names: &[&str]) -> Vec<String> {
    let root = leaderhook_hooks::guest_build::workspace_root(Path::new(env!("CARGO_MANIFEST_DIR")));
    leaderhook_hooks::guest_build::build_guests(&root, names)
        .unwrap()
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Ops {
    dir: tempfile::TempDir,
    nodes: LocalCluster,
    /// Partitions in the cluster (the topic sink adds its topic's).
    partitions: std::cell::Cell<usize>,
}

impl Ops {
    fn dir_arg(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// `leaderhook ARGS --dir DIR`.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_leaderhook"))
            .args(args)
            .args(["--dir", self.dir_arg()])
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    }

    fn plugins(&self, node: u64) -> PluginsView {
        serde_json::from_value(self.nodes.request(node, &Request::Plugins).unwrap()).unwrap()
    }

    fn names(&self, node: u64) -> Vec<String> {
        self.plugins(node)
            .plugins
            .into_iter()
            .map(|p| p.info.name)
            .collect()
    }

    fn converge(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        self.nodes
            .wait_converged(self.partitions.get(), WAIT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.nodes.logs()))
    }

    /// Partitions `node` leads, by its own status.
    fn leads(&self, node: u64) -> usize {
        self.nodes
            .status(node)
            .map(|s| s.replicas.iter().filter(|r| r.role == Role::Leader).count())
            .unwrap_or(0)
    }

    fn scrape(&self, node: u64) -> String {
        let page = self.nodes.scrape(node).unwrap();
        assert!(page.contains("text/plain; version=0.0.4"), "{page:.400}");
        page
    }

    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {WAIT:?}\n{}",
                self.nodes.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Replaces the `[[plugins]]` tables of every node's config.
    fn write_plugins(&self, plugins: &str) {
        for node in 1..=3 {
            let file = self.nodes.config(node);
            let text = std::fs::read_to_string(file).unwrap();
            let head = text.split("[[plugins]]").next().unwrap().to_owned();
            std::fs::write(file, head + plugins).unwrap();
        }
    }
}

fn metric(page: &str, name: &str, labels: &[&str]) -> f64 {
    leaderhook::supervisor::metric_sum(page, name, labels)
}

/// The chain the cluster starts with: a custom-named assignment plugin
/// (the default plugin's code, disabled at its first failure) and a shadow
/// candidate that would move leadership back to preferred replicas.
fn initial_plugins(preferred_leader: &str) -> String {
    format!(
        "[trace]\npath = \"trace-{{node}}.jsonl\"\nmax_bytes = 8388608\nkeep = 2\n\n\
         [[sinks]]\nname = \"audit-topic\"\nkind = \"topic\"\ntopic = \"leaderhook-audit\"\n\n\
         {}\
         [[plugins]]\nname = \"candidate\"\npath = \"{preferred_leader}\"\n\
         grants = [\"leadership\"]\nmode = \"shadow\"\n\n",
        assigner("builtin:assign-leader")
    )
}

/// The assignment plugin; its config makes the adversary fail every batch
/// (the default plugin ignores it).
fn assigner(path: &str) -> String {
    format!(
        "[[plugins]]\nname = \"assigner\"\npath = \"{path}\"\ngrants = [\"assignments\"]\n\
         on_error = {{ policy = \"disable\", disable_after = 1 }}\n\
         [plugins.config]\nmode = \"flaky\"\nfail_times = 1000000\n\n"
    )
}

fn audit(audit_notify: &str, sink: &str) -> String {
    format!(
        "[[plugins]]\nname = \"audit\"\npath = \"{audit_notify}\"\ngrants = [\"notify\"]\n\
         [plugins.config]\nsink = \"{sink}\"\n\n"
    )
}

#[test]
fn operators_run_plugins_live() {
    let built = wasm(&["preferred-leader", "adversary", "audit-notify"]);
    let (preferred_leader, adversary, audit_notify) = (&built[0], &built[1], &built[2]);
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        raft: RaftConfig {
            tick_ms: 50,
            // 2 s to 4 s: a loaded machine does not elect by accident; a
            // killed node's closed connections elect at once.
            election_ticks: 40,
            heartbeat_ticks: 2,
            resync_ms: 1000,
            ..RaftConfig::default()
        },
        plugins: Some(initial_plugins(preferred_leader)),
        log: "warn".into(),
        ..ClusterSpec::default()
    };
    let nodes = LocalCluster::start(
        Path::new(env!("CARGO_BIN_EXE_leaderhook")),
        dir.path(),
        &spec,
    )
    .unwrap();
    let mut c = Ops {
        dir,
        nodes,
        partitions: 3.into(),
    };
    c.nodes.create_topic("orders", 3, 3, WAIT).unwrap();
    let before = c.converge();

    // 1. `plugin list`: every node, both plugins, the safety net.
    let out = c.cli(&["plugin", "list"]);
    let list = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for node in 1..=3 {
        assert!(list.contains(&format!("node {node}\n")), "{list}");
    }
    assert_eq!(list.matches("assigner ").count(), 3, "{list}");
    assert!(list.contains("builtin:assign-leader"), "{list}");
    assert!(list.contains("shadow"), "{list}");
    assert!(list.contains(preferred_leader.as_str()), "{list}");
    assert_eq!(list.matches("safety net: standing by").count(), 3, "{list}");
    assert!(list.contains("grants [assignments]"), "{list}");
    println!("plugin list:\n{list}");

    // 2. Metrics before and after a kill -9 of orders-0's leader.
    let (victim, _) = before["orders-0"];
    let survivors: Vec<u64> = (1..=3).filter(|n| *n != victim).collect();
    let pages: Vec<String> = survivors.iter().map(|n| c.scrape(*n)).collect();
    let sum =
        |pages: &[String], name: &str| pages.iter().map(|p| metric(p, name, &[])).sum::<f64>();
    for page in &pages {
        for family in [
            "leaderhook_raft_groups",
            "leaderhook_assignment_mismatch",
            "leaderhook_resync_redeliveries_total",
            "leaderhook_plugin_calls_total",
            "leaderhook_plugin_call_seconds_bucket",
            "leaderhook_plugin_capability_calls_total",
            "leaderhook_plugin_queue_depth",
            "leaderhook_fallback_engaged",
            "leaderhook_kafka_bytes_in_total",
            // raft-engine's own histograms, from the default registry.
            "raft_engine_write_duration_seconds_bucket",
        ] {
            assert!(
                metric(page, family, &[]) >= 0.0 && page.contains(family),
                "{family} missing"
            );
        }
        assert_eq!(metric(page, "leaderhook_assignment_mismatch", &[]), 0.0);
        assert_eq!(
            metric(page, "leaderhook_raft_groups", &[]),
            4.0,
            "3 partitions and the metadata group"
        );
    }
    let won_before = sum(&pages, "leaderhook_raft_elections_won_total");
    let changes_before = sum(&pages, "leaderhook_raft_leadership_changes_total");
    let set_leader_before: f64 = pages
        .iter()
        .map(|p| {
            metric(
                p,
                "leaderhook_plugin_capability_calls_total",
                &[
                    "plugin=\"assigner\"",
                    "capability=\"set-leader\"",
                    "outcome=\"ok\"",
                ],
            )
        })
        .sum();
    c.nodes.kill9(victim).unwrap();
    let after = c.converge();
    assert_ne!(after["orders-0"].0, victim);
    let mut pages: Vec<String> = survivors.iter().map(|n| c.scrape(*n)).collect();
    let won_after = sum(&pages, "leaderhook_raft_elections_won_total");
    let changes_after = sum(&pages, "leaderhook_raft_leadership_changes_total");
    assert!(
        won_after > won_before,
        "elections won: {won_before} -> {won_after}"
    );
    assert!(
        changes_after > changes_before,
        "leadership changes: {changes_before} -> {changes_after}"
    );
    let set_leader_after: f64 = pages
        .iter()
        .map(|p| {
            metric(
                p,
                "leaderhook_plugin_capability_calls_total",
                &[
                    "plugin=\"assigner\"",
                    "capability=\"set-leader\"",
                    "outcome=\"ok\"",
                ],
            )
        })
        .sum();
    assert!(
        set_leader_after > set_leader_before,
        "the new leaders were written"
    );
    // The gauge returns to 0 once the assignments follow Raft again (it
    // reads each scrape; converged status is the same fact seen by admin).
    c.wait("mismatch gauge back to 0", || {
        pages = survivors.iter().map(|n| c.scrape(*n)).collect();
        pages
            .iter()
            .all(|p| metric(p, "leaderhook_assignment_mismatch", &[]) == 0.0)
    });
    // And it counts what it says: while the assignment is behind (events
    // dropped, the plugin disabled, no safety net) it is not 0; see
    // `cluster.rs`, `a_dropped_event_heals_through_the_resync`.
    println!(
        "metrics across kill -9 of node {victim}: elections won {won_before} -> {won_after}, \
         leadership changes {changes_before} -> {changes_after}, assigner set-leader ok \
         {set_leader_before} -> {set_leader_after}, mismatch gauge 0"
    );

    // 3. Shadow mode. The victim comes back leading nothing; the candidate
    // (shadow) would move its preferred partition back to it.
    c.nodes.spawn(victim).unwrap();
    c.converge();
    c.wait("a shadow disagreement", || {
        (1..=3).any(|n| {
            c.plugins(n).plugins.iter().any(|p| {
                p.info.name == "candidate"
                    && p.stats.shadow.as_ref().is_some_and(|s| s.disagreements > 0)
            })
        })
    });
    let out = c.cli(&["plugin", "diff", "candidate"]);
    let diff = text(&out.stdout);
    assert!(out.status.success(), "{diff}{}", text(&out.stderr));
    assert!(diff.contains("(shadow only)"), "{diff}");
    assert!(
        diff.contains("transfer(orders-") && diff.contains(&format!("-> node {victim})")),
        "{diff}"
    );
    println!("plugin diff candidate:\n{diff}");
    // Nothing applied: the victim still leads nothing, well past the time a
    // transfer takes.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.leads(victim), 0, "a shadow plugin moved leadership");
    let not_a_shadow = c.cli(&["plugin", "diff", "assigner"]);
    assert!(!not_a_shadow.status.success());
    assert!(
        text(&not_a_shadow.stdout).contains("not in shadow mode"),
        "{}",
        text(&not_a_shadow.stdout)
    );

    let out = c.cli(&["plugin", "promote", "candidate", "--persist"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout)
            .matches("candidate active; written into")
            .count(),
        3,
        "{}",
        text(&out.stdout)
    );
    for node in 1..=3 {
        let config = NodeConfig::from_file(c.nodes.config(node)).unwrap();
        let candidate = config
            .plugins
            .iter()
            .find(|p| p.name == "candidate")
            .unwrap();
        assert_eq!(candidate.mode, leaderhook_hooks::Mode::Active);
        let view = c.plugins(node);
        let entry = view
            .plugins
            .iter()
            .find(|p| p.info.name == "candidate")
            .unwrap();
        assert_eq!(entry.info.mode, leaderhook_hooks::Mode::Active);
    }
    // Active now: when the victim rejoins again, it gets its preferred
    // partition back.
    c.nodes.kill9(victim).unwrap();
    c.nodes.spawn(victim).unwrap();
    c.wait("the promoted candidate moves leadership back", || {
        c.leads(victim) >= 1
    });
    c.converge();

    // 4. The trace recorded across those kill -9 cycles, replayed. Every
    // node wrote its own file.
    let traces: Vec<PathBuf> = (1..=3)
        .map(|n| c.dir.path().join(format!("trace-{n}.jsonl")))
        .collect();
    let copies = tempfile::tempdir().unwrap();
    let mut trace_args = Vec::new();
    for (i, t) in traces.iter().enumerate() {
        let copy = copies.path().join(format!("trace-{}.jsonl", i + 1));
        std::fs::copy(t, &copy).unwrap();
        trace_args.push("--trace".to_owned());
        trace_args.push(copy.to_string_lossy().into_owned());
    }
    let replay_files = |plugin: &str, files: &[String]| {
        let mut args = vec!["plugin", "test", plugin, "--against", "assigner"];
        args.extend(files.iter().map(String::as_str));
        let out = Command::new(env!("CARGO_BIN_EXE_leaderhook"))
            .args(&args)
            .output()
            .unwrap();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let replay = |plugin: &str| replay_files(plugin, &trace_args);
    let (ok, stdout, stderr) = replay("builtin:assign-leader");
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(" 0 differ, 0 failed"), "{stdout}");
    let batches: usize = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(batches >= 3, "{stdout}");
    println!("replay against the default plugin: {stdout}");
    let (ok, stdout, stderr) = replay(preferred_leader);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("(recorded only)"), "{stdout}");
    assert!(stdout.contains("set-leader(orders-"), "{stdout}");
    assert!(stderr.contains("decided otherwise"), "{stderr}");
    println!(
        "replay against preferred-leader: {}",
        stdout.lines().next().unwrap()
    );
    // The three nodes' files are merged by time into one history: given in
    // the reverse order, the replay sees the same cluster at each batch
    // (preferred-leader reads it) and reports the same counts.
    let reversed: Vec<String> = trace_args
        .chunks(2)
        .rev()
        .flat_map(|pair| pair.iter().cloned())
        .collect();
    let (_, reversed_stdout, _) = replay_files(preferred_leader, &reversed);
    assert_eq!(
        reversed_stdout.lines().next(),
        stdout.lines().next(),
        "{reversed_stdout}"
    );

    // 5. Reload. A broken file is refused on every node; the old version
    // keeps running (same content hash, still writing).
    let hash = |c: &Ops, node| {
        c.plugins(node)
            .plugins
            .into_iter()
            .find(|p| p.info.name == "assigner")
            .unwrap()
            .info
            .content_hash
    };
    let old_hash = hash(&c, 1);
    let broken = c.dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0 this is not a component").unwrap();
    let out = c.cli(&[
        "plugin",
        "reload",
        "assigner",
        "--path",
        broken.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let said = text(&out.stdout);
    assert_eq!(said.matches("reload refused").count(), 3, "{said}");
    assert!(said.contains("broken.wasm"), "{said}");
    for node in 1..=3 {
        assert_eq!(hash(&c, node), old_hash, "node {node} kept the old version");
    }
    // A new version whose behaviour differs: it fails every batch. It is
    // disabled at its first failure; the embedded default plugin takes over.
    let out = c.cli(&["plugin", "reload", "assigner", "--path", adversary]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).matches("assigner reloaded").count(), 3);
    assert_ne!(hash(&c, 1), old_hash);
    let (victim, _) = c.converge()["orders-1"];
    c.nodes.kill9(victim).unwrap();
    let survivors: Vec<u64> = (1..=3).filter(|n| *n != victim).collect();
    // Metadata still follows Raft: the safety net wrote the new leaders.
    c.converge();
    c.wait("the safety net engaged on the survivors", || {
        survivors.iter().all(|n| {
            let view = c.plugins(*n);
            view.fallback.as_ref().is_some_and(|f| f.engaged)
        })
    });
    let out = c.cli(&["plugin", "list"]);
    let list = text(&out.stdout);
    assert!(list.contains("auto-disabled"), "{list}");
    assert!(list.contains("ENGAGED"), "{list}");
    assert!(
        list.contains("adversary failed") || list.contains("flaky failure"),
        "{list}"
    );
    for n in &survivors {
        let page = c.scrape(*n);
        assert_eq!(metric(&page, "leaderhook_fallback_engaged", &[]), 1.0);
        assert!(
            metric(
                &page,
                "leaderhook_plugin_failures_total",
                &["plugin=\"assigner\"", "kind=\"error\""]
            ) >= 1.0
        );
        assert_eq!(
            metric(
                &page,
                "leaderhook_plugin_state",
                &["plugin=\"assigner\"", "state=\"auto-disabled\""]
            ),
            1.0
        );
        let fallback = c.plugins(*n).fallback.unwrap();
        assert!(fallback.switches >= 1, "node {n}: {fallback:?}");
    }
    // The new leaders' nodes wrote the assignments through the safety net.
    let written: u64 = survivors
        .iter()
        .flat_map(|n| c.plugins(*n).fallback.unwrap().plugin.stats.calls)
        .filter(|call| {
            call.capability == leaderhook_hooks::calls::Capability::SetLeader
                && call.outcome == leaderhook_hooks::calls::Outcome::Ok
        })
        .map(|call| call.count)
        .sum();
    assert!(written >= 1, "the safety net wrote no assignment");
    println!("safety net:\n{list}");
    // Back: the restarted node runs its config (the default plugin's code);
    // the survivors reload it and the operator enables it again.
    c.nodes.spawn(victim).unwrap();
    c.converge();
    let out = c.cli(&[
        "plugin",
        "reload",
        "assigner",
        "--path",
        "builtin:assign-leader",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = c.cli(&["plugin", "enable", "assigner"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    c.converge();
    c.wait("the safety net hands back", || {
        (1..=3).all(|n| c.plugins(n).fallback.is_some_and(|f| !f.engaged))
    });

    // 6. The config file is the source of truth. Added, by SIGHUP: a
    // notifier writing to a topic sink.
    let promoted = format!(
        "[[plugins]]\nname = \"candidate\"\npath = \"{preferred_leader}\"\n\
         grants = [\"leadership\"]\n\n"
    );
    let base = assigner("builtin:assign-leader") + &promoted;
    c.write_plugins(&(base.clone() + &audit(audit_notify, "audit-topic")));
    for node in 1..=3 {
        c.nodes.hangup(node).unwrap();
    }
    c.wait("SIGHUP added audit on every node", || {
        (1..=3).all(|n| c.names(n) == ["assigner", "candidate", "audit"])
    });
    // Its notifications reach the topic (created by the sink), read back
    // with a Kafka client. A leadership transfer makes some.
    let (leader, _) = c.converge()["orders-2"];
    let to = (1..=3).find(|n| *n != leader).unwrap().to_string();
    let out = c.cli(&["partitions", "transfer", "orders-2", "--to", &to]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    c.wait("the topic sink created its topic", || {
        c.nodes.view().len() == 4
    });
    c.partitions.set(4);
    c.converge();
    let bootstrap = NodeConfig::from_file(c.nodes.config(1))
        .unwrap()
        .kafka_listen
        .unwrap()
        .to_string();
    let mut records = String::new();
    c.wait("audit records in topic leaderhook-audit", || {
        let out = Command::new("kcat")
            .args([
                "-C",
                "-b",
                &bootstrap,
                "-t",
                "leaderhook-audit",
                "-o",
                "beginning",
            ])
            .args(["-e", "-q", "-f", "%k %s\\n"])
            .output()
            .expect("kcat is installed (scripts/test.sh installs every client)");
        records = text(&out.stdout);
        records.contains("\"transition\":\"became-leader\"")
    });
    let first = records.lines().next().unwrap();
    assert!(first.starts_with("orders-"), "keyed by partition: {first}");
    println!("topic sink, first record: {first}");
    let kafka_page = (1..=3).map(|n| c.scrape(n)).collect::<Vec<_>>();
    assert!(
        kafka_page
            .iter()
            .map(|p| metric(
                p,
                "leaderhook_kafka_requests_total",
                &["api=\"Produce\"", "error_code=\"0\""]
            ))
            .sum::<f64>()
            >= 1.0
    );
    assert!(
        kafka_page
            .iter()
            .map(|p| metric(
                p,
                "leaderhook_kafka_request_seconds_count",
                &["api=\"Metadata\""]
            ))
            .sum::<f64>()
            >= 1.0
    );
    assert!(sum(&kafka_page, "leaderhook_kafka_bytes_in_total") > 0.0);
    assert!(sum(&kafka_page, "leaderhook_kafka_bytes_out_total") > 0.0);

    // Reordered, by `plugin apply`.
    c.write_plugins(&(audit(audit_notify, "audit-topic") + &base));
    let out = c.cli(&["plugin", "apply"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).matches("applied: reordered").count(),
        3,
        "{}",
        text(&out.stdout)
    );
    for n in 1..=3 {
        assert_eq!(c.names(n), ["audit", "assigner", "candidate"]);
    }

    // A half-wrong edit changes nothing: audit removed (fine) and a broken
    // plugin added (refused), by SIGHUP and by `plugin apply`.
    let half_wrong = base.clone()
        + &format!(
            "[[plugins]]\nname = \"broken\"\npath = \"{}\"\n\n",
            broken.display()
        );
    c.write_plugins(&half_wrong);
    for node in 1..=3 {
        c.nodes.hangup(node).unwrap();
    }
    let out = c.cli(&["plugin", "apply"]);
    assert!(!out.status.success());
    let said = text(&out.stdout);
    assert_eq!(said.matches("plugin apply refused").count(), 3, "{said}");
    assert!(said.contains("broken"), "{said}");
    for n in 1..=3 {
        assert_eq!(
            c.names(n),
            ["audit", "assigner", "candidate"],
            "node {n} changed"
        );
    }
    // A plugin naming a sink the node does not declare is refused too.
    c.write_plugins(&(base.clone() + &audit(audit_notify, "pager")));
    let out = c.cli(&["plugin", "apply"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("\"pager\""),
        "{}",
        text(&out.stdout)
    );
    for n in 1..=3 {
        assert_eq!(
            c.names(n),
            ["audit", "assigner", "candidate"],
            "node {n} changed"
        );
    }
    // Removed.
    c.write_plugins(&base);
    let out = c.cli(&["plugin", "apply"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).matches("applied: removed audit").count(),
        3,
        "{}",
        text(&out.stdout)
    );
    for n in 1..=3 {
        assert_eq!(c.names(n), ["assigner", "candidate"]);
    }
    // A reload racing a failover: each node answers for itself (the killed
    // one may not), the survivors run the reloaded version, and the
    // assignments follow Raft.
    let (victim, _) = c.converge()["orders-0"];
    let reloads = |c: &Ops, n| {
        c.plugins(n)
            .plugins
            .into_iter()
            .find(|p| p.info.name == "assigner")
            .unwrap()
            .stats
            .reloads
    };
    let before: Vec<(u64, u64)> = (1..=3)
        .filter(|n| *n != victim)
        .map(|n| (n, reloads(&c, n)))
        .collect();
    let reload = {
        let dir = c.dir_arg().to_owned();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_leaderhook"))
                .args(["plugin", "reload", "assigner", "--dir", &dir])
                .output()
                .unwrap()
        })
    };
    c.nodes.kill9(victim).unwrap();
    let out = reload.join().unwrap();
    let said = text(&out.stdout);
    let reloaded = said.matches("assigner reloaded").count();
    assert!(
        reloaded == 3 || (reloaded == 2 && !out.status.success()),
        "{said}"
    );
    c.converge();
    for (n, was) in before {
        assert_eq!(reloads(&c, n), was + 1, "node {n} reloaded once");
    }
}
