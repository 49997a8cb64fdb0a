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
