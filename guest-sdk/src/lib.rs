//! Write leaderhook plugins in Rust.
//!
//! A leaderhook plugin is a WebAssembly component that the broker runs in a
//! sandbox and calls with batches of Raft leadership events. It implements the
//! `leaderhook:plugin@0.1.0` contract (`wit/leaderhook.wit`, world
//! `leadership-hook`). This crate hides the generated bindings: a plugin
//! implements the [`Hook`] trait on a plain Rust type, exports it with
//! [`register_hook!`], and calls the host through the typed helpers in
//! [`log`], [`cluster`], [`assignments`], [`leadership`] and [`notify`].
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
//! An `Err` returned from [`Hook::init`] or [`Hook::on_events`] is logged and
//! counted by the host, and the plugin's `on_error` policy applies. A panic
//! traps the instance: the host discards it and the next batch gets a fresh
//! instance (with [`Hook::init`] called again), so state kept in the hook is
//! best-effort.
//!

use std::cell::RefCell;
use std::fmt;
use std::thread::LocalKey;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The generated bindings. Private: the SDK's own types are the public API.
#[allow(unsafe_code, missing_docs, clippy::all)]
mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "leadership-hook",
        pub_export_macro: true,
        export_macro_name: "__export_leaderhook",
    });
}

use wit::leaderhook::plugin as bindings;

/// The version of this SDK, also stamped into every plugin binary as the
/// custom section `leaderhook:sdk-version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The contract version this SDK implements (the WIT package version).
pub const CONTRACT_VERSION: &str = "0.1.0";

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

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// A broker node's id.
pub type NodeId = u64;

/// One partition of a topic. Displays as `topic-partition`, like Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The topic's name.
    pub topic: String,
    /// The partition's index within the topic.
    pub partition: u32,
}

impl PartitionId {
    /// A partition id from a topic name and a partition index.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What a replica saw change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The observer's replica became the Raft leader.
    BecameLeader,
    /// The observer's replica was leader and no longer is.
    SteppedDown,
    /// The observer (a follower) learned of a new leader.
    LeaderObserved,
    /// The observer (a follower) lost its leader: an election is running.
    LeaderLost,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transition::BecameLeader => "became-leader",
            Transition::SteppedDown => "stepped-down",
            Transition::LeaderObserved => "leader-observed",
            Transition::LeaderLost => "leader-lost",
        })
    }
}

/// A change of a partition's leadership, as one replica saw it.
///
/// A partition's events reach a plugin in term order; different partitions
/// may share a batch. Events can arrive late or twice (and under a storm the
/// host may coalesce a partition's events to the newest), so a hook should be
/// idempotent and rely on term fencing rather than on seeing every event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeadershipEvent {
    /// The partition whose leadership changed.
    pub partition: PartitionId,
    /// What the observer saw change.
    pub transition: Transition,
    /// The node whose replica saw the change (the node running the plugin).
    pub observer: NodeId,
    /// The leader after the change; `None` while an election is running.
    pub leader: Option<NodeId>,
    /// The leader before the change, if the observer knew one.
    pub previous_leader: Option<NodeId>,
    /// The Raft term, which is also the Kafka leader epoch.
    pub term: u64,
    /// The partition's replicas, preferred replica first.
    pub replicas: Vec<NodeId>,
    /// Milliseconds since the Unix epoch when the observer saw the change.
    pub at_ms: u64,
}

/// A partition's stored assignment: what Kafka Metadata answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The partition.
    pub partition: PartitionId,
    /// Its replicas, preferred replica first.
    pub replicas: Vec<NodeId>,
    /// The stored leader, if any.
    pub leader: Option<NodeId>,
    /// The epoch (Raft term) the leader was written at.
    pub epoch: u64,
}

/// A broker node as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// Whether this node currently considers it alive.
    pub alive: bool,
    /// The node's rack, if configured.
    pub rack: Option<String>,
}

/// How many partitions a node leads, per the stored assignments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderCount {
    /// The node.
    pub node: NodeId,
    /// The number of partitions whose stored leader is this node.
    pub leaders: u32,
}

