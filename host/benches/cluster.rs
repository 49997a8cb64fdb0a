//! Cluster figures on three real `leaderhook broker` processes on loopback
//! (`cargo bench -p leaderhook --bench cluster`).
//!
//! The bench first runs `cargo build --release -p leaderhook --bin leaderhook`
//! and starts that binary (it falls back to the debug binary if the release
//! build fails; the binary used is printed). Nodes run with the default Raft
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
//! figures 1-2 or 3-4 only. `LEADERHOOK_BENCH_BIN` uses a given broker binary instead of building;
//! `LEADERHOOK_BENCH_RUST_LOG` sets the brokers' RUST_LOG (default `warn`,
//! written to node<N>.log in the cluster's temporary directory, which
//! `LEADERHOOK_BENCH_KEEP=1` keeps).

use leaderhook::admin::{AdminError, Connection, FailureKind, Request, Status};
use leaderhook::auth::Secret;
use leaderhook::cluster;
use leaderhook::config::{NodeConfig, RaftConfig};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const NODES: u64 = 3;
/// Figure 1: partitions of the topic, elections wanted, most kill cycles.
const FIG1_PARTITIONS: u32 = 30;
const FIG1_ELECTIONS: usize = 100;
const FIG1_MAX_CYCLES: usize = 40;
const FIG1_POLL: Duration = Duration::from_millis(2);
/// Figures 3 and 4.
const BIG_PARTITIONS: u32 = 1000;
const BIG_POLL: Duration = Duration::from_millis(5);
const IDLE_SETTLE: Duration = Duration::from_secs(5);
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Bounds of every wait.
const CONVERGE_SMALL: Duration = Duration::from_secs(60);
const CONVERGE_BIG: Duration = Duration::from_secs(180);
const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

fn main() {
    let exe = broker_binary();
    let mut summary: Vec<String> = Vec::new();

    let only = std::env::var("LEADERHOOK_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "small" {
        println!("== figures 1 and 2: {FIG1_PARTITIONS} partitions, kill -9 / restart rotation");
        match fig1_and_2(&exe) {
            Ok(s) => summary.extend(s),
            Err(e) => {
                println!("figure 1/2 FAILED: {e:#}");
                summary.push("fig1=FAILED fig2=FAILED".into());
            }
        }
    }
    if only.is_empty() || only == "big" {
        println!("== figures 3 and 4: {BIG_PARTITIONS} partitions");
        match fig3_and_4(&exe) {
            Ok(s) => summary.extend(s),
            Err(e) => {
                println!("figure 3/4 FAILED: {e:#}");
                summary.push("fig3=FAILED fig4=FAILED".into());
            }
        }
    }
    println!("cluster {}", summary.join(" "));
}

// ---------------------------------------------------------------------------
// The broker binary

fn broker_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("LEADERHOOK_BENCH_BIN") {
        let bin = PathBuf::from(bin);
        println!("broker binary: {} (LEADERHOOK_BENCH_BIN)", bin.display());
        return bin;
    }
    // This bench runs as <target>/release/deps/cluster-<hash>.
    let me = std::env::current_exe().expect("current exe");
    let target = me
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("bench binary inside <target>/<profile>/deps")
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    println!("building the broker: cargo build --release -p leaderhook --bin leaderhook");
    let built = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "leaderhook",
            "--bin",
            "leaderhook",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))
        .and_then(|mut child| {
            let deadline = Instant::now() + BUILD_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if status.success() => return Ok(()),
                    Ok(Some(status)) => return Err(format!("cargo build: {status}")),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!("cargo build took over {BUILD_TIMEOUT:?}"));
                    }
                }
            }
        });
    let release = target.join("release").join("leaderhook");
    let debug = target.join("debug").join("leaderhook");
    match built {
        Ok(()) if release.exists() => {
            println!("broker binary: {} (release build)", release.display());
            release
        }
        other => {
            let why = other.err().unwrap_or_else(|| "no release binary".into());
            assert!(
                debug.exists(),
                "no broker binary: {why}, and no {}",
                debug.display()
            );
            println!(
                "broker binary: {} (DEBUG build: the release build failed: {why}; figures are for an unoptimised broker)",
                debug.display()
            );
            debug
        }
    }
}

// ---------------------------------------------------------------------------
// Processes

