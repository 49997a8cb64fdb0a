//! Closed by default, tried as an attacker would on real broker processes: the admin port
//! without the secret (or with a wrong one), its test hooks on a node without the testing
//! switch, a flood of admin connections, and strangers speaking the Raft wire protocol.

use leaderhook::admin::{self, AdminError, Connection, FailureKind, Request, Status};
use leaderhook::auth::{ClusterAuth, Secret};
use leaderhook::cluster::{self, InitOptions};
use leaderhook::config::{NodeConfig, RaftConfig};
use leaderhook::raft::transport::Envelope;
use leaderhook::raft::transport::wire::{Handshake, encode_frame};
use raft::prelude::{Message, MessageType};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(60);
const IO: Duration = Duration::from_secs(15);
/// A term no real election reaches in a test.
const FORGED_TERM: u64 = 1_000_000;

struct Node {
    config: NodeConfig,
    child: Child,
}

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: BTreeMap<u64, Node>,
}

impl Cluster {
    /// `nodes` brokers; `extra` is appended to every config (before its `[[peers]]`).
    fn start(nodes: u64, options: &InitOptions, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let raft = RaftConfig {
            tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 2,
            resync_ms: 1000,
            ..RaftConfig::default()
        };
        let files = cluster::init_with(dir.path(), nodes, &raft, options).unwrap();
        let nodes = files
            .iter()
            .map(|file| {
                if !extra.is_empty() {
                    let text = std::fs::read_to_string(file).unwrap();
                    let (head, peers) = text.split_at(text.find("[[peers]]").unwrap());
                    std::fs::write(file, format!("{head}{extra}\n{peers}")).unwrap();
                }
                let config = NodeConfig::from_file(file).unwrap();
                let child = spawn(file);
                (config.node_id, Node { config, child })
            })
            .collect();
        let cluster = Self { _dir: dir, nodes };
        for id in cluster.nodes.keys() {
            cluster.wait_serving(*id);
        }
        cluster
    }

    fn config(&self, node: u64) -> &NodeConfig {
        &self.nodes[&node].config
    }

    fn secret(&self, node: u64) -> Secret {
        self.config(node).auth().unwrap().secret().clone()
    }

    fn request(&self, node: u64, request: &Request) -> Result<serde_json::Value, AdminError> {
        admin::request(
            self.config(node).admin_listen,
            &self.secret(node),
            request,
            IO,
        )
    }

    fn status(&self, node: u64) -> Status {
        serde_json::from_value(self.request(node, &Request::Status).unwrap()).unwrap()
    }

