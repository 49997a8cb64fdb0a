//! The replicated metadata state machine: topics (by id), partitions,
//! replica lists and assignments (leader, epoch). Every node applies the
//! same committed [`Command`]s in the same order, so every node's answer
//! agrees. Pure state: no I/O, no Raft.

use super::command::{Applied, Command, DecodeError, FORMAT_V1, Refusal};
use super::topic::{TopicConfigs, TopicId, TopicPartition};
use leaderhook_hooks::fence::{self, PartitionView};
use leaderhook_hooks::{NodeId, PartitionId, WriteOutcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Raft group id of the metadata group; partition groups start after it.
pub const METADATA_GROUP: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub group: u64,
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub epoch: u64,
    /// In-sync replicas (Kafka's ISR), sorted: all replicas until a leader
    /// reports otherwise.
    pub isr: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub id: TopicId,
    pub name: String,
    pub partitions: Vec<PartitionMeta>,
    pub configs: TopicConfigs,
}

impl TopicMeta {
    pub fn partition(&self, index: i32) -> Option<&PartitionMeta> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    topics: BTreeMap<TopicId, TopicMeta>,
    /// The live topic of each name (derived from `topics`).
    names: BTreeMap<String, TopicId>,
    next_group: u64,
    next_producer_id: i64,
    /// Which partition each Raft group replicates (derived from `topics`).
    #[serde(skip)]
    by_group: BTreeMap<u64, TopicPartition>,
}

/// What a metadata snapshot stores: the topics and the counters; the
/// indexes are derived again when it is read.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    topics: Vec<TopicMeta>,
    next_group: u64,
    next_producer_id: i64,
}

