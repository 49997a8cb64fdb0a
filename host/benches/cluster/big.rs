//! Figures 3 and 4: a big topic (1,000 partitions): one kill -9 of the node
//! leading the most, and the idle cost of the cluster before it.

use crate::polling::with_pollers;
use crate::predicates::{converged, describe_unconverged};
use crate::procfs::{clock_ticks, cpu_ticks, status_kib};
use crate::stats::{election_latencies, election_times, mean_poll_period, ms, pct};
use crate::{Cluster, Kill, NODES, Sizes, kill_busiest};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub fn fig3_and_4(exe: &Path, sizes: &Sizes) -> anyhow::Result<Vec<String>> {
    let (within, within_big) = (sizes.converge_small, sizes.converge_big);
    let mut cluster = Cluster::start(exe)?;
    let n = sizes.big_partitions as usize;
    let all: Vec<u64> = (1..=NODES).collect();
    let started = Instant::now();
    cluster.create_topic("big", sizes.big_partitions)?;
    let created = started.elapsed();
    let poll = sizes.big_poll;
    let addrs = cluster.admins()?;
    with_pollers(&mut cluster, addrs, poll, |cluster, p| {
        let mut out = Vec::new();
        let settled = p.wait_for(&all, started, within_big, |s| converged(s, n));
        match settled {
            Some(t) => println!(
                "topic of {n} partitions: created (committed) after {} ms, every assignment converged after {} ms",
                ms(created),
                ms(t - started)
            ),
            None => println!(
                "topic of {n} partitions: NOT converged within {within_big:?}: {}",
                describe_unconverged(&p.latest(&all), n)
            ),
        }
        out.push(format!(
            "big_create_converged_ms={}",
            settled.map_or("TIMEOUT".into(), |t| ms(t - started))
        ));

        // Figure 4: nobody polls during the idle window.
        p.paused.store(true, Ordering::SeqCst);
        std::thread::sleep(sizes.idle_settle);
        out.push(fig4(cluster, sizes));
        p.paused.store(false, Ordering::SeqCst);
        if settled.is_none() {
            anyhow::bail!("figure 3 needs a converged cluster");
        }

        // Figure 3.
        let resumed = Instant::now();
        p.wait_converged(&all, resumed, within, n, "before the kill")?;
        let polls_before = p.obs().polls;
        let Kill {
            victim,
            led: count,
            survivors,
            killed,
            elected,
            settled,
        } = kill_busiest(cluster, p, n, within_big)?;
        let obs = p.obs();
        let lat = election_latencies(&obs, killed);
        let times = election_times(&obs, killed);
        let poll = mean_poll_period(&obs, &polls_before, &survivors, killed.elapsed());
        drop(obs);
        let v = &lat.values;
        match (elected, settled) {
            (Some(e), Some(s)) => println!(
                "figure 3: kill -9 of node {victim} (led {count}/{n}): every partition led again after {} ms (Raft), every assignment correct on both survivors after {} ms: {} ms after the last election",
                ms(e),
                ms(s),
                ms(s.saturating_sub(e))
            ),
            _ => println!(
                "figure 3: kill -9 of node {victim} (led {count}/{n}): NOT converged within {within_big:?} (all led after {elected:?}): {}",
                describe_unconverged(&p.latest(&survivors), n)
            ),
        }
        println!(
            "figure 3: per re-elected partition, election -> assignment on both survivors: {} elections, p50 {} ms, p99 {} ms, max {} ms (superseded {}, never settled {}; mean poll period per node {} ms; target: settle < 1000 ms after the election)",
            v.len(),
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            lat.superseded,
            lat.unconverged,
            ms(poll)
        );
        println!(
            "figure 3: Raft alone, kill -> each re-elected partition's new leader first seen: min {} ms, p10 {} ms, p50 {} ms, p90 {} ms, max {} ms",
            ms(times.first().copied().unwrap_or_default()),
            ms(pct(&times, 10.0)),
            ms(pct(&times, 50.0)),
            ms(pct(&times, 90.0)),
            ms(times.last().copied().unwrap_or_default()),
        );
        let opt = |d: Option<Duration>| d.map_or("TIMEOUT".into(), ms);
        out.push(format!(
            "fig3_victim_led={count} fig3_elected_ms={} fig3_converged_ms={} fig3_after_last_election_ms={} fig3_elections={} fig3_lag_p50_ms={} fig3_lag_p99_ms={} fig3_lag_max_ms={} fig3_poll_ms={}",
            opt(elected),
            opt(settled),
            opt(elected.zip(settled).map(|(e, s)| s.saturating_sub(e))),
            v.len(),
            ms(pct(v, 50.0)),
            ms(pct(v, 99.0)),
            ms(v.last().copied().unwrap_or_default()),
            ms(poll)
        ));
        anyhow::ensure!(
            elected.is_some() && settled.is_some(),
            "figure 3: not converged after the kill"
        );
        Ok(out)
    })
}

fn fig4(cluster: &Cluster, sizes: &Sizes) -> String {
    let hz = clock_ticks();
    let pids: Vec<(u64, u32)> = (1..=NODES)
        .filter_map(|n| cluster.nodes.pid(n).map(|p| (n, p)))
        .collect();
    let before: Vec<Option<u64>> = pids.iter().map(|&(_, p)| cpu_ticks(p)).collect();
    let t0 = Instant::now();
    std::thread::sleep(sizes.idle_window);
    let window = t0.elapsed();
    let after: Vec<Option<u64>> = pids.iter().map(|&(_, p)| cpu_ticks(p)).collect();
    let mut rss = Vec::new();
    let mut cpu = Vec::new();
    for (i, &(node, pid)) in pids.iter().enumerate() {
        let rss_mib = status_kib(pid, "VmRSS:").map(|k| k as f64 / 1024.0);
        let hwm_mib = status_kib(pid, "VmHWM:").map(|k| k as f64 / 1024.0);
        let pct_core = before[i]
            .zip(after[i])
            .map(|(b, a)| (a.saturating_sub(b)) as f64 / hz as f64 / window.as_secs_f64() * 100.0);
        println!(
            "figure 4: node {node} (pid {pid}), idle, {} partitions: resident {} MiB (peak {} MiB), CPU {}% of one core over {:.1} s (targets < 300 MiB, < 20%)",
            sizes.big_partitions,
            rss_mib.map_or("?".into(), |m| format!("{m:.1}")),
            hwm_mib.map_or("?".into(), |m| format!("{m:.1}")),
            pct_core.map_or("?".into(), |c| format!("{c:.1}")),
            window.as_secs_f64()
        );
        rss.push(rss_mib.map_or("?".into(), |m| format!("{m:.0}")));
        cpu.push(pct_core.map_or("?".into(), |c| format!("{c:.1}")));
    }
    format!(
        "fig4_rss_mib={} fig4_cpu_pct={} fig4_clk_tck={hz}",
        rss.join("/"),
        cpu.join("/")
    )
}
