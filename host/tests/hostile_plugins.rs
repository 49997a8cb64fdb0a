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

use leaderhook::admin::{self, Request, Status};
use leaderhook::cluster;
use leaderhook::config::{NodeConfig, RaftConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
/// Bytes a notification keeps (`leaderhook_hooks::text::MAX_PAYLOAD`) and a
/// log line's message (`MAX_TEXT`), plus room for markers and fields.
const PAYLOAD_LINE: u64 = 16 * 1024 + 128;
const LOG_LINE: u64 = 4096 + 512;

/// Per partition: the Raft leader and its term, and every node's assignment.
type View = BTreeMap<String, (Option<(u64, u64)>, BTreeMap<u64, (Option<u64>, u64)>)>;

struct Cluster {
    dir: tempfile::TempDir,
    configs: Vec<PathBuf>,
    admins: Vec<SocketAddr>,
    nodes: BTreeMap<u64, Child>,
}

impl Cluster {
    /// Elections time out after 5 s to 10 s: only the fast path (a closed
    /// connection) elects sooner. `@NODE@` in `plugins` becomes the node id.
    fn start(plugins: &str) -> Self {
        let raft = RaftConfig {
            tick_ms: 50,
            election_ticks: 100,
            heartbeat_ticks: 2,
            resync_ms: 1000,
        };
        let dir = tempfile::tempdir().unwrap();
        let configs = cluster::init(dir.path(), 3, &raft).unwrap();
        for (i, file) in configs.iter().enumerate() {
            let text = std::fs::read_to_string(file).unwrap();
            let head = text.split("[[plugins]]").next().unwrap().to_owned();
            let plugins = plugins.replace("@NODE@", &(i + 1).to_string());
            std::fs::write(file, head + &plugins).unwrap();
        }
        let admins = configs
            .iter()
            .map(|f| NodeConfig::from_file(f).unwrap().admin_listen)
            .collect();
        let mut cluster = Self {
            dir,
            configs,
            admins,
            nodes: BTreeMap::new(),
        };
        for node in 1..=3 {
            cluster.spawn(node);
        }
        cluster
    }

    fn log_path(&self, node: u64) -> PathBuf {
        self.dir.path().join(format!("node{node}.log"))
    }

    fn spawn(&mut self, node: u64) {
        let log = std::fs::File::create(self.log_path(node)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_leaderhook"))
            .args(["broker", "--config"])
            .arg(&self.configs[node as usize - 1])
            .env("RUST_LOG", "warn,leaderhook::plugin=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes.insert(node, child);
    }

    fn kill9(&mut self, node: u64) {
        let mut child = self.nodes.remove(&node).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn request(&self, node: u64, request: &Request) -> anyhow::Result<serde_json::Value> {
        admin::request(
            self.admins[node as usize - 1],
            request,
            Duration::from_secs(15),
        )
    }

    fn status(&self, node: u64) -> Option<Status> {
        serde_json::from_value(self.request(node, &Request::Status).ok()?).ok()
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let deadline = Instant::now() + WAIT;
        let request = Request::CreateTopic {
            name: name.into(),
            partitions,
            replication: 3,
        };
        while let Err(e) = self.request(1, &request) {
            assert!(Instant::now() < deadline, "create topic {name}: {e:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn view(&self) -> View {
        let mut view = View::new();
        for &node in self.nodes.keys() {
            let Some(status) = self.status(node) else {
                continue;
            };
            for r in status.replicas {
                let entry = view.entry(r.partition.clone()).or_default();
                if r.role == "Leader" && entry.0.is_none_or(|(_, t)| r.term > t) {
                    entry.0 = Some((node, r.term));
                }
                entry.1.insert(node, (r.assigned_leader, r.epoch));
            }
        }
        view
    }

    /// Waits until every partition has a Raft leader and every live node's
    /// assignment names it at its term.
    fn wait_converged(&self, partitions: usize, within: Duration) -> BTreeMap<String, (u64, u64)> {
        let deadline = Instant::now() + within;
        loop {
            let view = self.view();
            let converged = view.len() == partitions
                && view.values().all(|(leader, assigned)| {
                    leader.is_some_and(|(l, t)| {
                        assigned.len() == self.nodes.len()
                            && assigned.values().all(|&(a, e)| a == Some(l) && e == t)
                    })
                });
            if converged {
                return view
                    .into_iter()
                    .map(|(p, (l, _))| (p, l.unwrap()))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "did not converge within {within:?}: {view:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One plugin's counter summed over the live nodes.
    fn counter(&self, plugin: &str, counter: &str) -> u64 {
        self.nodes
            .keys()
            .filter_map(|&node| self.status(node))
            .map(|status| plugin_stats(&status, plugin)[counter].as_u64().unwrap_or(0))
            .sum()
    }

    /// Waits until `counter` of `plugin` is positive on the live nodes.
    fn wait_counted(&self, plugin: &str, counter: &str) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let n = self.counter(plugin, counter);
            if n > 0 {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "{plugin}: {counter} never counted"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.nodes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
/// notifier.
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
             [[sinks]]\nname = \"file\"\nkind = \"file\"\npath = \"notifications-@NODE@.log\"\n";
    text
}

#[test]
fn hostile_plugins_before_the_default_one_stop_nothing_and_are_bounded() {
    let mut c = Cluster::start(&hostile_chain());
    c.create_topic("orders", 3);
    let before = c.wait_converged(3, WAIT);

    // kill -9 the leader of orders-0: the survivors converge well within
    // one election timeout, attackers or not.
    let (victim, old_term) = before["orders-0"];
    c.kill9(victim);
    let after = c.wait_converged(3, Duration::from_secs(4));
    let (leader, term) = after["orders-0"];
    assert_ne!(leader, victim);
    assert!(term > old_term);

    // Each attack was counted under its plugin's name.
    c.wait_counted("sleeper", "timeouts");
    c.wait_counted("reinit-blocker", "timeouts");
    c.wait_counted("retry-looper", "timeouts");
    c.wait_counted("retry-looper", "retries");
    c.wait_counted("shouter", "errors");
    c.wait_counted("logger", "log_suppressed");
    c.wait_counted("printer", "log_suppressed");
    c.wait_counted("notifier", "truncated");
    assert!(c.counter("assign-leader", "events") > 0);
    assert_eq!(c.counter("assign-leader", "skipped_batches"), 0);

    // The brokers are up and their status stays small: the 10 MB error is
    // kept as 4 KiB.
    for (&node, child) in &mut c.nodes {
        assert!(child.try_wait().unwrap().is_none(), "node {node} exited");
    }
    for &node in c.nodes.keys() {
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

    // The sink got at most 16 KiB per notification, not 8 MiB. (Its
    // writer runs behind the plugin: wait for one batch's 50 lines.)
    for &node in c.nodes.keys() {
        let file = c.dir.path().join(format!("notifications-{node}.log"));
        let deadline = Instant::now() + WAIT;
        let sink = loop {
            let sink = std::fs::read_to_string(&file).unwrap_or_default();
            if sink.matches('\n').count() >= 50 {
                break sink;
            }
            assert!(
                Instant::now() < deadline,
                "node {node}: {} lines",
                sink.matches('\n').count()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // Complete lines only: the writer may be in the middle of one.
        let lines: Vec<&str> = sink
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .collect();
        for line in lines {
            assert!(line.len() as u64 <= PAYLOAD_LINE, "{} bytes", line.len());
            assert!(line.ends_with("[truncated, 8388608 bytes in all]"));
        }
    }

    // Each live node's log names every attacker, and holds at most the
    // admitted plugin lines (4 KiB each) plus the host's own lines.
    for &node in c.nodes.keys() {
        let log = std::fs::read_to_string(c.log_path(node)).unwrap();
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
