//! Cluster figures on three real `leaderhook broker` processes on loopback
//! (`cargo bench -p leaderhook --bench cluster`).
//!
//! The broker is the `leaderhook` binary cargo built for this bench
//! (`CARGO_BIN_EXE_leaderhook`: release under `cargo bench`, debug under
//! `cargo test`; the binary used is printed), started, killed and restarted
//! through `leaderhook::supervisor::LocalCluster`. Nodes run with the default Raft
//! settings (tick 100 ms, election 10 ticks, heartbeat 3 ticks, resync 2 s).
//! Nothing is added to the broker: every figure comes from polling the admin
//! `status` of each node from its own thread, over one kept-alive connection,
//! so every time below carries up to one poll period of error (printed).
//!
//! 1. Election -> assignment: 30 partitions; nodes are killed with SIGKILL and
//!    restarted, each time the one leading the most partitions, until at
//!    least 100 elections were seen. Per (partition, term): from the first
//!    poll showing a replica `Leader` at that term to the first poll by which
//!    every node that was up at that moment shows the assignment naming that
//!    leader at epoch = term.
//! 2. kill -9 of a leader node -> correct assignments on the survivors: the
//!    kills of figure 1, from the kill to the first polls on which, for every
//!    partition, both survivors' assignments name a survivor that is Raft
//!    leader at that term.
//! 3. 1,000 partitions: kill -9 of the node leading the most; from the kill
//!    until every partition has a leader again (Raft), and until every
//!    assignment followed; plus per re-elected partition, election ->
//!    assignment as in 1.
//! 4. The idle 1,000-partition cluster before that kill: VmRSS and CPU
//!    (utime + stime) of each broker over a quiet window, nobody polling.
//!
//! `LEADERHOOK_BENCH_BIG_POLL_MS` changes the pause between two polls of a
//! node in figure 3 (default 5 ms); `LEADERHOOK_BENCH_ONLY=small|big` runs
//! figures 1-2 or 3-4 only. `LEADERHOOK_BENCH_BIN` uses another broker binary;
//! `LEADERHOOK_BENCH_RUST_LOG` sets the brokers' RUST_LOG (default `warn`,
//! written to node<N>.log in the cluster's temporary directory, which
//! `LEADERHOOK_BENCH_KEEP=1` keeps).
//!
//! Smoke mode (CI): without `--bench` on the command line (so `cargo test
//! --benches` runs it on the debug build) or with `LEADERHOOK_BENCH_SMOKE=1`,
//! every figure runs at a small size (6 partitions and a few elections for
//! figures 1-2, 60 partitions and short windows for 3-4): figures printed, not
//! judged. In either mode a figure that fails (no convergence, a broker that
//! does not start) makes the bench exit non-zero.
//!
//! Files: `main.rs` the sizes, the cluster and the kill shared by the figures;
//! `polling.rs` the status pollers and what they saw; `predicates.rs`
//! conditions over the latest polls; `stats.rs` latencies and percentiles;
//! `procfs.rs` /proc parsing; `rotation.rs` figures 1-2; `big.rs` figures 3-4.

mod big;
mod polling;
mod predicates;
mod procfs;
mod rotation;
mod stats;

use leaderhook::admin::Status;
use leaderhook::auth::Secret;
use leaderhook::config::NodeConfig;
use leaderhook::supervisor::{ClusterSpec, LocalCluster};
use polling::Pollers;
use predicates::{all_led, converged, leaders};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const NODES: u64 = 3;

/// The sizes of one run: full (`cargo bench`) or smoke (CI).
pub struct Sizes {
    pub smoke: bool,
    /// Figure 1: partitions of the topic, elections wanted, most kill cycles.
    pub fig1_partitions: u32,
    pub fig1_elections: usize,
    pub fig1_max_cycles: usize,
    pub fig1_poll: Duration,
    /// Figures 3 and 4.
    pub big_partitions: u32,
    pub big_poll: Duration,
    pub idle_settle: Duration,
    pub idle_window: Duration,
    /// Bounds of every wait.
    pub converge_small: Duration,
    pub converge_big: Duration,
}

