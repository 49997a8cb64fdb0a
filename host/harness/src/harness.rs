//! The harness: a [`Sim`] cluster with every alive node running the plugin
//! chain under test through the real hook runtime. Each action settles:
//! events are delivered to each node's plugins (in node order, in batches),
//! the writes and transfers they request that are due are applied by the
//! simulated cluster, and the resulting events delivered, until nothing
//! moves. [`Harness::advance`] moves the simulated clock: writes and
//! transfers land when their latency has passed ([`Timing`]), and plugins
//! with `tick_ms` get `on-tick` on the simulated clock.

use crate::sim::{
    LogLine, NodeLogTap, NodeView, Notification, Sim, SimPartition, Timing, TransferRequest,
};
use leaderhook_hooks::plugin::FailureKind;
use leaderhook_hooks::{
    Capabilities, HookEngine, LoadError, NodeId, NodeInfo, PartitionId, PluginChain, PluginConfig,
    PluginStats,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Settling rounds before the harness declares the plugins flapping.
pub const MAX_ROUNDS: usize = 1000;
/// Most `on-tick` calls one [`Harness::advance`] may make (over all nodes
/// and plugins): a longer advance is refused rather than run for hours.
pub const MAX_TICKS_PER_ADVANCE: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(
        "the cluster did not settle after {MAX_ROUNDS} rounds: plugins keep moving leaders \
         (flapping?)"
    )]
    NotSettled,
    #[error("{0}")]
    Invalid(String),
}

/// A plugin call that failed on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFailure {
    pub node: NodeId,
    pub plugin: String,
    pub kind: FailureKind,
    pub message: String,
}

/// A node of the simulated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: NodeId,
    pub rack: Option<String>,
}

impl From<NodeId> for NodeSpec {
    fn from(id: NodeId) -> Self {
        Self { id, rack: None }
    }
}

pub struct Harness {
    engine: HookEngine,
    plugins: Vec<PluginConfig>,
    max_batch: usize,
    sim: Arc<Sim>,
    chains: BTreeMap<NodeId, PluginChain>,
    /// When each alive node's ticking plugins are next due, by name.
    ticks: BTreeMap<(NodeId, String), u64>,
    failures: Vec<PluginFailure>,
    /// Every event delivered, in delivery order (for determinism checks).
    delivered: u64,
}

impl Harness {
    /// A cluster of `nodes`, all alive, each running `plugins` in order.
    pub fn new(
        engine: HookEngine,
        nodes: impl IntoIterator<Item = impl Into<NodeSpec>>,
        plugins: Vec<PluginConfig>,
    ) -> Result<Self, HarnessError> {
        let sim = Arc::new(Sim::default());
        {
            let mut state = sim.lock();
            for spec in nodes {
                let spec = spec.into();
                state.nodes.insert(
                    spec.id,
                    NodeInfo {
                        id: spec.id,
                        alive: true,
                        rack: spec.rack,
                    },
                );
            }
            if state.nodes.is_empty() {
                return Err(HarnessError::Invalid(
                    "a cluster needs at least one node".into(),
                ));
            }
        }
        let mut harness = Self {
            engine,
            plugins,
            max_batch: 1024,
            sim,
            chains: BTreeMap::new(),
            ticks: BTreeMap::new(),
            failures: Vec::new(),
            delivered: 0,
        };
        let nodes: Vec<NodeId> = harness.sim.lock().nodes.keys().copied().collect();
        for node in nodes {
            harness.start_node(node)?;
        }
        Ok(harness)
    }

    fn start_node(&mut self, node: NodeId) -> Result<(), HarnessError> {
        let caps: Arc<dyn Capabilities> = Arc::new(NodeView {
            node,
            sim: self.sim.clone(),
        });
        let tap = Arc::new(NodeLogTap {
            node,
            sim: self.sim.clone(),
        });
        let engine = self.engine.with_log_tap(tap);
        let chain = PluginChain::load(&engine, &caps, &self.plugins)?;
        self.chains.insert(node, chain);
        let now = self.now_ms();
        for plugin in &self.plugins {
            if let Some(tick_ms) = plugin.tick_ms {
                let due = now.saturating_add(tick_ms);
                self.ticks.insert((node, plugin.name.clone()), due);
            }
        }
        Ok(())
    }

