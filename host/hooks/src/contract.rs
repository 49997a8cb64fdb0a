//! The host side of the WIT contract (`wit/leaderhook.wit`): generated
//! bindings and the contract version this host implements.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "leadership-hook",
    // Exports are called as futures, so a call blocked in a WASI host
    // future can be abandoned at its deadline (see `plugin.rs`).
    exports: { default: async },
    additional_derives: [PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize],
});

pub use leaderhook::plugin::log::Level;
pub use leaderhook::plugin::types::{
    CapError, LeaderCount, NodeId, NodeInfo, PartitionAssignment, PartitionId, Transition,
    WriteOutcome,
};

/// The WIT package this host implements.
pub const CONTRACT_PACKAGE: &str = "leaderhook:plugin";
/// The contract version this host implements; plugins built against another
/// minor line are refused at load time.
pub const CONTRACT_VERSION: &str = "0.1.0";

impl std::fmt::Display for PartitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl PartitionId {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transition::BecameLeader => "became-leader",
            Transition::SteppedDown => "stepped-down",
            Transition::LeaderObserved => "leader-observed",
            Transition::LeaderLost => "leader-lost",
        })
    }
}

impl CapError {
    /// A sentence for logs and error messages (the generated `Display` is
    /// the debug form).
    pub fn describe(&self) -> String {
        match self {
            CapError::NotGranted(cap) => format!("capability `{cap}` not granted"),
            CapError::UnknownPartition => "unknown partition".into(),
            CapError::NotAReplica(node) => format!("node {node} is not a replica"),
            CapError::StaleEpoch(stored) => format!("stale epoch (stored epoch is {stored})"),
            CapError::FutureEpoch(seen) => {
                format!("epoch from the future (highest term seen is {seen})")
            }
            CapError::UnknownSink(sink) => format!("unknown sink `{sink}`"),
            CapError::Unavailable(why) => format!("unavailable: {why}"),
        }
    }
}