impl Metadata {
    /// The state as a snapshot's data: format byte [`FORMAT_V1`], then JSON.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let snapshot = Snapshot {
            topics: self.topics.values().cloned().collect(),
            next_group: self.next_group,
            next_producer_id: self.next_producer_id,
        };
        let mut bytes = vec![FORMAT_V1];
        serde_json::to_writer(&mut bytes, &snapshot).expect("metadata serialises");
        bytes
    }

    pub fn decode_snapshot(bytes: &[u8]) -> Result<Self, DecodeError> {
        let snapshot: Snapshot = match bytes.split_first() {
            Some((&FORMAT_V1, json)) => {
                serde_json::from_slice(json).map_err(|e| DecodeError::Malformed(e.to_string()))?
            }
            Some((&format, _)) => return Err(DecodeError::UnknownFormat(format)),
            None => return Err(DecodeError::Malformed("empty snapshot".into())),
        };
        let mut metadata = Metadata {
            next_group: snapshot.next_group,
            next_producer_id: snapshot.next_producer_id,
            ..Metadata::default()
        };
        for topic in snapshot.topics {
            for (i, p) in topic.partitions.iter().enumerate() {
                metadata.by_group.insert(
                    p.group,
                    TopicPartition {
                        topic: topic.id,
                        partition: i as u32,
                    },
                );
            }
            metadata.names.insert(topic.name.clone(), topic.id);
            metadata.topics.insert(topic.id, topic);
        }
        Ok(metadata)
    }

    pub fn apply(&mut self, command: Command) -> Applied {
        match command {
            Command::CreateTopic {
                name,
                topic_id,
                replicas,
                configs,
            } => self.create_topic(name, topic_id, replicas, configs),
            Command::DeleteTopic { topic_id } => match self.topics.remove(&topic_id) {
                Some(topic) => {
                    self.names.remove(&topic.name);
                    for p in &topic.partitions {
                        self.by_group.remove(&p.group);
                    }
                    Applied::TopicDeleted {
                        groups: topic.partitions.iter().map(|p| p.group).collect(),
                    }
                }
                None => Applied::Refused(Refusal::UnknownTopic(topic_id)),
            },
            Command::SetLeader {
                partition,
                leader,
                epoch,
                attested,
            } => {
                let Some(p) = self.partition_at_mut(&partition) else {
                    return Applied::Refused(Refusal::UnknownPartition(partition));
                };
                // The proposer already refused epochs from the future with
                // the Raft term it knows; here the stored epoch decides, so
                // writes that raced arrive in any order and converge. A
                // vouched write names the term's one leader.
                let view = PartitionView {
                    replicas: p.replicas.clone(),
                    leader: p.leader,
                    epoch: p.epoch,
                    highest_term: epoch,
                    elected: attested.then_some(leader),
                };
                match fence::check_set_leader(&view, leader, epoch) {
                    Ok(WriteOutcome::Queued) => {
                        p.leader = Some(leader);
                        p.epoch = epoch;
                        Applied::LeaderSet
                    }
                    Ok(WriteOutcome::Unchanged) => Applied::LeaderSet,
                    Err(error) => Applied::Refused(Refusal::Fenced { partition, error }),
                }
            }
            Command::SetIsr {
                partition,
                isr,
                epoch,
            } => {
                let Some(p) = self.partition_at_mut(&partition) else {
                    return Applied::Refused(Refusal::UnknownPartition(partition));
                };
                let Some(leader) = p.leader.filter(|_| p.epoch == epoch) else {
                    return Applied::Refused(Refusal::IsrStale {
                        partition,
                        epoch,
                        stored: p.epoch,
                    });
                };
                if !isr.contains(&leader) || isr.iter().any(|r| !p.replicas.contains(r)) {
                    return Applied::Refused(Refusal::IsrInvalid {
                        partition,
                        isr,
                        leader,
                        replicas: p.replicas.clone(),
                    });
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

    fn create_topic(
        &mut self,
        name: String,
        topic_id: TopicId,
        replicas: Vec<Vec<NodeId>>,
        configs: TopicConfigs,
    ) -> Applied {
        if self.names.contains_key(&name) {
            return Applied::Refused(Refusal::TopicExists(name));
        }
        if self.topics.contains_key(&topic_id) {
            return Applied::Refused(Refusal::TopicIdInUse(topic_id));
        }
        if replicas.is_empty() || replicas.iter().any(Vec::is_empty) {
            return Applied::Refused(Refusal::NoReplicas(name));
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
        // Group ids are never reused, so nothing keyed by a group can
        // mistake a new partition for an old one.
        self.next_group = first + partitions.len() as u64;
        let groups = partitions.iter().map(|p| p.group).collect();
        for (i, p) in partitions.iter().enumerate() {
            self.by_group.insert(
                p.group,
                TopicPartition {
                    topic: topic_id,
                    partition: i as u32,
                },
            );
        }
        self.names.insert(name.clone(), topic_id);
        self.topics.insert(
            topic_id,
            TopicMeta {
                id: topic_id,
                name,
                partitions,
                configs,
            },
        );
        Applied::TopicCreated { topic_id, groups }
    }

    /// The id the next created partition's group will get: groups below it
    /// exist or existed.
    pub fn next_group(&self) -> u64 {
        self.next_group.max(METADATA_GROUP + 1)
    }

    pub fn topic(&self, id: &TopicId) -> Option<&TopicMeta> {
        self.topics.get(id)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&TopicMeta> {
        self.names.get(name).and_then(|id| self.topics.get(id))
    }

    /// Every live topic, by name.
    pub fn topics(&self) -> impl Iterator<Item = &TopicMeta> {
        self.names.values().filter_map(|id| self.topics.get(id))
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// A partition named as plugins and clients name it (topic name).
    pub fn partition(&self, id: &PartitionId) -> Option<&PartitionMeta> {
        self.topic_by_name(&id.topic)?
            .partitions
            .get(id.partition as usize)
    }

    /// The partition's stored key: its topic's id, now. A partition named
    /// by a deleted topic's name resolves to its successor's, or to none.
    pub fn key_of(&self, id: &PartitionId) -> Option<TopicPartition> {
        let topic = self.topic_by_name(&id.topic)?;
        topic
            .partitions
            .get(id.partition as usize)
            .map(|_| TopicPartition {
                topic: topic.id,
                partition: id.partition,
            })
    }

    pub fn partition_at(&self, key: &TopicPartition) -> Option<&PartitionMeta> {
        self.topics
            .get(&key.topic)?
            .partitions
            .get(key.partition as usize)
    }

    fn partition_at_mut(&mut self, key: &TopicPartition) -> Option<&mut PartitionMeta> {
        self.topics
            .get_mut(&key.topic)?
            .partitions
            .get_mut(key.partition as usize)
    }

    /// Every partition with its name, topics by name.
    pub fn partitions(&self) -> impl Iterator<Item = (PartitionId, &PartitionMeta)> {
        self.topics().flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| (PartitionId::new(t.name.clone(), i as u32), p))
        })
    }

    /// The partition a Raft group replicates, by name.
    pub fn partition_of_group(&self, group: u64) -> Option<(PartitionId, &PartitionMeta)> {
        let key = self.by_group.get(&group)?;
        let topic = self.topics.get(&key.topic)?;
        let meta = topic.partitions.get(key.partition as usize)?;
        Some((PartitionId::new(topic.name.clone(), key.partition), meta))
    }

    /// The stored key of the partition a Raft group replicates.
    pub fn key_of_group(&self, group: u64) -> Option<TopicPartition> {
        self.by_group.get(&group).copied()
    }
}

fn sorted(nodes: &[NodeId]) -> Vec<NodeId> {
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::topic::{TopicLimits, place};

    fn create(m: &mut Metadata, name: &str, partitions: u32) -> TopicId {
        let topic_id = TopicId::random();
        let applied = m.apply(Command::CreateTopic {
            name: name.into(),
            topic_id,
            replicas: place(&[1, 2, 3], partitions, 3, &TopicLimits::default()).unwrap(),
            configs: TopicConfigs::new(),
        });
        assert!(
            matches!(applied, Applied::TopicCreated { .. }),
            "{applied:?}"
        );
        topic_id
    }

    fn key(topic: TopicId, partition: u32) -> TopicPartition {
        TopicPartition { topic, partition }
    }

    fn set(m: &mut Metadata, at: TopicPartition, leader: NodeId, epoch: u64) -> Applied {
        m.apply(Command::SetLeader {
            partition: at,
            leader,
            epoch,
            attested: false,
        })
    }

    #[test]
    fn topics_get_distinct_groups_that_are_never_reused() {
        let mut m = Metadata::default();
        let orders = create(&mut m, "orders", 3);
        let again = m.apply(Command::CreateTopic {
            name: "orders".into(),
            topic_id: TopicId::random(),
            replicas: vec![vec![1]],
            configs: TopicConfigs::new(),
        });
        assert_eq!(
            again,
            Applied::Refused(Refusal::TopicExists("orders".into()))
        );
        let of_group = |m: &Metadata, g| m.partition_of_group(g).map(|(id, _)| id);
        assert_eq!(of_group(&m, 3), Some(PartitionId::new("orders", 1)));
        assert_eq!(
            m.apply(Command::DeleteTopic { topic_id: orders }),
            Applied::TopicDeleted {
                groups: vec![2, 3, 4]
            }
        );
        assert_eq!(of_group(&m, 3), None);
        let reborn = create(&mut m, "orders", 1);
        assert_ne!(reborn, orders);
        assert_eq!(m.topic_by_name("orders").unwrap().partitions[0].group, 5);
    }

    #[test]
    fn a_write_for_a_deleted_topic_never_lands_on_its_successor() {
        let mut m = Metadata::default();
        let old = create(&mut m, "t", 1);
        set(&mut m, key(old, 0), 2, 7);
        m.apply(Command::DeleteTopic { topic_id: old });
        let new = create(&mut m, "t", 1);
        // A late write of the old incarnation, at its high term.
        assert_eq!(
            set(&mut m, key(old, 0), 3, 8),
            Applied::Refused(Refusal::UnknownPartition(key(old, 0)))
        );
        let p = m.partition(&PartitionId::new("t", 0)).unwrap();
        assert_eq!((p.leader, p.epoch), (None, 0));
        // The new incarnation's low terms are written.
        assert_eq!(set(&mut m, key(new, 0), 1, 1), Applied::LeaderSet);
        assert_eq!(m.key_of(&PartitionId::new("t", 0)), Some(key(new, 0)));
    }

    #[test]
    fn set_leader_is_term_fenced_in_any_order() {
        let mut a = Metadata::default();
        let t = create(&mut a, "orders", 1);
        let mut b = a.clone();
        // The same writes in two orders converge.
        for (leader, epoch) in [(1, 1), (2, 3), (3, 2)] {
            set(&mut a, key(t, 0), leader, epoch);
        }
        for (leader, epoch) in [(2, 3), (3, 2), (1, 1)] {
            set(&mut b, key(t, 0), leader, epoch);
        }
        assert_eq!(a, b);
        let p = a.partition_at(&key(t, 0)).unwrap();
        assert_eq!((p.leader, p.epoch), (Some(2), 3));
        assert!(matches!(
            set(&mut a, key(t, 0), 9, 4),
            Applied::Refused(Refusal::Fenced {
                error: leaderhook_hooks::CapError::NotAReplica(9),
                ..
            })
        ));
    }

    #[test]
    fn an_attested_write_replaces_a_wrong_name_at_the_same_epoch() {
        let mut m = Metadata::default();
        let t = create(&mut m, "orders", 1);
        let write = |leader, attested| Command::SetLeader {
            partition: key(t, 0),
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
        let p = m.partition_at(&key(t, 0)).unwrap();
        assert_eq!((p.leader, p.epoch), (Some(2), 4));
        // And once the truth is stored, unvouched names stay out.
        assert!(matches!(m.apply(write(3, false)), Applied::Refused(_)));
    }

    #[test]
    fn only_the_current_leader_sets_the_isr() {
        let mut m = Metadata::default();
        let t = create(&mut m, "orders", 1);
        let isr = |isr: &[NodeId], epoch| Command::SetIsr {
            partition: key(t, 0),
            isr: isr.to_vec(),
            epoch,
        };
        assert_eq!(m.partition_at(&key(t, 0)).unwrap().isr, vec![1, 2, 3]);
        assert!(
            matches!(m.apply(isr(&[1], 0)), Applied::Refused(_)),
            "no leader yet"
        );
        set(&mut m, key(t, 0), 2, 5);
        assert_eq!(m.apply(isr(&[3, 2], 5)), Applied::IsrSet);
        assert_eq!(m.partition_at(&key(t, 0)).unwrap().isr, vec![2, 3]);
        // A deposed leader's late report, one without the leader, one with
        // a stranger: all refused, the ISR unchanged.
        set(&mut m, key(t, 0), 3, 6);
        for refused in [isr(&[2], 5), isr(&[1, 2], 6), isr(&[3, 9], 6)] {
            assert!(matches!(m.apply(refused), Applied::Refused(_)));
        }
        assert_eq!(m.partition_at(&key(t, 0)).unwrap().isr, vec![2, 3]);
    }

    #[test]
    fn a_snapshot_restores_everything_and_the_log_continues_alike() {
        let mut m = Metadata::default();
        let a = create(&mut m, "a", 2);
        let b = create(&mut m, "b", 1);
        set(&mut m, key(a, 1), 3, 4);
        m.apply(Command::DeleteTopic { topic_id: b });
        m.apply(Command::AllocateProducerId);
        let mut restored = Metadata::decode_snapshot(&m.encode_snapshot()).unwrap();
        assert_eq!(restored, m);
        assert_eq!(
            restored.partition_of_group(3).map(|(id, _)| id),
            Some(PartitionId::new("a", 1))
        );
        // The same commands after the snapshot give the same state.
        let c = Command::CreateTopic {
            name: "c".into(),
            topic_id: TopicId::random(),
            replicas: vec![vec![1, 2]],
            configs: TopicConfigs::new(),
        };
        for state in [&mut m, &mut restored] {
            state.apply(c.clone());
            state.apply(Command::AllocateProducerId);
        }
        assert_eq!(restored, m);
        assert!(matches!(
            Metadata::decode_snapshot(b"{}"),
            Err(DecodeError::UnknownFormat(b'{'))
        ));
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
    }
}
