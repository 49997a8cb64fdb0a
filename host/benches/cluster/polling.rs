//! Status pollers: one thread per node, each over one kept-alive admin
//! connection, recording what it saw.

use crate::Cluster;
use crate::NODES;
use crate::predicates::{converged, describe_unconverged};
use leaderhook::admin::{AdminError, Connection, Request, Status};
use leaderhook::auth::Secret;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One kept-alive admin connection (authenticated with the cluster secret).
pub struct Client {
    pub addr: SocketAddr,
    pub secret: Secret,
    pub conn: Option<Connection>,
}

impl Client {
    pub fn new((addr, secret): (SocketAddr, Secret)) -> Self {
        Self {
            addr,
            secret,
            conn: None,
        }
    }

    pub fn status(&mut self) -> Option<Status> {
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
pub struct PartObs {
    /// term -> (the replica's node, first poll showing it Leader at term).
    pub leaders: BTreeMap<u64, (u64, Instant)>,
    /// (assigned leader, epoch) -> per node, the first poll showing it.
    pub assigned: HashMap<(u64, u64), [Option<Instant>; NODES as usize]>,
}

/// A node answering polls: from its first answer after a start until killed.
pub struct UpInterval {
    pub node: u64,
    pub from: Instant,
    pub until: Option<Instant>,
}

#[derive(Default)]
pub struct Observations {
    pub latest: [Option<(Instant, Status)>; NODES as usize],
    pub up: Vec<UpInterval>,
    pub parts: HashMap<String, PartObs>,
    pub polls: [u64; NODES as usize],
}

impl Observations {
    pub fn record(&mut self, node: u64, at: Instant, status: Status) {
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

    pub fn up_at(&self, node: u64, t: Instant) -> Option<&UpInterval> {
        self.up
            .iter()
            .find(|u| u.node == node && u.from <= t && u.until.is_none_or(|d| d > t))
    }
}

pub struct Slot {
    pub alive: AtomicBool,
    pub generation: AtomicU64,
}

/// One thread per node polling its status every `interval`.
pub struct Pollers {
    pub obs: Mutex<Observations>,
    pub slots: Vec<Slot>,
    pub paused: AtomicBool,
    pub stop: AtomicBool,
}

impl Pollers {
    pub fn new() -> Self {
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

    pub fn obs(&self) -> MutexGuard<'_, Observations> {
        self.obs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn run(&self, node: u64, addr: (SocketAddr, Secret), interval: Duration) {
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
    pub fn down(&self, node: u64) {
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

    pub fn up(&self, node: u64) {
        let slot = &self.slots[node as usize - 1];
        slot.generation.fetch_add(1, Ordering::SeqCst);
        slot.alive.store(true, Ordering::SeqCst);
    }

    /// Waits (bounded) until the latest polls of `live`, all taken after
    /// `since`, satisfy `done`; returns when the last of those polls was taken.
    pub fn wait_for(
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

    /// Waits like [`Pollers::wait_for`] until every one of `partitions` has
    /// a leader among `nodes` and every node's assignment names it; else an
    /// error naming `what`, the bound and what was not converged.
    pub fn wait_converged(
        &self,
        nodes: &[u64],
        since: Instant,
        within: Duration,
        partitions: usize,
        what: &str,
    ) -> anyhow::Result<Instant> {
        self.wait_for(nodes, since, within, |s| converged(s, partitions))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{what}: not converged within {within:?}: {}",
                    describe_unconverged(&self.latest(nodes), partitions)
                )
            })
    }

    /// The latest polls of `live`, for diagnostics and counting.
    pub fn latest(&self, live: &[u64]) -> Vec<Status> {
        let obs = self.obs();
        live.iter()
            .filter_map(|&n| obs.latest[n as usize - 1].as_ref().map(|(_, s)| s.clone()))
            .collect()
    }
}

/// Runs one poller per node (at `addrs`, node 1 first) while `body` runs;
/// stops and joins them after.
pub fn with_pollers<T>(
    cluster: &mut Cluster,
    addrs: Vec<(SocketAddr, Secret)>,
    interval: Duration,
    body: impl FnOnce(&mut Cluster, &Pollers) -> T,
) -> T {
    let pollers = Pollers::new();
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