    /// How long writes and transfers take, and how long a revived node
    /// catches up (default: all at once).
    pub fn set_timing(&mut self, timing: Timing) {
        self.sim.lock().timing = timing;
    }

    pub fn add_sink(&mut self, sink: &str) {
        self.sim.lock().sinks.insert(sink.to_owned());
    }

    /// Creates a topic placed round-robin over the alive nodes; each
    /// partition's preferred replica is elected.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication: usize,
    ) -> Result<(), HarnessError> {
        let replicas = self
            .sim
            .lock()
            .place(partitions, replication)
            .map_err(|e| HarnessError::Invalid(format!("topic {name}: {e}")))?;
        self.create_topic_with(name, replicas)
    }

    /// Creates a topic with explicit replica lists (preferred first).
    pub fn create_topic_with(
        &mut self,
        name: &str,
        replicas: Vec<Vec<NodeId>>,
    ) -> Result<(), HarnessError> {
        {
            let mut state = self.sim.lock();
            if state.partitions.keys().any(|p| p.topic == name) {
                return Err(HarnessError::Invalid(format!(
                    "topic {name} already exists"
                )));
            }
            for r in replicas.iter().flatten() {
                if !state.nodes.contains_key(r) {
                    return Err(HarnessError::Invalid(format!(
                        "topic {name}: replica {r} is not a node of the cluster"
                    )));
                }
            }
            state.create_topic(name, replicas);
        }
        self.settle()
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<(), HarnessError> {
        self.sim.lock().delete_topic(name);
        self.settle()
    }

    /// Kills a node: its plugins stop, Raft re-elects its partitions.
    pub fn kill(&mut self, node: NodeId) -> Result<(), HarnessError> {
        self.known_node(node)?;
        self.chains.remove(&node);
        self.ticks.retain(|(n, _), _| *n != node);
        self.sim.lock().kill(node);
        self.settle()
    }

    /// Revives a node: its plugins start afresh and it rejoins its groups.
    pub fn revive(&mut self, node: NodeId) -> Result<(), HarnessError> {
        self.known_node(node)?;
        if self.chains.contains_key(&node) {
            return Ok(());
        }
        self.start_node(node)?;
        self.sim.lock().revive(node);
        self.settle()
    }

    /// Raft elects `leader` for a partition at the next term.
    pub fn elect(&mut self, partition: &PartitionId, leader: NodeId) -> Result<(), HarnessError> {
        {
            let mut state = self.sim.lock();
            let p = state.partitions.get(partition).ok_or_else(|| {
                HarnessError::Invalid(format!("elect: unknown partition {partition}"))
            })?;
            if !p.replicas.contains(&leader) || !state.alive(leader) {
                return Err(HarnessError::Invalid(format!(
                    "elect: node {leader} is not an alive replica of {partition}"
                )));
            }
            if !state.has_quorum(&p.replicas) {
                return Err(HarnessError::Invalid(format!(
                    "elect: {partition} has no alive majority; Raft cannot elect"
                )));
            }
            state.elect(partition, leader);
        }
        self.settle()
    }

    /// Moves the simulated clock forward by `ms`, stopping at every moment
    /// something is due on the way: a write or a transfer whose latency has
    /// passed lands, and every plugin whose tick is due gets `on-tick` (in
    /// node order, then config order), each followed by settling.
    pub fn advance(&mut self, ms: u64) -> Result<(), HarnessError> {
        let target = self.now_ms().saturating_add(ms);
        let ticks: u64 = self
            .ticks
            .keys()
            .map(|(_, plugin)| ms / self.tick_interval(plugin).max(1))
            .fold(0, u64::saturating_add);
        if ticks > MAX_TICKS_PER_ADVANCE {
            return Err(HarnessError::Invalid(format!(
                "advance {ms} ms would make {ticks} on-tick calls (at most \
                 {MAX_TICKS_PER_ADVANCE}): advance in smaller steps or raise tick_ms"
            )));
        }
        loop {
            let next_tick = self.ticks.values().copied().min();
            let next_due = self.sim.lock().next_due();
            let next = match (next_tick, next_due) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(u64::MAX),
            };
            if next > target {
                break;
            }
            self.sim.lock().now_ms = next;
            self.fire_ticks(next);
            self.settle()?;
        }
        self.sim.lock().now_ms = target;
        self.settle()
    }

    /// The plugin's `tick_ms` (only ticking plugins are scheduled).
    fn tick_interval(&self, plugin: &str) -> u64 {
        self.plugins
            .iter()
            .find(|p| p.name == plugin)
            .and_then(|p| p.tick_ms)
            .unwrap_or(u64::MAX)
    }

    /// Calls `on-tick` on every plugin due at `now`, and schedules its next.
    fn fire_ticks(&mut self, now: u64) {
        let due: Vec<(NodeId, String)> = self
            .ticks
            .iter()
            .filter(|&(_, &at)| at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for (node, plugin) in due {
            let interval = self.tick_interval(&plugin);
            self.ticks
                .insert((node, plugin.clone()), now.saturating_add(interval));
            let Some(chain) = self.chains.get_mut(&node) else {
                continue;
            };
            if let Some(Err(failure)) = chain.tick(&plugin, now) {
                self.failures.push(PluginFailure {
                    node,
                    plugin,
                    kind: failure.kind,
                    message: failure.message,
                });
            }
        }
    }

    fn known_node(&self, node: NodeId) -> Result<(), HarnessError> {
        if self.sim.lock().nodes.contains_key(&node) {
            Ok(())
        } else {
            Err(HarnessError::Invalid(format!(
                "node {node} is not in the cluster"
            )))
        }
    }

    /// Delivers pending events and applies requested transfers until the
    /// cluster is quiet.
    pub fn settle(&mut self) -> Result<(), HarnessError> {
        for _ in 0..MAX_ROUNDS {
            let outbox = std::mem::take(&mut self.sim.lock().outbox);
            for (node, events) in outbox {
                let Some(chain) = self.chains.get_mut(&node) else {
                    continue;
                };
                for batch in events.chunks(self.max_batch) {
                    self.delivered += batch.len() as u64;
                    for (plugin, failure) in chain.deliver(batch) {
                        self.failures.push(PluginFailure {
                            node,
                            plugin,
                            kind: failure.kind,
                            message: failure.message,
                        });
                    }
                }
            }
            let mut state = self.sim.lock();
            state.apply_due();
            if state.outbox.is_empty() {
                return Ok(());
            }
        }
        Err(HarnessError::NotSettled)
    }

    // --- What a test asserts on. ---

    /// The stored assignment's leader (what Kafka Metadata would answer).
    pub fn assignment(&self, partition: &PartitionId) -> Option<NodeId> {
        self.sim
            .lock()
            .partitions
            .get(partition)
            .and_then(|p| p.leader)
    }

    /// Every partition: replicas, Raft's leader and term, stored assignment.
    pub fn partitions(&self) -> BTreeMap<PartitionId, SimPartition> {
        self.sim.lock().partitions.clone()
    }

    /// Raft's leader.
    pub fn raft_leader(&self, partition: &PartitionId) -> Option<NodeId> {
        self.sim
            .lock()
            .partitions
            .get(partition)
            .and_then(|p| p.raft_leader)
    }

    /// Leaders per node according to the stored assignments.
    pub fn leader_counts(&self) -> BTreeMap<NodeId, u32> {
        self.sim.lock().leader_counts()
    }

    /// Every transfer plugins requested, in order.
    pub fn transfers(&self) -> Vec<TransferRequest> {
        self.sim.lock().transfers.clone()
    }

    /// Every transfer Raft dropped because its target was still catching up.
    pub fn dropped_transfers(&self) -> Vec<TransferRequest> {
        self.sim.lock().dropped_transfers.clone()
    }

    /// Every line plugins logged (through `log`), in order, with the node.
    pub fn logs(&self) -> Vec<LogLine> {
        self.sim.lock().logs.iter().cloned().collect()
    }

    /// Every notification plugins emitted, in order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.sim.lock().notifications.clone()
    }

    /// Every failed plugin call, in order.
    pub fn failures(&self) -> &[PluginFailure] {
        &self.failures
    }

    /// Events delivered so far (to all nodes).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn is_alive(&self, node: NodeId) -> bool {
        self.sim.lock().alive(node)
    }

    pub fn now_ms(&self) -> u64 {
        self.sim.lock().now_ms
    }

    /// Plugin counters per alive node.
    pub fn stats(&self) -> BTreeMap<NodeId, Vec<PluginStats>> {
        self.chains.iter().map(|(n, c)| (*n, c.stats())).collect()
    }
}
