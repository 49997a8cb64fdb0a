//! Topic creation on three real broker processes (`cargo bench -p
//! leaderhook --bench topic_creation`), default Raft settings (tick 100 ms,
//! election 10 ticks: a randomized election timeout of 1-2 s).
//!
//! 1. First leaders: a 100-partition topic (RF3) is created through the
//!    admin endpoint, five times; from each answer to the first poll on which
//!    every partition has a Raft leader and every node's assignment names
//!    it. Without the preferred replica's campaign at creation this waits out
//!    an election timeout (1-2 s), the baseline the figure is compared with.
//! 2. No stalls: with 1,000 partitions (RF3) created and led, another
//!    1,000-partition topic is created; the elections it causes in the
//!    existing groups (sum of their term increases on any node) must be 0.
//!    Group creation writes no synced entry per group and missed ticks are
//!    never fired in a burst, so existing leaders keep their leases.
//!
//! Smoke mode (`LEADERHOOK_BENCH_SMOKE=1`, or no `--bench` on the command
//! line, as under `cargo test --benches` in CI) runs one creation of figure
//! 1 and a 100 + 100 figure 2: figures printed, not judged (elections in
//! the existing groups are reported, not refused). A figure that fails (a
//! broker that does not start, partitions never led) exits non-zero.

use leaderhook::supervisor::{ClusterSpec, LocalCluster};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(5);

fn main() {
    let smoke = std::env::var_os("LEADERHOOK_BENCH_SMOKE").is_some()
        || !std::env::args().any(|a| a == "--bench");
    let bin = Path::new(env!("CARGO_BIN_EXE_leaderhook"));
    println!("broker binary: {}", bin.display());
    let mut failed = false;
    let (rounds, partitions) = if smoke { (1, 100) } else { (5, 100) };
    match first_leaders(bin, rounds, partitions) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            println!("figure 1 FAILED: {e:#}");
            failed = true;
        }
    }
    let (existing, added) = if smoke { (100, 100) } else { (1000, 1000) };
    match no_stalls(bin, existing, added, !smoke) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            println!("figure 2 FAILED: {e:#}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn start(bin: &Path) -> anyhow::Result<(tempfile::TempDir, LocalCluster)> {
    let dir = tempfile::tempdir()?;
    let cluster = LocalCluster::start(bin, dir.path(), &ClusterSpec::default())?;
    Ok((dir, cluster))
}

fn first_leaders(bin: &Path, rounds: usize, partitions: u32) -> anyhow::Result<String> {
    let (_dir, c) = start(bin)?;
    // Warm up: the metadata group elects, the plugins are loaded.
    c.create_topic("warmup", 1, 3, WAIT)?;
    c.wait_converged(1, WAIT)?;
    let mut times = Vec::new();
    let mut expected = 1;
    for round in 0..rounds {
        let name = format!("t{round}");
        c.create_topic(&name, partitions, 3, WAIT)?;
        let answered = Instant::now();
        expected += partitions as usize;
        wait_all_led(&c, expected)?;
        let took = answered.elapsed();
        println!(
            "  {partitions} partitions of {name}: led and in every node's assignment {:.1} ms after the answer",
            took.as_secs_f64() * 1e3
        );
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = times[times.len() - 1];
    Ok(format!(
        "topic_creation first_leaders partitions={partitions} rounds={rounds} median_ms={:.1} max_ms={:.1} \
         target_ms=200 baseline_election_timeout_ms=1000..2000",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    ))
}

/// Polls until `partitions` partitions are each led, with every node's
/// assignment naming the leader (the view the supervisor builds from each
/// node's status).
fn wait_all_led(c: &LocalCluster, partitions: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let view = c.view();
        let done = view.len() == partitions
            && view.values().all(|(leader, assigned)| {
                leader.is_some_and(|(l, t)| {
                    assigned.len() == 3 && assigned.values().all(|&(a, e)| a == Some(l) && e == t)
                })
            });
        if done {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "not all led within {WAIT:?}");
        std::thread::sleep(POLL);
    }
}

/// Highest term each partition shows on any node.
fn terms(c: &LocalCluster) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut terms = BTreeMap::new();
    for node in c.running() {
        for r in c.status(node)?.replicas {
            let t = terms.entry(r.partition).or_insert(0);
            *t = (*t).max(r.term);
        }
    }
    Ok(terms)
}

fn no_stalls(bin: &Path, existing: u32, added: u32, judge: bool) -> anyhow::Result<String> {
    let (_dir, c) = start(bin)?;
    c.create_topic("existing", existing, 3, WAIT)?;
    c.wait_converged(existing as usize, WAIT)?;
    // Let the first elections' aftermath settle.
    std::thread::sleep(Duration::from_secs(3));
    let before = terms(&c)?;
    let started = Instant::now();
    c.create_topic("added", added, 3, WAIT)?;
    let answered = started.elapsed();
    c.wait_converged((existing + added) as usize, WAIT)?;
    let converged = started.elapsed();
    // Elections caused by the creation would show within an election
    // timeout or two.
    std::thread::sleep(Duration::from_secs(3));
    let after = terms(&c)?;
    let elections: u64 = before
        .iter()
        .map(|(p, t)| after.get(p).copied().unwrap_or(*t).saturating_sub(*t))
        .sum();
    let line = format!(
        "topic_creation no_stalls existing={existing} added={added} elections_in_existing={elections} \
         answered_ms={:.0} all_led_ms={:.0} target_elections=0",
        answered.as_secs_f64() * 1e3,
        converged.as_secs_f64() * 1e3
    );
    anyhow::ensure!(!judge || elections == 0, "{line}");
    Ok(line)
}
