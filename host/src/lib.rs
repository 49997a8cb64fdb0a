//! The leaderhook broker: Raft-replicated partitions behind a Kafka front
//! end, whose leadership changes drive the plugin runtime
//! (`leaderhook-hooks`); plus the CLI's pieces (local clusters, the demo).
//!
//! # Layout
//!
//! - [`builtin`]: plugins compiled into the binary (`builtin:<name>`).
//! - [`demo`]: a scripted election against the default plugin.
//! - [`config`]: a node's config file; [`cluster`]: loopback clusters.
//! - [`raft`]: multi-Raft (storage, transport, the Raft loop).
//! - [`metadata`]: the replicated topics and assignments.
//! - [`caps`]: the plugins' capabilities over metadata and Raft; [`sinks`].
//! - [`kafka`]: the Kafka front end (wire protocol on `kafka_listen`);
//!   [`coordinator`]: consumer groups, coordinated by offsets-partition leaders.
//! - [`auth`]: cluster id and secret, the proofs of membership;
//!   [`log_limit`]: rate-limited logs.
//! - [`admin`]: the admin endpoint; [`metrics`]: the Prometheus endpoint;
//!   [`broker`]: one node, wired together.
//! - [`supervisor`]: local clusters of broker processes (CLI, tests, benches).
//!
//! # The life of a leadership event
//!
//! The steps of `ARCHITECTURE.md` at the repository root, as links that
//! `cargo doc` checks (CI runs it with `-D warnings`), so a renamed step
//! breaks the build. The page also follows the event through the plugin.
//!
//! 1. [`RaftLoop::on_ready`](raft::node::RaftLoop::on_ready) handles each
//!    group's `Ready`;
//! 2. [`RaftLoop::observe`](raft::node::RaftLoop::observe) sees a change,
//!    which the pure [`raft::node::transition`] names;
//! 3. [`HookRuntime::submit`](leaderhook_hooks::HookRuntime::submit) takes
//!    the event without blocking; [`RaftLoop::resync`](raft::node::RaftLoop::resync)
//!    re-submits what a dropped event left behind;
//! 4. it joins one lane per plugin, and
//! 5. the lane's worker delivers it (both inside [`leaderhook_hooks`]);
//! 6. the SDK's `register_hook!` (`guest-sdk`) dispatches it to
//! 7. the default plugin (`plugins/assign-leader`), which
//! 8. calls `assignments.set-leader`;
//! 9. the runtime's import checks grant and quota and fences with
//!    [`leaderhook_hooks::fence::check_set_leader`];
//! 10. [`caps::BrokerCaps`] admits one write per partition
//!     ([`InflightWrites::admit`](caps::inflight::InflightWrites::admit)) and
//!     proposes it;
//! 11. every node applies it in
//!     [`RaftLoop::apply_metadata`](raft::node::RaftLoop::apply_metadata);
//! 12. [`Metadata::apply`](metadata::state::Metadata::apply) fences again;
//! 13. [`kafka::metadata::handle`] answers from the assignment;
//! 14. [`kafka::produce::submit`] appends on the Raft leader.

// The docs are built for the people working on this crate, private items
// included (`cargo doc --document-private-items`, run in CI with
// `-D warnings`), so links into private items resolve and are checked.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod auth;
pub mod broker;
pub mod builtin;
pub mod caps;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod demo;
pub mod kafka;
pub mod log_limit;
pub mod metadata;
pub mod metrics;
pub mod partition_log;
pub mod raft;
pub mod sinks;
pub mod supervisor;
pub mod topic_sink;
