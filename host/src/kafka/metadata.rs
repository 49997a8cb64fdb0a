//! Metadata: the brokers alive now (every node heard from within the
//! session timeout, `raft.session_timeout_ms`) and, per topic and partition,
//! the leader and leader epoch of the replicated ASSIGNMENT — never this
//! node's Raft state. A partition answers leader -1 with
//! LEADER_NOT_AVAILABLE when its assignment names no leader, names a node
//! that is not alive, or when fewer than a majority of its replicas are
//! alive (its quorum is lost): within one session timeout of a death,
//! clients stop being sent to a dead node. Replicas not alive are listed as
//! offline. The ISR is the one its leader last derived from its Raft
//! progress and wrote to the metadata group (all replicas until then). The
//! controller is the metadata group's leader as this node knows it (this
//! node while it knows none); any node accepts CreateTopics and
//! DeleteTopics (they are proposals to the metadata group). An unknown
//! topic a request names is created when it allows it and the node's
//! `auto_create_topics_enable` is on (`auto_create`): LEADER_NOT_AVAILABLE
//! until it has leaders. The offsets topic is shown as internal.

use super::auto_create::NotCreated;
use super::{Broker, CLUSTER_ID, epoch, resolve_topic};
use crate::metadata::{Metadata, TopicMeta};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use leaderhook_hooks::NodeId;
use std::collections::BTreeSet;

pub fn handle(broker: &Broker, request: &MetadataRequest, version: i16) -> MetadataResponse {
    let live = broker.shared.live_nodes();
    let brokers = broker
        .peers
        .iter()
        .filter(|p| live.contains(&p.id))
        .filter_map(|p| {
            let (host, port) = broker.endpoint(p.id)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(p.id as i32))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(p.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    let metadata = broker.metadata();
    let topics = match &request.topics {
        // v0: an empty list means every topic; v1+: null does.
        None => all(&metadata, &live),
        Some(list) if list.is_empty() && version == 0 => all(&metadata, &live),
        Some(list) => list
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map_or("", |n| n.0.as_str());
                match resolve_topic(&metadata, name, t.topic_id).and_then(|id| metadata.topic(&id))
                {
                    Some(found) => topic(found, &live),
                    None => MetadataResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_error_code(if name.is_empty() {
                            ResponseError::UnknownTopicId.code()
                        } else {
                            match broker.auto_create.create(
                                broker,
                                name,
                                request.allow_auto_topic_creation,
                            ) {
                                // Being created: no leader yet, as Kafka answers.
                                Ok(()) => ResponseError::LeaderNotAvailable.code(),
                                Err(NotCreated::InvalidName(_)) => {
                                    ResponseError::InvalidTopicException.code()
                                }
                                Err(NotCreated::Disabled) => {
                                    ResponseError::UnknownTopicOrPartition.code()
                                }
                            }
                        }),
                }
            })
            .collect(),
    };
    // While no metadata leader is known (an election), this node: any node
    // takes CreateTopics and DeleteTopics, and clients such as librdkafka's
    // admin wait for a controller without refreshing Metadata.
    let controller = broker.shared.controller().unwrap_or(broker.node) as i32;
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

fn all(metadata: &Metadata, live: &BTreeSet<NodeId>) -> Vec<MetadataResponseTopic> {
    metadata.topics().map(|t| topic(t, live)).collect()
}

fn broker_ids<'a>(nodes: impl IntoIterator<Item = &'a NodeId>) -> Vec<BrokerId> {
    nodes.into_iter().map(|n| BrokerId(*n as i32)).collect()
}

