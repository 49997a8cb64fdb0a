//! One supervisor for local clusters of real `leaderhook broker` processes:
//! spawn, kill -9, restart, stop, wait until converged, create a topic with
//! retry, read each node's status. Used by `cluster up`, the cluster tests
//! and the cluster benchmarks alike, so they all start, kill and restart
//! nodes the same way.

use crate::admin::{self, AdminError, FailureKind, Request, Status};
use crate::auth::Secret;
use crate::cluster::{self, InitOptions};
use crate::config::{NodeConfig, RaftConfig};
use crate::raft::shared::Role;
use anyhow::{Context, anyhow, bail};
use leaderhook_hooks::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Per node: (assigned leader, epoch).
pub type Assigned = BTreeMap<NodeId, (Option<NodeId>, u64)>;
/// Per partition: the Raft leader and its term (if one says it leads), and
/// every answering node's stored assignment.
pub type View = BTreeMap<String, (Option<(NodeId, u64)>, Assigned)>;

/// How a cluster is set up before its nodes start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: u64,
    pub raft: RaftConfig,
    /// Replaces the `[[plugins]]` tables `cluster init` writes (`None`: keep
    /// the default plugin).
    pub plugins: Option<String>,
    /// `RUST_LOG` of the brokers (their output goes to `node<N>.log`).
    pub log: String,
    /// Serve the admin test hooks that inject faults (`[testing]`).
    pub fault_injection: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            nodes: 3,
            raft: RaftConfig::default(),
            plugins: None,
            log: "warn".into(),
            fault_injection: false,
        }
    }
}

/// A running local cluster; dropping it kills every node.
pub struct LocalCluster {
    binary: PathBuf,
    dir: PathBuf,
    configs: Vec<PathBuf>,
    admins: Vec<(SocketAddr, Secret)>,
    log: String,
    nodes: BTreeMap<NodeId, Child>,
}

impl LocalCluster {
    /// Writes the configs into `dir` (with `cluster init`) and starts
    /// every node of `binary`.
    pub fn start(binary: &Path, dir: &Path, spec: &ClusterSpec) -> anyhow::Result<Self> {
        let options = InitOptions {
            fault_injection: spec.fault_injection,
        };
        let configs = cluster::init_with(dir, spec.nodes, &spec.raft, &options)?;
        if let Some(plugins) = &spec.plugins {
            for file in &configs {
                let text = std::fs::read_to_string(file)?;
                let head = text.split("[[plugins]]").next().unwrap_or(&text).to_owned();
                std::fs::write(file, head + plugins)?;
            }
        }
        let admins = configs
            .iter()
            .map(|f| {
                let config = NodeConfig::from_file(f)?;
                Ok((config.admin_listen, config.auth()?.secret().clone()))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut cluster = Self {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            configs,
            admins,
            log: spec.log.clone(),
            nodes: BTreeMap::new(),
        };
        for node in 1..=spec.nodes {
            cluster.spawn(node)?;
        }
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self, node: NodeId) -> &Path {
        &self.configs[node as usize - 1]
    }

    /// Nodes running now.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn pid(&self, node: NodeId) -> Option<u32> {
        self.nodes.get(&node).map(Child::id)
    }

    /// Starts (or restarts, from its data directory) one node.
    pub fn spawn(&mut self, node: NodeId) -> anyhow::Result<()> {
        if self.nodes.contains_key(&node) {
            bail!("node {node} is already running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node{node}.log")))?;
        let child = Command::new(&self.binary)
            .args(["broker", "--config"])
            .arg(self.config(node))
            .env("RUST_LOG", &self.log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.nodes.insert(node, child);
        Ok(())
    }

    /// SIGKILL: the node dies at once, as in a crash.
    pub fn kill9(&mut self, node: NodeId) -> anyhow::Result<()> {
        let mut child = self
            .nodes
            .remove(&node)
            .ok_or_else(|| anyhow!("node {node} is not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Waits up to `within` for a node to exit by itself; its exit status.
    pub fn wait_exit(
        &mut self,
        node: NodeId,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self
            .nodes
            .get_mut(&node)
            .ok_or_else(|| anyhow!("node {node} is not running"))?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.nodes.remove(&node);
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("node {node} still runs after {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn request(&self, node: NodeId, request: &Request) -> anyhow::Result<serde_json::Value> {
        let (addr, secret) = &self.admins[node as usize - 1];
        Ok(admin::request(
            *addr,
            secret,
            request,
            Duration::from_secs(15),
        )?)
    }

    pub fn status(&self, node: NodeId) -> anyhow::Result<Status> {
        Ok(serde_json::from_value(
            self.request(node, &Request::Status)?,
        )?)
    }

    /// Creates a topic through any running node that answers, retrying
    /// while the metadata group has no leader.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication: usize,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let request = Request::CreateTopic {
            name: name.into(),
            partitions,
            replication,
            configs: Default::default(),
        };
        for attempt in 0.. {
            let nodes = self.running();
            anyhow::ensure!(!nodes.is_empty(), "no node runs");
            let node = nodes[attempt % nodes.len()];
            match self.request(node, &request) {
                Ok(_) => return Ok(()),
                // An earlier attempt that seemed to fail (its node died
                // before answering) created it.
                Err(e)
                    if attempt > 0
                        && e.downcast_ref::<AdminError>().and_then(AdminError::kind)
                            == Some(FailureKind::Exists) =>
                {
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("create topic {name} on node {node}: {e:#}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e.context(format!("creating topic {name}"))),
            }
        }
        unreachable!("the loop returns")
    }

    /// Per partition: the Raft leader (the replica that says it leads at
    /// the highest term) and each running node's stored assignment.
    pub fn view(&self) -> View {
        let mut view = View::new();
        for &node in self.nodes.keys() {
            let Ok(status) = self.status(node) else {
                continue;
            };
            for r in status.replicas {
                let entry = view.entry(r.partition.clone()).or_default();
                if r.role == Role::Leader && entry.0.is_none_or(|(_, t)| r.term > t) {
                    entry.0 = Some((node, r.term));
                }
                entry.1.insert(node, (r.assigned_leader, r.epoch));
            }
        }
        view
    }

    /// Waits until `partitions` partitions each have a Raft leader and every
    /// running node's assignment names it at its term. Returns partition ->
    /// (leader, term).
    pub fn wait_converged(
        &self,
        partitions: usize,
        within: Duration,
    ) -> anyhow::Result<BTreeMap<String, (NodeId, u64)>> {
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
                return Ok(view
                    .into_iter()
                    .filter_map(|(p, (l, _))| Some((p, l?)))
                    .collect());
            }
            if Instant::now() > deadline {
                let differing: Vec<String> = view
                    .iter()
                    .filter(|(_, (leader, assigned))| {
                        leader.is_none_or(|(l, t)| {
                            assigned.len() != self.nodes.len()
                                || assigned.values().any(|&(a, e)| a != Some(l) || e != t)
                        })
                    })
                    .map(|(p, (leader, assigned))| {
                        format!("{p}: raft leader/term {leader:?}, assigned per node {assigned:?}")
                    })
                    .collect();
                bail!(
                    "did not converge within {within:?}: {} partitions seen of {partitions}; \
                     not converged:\n{}",
                    view.len(),
                    differing.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.configs.len() as u64)
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(format!("node{n}.log")))
                    .unwrap_or_default();
                let mut from = text.len().saturating_sub(4000);
                while !text.is_char_boundary(from) {
                    from += 1;
                }
                format!("--- node{n}\n{}", &text[from..])
            })
            .collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.nodes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
