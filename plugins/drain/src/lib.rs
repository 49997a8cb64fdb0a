//! Moves partition leadership off the nodes named in the config, for example
//! before taking them down for maintenance.
//!
//! Only one node acts: the alive, non-drained node with the lowest id (per
//! `cluster::nodes()` on that node). Every other node ignores its batches.
//!
//! On each batch, on the acting node, for every partition of
//! `cluster::assignments()` in `(topic, partition)` order:
//!
//! 1. The current leader and epoch are the stored ones, unless the batch has
//!    an event for the partition with `term >= epoch`: then the last such
//!    event's `leader` and `term` (so a drained node that just became leader
//!    is moved at once, and a `leader-lost` means "no leader").
//! 2. Nothing happens unless that leader is a drained node.
//! 3. At most one request per partition and epoch: after a successful request
//!    at epoch E, the partition is left alone until its epoch exceeds E.
//! 4. The target is the first replica, in the stored replica order, that is
//!    alive and not drained. With none, a warning is logged (once per
//!    partition and epoch) and the partition stays where it is.
//! 5. `leadership.transfer(partition, target)`.
//!
//! Failed requests are not remembered (they are retried on the next batch);
//! every failure of the batch is reported in one `Err`.
//!
//! Grants: `leadership`. Config: `nodes` (list of node ids, default empty:
//! the plugin does nothing).

use std::collections::{BTreeMap, BTreeSet};

use leaderhook_sdk::{
    BatchFailures, Hook, LeadershipEvent, NodeId, PartitionId, cluster, leadership, log,
    register_hook,
};
use serde::Deserialize;

/// The plugin's config (the operator's `[plugins.config]` table).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The nodes to move leadership off.
    pub nodes: Vec<NodeId>,
}

/// The plugin.
pub struct Drain {
    drained: BTreeSet<NodeId>,
    /// Per partition, the highest epoch a transfer was requested at.
    requested: BTreeMap<PartitionId, u64>,
    /// Per partition, the epoch a "no target" warning was logged at.
    warned: BTreeMap<PartitionId, u64>,
}

/// A partition's current leadership as this batch sees it.
struct View {
    leader: Option<NodeId>,
    epoch: u64,
    replicas: Vec<NodeId>,
}

impl Hook for Drain {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        let drained: BTreeSet<NodeId> = config.nodes.into_iter().collect();
        if drained.is_empty() {
            log::warn("drain: no nodes configured, nothing to do");
        } else {
            log::info(format!("drain: moving leadership off nodes {drained:?}"));
        }
        Ok(Self {
            drained,
            requested: BTreeMap::new(),
            warned: BTreeMap::new(),
        })
    }

    fn on_events(&mut self, events: &[LeadershipEvent]) -> Result<(), String> {
        if self.drained.is_empty() {
            return Ok(());
        }
        let alive: BTreeSet<NodeId> = cluster::nodes()
            .into_iter()
            .filter(|n| n.alive)
            .map(|n| n.id)
            .collect();
        // One drainer per cluster: the lowest alive, non-drained node.
        let acting = alive.iter().find(|n| !self.drained.contains(n));
        if acting != Some(&cluster::local_node()) {
            return Ok(());
        }

        let mut views: BTreeMap<PartitionId, View> = cluster::assignments()
            .into_iter()
            .map(|a| {
                let view = View {
                    leader: a.leader,
                    epoch: a.epoch,
                    replicas: a.replicas,
                };
                (a.partition, view)
            })
            .collect();
        for event in events {
            if let Some(view) = views.get_mut(&event.partition)
                && event.term >= view.epoch
            {
                view.leader = event.leader;
                view.epoch = event.term;
            }
        }

        let mut failures = BatchFailures::new("transfer requests");
        for (partition, view) in &views {
            let Some(leader) = view.leader.filter(|l| self.drained.contains(l)) else {
                continue;
            };
            if self
                .requested
                .get(partition)
                .is_some_and(|&e| e >= view.epoch)
            {
                continue;
            }
            let target = view
                .replicas
                .iter()
                .copied()
                .find(|r| alive.contains(r) && !self.drained.contains(r));
            let Some(target) = target else {
                if self.warned.get(partition) != Some(&view.epoch) {
                    log::warn(format!(
                        "{partition}: leader {leader} is drained but no replica of {:?} \
                         is alive and not drained; leadership stays",
                        view.replicas
                    ));
                    self.warned.insert(partition.clone(), view.epoch);
                }
                continue;
            };
            match leadership::transfer(partition, target) {
                Ok(()) => {
                    log::info(format!(
                        "{partition}: leader {leader} is drained; transfer to {target} \
                         requested at epoch {}",
                        view.epoch
                    ));
                    self.requested.insert(partition.clone(), view.epoch);
                }
                Err(e) => failures.record(Err(format!(
                    "{partition}: transfer from drained {leader} to {target} at epoch {}: {e}",
                    view.epoch
                ))),
            }
        }
        failures.into_result()
    }
}

register_hook!(Drain);
