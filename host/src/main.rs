//! The `leaderhook` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use leaderhook::auth::Secret;
use leaderhook::config::{NodeConfig, RaftConfig};
use leaderhook::{admin, broker, builtin, cluster, demo};
use leaderhook_harness::Scenario;
use leaderhook_hooks::HooksConfig;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod plugin_ops;

/// With `--features jemalloc`: jemalloc instead of glibc's malloc, handing
/// freed pages back within a second from a background thread (options in
/// `.cargo/config.toml`). Not the default: since Raft rounds are written in
/// pieces of 1 MiB, glibc stays as far under the memory target, and
/// jemalloc cost a sixth of RF3 produce throughput (docs/storage.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The environment variable holding the admin secret for `--admin ADDR`.
const SECRET_ENV: &str = "LEADERHOOK_SECRET";

#[derive(Parser)]
#[command(
    name = "leaderhook",
    version,
    about = "Raft leadership events, handled by WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Feed a scripted election history (elections, a crash, a late and a
    /// duplicate event, a transfer) to three nodes' plugins and show that the
    /// stored assignments follow Raft's leaders.
    Demo {
        /// A plugins config (`[dispatch]` and `[[plugins]]`); default: the
        /// builtin assign-leader plugin.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Work with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Run one broker node.
    Broker {
        #[arg(long)]
        config: PathBuf,
    },
    /// Local loopback clusters.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Create and delete topics (through a node's admin endpoint).
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Move partition leadership by hand.
    Partitions {
        #[command(subcommand)]
        command: PartitionsCommand,
    },
    /// Each local replica's Raft role, leader and term beside its stored
    /// assignment, per node.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Write node1.toml … nodeN.toml for a loopback cluster, with a fresh
    /// cluster id and secret (the files are readable by their owner only).
    Init {
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long, default_value = "cluster")]
        dir: PathBuf,
        /// Serve the admin test hooks that inject faults (drop events, invent
        /// leadership events). For test clusters only.
        #[arg(long)]
        fault_injection: bool,
    },
    /// Run every node of DIR in the foreground (initialising a 3-node
    /// cluster there first if it has none); Ctrl-C stops them.
    Up {
        #[arg(long, default_value = "cluster")]
        dir: PathBuf,
    },
}

