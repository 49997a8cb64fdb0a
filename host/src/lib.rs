//! The leaderhook broker. For now: the plugins embedded in the binary and
//! the demo; the Raft-replicated partitions and the Kafka front end join
//! this crate next (see `../shared/DESIGN.md`).
//!
//! # Layout
//!
//! - [`builtin`]: plugins compiled into the binary (`builtin:<name>`).
//! - [`demo`]: a scripted election against the default plugin.

pub mod builtin;
pub mod demo;
pub mod metadata;
