//! Keeps every alive node's leader count near the mean, by leadership
//! transfers, without flapping.
//!
//! Only one node balances: the alive node with the lowest id (per
//! `cluster::nodes()` on that node). Every other node ignores its batches.
//! A batch is only a trigger and a clock: its events' content is not used,
//! except `at_ms`.
//!
//! On each batch, on the acting node:
//!
//! 1. `now` = the largest `at_ms` of the batch, never below the `now` of an
//!    earlier batch. Moves older than the cooldown (`now >= at + cooldown_ms`)
//!    are forgotten.
//! 2. Counts: `cluster::leader_counts()` restricted to alive nodes (an alive
//!    node missing from the list counts 0). Moves this plugin requested that
//!    are still in flight (within the cooldown, the stored assignment still
//!    names the old leader at the same epoch, both nodes alive) are counted as
//!    done: old leader -1, new leader +1. `n` = number of alive nodes, `total`
//!    = sum of the counts, `mean = total / n`.
//! 3. Repeat while fewer than `max_transfers_per_batch` transfers were
//!    requested in this batch:
//!    - stop if `n < 2` or `max - min <= max_skew` (spread of the counts);
//!    - a node is overloaded if `count > mean + max_skew`; a node can take a
//!      partition if `count + 1 <= mean + max_skew` (exact, integer math);
//!    - sources: the overloaded nodes, most-loaded first (ties: lowest id);
//!      for the first source that has one, take the first partition in
//!      `(topic, partition)` order whose stored leader is the source, that
//!      is not in cooldown (moved by this plugin less than `cooldown_ms` ago,
//!      including earlier in this batch), and that has a target: an alive
//!      replica other than the source that can take a partition. The target is
//!      the candidate with the lowest count (ties: earliest in the replica
//!      list);
//!    - stop if there is no such move; otherwise request
//!      `leadership.transfer(partition, target)`, update the counts and
//!      remember the move (from, to, now, epoch).
//!
//! A failed transfer request stops the batch and is returned as `Err`; it is
//! not remembered, so the next batch may try again.
//!
//! **Ticks.** With `tick_ms` set on the plugin's entry, every tick runs the
//! same steps with `now` = the tick's clock, so the cluster is rebalanced
//! on time as well as on elections ("rebalance every minute"), and a move
//! whose cooldown passed without it happening is tried again.
//!
//! Grants: `leadership`. Config: `max_skew` (1), `max_transfers_per_batch`
//! (1, also per tick), `cooldown_ms` (10000).

use std::collections::BTreeMap;

use leaderhook_sdk::{
    Assignment, Hook, LeadershipEvent, NodeId, PartitionId, cluster, leadership, log, register_hook,
};
use serde::Deserialize;

/// The plugin's config (the operator's `[plugins.config]` table).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How far above the mean a node's leader count may be.
    pub max_skew: u32,
    /// The most transfers requested per batch.
    pub max_transfers_per_batch: u32,
    /// After moving a partition, leave it alone for this long (by the
    /// events' `at_ms` clock).
    pub cooldown_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_skew: 1,
            max_transfers_per_batch: 1,
            cooldown_ms: 10_000,
        }
    }
}

/// A transfer this plugin requested.
#[derive(Debug, Clone, Copy)]
struct Move {
    from: NodeId,
    to: NodeId,
    at_ms: u64,
    /// The stored epoch when it was requested.
    epoch: u64,
}

/// The plugin.
pub struct LeaderBalance {
    config: Config,
    /// The clock: the largest `at_ms` seen.
    now_ms: u64,
    /// Moves still within their cooldown, per partition.
    moves: BTreeMap<PartitionId, Move>,
}

/// Leader counts of the alive nodes and the balance arithmetic.
struct Counts {
    counts: BTreeMap<NodeId, u64>,
    /// `n * (mean + max_skew)`, so comparisons stay in integers.
    limit_times_n: u64,
    n: u64,
}

impl Counts {
    fn new(counts: BTreeMap<NodeId, u64>, max_skew: u32) -> Self {
        let n = counts.len() as u64;
        let total: u64 = counts.values().sum();
        Self {
            counts,
            limit_times_n: total + u64::from(max_skew) * n,
            n,
        }
    }

    /// `count > mean + max_skew`.
    fn overloaded(&self, count: u64) -> bool {
        count * self.n > self.limit_times_n
    }

    /// `count + 1 <= mean + max_skew`.
    fn can_take(&self, count: u64) -> bool {
        (count + 1) * self.n <= self.limit_times_n
    }

    fn spread(&self) -> u64 {
        let max = self.counts.values().max().copied().unwrap_or(0);
        let min = self.counts.values().min().copied().unwrap_or(0);
        max - min
    }

