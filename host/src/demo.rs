//! `leaderhook demo`: three nodes' hook runtimes over one in-memory
//! replicated assignment table, fed a scripted election history — first
//! elections, a leader crash, a restarted node replaying a late event, a
//! duplicate, a leadership transfer. After each step it prints Raft's leader
//! beside the stored assignment and fails if they disagree at the end.

use anyhow::{Context, bail};
use leaderhook_hooks::{
    Capabilities, Grant, HookEngine, HookRuntime, HooksConfig, LeadershipEvent, MemoryCluster,
    NodeId, PartitionId, PartitionKey, PluginConfig, Transition,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

const NODES: [NodeId; 3] = [1, 2, 3];
const TOPIC: &str = "orders";
const IDLE: Duration = Duration::from_secs(30);

/// The plugins the demo runs when no config is given: the default plugin.
pub fn default_config() -> HooksConfig {
    HooksConfig {
        plugins: vec![PluginConfig::new(
            "assign-leader",
            "builtin:assign-leader",
            &[Grant::Assignments],
        )],
        ..HooksConfig::default()
    }
}

struct Demo<'a> {
    engine: HookEngine,
    config: HooksConfig,
    cluster: Arc<MemoryCluster>,
    runtimes: BTreeMap<NodeId, HookRuntime>,
    /// Raft's truth: (leader, term) per partition, as the script elects.
    raft: BTreeMap<u32, (Option<NodeId>, u64)>,
    out: &'a mut dyn Write,
}

/// Runs the script, writing a report to `out`. Errors if, at the end, any
/// stored assignment differs from Raft's leader.
pub fn run(engine: HookEngine, config: HooksConfig, out: &mut dyn Write) -> anyhow::Result<()> {
    let cluster = Arc::new(MemoryCluster::new(1, &NODES));
    for p in 0..3u32 {
        let replicas: Vec<NodeId> = (0..3).map(|i| NODES[(p as usize + i) % 3]).collect();
        cluster.add_topic_partition(TOPIC, p, &replicas);
    }
    cluster.add_sink("stdout");
    let mut demo = Demo {
        engine,
        config,
        cluster,
        runtimes: BTreeMap::new(),
        raft: BTreeMap::new(),
        out,
    };
    for node in NODES {
        demo.start_node(node)?;
    }
    let names: Vec<String> = demo.config.plugins.iter().map(|p| p.name.clone()).collect();
    writeln!(
        demo.out,
        "leaderhook demo: 3 nodes, topic `{TOPIC}` (3 partitions, replication 3)"
    )?;
    writeln!(
        demo.out,
        "plugins: {}",
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    )?;

    demo.step("1. first elections: orders-0 -> node 1, orders-1 -> node 2, orders-2 -> node 3");
    demo.elect(0, 1, 1);
    demo.elect(1, 2, 1);
    demo.elect(2, 3, 1);
    demo.settle_and_show()?;

    demo.step("2. node 1 crashes: orders-0 loses its leader, node 2 wins term 2");
    demo.lose_leader(0, 1);
    demo.runtimes.remove(&1);
    demo.elect(0, 2, 2);
    demo.settle_and_show()?;

    demo.step("3. node 1 restarts and replays its stale became-leader for orders-0 at term 1");
    demo.start_node(1)?;
    let late = demo.event(0, Transition::BecameLeader, 1, Some(1), None, 1);
    demo.runtimes[&1].submit(PartitionKey(0), late);
    demo.settle_and_show()?;

    demo.step("4. node 2 delivers its became-leader for orders-0 at term 2 a second time");
    let dup = demo.event(0, Transition::BecameLeader, 2, Some(2), Some(1), 2);
    demo.runtimes[&2].submit(PartitionKey(0), dup);
    demo.settle_and_show()?;

    demo.step("5. orders-1 leadership moves from node 2 to node 3 at term 2");
    demo.elect(1, 3, 2);
    demo.settle_and_show()?;

    demo.report()
}

