//! Three real broker processes on loopback: assignments follow Raft's
//! elections through the default plugin, across kill -9 and restart; the
//! original bug without it; a trapping plugin stops nothing; a dropped event
//! heals through the resync.

use leaderhook::admin::{Request, Status};
use leaderhook::config::RaftConfig;
use leaderhook::raft::shared::Role;
use leaderhook::supervisor::{ClusterSpec, LocalCluster, View, metric_sum};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn raft_config() -> RaftConfig {
    RaftConfig {
        tick_ms: 50,
        election_ticks: 10,
        heartbeat_ticks: 2,
        resync_ms: 1000,
        ..RaftConfig::default()
    }
}

/// A 3-node cluster of the supervisor, failing the test on any error.
struct Cluster {
    _dir: tempfile::TempDir,
    nodes: LocalCluster,
}

impl Cluster {
    /// A 3-node cluster; `plugins` replaces the `[[plugins]]` of each config.
    fn start(plugins: Option<&str>) -> Self {
        Self::start_with(plugins, &raft_config())
    }

    fn start_with(plugins: Option<&str>, raft: &RaftConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = ClusterSpec {
            raft: raft.clone(),
            plugins: plugins.map(str::to_owned),
            log: "error".into(),
            // The drop-events and inject-became-leader test hooks.
            fault_injection: true,
            ..ClusterSpec::default()
        };
        let nodes = LocalCluster::start(
            Path::new(env!("CARGO_BIN_EXE_leaderhook")),
            dir.path(),
            &spec,
        )
        .unwrap();
        Self { _dir: dir, nodes }
    }

    fn spawn(&mut self, node: u64) {
        self.nodes.spawn(node).unwrap();
    }

    fn kill9(&mut self, node: u64) {
        self.nodes.kill9(node).unwrap();
    }

    fn request(&self, node: u64, request: &Request) -> anyhow::Result<serde_json::Value> {
        self.nodes.request(node, request)
    }

    fn status(&self, node: u64) -> Option<Status> {
        self.nodes.status(node).ok()
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        self.nodes.create_topic(name, partitions, 3, WAIT).unwrap();
    }

    fn view(&self) -> View {
        self.nodes.view()
    }

    /// Waits until every partition has a Raft leader and every live node's
    /// assignment names it at its term. Returns partition -> (leader, term).
    fn wait_converged(&self, partitions: usize) -> BTreeMap<String, (u64, u64)> {
        self.wait_converged_within(partitions, WAIT)
    }

    fn wait_converged_within(
        &self,
        partitions: usize,
        within: Duration,
    ) -> BTreeMap<String, (u64, u64)> {
        self.nodes
            .wait_converged(partitions, within)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.nodes.logs()))
    }
}

#[test]
fn assignments_follow_raft_through_kill_and_restart() {
    let mut c = Cluster::start(None);
    c.create_topic("orders", 3);
    let before = c.wait_converged(3);

    // kill -9 the leader of orders-0.
    let (victim, old_term) = before["orders-0"];
    c.kill9(victim);
    let after = c.wait_converged(3);
    let (new_leader, new_term) = after["orders-0"];
    assert_ne!(new_leader, victim);
    assert!(new_term > old_term, "new epoch {new_term} > {old_term}");

    // Restart it: it rejoins from its data directory, replays the metadata
    // (the topic is still there) and agrees with everyone.
    c.spawn(victim);
    let rejoined = c.wait_converged(3);
    for (partition, (_, term)) in &rejoined {
        assert!(
            *term >= after[partition].1,
            "{partition}: epochs never go back"
        );
    }
    let status = c.status(victim).unwrap();
    assert_eq!(
        status.replicas.len(),
        3,
        "the restarted node hosts all 3 replicas again"
    );
}

/// A killed node's connections close at once; the survivors take that as
/// the sign to elect, without waiting out the election timeout (5 s to 10 s
/// here, so converging within 4 s can only come from that path; it takes
/// tens of milliseconds, the rest is headroom for a loaded machine).
#[test]
fn a_killed_leader_is_replaced_before_any_election_timeout() {
    let slow = RaftConfig {
        tick_ms: 50,
        election_ticks: 100,
        heartbeat_ticks: 2,
        resync_ms: 1000,
        ..RaftConfig::default()
    };
    let mut c = Cluster::start_with(None, &slow);
    c.create_topic("orders", 3);
    let before = c.wait_converged(3);
    let (victim, old_term) = before["orders-0"];
    c.kill9(victim);
    let after = c.wait_converged_within(3, Duration::from_secs(4));
    let (leader, term) = after["orders-0"];
    assert_ne!(leader, victim);
    assert!(term > old_term);
}

