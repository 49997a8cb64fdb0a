//! Figures 1 and 2: a kill -9 / restart rotation on a small topic.

use crate::polling::with_pollers;
use crate::predicates::describe_unconverged;
use crate::stats::{election_latencies, mean_poll_period, ms, pct};
use crate::{Cluster, Kill, NODES, Sizes, kill_busiest};
use std::path::Path;
use std::time::{Duration, Instant};

pub fn fig1_and_2(exe: &Path, sizes: &Sizes) -> anyhow::Result<Vec<String>> {
    let within = sizes.converge_small;
    let mut cluster = Cluster::start(exe)?;
    cluster.create_topic("bench", sizes.fig1_partitions)?;
    let n = sizes.fig1_partitions as usize;
    let all: Vec<u64> = (1..=NODES).collect();
    let addrs = cluster.admins()?;
    with_pollers(&mut cluster, addrs, sizes.fig1_poll, |cluster, p| {
        let started = Instant::now();
        p.wait_converged(
            &all,
            started,
            within,
            n,
            &format!("the {n}-partition topic"),
        )?;
        println!(
            "cluster up, topic of {n} partitions converged after {} ms",
            ms(started.elapsed())
        );
        let since = Instant::now();
        let polls_before = p.obs().polls;
        let mut kills: Vec<(u64, usize, Option<Duration>, Option<Duration>)> = Vec::new();
        let mut cycles = 0;
        while cycles < sizes.fig1_max_cycles {
            let seen = election_latencies(&p.obs(), since);
            let elections = seen.values.len() + seen.superseded + seen.unconverged;
            if elections >= sizes.fig1_elections {
                break;
            }
            cycles += 1;
            let Kill {
                victim,
                led: count,
                survivors,
                elected,
                settled,
                ..
            } = kill_busiest(cluster, p, n, within)?;
            match (elected, settled) {
                (Some(e), Some(s)) => println!(
                    "  kill {cycles}: node {victim} (led {count}/{n}): all led again after {} ms, assignments correct on survivors after {} ms",
                    ms(e),
                    ms(s)
                ),
                _ => println!(
                    "  kill {cycles}: node {victim} (led {count}/{n}): NOT converged within {within:?} (elected: {elected:?}): {}",
                    describe_unconverged(&p.latest(&survivors), n)
                ),
            }
            kills.push((victim, count, elected, settled));
            cluster.nodes.spawn(victim)?;
            let restarted = Instant::now();
            p.up(victim);
            p.wait_converged(
                &all,
                restarted,
                within,
                n,
                &format!("after restarting node {victim}"),
            )?;
            std::thread::sleep(Duration::from_millis(300));
        }
        let window = since.elapsed();
        let obs = p.obs();
        let lat = election_latencies(&obs, since);
        let poll = mean_poll_period(&obs, &polls_before, &all, window);
        drop(obs);
        let v = &lat.values;
        let mut out = Vec::new();
        println!(
            "figure 1: election -> assignment on every up node: {} elections over {} kills; p50 {} ms, p99 {} ms, max {} ms (superseded by a newer term before settling: {}, never settled: {}; mean poll period per node {} ms, each time +-1 poll; target p99 < 50 ms)",
            v.len(),
            kills.len(),
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            lat.superseded,
            lat.unconverged,
            ms(poll)
        );
        let over_50 = v.iter().filter(|d| **d > Duration::from_millis(50)).count();
        let over_1s = v.iter().filter(|d| **d > Duration::from_secs(1)).count();
        println!(
            "figure 1: elections over 50 ms: {over_50}, over 1 s: {over_1s}; deciles (ms): {}",
            (1..=9)
                .map(|d| ms(pct(v, d as f64 * 10.0)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        out.push(format!(
            "fig1_elections={} fig1_p50_ms={} fig1_p99_ms={} fig1_max_ms={} fig1_superseded={} fig1_unsettled={} fig1_poll_ms={}",
            v.len(),
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            lat.superseded,
            lat.unconverged,
            ms(poll)
        ));
        let mut settle: Vec<Duration> = kills.iter().filter_map(|k| k.3).collect();
        settle.sort_unstable();
        let mut elect: Vec<Duration> = kills.iter().filter_map(|k| k.2).collect();
        elect.sort_unstable();
        let failed = kills.len() - settle.len();
        println!(
            "figure 2: kill -9 of a leader node -> correct assignments on survivors ({} kills, {failed} not converged): median {} ms, max {} ms (Raft alone: all partitions led again, median {} ms, max {} ms; target < 2000 ms)",
            kills.len(),
            ms(pct(&settle, 50.0)),
            ms(settle.last().copied().unwrap_or_default()),
            ms(pct(&elect, 50.0)),
            ms(elect.last().copied().unwrap_or_default()),
        );
        out.push(format!(
            "fig2_kills={} fig2_failed={failed} fig2_median_ms={} fig2_max_ms={} fig2_elected_median_ms={} fig2_elected_max_ms={}",
            kills.len(),
            ms(pct(&settle, 50.0)),
            ms(settle.last().copied().unwrap_or_default()),
            ms(pct(&elect, 50.0)),
            ms(elect.last().copied().unwrap_or_default()),
        ));
        anyhow::ensure!(
            failed == 0,
            "figure 2: {failed} of {} kills did not converge",
            kills.len()
        );
        Ok(out)
    })
}
