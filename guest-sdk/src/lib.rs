//! Write leaderhook plugins in Rust.
//!
//! A leaderhook plugin is a WebAssembly component that the broker runs in a
//! sandbox and calls with batches of Raft leadership events. This SDK builds
//! plugins against the newest contract line, `leaderhook:plugin@0.2.0`
//! ([`CONTRACT_VERSION`]; `wit/since_v0.2.0/leaderhook.wit`, world
//! `leadership-hook`). It hides the generated bindings: a plugin implements
//! the [`Hook`] trait on a plain Rust type, exports it with
//! [`register_hook!`], and calls the host through the typed helpers in
//! [`log`], [`cluster`], [`assignments`], [`leadership`] and [`notify`].
//!
//! # Layout
//!
//! - `types`: the SDK's own types ([`LeadershipEvent`], [`CapError`], ...);
//! - `hook`: the [`Hook`] trait and the [`register_hook!`] macro;
//! - `host`: the calls into the host, one module per contract interface;
//! - `convert`: conversions between the generated bindings and the types;
//! - `failures`: [`BatchFailures`], for hooks that keep going past a failed
//!   call and report every failure of a batch at once.
//!
//! # Example
//!
//! The default plugin, `assign-leader`, records every replica that becomes
//! the Raft leader as the partition's leader in the replicated assignments:
//!
//! ```no_run
//! use leaderhook_sdk::{
//!     assignments, log, register_hook, CapError, Hook, LeadershipEvent, NoConfig, Transition,
//! };
//!
//! struct AssignLeader;
//!
//! impl Hook for AssignLeader {
//!     type Config = NoConfig;
//!
//!     fn init(_config: NoConfig) -> Result<Self, String> {
//!         Ok(AssignLeader)
//!     }
//!
//!     fn on_event(&mut self, event: &LeadershipEvent) -> Result<(), String> {
//!         if event.transition != Transition::BecameLeader {
//!             return Ok(());
//!         }
//!         match assignments::set_leader(&event.partition, event.observer, event.term) {
//!             Ok(_) => Ok(()),
//!             // A late or replayed event: a newer term is already stored.
//!             Err(CapError::StaleEpoch(stored)) => {
//!                 log::debug(format!("{}: term {} is stale (stored {stored})", event.partition, event.term));
//!                 Ok(())
//!             }
//!             Err(e) => Err(format!("{}: {e}", event.partition)),
//!         }
//!     }
//! }
//!
//! register_hook!(AssignLeader);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2`:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! # Configuration
//!
//! The operator's `config` table for the plugin reaches [`Hook::init`] as
//! JSON, deserialised with serde into [`Hook::Config`]. Hooks without
//! configuration use [`NoConfig`].
//!
//! # Ticks
//!
//! When the operator sets `tick_ms` on the plugin's entry, the host calls
//! [`Hook::on_tick`] that often (the default does nothing): a policy can act
//! on time as well as on events, e.g. retry a move that did not happen.
//!
//! # Capabilities
//!
//! The host only allows the calls the operator granted to the plugin
//! (`grants = [...]` in the broker config): `assignments` for
//! [`assignments::set_leader`], `leadership` for [`leadership::transfer`] and
//! `notify` for [`notify::emit`]. An ungranted call returns
//! [`CapError::NotGranted`]. Logging and the read-only [`cluster`] view are
//! always available. Capability calls validate and queue: they never wait on
//! the network, and their effect is applied asynchronously, in order.
//!
//! # Failures
//!
//! An `Err` returned from [`Hook::init`], [`Hook::on_events`] or
//! [`Hook::on_tick`] is logged and counted by the host, and the plugin's
//! `on_error` policy applies. A panic traps the instance: the host discards
//! it and the next call gets a fresh instance (with [`Hook::init`] called
//! again), so state kept in the hook is best-effort.

mod convert;
mod failures;
mod hook;
mod host;
mod types;
mod wit_version;
use wit_version::wit_package_version;

pub use failures::BatchFailures;
pub use hook::Hook;
pub use host::{assignments, cluster, leadership, log, notify};
pub use types::{
    Assignment, CapError, LeaderCount, LeadershipEvent, Level, NoConfig, NodeId, NodeInfo,
    PartitionId, Quota, QuotaWindow, Transition, WriteOutcome,
};

#[doc(hidden)]
pub use hook::__private;

/// The generated bindings. Private: the SDK's own types are the public API.
#[allow(unsafe_code, missing_docs, clippy::all)]
mod wit {
    wit_bindgen::generate!({
        path: "../wit/since_v0.2.0",
        world: "leadership-hook",
        pub_export_macro: true,
        export_macro_name: "__export_leaderhook",
    });
}

use wit::leaderhook::plugin as bindings;

/// The version of this SDK, also stamped into every plugin binary as the
/// custom section `leaderhook:sdk-version` (`leaderhook plugin check`
/// prints it).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The contract line this SDK builds plugins against: the version the WIT
/// package in `wit/since_v0.2.0` declares, read from it at compile time
/// (the host's `tests/contract_versions.rs` checks it agrees with the
/// host's lines and the directory's name).
pub const CONTRACT_VERSION: &str =
    wit_package_version(include_str!("../../wit/since_v0.2.0/leaderhook.wit"));

#[cfg(target_arch = "wasm32")]
const fn sdk_version_bytes<const N: usize>() -> [u8; N] {
    let bytes = SDK_VERSION.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// The SDK version as a custom section of the plugin's core module.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
#[unsafe(link_section = "leaderhook:sdk-version")]
#[used]
static SDK_VERSION_SECTION: [u8; SDK_VERSION.len()] = sdk_version_bytes();

/// Keeps the version section linked into every plugin.
#[inline(never)]
fn link_sdk_version_section() {
    #[cfg(target_arch = "wasm32")]
    std::hint::black_box(&SDK_VERSION_SECTION);
}
