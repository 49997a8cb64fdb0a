//! Three real broker processes, each running a chain of hostile plugins
//! *before* the default plugin (issue 8): a plugin blocking in a WASI sleep
//! in on-events, one blocking in init (on every re-init), one looping under
//! `on_error = retry`, and ones returning a 10 MB error, spamming the log,
//! spamming stdout and sending 8 MiB notifications. The attacks run side by
//! side in one cluster: each plugin has its own lane, so sharing keeps them
//! independent (and CI's time budget small).
//!
//! Shown: the brokers stay up and keep serving status; after a kill -9 of
//! a leader, the assignments follow Raft before any election timeout could
//! have passed (the survivors elect on the closed connections; the
//! timeout is 5 s to 10 s, convergence is required within 4 s, as in
//! `cluster.rs`); each attack is logged and counted under its plugin's
//! name; the log, the sink file and the status stay small.

use leaderhook::admin::Status;
use leaderhook::config::RaftConfig;
use leaderhook::supervisor::{ClusterSpec, LocalCluster};
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
/// Bytes a notification keeps (`leaderhook_hooks::text::MAX_PAYLOAD`) and a
/// log line's message (`MAX_TEXT`), plus room for markers and fields.
const PAYLOAD_LINE: u64 = 16 * 1024 + 128;
const LOG_LINE: u64 = 4096 + 512;

/// Elections time out after 5 s to 10 s: only the fast path (a closed
/// connection) elects sooner.
fn start(dir: &Path, plugins: String) -> LocalCluster {
    let spec = ClusterSpec {
        raft: RaftConfig {
            tick_ms: 50,
            election_ticks: 100,
            heartbeat_ticks: 2,
            resync_ms: 1000,
            ..RaftConfig::default()
        },
        plugins: Some(plugins),
        // The attacks' warnings, and the plugins' own lines (info).
        log: std::env::var("HOSTILE_LOG").unwrap_or_else(|_| "warn,leaderhook::plugin=info".into()),
        ..ClusterSpec::default()
    };
    LocalCluster::start(Path::new(env!("CARGO_BIN_EXE_leaderhook")), dir, &spec).unwrap()
}

/// One plugin's counter summed over the running nodes.
fn counter(c: &LocalCluster, plugin: &str, counter: &str) -> u64 {
    c.running()
        .into_iter()
        .filter_map(|node| c.status(node).ok())
        .map(|status| plugin_stats(&status, plugin)[counter].as_u64().unwrap_or(0))
        .sum()
}

/// Waits until `counter` of `plugin` is positive on the running nodes.
fn wait_counted(c: &LocalCluster, plugin: &str, name: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let n = counter(c, plugin, name);
        if n > 0 {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{plugin}: {name} never counted\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn plugin_stats<'a>(status: &'a Status, name: &str) -> &'a serde_json::Value {
    status.plugins["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no stats for plugin {name}: {}", status.plugins))
}

fn adversary_wasm() -> String {
    let root = leaderhook_hooks::guest_build::workspace_root(Path::new(env!("CARGO_MANIFEST_DIR")));
    let paths = leaderhook_hooks::guest_build::build_guests(&root, &["adversary"]).unwrap();
    paths[0].to_string_lossy().into_owned()
}

/// The hostile chain, then the default plugin; a file sink for the
/// notifier. The blocking attackers sleep ten minutes: were a call not cut
/// at its limit, no timeout would be counted within the test's waits.
fn hostile_chain() -> String {
    let wasm = adversary_wasm();
    let attacker = |name: &str, extra: &str, config: &str| {
        format!(
            "[[plugins]]\nname = \"{name}\"\npath = \"{wasm}\"\n{extra}\n\
             [plugins.config]\n{config}\n\n"
        )
    };
    let mut text = String::new();
    text += &attacker(
        "sleeper",
        "limits = { timeout_ms = 100 }",
        "mode = \"sleep\"\nsleep_ms = 600000",
    );
    text += &attacker(
        "reinit-blocker",
        "limits = { timeout_ms = 100 }",
        "mode = \"block-reinit\"\nsleep_ms = 600000",
    );
    text += &attacker(
        "retry-looper",
        "limits = { timeout_ms = 100 }\n\
         on_error = { policy = \"retry\", retries = 1000, backoff_ms = 1, max_retry_ms = 60000 }",
        "mode = \"loop\"",
    );
    text += &attacker("shouter", "", "mode = \"huge-error\"");
    text += &attacker(
        "logger",
        "limits = { timeout_ms = 5000 }",
        "mode = \"huge-log\"\nsize = 65536\ncount = 1000",
    );
    text += &attacker(
        "printer",
        "limits = { timeout_ms = 5000 }",
        "mode = \"huge-stdout\"\nsize = 65536\ncount = 1000",
    );
    text += &attacker(
        "notifier",
        "grants = [\"notify\"]\nlimits = { timeout_ms = 10000 }",
        "mode = \"huge-notify\"\nsink = \"file\"\nsize = 8388608\ncount = 50",
    );
    text += "[[plugins]]\nname = \"assign-leader\"\npath = \"builtin:assign-leader\"\n\
             grants = [\"assignments\"]\n\n\
             [[sinks]]\nname = \"file\"\nkind = \"file\"\npath = \"notifications.log\"\n";
    text
}

