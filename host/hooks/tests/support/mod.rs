//! Shared by the integration tests: real plugins compiled from this
//! workspace, and small builders.
#![allow(dead_code)]

use leaderhook_hooks::guest_build;
use leaderhook_hooks::queue::Push;
use leaderhook_hooks::{
    Capabilities, ErrorPolicy, Grant, HookEngine, HookRuntime, LeadershipEvent, MemoryCluster,
    OnError, PartitionId, PartitionKey, PluginConfig, Transition,
};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub struct Plugins {
    pub assign_leader: String,
    pub adversary: String,
    pub wrong_version: String,
    /// Hand-written against the frozen line 0.1.0 (tests/plugins/contract-v0-1).
    pub contract_v0_1: String,
}

/// Builds the plugins the tests use (once per test binary; cargo makes the
/// build a no-op when nothing changed).
pub fn plugins() -> &'static Plugins {
    static PLUGINS: OnceLock<Plugins> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        let root = guest_build::workspace_root(env!("CARGO_MANIFEST_DIR").as_ref());
        let paths = guest_build::build_guests(
            &root,
            &[
                "assign-leader",
                "adversary",
                "wrong-version",
                "contract-v0-1",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = |p: &PathBuf| p.to_string_lossy().into_owned();
        Plugins {
            assign_leader: s(&paths[0]),
            adversary: s(&paths[1]),
            wrong_version: s(&paths[2]),
            contract_v0_1: s(&paths[3]),
        }
    })
}

pub fn engine() -> HookEngine {
    static ENGINE: OnceLock<HookEngine> = OnceLock::new();
    ENGINE
        .get_or_init(|| HookEngine::new().expect("engine"))
        .clone()
}

/// A 3-node cluster with topic `t` (4 partitions on nodes 1, 2, 3) and a
/// sink named `trace`.
pub fn cluster() -> Arc<MemoryCluster> {
    let cluster = MemoryCluster::new(1, &[1, 2, 3]);
    cluster.add_topic("t", 4, &[1, 2, 3]);
    cluster.add_sink("trace");
    Arc::new(cluster)
}

pub fn caps(cluster: &Arc<MemoryCluster>) -> Arc<dyn Capabilities> {
    cluster.clone()
}

pub fn p(partition: u32) -> PartitionId {
    PartitionId::new("t", partition)
}

/// The key the tests give partition `t-N`: N.
pub fn key(event: &LeadershipEvent) -> PartitionKey {
    PartitionKey(u64::from(event.partition.partition))
}

/// Submits an event under its partition's test key.
pub fn submit(runtime: &HookRuntime, event: LeadershipEvent) -> Push {
    runtime.submit(key(&event), event)
}

pub fn assign_leader() -> PluginConfig {
    PluginConfig::new(
        "assign-leader",
        &plugins().assign_leader,
        &[Grant::Assignments],
    )
}

/// The adversary in `mode`.
pub fn adversary(name: &str, mode: &str, grants: &[Grant]) -> PluginConfig {
    let mut config = PluginConfig::new(name, &plugins().adversary, grants);
    config.config.insert("mode".into(), mode.into());
    config
}

/// The adversary in `mode` with extra config entries.
pub fn adversary_with(
    name: &str,
    mode: &str,
    grants: &[Grant],
    extra: &[(&str, toml::Value)],
) -> PluginConfig {
    let mut config = adversary(name, mode, grants);
    for (k, v) in extra {
        config.config.insert((*k).into(), v.clone());
    }
    config
}

pub fn policy(policy: ErrorPolicy) -> OnError {
    OnError {
        policy,
        backoff_ms: 1,
        ..OnError::default()
    }
}

/// A became-leader event as seen by the new leader itself.
pub fn became_leader(
    cluster: &MemoryCluster,
    partition: u32,
    leader: u64,
    term: u64,
) -> LeadershipEvent {
    let event = cluster.elect(&p(partition), leader, term, leader);
    assert_eq!(event.transition, Transition::BecameLeader);
    event
}

/// Routes the runtime's (and plugins') logs to the test output.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "leaderhook=debug,leaderhook_hooks=debug".into()),
        )
        .try_init();
}
