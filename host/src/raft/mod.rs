//! Multi-Raft: one group per partition plus the metadata group, durable
//! logs on raft-engine, and the TCP transport between nodes.
//!
//! - [`storage`]: every group's log, hard state and conf state in one
//!   raft-engine instance per node.
//! - [`transport`]: messages of all groups batched per peer connection.
//! - [`node`]: the Raft loop: ticks, Ready handling, apply, leadership events.

pub mod node;
pub mod storage;
pub mod transport;
