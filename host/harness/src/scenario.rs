//! Scenario files: a cluster, the plugin under test (and any plugins that
//! run before it), a timeline of actions and expectations. Run by
//! `leaderhook plugin test <plugin.wasm> --scenario <file.toml>` and by
//! [`Scenario::run`] in a plugin author's tests.
//!
//! ```toml
//! name = "preferred leader comes back"
//!
//! [cluster]
//! nodes = [1, 2, 3]                 # or [{ id = 1, rack = "a" }, ...]
//! sinks = ["audit"]
//! [[cluster.topics]]
//! name = "orders"
//! partitions = 3
//! replication = 3                   # round-robin placement; or replicas = [[1, 2, 3], ...]
//!
//! [[before]]                        # plugins that run before the one under test
//! name = "assign-leader"
//! path = "builtin:assign-leader"
//! grants = ["assignments"]
//!
//! [plugin]                          # the plugin under test; its file comes from the command line
//! grants = ["leadership"]
//! config = { }
//!
//! [[step]]
//! do = "kill"                       # kill | revive | elect | create-topic | delete-topic | advance | expect
//! node = 1
//!
//! [[step]]
//! do = "expect"
//! assignments = { "orders-0" = 2, "orders-1" = "none" }
//! follows_raft = true
//! leader_counts = { "1" = 0, "2" = 2, "3" = 1 }
//! transfers = ["orders-0 -> 1"]     # every transfer requested so far, in order
//! notifications = { audit = 4 }     # count per sink so far
//! notification_contains = [{ sink = "audit", text = "became-leader" }]
//! failures = 0                      # failed plugin calls so far
//! ```