/// `KEY=VALUE` of `topics create --config`.
fn parse_config(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((key.trim().to_owned(), value.trim().to_owned()))
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create a topic: its partitions, each a Raft group on `replication`
    /// nodes.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[arg(long, default_value_t = 1)]
        replication: usize,
        /// A topic config, KEY=VALUE (repeatable): max.message.bytes,
        /// retention.ms, retention.bytes.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a topic and its partitions' Raft groups on every node.
    Delete {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

// Which node(s) to ask, and with which secret: an admin address, or the
// configs of a cluster dir. (A plain comment: a doc comment here would become
// the description of every command that flattens it.)
#[derive(clap::Args)]
struct Target {
    /// A node's admin endpoint (127.0.0.1:PORT); its secret comes from
    /// --secret-file, else $LEADERHOOK_SECRET, else the config in --dir with
    /// that admin address.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// A file holding the cluster secret (for --admin).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// A cluster directory written by `cluster init` (default: ./cluster):
    /// every node's admin address and secret are read from its config.
    #[arg(long, default_value = "cluster")]
    dir: PathBuf,
}

impl Target {
    /// The admin addresses to ask, in node order, each with its secret.
    fn nodes(&self) -> anyhow::Result<Vec<(SocketAddr, Secret)>> {
        if let Some(addr) = self.admin {
            return Ok(vec![(addr, self.secret_for(addr)?)]);
        }
        let files = cluster::configs(&self.dir);
        anyhow::ensure!(
            !files.is_empty(),
            "no --admin address and no node configs in {}",
            self.dir.display()
        );
        files
            .iter()
            .map(|f| NodeConfig::admin_endpoint(f))
            .collect()
    }

    /// The secret for `--admin ADDR`.
    fn secret_for(&self, addr: SocketAddr) -> anyhow::Result<Secret> {
        if let Some(file) = &self.secret_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the secret file {}", file.display()))?;
            return Secret::new(&text).with_context(|| file.display().to_string());
        }
        if let Ok(text) = std::env::var(SECRET_ENV) {
            return Secret::new(&text).with_context(|| format!("${SECRET_ENV}"));
        }
        for file in cluster::configs(&self.dir) {
            let (admin, secret) = NodeConfig::admin_endpoint(&file)?;
            if admin == addr {
                return Ok(secret);
            }
        }
        anyhow::bail!(
            "no admin secret for {addr}: pass --secret-file FILE, set ${SECRET_ENV}, or \
             --dir the cluster directory whose config has that admin address"
        )
    }

    /// Sends to the first node that answers, retrying for a while when
    /// the cluster is still electing its metadata leader.
    fn request(&self, request: &admin::Request) -> anyhow::Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let nodes = self.nodes()?;
        loop {
            let mut last = None;
            for (addr, secret) in &nodes {
                match admin::request(*addr, secret, request, Duration::from_secs(15)) {
                    Ok(v) => return Ok(v),
                    Err(e) if e.is_transient() => last = Some(e),
                    Err(e) => return Err(e).with_context(|| format!("node at {addr}")),
                }
            }
            if std::time::Instant::now() >= deadline {
                return match last {
                    Some(e) => Err(e.into()),
                    None => Err(anyhow::anyhow!("no node answered")),
                };
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check a plugin against the contract; print its contract version and
    /// the capabilities it imports.
    Check {
        /// A .wasm component, or builtin:<name>.
        plugin: String,
    },
    /// Run scenario files (a simulated cluster, a timeline, expectations)
    /// against a plugin; print pass/fail per expectation with a diff on
    /// failure. Exits non-zero if any expectation fails.
    Test {
        /// A .wasm component, or builtin:<name>.
        plugin: String,
        /// Scenario files (TOML); repeat for several.
        #[arg(long = "scenario", required_unless_present = "traces")]
        scenarios: Vec<PathBuf>,
        /// A recorded trace (`[trace]` of a node config) to replay instead:
        /// the plugin gets each recorded batch again, and where its calls
        /// differ from the recorded ones is printed. Repeat for several
        /// files: the nodes' traces are merged by time into one history
        /// (a node's rotated files first, oldest first).
        #[arg(long = "trace", conflicts_with = "scenarios")]
        traces: Vec<PathBuf>,
        /// The recorded plugin to compare with (default: the active plugin
        /// with the most batches in the trace).
        #[arg(long, requires = "traces")]
        against: Option<String>,
    },
    /// Stop delivering events to a loaded plugin, on every node of the
    /// target (it stays loaded; `enable` resumes it).
    Disable {
        /// The plugin's name in the node configs.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Resume a disabled plugin on every node of the target.
    Enable {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Per node: each plugin's source, content hash, contract, grants, mode,
    /// state, calls, events, failures, last error and call times; the
    /// safety net and the trace.
    List {
        #[command(flatten)]
        target: Target,
        /// Print JSON (one line per node).
        #[arg(long)]
        json: bool,
    },
    /// Load, check and initialise a plugin's file again (or a new one) on
    /// every node; each node swaps between batches and keeps the old
    /// version if the new one is refused (reported per node).
    Reload {
        name: String,
        /// The new .wasm file (default: the plugin's current path).
        #[arg(long)]
        path: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Every node re-reads its config file and applies its plugin changes
    /// (added, removed, reordered, new paths, config tables, limits,
    /// grants, modes), all or nothing; as SIGHUP does.
    Apply {
        #[command(flatten)]
        target: Target,
    },
    /// A shadow plugin's agreement with the active chain and its last
    /// differences, per node.
    Diff {
        name: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        json: bool,
    },
    /// Turn a shadow plugin active on every node, without a restart.
    Promote {
        name: String,
        /// The active plugin it replaces (removed from the chain).
        #[arg(long)]
        replacing: Option<String>,
        /// Also write it into each node's config file.
        #[arg(long)]
        persist: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum PartitionsCommand {
    /// Ask a partition's Raft group to move its leadership to a replica.
    Transfer {
        /// TOPIC-INDEX, e.g. orders-0.
        partition: String,
        /// The node to lead it.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        target: Target,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        // Colours only on a terminal: a log file gets no escape codes.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let mut out = Stdout(std::io::stdout().lock());
    match run(Cli::parse(), &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // `leaderhook status | head`: the reader has what it wanted.
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Standard output, whose broken pipe is told apart from any other
/// (a socket's broken pipe is an error; stdout's means the reader is done).
struct Stdout<W>(W);

#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
struct StdoutClosed;

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes).map_err(mark_closed)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(mark_closed)
    }
}

fn mark_closed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    let engine = builtin::engine()?;
    match cli.command {
        Command::Broker { config } => broker::run_file(&config),
        Command::Cluster {
            command:
                ClusterCommand::Init {
                    nodes,
                    dir,
                    fault_injection,
                },
        } => {
            let options = cluster::InitOptions { fault_injection };
            for file in cluster::init_with(&dir, nodes, &RaftConfig::default(), &options)? {
                writeln!(out, "{}", file.display())?;
            }
            Ok(())
        }
        Command::Cluster {
            command: ClusterCommand::Up { dir },
        } => {
            if cluster::configs(&dir).is_empty() {
                cluster::init(&dir, 3, &RaftConfig::default())?;
            }
            cluster::up(&dir)
        }
        Command::Topics {
            command:
                TopicsCommand::Create {
                    name,
                    partitions,
                    replication,
                    configs,
                    target,
                },
        } => {
            let answer = target.request(&admin::Request::CreateTopic {
                name: name.clone(),
                partitions,
                replication,
                configs: configs.into_iter().collect(),
            })?;
            writeln!(out, "created topic {name}: {answer}")?;
            Ok(())
        }
        Command::Topics {
            command: TopicsCommand::Delete { name, target },
        } => {
            target.request(&admin::Request::DeleteTopic { name: name.clone() })?;
            writeln!(out, "deleted topic {name}")?;
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Disable { name, target },
        } => set_plugin_enabled(out, &target, name, false),
        Command::Plugin {
            command: PluginCommand::Enable { name, target },
        } => set_plugin_enabled(out, &target, name, true),
        Command::Plugin {
            command: PluginCommand::List { target, json },
        } => plugin_ops::list(out, &target, json),
        Command::Plugin {
            command: PluginCommand::Reload { name, path, target },
        } => plugin_ops::reload(out, &target, name, path),
        Command::Plugin {
            command: PluginCommand::Apply { target },
        } => plugin_ops::apply(out, &target),
        Command::Plugin {
            command: PluginCommand::Diff { name, target, json },
        } => plugin_ops::diff(out, &target, name, json),
        Command::Plugin {
            command:
                PluginCommand::Promote {
                    name,
                    replacing,
                    persist,
                    target,
                },
        } => plugin_ops::promote(out, &target, name, replacing, persist),
        Command::Partitions {
            command:
                PartitionsCommand::Transfer {
                    partition,
                    to,
                    target,
                },
        } => {
            target.request(&admin::Request::TransferLeader {
                partition: partition.clone(),
                to,
            })?;
            writeln!(out, "asked {partition} to move its leadership to node {to}")?;
            Ok(())
        }
        Command::Status { target, json } => {
            for (addr, secret) in target.nodes()? {
                let request = &admin::Request::Status;
                match admin::request(addr, &secret, request, Duration::from_secs(5)) {
                    Ok(status) if json => writeln!(out, "{status}")?,
                    Ok(status) => print_status(out, &status)?,
                    Err(e) => writeln!(out, "{addr}: {e:#}")?,
                }
            }
            Ok(())
        }
        Command::Demo { config } => {
            let config = match config {
                Some(path) => HooksConfig::from_file(&path)?,
                None => demo::default_config(),
            };
            demo::run(engine, config, out)
        }
        Command::Plugin {
            command: PluginCommand::Check { plugin },
        } => {
            let validated = engine.load(&engine.source(&plugin)?)?;
            writeln!(out, "{plugin}: ok")?;
            let lines = leaderhook_hooks::LINES.join(", ");
            writeln!(
                out,
                "contract: leaderhook:plugin@{} (host implements lines {lines})",
                validated.contract_version,
            )?;
            match &validated.sdk_version {
                Some(version) => writeln!(out, "sdk: leaderhook-sdk {version}")?,
                None => writeln!(out, "sdk: none recorded (built without the Rust SDK)")?,
            }
            writeln!(out, "imports: {}", validated.capabilities.join(", "))?;
            Ok(())
        }
        Command::Plugin {
            command:
                PluginCommand::Test {
                    plugin,
                    traces,
                    against,
                    ..
                },
        } if !traces.is_empty() => plugin_ops::replay(out, engine, plugin, &traces, against),
        Command::Plugin {
            command: PluginCommand::Test {
                plugin, scenarios, ..
            },
        } => {
            let mut failed = Vec::new();
            for file in &scenarios {
                let scenario = Scenario::from_file(file)?;
                let report = scenario
                    .run(engine.clone(), Some(&plugin))
                    .with_context(|| format!("running {}", file.display()))?;
                write!(out, "{}", report.render())?;
                if !report.passed() {
                    failed.push(file.display().to_string());
                }
            }
            anyhow::ensure!(
                failed.is_empty(),
                "{} of {} scenarios failed: {}",
                failed.len(),
                scenarios.len(),
                failed.join(", ")
            );
            Ok(())
        }
    }
    .context("leaderhook")
}

/// A plugin is switched per node: every node of the target must answer.
fn set_plugin_enabled(
    out: &mut impl Write,
    target: &Target,
    name: String,
    enabled: bool,
) -> anyhow::Result<()> {
    let request = admin::Request::SetPluginEnabled {
        plugin: name.clone(),
        enabled,
    };
    let mut failed = 0;
    for (addr, secret) in target.nodes()? {
        match admin::request(addr, &secret, &request, Duration::from_secs(15)) {
            Ok(_) => writeln!(
                out,
                "{addr}: {name} {}",
                if enabled { "enabled" } else { "disabled" }
            )?,
            Err(e) => {
                writeln!(out, "{addr}: {e:#}")?;
                failed += 1;
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} node(s) did not switch {name}");
    Ok(())
}

fn print_status(out: &mut impl Write, status: &serde_json::Value) -> anyhow::Result<()> {
    let status: admin::Status = serde_json::from_value(status.clone())?;
    writeln!(out, "node {}", status.node)?;
    writeln!(
        out,
        "  partition            group  role        raft-leader  term  serving  assigned  epoch  isr"
    )?;
    let show = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    for r in &status.replicas {
        let mark = if r.role == leaderhook::raft::shared::Role::Leader
            && r.assigned_leader != Some(status.node)
        {
            "  <- assignment differs"
        } else {
            ""
        };
        writeln!(
            out,
            "  {:<20} {:>5}  {:<10}  {:>11}  {:>4}  {:>7}  {:>8}  {:>5}  {}{mark}",
            r.partition,
            r.group,
            r.role,
            show(r.raft_leader),
            r.term,
            r.serving,
            show(r.assigned_leader),
            r.epoch,
            r.isr
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )?;
    }
    Ok(())
}