fn topic(meta: &TopicMeta, live: &BTreeSet<NodeId>) -> MetadataResponseTopic {
    let partitions = meta
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let alive = p.replicas.iter().filter(|r| live.contains(r)).count();
            let quorum = alive * 2 > p.replicas.len();
            let (leader, error) = match p.leader {
                Some(l) if quorum && live.contains(&l) => (BrokerId(l as i32), 0),
                _ => (BrokerId(-1), ResponseError::LeaderNotAvailable.code()),
            };
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_error_code(error)
                .with_leader_id(leader)
                .with_leader_epoch(epoch(p.epoch))
                .with_isr_nodes(broker_ids(&p.isr))
                .with_offline_replicas(broker_ids(p.replicas.iter().filter(|r| !live.contains(r))))
                .with_replica_nodes(broker_ids(&p.replicas))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_topic_id(meta.id.0)
        .with_is_internal(meta.name == crate::coordinator::OFFSETS_TOPIC)
        .with_partitions(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaConfig, Peer};
    use crate::metadata::{Command, TopicConfigs, TopicId, TopicLimits, TopicPartition};
    use crate::raft::handle::RaftHandle;
    use crate::raft::shared::{ReplicaStatus, Role, Shared};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use leaderhook_hooks::PartitionId;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const ORDERS: uuid::Uuid = uuid::Uuid::from_bytes([9; 16]);

    fn broker() -> Broker {
        // The tests read no records: a store in a directory removed at once.
        let dir = tempfile::tempdir().unwrap();
        let store = crate::raft::storage::LogStore::open(dir.path()).unwrap();
        let (wake, _) = std::sync::mpsc::sync_channel(1);
        let peers = (1..=3)
            .map(|id| Peer {
                id,
                raft: format!("127.0.0.1:{}", 7000 + id).parse().unwrap(),
                admin: format!("127.0.0.1:{}", 7100 + id).parse().unwrap(),
                kafka: Some(format!("127.0.0.1:{}", 9090 + id).parse().unwrap()),
                rack: (id == 2).then(|| "rack-b".to_string()),
            })
            .collect();
        let shared = Arc::new(Shared::new(1, vec![1, 2, 3], Duration::from_secs(5)));
        {
            let mut m = shared.metadata.write().unwrap();
            m.apply(Command::CreateTopic {
                name: "orders".into(),
                topic_id: TopicId(ORDERS),
                replicas: crate::metadata::topic::place(&[1, 2, 3], 2, 3, &TopicLimits::default())
                    .unwrap(),
                configs: TopicConfigs::new(),
            });
            m.apply(Command::SetLeader {
                partition: TopicPartition {
                    topic: TopicId(ORDERS),
                    partition: 1,
                },
                leader: 3,
                epoch: 4,
                attested: true,
            });
        }
        Broker {
            node: 1,
            peers,
            config: KafkaConfig::default(),
            topic_limits: TopicLimits::default(),
            coordinator: Arc::new(crate::coordinator::service::Coordinator::new(
                1,
                Default::default(),
                shared.clone(),
                RaftHandle::new(std::sync::mpsc::sync_channel(1).0).0,
            )),
            shared,
            store,
            raft: RaftHandle::new(wake).0,
            auto_create: Default::default(),
        }
    }

    /// Pretends the node has heard from `alive` just now and from the other
    /// peers long ago.
    fn hear(b: &Broker, alive: &[NodeId]) {
        let mut l = b.shared.liveness.write().unwrap();
        l.started = Instant::now() - Duration::from_secs(60);
        for peer in [2, 3] {
            let at = if alive.contains(&peer) {
                Instant::now()
            } else {
                Instant::now() - Duration::from_secs(30)
            };
            l.heard.insert(peer, at);
        }
    }

    #[test]
    fn leaders_come_from_the_assignments_only() {
        let b = broker();
        hear(&b, &[2, 3]);
        // Local Raft state claiming leadership must not leak into the answer.
        b.shared.replicas.write().unwrap().insert(
            2,
            ReplicaStatus {
                group: 2,
                partition: Some(PartitionId::new("orders", 0)),
                role: Role::Leader,
                leader: Some(1),
                term: 7,
                serving: true,
                log: Default::default(),
            },
        );
        let response = handle(&b, &MetadataRequest::default().with_topics(None), 12);
        assert_eq!(response.brokers.len(), 3);
        assert_eq!(response.brokers[2].port, 9093);
        let racks: Vec<_> = response.brokers.iter().map(|b| b.rack.as_deref()).collect();
        assert_eq!(racks, vec![None, Some("rack-b"), None]);
        let topic = &response.topics[0];
        assert_eq!(topic.topic_id, ORDERS);
        let (p0, p1) = (&topic.partitions[0], &topic.partitions[1]);
        assert_eq!(p0.leader_id, BrokerId(-1));
        assert_eq!(p0.error_code, ResponseError::LeaderNotAvailable.code());
        assert_eq!(
            (p1.leader_id, p1.leader_epoch, p1.error_code),
            (BrokerId(3), 4, 0)
        );
        assert_eq!(
            p1.replica_nodes,
            vec![BrokerId(2), BrokerId(3), BrokerId(1)]
        );
        assert!(p1.offline_replicas.is_empty());
        // No leader has reported its Raft progress yet: every replica.
        assert_eq!(p1.isr_nodes, vec![BrokerId(1), BrokerId(2), BrokerId(3)]);
    }

    #[test]
    fn dead_nodes_leave_and_their_partitions_answer_no_leader() {
        let b = broker();
        b.shared.liveness.write().unwrap().controller = Some(2);
        hear(&b, &[2]);
        let response = handle(&b, &MetadataRequest::default().with_topics(None), 12);
        let brokers: Vec<_> = response.brokers.iter().map(|b| b.node_id).collect();
        assert_eq!(brokers, vec![BrokerId(1), BrokerId(2)]);
        assert_eq!(response.controller_id, BrokerId(2));
        let p1 = &response.topics[0].partitions[1];
        // Assigned to node 3, which is dead: no leader, 3 offline.
        assert_eq!(p1.leader_id, BrokerId(-1));
        assert_eq!(p1.error_code, ResponseError::LeaderNotAvailable.code());
        assert_eq!(p1.offline_replicas, vec![BrokerId(3)]);
        // Quorum lost (only node 1 alive) while node 1 is assigned: no leader
        // either, though node 1 itself is alive.
        b.shared
            .metadata
            .write()
            .unwrap()
            .apply(Command::SetLeader {
                partition: TopicPartition {
                    topic: TopicId(ORDERS),
                    partition: 1,
                },
                leader: 1,
                epoch: 5,
                attested: true,
            });
        hear(&b, &[]);
        let response = handle(&b, &MetadataRequest::default().with_topics(None), 12);
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.topics[0].partitions[1].leader_id, BrokerId(-1));
        // Quorum back: node 1 named again.
        hear(&b, &[2]);
        let response = handle(&b, &MetadataRequest::default().with_topics(None), 12);
        assert_eq!(response.topics[0].partitions[1].leader_id, BrokerId(1));
    }

    #[test]
    fn unknown_topics_are_created_only_when_allowed_and_enabled() {
        let (wake, _inbox) = std::sync::mpsc::sync_channel(8);
        let (raft, commands) = RaftHandle::new(wake);
        let mut b = broker();
        b.raft = raft;
        let ask = |b: &Broker, name: &'static str, allow: bool| {
            let request = MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str(name)))),
                ]))
                .with_allow_auto_topic_creation(allow);
            handle(b, &request, 12).topics[0].error_code
        };
        let proposed = |commands: &crate::raft::handle::CommandQueue| {
            std::iter::from_fn(|| commands.try_next())
                .filter_map(|c| match c {
                    crate::raft::handle::RaftCommand::Propose(
                        Command::CreateTopic { name, replicas, .. },
                        _,
                    ) => Some((name, replicas.len(), replicas[0].len())),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ask(&b, "nope", false),
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert!(proposed(&commands).is_empty());
        assert_eq!(
            ask(&b, "fresh", true),
            ResponseError::LeaderNotAvailable.code()
        );
        // A client polling Metadata proposes it once.
        assert_eq!(
            ask(&b, "fresh", true),
            ResponseError::LeaderNotAvailable.code()
        );
        assert_eq!(proposed(&commands), vec![("fresh".to_string(), 1, 3)]);
        assert_eq!(
            ask(&b, "bad name", true),
            ResponseError::InvalidTopicException.code()
        );
        assert_eq!(
            ask(&b, "__consumer_offsets", true),
            ResponseError::InvalidTopicException.code()
        );
        assert!(proposed(&commands).is_empty());
        b.config.auto_create_topics_enable = false;
        assert_eq!(
            ask(&b, "other", true),
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert!(proposed(&commands).is_empty());
    }

    #[test]
    fn unknown_topics_are_reported_and_never_created() {
        let mut b = broker();
        b.config.auto_create_topics_enable = false;
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("nope")))),
            ]))
            .with_allow_auto_topic_creation(true);
        let response = handle(&b, &request, 12);
        assert_eq!(
            response.topics[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert_eq!(b.metadata().topic_count(), 1);
    }
}
