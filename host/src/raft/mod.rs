//! Multi-Raft: one group per partition plus the metadata group, durable
//! logs on raft-engine, and the TCP transport between nodes.
//!
//! - [`storage`]: every group's log, hard state and conf state in one
//!   raft-engine instance per node.
//! - [`transport`]: messages of all groups batched per peer connection.
//! - [`handle`]: how other threads queue commands for the Raft loop.
//! - [`appends`]: a partition leader's decisions on produced batches.
//! - [`shared`]: what the loop publishes (metadata, replica status, logs,
//!   liveness).
//! - [`log_bridge`]: raft-rs's own logs (slog) into the node's log (tracing).
//! - [`node`]: the Raft loop: ticks, Ready handling, apply, leadership events.

pub mod appends;
pub mod handle;
pub mod log_bridge;
pub mod node;
pub mod shared;
pub mod storage;
pub mod transport;
