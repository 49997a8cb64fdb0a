//! `leaderhook broker`: one node. Wires the Raft loop, the transport, the
//! plugin runtime (through [`BrokerCaps`]) and the admin endpoint, and
//! stops them cleanly on SIGINT/SIGTERM.

use crate::admin::Admin;
use crate::caps::BrokerCaps;
use crate::caps::inflight::InflightWrites;
use crate::config::NodeConfig;
use crate::raft::handle::RaftHandle;
use crate::raft::node::{RaftIo, RaftLoop, RaftLoopParts};
use crate::raft::shared::Shared;
use crate::raft::storage::LogStore;
use crate::raft::transport::{Transport, TransportSettings};
use crate::sinks::Sinks;
use anyhow::Context;
use leaderhook_hooks::{Capabilities, HookRuntime};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs the node of config file `file`; SIGHUP and `plugin apply` re-read
/// it (see [`crate::admin`]).
pub fn run_file(file: &std::path::Path) -> anyhow::Result<()> {
    start(NodeConfig::from_file(file)?, Some(file.to_owned()))
}

pub fn run(config: NodeConfig) -> anyhow::Result<()> {
    start(config, None)
}

fn start(config: NodeConfig, config_file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("leaderhook-io")
        .enable_all()
        .build()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = LogStore::open_with(
        &config.data_dir.join("raft"),
        config.storage.store_options(),
    )
    .with_context(|| format!("opening the Raft log in {}", config.data_dir.display()))?;

    let (inbox_tx, inbox) = std::sync::mpsc::sync_channel(crate::raft::transport::INBOX_CAPACITY);
    let transport = Transport::start(
        TransportSettings::from_config(&config)?,
        inbox_tx.clone(),
        runtime.handle().clone(),
    )
    .with_context(|| format!("starting the Raft transport on {}", config.raft_listen))?;

    let (raft, commands) = RaftHandle::new(inbox_tx);
    let settings = config.raft_settings();
    let shared = Arc::new(Shared::new(
        config.node_id,
        config.node_ids(),
        settings.session_timeout,
    ));
    // A write not applied within two election timeouts was lost with a
    // leader; the gate then lets it (or the resync's) through again.
    let inflight = Arc::new(InflightWrites::new(settings.election_timeout() * 2));
    let caps: Arc<dyn Capabilities> = Arc::new(BrokerCaps {
        node: config.node_id,
        nodes: config
            .peers
            .iter()
            .map(|p| (p.id, p.rack.clone()))
            .collect(),
        shared: shared.clone(),
        raft: raft.clone(),
        sinks: Sinks::start_for_cluster(
            &config.sinks,
            config.peers.iter().filter_map(|p| p.kafka).collect(),
        ),
        inflight: inflight.clone(),
        transfer_cooldown: config.raft.transfer_cooldown(),
        last_transfer: Default::default(),
    });
    let engine = crate::builtin::engine_with_cache(
        config.dispatch.cache_dir.clone(),
        &config.data_dir.join("artifact.key"),
    )?;
    let hooks = Arc::new(HookRuntime::start_with(
        engine,
        caps,
        &config.hooks(),
        crate::admin::plugins::runtime_options(&config)?,
    )?);
    for plugin in hooks.plugins() {
        tracing::info!(plugin = %plugin.name, origin = %plugin.origin, mode = plugin.mode.name(), "plugin loaded");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let store_for_purge = store.clone();
    let raft_loop = RaftLoop::new(RaftLoopParts {
        node: config.node_id,
        cluster: config.node_ids(),
        settings,
        io: RaftIo {
            store,
            transport: transport.clone(),
            inbox,
            commands,
        },
        hooks: hooks.clone(),
        shared: shared.clone(),
        inflight,
        stop: stop.clone(),
    })?;
    // Reclaims log files of deleted groups and compacted entries.
    let purger = store_for_purge.spawn_purger(config.storage.purge_interval(), stop.clone())?;
    let raft_thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("leaderhook-raft".into())
            .spawn(move || {
                let ended =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raft_loop.run()));
                fail_stop(&stop, ended);
            })?
    };

    let kafka = Arc::new(crate::kafka::Broker {
        node: config.node_id,
        peers: config.peers.clone(),
        config: config.kafka.clone(),
        topic_limits: config.topics,
        shared: shared.clone(),
        store: store_for_purge.clone(),
        raft: raft.clone(),
        coordinator: Arc::new(crate::coordinator::service::Coordinator::new(
            config.node_id,
            config.groups.clone(),
            shared.clone(),
            raft.clone(),
        )),
        auto_create: Default::default(),
    });
    let metrics = Arc::new(crate::metrics::NodeCollector {
        shared: shared.clone(),
        hooks: hooks.clone(),
    });
    let admin = Arc::new(Admin {
        node: config.node_id,
        topic_limits: config.topics,
        shared,
        raft,
        hooks,
        config_file,
        sinks: config.sinks.clone(),
        trace: config.trace.clone(),
        transport: transport.clone(),
        access: crate::admin::AdminAccess::from_config(&config)?,
        store: store_for_purge,
    });
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("admin endpoint {}", config.admin_listen))?;
        tracing::info!(node = config.node_id, admin = %config.admin_listen, raft = %config.raft_listen, "node started");
        tokio::spawn(admin.clone().serve(listener));
        if let Some(addr) = config.kafka_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("Kafka listener {addr}"))?;
            tracing::info!(node = config.node_id, kafka = %addr, "Kafka listener started");
            tokio::spawn(crate::kafka::serve(kafka, listener));
        }
        if let Some(addr) = config.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics endpoint {addr}"))?;
            tracing::info!(node = config.node_id, metrics = %addr, "metrics endpoint started");
            tokio::spawn(crate::metrics::serve(
                metrics,
                crate::admin::http::router(admin.clone()),
                listener,
            ));
        }
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hangup.recv() => {
                    // The config file is the source of truth for plugins.
                    let admin = admin.clone();
                    tokio::task::spawn_blocking(move || admin.apply_config_logged("SIGHUP"));
                }
            }
        }
        anyhow::Ok(())
    })?;
    tracing::info!(node = config.node_id, "stopping");
    stop.store(true, Ordering::Relaxed);
    // The loop sees the flag within a round.
    let _ = raft_thread.join();
    let _ = purger.join();
    transport.shutdown();
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}

/// Fail stop: a Raft loop that ended for any reason but a requested stop
/// (a failed log write, an undecodable entry, a panic) ends the process
/// with a non-zero status, so a supervisor restarts it from its data
/// directory. Serving on from frozen state would answer clients as a
/// leader that no longer replicates anything.
fn fail_stop(
    stop: &AtomicBool,
    ended: std::thread::Result<Result<(), crate::raft::node::LoopError>>,
) {
    let why = match ended {
        Ok(Ok(())) if stop.load(Ordering::Relaxed) => return,
        Ok(Ok(())) => "it returned without being asked to stop".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .map_or_else(
                || "it panicked".to_string(),
                |p| format!("it panicked: {p}"),
            ),
    };
    tracing::error!(
        "the Raft loop stopped ({why}); exiting so a supervisor restarts this node from its data directory"
    );
    std::process::exit(EXIT_RAFT_LOOP_FAILED);
}

/// Exit status of a node whose Raft loop failed.
pub const EXIT_RAFT_LOOP_FAILED: i32 = 70;