/// Why the host refused a capability call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapError {
    /// The operator did not grant this capability to the plugin (carries the
    /// capability's name, for example `"leadership"`).
    NotGranted(String),
    /// The partition does not exist.
    UnknownPartition,
    /// The named node is not a replica of the partition.
    NotAReplica(NodeId),
    /// The epoch is lower than the stored one (carries the stored epoch).
    StaleEpoch(u64),
    /// The epoch is higher than any term the host has seen (carries that term).
    FutureEpoch(u64),
    /// The sink is not configured on this node (carries the sink's name).
    UnknownSink(String),
    /// The call was valid but could not be queued (for example a full queue).
    Unavailable(String),
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::NotGranted(cap) => write!(f, "not granted: {cap}"),
            CapError::UnknownPartition => f.write_str("unknown partition"),
            CapError::NotAReplica(node) => {
                write!(f, "node {node} is not a replica of the partition")
            }
            CapError::StaleEpoch(stored) => write!(f, "stale epoch (stored {stored})"),
            CapError::FutureEpoch(known) => {
                write!(f, "future epoch (highest known term {known})")
            }
            CapError::UnknownSink(sink) => write!(f, "unknown sink: {sink}"),
            CapError::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

impl std::error::Error for CapError {}

/// What a successful [`assignments::set_leader`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// The write was accepted and queued.
    Queued,
    /// The assignment already names this leader at this epoch: nothing to do.
    Unchanged,
}

/// A log level for [`log::log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Very verbose diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something failed.
    Error,
}

/// The configuration of a hook that takes none. Any config table is accepted
/// and ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NoConfig {}

// ---------------------------------------------------------------------------
// The hook
// ---------------------------------------------------------------------------

/// A leadership hook: implement it and export it with [`register_hook!`].
///
/// The host keeps one long-lived instance per plugin per node, so a hook may
/// keep state across batches. If the instance traps (a panic, a time or
/// memory limit) it is discarded and the next batch gets a fresh one,
/// starting with [`Hook::init`].
pub trait Hook: Sized + 'static {
    /// The plugin's configuration, deserialised from the operator's `config`
    /// table (passed as JSON; `{}` when there is none). Use [`NoConfig`] when
    /// the hook takes none.
    type Config: DeserializeOwned;

    /// Builds the hook. Called once per instance before any event. An `Err`
    /// is reported by the host as the plugin's init failure.
    fn init(config: Self::Config) -> Result<Self, String>;

    /// Handles one event. The default does nothing.
    fn on_event(&mut self, event: &LeadershipEvent) -> Result<(), String> {
        let _ = event;
        Ok(())
    }

    /// Handles a batch of events; a partition's events are in term order.
    ///
    /// The default calls [`Hook::on_event`] for each event and stops at the
    /// first error. Override it to see the whole batch at once (for example
    /// to coalesce per partition or to keep going past failures).
    fn on_events(&mut self, events: &[LeadershipEvent]) -> Result<(), String> {
        events.iter().try_for_each(|event| self.on_event(event))
    }
}

/// Exports a [`Hook`] implementation as the plugin's component.
///
/// Use it once, in the plugin's `cdylib` crate:
/// `leaderhook_sdk::register_hook!(MyHook);` (the crate documentation has a
/// complete plugin, compiled as a doc test).
///
/// The instance lives in a thread-local slot: `init` replaces it (an `Err`
/// from [`Hook::init`] or an invalid config leaves it empty), and
/// `on-events` before a successful `init` returns
/// `Err("on-events called before init")`.
#[macro_export]
macro_rules! register_hook {
    ($hook:ty) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        const _: () = {
            ::std::thread_local! {
                static __LEADERHOOK_INSTANCE: ::core::cell::RefCell<::core::option::Option<$hook>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct __LeaderhookComponent;

            impl $crate::__private::Guest for __LeaderhookComponent {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$hook>(&__LEADERHOOK_INSTANCE, config)
                }

                fn on_events(
                    events: ::std::vec::Vec<$crate::__private::LeadershipEvent>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::on_events::<$hook>(&__LEADERHOOK_INSTANCE, events)
                }
            }

            $crate::__private::__export_leaderhook!(
                __LeaderhookComponent with_types_in $crate::__private
            );
        };
    };
}