#[test]
fn hostile_plugins_before_the_default_one_stop_nothing_and_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), hostile_chain());
    c.create_topic("orders", 3, 3, WAIT).unwrap();
    let before = c.wait_converged(3, WAIT).unwrap();

    // kill -9 the leader of orders-0: the survivors converge well within
    // one election timeout, attackers or not.
    let (victim, old_term) = before["orders-0"];
    c.kill9(victim).unwrap();
    let after = c
        .wait_converged(3, Duration::from_secs(4))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
    let (leader, term) = after["orders-0"];
    assert_ne!(leader, victim);
    assert!(term > old_term);

    // Each attack was counted under its plugin's name.
    wait_counted(&c, "sleeper", "timeouts");
    wait_counted(&c, "reinit-blocker", "timeouts");
    wait_counted(&c, "retry-looper", "timeouts");
    wait_counted(&c, "retry-looper", "retries");
    wait_counted(&c, "shouter", "errors");
    wait_counted(&c, "logger", "log_suppressed");
    wait_counted(&c, "printer", "log_suppressed");
    wait_counted(&c, "notifier", "truncated");
    assert!(counter(&c, "assign-leader", "events") > 0);
    assert_eq!(counter(&c, "assign-leader", "skipped_batches"), 0);

    // The brokers are up and their status stays small: the 10 MB error is
    // kept as 4 KiB.
    assert_eq!(c.running().len(), 2);
    for node in c.running() {
        assert!(c.pid(node).is_some());
        let status = c.status(node).expect("status answers");
        let json = serde_json::to_string(&status.plugins).unwrap();
        assert!(
            json.len() < 64 * 1024,
            "node {node}: status of {} bytes",
            json.len()
        );
        let shouted = plugin_stats(&status, "shouter")["last_error"]
            .as_str()
            .unwrap_or_default();
        assert!(shouted.len() < 5_000, "{}", shouted.len());
    }

    // The sink (one file, appended to by every node, a line at a time) got
    // at most 16 KiB per notification, not 8 MiB. Its writer runs behind
    // the plugin: wait for one batch's 50 lines.
    let file = dir.path().join("notifications.log");
    let deadline = Instant::now() + WAIT;
    let sink = loop {
        let sink = std::fs::read_to_string(&file).unwrap_or_default();
        if sink.matches('\n').count() >= 50 {
            break sink;
        }
        assert!(
            Instant::now() < deadline,
            "{} lines",
            sink.matches('\n').count()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Complete lines only: a writer may be in the middle of one.
    for line in sink
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
    {
        assert!(line.len() as u64 <= PAYLOAD_LINE, "{} bytes", line.len());
        assert!(line.ends_with("[truncated, 8388608 bytes in all]"));
    }

    // Each live node's log names every attacker, and holds at most the
    // admitted plugin lines (4 KiB each) plus the host's own lines.
    for node in c.running() {
        let log = std::fs::read_to_string(dir.path().join(format!("node{node}.log"))).unwrap();
        for (name, what) in [
            ("sleeper", "time limit"),
            ("reinit-blocker", "init exceeded its time limit"),
            ("retry-looper", "time limit"),
            ("shouter", "truncated, 10485760 bytes in all"),
            ("logger", "plugin log lines suppressed"),
            ("printer", "truncated, 65536 bytes in all"),
        ] {
            let tagged: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&format!("plugin={name}")))
                .collect();
            assert!(
                tagged.iter().any(|l| l.contains(what)),
                "node {node}: no log line for {name} with {what:?}; its lines: {:.2000}",
                tagged.join("\n")
            );
        }
        let status = c.status(node).unwrap();
        let lines: u64 = ["logger", "printer"]
            .iter()
            .map(|p| plugin_stats(&status, p)["log_lines"].as_u64().unwrap())
            .sum();
        let bytes = log.len() as u64;
        assert!(
            bytes <= lines * LOG_LINE + (2 << 20),
            "node {node}: {bytes} bytes of log for {lines} plugin lines"
        );
    }
}

/// VmRSS of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The metadata log's last index on the node that has seen the most.
fn metadata_last_index(c: &LocalCluster) -> u64 {
    c.running()
        .into_iter()
        .filter_map(|n| c.status(n).ok())
        .map(|s| s.metadata_log.last_index)
        .max()
        .unwrap_or(0)
}

/// Elections so far: per partition, the highest term any node shows.
fn terms(c: &LocalCluster) -> std::collections::BTreeMap<String, u64> {
    let mut terms = std::collections::BTreeMap::new();
    for status in c.running().into_iter().filter_map(|n| c.status(n).ok()) {
        for r in status.replicas {
            let t = terms.entry(r.partition).or_insert(0);
            *t = (*t).max(r.term);
        }
    }
    terms
}

