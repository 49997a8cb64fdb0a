//! The leaderhook plugin runtime: loads WebAssembly component plugins built
//! against a line of the `leaderhook:plugin` contract (`wit/since_v*/`), runs
//! them sandboxed and limited, and delivers leadership events to them.
//!
//! It knows nothing of Raft or Kafka: the world reaches plugins through the
//! [`Capabilities`] trait, implemented by the broker and by test clusters.
//!
//! # Layout
//!
//! - [`contract`]: one module of generated bindings per contract line
//!   (`wit/since_v*`), converted to one internal model (the newest line's
//!   types); the lines and their versions.
//! - [`config`]: the operator's `[dispatch]` and `[[plugins]]` TOML.
//! - [`engine`]: the process-wide wasmtime engine, linker and epoch ticker.
//! - [`load`]: reading, checking and compiling a plugin file; [`artifact`]:
//!   verified precompiled artifacts.
//! - `state`: a plugin's store and the host side of every import (grants,
//!   quotas, fencing); `stdio`: plugin stdout/stderr into the host log.
//! - [`limits`]: an instance's memory bound and capability quotas;
//!   [`loggate`]: the log rate limit; [`text`]: output size bounds.
//! - [`plugin`]: one plugin's instance, deadlines, failures and `on_error`
//!   policy; [`cancel`]: abandoning a call in progress; `exec`: running
//!   calls from synchronous code.
//! - [`chain`]: a node's plugins in config order, called synchronously.
//! - [`queue`], `lane` and [`dispatch`]: each plugin's bounded queue and
//!   worker, and the runtime that fans events out to them; `tick`: when a
//!   plugin's `on-tick` is due.
//! - [`calls`]: capability calls as data (counted, captured per batch);
//!   [`shadow`]: shadow plugins and their comparison with the active chain;
//!   [`trace`]: recorded traces; `record`: where lanes report batches.
//! - [`capabilities`] and [`fence`]: the trait plugins see the world
//!   through, and the term-fencing rule every writer applies.
//! - [`memory`]: an in-memory cluster implementing [`Capabilities`].
//! - [`guest_build`]: builds guest crates to `.wasm` for tests and benches.
//!
//! # A leadership event in the runtime
//!
//! Steps 3 to 5 and 9 of `ARCHITECTURE.md` (the broker's crate docs link
//! the rest): [`HookRuntime::submit`] pushes the event to every plugin's
//! lane ([`Lane::push`](lane::Lane::push)), whose worker (`run` in `lane.rs`)
//! hands a batch to [`Plugin::deliver_async`](plugin::Plugin::deliver_async),
//! which applies the `on_error` policy around
//! [`Plugin::call_once`](plugin::Plugin::call_once). The plugin's
//! `set-leader` import lands in [`state::PluginState`], which checks the
//! grant and the quota and fences with [`fence::check_set_leader`].

// The docs are built for the people working on this crate, private items
// included (`cargo doc --document-private-items`, run in CI with
// `-D warnings`), so links into private items resolve and are checked.
#![allow(rustdoc::private_intra_doc_links)]

pub mod artifact;
pub mod calls;
pub mod cancel;
pub mod capabilities;
pub mod chain;
pub mod config;
pub mod contract;
pub mod dispatch;
pub mod engine;
mod exec;
pub mod fence;
pub mod guest_build;
mod lane;
pub mod limits;
pub mod load;
pub mod loggate;
pub mod memory;
pub mod plugin;
pub mod queue;
mod record;
pub mod shadow;
mod state;
pub mod stats;
mod stdio;
pub mod text;
mod tick;
pub mod trace;

pub use artifact::{ArtifactKey, CacheStats};
pub use capabilities::{Backlog, Capabilities, CapabilityError};
pub use chain::{PluginChain, PluginInfo};
pub use config::{ErrorPolicy, Grant, HooksConfig, Limits, Mode, OnError, PluginConfig};
pub use contract::{
    CONTRACT_VERSION, CapError, LINES, LeaderCount, LeadershipEvent, Line, NodeId, NodeInfo,
    PartitionAssignment, PartitionId, Quota, QuotaWindow, Transition, WriteOutcome,
};
pub use dispatch::{
    ApplyError, ApplyReport, FallbackStats, HookRuntime, ReloadError, RuntimeOptions, RuntimeStats,
};
pub use engine::HookEngine;
pub use fence::PartitionView;
pub use load::{LoadError, MAX_PLUGIN_BYTES, PluginSource};
pub use memory::MemoryCluster;
pub use queue::PartitionKey;
pub use state::LogTap;
pub use stats::{LatencyStats, OverQuotaStats, PluginStats, QueueStats, RunState};
pub use trace::{TraceConfig, TraceWriter};
