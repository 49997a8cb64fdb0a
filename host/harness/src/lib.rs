//! Test leaderhook plugins before they go live: a simulated cluster (nodes
//! with racks, alive or dead; topics; replicas; assignments; a deterministic
//! stand-in for Raft that follows transfer requests and node deaths) that
//! drives the real hook runtime through the same capability trait the
//! broker implements. No Raft, no sockets, no wall clock: deterministic.
//!
//! This crate depends on the plugin runtime only, never on the broker, so a
//! plugin author can take it as a dev-dependency without compiling Raft or
//! Kafka.
//!
//! ```no_run
//! use leaderhook_harness::Harness;
//! use leaderhook_hooks::{Grant, HookEngine, PartitionId, PluginConfig};
//!
//! let plugin = PluginConfig::new("assign-leader", "assign_leader.wasm", &[Grant::Assignments]);
//! let mut h = Harness::new(HookEngine::new()?, [1, 2, 3], vec![plugin])?;
//! h.create_topic("orders", 3, 3)?;
//! h.kill(1)?;
//! let p0 = PartitionId::new("orders", 0);
//! assert_eq!(h.assignment(&p0), h.raft_leader(&p0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - [`sim`]: the simulated cluster state and its Raft rules.
//! - [`harness`]: nodes running the plugin chain; settling after each action.
//! - [`scenario`]: the TOML scenario format, its runner and its report.
//! - [`random`]: seeded random timelines (for determinism checks).
//! - [`replay`]: recorded traces replayed through a plugin, compared.

pub mod harness;
pub mod random;
pub mod replay;
pub mod scenario;
pub mod sim;

pub use harness::{Harness, HarnessError, NodeSpec, PluginFailure};
pub use replay::{ReplayError, ReplayReport};
pub use scenario::{Report, Scenario};