fn default_plugin() -> &'static str {
    "[[plugins]]\nname = \"assign-leader\"\npath = \"builtin:assign-leader\"\n\
     grants = [\"assignments\"]\n\n"
}

/// Runs `kills` kill -9/restart cycles of orders-0's leader, each time
/// waiting for the assignments to follow; returns the metadata entries
/// written meanwhile and the largest broker RSS seen.
fn churn_leaders(c: &mut LocalCluster, kills: usize) -> (u64, f64) {
    let start = metadata_last_index(c);
    let mut rss: f64 = 0.0;
    for _ in 0..kills {
        let leader = c.wait_converged(3, WAIT).unwrap()["orders-0"].0;
        c.kill9(leader).unwrap();
        c.wait_converged(3, Duration::from_secs(4))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
        c.spawn(leader).unwrap();
        c.wait_converged(3, WAIT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
        for node in c.running() {
            rss = rss.max(c.pid(node).map_or(0.0, rss_mib));
        }
    }
    (metadata_last_index(c) - start, rss)
}

/// The broker's side of containment: a plugin naming a replica Raft did
/// not elect, at the current term, before the default plugin, cannot keep
/// Metadata wrong (the elected leader's vouched write replaces it, and a
/// node that knows the term's leader refuses it outright); and a plugin
/// repeating a valid write 10,000 times per event costs nothing (one write
/// per partition in flight from a node). The write storm's figure: metadata
/// entries and broker RSS over the same kill cycles, with and without it.
#[test]
fn wrong_leaders_cannot_stick_and_write_storms_cost_nothing() {
    let wasm = adversary_wasm();
    let hostile = format!(
        "[[plugins]]\nname = \"liar\"\npath = \"{wasm}\"\ngrants = [\"assignments\"]\n\
         [plugins.config]\nmode = \"wrong-leader\"\n\n\
         [[plugins]]\nname = \"stormer\"\npath = \"{wasm}\"\ngrants = [\"assignments\"]\n\
         limits = {{ timeout_ms = 5000, set_leader_per_batch = 100000, set_leader_per_sec = 1000000 }}\n\
         [plugins.config]\nmode = \"write-storm\"\ncount = 10000\n\n{}",
        default_plugin()
    );
    let mut figures = Vec::new();
    for (name, plugins) in [("without", default_plugin().to_owned()), ("with", hostile)] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = start(dir.path(), plugins);
        c.create_topic("orders", 3, 3, WAIT).unwrap();
        c.wait_converged(3, WAIT)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
        let (entries, rss) = churn_leaders(&mut c, 3);
        if name == "with" {
            // Counted and logged under its name: refused at the nodes that
            // knew the term's leader.
            wait_counted(&c, "liar", "refused_calls");
            let logs = c.logs();
            assert!(
                logs.contains("is not the leader Raft elected"),
                "no refusal logged:\n{logs}"
            );
            assert!(counter(&c, "stormer", "events") > 0);
        }
        figures.push((name, entries, rss));
    }
    println!(
        "write storm figure (3 kill -9 cycles, 3 partitions): {}",
        figures
            .iter()
            .map(|(n, e, r)| format!("{n} the attack: {e} metadata entries, max RSS {r:.0} MiB"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let (without, with) = (figures[0].1, figures[1].1);
    // 10,000 writes per event would be tens of thousands of entries
    // ungated; the gate leaves a few per partition and election.
    assert!(
        with <= 2 * without + 60,
        "metadata entries: {with} with the storm, {without} without"
    );
    assert!(figures[1].2 < figures[0].2 + 100.0, "{figures:?}");
}

/// A plugin moving every partition's leadership on every event: each move
/// is an election, so a storm of them must be bounded by the per-partition
/// transfer cooldown (2 s by default), and the assignments still follow.
#[test]
fn transfer_churn_is_bounded_by_the_cooldown() {
    let wasm = adversary_wasm();
    let plugins = format!(
        "[[plugins]]\nname = \"churner\"\npath = \"{wasm}\"\ngrants = [\"leadership\"]\n\
         [plugins.config]\nmode = \"transfer-churn\"\n\n{}",
        default_plugin()
    );
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), plugins);
    c.create_topic("orders", 3, 3, WAIT).unwrap();
    let deadline = Instant::now() + WAIT;
    while terms(&c).len() < 3 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    // From the topic's creation (each partition's first election is term 1).
    let window = Duration::from_secs(6);
    std::thread::sleep(window);
    let after = terms(&c);
    let elections: u64 = after.values().map(|t| t - 1).sum();
    // Each node asks at most once per partition per cooldown: 3 nodes x 3
    // partitions x (6 s / 2 s + 1). Ungated, every election's events ask
    // for the next, without end.
    let bound = 3 * 3 * 4;
    println!("transfer churn: {elections} elections in {window:?} after creation (bound {bound})");
    assert!(elections > 0, "the churner moved nothing: is it running?");
    assert!(elections <= bound, "{elections} elections in {window:?}");
    wait_counted(&c, "churner", "refused_calls");
}