/// Support for [`register_hook!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use super::wit::{
        __export_leaderhook, __export_world_leadership_hook_cabi, __post_return_init,
        __post_return_on_events, _export_init_cabi, _export_on_events_cabi, Guest, LeadershipEvent,
    };

    use super::*;

    /// The slot a registered hook's instance lives in.
    pub type Slot<H> = LocalKey<RefCell<Option<H>>>;

    /// `init`: deserialises the config and replaces the instance.
    pub fn init<H: Hook>(slot: &'static Slot<H>, config: String) -> Result<(), String> {
        link_sdk_version_section();
        // Drop any previous instance before building the new one.
        slot.with(|s| s.borrow_mut().take());
        let hook = parse_config::<H::Config>(&config).and_then(H::init)?;
        slot.with(|s| *s.borrow_mut() = Some(hook));
        Ok(())
    }

    /// `on-events`: converts the batch and hands it to the instance.
    pub fn on_events<H: Hook>(
        slot: &'static Slot<H>,
        events: Vec<LeadershipEvent>,
    ) -> Result<(), String> {
        let events: Vec<super::LeadershipEvent> = events.into_iter().map(event_from_wit).collect();
        slot.with(|s| match s.borrow_mut().as_mut() {
            Some(hook) => hook.on_events(&events),
            None => Err("on-events called before init".to_owned()),
        })
    }
}

fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C, String> {
    let config = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))
}

// ---------------------------------------------------------------------------
// Conversions between the generated types and the SDK's
// ---------------------------------------------------------------------------

fn partition_from_wit(p: bindings::types::PartitionId) -> PartitionId {
    PartitionId {
        topic: p.topic,
        partition: p.partition,
    }
}

fn partition_to_wit(p: &PartitionId) -> bindings::types::PartitionId {
    bindings::types::PartitionId {
        topic: p.topic.clone(),
        partition: p.partition,
    }
}

fn event_from_wit(e: bindings::types::LeadershipEvent) -> LeadershipEvent {
    use bindings::types::Transition as T;
    LeadershipEvent {
        partition: partition_from_wit(e.partition),
        transition: match e.transition {
            T::BecameLeader => Transition::BecameLeader,
            T::SteppedDown => Transition::SteppedDown,
            T::LeaderObserved => Transition::LeaderObserved,
            T::LeaderLost => Transition::LeaderLost,
        },
        observer: e.observer,
        leader: e.leader,
        previous_leader: e.previous_leader,
        term: e.term,
        replicas: e.replicas,
        at_ms: e.at_ms,
    }
}

fn assignment_from_wit(a: bindings::types::PartitionAssignment) -> Assignment {
    Assignment {
        partition: partition_from_wit(a.partition),
        replicas: a.replicas,
        leader: a.leader,
        epoch: a.epoch,
    }
}

fn cap_error_from_wit(e: bindings::types::CapError) -> CapError {
    use bindings::types::CapError as E;
    match e {
        E::NotGranted(cap) => CapError::NotGranted(cap),
        E::UnknownPartition => CapError::UnknownPartition,
        E::NotAReplica(node) => CapError::NotAReplica(node),
        E::StaleEpoch(stored) => CapError::StaleEpoch(stored),
        E::FutureEpoch(known) => CapError::FutureEpoch(known),
        E::UnknownSink(sink) => CapError::UnknownSink(sink),
        E::Unavailable(why) => CapError::Unavailable(why),
    }
}

// ---------------------------------------------------------------------------
// Imports
// ---------------------------------------------------------------------------

