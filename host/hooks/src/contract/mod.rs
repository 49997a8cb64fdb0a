//! The host side of the WIT contract: one module of generated bindings per
//! contract line (`wit/since_v<version>/`), each converting to one internal
//! model, the newest line's types ([`latest`]). The rest of the runtime only
//! sees that model and the [`HookPre`] / [`Hook`] enums below.
//!
//! Adding a line: freeze its WIT in `wit/since_vX.Y.Z/`, add a module
//! `since_vX_Y_Z` with its own `bindgen!`, make it [`latest`] and turn the
//! previous latest into an adapter (conversions to and from the new latest,
//! as [`since_v0_1_0`] does), then list it in [`LINES`] and [`Line`].

pub mod since_v0_1_0;
pub mod since_v0_2_0;

/// The newest line: its generated types are the runtime's internal model.
pub use since_v0_2_0 as latest;

use crate::state::PluginState;
use wasmtime::AsContextMut;
use wasmtime::component::InstancePre;

pub use latest::leaderhook::plugin::log::Level;
pub use latest::leaderhook::plugin::types::{
    CapError, LeaderCount, LeadershipEvent, NodeId, NodeInfo, PartitionAssignment, PartitionId,
    Quota, QuotaWindow, Transition, WriteOutcome,
};

/// The WIT package every line belongs to.
pub const CONTRACT_PACKAGE: &str = "leaderhook:plugin";
/// The newest contract line this host implements (what the SDK targets).
pub const CONTRACT_VERSION: &str = latest::VERSION;
/// Every line this host loads, oldest first.
pub const LINES: [&str; 2] = [since_v0_1_0::VERSION, since_v0_2_0::VERSION];

/// A contract line a plugin was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Line {
    V0_1,
    V0_2,
}

impl Line {
    pub const ALL: [Line; 2] = [Line::V0_1, Line::V0_2];

    /// The version the line's WIT package declares.
    pub fn version(self) -> &'static str {
        match self {
            Line::V0_1 => since_v0_1_0::VERSION,
            Line::V0_2 => since_v0_2_0::VERSION,
        }
    }

    /// The line a plugin's version belongs to: same major, and for 0.x the
    /// same minor (the component model's semver rule). `None` for a line
    /// this host does not implement.
    pub fn of_version(version: &str) -> Option<Line> {
        Line::ALL
            .into_iter()
            .find(|line| same_minor_line(version, line.version()))
    }

    /// Whether the line's world exports `on-tick`.
    pub fn has_tick(self) -> bool {
        self >= Line::V0_2
    }
}

#[path = "../../../../guest-sdk/src/wit_version.rs"]
mod wit_version;
pub use wit_version::wit_package_version;

/// Semver compatibility as the component model applies it: same major, and
/// for 0.x the same minor.
pub(crate) fn same_minor_line(found: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parts(found), parts(ours)) {
        (Some((fmaj, fmin)), Some((omaj, omin))) => fmaj == omaj && (omaj != 0 || fmin == omin),
        _ => false,
    }
}

/// A plugin linked against its line's imports, ready to instantiate.
#[derive(Clone)]
pub enum HookPre {
    V0_1(since_v0_1_0::LeadershipHookPre<PluginState>),
    V0_2(since_v0_2_0::LeadershipHookPre<PluginState>),
}

impl HookPre {
    /// Checks the component's exports against `line`'s world.
    pub(crate) fn new(line: Line, pre: InstancePre<PluginState>) -> wasmtime::Result<Self> {
        Ok(match line {
            Line::V0_1 => HookPre::V0_1(since_v0_1_0::LeadershipHookPre::new(pre)?),
            Line::V0_2 => HookPre::V0_2(since_v0_2_0::LeadershipHookPre::new(pre)?),
        })
    }

