//! Kafka's automatic preferred-leader rebalance as a leaderhook plugin.
//!
//! A partition's preferred replica is the first of its replica list. When a
//! batch shows a partition led by some other node while the preferred replica
//! is alive, the plugin asks Raft to transfer leadership to the preferred
//! replica (`leadership.transfer`).
//!
//! Rules, for each batch (partitions in `(topic, partition)` order):
//!
//! 1. Only events observed by this node (`observer == cluster::local_node()`)
//!    count; each partition is handled once, with its newest such event
//!    (highest term; the last one on a tie).
//! 2. The stored assignment (`cluster::assignment`) gives the replicas; a
//!    partition without one is skipped. The current leader and term are the
//!    event's `leader` and `term` if `event.term >= assignment.epoch`,
//!    otherwise the assignment's `leader` and `epoch`.
//! 3. Nothing happens unless there is a current leader (never during an
//!    election), it is not the preferred replica, and the preferred replica is
//!    alive per `cluster::nodes()`.
//! 4. Only the current leader's node or the preferred replica's node requests
//!    the transfer, so at most two nodes ask for the same move.
//! 5. At most one request per partition and term: after a successful request
//!    at term T, the partition is left alone until its term exceeds T.
//!
//! Failed requests are not remembered (they are retried on the partition's
//! next event); every failure of the batch is reported in one `Err`.
//!
//! **Ticks: retrying a failback that did not happen.** A transfer request
//! can come to nothing: Raft drops a transfer to a replica still catching up
//! after a restart, and no new event follows. With `tick_ms` set on the
//! plugin's entry, every tick re-checks the stored assignments: for each
//! partition whose stored leader is this node and not the preferred replica,
//! while the preferred replica is alive, it asks again, whatever it asked
//! before (at most `max_retries_per_tick` partitions per tick, in
//! `(topic, partition)` order). Only the leader's node retries, so a tick
//! asks at most once per partition cluster-wide. A retry refused because
//! the partition's leadership moved recently (`cooldown`) is left to a later
//! tick, not reported as a failure.
//!
//! Grants: `leadership`. Config: `enabled` (bool, default `true`),
//! `max_retries_per_tick` (default 64).

use std::collections::{BTreeMap, BTreeSet};

use leaderhook_sdk::{
    BatchFailures, CapError, Hook, LeadershipEvent, NodeId, PartitionId, cluster, leadership, log,
    register_hook,
};
use serde::Deserialize;

/// The plugin's config (the operator's `[plugins.config]` table).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `false` turns the plugin into a no-op without unloading it.
    pub enabled: bool,
    /// The most transfers one tick asks for again.
    pub max_retries_per_tick: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            enabled: true,
            max_retries_per_tick: 64,
        }
    }
}

/// The plugin.
pub struct PreferredLeader {
    enabled: bool,
    max_retries_per_tick: usize,
    /// Per partition, the highest term a transfer was requested at.
    requested: BTreeMap<PartitionId, u64>,
}

impl PreferredLeader {
    /// Decides about one partition given its newest local event. `Ok(true)`
    /// if a transfer was requested.
    fn consider(
        &mut self,
        local: NodeId,
        alive: &BTreeSet<NodeId>,
        event: &LeadershipEvent,
    ) -> Result<bool, String> {
        let partition = &event.partition;
        let Some(assignment) = cluster::assignment(partition) else {
            log::debug(format!("{partition}: no stored assignment, skipped"));
            return Ok(false);
        };
        let (leader, term) = if event.term >= assignment.epoch {
            (event.leader, event.term)
        } else {
            (assignment.leader, assignment.epoch)
        };
        // No leader: an election is running; let it finish.
        let Some(leader) = leader else {
            return Ok(false);
        };
        let Some(&preferred) = assignment.replicas.first() else {
            return Ok(false);
        };
        if leader == preferred || !alive.contains(&preferred) {
            return Ok(false);
        }
        if local != leader && local != preferred {
            return Ok(false);
        }
        if self.requested.get(partition).is_some_and(|&t| t >= term) {
            return Ok(false);
        }
        match leadership::transfer(partition, preferred) {
            Ok(()) => {
                log::info(format!(
                    "{partition}: leader {leader} at term {term} is not the preferred replica; \
                     transfer to {preferred} requested"
                ));
                self.requested.insert(partition.clone(), term);
                Ok(true)
            }
            Err(e) => Err(format!(
                "{partition}: transfer from {leader} to preferred {preferred} at term {term}: {e}"
            )),
        }
    }
}

impl Hook for PreferredLeader {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        if !config.enabled {
            log::info("preferred-leader is disabled by its config");
        }
        Ok(Self {
            enabled: config.enabled,
            max_retries_per_tick: config.max_retries_per_tick,
            requested: BTreeMap::new(),
        })
    }

    fn on_events(&mut self, events: &[LeadershipEvent]) -> Result<(), String> {
        if !self.enabled || events.is_empty() {
            return Ok(());
        }
        let local = cluster::local_node();
        // The newest local event of each partition (ties: the later one).
        let mut newest: BTreeMap<&PartitionId, &LeadershipEvent> = BTreeMap::new();
        for event in events.iter().filter(|e| e.observer == local) {
            let slot = newest.entry(&event.partition).or_insert(event);
            if event.term >= slot.term {
                *slot = event;
            }
        }
        if newest.is_empty() {
            return Ok(());
        }
        let alive = alive_nodes();
        let mut failures = BatchFailures::new("transfer requests");
        for event in newest.into_values() {
            failures.record(self.consider(local, &alive, event).map(drop));
        }
        failures.into_result()
    }

    fn on_tick(&mut self, _now_ms: u64) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let local = cluster::local_node();
        let alive = alive_nodes();
        let mut assignments = cluster::assignments();
        assignments.sort_by(|a, b| a.partition.cmp(&b.partition));
        let mut failures = BatchFailures::new("transfer retries");
        let away = assignments.into_iter().filter_map(|a| {
            let preferred = *a.replicas.first()?;
            let away = a.leader == Some(local) && preferred != local && alive.contains(&preferred);
            away.then_some((a, preferred))
        });
        for (a, preferred) in away.take(self.max_retries_per_tick) {
            let partition = &a.partition;
            let outcome = match leadership::transfer(partition, preferred) {
                // Leadership moved recently: a later tick asks again.
                Err(CapError::Cooldown(ms)) => {
                    log::debug(format!(
                        "{partition}: failback to {preferred} in cooldown for {ms} ms"
                    ));
                    continue;
                }
                outcome => outcome.map_err(|e| {
                    format!("{partition}: retrying the transfer to preferred {preferred}: {e}")
                }),
            };
            if outcome.is_ok() {
                log::info(format!(
                    "{partition}: still led by {local} at epoch {}; transfer to preferred \
                     {preferred} requested again",
                    a.epoch
                ));
                self.requested.insert(partition.clone(), a.epoch);
            }
            failures.record(outcome);
        }
        failures.into_result()
    }
}

/// The nodes `cluster::nodes()` says are alive.
fn alive_nodes() -> BTreeSet<NodeId> {
    cluster::nodes()
        .into_iter()
        .filter(|n| n.alive)
        .map(|n| n.id)
        .collect()
}

register_hook!(PreferredLeader);
