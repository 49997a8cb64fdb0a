//! The leaderhook plugin runtime: loads WebAssembly component plugins built
//! against the `leaderhook:plugin` contract (`wit/leaderhook.wit`), runs
//! them sandboxed and limited, and delivers leadership events to them.
//!
//! It knows nothing of Raft or Kafka: the world reaches plugins through the
//! [`Capabilities`] trait, implemented by the broker and by test clusters.
//!
//! # Layout
//!
//! - [`contract`]: generated bindings and the contract version.
//! - [`config`]: the operator's `[dispatch]` and `[[plugins]]` TOML.
//! - [`engine`]: the process-wide wasmtime engine, linker and epoch ticker.
//! - [`load`]: reading, checking and compiling a plugin file.
//! - `state`: a plugin's store and the host side of every import (grants,
//!   fencing); `stdio`: plugin stdout/stderr into the host log.
//! - [`plugin`]: one plugin's instance, limits, failures and `on_error` policy.
//! - [`chain`]: a node's plugins in config order, called synchronously.
//! - [`queue`] and [`dispatch`]: the bounded queue and the dispatcher thread.
//! - [`capabilities`] and [`fence`]: the trait plugins see the world
//!   through, and the term-fencing rule every writer applies.
//! - [`memory`]: an in-memory cluster implementing [`Capabilities`].
//! - [`guest_build`]: builds guest crates to `.wasm` for tests and benches.

pub mod capabilities;
pub mod chain;
pub mod config;
pub mod contract;
pub mod dispatch;
pub mod engine;
pub mod fence;
pub mod guest_build;
pub mod load;
pub mod memory;
pub mod plugin;
pub mod queue;
mod state;
pub mod stats;
mod stdio;

pub use capabilities::Capabilities;
pub use chain::{PluginChain, PluginInfo};
pub use config::{ErrorPolicy, Grant, HooksConfig, Limits, OnError, PluginConfig};
pub use contract::{
    CONTRACT_VERSION, CapError, LeaderCount, LeadershipEvent, NodeId, NodeInfo,
    PartitionAssignment, PartitionId, Transition, WriteOutcome,
};
pub use dispatch::{HookRuntime, ReloadError, RuntimeStats};
pub use engine::HookEngine;
pub use fence::PartitionView;
pub use load::{LoadError, PluginSource};
pub use memory::MemoryCluster;
pub use stats::{PluginStats, QueueStats};