    pub async fn instantiate_async(
        &self,
        store: impl AsContextMut<Data = PluginState>,
    ) -> wasmtime::Result<Hook> {
        Ok(match self {
            HookPre::V0_1(pre) => Hook::V0_1(pre.instantiate_async(store).await?),
            HookPre::V0_2(pre) => Hook::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// One call into a plugin's exports.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    Events(&'a [LeadershipEvent]),
    /// `on-tick` with the host's clock, in ms since the Unix epoch.
    Tick(u64),
}

impl Call<'_> {
    /// The export's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Events(_) => "on-events",
            Call::Tick(_) => "on-tick",
        }
    }
}

/// A live instance's exports, whatever its line.
pub enum Hook {
    V0_1(since_v0_1_0::LeadershipHook),
    V0_2(since_v0_2_0::LeadershipHook),
}

impl Hook {
    pub async fn call_init(
        &self,
        store: impl AsContextMut<Data = PluginState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Hook::V0_1(hook) => hook.call_init(store, config).await,
            Hook::V0_2(hook) => hook.call_init(store, config).await,
        }
    }

    /// `on-events` or `on-tick`. A line without ticks is never configured
    /// with them (refused at load); were it asked, the tick does nothing.
    pub async fn call(
        &self,
        store: impl AsContextMut<Data = PluginState>,
        call: Call<'_>,
    ) -> wasmtime::Result<Result<(), String>> {
        match (self, call) {
            (Hook::V0_2(hook), Call::Events(events)) => hook.call_on_events(store, events).await,
            (Hook::V0_2(hook), Call::Tick(now_ms)) => hook.call_on_tick(store, now_ms).await,
            (Hook::V0_1(hook), Call::Events(events)) => {
                let events: Vec<_> = events.iter().map(Into::into).collect();
                hook.call_on_events(store, &events).await
            }
            (Hook::V0_1(_), Call::Tick(_)) => Ok(Ok(())),
        }
    }
}

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

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let window = match self.window {
            QuotaWindow::Batch => "batch",
            QuotaWindow::Second => "second",
        };
        write!(f, "limited to {} calls per {window}", self.limit)
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
            CapError::NotElected(elected) => {
                format!(
                    "the node named is not the leader Raft elected in that term (node {elected} is)"
                )
            }
            CapError::OverQuota(quota) => format!("over quota: {quota}"),
            CapError::Cooldown(ms) => {
                format!("leadership moved recently: the next transfer is accepted in {ms} ms")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_line_compatibility() {
        assert!(same_minor_line("0.1.0", "0.1.0"));
        assert!(same_minor_line("0.1.3", "0.1.0"));
        assert!(!same_minor_line("0.2.0", "0.1.0"));
        assert!(!same_minor_line("1.1.0", "0.1.0"));
        assert!(!same_minor_line("", "0.1.0"));
        assert!(same_minor_line("1.4.0", "1.0.0"));
    }

    #[test]
    fn versions_find_their_line() {
        assert_eq!(Line::of_version("0.1.0"), Some(Line::V0_1));
        assert_eq!(Line::of_version("0.1.7"), Some(Line::V0_1));
        assert_eq!(Line::of_version("0.2.0"), Some(Line::V0_2));
        assert_eq!(Line::of_version("0.3.0"), None);
        assert_eq!(Line::of_version("1.0.0"), None);
        assert_eq!(
            LINES,
            Line::ALL.map(Line::version),
            "LINES and Line agree, oldest first"
        );
        assert_eq!(CONTRACT_VERSION, Line::V0_2.version());
        assert!(!Line::V0_1.has_tick() && Line::V0_2.has_tick());
    }

    #[test]
    fn package_versions_are_read_from_the_wit() {
        const WIT: &str = "/// doc\npackage leaderhook:plugin@7.8.9;\n\ninterface types {}";
        const V: &str = wit_package_version(WIT);
        assert_eq!(V, "7.8.9");
        assert_eq!(since_v0_1_0::VERSION, "0.1.0");
        assert_eq!(since_v0_2_0::VERSION, "0.2.0");
    }
}