#[test]
fn without_the_default_plugin_assignments_diverge() {
    // No plugin, and no safety net (the embedded default plugin would
    // take over the assignments).
    let c = Cluster::start(Some("[dispatch]\nfail_to_default = false\n"));
    c.create_topic("orders", 3);
    let deadline = Instant::now() + WAIT;
    // Wait for Raft to elect every partition's leader...
    loop {
        let view = c.view();
        if view.len() == 3 && view.values().all(|(l, _)| l.is_some()) {
            // ...then the stored assignments still name nobody: Metadata
            // would send clients nowhere (or, with creation-time placement,
            // to the wrong node).
            std::thread::sleep(Duration::from_secs(2));
            let view = c.view();
            for (partition, (leader, assigned)) in &view {
                assert!(leader.is_some());
                assert!(
                    assigned.values().all(|(a, _)| a.is_none()),
                    "{partition}: {assigned:?}"
                );
            }
            return;
        }
        assert!(Instant::now() < deadline, "no leaders: {view:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_plugin_that_traps_on_every_event_stops_nothing() {
    let plugins = format!(
        "[[plugins]]\nname = \"panicker\"\npath = \"{}\"\n[plugins.config]\nmode = \"panic\"\n\n\
         [[plugins]]\nname = \"assign-leader\"\npath = \"builtin:assign-leader\"\ngrants = [\"assignments\"]\n",
        plugin_wasm("adversary")
    );
    let mut c = Cluster::start(Some(&plugins));
    c.create_topic("orders", 3);
    let before = c.wait_converged(3);
    let (victim, _) = before["orders-1"];
    c.kill9(victim);
    let after = c.wait_converged(3);
    assert_ne!(after["orders-1"].0, victim);
    let status = c.status(after["orders-1"].0).unwrap();
    let panics = status.plugins["plugins"][0]["panics"].as_u64().unwrap();
    assert!(
        panics > 0,
        "the panicking plugin did run and trap: {}",
        status.plugins
    );
}

#[test]
fn a_dropped_event_heals_through_the_resync() {
    let mut c = Cluster::start(None);
    c.create_topic("orders", 1);
    let before = c.wait_converged(1);
    let (victim, _) = before["orders-0"];
    // Every survivor drops its next events: the new leader's became-leader
    // never reaches its plugin; only the resync (every 1 s here) can heal it.
    for node in [1, 2, 3] {
        if node != victim {
            c.request(node, &Request::DropEvents { count: 1000 })
                .unwrap();
        }
    }
    c.kill9(victim);
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != victim).collect();
    // The drop count outlasts the election's events; meanwhile the metrics
    // show the stored assignment behind Raft (the seed bug, as a gauge).
    let scrape = |node| c.nodes.scrape(node).unwrap();
    let deadline = Instant::now() + WAIT;
    while !survivors
        .iter()
        .any(|n| metric_sum(&scrape(*n), "leaderhook_assignment_mismatch", &[]) >= 1.0)
    {
        assert!(
            Instant::now() < deadline,
            "the gauge never showed the mismatch"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let resynced_before: f64 = survivors
        .iter()
        .map(|n| metric_sum(&scrape(*n), "leaderhook_resync_redeliveries_total", &[]))
        .sum();
    // Lift the drop so the resync's re-delivery gets through.
    for node in [1, 2, 3] {
        if node != victim {
            c.request(node, &Request::DropEvents { count: 0 }).unwrap();
        }
    }
    let after = c.wait_converged(1);
    let deadline = Instant::now() + WAIT;
    while !survivors
        .iter()
        .all(|n| metric_sum(&scrape(*n), "leaderhook_assignment_mismatch", &[]) == 0.0)
    {
        assert!(Instant::now() < deadline, "the gauge never returned to 0");
        std::thread::sleep(Duration::from_millis(100));
    }
    let resynced_after: f64 = survivors
        .iter()
        .map(|n| metric_sum(&scrape(*n), "leaderhook_resync_redeliveries_total", &[]))
        .sum();
    assert!(
        resynced_after > resynced_before,
        "resync re-deliveries {resynced_before} -> {resynced_after}"
    );
    let (leader, _) = after["orders-0"];
    assert_ne!(leader, victim);
    let status = c.status(leader).unwrap();
    let dropped = status.plugins["queue"]["dropped"].as_u64().unwrap();
    assert!(
        dropped > 0,
        "the election's events were dropped: {}",
        status.plugins
    );
}

fn plugin_wasm(name: &str) -> String {
    let root = leaderhook_hooks::guest_build::workspace_root(Path::new(env!("CARGO_MANIFEST_DIR")));
    let paths = leaderhook_hooks::guest_build::build_guests(&root, &[name]).unwrap();
    paths[0].to_string_lossy().into_owned()
}

#[test]
fn transfer_requests_reach_raft_preferred_leaders_win() {
    let plugins = format!(
        "[[plugins]]\nname = \"assign-leader\"\npath = \"builtin:assign-leader\"\ngrants = [\"assignments\"]\n\n\
         [[plugins]]\nname = \"preferred-leader\"\npath = \"{}\"\ngrants = [\"leadership\"]\n",
        plugin_wasm("preferred-leader")
    );
    let mut c = Cluster::start(Some(&plugins));
    c.create_topic("orders", 3);
    // Whoever won the first elections, leadership moves to each partition's
    // preferred replica (orders-0 on [1,2,3], orders-1 on [2,3,1], ...).
    let preferred = |c: &Cluster| {
        let deadline = Instant::now() + WAIT;
        loop {
            let view = c.wait_converged(3);
            if (0..3).all(|p| view[&format!("orders-{p}")].0 == p as u64 + 1) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "not on preferred leaders: {view:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let first = preferred(&c);
    // Every leader has committed an entry of its own term: it serves.
    for node in [1, 2, 3] {
        let status = c.status(node).unwrap();
        for r in status.replicas.iter().filter(|r| r.role == Role::Leader) {
            assert!(
                r.serving,
                "node {node} leads {} but does not serve",
                r.partition
            );
        }
    }
    c.kill9(1);
    let away = c.wait_converged(3);
    assert_ne!(away["orders-0"].0, 1);
    c.spawn(1);
    let back = preferred(&c);
    assert!(
        back["orders-0"].1 > first["orders-0"].1,
        "back at a newer term"
    );
}

#[test]
fn delayed_and_duplicated_events_never_move_an_assignment_back() {
    let mut c = Cluster::start(None);
    c.create_topic("orders", 1);
    let first = c.wait_converged(1);
    let (victim, _) = first["orders-0"];
    c.kill9(victim);
    let current = c.wait_converged(1);
    let (leader, term) = current["orders-0"];
    assert!(term >= 2);
    let follower = [1, 2, 3]
        .into_iter()
        .find(|n| *n != victim && *n != leader)
        .unwrap();
    // A follower's plugin is handed a late became-leader for itself at an
    // old term, and the leader's plugin a duplicate of its current one.
    for (node, t) in [
        (follower, term - 1),
        (follower, 1),
        (leader, term),
        (leader, term),
    ] {
        let pushed = c
            .request(
                node,
                &Request::InjectBecameLeader {
                    partition: "orders-0".into(),
                    term: t,
                },
            )
            .unwrap();
        eprintln!("node {node} term {t}: {pushed}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = c.wait_converged(1);
    assert_eq!(
        after["orders-0"],
        (leader, term),
        "the assignment did not move"
    );
    // The follower's dispatcher had delivered newer terms of the partition,
    // so the late events were dropped as stale before any plugin; the
    // leader's duplicates reached its plugin and wrote nothing new.
    let status = c.status(follower).unwrap();
    assert_eq!(
        status.plugins["queue"]["stale"].as_u64(),
        Some(2),
        "{}",
        status.plugins
    );
    let status = c.status(leader).unwrap();
    assert_eq!(
        status.plugins["plugins"][0]["errors"].as_u64(),
        Some(0),
        "{}",
        status.plugins
    );
}

/// Fail stop: a node whose Raft log writes fail must not serve on from
/// frozen state; it exits non-zero with a clear log line (a supervisor
/// restarts it from its data directory), and the survivors carry on.
#[test]
fn a_node_whose_storage_fails_exits_and_the_others_carry_on() {
    let mut c = Cluster::start(None);
    c.create_topic("orders", 3);
    let before = c.wait_converged(3);
    let victim = before["orders-0"].0;
    c.request(victim, &Request::FailStorage).unwrap();
    // Metadata entries make every node write its log.
    c.nodes
        .create_topic("trigger", 1, 3, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.nodes.logs()));
    let exit = c.nodes.wait_exit(victim, WAIT).unwrap();
    assert_eq!(
        exit.code(),
        Some(leaderhook::broker::EXIT_RAFT_LOOP_FAILED),
        "{exit}"
    );
    assert!(
        c.nodes
            .logs()
            .contains("the Raft loop stopped (raft log write failed"),
        "{}",
        c.nodes.logs()
    );
    let after = c.wait_converged(4);
    assert!(
        after.values().all(|(leader, _)| *leader != victim),
        "{after:?}"
    );
    // Its disk back (a fresh process), it rejoins from its data directory.
    c.spawn(victim);
    c.wait_converged(4);
    assert_eq!(c.status(victim).unwrap().replicas.len(), 4);
}