    /// Waits until `node` shows `n` local replicas.
    fn wait_replicas(&self, node: u64, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.status(node).replicas.len() != n {
            assert!(
                Instant::now() < deadline,
                "node {node} never showed {n} replicas"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_serving(&self, node: u64) {
        let deadline = Instant::now() + WAIT;
        while self.request(node, &Request::Status).is_err() {
            assert!(Instant::now() < deadline, "node {node} never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn create_topic(&self, name: &str, partitions: u32) {
        let deadline = Instant::now() + WAIT;
        let replication = self.nodes.len();
        loop {
            let request = Request::CreateTopic {
                name: name.into(),
                partitions,
                replication,
                configs: Default::default(),
            };
            match self.request(1, &request) {
                Ok(_) => return,
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("create topic {name}: {e:#}"),
            }
        }
    }

    /// Partition -> (Raft leader, term), once every partition has one and every node's
    /// assignment names it.
    fn wait_converged(&self, partitions: usize) -> BTreeMap<String, (u64, u64)> {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut leaders = BTreeMap::new();
            let mut agreed = true;
            for &node in self.nodes.keys() {
                for r in self.status(node).replicas {
                    if r.role == leaderhook::raft::shared::Role::Leader {
                        leaders.insert(r.partition.clone(), (node, r.term));
                    }
                    agreed &= r.assigned_leader == r.raft_leader && r.raft_leader.is_some();
                }
            }
            if agreed && leaders.len() == partitions {
                return leaders;
            }
            assert!(Instant::now() < deadline, "no convergence: {leaders:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}

fn spawn(config: &PathBuf) -> Child {
    Command::new(env!("CARGO_BIN_EXE_leaderhook"))
        .args(["broker", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap()
}

/// A raw connection to an admin port: its greeting line, and the stream.
fn raw_admin(addr: SocketAddr) -> (String, BufReader<TcpStream>) {
    let stream = TcpStream::connect_timeout(&addr, IO).unwrap();
    stream.set_read_timeout(Some(IO)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    (greeting, reader)
}

/// Writes `bytes`, then reads every line until the server closes the connection.
fn send_and_read_to_end(reader: &mut BufReader<TcpStream>, bytes: &[u8]) -> Vec<serde_json::Value> {
    let _ = reader.get_mut().write_all(bytes);
    let mut text = String::new();
    let _ = reader.read_to_string(&mut text);
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kind(answer: &serde_json::Value) -> &str {
    answer["kind"].as_str().unwrap_or("")
}

#[test]
fn admin_requests_without_the_secret_are_refused_and_the_node_keeps_serving() {
    let c = Cluster::start(1, &InitOptions::default(), "");
    let addr = c.config(1).admin_listen;
    let create = br#"{"op":"create-topic","name":"evil","partitions":1,"replication":1}"#;

    // A request with no answer to the challenge: refused, the connection closed.
    let (greeting, mut conn) = raw_admin(addr);
    assert!(greeting.contains("challenge"), "{greeting}");
    let answers = send_and_read_to_end(&mut conn, &[&create[..], b"\n"].concat());
    assert_eq!(answers.len(), 1, "one refusal, then closed: {answers:?}");
    assert_eq!(kind(&answers[0]), "auth");
    assert!(
        answers[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("authentication required"),
        "{answers:?}"
    );

    // A wrong secret: refused with a clear error, before any request is read.
    let wrong = Secret::new(&"w".repeat(64)).unwrap();
    let err = admin::request(addr, &wrong, &Request::Status, IO).unwrap_err();
    assert_eq!(err.kind(), Some(FailureKind::Auth), "{err}");
    assert_eq!(err.to_string(), "authentication failed: wrong admin secret");
    // An answer of the right shape made from the challenge with another key.
    let (greeting, mut conn) = raw_admin(addr);
    let challenge: serde_json::Value = serde_json::from_str(&greeting).unwrap();
    let bytes = hex::decode(challenge["challenge"].as_str().unwrap()).unwrap();
    let forged = format!(
        "{{\"auth\":\"{}\"}}\n",
        hex::encode(wrong.admin_proof(&bytes))
    );
    let answers = send_and_read_to_end(&mut conn, forged.as_bytes());
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(kind(&answers[0]), "auth");

    // A first line over its bound (1 KiB) is refused without waiting for its end.
    let (_, mut conn) = raw_admin(addr);
    let answers = send_and_read_to_end(&mut conn, &[b'{'; 1025]);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(kind(&answers[0]), "auth");

    // The node kept serving, nothing was created, and it counted the refusals.
    let status = c.status(1);
    assert!(status.replicas.is_empty(), "{:?}", status.replicas);
    assert_eq!(
        status.admin.refused_unauthenticated, 4,
        "{:?}",
        status.admin
    );
    c.create_topic("evil", 1);
    c.wait_replicas(1, 1);
}

#[test]
fn fault_injection_is_refused_without_the_testing_switch() {
    let hooks = [
        Request::DropEvents { count: 1000 },
        Request::InjectBecameLeader {
            partition: "orders-0".into(),
            term: 99,
        },
    ];
    let closed = Cluster::start(1, &InitOptions::default(), "");
    closed.create_topic("orders", 1);
    closed.wait_replicas(1, 1);
    for hook in &hooks {
        let err = closed.request(1, hook).unwrap_err();
        assert_eq!(err.kind(), Some(FailureKind::Disabled), "{err}");
        assert!(
            err.to_string().contains("[testing] fault_injection = true"),
            "{err}"
        );
    }
    // Nothing was dropped or injected; the node serves on.
    let status = closed.status(1);
    assert_eq!(
        status.plugins["queue"]["dropped"].as_u64(),
        Some(0),
        "{}",
        status.plugins
    );
    assert_eq!(status.replicas.len(), 1);

    // The same requests on a node whose config enables them.
    let open = Cluster::start(
        1,
        &InitOptions {
            fault_injection: true,
        },
        "",
    );
    open.create_topic("orders", 1);
    open.wait_replicas(1, 1);
    for hook in &hooks {
        open.request(1, hook).unwrap();
    }
}

#[test]
fn an_admin_connection_flood_is_refused_cleanly() {
    const LIMIT: usize = 4;
    let c = Cluster::start(
        1,
        &InitOptions::default(),
        &format!("[admin]\nmax_connections = {LIMIT}\n"),
    );
    let addr = c.config(1).admin_listen;
    // LIMIT connections sit unauthenticated; every further one is told "busy" and closed.
    let holders: Vec<_> = (0..LIMIT)
        .map(|_| {
            // A slot of a previous (closed) connection may take a moment to free up.
            let deadline = Instant::now() + WAIT;
            loop {
                let (greeting, conn) = raw_admin(addr);
                if greeting.contains("challenge") {
                    return conn;
                }
                assert!(Instant::now() < deadline, "{greeting}");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .collect();
    for _ in 0..6 {
        let (line, mut conn) = raw_admin(addr);
        let busy: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(kind(&busy), "busy", "{line}");
        assert!(line.contains(&format!("limit {LIMIT}")), "{line}");
        let mut rest = Vec::new();
        assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0, "left open");
    }
    // An authenticated client is refused too while they hold every slot...
    let err = Connection::open(addr, &c.secret(1), IO).err().unwrap();
    assert_eq!(err.kind(), Some(FailureKind::Busy), "{err}");
    assert!(err.is_transient());
    // ...and served once they go.
    drop(holders);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        match c.request(1, &Request::Status) {
            Ok(value) => break serde_json::from_value::<Status>(value).unwrap(),
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("{e}"),
        }
    };
    // 7 refused above (and any retry of ours that came before the slots were free).
    assert!(status.admin.refused_over_limit >= 7, "{:?}", status.admin);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Heartbeats "from" `from` to node `to` at a term far above any real one, for `groups`:
/// if node `to` read them, its replicas would follow `from` at that term.
fn forged_heartbeats(groups: &[u64], from: u64, to: u64) -> Vec<u8> {
    let envelopes: Vec<Envelope> = groups
        .iter()
        .map(|&group| {
            let mut message = Message::default();
            message.set_msg_type(MessageType::MsgHeartbeat);
            message.from = from;
            message.to = to;
            message.term = FORGED_TERM;
            Envelope { group, message }
        })
        .collect();
    encode_frame(&envelopes)
}

/// Opens a connection to a Raft port and writes `handshake` and a frame; true if the node
/// closes it within `within`.
fn stray(addr: SocketAddr, handshake: &[u8], frame: &[u8], within: Duration) -> bool {
    let mut stream = TcpStream::connect_timeout(&addr, IO).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    let _ = stream.write_all(handshake);
    let _ = stream.write_all(frame);
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_stray_raft_peer_is_refused_and_the_cluster_keeps_its_leaders() {
    let c = Cluster::start(3, &InitOptions::default(), "");
    c.create_topic("orders", 3);
    let before = c.wait_converged(3);
    let target = c.config(1);
    let raft_addr = target.raft_listen;
    let groups: Vec<u64> = c.status(1).replicas.iter().map(|r| r.group).collect();
    let frame = forged_heartbeats(&groups, 2, 1);
    let ours = target.auth().unwrap();
    let secret = ours.secret().clone();
    let wrong_secret =
        ClusterAuth::new(ours.cluster_id(), Secret::new(&"x".repeat(64)).unwrap()).unwrap();
    let other_cluster = ClusterAuth::new("another-cluster", secret.clone()).unwrap();
    let stats_before = c.status(1).transport;

    // Without the secret; with another cluster's id; as a version-1 peer (no proof at all).
    let mut v1 = b"LHRT\x00\x01".to_vec();
    v1.extend_from_slice(&2u64.to_be_bytes());
    let attempts = [
        Handshake::new(&wrong_secret, 2, 1, now_ms())
            .encode()
            .to_vec(),
        Handshake::new(&other_cluster, 2, 1, now_ms())
            .encode()
            .to_vec(),
        v1,
    ];
    for handshake in &attempts {
        assert!(
            stray(raft_addr, handshake, &frame, IO),
            "a stray connection was left open"
        );
    }
    let deadline = Instant::now() + WAIT;
    let stats = loop {
        let stats = c.status(1).transport;
        if stats.refused_unauthenticated >= stats_before.refused_unauthenticated + 2
            && stats.rejected_connections > stats_before.rejected_connections
        {
            break stats;
        }
        assert!(Instant::now() < deadline, "refusals not counted: {stats:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        stats.refused_unauthenticated,
        stats_before.refused_unauthenticated + 2
    );
    assert_eq!(
        stats.rejected_connections,
        stats_before.rejected_connections + 1
    );
    assert_eq!(stats.dropped_forged, 0, "no frame of theirs was read");

    // No forged message reached the Raft loop: no term moved, every leader stayed.
    std::thread::sleep(Duration::from_secs(1));
    for r in c.status(1).replicas {
        assert!(
            r.term < FORGED_TERM,
            "{} followed a stranger: {r:?}",
            r.partition
        );
    }
    assert_eq!(c.wait_converged(3), before, "leaders changed");

    // The control: the same frame behind a valid proof does reach Raft (so the refusals
    // above are what kept the cluster whole).
    let valid = Handshake::new(&ours, 2, 1, now_ms()).encode();
    stray(raft_addr, &valid, &frame, Duration::from_millis(500));
    let deadline = Instant::now() + WAIT;
    while !c.status(1).replicas.iter().any(|r| r.term >= FORGED_TERM) {
        assert!(Instant::now() < deadline, "the control frame had no effect");
        std::thread::sleep(Duration::from_millis(50));
    }
}
