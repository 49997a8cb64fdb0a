//! Metadata: brokers (every peer with a Kafka listener) and, per topic and
//! partition, the leader and leader epoch of the replicated ASSIGNMENT —
//! never this node's Raft state. A partition whose assignment names no
//! leader has leader -1 and LEADER_NOT_AVAILABLE. The ISR is the one its
//! leader last derived from its Raft progress and wrote to the metadata
//! group (all replicas until then). Topics are never
//! auto-created. Every node names itself as controller: any node accepts
//! CreateTopics and DeleteTopics (they are proposals to the metadata group).

use super::{Broker, CLUSTER_ID, epoch, resolve_topic, uuid};
use crate::metadata::{Metadata, TopicMeta};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

pub fn handle(broker: &Broker, request: &MetadataRequest, version: i16) -> MetadataResponse {
    let brokers = broker
        .peers
        .iter()
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
        None => all(&metadata),
        Some(list) if list.is_empty() && version == 0 => all(&metadata),
        Some(list) => list
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map_or("", |n| n.0.as_str());
                match resolve_topic(&metadata, name, t.topic_id) {
                    Some(found) => topic(&found, &metadata.topics[&found]),
                    None => MetadataResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_error_code(if name.is_empty() {
                            ResponseError::UnknownTopicId.code()
                        } else {
                            ResponseError::UnknownTopicOrPartition.code()
                        }),
                }
            })
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(broker.node as i32))
        .with_topics(topics)
}

fn all(metadata: &Metadata) -> Vec<MetadataResponseTopic> {
    metadata.topics.iter().map(|(n, t)| topic(n, t)).collect()
}

fn topic(name: &str, meta: &TopicMeta) -> MetadataResponseTopic {
    let partitions = meta
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let replicas: Vec<BrokerId> = p.replicas.iter().map(|r| BrokerId(*r as i32)).collect();
            let (leader, error) = match p.leader {
                Some(l) => (BrokerId(l as i32), 0),
                None => (BrokerId(-1), ResponseError::LeaderNotAvailable.code()),
            };
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_error_code(error)
                .with_leader_id(leader)
                .with_leader_epoch(epoch(p.epoch))
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r as i32)).collect())
                .with_replica_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_id(uuid(meta.id))
        .with_partitions(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaConfig, Peer};
    use crate::metadata::Command;
    use crate::raft::node::{RaftHandle, Shared};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use leaderhook_hooks::PartitionId;
    use std::sync::Arc;

    fn broker() -> Broker {
        let (commands, _) = std::sync::mpsc::channel();
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
        let shared = Arc::new(Shared::default());
        {
            let mut m = shared.metadata.write().unwrap();
            m.apply(Command::CreateTopic {
                name: "orders".into(),
                topic_id: [9; 16],
                replicas: crate::metadata::place(&[1, 2, 3], 2, 3).unwrap(),
            });
            m.apply(Command::SetLeader {
                partition: PartitionId::new("orders", 1),
                leader: 3,
                epoch: 4,
                attested: true,
            });
        }
        Broker {
            node: 1,
            peers,
            config: KafkaConfig::default(),
            shared,
            raft: RaftHandle::new(commands, wake),
        }
    }

    #[test]
    fn leaders_come_from_the_assignments_only() {
        let b = broker();
        // Local Raft state claiming leadership must not leak into the answer.
        b.shared.replicas.write().unwrap().insert(
            2,
            crate::raft::node::ReplicaStatus {
                group: 2,
                partition: Some(PartitionId::new("orders", 0)),
                role: "Leader".into(),
                leader: Some(1),
                term: 7,
                serving: true,
            },
        );
        let response = handle(&b, &MetadataRequest::default().with_topics(None), 12);
        assert_eq!(response.brokers.len(), 3);
        assert_eq!(response.brokers[2].port, 9093);
        let racks: Vec<_> = response.brokers.iter().map(|b| b.rack.as_deref()).collect();
        assert_eq!(racks, vec![None, Some("rack-b"), None]);
        let topic = &response.topics[0];
        assert_eq!(topic.topic_id, uuid::Uuid::from_bytes([9; 16]));
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
        // No leader has reported its Raft progress yet: every replica.
        assert_eq!(p1.isr_nodes, vec![BrokerId(1), BrokerId(2), BrokerId(3)]);
    }

    #[test]
    fn unknown_topics_are_reported_and_never_created() {
        let b = broker();
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
        assert_eq!(b.metadata().topics.len(), 1);
    }
}
