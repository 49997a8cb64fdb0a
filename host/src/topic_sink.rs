//! A `kind = "topic"` sink: notifications appended as records to a topic of
//! this cluster, through the cluster's own Kafka listeners, as any Kafka
//! client would (Metadata to find the partition's leader, CreateTopics if
//! the topic is missing, Produce with acks=all). So an audit trail is read
//! back with any Kafka client, and it follows leadership like any producer.
//!
//! Runs on the sink writer thread (never a plugin's or the Raft loop's):
//! blocking sockets, each read and write bounded by [`IO_TIMEOUT`].
//! Records are keyed by the partition a notification is about when its
//! payload is a JSON object with `topic` and `partition` fields (as
//! `audit-notify` writes), `topic-partition`; else unkeyed. The partition is
//! chosen by CRC-32C of the key (unkeyed: partition 0). A batch that cannot
//! be written after [`ATTEMPTS`] tries is dropped, counted and logged.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Each connect, read and write waits at most this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per batch (a leader change, a topic being created) before it is dropped.
pub const ATTEMPTS: usize = 5;
/// Largest response frame read.
const MAX_RESPONSE: usize = 16 << 20;

const METADATA_VERSION: i16 = 8;
const CREATE_TOPICS_VERSION: i16 = 4;
const PRODUCE_VERSION: i16 = 8;

/// One topic sink's client.
pub struct TopicProducer {
    bootstrap: Vec<SocketAddr>,
    topic: String,
    replication: i16,
    /// Each partition's leader, by the last Metadata answer.
    leaders: Vec<Option<SocketAddr>>,
    connections: HashMap<SocketAddr, TcpStream>,
    correlation: i32,
    /// Records written, batches dropped.
    pub written: u64,
    pub dropped: u64,
}

/// Why a request failed (the batch is tried again).
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("{0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("Kafka error code {0}")]
    Kafka(i16),
}

impl TopicProducer {
    pub fn new(bootstrap: Vec<SocketAddr>, topic: String) -> Self {
        let replication = bootstrap.len().clamp(1, 3) as i16;
        Self {
            bootstrap,
            topic,
            replication,
            leaders: Vec::new(),
            connections: HashMap::new(),
            correlation: 0,
            written: 0,
            dropped: 0,
        }
    }