use crate::harness::{Harness, HarnessError, NodeSpec};
use leaderhook_hooks::{Grant, HookEngine, Limits, NodeId, OnError, PartitionId, PluginConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub before: Vec<PluginConfig>,
    #[serde(default)]
    pub plugin: PluginUnderTest,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// Directory relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub nodes: Vec<NodeEntry>,
    #[serde(default)]
    pub sinks: Vec<String>,
    #[serde(default)]
    pub topics: Vec<TopicSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NodeEntry {
    Id(NodeId),
    Spec { id: NodeId, rack: Option<String> },
}

impl NodeEntry {
    fn spec(&self) -> NodeSpec {
        match self {
            NodeEntry::Id(id) => NodeSpec::from(*id),
            NodeEntry::Spec { id, rack } => NodeSpec {
                id: *id,
                rack: rack.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    #[serde(default)]
    pub partitions: u32,
    #[serde(default)]
    pub replication: usize,
    pub replicas: Option<Vec<Vec<NodeId>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginUnderTest {
    pub name: Option<String>,
    /// Used when the command line names no file; relative to the scenario.
    pub path: Option<String>,
    #[serde(default)]
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub config: toml::Table,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub on_error: OnError,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    Kill { node: NodeId },
    Revive { node: NodeId },
    Elect { partition: String, leader: NodeId },
    CreateTopic(TopicSpec),
    DeleteTopic { name: String },
    Advance { ms: u64 },
    Expect(Box<Expect>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub assignments: Option<BTreeMap<String, LeaderExpect>>,
    pub raft_leaders: Option<BTreeMap<String, LeaderExpect>>,
    pub follows_raft: Option<bool>,
    pub leader_counts: Option<BTreeMap<String, u32>>,
    pub transfers: Option<Vec<String>>,
    pub notifications: Option<BTreeMap<String, usize>>,
    pub notification_contains: Option<Vec<NotificationExpect>>,
    pub failures: Option<usize>,
    pub failure_contains: Option<String>,
}

/// A leader in an expectation: a node id, or "none".
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum LeaderExpect {
    Node(NodeId),
    Word(String),
}

impl LeaderExpect {
    fn node(&self) -> Result<Option<NodeId>, String> {
        match self {
            LeaderExpect::Node(n) => Ok(Some(*n)),
            LeaderExpect::Word(w) if w == "none" => Ok(None),
            LeaderExpect::Word(w) => Err(format!("expected a node id or \"none\", got {w:?}")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationExpect {
    pub sink: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error(transparent)]
    Harness(#[from] HarnessError),
}

/// One expectation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    /// Empty when it passed; otherwise one line per difference.
    pub diff: Vec<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.diff.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub index: usize,
    pub action: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub scenario: String,
    pub plugin: String,
    pub steps: Vec<StepReport>,
}

impl Report {
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.steps.iter().flat_map(|s| &s.checks)
    }

    pub fn passed(&self) -> bool {
        self.checks().all(Check::passed)
    }

    /// The human-readable report the CLI prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario: {} ({})", self.scenario, self.plugin);
        for step in &self.steps {
            let _ = writeln!(out, "  step {:>2}: {}", step.index, step.action);
            for check in &step.checks {
                let verdict = if check.passed() { "PASS" } else { "FAIL" };
                let _ = writeln!(out, "    {verdict} {}", check.what);
                for line in &check.diff {
                    let _ = writeln!(out, "         {line}");
                }
            }
        }
        let total = self.checks().count();
        let failed = self.checks().filter(|c| !c.passed()).count();
        let _ = writeln!(out, "{} passed, {} failed", total - failed, failed);
        out
    }
}

impl Scenario {
    pub fn from_file(file: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(file).map_err(|source| ScenarioError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::from_toml(&text, file)
    }

    pub fn from_toml(text: &str, file: &Path) -> Result<Self, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Invalid {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        scenario.base_dir = file.parent().unwrap_or(Path::new(".")).to_owned();
        Ok(scenario)
    }

    fn resolve(&self, path: &str) -> String {
        if path.starts_with(leaderhook_hooks::config::BUILTIN_PREFIX)
            || Path::new(path).is_absolute()
        {
            path.to_owned()
        } else {
            self.base_dir.join(path).to_string_lossy().into_owned()
        }
    }

    /// The chain the harness runs: `before` plugins, then the plugin under
    /// test from `plugin_path` (or the scenario's own `plugin.path`).
    pub fn plugins(&self, plugin_path: Option<&str>) -> Result<Vec<PluginConfig>, String> {
        let path = match (plugin_path, &self.plugin.path) {
            (Some(p), _) => p.to_owned(),
            (None, Some(p)) => self.resolve(p),
            (None, None) => return Err("no plugin file given and the scenario names none".into()),
        };
        let name = self.plugin.name.clone().unwrap_or_else(|| {
            Path::new(&path)
                .file_stem()
                .map_or("plugin".into(), |s| s.to_string_lossy().into_owned())
        });
        let mut chain: Vec<PluginConfig> = self
            .before
            .iter()
            .map(|p| PluginConfig {
                path: self.resolve(&p.path),
                ..p.clone()
            })
            .collect();
        chain.push(PluginConfig {
            name,
            path,
            grants: self.plugin.grants.clone(),
            config: self.plugin.config.clone(),
            limits: self.plugin.limits,
            on_error: self.plugin.on_error,
            mode: leaderhook_hooks::Mode::Active,
        });
        Ok(chain)
    }

    /// Builds the cluster, runs the timeline, checks every expectation.
    /// Failed expectations are in the report; an error means the scenario
    /// could not run at all (a plugin that does not load, a bad step).
    pub fn run(
        &self,
        engine: HookEngine,
        plugin_path: Option<&str>,
    ) -> Result<Report, ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            file: self.base_dir.join(&self.name),
            message,
        };
        let chain = self.plugins(plugin_path).map_err(invalid)?;
        let plugin = chain.last().map(|p| p.path.clone()).unwrap_or_default();
        let nodes: Vec<NodeSpec> = self.cluster.nodes.iter().map(NodeEntry::spec).collect();
        let mut harness = Harness::new(engine, nodes, chain)?;
        for sink in &self.cluster.sinks {
            harness.add_sink(sink);
        }
        let mut report = Report {
            scenario: self.name.clone(),
            plugin,
            steps: Vec::new(),
        };
        for topic in &self.cluster.topics {
            create_topic(&mut harness, topic)?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            let index = i + 1;
            let (action, checks) = match step {
                Step::Expect(expect) => ("expect".to_owned(), check(&harness, expect)),
                action => {
                    let label = describe(action);
                    let outcome = apply(&mut harness, action);
                    let checks = match outcome {
                        Ok(()) => Vec::new(),
                        Err(HarnessError::NotSettled) => vec![Check {
                            what: "cluster settles".into(),
                            diff: vec![HarnessError::NotSettled.to_string()],
                        }],
                        Err(e) => return Err(invalid(format!("step {index} ({label}): {e}"))),
                    };
                    (label, checks)
                }
            };
            report.steps.push(StepReport {
                index,
                action,
                checks,
            });
        }
        Ok(report)
    }
}

fn create_topic(harness: &mut Harness, topic: &TopicSpec) -> Result<(), HarnessError> {
    match &topic.replicas {
        Some(replicas) => harness.create_topic_with(&topic.name, replicas.clone()),
        None => harness.create_topic(&topic.name, topic.partitions, topic.replication),
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::Kill { node } => format!("kill node {node}"),
        Step::Revive { node } => format!("revive node {node}"),
        Step::Elect { partition, leader } => format!("elect node {leader} for {partition}"),
        Step::CreateTopic(t) => format!("create topic {}", t.name),
        Step::DeleteTopic { name } => format!("delete topic {name}"),
        Step::Advance { ms } => format!("advance {ms} ms"),
        Step::Expect(_) => "expect".into(),
    }
}

fn apply(harness: &mut Harness, step: &Step) -> Result<(), HarnessError> {
    match step {
        Step::Kill { node } => harness.kill(*node),
        Step::Revive { node } => harness.revive(*node),
        Step::Elect { partition, leader } => {
            let partition = parse_partition(partition).map_err(HarnessError::Invalid)?;
            harness.elect(&partition, *leader)
        }
        Step::CreateTopic(topic) => create_topic(harness, topic),
        Step::DeleteTopic { name } => harness.delete_topic(name),
        Step::Advance { ms } => {
            harness.advance(*ms);
            Ok(())
        }
        Step::Expect(_) => Ok(()),
    }
}

/// "orders-0" → topic "orders", partition 0 (topics may contain '-').
pub fn parse_partition(text: &str) -> Result<PartitionId, String> {
    let (topic, partition) = text
        .rsplit_once('-')
        .ok_or_else(|| format!("{text:?} is not a partition (expected topic-N)"))?;
    let partition = partition
        .parse()
        .map_err(|_| format!("{text:?} is not a partition (expected topic-N)"))?;
    Ok(PartitionId::new(topic, partition))
}

fn show(leader: Option<NodeId>) -> String {
    leader.map_or_else(|| "none".into(), |n| n.to_string())
}

fn check(harness: &Harness, expect: &Expect) -> Vec<Check> {
    let mut checks = Vec::new();
    let partitions = harness.partitions();
    let mut leaders = |what: &str, expected: &BTreeMap<String, LeaderExpect>, raft: bool| {
        let mut diff = Vec::new();
        for (name, want) in expected {
            let want = match want.node() {
                Ok(w) => w,
                Err(e) => {
                    diff.push(format!("{name}: {e}"));
                    continue;
                }
            };
            let got = match parse_partition(name).map(|p| partitions.get(&p).cloned()) {
                Ok(Some(p)) => {
                    if raft {
                        p.raft_leader
                    } else {
                        p.leader
                    }
                }
                Ok(None) => {
                    diff.push(format!("{name}: no such partition"));
                    continue;
                }
                Err(e) => {
                    diff.push(e);
                    continue;
                }
            };
            if got != want {
                diff.push(format!(
                    "{name}: expected leader {}, got {}",
                    show(want),
                    show(got)
                ));
            }
        }
        checks.push(Check {
            what: what.into(),
            diff,
        });
    };
    if let Some(expected) = &expect.assignments {
        leaders("assignments", expected, false);
    }
    if let Some(expected) = &expect.raft_leaders {
        leaders("raft leaders", expected, true);
    }
    if let Some(want) = expect.follows_raft {
        let differ: Vec<String> = partitions
            .iter()
            .filter(|(_, p)| p.leader != p.raft_leader)
            .map(|(id, p)| {
                format!(
                    "{id}: assignment names {} at epoch {}, Raft's leader is {} at term {}",
                    show(p.leader),
                    p.epoch,
                    show(p.raft_leader),
                    p.term
                )
            })
            .collect();
        let diff = match (want, differ.is_empty()) {
            (true, _) => differ,
            (false, true) => {
                vec!["expected some assignment to differ from Raft; all follow it".into()]
            }
            (false, false) => Vec::new(),
        };
        checks.push(Check {
            what: "assignments follow Raft".into(),
            diff,
        });
    }
    if let Some(expected) = &expect.leader_counts {
        let actual = harness.leader_counts();
        let mut diff = Vec::new();
        for (node, want) in expected {
            match node.parse::<NodeId>() {
                Ok(id) => {
                    let got = actual.get(&id).copied().unwrap_or(0);
                    if got != *want {
                        diff.push(format!("node {id}: expected {want} leaders, got {got}"));
                    }
                }
                Err(_) => diff.push(format!("{node:?} is not a node id")),
            }
        }
        if !diff.is_empty() {
            let all: Vec<String> = actual.iter().map(|(n, c)| format!("{n}={c}")).collect();
            diff.push(format!("actual leader counts: {}", all.join(" ")));
        }
        checks.push(Check {
            what: "leader counts".into(),
            diff,
        });
    }
    if let Some(expected) = &expect.transfers {
        let actual: Vec<String> = harness
            .transfers()
            .iter()
            .map(|t| format!("{} -> {}", t.partition, t.to))
            .collect();
        checks.push(Check {
            what: "transfers requested".into(),
            diff: list_diff(expected, &actual),
        });
    }
    let notifications = harness.notifications();
    if let Some(expected) = &expect.notifications {
        let mut diff = Vec::new();
        for (sink, want) in expected {
            let got = notifications.iter().filter(|n| &n.sink == sink).count();
            if got != *want {
                diff.push(format!(
                    "sink {sink}: expected {want} notifications, got {got}"
                ));
            }
        }
        checks.push(Check {
            what: "notifications".into(),
            diff,
        });
    }
    if let Some(expected) = &expect.notification_contains {
        let diff = expected
            .iter()
            .filter(|e| {
                !notifications
                    .iter()
                    .any(|n| n.sink == e.sink && n.payload.contains(&e.text))
            })
            .map(|e| format!("no notification on sink {} contains {:?}", e.sink, e.text))
            .collect();
        checks.push(Check {
            what: "notification contents".into(),
            diff,
        });
    }
    let failures = harness.failures();
    if let Some(want) = expect.failures {
        let mut diff = Vec::new();
        if failures.len() != want {
            diff.push(format!(
                "expected {want} failed plugin calls, got {}",
                failures.len()
            ));
            diff.extend(
                failures
                    .iter()
                    .map(|f| format!("node {} {} {:?}: {}", f.node, f.plugin, f.kind, f.message)),
            );
        }
        checks.push(Check {
            what: "plugin failures".into(),
            diff,
        });
    }
    if let Some(text) = &expect.failure_contains {
        let diff = if failures.iter().any(|f| f.message.contains(text.as_str())) {
            Vec::new()
        } else {
            vec![format!("no failure message contains {text:?}")]
        };
        checks.push(Check {
            what: "failure message".into(),
            diff,
        });
    }
    checks
}

/// A readable diff of two ordered lists.
fn list_diff(expected: &[String], actual: &[String]) -> Vec<String> {
    if expected == actual {
        return Vec::new();
    }
    let mut diff = vec![
        format!("expected: [{}]", expected.join(", ")),
        format!("actual:   [{}]", actual.join(", ")),
    ];
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e != a => diff.push(format!("#{}: expected {e}, got {a}", i + 1)),
            (Some(e), None) => diff.push(format!("#{}: missing {e}", i + 1)),
            (None, Some(a)) => diff.push(format!("#{}: unexpected {a}", i + 1)),
            _ => {}
        }
    }
    diff
}
