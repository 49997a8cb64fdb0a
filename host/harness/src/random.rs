//! Seeded random timelines: the same seed gives the same steps, so a run
//! can be repeated exactly (and two runs compared).

use crate::harness::{Harness, HarnessError};
use leaderhook_hooks::{NodeId, PartitionId};

/// A small, dependency-free PRNG (xorshift64*): deterministic across
/// platforms, which is all a test timeline needs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Runs `steps` random actions (elections, kills, revives, time) on
/// `harness`, keeping a majority of `nodes` alive. Returns the actions taken.
pub fn random_timeline(
    harness: &mut Harness,
    nodes: &[NodeId],
    seed: u64,
    steps: usize,
) -> Result<Vec<String>, HarnessError> {
    let mut rng = Rng::new(seed);
    let mut log = Vec::with_capacity(steps);
    for _ in 0..steps {
        let partitions = harness.partitions();
        let dead: Vec<NodeId> = nodes
            .iter()
            .copied()
            .filter(|&n| !harness.is_alive(n))
            .collect();
        match rng.below(4) {
            0 if (dead.len() + 1) * 2 < nodes.len() => {
                let node = nodes[rng.below(nodes.len() as u64) as usize];
                if !dead.contains(&node) {
                    harness.kill(node)?;
                    log.push(format!("kill {node}"));
                }
            }
            1 if !dead.is_empty() => {
                let node = dead[rng.below(dead.len() as u64) as usize];
                harness.revive(node)?;
                log.push(format!("revive {node}"));
            }
            2 => {
                let ms = 1 + rng.below(20_000);
                harness.advance(ms)?;
                log.push(format!("advance {ms}"));
            }
            _ => {
                let ids: Vec<&PartitionId> = partitions.keys().collect();
                if ids.is_empty() {
                    continue;
                }
                let partition = ids[rng.below(ids.len() as u64) as usize].clone();
                let replicas = &partitions[&partition].replicas;
                let leader = replicas[rng.below(replicas.len() as u64) as usize];
                if harness.elect(&partition, leader).is_ok() {
                    log.push(format!("elect {leader} for {partition}"));
                }
            }
        }
    }
    Ok(log)
}
