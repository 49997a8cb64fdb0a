//! The `leaderhook` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use leaderhook::config::{NodeConfig, RaftConfig};
use leaderhook::{admin, broker, builtin, cluster, demo};
use leaderhook_harness::Scenario;
use leaderhook_hooks::HooksConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Write node1.toml … nodeN.toml for a loopback cluster.
    Init {
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long, default_value = "cluster")]
        dir: PathBuf,
    },
    /// Run every node of DIR in the foreground (initialising a 3-node
    /// cluster there first if it has none); Ctrl-C stops them.
    Up {
        #[arg(long, default_value = "cluster")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[arg(long, default_value_t = 1)]
        replication: usize,
        #[command(flatten)]
        target: Target,
    },
    Delete {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Which node(s) to ask: an admin address, or the configs of a cluster dir.
#[derive(clap::Args)]
struct Target {
    /// A node's admin endpoint (127.0.0.1:PORT).
    #[arg(long)]
    admin: Option<std::net::SocketAddr>,
    /// A cluster directory written by `cluster init` (default: ./cluster).
    #[arg(long, default_value = "cluster")]
    dir: PathBuf,
}

impl Target {
    /// The admin addresses to try, in node order.
    fn addresses(&self) -> anyhow::Result<Vec<std::net::SocketAddr>> {
        if let Some(addr) = self.admin {
            return Ok(vec![addr]);
        }
        let files = cluster::configs(&self.dir);
        anyhow::ensure!(
            !files.is_empty(),
            "no --admin address and no node configs in {}",
            self.dir.display()
        );
        files
            .iter()
            .map(|f| Ok(NodeConfig::from_file(f)?.admin_listen))
            .collect()
    }

    /// Sends to the first node that answers, retrying for a while when
    /// the cluster is still electing its metadata leader.
    fn request(&self, request: &admin::Request) -> anyhow::Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut last = None;
            for addr in self.addresses()? {
                match admin::request(addr, request, Duration::from_secs(15)) {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        let text = e.to_string();
                        let transient = text.contains("cannot reach")
                            || text.contains("proposal dropped")
                            || text.contains("not committed");
                        if !transient {
                            return Err(e);
                        }
                        last = Some(e);
                    }
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(last.unwrap_or_else(|| anyhow::anyhow!("no node answered")));
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
        #[arg(long = "scenario", required = true)]
        scenarios: Vec<PathBuf>,
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
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let engine = builtin::engine()?;
    match cli.command {
        Command::Broker { config } => broker::run(NodeConfig::from_file(&config)?),
        Command::Cluster {
            command: ClusterCommand::Init { nodes, dir },
        } => {
            for file in cluster::init(&dir, nodes, &RaftConfig::default())? {
                println!("{}", file.display());
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
                    target,
                },
        } => {
            let answer = target.request(&admin::Request::CreateTopic {
                name: name.clone(),
                partitions,
                replication,
            })?;
            println!("created topic {name}: {answer}");
            Ok(())
        }
        Command::Topics {
            command: TopicsCommand::Delete { name, target },
        } => {
            target.request(&admin::Request::DeleteTopic { name: name.clone() })?;
            println!("deleted topic {name}");
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Disable { name, target },
        } => set_plugin_enabled(&target, name, false),
        Command::Plugin {
            command: PluginCommand::Enable { name, target },
        } => set_plugin_enabled(&target, name, true),
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
            println!("asked {partition} to move its leadership to node {to}");
            Ok(())
        }
        Command::Status { target, json } => {
            for addr in target.addresses()? {
                match admin::request(addr, &admin::Request::Status, Duration::from_secs(5)) {
                    Ok(status) if json => println!("{status}"),
                    Ok(status) => print_status(&status)?,
                    Err(e) => println!("{addr}: {e:#}"),
                }
            }
            Ok(())
        }
        Command::Demo { config } => {
            let config = match config {
                Some(path) => HooksConfig::from_file(&path)?,
                None => demo::default_config(),
            };
            demo::run(engine, config, &mut std::io::stdout())
        }
        Command::Plugin {
            command: PluginCommand::Check { plugin },
        } => {
            let validated = engine.load(&engine.source(&plugin)?)?;
            println!("{plugin}: ok");
            println!(
                "contract: leaderhook:plugin@{} (host implements {})",
                validated.contract_version,
                leaderhook_hooks::CONTRACT_VERSION
            );
            println!("imports: {}", validated.capabilities.join(", "));
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Test { plugin, scenarios },
        } => {
            let mut failed = Vec::new();
            for file in &scenarios {
                let scenario = Scenario::from_file(file)?;
                let report = scenario
                    .run(engine.clone(), Some(&plugin))
                    .with_context(|| format!("running {}", file.display()))?;
                print!("{}", report.render());
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
fn set_plugin_enabled(target: &Target, name: String, enabled: bool) -> anyhow::Result<()> {
    let request = admin::Request::SetPluginEnabled {
        plugin: name.clone(),
        enabled,
    };
    let mut failed = 0;
    for addr in target.addresses()? {
        match admin::request(addr, &request, Duration::from_secs(15)) {
            Ok(_) => println!(
                "{addr}: {name} {}",
                if enabled { "enabled" } else { "disabled" }
            ),
            Err(e) => {
                println!("{addr}: {e:#}");
                failed += 1;
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} node(s) did not switch {name}");
    Ok(())
}

fn print_status(status: &serde_json::Value) -> anyhow::Result<()> {
    let status: admin::Status = serde_json::from_value(status.clone())?;
    println!("node {}", status.node);
    println!(
        "  partition            group  role        raft-leader  term  serving  assigned  epoch  isr"
    );
    let show = |n: Option<u64>| n.map_or("-".to_string(), |n| n.to_string());
    for r in &status.replicas {
        let mark = if r.role == leaderhook::raft::shared::Role::Leader
            && r.assigned_leader != Some(status.node)
        {
            "  <- assignment differs"
        } else {
            ""
        };
        println!(
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
        );
    }
    Ok(())
}
