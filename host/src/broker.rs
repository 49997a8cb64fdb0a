//! `leaderhook broker`: one node. Wires the Raft loop, the transport, the
//! plugin runtime (through [`BrokerCaps`]) and the admin endpoint, and
//! stops them cleanly on SIGINT/SIGTERM.

use crate::admin::Admin;
use crate::caps::BrokerCaps;
use crate::config::NodeConfig;
use crate::raft::node::{RaftHandle, RaftLoop, Shared};
use crate::raft::storage::LogStore;
use crate::raft::transport::{Transport, TransportSettings};
use crate::sinks::Sinks;
use anyhow::Context;
use leaderhook_hooks::{Capabilities, HookRuntime};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Envelopes waiting for the Raft loop before the transport drops them.
const INBOX: usize = 65_536;

pub fn run(config: NodeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("leaderhook-io")
        .enable_all()
        .build()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = LogStore::open(&config.data_dir.join("raft"))
        .with_context(|| format!("opening the Raft log in {}", config.data_dir.display()))?;

    let (inbox_tx, inbox) = std::sync::mpsc::sync_channel(INBOX);
    let transport = Transport::start(
        TransportSettings::from_config(&config)?,
        inbox_tx.clone(),
        runtime.handle().clone(),
    )
    .with_context(|| format!("starting the Raft transport on {}", config.raft_listen))?;

    let (commands_tx, commands) = std::sync::mpsc::channel();
    let raft = RaftHandle::new(commands_tx, inbox_tx);
    let shared = Arc::new(Shared::default());
    let caps: Arc<dyn Capabilities> = Arc::new(BrokerCaps {
        node: config.node_id,
        nodes: config
            .peers
            .iter()
            .map(|p| (p.id, p.rack.clone()))
            .collect(),
        shared: shared.clone(),
        raft: raft.clone(),
        transport: transport.clone(),
        sinks: Sinks::start(&config.sinks),
    });
    let engine = crate::builtin::engine_with_cache(config.dispatch.cache_dir.clone())?;
    let hooks = Arc::new(HookRuntime::start(engine, caps, &config.hooks())?);
    for plugin in hooks.plugins() {
        tracing::info!(plugin = %plugin.name, origin = %plugin.origin, "plugin loaded");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let raft_loop = RaftLoop::new(
        config.node_id,
        config.node_ids(),
        config.raft.settings(),
        store,
        transport.clone(),
        inbox,
        commands,
        hooks.clone(),
        shared.clone(),
        stop.clone(),
    )?;
    let raft_thread = std::thread::Builder::new()
        .name("leaderhook-raft".into())
        .spawn(move || raft_loop.run())?;

    let kafka = Arc::new(crate::kafka::Broker {
        node: config.node_id,
        peers: config.peers.clone(),
        config: config.kafka.clone(),
        shared: shared.clone(),
        raft: raft.clone(),
    });
    let admin = Arc::new(Admin {
        node: config.node_id,
        nodes: config.node_ids(),
        shared,
        raft,
        hooks,
        transport: transport.clone(),
        access: crate::admin::AdminAccess::from_config(&config)?,
    });
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("admin endpoint {}", config.admin_listen))?;
        tracing::info!(node = config.node_id, admin = %config.admin_listen, raft = %config.raft_listen, "node started");
        tokio::spawn(admin.serve(listener));
        if let Some(addr) = config.kafka_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("Kafka listener {addr}"))?;
            tracing::info!(node = config.node_id, kafka = %addr, "Kafka listener started");
            tokio::spawn(crate::kafka::serve(kafka, listener));
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    tracing::info!(node = config.node_id, "stopping");
    stop.store(true, Ordering::Relaxed);
    let _ = raft_thread.join();
    transport.shutdown();
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}
