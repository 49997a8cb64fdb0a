//! Election -> assignment latencies from the observations, percentiles.

use crate::NODES;
use crate::polling::Observations;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Latencies {
    pub values: Vec<Duration>,
    /// Elections that a newer term replaced before every node showed them.
    pub superseded: usize,
    /// Elections whose assignment never showed everywhere.
    pub unconverged: usize,
}

/// Per election seen after `since` (a kill): when its leader was first seen.
pub fn election_times(obs: &Observations, since: Instant) -> Vec<Duration> {
    let mut out: Vec<Duration> = obs
        .parts
        .values()
        .flat_map(|p| p.leaders.values())
        .filter(|(_, t0)| *t0 >= since)
        .map(|(_, t0)| *t0 - since)
        .collect();
    out.sort_unstable();
    out
}

pub fn election_latencies(obs: &Observations, since: Instant) -> Latencies {
    let mut out = Latencies::default();
    for part in obs.parts.values() {
        for (&term, &(leader, t0)) in part.leaders.iter() {
            if t0 < since {
                continue;
            }
            let seen = part.assigned.get(&(leader, term));
            let mut last = t0;
            let mut missing = false;
            for node in 1..=NODES {
                let Some(up) = obs.up_at(node, t0) else {
                    continue; // not up at the election
                };
                match seen.and_then(|s| s[node as usize - 1]) {
                    Some(t) => last = last.max(t),
                    None if up.until.is_some() => {} // killed before it showed it
                    None => missing = true,
                }
            }
            if !missing {
                out.values.push(last - t0);
            } else if part.leaders.range(term + 1..).next().is_some() {
                out.superseded += 1;
            } else {
                out.unconverged += 1;
            }
        }
    }
    out.values.sort_unstable();
    out
}

/// Nearest-rank percentile.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Mean time between two answered polls of one node since `before` was
/// taken (the poll counts then) `window` ago.
pub fn mean_poll_period(
    obs: &Observations,
    before: &[u64; NODES as usize],
    nodes: &[u64],
    window: Duration,
) -> Duration {
    let polls: u64 = nodes
        .iter()
        .map(|&n| obs.polls[n as usize - 1] - before[n as usize - 1])
        .sum();
    if polls == 0 {
        return Duration::ZERO;
    }
    window.mul_f64(nodes.len() as f64 / polls as f64)
}