impl Sizes {
    fn new(smoke: bool) -> Self {
        let big_poll = std::env::var("LEADERHOOK_BENCH_BIG_POLL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_millis(5), Duration::from_millis);
        let full = Self {
            smoke,
            fig1_partitions: 30,
            fig1_elections: 100,
            fig1_max_cycles: 40,
            fig1_poll: Duration::from_millis(2),
            big_partitions: 1000,
            big_poll,
            idle_settle: Duration::from_secs(5),
            idle_window: Duration::from_secs(10),
            converge_small: Duration::from_secs(60),
            converge_big: Duration::from_secs(180),
        };
        if smoke {
            Self {
                fig1_partitions: 6,
                fig1_elections: 4,
                fig1_max_cycles: 3,
                fig1_poll: Duration::from_millis(10),
                big_partitions: 60,
                big_poll: Duration::from_millis(10),
                idle_settle: Duration::from_secs(1),
                idle_window: Duration::from_secs(2),
                ..full
            }
        } else {
            full
        }
    }
}

fn main() {
    let smoke = std::env::var_os("LEADERHOOK_BENCH_SMOKE").is_some()
        || !std::env::args().any(|a| a == "--bench");
    let sizes = Sizes::new(smoke);
    let exe = broker_binary();
    if smoke {
        println!("smoke mode: small sizes, figures printed, not judged");
    }
    let mut summary: Vec<String> = Vec::new();
    let mut failed = false;

    let only = std::env::var("LEADERHOOK_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "small" {
        println!(
            "== figures 1 and 2: {} partitions, kill -9 / restart rotation",
            sizes.fig1_partitions
        );
        match rotation::fig1_and_2(&exe, &sizes) {
            Ok(s) => summary.extend(s),
            Err(e) => {
                println!("figure 1/2 FAILED: {e:#}");
                summary.push("fig1=FAILED fig2=FAILED".into());
                failed = true;
            }
        }
    }
    if only.is_empty() || only == "big" {
        println!("== figures 3 and 4: {} partitions", sizes.big_partitions);
        match big::fig3_and_4(&exe, &sizes) {
            Ok(s) => summary.extend(s),
            Err(e) => {
                println!("figure 3/4 FAILED: {e:#}");
                summary.push("fig3=FAILED fig4=FAILED".into());
                failed = true;
            }
        }
    }
    println!("cluster {}", summary.join(" "));
    if failed {
        std::process::exit(1);
    }
}

fn broker_binary() -> PathBuf {
    let (bin, how) = match std::env::var_os("LEADERHOOK_BENCH_BIN") {
        Some(bin) => (PathBuf::from(bin), "LEADERHOOK_BENCH_BIN"),
        None => (
            PathBuf::from(env!("CARGO_BIN_EXE_leaderhook")),
            "built by cargo for this bench",
        ),
    };
    println!("broker binary: {} ({how})", bin.display());
    bin
}

/// A local cluster of `NODES` brokers in a temporary directory (kept with
/// `LEADERHOOK_BENCH_KEEP`).
pub struct Cluster {
    pub nodes: LocalCluster,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(exe: &std::path::Path) -> anyhow::Result<Self> {
        let mut dir = tempfile::tempdir()?;
        if std::env::var_os("LEADERHOOK_BENCH_KEEP").is_some() {
            dir.disable_cleanup(true);
            println!("cluster directory (kept): {}", dir.path().display());
        }
        let spec = ClusterSpec {
            nodes: NODES,
            log: std::env::var("LEADERHOOK_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ..ClusterSpec::default()
        };
        let nodes = LocalCluster::start(exe, dir.path(), &spec)?;
        Ok(Self { nodes, _dir: dir })
    }

    /// Creates an RF3 topic, retrying while the metadata group has no leader.
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        self.nodes
            .create_topic(name, partitions, NODES as usize, Duration::from_secs(120))
    }

    /// Where the pollers reach each node: its admin address and the secret.
    pub fn admins(&self) -> anyhow::Result<Vec<(SocketAddr, Secret)>> {
        (1..=NODES)
            .map(|n| {
                let config = NodeConfig::from_file(self.nodes.config(n))?;
                Ok((config.admin_listen, config.auth()?.secret().clone()))
            })
            .collect()
    }
}

/// One kill -9 of the node leading the most partitions, as the pollers saw it.
pub struct Kill {
    pub victim: u64,
    /// Partitions the victim led when it was picked.
    pub led: usize,
    pub survivors: Vec<u64>,
    pub killed: Instant,
    /// From the kill to the first polls on which every partition has a
    /// leader among the survivors (Raft alone).
    pub elected: Option<Duration>,
    /// From the kill to the first polls on which every survivor's
    /// assignment names that leader at its term.
    pub settled: Option<Duration>,
}

/// Picks the node leading the most partitions on the latest polls, kills
/// it with SIGKILL and waits (up to `within` each) until every partition is
/// led again and every survivor's assignment follows. The caller restarts
/// the victim if it wants it back.
pub fn kill_busiest(
    cluster: &mut Cluster,
    p: &Pollers,
    partitions: usize,
    within: Duration,
) -> anyhow::Result<Kill> {
    let all: Vec<u64> = (1..=NODES).collect();
    let latest = p.latest(&all);
    let refs: Vec<&Status> = latest.iter().collect();
    let mut led: BTreeMap<u64, usize> = all.iter().map(|&n| (n, 0)).collect();
    for (l, _) in leaders(&refs).values() {
        *led.entry(*l).or_default() += 1;
    }
    let (&victim, &count) = led.iter().max_by_key(|(_, c)| **c).expect("nodes");
    let survivors: Vec<u64> = all.iter().copied().filter(|&n| n != victim).collect();
    p.down(victim);
    let killed = Instant::now();
    cluster.nodes.kill9(victim)?;
    let elected = p
        .wait_for(&survivors, killed, within, |s| all_led(s, partitions))
        .map(|t| t - killed);
    let settled = p
        .wait_for(&survivors, killed, within, |s| converged(s, partitions))
        .map(|t| t - killed);
    Ok(Kill {
        victim,
        led: count,
        survivors,
        killed,
        elected,
        settled,
    })
}