struct Cluster {
    dir: tempfile::TempDir,
    exe: PathBuf,
    configs: Vec<PathBuf>,
    admins: Vec<(SocketAddr, Secret)>,
    nodes: BTreeMap<u64, Child>,
}

impl Cluster {
    fn start(exe: &Path) -> anyhow::Result<Self> {
        let mut dir = tempfile::tempdir()?;
        if std::env::var_os("LEADERHOOK_BENCH_KEEP").is_some() {
            dir.disable_cleanup(true);
            println!("cluster directory (kept): {}", dir.path().display());
        }
        let configs = cluster::init(dir.path(), NODES, &RaftConfig::default())?;
        let admins = configs
            .iter()
            .map(|f| {
                let config = NodeConfig::from_file(f)?;
                Ok((config.admin_listen, config.auth()?.secret().clone()))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut cluster = Self {
            dir,
            exe: exe.to_path_buf(),
            configs,
            admins,
            nodes: BTreeMap::new(),
        };
        for node in 1..=NODES {
            cluster.spawn(node)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, node: u64) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{node}.log")))?;
        let rust_log = std::env::var("LEADERHOOK_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into());
        let child = Command::new(&self.exe)
            .args(["broker", "--config"])
            .arg(&self.configs[node as usize - 1])
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.nodes.insert(node, child);
        Ok(())
    }

    fn kill9(&mut self, node: u64) {
        if let Some(mut child) = self.nodes.remove(&node) {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    fn pid(&self, node: u64) -> Option<u32> {
        self.nodes.get(&node).map(Child::id)
    }

    fn admin(&self, node: u64) -> (SocketAddr, Secret) {
        self.admins[node as usize - 1].clone()
    }

    /// Creates a topic through node 1, retrying (bounded) while the metadata
    /// group has no leader. A retry after a timed-out attempt may find the
    /// topic created by that attempt.
    fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut attempted = false;
        loop {
            let request = Request::CreateTopic {
                name: name.into(),
                partitions,
                replication: 3,
                configs: Default::default(),
            };
            let (addr, secret) = self.admin(1);
            match leaderhook::admin::request(addr, &secret, &request, Duration::from_secs(30)) {
                Ok(_) => return Ok(()),
                Err(e) if attempted && e.kind() == Some(FailureKind::Refused) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    attempted |= !matches!(e, AdminError::Unreachable { .. });
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => anyhow::bail!("create topic {name}: {e:#}"),
            }
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

// ---------------------------------------------------------------------------
// Polling

/// One kept-alive admin connection (authenticated with the cluster secret).
struct Client {
    addr: SocketAddr,
    secret: Secret,
    conn: Option<Connection>,
}

impl Client {
    fn new((addr, secret): (SocketAddr, Secret)) -> Self {
        Self {
            addr,
            secret,
            conn: None,
        }
    }

    fn status(&mut self) -> Option<Status> {
        let answer = self.try_status();
        if answer.is_none() {
            self.conn = None;
        }
        answer
    }

    fn try_status(&mut self) -> Option<Status> {
        if self.conn.is_none() {
            let conn = Connection::open(self.addr, &self.secret, Duration::from_secs(10)).ok()?;
            self.conn = Some(conn);
        }
        match self.conn.as_mut()?.call(&Request::Status) {
            Ok(value) => serde_json::from_value(value).ok(),
            Err(e) => {
                if !matches!(e, AdminError::Io { .. } | AdminError::Unreachable { .. }) {
                    eprintln!("status from {}: {e}", self.addr);
                }
                None
            }
        }
    }
}

/// What the pollers saw of one partition.
#[derive(Default)]
struct PartObs {
    /// term -> (the replica's node, first poll showing it Leader at term).
    leaders: BTreeMap<u64, (u64, Instant)>,
    /// (assigned leader, epoch) -> per node, the first poll showing it.
    assigned: HashMap<(u64, u64), [Option<Instant>; NODES as usize]>,
}

/// A node answering polls: from its first answer after a start until killed.
struct UpInterval {
    node: u64,
    from: Instant,
    until: Option<Instant>,
}

#[derive(Default)]
struct Observations {
    latest: [Option<(Instant, Status)>; NODES as usize],
    up: Vec<UpInterval>,
    parts: HashMap<String, PartObs>,
    polls: [u64; NODES as usize],
}

impl Observations {
    fn record(&mut self, node: u64, at: Instant, status: Status) {
        let i = node as usize - 1;
        self.polls[i] += 1;
        if !self.up.iter().any(|u| u.node == node && u.until.is_none()) {
            self.up.push(UpInterval {
                node,
                from: at,
                until: None,
            });
        }
        for r in &status.replicas {
            let part = match self.parts.get_mut(&r.partition) {
                Some(p) => p,
                None => self.parts.entry(r.partition.clone()).or_default(),
            };
            if r.role == leaderhook::raft::shared::Role::Leader {
                part.leaders.entry(r.term).or_insert((node, at));
            }
            if let Some(a) = r.assigned_leader {
                let seen = part.assigned.entry((a, r.epoch)).or_default();
                seen[i].get_or_insert(at);
            }
        }
        self.latest[i] = Some((at, status));
    }

    fn up_at(&self, node: u64, t: Instant) -> Option<&UpInterval> {
        self.up
            .iter()
            .find(|u| u.node == node && u.from <= t && u.until.is_none_or(|d| d > t))
    }
}

struct Slot {
    alive: AtomicBool,
    generation: AtomicU64,
}

/// One thread per node polling its status every `interval`.
struct Pollers {
    obs: Mutex<Observations>,
    slots: Vec<Slot>,
    paused: AtomicBool,
    stop: AtomicBool,
}

impl Pollers {
    fn new() -> Self {
        Self {
            obs: Mutex::new(Observations::default()),
            slots: (0..NODES)
                .map(|_| Slot {
                    alive: AtomicBool::new(true),
                    generation: AtomicU64::new(0),
                })
                .collect(),
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    fn obs(&self) -> MutexGuard<'_, Observations> {
        self.obs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, node: u64, addr: (SocketAddr, Secret), interval: Duration) {
        let slot = &self.slots[node as usize - 1];
        let mut client = Client::new(addr);
        while !self.stop.load(Ordering::Relaxed) {
            if self.paused.load(Ordering::Relaxed) || !slot.alive.load(Ordering::Relaxed) {
                client.conn = None;
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let generation = slot.generation.load(Ordering::SeqCst);
            let answer = client.status();
            let at = Instant::now();
            let current = slot.alive.load(Ordering::SeqCst)
                && slot.generation.load(Ordering::SeqCst) == generation;
            match answer {
                Some(status) if current => self.obs().record(node, at, status),
                Some(_) => {}
                None => {
                    if current {
                        self.obs().latest[node as usize - 1] = None;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            std::thread::sleep(interval);
        }
    }

    /// Marks `node` down (before killing it): its pending answer is dropped.
    fn down(&self, node: u64) {
        let slot = &self.slots[node as usize - 1];
        slot.alive.store(false, Ordering::SeqCst);
        slot.generation.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let mut obs = self.obs();
        obs.latest[node as usize - 1] = None;
        for u in obs.up.iter_mut().filter(|u| u.node == node) {
            u.until.get_or_insert(now);
        }
    }

    fn up(&self, node: u64) {
        let slot = &self.slots[node as usize - 1];
        slot.generation.fetch_add(1, Ordering::SeqCst);
        slot.alive.store(true, Ordering::SeqCst);
    }

    /// Waits (bounded) until the latest polls of `live`, all taken after
    /// `since`, satisfy `done`; returns when the last of those polls was taken.
    fn wait_for(
        &self,
        live: &[u64],
        since: Instant,
        timeout: Duration,
        done: impl Fn(&[&Status]) -> bool,
    ) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            {
                let obs = self.obs();
                let snaps: Vec<&(Instant, Status)> = live
                    .iter()
                    .filter_map(|&n| obs.latest[n as usize - 1].as_ref())
                    .filter(|(t, _)| *t > since)
                    .collect();
                if snaps.len() == live.len() {
                    let statuses: Vec<&Status> = snaps.iter().map(|(_, s)| s).collect();
                    if done(&statuses) {
                        return snaps.iter().map(|(t, _)| *t).max();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    /// The latest polls of `live`, for diagnostics and counting.
    fn latest(&self, live: &[u64]) -> Vec<Status> {
        let obs = self.obs();
        live.iter()
            .filter_map(|&n| obs.latest[n as usize - 1].as_ref().map(|(_, s)| s.clone()))
            .collect()
    }
}

/// Runs the pollers of `nodes` while `body` runs; stops and joins them after.
fn with_pollers<T>(
    cluster: &mut Cluster,
    interval: Duration,
    body: impl FnOnce(&mut Cluster, &Pollers) -> T,
) -> T {
    let pollers = Pollers::new();
    let addrs: Vec<(SocketAddr, Secret)> = (1..=NODES).map(|n| cluster.admin(n)).collect();
    std::thread::scope(|scope| {
        let p = &pollers;
        for (i, addr) in addrs.into_iter().enumerate() {
            scope.spawn(move || p.run(i as u64 + 1, addr, interval));
        }
        // Stops the pollers even if `body` panics, so the scope can join them.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&p.stop);
        body(cluster, p)
    })
}

// ---------------------------------------------------------------------------
// Predicates over the latest polls

/// Per partition: the highest-term replica that says it leads, among the
/// given statuses.
fn leaders<'a>(statuses: &[&'a Status]) -> HashMap<&'a str, (u64, u64)> {
    let mut out: HashMap<&'a str, (u64, u64)> = HashMap::new();
    for s in statuses {
        for r in s
            .replicas
            .iter()
            .filter(|r| r.role == leaderhook::raft::shared::Role::Leader)
        {
            let e = out.entry(&r.partition).or_insert((s.node, r.term));
            if r.term > e.1 {
                *e = (s.node, r.term);
            }
        }
    }
    out
}

/// Every partition has a leader among the given nodes.
fn all_led(statuses: &[&Status], partitions: usize) -> bool {
    leaders(statuses).len() == partitions
}

/// Every partition has a leader among the given nodes and every given
/// node's assignment names it at its term.
fn converged(statuses: &[&Status], partitions: usize) -> bool {
    let leaders = leaders(statuses);
    leaders.len() == partitions
        && statuses.iter().all(|s| {
            s.replicas.len() == partitions
                && s.replicas.iter().all(|r| {
                    leaders
                        .get(r.partition.as_str())
                        .is_some_and(|&(l, t)| r.assigned_leader == Some(l) && r.epoch == t)
                })
        })
}

fn describe_unconverged(statuses: &[Status], partitions: usize) -> String {
    let refs: Vec<&Status> = statuses.iter().collect();
    let leaders = leaders(&refs);
    let mut wrong = 0;
    for s in statuses {
        wrong += s
            .replicas
            .iter()
            .filter(|r| {
                leaders
                    .get(r.partition.as_str())
                    .is_none_or(|&(l, t)| r.assigned_leader != Some(l) || r.epoch != t)
            })
            .count();
    }
    format!(
        "{} node(s) answering, replicas per node {:?}, partitions with a leader {}/{partitions}, replica views whose assignment is not the leader at its term: {wrong}",
        statuses.len(),
        statuses
            .iter()
            .map(|s| s.replicas.len())
            .collect::<Vec<_>>(),
        leaders.len()
    )
}

// ---------------------------------------------------------------------------
// Election -> assignment latencies from the observations

#[derive(Default)]
struct Latencies {
    values: Vec<Duration>,
    /// Elections that a newer term replaced before every node showed them.
    superseded: usize,
    /// Elections whose assignment never showed everywhere.
    unconverged: usize,
}

/// Per election seen after `since` (a kill): when its leader was first seen.
fn election_times(obs: &Observations, since: Instant) -> Vec<Duration> {
    let mut out: Vec<Duration> = obs
        .parts
        .values()
        .flat_map(|p| p.leaders.values())
        .filter(|(_, t0)| *t0 >= since)
        .map(|(_, t0)| *t0 - since)
        .collect();
    out.sort_unstable();
    out
}

fn election_latencies(obs: &Observations, since: Instant) -> Latencies {
    let mut out = Latencies::default();
    for part in obs.parts.values() {
        for (&term, &(leader, t0)) in part.leaders.iter() {
            if t0 < since {
                continue;
            }
            let seen = part.assigned.get(&(leader, term));
            let mut last = t0;
            let mut missing = false;
            for node in 1..=NODES {
                let Some(up) = obs.up_at(node, t0) else {
                    continue; // not up at the election
                };
                match seen.and_then(|s| s[node as usize - 1]) {
                    Some(t) => last = last.max(t),
                    None if up.until.is_some() => {} // killed before it showed it
                    None => missing = true,
                }
            }
            if !missing {
                out.values.push(last - t0);
            } else if part.leaders.range(term + 1..).next().is_some() {
                out.superseded += 1;
            } else {
                out.unconverged += 1;
            }
        }
    }
    out.values.sort_unstable();
    out
}

/// Nearest-rank percentile.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Mean time between two answered polls of one node since `before` was
/// taken (the poll counts then) `window` ago.
fn mean_poll_period(
    obs: &Observations,
    before: &[u64; NODES as usize],
    nodes: &[u64],
    window: Duration,
) -> Duration {
    let polls: u64 = nodes
        .iter()
        .map(|&n| obs.polls[n as usize - 1] - before[n as usize - 1])
        .sum();
    if polls == 0 {
        return Duration::ZERO;
    }
    window.mul_f64(nodes.len() as f64 / polls as f64)
}

// ---------------------------------------------------------------------------
// Figures 1 and 2

fn fig1_and_2(exe: &Path) -> anyhow::Result<Vec<String>> {
    let mut cluster = Cluster::start(exe)?;
    cluster.create_topic("bench", FIG1_PARTITIONS)?;
    let n = FIG1_PARTITIONS as usize;
    let all: Vec<u64> = (1..=NODES).collect();
    with_pollers(&mut cluster, FIG1_POLL, |cluster, p| {
        let started = Instant::now();
        p.wait_for(&all, started, CONVERGE_SMALL, |s| converged(s, n))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the {n}-partition topic did not converge within {CONVERGE_SMALL:?}: {}",
                    describe_unconverged(&p.latest(&all), n)
                )
            })?;
        println!(
            "cluster up, topic of {n} partitions converged after {} ms",
            ms(started.elapsed())
        );
        let since = Instant::now();
        let polls_before = p.obs().polls;
        let mut kills: Vec<(u64, usize, Option<Duration>, Option<Duration>)> = Vec::new();
        let mut cycles = 0;
        while cycles < FIG1_MAX_CYCLES {
            let seen = election_latencies(&p.obs(), since);
            let elections = seen.values.len() + seen.superseded + seen.unconverged;
            if elections >= FIG1_ELECTIONS {
                break;
            }
            cycles += 1;
            // The victim: the node leading the most partitions.
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
            cluster.kill9(victim);
            let elected = p
                .wait_for(&survivors, killed, CONVERGE_SMALL, |s| all_led(s, n))
                .map(|t| t - killed);
            let settled = p
                .wait_for(&survivors, killed, CONVERGE_SMALL, |s| converged(s, n))
                .map(|t| t - killed);
            match (elected, settled) {
                (Some(e), Some(s)) => println!(
                    "  kill {cycles}: node {victim} (led {count}/{n}): all led again after {} ms, assignments correct on survivors after {} ms",
                    ms(e),
                    ms(s)
                ),
                _ => println!(
                    "  kill {cycles}: node {victim} (led {count}/{n}): NOT converged within {CONVERGE_SMALL:?} (elected: {elected:?}): {}",
                    describe_unconverged(&p.latest(&survivors), n)
                ),
            }
            kills.push((victim, count, elected, settled));
            cluster.spawn(victim)?;
            let restarted = Instant::now();
            p.up(victim);
            if p.wait_for(&all, restarted, CONVERGE_SMALL, |s| converged(s, n))
                .is_none()
            {
                anyhow::bail!(
                    "after restarting node {victim}: not converged within {CONVERGE_SMALL:?}: {}",
                    describe_unconverged(&p.latest(&all), n)
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let window = since.elapsed();
        let obs = p.obs();
        let lat = election_latencies(&obs, since);
        let poll = mean_poll_period(&obs, &polls_before, &all, window);
        drop(obs);
        let v = &lat.values;
        let mut out = Vec::new();
        println!(
            "figure 1: election -> assignment on every up node: {} elections over {} kills; p50 {} ms, p99 {} ms, max {} ms (superseded by a newer term before settling: {}, never settled: {}; mean poll period per node {} ms, each time +-1 poll; target p99 < 50 ms)",
            v.len(),
            kills.len(),
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            lat.superseded,
            lat.unconverged,
            ms(poll)
        );
        let over_50 = v.iter().filter(|d| **d > Duration::from_millis(50)).count();
        let over_1s = v.iter().filter(|d| **d > Duration::from_secs(1)).count();
        println!(
            "figure 1: elections over 50 ms: {over_50}, over 1 s: {over_1s}; deciles (ms): {}",
            (1..=9)
                .map(|d| ms(pct(v, d as f64 * 10.0)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        out.push(format!(
            "fig1_elections={} fig1_p50_ms={} fig1_p99_ms={} fig1_max_ms={} fig1_superseded={} fig1_unsettled={} fig1_poll_ms={}",
            v.len(),
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            lat.superseded,
            lat.unconverged,
            ms(poll)
        ));
        let mut settle: Vec<Duration> = kills.iter().filter_map(|k| k.3).collect();
        settle.sort_unstable();
        let mut elect: Vec<Duration> = kills.iter().filter_map(|k| k.2).collect();
        elect.sort_unstable();
        let failed = kills.len() - settle.len();
        println!(
            "figure 2: kill -9 of a leader node -> correct assignments on survivors ({} kills, {failed} not converged): median {} ms, max {} ms (Raft alone: all partitions led again, median {} ms, max {} ms; target < 2000 ms)",
            kills.len(),
            ms(pct(&settle, 50.0)),
            ms(settle.last().copied().unwrap_or_default()),
            ms(pct(&elect, 50.0)),
            ms(elect.last().copied().unwrap_or_default()),
        );
        out.push(format!(
            "fig2_kills={} fig2_failed={failed} fig2_median_ms={} fig2_max_ms={} fig2_elected_median_ms={} fig2_elected_max_ms={}",
            kills.len(),
            ms(pct(&settle, 50.0)),
            ms(settle.last().copied().unwrap_or_default()),
            ms(pct(&elect, 50.0)),
            ms(elect.last().copied().unwrap_or_default()),
        ));
        Ok(out)
    })
}

// ---------------------------------------------------------------------------
// Figures 3 and 4

fn fig3_and_4(exe: &Path) -> anyhow::Result<Vec<String>> {
    let mut cluster = Cluster::start(exe)?;
    let n = BIG_PARTITIONS as usize;
    let all: Vec<u64> = (1..=NODES).collect();
    let started = Instant::now();
    cluster.create_topic("big", BIG_PARTITIONS)?;
    let created = started.elapsed();
    let poll = std::env::var("LEADERHOOK_BENCH_BIG_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(BIG_POLL, Duration::from_millis);
    with_pollers(&mut cluster, poll, |cluster, p| {
        let mut out = Vec::new();
        let settled = p.wait_for(&all, started, CONVERGE_BIG, |s| converged(s, n));
        match settled {
            Some(t) => println!(
                "topic of {n} partitions: created (committed) after {} ms, every assignment converged after {} ms",
                ms(created),
                ms(t - started)
            ),
            None => println!(
                "topic of {n} partitions: NOT converged within {CONVERGE_BIG:?}: {}",
                describe_unconverged(&p.latest(&all), n)
            ),
        }
        out.push(format!(
            "big_create_converged_ms={}",
            settled.map_or("TIMEOUT".into(), |t| ms(t - started))
        ));

        // Figure 4: nobody polls during the idle window.
        p.paused.store(true, Ordering::SeqCst);
        std::thread::sleep(IDLE_SETTLE);
        out.push(fig4(cluster));
        p.paused.store(false, Ordering::SeqCst);
        if settled.is_none() {
            anyhow::bail!("figure 3 needs a converged cluster");
        }

        // Figure 3.
        let resumed = Instant::now();
        p.wait_for(&all, resumed, CONVERGE_SMALL, |s| converged(s, n))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "not converged before the kill: {}",
                    describe_unconverged(&p.latest(&all), n)
                )
            })?;
        let latest = p.latest(&all);
        let refs: Vec<&Status> = latest.iter().collect();
        let mut led: BTreeMap<u64, usize> = all.iter().map(|&n| (n, 0)).collect();
        for (l, _) in leaders(&refs).values() {
            *led.entry(*l).or_default() += 1;
        }
        let (&victim, &count) = led.iter().max_by_key(|(_, c)| **c).expect("nodes");
        let survivors: Vec<u64> = all.iter().copied().filter(|&n| n != victim).collect();
        let polls_before = p.obs().polls;
        p.down(victim);
        let killed = Instant::now();
        cluster.kill9(victim);
        let elected = p
            .wait_for(&survivors, killed, CONVERGE_BIG, |s| all_led(s, n))
            .map(|t| t - killed);
        let settled = p
            .wait_for(&survivors, killed, CONVERGE_BIG, |s| converged(s, n))
            .map(|t| t - killed);
        let obs = p.obs();
        let lat = election_latencies(&obs, killed);
        let times = election_times(&obs, killed);
        let poll = mean_poll_period(&obs, &polls_before, &survivors, killed.elapsed());
        drop(obs);
        let v = &lat.values;
        match (elected, settled) {
            (Some(e), Some(s)) => println!(
                "figure 3: kill -9 of node {victim} (led {count}/{n}): every partition led again after {} ms (Raft), every assignment correct on both survivors after {} ms: {} ms after the last election",
                ms(e),
                ms(s),
                ms(s.saturating_sub(e))
            ),
            _ => println!(
                "figure 3: kill -9 of node {victim} (led {count}/{n}): NOT converged within {CONVERGE_BIG:?} (all led after {elected:?}): {}",
                describe_unconverged(&p.latest(&survivors), n)
            ),
        }
        println!(
            "figure 3: per re-elected partition, election -> assignment on both survivors: {} elections, p50 {} ms, p99 {} ms, max {} ms (superseded {}, never settled {}; mean poll period per node {} ms; target: settle < 1000 ms after the election)",
            v.len(),
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            lat.superseded,
            lat.unconverged,
            ms(poll)
        );
        println!(
            "figure 3: Raft alone, kill -> each re-elected partition's new leader first seen: min {} ms, p10 {} ms, p50 {} ms, p90 {} ms, max {} ms",
            ms(times.first().copied().unwrap_or_default()),
            ms(pct(&times, 10.0)),
            ms(pct(&times, 50.0)),
            ms(pct(&times, 90.0)),
            ms(times.last().copied().unwrap_or_default()),
        );
        let opt = |d: Option<Duration>| d.map_or("TIMEOUT".into(), ms);
        out.push(format!(
            "fig3_victim_led={count} fig3_elected_ms={} fig3_converged_ms={} fig3_after_last_election_ms={} fig3_elections={} fig3_lag_p50_ms={} fig3_lag_p99_ms={} fig3_lag_max_ms={} fig3_poll_ms={}",
            opt(elected),
            opt(settled),
            opt(elected.zip(settled).map(|(e, s)| s.saturating_sub(e))),
            v.len(),
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            ms(poll)
        ));
        Ok(out)
    })
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn fig4(cluster: &Cluster) -> String {
    let hz = clock_ticks();
    let pids: Vec<(u64, u32)> = (1..=NODES)
        .filter_map(|n| cluster.pid(n).map(|p| (n, p)))
        .collect();
    let before: Vec<Option<u64>> = pids.iter().map(|&(_, p)| cpu_ticks(p)).collect();
    let t0 = Instant::now();
    std::thread::sleep(IDLE_WINDOW);
    let window = t0.elapsed();
    let after: Vec<Option<u64>> = pids.iter().map(|&(_, p)| cpu_ticks(p)).collect();
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    for (i, &(node, pid)) in pids.iter().enumerate() {
        let rss_mib = status_kib(pid, "VmRSS:").map(|k| k as f64 / 1024.0);
        let hwm_mib = status_kib(pid, "VmHWM:").map(|k| k as f64 / 1024.0);
        let pct_core = before[i]
            .zip(after[i])
            .map(|(b, a)| (a.saturating_sub(b)) as f64 / hz as f64 / window.as_secs_f64() * 100.0);
        println!(
            "figure 4: node {node} (pid {pid}), idle, {BIG_PARTITIONS} partitions: resident {} MiB (peak {} MiB), CPU {}% of one core over {:.1} s (targets < 300 MiB, < 20%)",
            rss_mib.map_or("?".into(), |m| format!("{m:.1}")),
            hwm_mib.map_or("?".into(), |m| format!("{m:.1}")),
            pct_core.map_or("?".into(), |c| format!("{c:.1}")),
            window.as_secs_f64()
        );
        rss.push(rss_mib.map_or("?".into(), |m| format!("{m:.0}")));
        cpu.push(pct_core.map_or("?".into(), |c| format!("{c:.1}")));
    }
    format!(
        "fig4_rss_mib={} fig4_cpu_pct={} fig4_clk_tck={hz}",
        rss.join("/"),
        cpu.join("/")
    )
}
