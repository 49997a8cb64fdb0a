//! The `leaderhook` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use leaderhook::{builtin, demo};
use leaderhook_harness::Scenario;
use leaderhook_hooks::HooksConfig;
use std::path::PathBuf;
use std::process::ExitCode;

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