    /// Appends `payloads` (in order per partition); drops them after
    /// [`ATTEMPTS`] failed tries.
    pub fn send(&mut self, payloads: &[String]) {
        if payloads.is_empty() {
            return;
        }
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 << attempt.min(4)));
            }
            match self.try_send(payloads) {
                Ok(()) => {
                    self.written += payloads.len() as u64;
                    return;
                }
                Err(e) => {
                    // Ask again who leads what, on fresh connections.
                    self.leaders.clear();
                    self.connections.clear();
                    last = Some(e);
                }
            }
        }
        self.dropped += 1;
        tracing::warn!(
            topic = %self.topic,
            records = payloads.len(),
            "topic sink: notifications dropped after {ATTEMPTS} tries: {}",
            last.map_or_else(String::new, |e| e.to_string())
        );
    }

    fn try_send(&mut self, payloads: &[String]) -> Result<(), ClientError> {
        if self.leaders.is_empty() {
            self.refresh()?;
        }
        let mut by_partition: BTreeMap<usize, Vec<&String>> = BTreeMap::new();
        for payload in payloads {
            let partition = record_key(payload)
                .as_ref()
                .map_or(0, |k| crc32c::crc32c(k) as usize % self.leaders.len());
            by_partition.entry(partition).or_default().push(payload);
        }
        let now = crate::raft::node::now_ms() as i64;
        for (partition, payloads) in by_partition {
            let leader = self.leaders[partition].ok_or_else(|| {
                ClientError::Protocol(format!("partition {partition} has no leader"))
            })?;
            let batch = encode_batch(&payloads, now)?;
            let request = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(IO_TIMEOUT.as_millis() as i32)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(partition as i32)
                                .with_records(Some(batch)),
                        ]),
                ]);
            let response: ProduceResponse =
                self.call(leader, ApiKey::Produce, PRODUCE_VERSION, &request)?;
            let code = response
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .map(|p| p.error_code)
                .find(|c| *c != 0);
            if let Some(code) = code {
                return Err(ClientError::Kafka(code));
            }
        }
        Ok(())
    }

    /// Learns the topic's partitions and their leaders, creating the topic
    /// if it is missing.
    fn refresh(&mut self) -> Result<(), ClientError> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(self.topic.clone())),
            ))]))
            .with_allow_auto_topic_creation(false);
        let mut last = None;
        for addr in self.bootstrap.clone() {
            match self.call::<_, MetadataResponse>(
                addr,
                ApiKey::Metadata,
                METADATA_VERSION,
                &request,
            ) {
                Ok(metadata) => return self.learn(addr, metadata),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no Kafka listener known".into())))
    }

    fn learn(&mut self, asked: SocketAddr, metadata: MetadataResponse) -> Result<(), ClientError> {
        const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
        let brokers: HashMap<i32, SocketAddr> = metadata
            .brokers
            .iter()
            .filter_map(|b| {
                let addr = format!("{}:{}", b.host, b.port).parse().ok()?;
                Some((b.node_id.0, addr))
            })
            .collect();
        let Some(topic) = metadata.topics.first() else {
            return Err(ClientError::Protocol("Metadata named no topic".into()));
        };
        if topic.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            self.create(asked)?;
            return Err(ClientError::Protocol(format!(
                "topic {} created; waiting for its leader",
                self.topic
            )));
        }
        if topic.error_code != 0 {
            return Err(ClientError::Kafka(topic.error_code));
        }
        let mut leaders = vec![None; topic.partitions.len()];
        for p in &topic.partitions {
            if let Some(slot) = usize::try_from(p.partition_index)
                .ok()
                .and_then(|i| leaders.get_mut(i))
            {
                *slot = brokers.get(&p.leader_id.0).copied();
            }
        }
        if leaders.is_empty() {
            return Err(ClientError::Protocol("the topic has no partitions".into()));
        }
        self.leaders = leaders;
        Ok(())
    }

    fn create(&mut self, addr: SocketAddr) -> Result<(), ClientError> {
        const TOPIC_ALREADY_EXISTS: i16 = 36;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(IO_TIMEOUT.as_millis() as i32)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                    .with_num_partitions(1)
                    .with_replication_factor(self.replication),
            ]);
        let response: CreateTopicsResponse =
            self.call(addr, ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &request)?;
        match response.topics.first().map(|t| t.error_code) {
            Some(0 | TOPIC_ALREADY_EXISTS) => {
                tracing::info!(topic = %self.topic, "topic sink: created its topic");
                Ok(())
            }
            Some(code) => Err(ClientError::Kafka(code)),
            None => Err(ClientError::Protocol(
                "CreateTopics answered nothing".into(),
            )),
        }
    }

    /// One request and its response on the connection to `addr`.
    fn call<Q: Encodable, A: Decodable>(
        &mut self,
        addr: SocketAddr,
        key: ApiKey,
        version: i16,
        request: &Q,
    ) -> Result<A, ClientError> {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("leaderhook-topic-sink")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        let protocol = |e: anyhow::Error| ClientError::Protocol(e.to_string());
        header
            .encode(&mut buf, key.request_header_version(version))
            .map_err(protocol)?;
        request.encode(&mut buf, version).map_err(protocol)?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let io = |e| ClientError::Io(addr, e);
        let stream = match self.connections.entry(addr) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(io)?;
                s.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
                s.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
                v.insert(s)
            }
        };
        stream.write_all(&buf).map_err(io)?;
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).map_err(io)?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RESPONSE)
            .ok_or_else(|| ClientError::Protocol(format!("response frame of {size} bytes")))?;
        let mut body = vec![0; size];
        stream.read_exact(&mut body).map_err(io)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(protocol)?;
        if header.correlation_id != self.correlation {
            return Err(ClientError::Protocol("response to another request".into()));
        }
        let answer = A::decode(&mut body, version).map_err(protocol)?;
        if body.has_remaining() {
            tracing::debug!(topic = %self.topic, "topic sink: {} trailing response bytes", body.remaining());
        }
        Ok(answer)
    }
}

/// One v2 record batch of `payloads` (keyed by [`record_key`]), as a
/// producer without idempotence writes it.
fn encode_batch(payloads: &[&String], now: i64) -> Result<Bytes, ClientError> {
    let records: Vec<Record> = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // No idempotence: the batch's base sequence is -1. The encoder
            // keeps records in one batch while offset - sequence is constant.
            sequence: i as i32 - 1,
            timestamp: now,
            key: record_key(payload),
            value: Some(Bytes::from((*payload).clone())),
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok(batch.freeze())
}

/// `topic-partition` of a JSON payload naming them, as the record key.
fn record_key(payload: &str) -> Option<Bytes> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let topic = value.get("topic")?.as_str()?;
    let partition = value.get("partition")?.as_u64()?;
    Some(Bytes::from(format!("{topic}-{partition}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_pass_the_brokers_own_checks() {
        let payloads = [
            r#"{"topic":"orders","partition":3,"term":7}"#.to_owned(),
            "plain".to_owned(),
        ];
        let refs: Vec<&String> = payloads.iter().collect();
        let batch = encode_batch(&refs, 1_700_000_000_000).unwrap();
        let header =
            crate::partition_log::record_batch::check(&batch).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header.records, 2);
    }

    #[test]
    fn records_are_keyed_by_the_partition_a_payload_names() {
        assert_eq!(
            record_key(r#"{"topic":"orders","partition":3,"term":7}"#),
            Some(Bytes::from_static(b"orders-3"))
        );
        assert_eq!(record_key("node 2 lost the leader of orders-0"), None);
        assert_eq!(record_key(r#"{"topic":"orders"}"#), None);
    }
}
