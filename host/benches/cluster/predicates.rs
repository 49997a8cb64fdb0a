//! Conditions over the latest polls of some nodes.

use leaderhook::admin::Status;
use std::collections::HashMap;

/// Per partition: the highest-term replica that says it leads, among the
/// given statuses.
pub fn leaders<'a>(statuses: &[&'a Status]) -> HashMap<&'a str, (u64, u64)> {
    let mut out: HashMap<&'a str, (u64, u64)> = HashMap::new();
    for s in statuses {
        for r in s
            .replicas
            .iter()
            .filter(|r| r.role == leaderhook::raft::shared::Role::Leader)
        {
            let e = out.entry(&r.partition).or_insert((s.node, r.term));
            if r.term > e.1 {
                *e = (s.node, r.term);
            }
        }
    }
    out
}

/// Every partition has a leader among the given nodes.
pub fn all_led(statuses: &[&Status], partitions: usize) -> bool {
    leaders(statuses).len() == partitions
}

/// Every partition has a leader among the given nodes and every given
/// node's assignment names it at its term.
pub fn converged(statuses: &[&Status], partitions: usize) -> bool {
    let leaders = leaders(statuses);
    leaders.len() == partitions
        && statuses.iter().all(|s| {
            s.replicas.len() == partitions
                && s.replicas.iter().all(|r| {
                    leaders
                        .get(r.partition.as_str())
                        .is_some_and(|&(l, t)| r.assigned_leader == Some(l) && r.epoch == t)
                })
        })
}

pub fn describe_unconverged(statuses: &[Status], partitions: usize) -> String {
    let refs: Vec<&Status> = statuses.iter().collect();
    let leaders = leaders(&refs);
    let mut wrong = 0;
    for s in statuses {
        wrong += s
            .replicas
            .iter()
            .filter(|r| {
                leaders
                    .get(r.partition.as_str())
                    .is_none_or(|&(l, t)| r.assigned_leader != Some(l) || r.epoch != t)
            })
            .count();
    }
    format!(
        "{} node(s) answering, replicas per node {:?}, partitions with a leader {}/{partitions}, replica views whose assignment is not the leader at its term: {wrong}",
        statuses.len(),
        statuses
            .iter()
            .map(|s| s.replicas.len())
            .collect::<Vec<_>>(),
        leaders.len()
    )
}