/// Plugin logging, routed to the host's log tagged with the plugin name.
pub mod log {
    use super::{Level, bindings};

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: impl AsRef<str>) {
        use bindings::log::Level as L;
        let level = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        bindings::log::log(level, message.as_ref());
    }

    /// Logs `message` at [`Level::Trace`].
    pub fn trace(message: impl AsRef<str>) {
        log(Level::Trace, message);
    }

    /// Logs `message` at [`Level::Debug`].
    pub fn debug(message: impl AsRef<str>) {
        log(Level::Debug, message);
    }

    /// Logs `message` at [`Level::Info`].
    pub fn info(message: impl AsRef<str>) {
        log(Level::Info, message);
    }

    /// Logs `message` at [`Level::Warn`].
    pub fn warn(message: impl AsRef<str>) {
        log(Level::Warn, message);
    }

    /// Logs `message` at [`Level::Error`].
    pub fn error(message: impl AsRef<str>) {
        log(Level::Error, message);
    }
}

/// A read-only view of the cluster as this node knows it. Always available.
pub mod cluster {
    use super::{
        Assignment, LeaderCount, NodeId, NodeInfo, PartitionId, assignment_from_wit, bindings,
        partition_to_wit,
    };

    /// The node this plugin runs on.
    pub fn local_node() -> NodeId {
        bindings::cluster::local_node()
    }

    /// Every node of the cluster.
    pub fn nodes() -> Vec<NodeInfo> {
        bindings::cluster::nodes()
            .into_iter()
            .map(|n| NodeInfo {
                id: n.id,
                alive: n.alive,
                rack: n.rack,
            })
            .collect()
    }

    /// One partition's stored assignment; `None` if the partition does not
    /// exist.
    pub fn assignment(partition: &PartitionId) -> Option<Assignment> {
        bindings::cluster::assignment(&partition_to_wit(partition)).map(assignment_from_wit)
    }

    /// Every partition's stored assignment.
    pub fn assignments() -> Vec<Assignment> {
        bindings::cluster::assignments()
            .into_iter()
            .map(assignment_from_wit)
            .collect()
    }

    /// How many partitions each node leads, per the stored assignments.
    pub fn leader_counts() -> Vec<LeaderCount> {
        bindings::cluster::leader_counts()
            .into_iter()
            .map(|c| LeaderCount {
                node: c.node,
                leaders: c.leaders,
            })
            .collect()
    }
}

/// Writes to the replicated partition assignments (grant: `assignments`).
pub mod assignments {
    use super::{
        CapError, NodeId, PartitionId, WriteOutcome, bindings, cap_error_from_wit, partition_to_wit,
    };

    /// Names `leader` as the partition's leader at `epoch` (a Raft term).
    ///
    /// Term-fenced by the host: an epoch lower than the stored one is refused
    /// with [`CapError::StaleEpoch`]; the same epoch and leader is a no-op
    /// ([`WriteOutcome::Unchanged`]); a leader that is not a replica
    /// ([`CapError::NotAReplica`]) or an epoch above any term the host has
    /// seen ([`CapError::FutureEpoch`]) is refused. Validates and queues: the
    /// write is applied asynchronously, in order.
    pub fn set_leader(
        partition: &PartitionId,
        leader: NodeId,
        epoch: u64,
    ) -> Result<WriteOutcome, CapError> {
        bindings::assignments::set_leader(&partition_to_wit(partition), leader, epoch)
            .map(|outcome| match outcome {
                bindings::types::WriteOutcome::Queued => WriteOutcome::Queued,
                bindings::types::WriteOutcome::Unchanged => WriteOutcome::Unchanged,
            })
            .map_err(cap_error_from_wit)
    }
}

/// Requests to Raft (grant: `leadership`).
pub mod leadership {
    use super::{CapError, NodeId, PartitionId, bindings, cap_error_from_wit, partition_to_wit};

    /// Asks the partition's Raft group to move leadership to `to`.
    /// Validates and queues: the transfer happens asynchronously.
    pub fn transfer(partition: &PartitionId, to: NodeId) -> Result<(), CapError> {
        bindings::leadership::transfer(&partition_to_wit(partition), to).map_err(cap_error_from_wit)
    }
}

/// Notifications to sinks the operator names in the broker config
/// (grant: `notify`).
pub mod notify {
    use super::{CapError, bindings, cap_error_from_wit};

