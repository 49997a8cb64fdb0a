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
//! write_latency_ms = 0              # set-leader lands this long after the call
//! transfer_latency_ms = 0           # Raft acts on a transfer this long after it
//! catch_up_ms = 0                   # a revived node is behind this long: transfers to it are dropped
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
//! tick_ms = 1000                    # on-tick every second of simulated time (advance drives it)
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
//! transfers_by = { "2" = ["orders-0 -> 1"] }   # the same, per requesting node
//! notifications = { audit = 4 }     # count per sink so far
//! notification_contains = [{ sink = "audit", text = "became-leader" }]  # or regex; node, count
//! logs = [{ node = 2, text = "requested" }, { regex = "orders-\\d", count = 3 }]  # plugin lines
//! failures = 0                      # failed plugin calls so far
//! ```
//!
//! A text expectation (`logs`, `notification_contains`) gives `text` (a
//! substring) or `regex`, optionally a `node` (and for logs a `plugin`);
//! without `count` at least one line must match, with it exactly `count`.

use crate::harness::{Harness, HarnessError, NodeSpec};
use crate::sim::Timing;
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
    /// From a `set-leader` call to the stored assignment changing.
    #[serde(default)]
    pub write_latency_ms: u64,
    /// From a `transfer` call to Raft acting on it.
    #[serde(default)]
    pub transfer_latency_ms: u64,
    /// How long a revived node is behind (transfers to it are dropped).
    #[serde(default)]
    pub catch_up_ms: u64,
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
    /// `on-tick` every this many ms of simulated time.
    pub tick_ms: Option<u64>,
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
    pub transfers_by: Option<BTreeMap<String, Vec<String>>>,
    pub notifications: Option<BTreeMap<String, usize>>,
    pub notification_contains: Option<Vec<NotificationExpect>>,
    pub logs: Option<Vec<LogExpect>>,
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
    pub text: Option<String>,
    pub regex: Option<String>,
    pub node: Option<NodeId>,
    pub count: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogExpect {
    /// Only lines of the plugin of this name.
    pub plugin: Option<String>,
    pub text: Option<String>,
    pub regex: Option<String>,
    pub node: Option<NodeId>,
    pub count: Option<usize>,
}

/// Lines (log lines, notification payloads) an expectation looks for: the
/// fields `logs` and `notification_contains` entries share.
#[derive(Debug, Clone)]
pub struct TextExpect {
    /// A substring of the line.
    pub text: Option<String>,
    /// A regular expression (the `regex` crate's syntax) the line matches.
    pub regex: Option<String>,
    /// Only lines from this node.
    pub node: Option<NodeId>,
    /// Exactly this many lines match; without it, at least one.
    pub count: Option<usize>,
}

/// A compiled [`TextExpect`] pattern.
enum Pattern {
    Text(String),
    Regex(regex::Regex),
}

impl Pattern {
    fn matches(&self, line: &str) -> bool {
        match self {
            Pattern::Text(text) => line.contains(text.as_str()),
            Pattern::Regex(regex) => regex.is_match(line),
        }
    }
}

impl TextExpect {
    fn pattern(&self) -> Result<Pattern, String> {
        match (&self.text, &self.regex) {
            (Some(text), None) => Ok(Pattern::Text(text.clone())),
            (None, Some(regex)) => regex::Regex::new(regex)
                .map(Pattern::Regex)
                .map_err(|e| format!("invalid regex {regex:?}: {e}")),
            _ => Err("give exactly one of `text` and `regex`".into()),
        }
    }

    /// What it looks for, for messages: `text "x" on node 2`.
    fn describe(&self) -> String {
        let what = match (&self.text, &self.regex) {
            (Some(text), _) => format!("text {text:?}"),
            (None, Some(regex)) => format!("regex {regex:?}"),
            (None, None) => "nothing".into(),
        };
        match self.node {
            Some(node) => format!("{what} on node {node}"),
            None => what,
        }
    }

    /// The check over `lines` (node, text): empty when it holds.
    fn check<'a>(
        &self,
        noun: &str,
        lines: impl Iterator<Item = (NodeId, &'a str)> + Clone,
    ) -> Vec<String> {
        let pattern = match self.pattern() {
            Ok(p) => p,
            Err(e) => return vec![e],
        };
        let candidates = lines.filter(|(node, _)| self.node.is_none_or(|n| n == *node));
        let matched = candidates
            .clone()
            .filter(|(_, line)| pattern.matches(line))
            .count();
        let ok = match self.count {
            Some(want) => matched == want,
            None => matched > 0,
        };
        if ok {
            return Vec::new();
        }
        let mut diff = vec![match self.count {
            Some(want) => format!(
                "expected {want} {noun} matching {}, got {matched}",
                self.describe()
            ),
            None => format!("no {noun} matches {}", self.describe()),
        }];
        let shown: Vec<String> = candidates
            .take(MAX_SHOWN)
            .map(|(node, line)| format!("  node {node}: {line}"))
            .collect();
        if !shown.is_empty() {
            diff.push(format!("{noun} seen (first {MAX_SHOWN}):"));
            diff.extend(shown);
        }
        diff
    }
}

/// Most lines a failed text expectation lists in its diff.
const MAX_SHOWN: usize = 10;

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
            tick_ms: self.plugin.tick_ms,
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
        harness.set_timing(Timing {
            write_latency_ms: self.cluster.write_latency_ms,
            transfer_latency_ms: self.cluster.transfer_latency_ms,
            catch_up_ms: self.cluster.catch_up_ms,
        });
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
        Step::Advance { ms } => harness.advance(*ms),
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
    if let Some(expected) = &expect.transfers_by {
        let transfers = harness.transfers();
        let mut diff = Vec::new();
        for (node, want) in expected {
            let Ok(node) = node.parse::<NodeId>() else {
                diff.push(format!("{node:?} is not a node id"));
                continue;
            };
            let actual: Vec<String> = transfers
                .iter()
                .filter(|t| t.by == node)
                .map(|t| format!("{} -> {}", t.partition, t.to))
                .collect();
            diff.extend(
                list_diff(want, &actual)
                    .into_iter()
                    .map(|line| format!("by node {node}: {line}")),
            );
        }
        checks.push(Check {
            what: "transfers requested, by node".into(),
            diff,
        });
    }
    if let Some(expected) = &expect.logs {
        let logs = harness.logs();
        let diff = expected
            .iter()
            .flat_map(|e| {
                let lines = logs
                    .iter()
                    .filter(|l| e.plugin.as_ref().is_none_or(|p| *p == l.plugin))
                    .map(|l| (l.node, l.message.as_str()));
                let matching = TextExpect {
                    text: e.text.clone(),
                    regex: e.regex.clone(),
                    node: e.node,
                    count: e.count,
                };
                let noun = match &e.plugin {
                    Some(plugin) => format!("log lines of plugin {plugin}"),
                    None => "log lines".to_owned(),
                };
                matching.check(&noun, lines)
            })
            .collect();
        checks.push(Check {
            what: "plugin log lines".into(),
            diff,
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
            .flat_map(|e| {
                let lines = notifications
                    .iter()
                    .filter(|n| n.sink == e.sink)
                    .map(|n| (n.by, n.payload.as_str()));
                let noun = format!("notifications on sink {}", e.sink);
                let matching = TextExpect {
                    text: e.text.clone(),
                    regex: e.regex.clone(),
                    node: e.node,
                    count: e.count,
                };
                matching.check(&noun, lines)
            })
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
