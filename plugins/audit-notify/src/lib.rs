//! Emits every leadership event as one JSON record to an operator-named
//! notify sink.
//!
//! Each event of a batch, in batch order, becomes one `notify.emit(sink,
//! record)` call, where the record is a single-line JSON object:
//!
//! ```json
//! {"topic":"orders","partition":3,"transition":"became-leader","observer":2,
//!  "leader":2,"previous_leader":1,"term":7,"replicas":[1,2,3],"at_ms":1700000000000}
//! ```
//!
//! `leader` and `previous_leader` are `null` when absent. Every event is
//! tried even if some emits fail; the batch then returns one `Err` with
//! every failure ([`BatchFailures`]).
//!
//! Grants: `notify`. Config: `sink` (string, default `"audit"`).

use leaderhook_sdk::{BatchFailures, Hook, LeadershipEvent, NodeId, notify, register_hook};
use serde::{Deserialize, Serialize};

/// The plugin's config (the operator's `[plugins.config]` table).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The notify sink records go to.
    pub sink: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sink: "audit".to_owned(),
        }
    }
}

/// One event as a JSON record.
#[derive(Debug, Serialize)]
struct Record<'a> {
    topic: &'a str,
    partition: u32,
    transition: String,
    observer: NodeId,
    leader: Option<NodeId>,
    previous_leader: Option<NodeId>,
    term: u64,
    replicas: &'a [NodeId],
    at_ms: u64,
}

impl<'a> Record<'a> {
    fn new(event: &'a LeadershipEvent) -> Self {
        Self {
            topic: &event.partition.topic,
            partition: event.partition.partition,
            transition: event.transition.to_string(),
            observer: event.observer,
            leader: event.leader,
            previous_leader: event.previous_leader,
            term: event.term,
            replicas: &event.replicas,
            at_ms: event.at_ms,
        }
    }
}

/// The plugin.
pub struct AuditNotify {
    sink: String,
}

impl AuditNotify {
    fn emit(&self, event: &LeadershipEvent) -> Result<(), String> {
        let record = serde_json::to_string(&Record::new(event))
            .map_err(|e| format!("{} term {}: encode: {e}", event.partition, event.term))?;
        notify::emit(&self.sink, &record).map_err(|e| {
            format!(
                "{} term {}: emit to sink {:?}: {e}",
                event.partition, event.term, self.sink
            )
        })
    }
}

impl Hook for AuditNotify {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        if config.sink.is_empty() {
            return Err("config: sink must not be empty".to_owned());
        }
        Ok(Self { sink: config.sink })
    }

    fn on_events(&mut self, events: &[LeadershipEvent]) -> Result<(), String> {
        let mut failures = BatchFailures::new("events");
        failures.extend(events.iter().map(|event| self.emit(event)));
        failures.into_result()
    }
}

register_hook!(AuditNotify);
