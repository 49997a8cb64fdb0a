//! Metadata snapshots on three real broker processes: the metadata group
//! snapshots every few entries and compacts its log behind them, a node
//! restarts from its own snapshot plus the log tail, and a node that was
//! down while the others compacted past what it has catches up through the
//! leader's snapshot (topics created meanwhile opened, deleted ones closed),
//! even when the first snapshot sent to it is lost.

use leaderhook::admin::Request;
use leaderhook::config::RaftConfig;
use leaderhook::supervisor::{ClusterSpec, LocalCluster};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
/// Topics created while node 3 is down.
const NEW: usize = 20;

fn spec() -> ClusterSpec {
    ClusterSpec {
        raft: RaftConfig {
            tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 2,
            resync_ms: 1000,
            // Node 3 stays in placement while it is down: topics created
            // meanwhile get a replica on it, to be opened when it returns.
            session_timeout_ms: 60_000,
            snapshot_every_entries: 20,
            snapshot_keep_entries: 5,
            ..RaftConfig::default()
        },
        log: "info,leaderhook::raft::node=debug".into(),
        fault_injection: true,
        ..ClusterSpec::default()
    }
}

fn partitions_on(c: &LocalCluster, node: u64) -> BTreeSet<String> {
    c.status(node)
        .unwrap()
        .replicas
        .into_iter()
        .map(|r| r.partition)
        .collect()
}

fn log_of(c: &LocalCluster, node: u64) -> String {
    std::fs::read_to_string(c.dir().join(format!("node{node}.log"))).unwrap_or_default()
}

#[test]
fn a_node_behind_the_compacted_log_catches_up_through_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_leaderhook"));
    let mut c = LocalCluster::start(bin, dir.path(), &spec()).unwrap();
    c.create_topic("kept", 1, 3, WAIT).unwrap();
    c.create_topic("doomed", 1, 3, WAIT).unwrap();
    c.wait_converged(2, WAIT).unwrap();

    // Node 3 has at most what the others have now.
    let behind = [1, 2, 3]
        .iter()
        .map(|&n| c.status(n).unwrap().metadata_log.last_index)
        .max()
        .unwrap();
    c.kill9(3).unwrap();
    // Far more metadata entries (a creation and an assignment each) than
    // the 5 kept behind each snapshot.
    for i in 0..NEW {
        c.create_topic(&format!("new{i}"), 1, 3, WAIT).unwrap();
    }
    c.request(
        1,
        &Request::DeleteTopic {
            name: "doomed".into(),
        },
    )
    .unwrap();
    c.wait_converged(NEW + 1, WAIT).unwrap();
    // Until the survivors have compacted past everything node 3 has.
    let deadline = std::time::Instant::now() + WAIT;
    while [1, 2]
        .iter()
        .any(|&n| c.status(n).unwrap().metadata_log.first_index <= behind + 1)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction past {behind}"
        );
        // More metadata entries, no more topics.
        c.create_topic("pad", 1, 3, WAIT).unwrap();
        c.request(1, &Request::DeleteTopic { name: "pad".into() })
            .unwrap();
    }

    // The first snapshot sent to node 3 is lost on the way (as with a
    // broken connection or a full queue): raft-rs sends nothing more to a
    // follower waiting for a snapshot until told it failed; the leader must
    // notice and send it again.
    for n in [1, 2] {
        c.request(n, &Request::DropSnapshots { count: 1 }).unwrap();
    }
    c.spawn(3).unwrap();
    let converged = c
        .wait_converged(NEW + 1, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
    assert!(!converged.contains_key("doomed-0"));
    let survivors = format!("{}{}", log_of(&c, 1), log_of(&c, 2));
    assert!(
        survivors.contains("test hook: snapshot dropped")
            && survivors.contains("snapshot unanswered: sending it again"),
        "a snapshot was lost and sent again:\n{}",
        c.logs()
    );
    let expected: BTreeSet<String> = std::iter::once("kept-0".to_string())
        .chain((0..NEW).map(|i| format!("new{i}-0")))
        .collect();
    assert_eq!(
        partitions_on(&c, 3),
        expected,
        "node 3 opened the new topics' replicas and closed the deleted one's"
    );
    // Its log starts after a snapshot, past everything it had (status is
    // published once per tick, and may still show the log node 3 replayed
    // at start: poll until it has applied what node 1 has now).
    let caught_up = c.status(1).unwrap().metadata_log.applied;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let log3 = c.status(3).unwrap().metadata_log;
        if log3.applied >= caught_up {
            assert!(
                log3.first_index > behind + 1,
                "node 3 caught up through the log, not a snapshot: {log3:?}, had up to \
                 {behind}\n{}",
                c.logs()
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }

    // A node restarts from its own snapshot plus the log tail.
    c.kill9(1).unwrap();
    c.spawn(1).unwrap();
    c.wait_converged(NEW + 1, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs()));
    assert_eq!(partitions_on(&c, 1), expected);
    assert!(
        log_of(&c, 1).contains("metadata restored from its snapshot"),
        "node 1 restarted from its own snapshot:\n{}",
        c.logs()
    );
}