    /// Counts a move from `from` to `to`, if both are alive.
    fn shift(&mut self, from: NodeId, to: NodeId) {
        if self.counts.contains_key(&from) && self.counts.contains_key(&to) {
            if let Some(c) = self.counts.get_mut(&from) {
                *c = c.saturating_sub(1);
            }
            if let Some(c) = self.counts.get_mut(&to) {
                *c += 1;
            }
        }
    }
}

impl LeaderBalance {
    /// The next move: `(index into assignments, source, target)`.
    fn next_move(
        &self,
        counts: &Counts,
        assignments: &[Assignment],
    ) -> Option<(usize, NodeId, NodeId)> {
        let mut sources: Vec<(NodeId, u64)> = counts
            .counts
            .iter()
            .filter(|&(_, &c)| counts.overloaded(c))
            .map(|(&node, &c)| (node, c))
            .collect();
        sources.sort_by_key(|&(node, c)| (std::cmp::Reverse(c), node));
        sources.into_iter().find_map(|(source, _)| {
            assignments.iter().enumerate().find_map(|(i, a)| {
                if a.leader != Some(source) || self.moves.contains_key(&a.partition) {
                    return None;
                }
                a.replicas
                    .iter()
                    .enumerate()
                    .filter(|&(_, &r)| r != source)
                    .filter_map(|(pos, &r)| counts.counts.get(&r).map(|&c| (c, pos, r)))
                    .filter(|&(c, _, _)| counts.can_take(c))
                    .min()
                    .map(|(_, _, target)| (i, source, target))
            })
        })
    }
}

impl Hook for LeaderBalance {
    type Config = Config;

    fn init(config: Config) -> Result<Self, String> {
        Ok(Self {
            config,
            now_ms: 0,
            moves: BTreeMap::new(),
        })
    }

    fn on_events(&mut self, events: &[LeadershipEvent]) -> Result<(), String> {
        match events.iter().map(|e| e.at_ms).max() {
            Some(batch_now) => self.balance(batch_now),
            None => Ok(()),
        }
    }

    fn on_tick(&mut self, now_ms: u64) -> Result<(), String> {
        self.balance(now_ms)
    }
}

impl LeaderBalance {
    /// One round of the steps in the crate documentation, at `now` (never
    /// below an earlier round's).
    fn balance(&mut self, now: u64) -> Result<(), String> {
        self.now_ms = self.now_ms.max(now);
        let now = self.now_ms;
        let cooldown = self.config.cooldown_ms;
        self.moves
            .retain(|_, m| now < m.at_ms.saturating_add(cooldown));

        let mut alive: Vec<NodeId> = cluster::nodes()
            .into_iter()
            .filter(|n| n.alive)
            .map(|n| n.id)
            .collect();
        alive.sort_unstable();
        alive.dedup();
        // One balancer per cluster: the alive node with the lowest id.
        if alive.first() != Some(&cluster::local_node()) {
            return Ok(());
        }
        if alive.len() < 2 || self.config.max_transfers_per_batch == 0 {
            return Ok(());
        }

        let mut by_node: BTreeMap<NodeId, u64> = alive.iter().map(|&n| (n, 0)).collect();
        for c in cluster::leader_counts() {
            if let Some(count) = by_node.get_mut(&c.node) {
                *count += u64::from(c.leaders);
            }
        }
        let mut counts = Counts::new(by_node, self.config.max_skew);
        let mut assignments = cluster::assignments();
        assignments.sort_by(|a, b| a.partition.cmp(&b.partition));
        // Moves requested earlier that the stored assignments do not show yet.
        for a in &assignments {
            if let Some(m) = self.moves.get(&a.partition)
                && a.leader == Some(m.from)
                && a.epoch == m.epoch
            {
                counts.shift(m.from, m.to);
            }
        }

        let mut requested = 0;
        while requested < self.config.max_transfers_per_batch {
            if counts.spread() <= u64::from(self.config.max_skew) {
                break;
            }
            let Some((i, from, to)) = self.next_move(&counts, &assignments) else {
                break;
            };
            let a = &assignments[i];
            if let Err(e) = leadership::transfer(&a.partition, to) {
                return Err(format!(
                    "{}: transfer from {from} to {to}: {e}",
                    a.partition
                ));
            }
            log::info(format!(
                "{}: leaders per node {:?}; transfer from {from} to {to} requested",
                a.partition, counts.counts
            ));
            counts.shift(from, to);
            self.moves.insert(
                a.partition.clone(),
                Move {
                    from,
                    to,
                    at_ms: now,
                    epoch: a.epoch,
                },
            );
            requested += 1;
        }
        Ok(())
    }
}

register_hook!(LeaderBalance);
