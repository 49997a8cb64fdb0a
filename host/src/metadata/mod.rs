//! The replicated metadata: topics (with stable ids), partitions, replica
//! lists and assignments (leader, epoch). Every node applies the same
//! committed [`Command`]s of the metadata Raft group in the same order, so
//! every node's answer agrees. Pure state: no I/O, no Raft.

use leaderhook_hooks::fence::{self, PartitionView};
use leaderhook_hooks::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Raft group id of the metadata group; partition groups start after it.
pub const METADATA_GROUP: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateTopic {
        name: String,
        /// Chosen by the proposer, so it is the same on every node.
        topic_id: [u8; 16],
        /// Per partition, preferred replica first.
        replicas: Vec<Vec<NodeId>>,
    },
    DeleteTopic {
        name: String,
    },
    /// A plugin's term-fenced assignment write.
    SetLeader {
        partition: PartitionId,
        leader: NodeId,
        epoch: u64,
        /// The proposing node knew from its own Raft replica that `leader`
        /// won term `epoch`: such a write replaces another name at the same
        /// epoch (at most one leader exists per term).
        #[serde(default)]
        attested: bool,
    },
    /// The in-sync replicas as the partition's leader sees them in its Raft
    /// progress; only the leader assigned at `epoch` may write them.
    SetIsr {
        partition: PartitionId,
        isr: Vec<NodeId>,
        epoch: u64,
    },
    /// InitProducerId: takes the next idempotent producer id. Replicated
    /// so ids are unique across the cluster and across restarts.
    AllocateProducerId,
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with no maps keyed by non-strings: serialisation cannot fail.
        serde_json::to_vec(self).expect("commands serialise")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("undecodable metadata command: {e}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionMeta {
    pub group: u64,
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub epoch: u64,
    /// In-sync replicas (Kafka's ISR), sorted: all replicas until a leader
    /// reports otherwise.
    pub isr: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicMeta {
    pub id: [u8; 16],
    pub partitions: Vec<PartitionMeta>,
}

/// What applying a command did; answered to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    TopicCreated {
        groups: Vec<u64>,
    },
    TopicDeleted {
        groups: Vec<u64>,
    },
    LeaderSet,
    IsrSet,
    ProducerId(i64),
    /// The command was valid Raft-wise but refused by the state machine.
    Refused(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    pub topics: BTreeMap<String, TopicMeta>,
    next_group: u64,
    next_producer_id: i64,
    /// Which partition each Raft group replicates (derived from `topics`).
    #[serde(skip)]
    by_group: BTreeMap<u64, PartitionId>,
}

impl Metadata {
    pub fn apply(&mut self, command: Command) -> Applied {
        match command {
            Command::CreateTopic {
                name,
                topic_id,
                replicas,
            } => {
                if self.topics.contains_key(&name) {
                    return Applied::Refused(format!("topic {name} already exists"));
                }
                if replicas.is_empty() || replicas.iter().any(Vec::is_empty) {
                    return Applied::Refused(format!(
                        "topic {name}: every partition needs replicas"
                    ));
                }
                let first = self.next_group.max(METADATA_GROUP + 1);
                let partitions: Vec<PartitionMeta> = replicas
                    .into_iter()
                    .enumerate()
                    .map(|(i, replicas)| PartitionMeta {
                        group: first + i as u64,
                        isr: sorted(&replicas),
                        replicas,
                        leader: None,
                        epoch: 0,
                    })
                    .collect();
                self.next_group = first + partitions.len() as u64;
                let groups = partitions.iter().map(|p| p.group).collect();
                for (i, p) in partitions.iter().enumerate() {
                    self.by_group
                        .insert(p.group, PartitionId::new(name.clone(), i as u32));
                }
                self.topics.insert(
                    name,
                    TopicMeta {
                        id: topic_id,
                        partitions,
                    },
                );
                Applied::TopicCreated { groups }
            }
            Command::DeleteTopic { name } => match self.topics.remove(&name) {
                Some(topic) => {
                    for p in &topic.partitions {
                        self.by_group.remove(&p.group);
                    }
                    Applied::TopicDeleted {
                        groups: topic.partitions.iter().map(|p| p.group).collect(),
                    }
                }
                None => Applied::Refused(format!("unknown topic {name}")),
            },
            Command::SetLeader {
                partition,
                leader,
                epoch,
                attested,
            } => {
                let Some(p) = self.partition_mut(&partition) else {
                    return Applied::Refused(format!("unknown partition {partition}"));
                };
                // The proposer already refused epochs from the future with
                // the Raft term it knows; here the stored epoch decides, so
                // writes that raced arrive in any order and converge.
                let view = PartitionView {
                    replicas: p.replicas.clone(),
                    leader: p.leader,
                    epoch: p.epoch,
                    highest_term: epoch,
                    elected: attested.then_some(leader),
                };
                match fence::check_set_leader(&view, leader, epoch) {
                    Ok(leaderhook_hooks::WriteOutcome::Queued) => {
                        p.leader = Some(leader);
                        p.epoch = epoch;
                        Applied::LeaderSet
                    }
                    Ok(leaderhook_hooks::WriteOutcome::Unchanged) => Applied::LeaderSet,
                    Err(e) => Applied::Refused(format!("{partition}: {}", e.describe())),
                }
            }
            Command::SetIsr {
                partition,
                isr,
                epoch,
            } => {
                let Some(p) = self.partition_mut(&partition) else {
                    return Applied::Refused(format!("unknown partition {partition}"));
                };
                let Some(leader) = p.leader.filter(|_| p.epoch == epoch) else {
                    return Applied::Refused(format!(
                        "{partition}: ISR of epoch {epoch}, the assignment is at {}",
                        p.epoch
                    ));
                };
                if !isr.contains(&leader) || isr.iter().any(|r| !p.replicas.contains(r)) {
                    return Applied::Refused(format!(
                        "{partition}: ISR {isr:?} must hold the leader {leader} and only replicas {:?}",
                        p.replicas
                    ));
                }
                p.isr = sorted(&isr);
                Applied::IsrSet
            }
            Command::AllocateProducerId => {
                let id = self.next_producer_id;
                self.next_producer_id += 1;
                Applied::ProducerId(id)
            }
        }
    }