    /// Sends `payload` to the sink named `sink`. An unconfigured sink is
    /// refused with [`CapError::UnknownSink`].
    pub fn emit(sink: &str, payload: &str) -> Result<(), CapError> {
        bindings::notify::emit(sink, payload).map_err(cap_error_from_wit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_displays_like_kafka() {
        assert_eq!(PartitionId::new("orders", 3).to_string(), "orders-3");
    }

    #[test]
    fn cap_error_messages() {
        assert_eq!(
            CapError::NotGranted("leadership".into()).to_string(),
            "not granted: leadership"
        );
        assert_eq!(
            CapError::StaleEpoch(7).to_string(),
            "stale epoch (stored 7)"
        );
        let _: &dyn std::error::Error = &CapError::UnknownPartition;
    }

    #[derive(Debug, Deserialize)]
    struct Conf {
        n: u32,
    }

    #[test]
    fn config_parsing() {
        assert_eq!(parse_config::<NoConfig>("{}"), Ok(NoConfig {}));
        assert_eq!(parse_config::<NoConfig>(""), Ok(NoConfig {}));
        assert_eq!(parse_config::<NoConfig>("{\"x\": 1}"), Ok(NoConfig {}));
        assert_eq!(parse_config::<Conf>("{\"n\": 4}").unwrap().n, 4);
        let err = parse_config::<Conf>("{}").unwrap_err();
        assert!(err.starts_with("invalid config: "), "{err}");
    }

    struct Counter {
        seen: Vec<u64>,
        fail_on: Option<u64>,
    }

    #[derive(Deserialize)]
    struct CounterConfig {
        fail_on: Option<u64>,
    }

    impl Hook for Counter {
        type Config = CounterConfig;
        fn init(config: CounterConfig) -> Result<Self, String> {
            if config.fail_on == Some(0) {
                return Err("refused".into());
            }
            Ok(Counter {
                seen: Vec::new(),
                fail_on: config.fail_on,
            })
        }
        fn on_event(&mut self, event: &LeadershipEvent) -> Result<(), String> {
            if Some(event.term) == self.fail_on {
                return Err(format!("term {}", event.term));
            }
            self.seen.push(event.term);
            Ok(())
        }
    }

    thread_local! {
        static SLOT: RefCell<Option<Counter>> = const { RefCell::new(None) };
    }

    fn wit_event(term: u64) -> wit::LeadershipEvent {
        bindings::types::LeadershipEvent {
            partition: bindings::types::PartitionId {
                topic: "t".into(),
                partition: 1,
            },
            transition: bindings::types::Transition::BecameLeader,
            observer: 2,
            leader: Some(2),
            previous_leader: None,
            term,
            replicas: vec![2, 3],
            at_ms: 9,
        }
    }

    #[test]
    fn dispatch() {
        use __private::{init, on_events};
        assert_eq!(
            on_events(&SLOT, vec![wit_event(1)]),
            Err("on-events called before init".into())
        );
        assert_eq!(init(&SLOT, "{\"fail_on\": 3}".into()), Ok(()));
        assert_eq!(on_events(&SLOT, vec![wit_event(1), wit_event(2)]), Ok(()));
        assert_eq!(
            on_events(&SLOT, vec![wit_event(3), wit_event(4)]),
            Err("term 3".into())
        );
        SLOT.with(|s| assert_eq!(s.borrow().as_ref().unwrap().seen, vec![1, 2]));
        // init replaces the instance; a failed init leaves none.
        assert_eq!(init(&SLOT, "{}".into()), Ok(()));
        SLOT.with(|s| assert!(s.borrow().as_ref().unwrap().seen.is_empty()));
        assert_eq!(
            init(&SLOT, "{\"fail_on\": 0}".into()),
            Err("refused".into())
        );
        assert!(
            init(&SLOT, "[".into())
                .unwrap_err()
                .starts_with("invalid config")
        );
        assert!(on_events(&SLOT, vec![]).is_err());
    }

    #[test]
    fn event_conversion() {
        let e = event_from_wit(wit_event(5));
        assert_eq!(e.partition, PartitionId::new("t", 1));
        assert_eq!(e.transition, Transition::BecameLeader);
        assert_eq!((e.observer, e.leader, e.term, e.at_ms), (2, Some(2), 5, 9));
        assert_eq!(e.replicas, vec![2, 3]);
    }
}