impl Demo<'_> {
    fn start_node(&mut self, node: NodeId) -> anyhow::Result<()> {
        let caps: Arc<dyn Capabilities> = self.cluster.clone();
        let runtime = HookRuntime::start(self.engine.clone(), caps, &self.config)
            .with_context(|| format!("starting the plugins of node {node}"))?;
        self.runtimes.insert(node, runtime);
        Ok(())
    }

    fn step(&mut self, title: &str) {
        let _ = writeln!(self.out, "\n{title}");
    }

    fn partition(p: u32) -> PartitionId {
        PartitionId::new(TOPIC, p)
    }

    fn event(
        &self,
        p: u32,
        transition: Transition,
        observer: NodeId,
        leader: Option<NodeId>,
        previous_leader: Option<NodeId>,
        term: u64,
    ) -> LeadershipEvent {
        let replicas = self
            .cluster
            .partition(&Self::partition(p))
            .map(|v| v.replicas)
            .unwrap_or_default();
        LeadershipEvent {
            partition: Self::partition(p),
            transition,
            observer,
            leader,
            previous_leader,
            term,
            replicas,
            at_ms: now_ms(),
        }
    }

    /// Raft elects `leader` at `term`: every running replica sees it.
    fn elect(&mut self, p: u32, leader: NodeId, term: u64) {
        let previous = self.raft.get(&p).and_then(|(l, _)| *l);
        self.cluster
            .elect(&Self::partition(p), leader, term, leader);
        self.raft.insert(p, (Some(leader), term));
        for (&node, runtime) in &self.runtimes {
            let transition = if node == leader {
                Transition::BecameLeader
            } else if previous == Some(node) {
                Transition::SteppedDown
            } else {
                Transition::LeaderObserved
            };
            runtime.submit(
                PartitionKey(u64::from(p)),
                self.event(p, transition, node, Some(leader), previous, term),
            );
        }
    }

    /// The leader of `p` is gone: the surviving replicas see no leader.
    fn lose_leader(&mut self, p: u32, dead: NodeId) {
        let term = self.raft.get(&p).map_or(0, |(_, t)| *t);
        self.raft.insert(p, (None, term));
        for (&node, runtime) in &self.runtimes {
            if node != dead {
                runtime.submit(
                    PartitionKey(u64::from(p)),
                    self.event(p, Transition::LeaderLost, node, None, Some(dead), term),
                );
            }
        }
    }

    fn settle_and_show(&mut self) -> anyhow::Result<()> {
        for (node, runtime) in &self.runtimes {
            if !runtime.wait_idle(IDLE) {
                bail!("node {node}'s plugins did not finish within {IDLE:?}");
            }
        }
        writeln!(
            self.out,
            "   partition   raft leader@term   assignment leader@epoch"
        )?;
        for (&p, &(leader, term)) in &self.raft {
            let (stored, epoch) = self
                .cluster
                .assignment(&Self::partition(p))
                .unwrap_or((None, 0));
            let agree = leader.is_none() || stored == leader;
            writeln!(
                self.out,
                "   {:<11} {:<17} {:<20} {}",
                Self::partition(p).to_string(),
                format!("{}@{term}", show(leader)),
                format!("{}@{epoch}", show(stored)),
                if agree { "ok" } else { "DIFFERS" }
            )?;
        }
        Ok(())
    }

    fn report(&mut self) -> anyhow::Result<()> {
        writeln!(self.out, "\nplugin stats per node:")?;
        for (node, runtime) in &self.runtimes {
            let stats = runtime.stats();
            for p in &stats.plugins {
                writeln!(
                    self.out,
                    "   node {node} {}: events={} failures={} refused_calls={} (queue: delivered={} stale={})",
                    p.name,
                    p.events,
                    p.failures(),
                    p.refused_calls,
                    stats.queue.delivered,
                    stats.queue.stale
                )?;
            }
        }
        let wrong: Vec<String> = self
            .raft
            .iter()
            .filter(|(p, (leader, _))| {
                leader.is_some()
                    && self.cluster.assignment(&Self::partition(**p)).map(|a| a.0) != Some(*leader)
            })
            .map(|(p, _)| Self::partition(*p).to_string())
            .collect();
        if wrong.is_empty() {
            writeln!(self.out, "\nall assignments follow Raft's leaders")?;
            Ok(())
        } else {
            writeln!(
                self.out,
                "\nassignments differ from Raft's leaders: {}",
                wrong.join(", ")
            )?;
            bail!(
                "{} of {} partitions name the wrong leader ({}): Metadata would send clients to a \
                 non-leader",
                wrong.len(),
                self.raft.len(),
                wrong.join(", ")
            )
        }
    }
}

fn show(node: Option<NodeId>) -> String {
    node.map_or_else(|| "none".into(), |n| format!("node {n}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