    pub fn partition(&self, id: &PartitionId) -> Option<&PartitionMeta> {
        self.topics
            .get(&id.topic)
            .and_then(|t| t.partitions.get(id.partition as usize))
    }

    fn partition_mut(&mut self, id: &PartitionId) -> Option<&mut PartitionMeta> {
        self.topics
            .get_mut(&id.topic)
            .and_then(|t| t.partitions.get_mut(id.partition as usize))
    }

    /// Every partition with its id.
    pub fn partitions(&self) -> impl Iterator<Item = (PartitionId, &PartitionMeta)> {
        self.topics.iter().flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| (PartitionId::new(name.clone(), i as u32), p))
        })
    }

    /// The partition a Raft group replicates.
    pub fn partition_of_group(&self, group: u64) -> Option<(PartitionId, &PartitionMeta)> {
        let id = self.by_group.get(&group)?;
        Some((id.clone(), self.partition(id)?))
    }
}

fn sorted(nodes: &[NodeId]) -> Vec<NodeId> {
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// Round-robin placement of `partitions` × `replication` over `nodes`
/// (sorted), starting each partition one node further.
pub fn place(
    nodes: &[NodeId],
    partitions: u32,
    replication: usize,
) -> Result<Vec<Vec<NodeId>>, String> {
    if partitions == 0 {
        return Err("a topic needs at least one partition".into());
    }
    if replication == 0 || replication > nodes.len() {
        return Err(format!(
            "replication factor {replication} is invalid for a cluster of {} nodes",
            nodes.len()
        ));
    }
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    Ok((0..partitions as usize)
        .map(|p| {
            (0..replication)
                .map(|i| nodes[(p + i) % nodes.len()])
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(m: &mut Metadata, name: &str, partitions: u32) -> Applied {
        m.apply(Command::CreateTopic {
            name: name.into(),
            topic_id: [7; 16],
            replicas: place(&[1, 2, 3], partitions, 3).unwrap(),
        })
    }

    fn set(m: &mut Metadata, partition: u32, leader: NodeId, epoch: u64) -> Applied {
        m.apply(Command::SetLeader {
            partition: PartitionId::new("orders", partition),
            leader,
            epoch,
            attested: false,
        })
    }

    #[test]
    fn topics_get_distinct_groups_that_are_never_reused() {
        let mut m = Metadata::default();
        assert_eq!(
            create(&mut m, "orders", 3),
            Applied::TopicCreated {
                groups: vec![2, 3, 4]
            }
        );
        assert!(matches!(create(&mut m, "orders", 1), Applied::Refused(_)));
        let of_group = |m: &Metadata, g| m.partition_of_group(g).map(|(id, _)| id);
        assert_eq!(of_group(&m, 3), Some(PartitionId::new("orders", 1)));
        assert_eq!(
            m.apply(Command::DeleteTopic {
                name: "orders".into()
            }),
            Applied::TopicDeleted {
                groups: vec![2, 3, 4]
            }
        );
        assert_eq!(of_group(&m, 3), None);
        assert_eq!(
            create(&mut m, "orders", 1),
            Applied::TopicCreated { groups: vec![5] }
        );
    }

    #[test]
    fn set_leader_is_term_fenced_in_any_order() {
        let mut a = Metadata::default();
        create(&mut a, "orders", 1);
        let mut b = a.clone();
        // The same writes in two orders converge.
        for (leader, epoch) in [(1, 1), (2, 3), (3, 2)] {
            set(&mut a, 0, leader, epoch);
        }
        for (leader, epoch) in [(2, 3), (3, 2), (1, 1)] {
            set(&mut b, 0, leader, epoch);
        }
        assert_eq!(a, b);
        let p = a.partition(&PartitionId::new("orders", 0)).unwrap();
        assert_eq!((p.leader, p.epoch), (Some(2), 3));
        assert!(matches!(set(&mut a, 0, 9, 4), Applied::Refused(m) if m.contains("not a replica")));
    }

    #[test]
    fn an_attested_write_replaces_a_wrong_name_at_the_same_epoch() {
        let mut m = Metadata::default();
        create(&mut m, "orders", 1);
        let orders0 = PartitionId::new("orders", 0);
        let write = |leader, attested| Command::SetLeader {
            partition: orders0.clone(),
            leader,
            epoch: 4,
            attested,
        };
        // A plugin on a node that did not know term 4's leader named 3.
        assert_eq!(m.apply(write(3, false)), Applied::LeaderSet);
        // Another unvouched name at the same epoch cannot replace it...
        assert!(matches!(m.apply(write(1, false)), Applied::Refused(_)));
        // ...but the elected leader's own write does.
        assert_eq!(m.apply(write(2, true)), Applied::LeaderSet);
        let p = m.partition(&orders0).unwrap();
        assert_eq!((p.leader, p.epoch), (Some(2), 4));
        // And once the truth is stored, unvouched names stay out.
        assert!(matches!(m.apply(write(3, false)), Applied::Refused(_)));
        // Old stored commands (no `attested` field) still decode.
        let old =
            br#"{"SetLeader":{"partition":{"topic":"orders","partition":0},"leader":2,"epoch":4}}"#;
        assert!(matches!(
            Command::decode(old),
            Ok(Command::SetLeader {
                attested: false,
                ..
            })
        ));
    }

    #[test]
    fn only_the_current_leader_sets_the_isr() {
        let mut m = Metadata::default();
        create(&mut m, "orders", 1);
        let orders0 = PartitionId::new("orders", 0);
        let isr = |isr: &[NodeId], epoch| Command::SetIsr {
            partition: orders0.clone(),
            isr: isr.to_vec(),
            epoch,
        };
        assert_eq!(m.partition(&orders0).unwrap().isr, vec![1, 2, 3]);
        assert!(
            matches!(m.apply(isr(&[1], 0)), Applied::Refused(_)),
            "no leader yet"
        );
        set(&mut m, 0, 2, 5);
        assert_eq!(m.apply(isr(&[3, 2], 5)), Applied::IsrSet);
        assert_eq!(m.partition(&orders0).unwrap().isr, vec![2, 3]);
        // A deposed leader's late report, one without the leader, one with
        // a stranger: all refused, the ISR unchanged.
        set(&mut m, 0, 3, 6);
        for refused in [isr(&[2], 5), isr(&[1, 2], 6), isr(&[3, 9], 6)] {
            assert!(matches!(m.apply(refused), Applied::Refused(_)));
        }
        assert_eq!(m.partition(&orders0).unwrap().isr, vec![2, 3]);
    }

    #[test]
    fn producer_ids_are_distinct_and_follow_the_log() {
        let mut a = Metadata::default();
        let ids: Vec<_> = (0..3)
            .map(|_| a.apply(Command::AllocateProducerId))
            .collect();
        assert_eq!(
            ids,
            vec![
                Applied::ProducerId(0),
                Applied::ProducerId(1),
                Applied::ProducerId(2)
            ]
        );
        // A replay of the same log (a restart) continues where it stopped.
        let mut b = Metadata::default();
        for _ in 0..3 {
            b.apply(Command::AllocateProducerId);
        }
        assert_eq!(a, b);
        assert_eq!(b.apply(Command::AllocateProducerId), Applied::ProducerId(3));
        let c = Command::AllocateProducerId;
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn commands_round_trip() {
        let c = Command::SetLeader {
            partition: PartitionId::new("a-b", 2),
            leader: 3,
            epoch: 9,
            attested: true,
        };
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        assert!(Command::decode(b"{").is_err());
    }

    #[test]
    fn placement_is_round_robin_and_checked() {
        assert_eq!(
            place(&[3, 1, 2], 3, 2).unwrap(),
            vec![vec![1, 2], vec![2, 3], vec![3, 1]]
        );
        assert!(place(&[1, 2], 1, 3).is_err());
        assert!(place(&[1, 2], 0, 1).is_err());
    }
}
