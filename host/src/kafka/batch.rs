//! Checks on the records a producer sends for one partition, before they
//! are proposed to Raft, answered with the errors Kafka gives:
//!
//! - larger than the partition's limit ([`max_message_bytes`]):
//!   MESSAGE_TOO_LARGE;
//! - not exactly one record batch: INVALID_RECORD;
//! - a batch that fails [`record_batch::check`]: CORRUPT_MESSAGE for damaged
//!   bytes (framing, CRC), INVALID_RECORD for content Kafka refuses (magic,
//!   base offset, record count against `lastOffsetDelta`, records, …).
//!
//! # Size limit and the Raft transport
//!
//! A produced batch becomes one Raft entry, and a Raft message carrying it
//! must fit one transport frame (`raft::transport::MAX_FRAME_LEN`, 16 MiB):
//! an entry that does not is dropped by the transport on every retry, and
//! its partition stops committing for good. So the limit a partition
//! enforces is never above [`MAX_RAFT_BATCH_BYTES`], the frame less
//! [`RAFT_MESSAGE_OVERHEAD`]; the broker's `[kafka] message_max_bytes` is
//! checked against it when the config is loaded.

use crate::partition_log::record_batch::{self, BatchError};
use crate::raft::transport::MAX_FRAME_LEN;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

/// Room in a transport frame for everything around one entry's batch: the
/// frame's count, the envelope header, the Raft message and entry fields
/// (about 200 bytes at their largest; the test below measures it).
pub const RAFT_MESSAGE_OVERHEAD: usize = 64 * 1024;
/// The largest record batch a Raft entry can carry between nodes.
pub const MAX_RAFT_BATCH_BYTES: usize = MAX_FRAME_LEN - RAFT_MESSAGE_OVERHEAD;
/// Kafka's topic config that overrides the broker's `message.max.bytes`.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";

/// Why a produced record set is refused, as a Kafka error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: ResponseError,
    pub message: String,
}

fn refuse(error: ResponseError, message: String) -> Refused {
    Refused { error, message }
}

impl From<BatchError> for Refused {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Corrupt(c) => refuse(ResponseError::CorruptMessage, c.to_string()),
            BatchError::Invalid(m) => refuse(ResponseError::InvalidRecord, m),
        }
    }
}

/// The largest record batch (in bytes, as sent) a partition of a topic
/// with `topic_configs` accepts: its `max.message.bytes` if set, else the
/// broker's `message_max_bytes` — never more than a Raft entry can carry.
pub fn max_message_bytes(broker_default: usize, topic_configs: &BTreeMap<String, String>) -> usize {
    topic_configs
        .get(MAX_MESSAGE_BYTES)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(broker_default)
        .min(MAX_RAFT_BATCH_BYTES)
}

/// Checks one partition's records from a Produce request: exactly one
/// batch of at most `max_bytes`, acceptable to [`record_batch::check`].
pub fn check_produced(records: &[u8], max_bytes: usize) -> Result<(), Refused> {
    if records.len() > max_bytes {
        return Err(refuse(
            ResponseError::MessageTooLarge,
            format!(
                "the record batch is {} bytes, over the partition's limit of {max_bytes} \
                 (max.message.bytes)",
                records.len()
            ),
        ));
    }
    let batches = record_batch::split(records)?;
    let [batch] = batches[..] else {
        return Err(refuse(
            ResponseError::InvalidRecord,
            format!(
                "a produce request must carry exactly one record batch per partition, got {}",
                batches.len()
            ),
        ));
    };
    record_batch::check(batch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition_log::record_batch::tests::{batch, resealed};
    use raft::prelude::{Entry, Message, MessageType};

    #[test]
    fn each_defect_gets_the_error_kafka_gives() {
        let good = batch(3);
        assert_eq!(check_produced(&good, 1 << 20), Ok(()));
        let error = |records: &[u8]| check_produced(records, 1 << 20).unwrap_err().error;
        let mut bad = good.clone();
        bad[70] ^= 1;
        assert_eq!(error(&bad), ResponseError::CorruptMessage);
        let two = [good.clone(), good.clone()].concat();
        assert_eq!(error(&two), ResponseError::InvalidRecord);
        assert_eq!(error(&[]), ResponseError::InvalidRecord);
        assert_eq!(error(&good[..30]), ResponseError::CorruptMessage);
        let mut lie = good.clone();
        lie[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(error(&resealed(lie)), ResponseError::InvalidRecord);
        let mut old = good.clone();
        old[16] = 1;
        assert_eq!(error(&resealed(old)), ResponseError::InvalidRecord);
        let refused = check_produced(&good, good.len() - 1).unwrap_err();
        assert_eq!(refused.error, ResponseError::MessageTooLarge);
        assert!(refused.message.contains(&format!("{} bytes", good.len())));
        assert_eq!(check_produced(&good, good.len()), Ok(()));
    }

    #[test]
    fn the_topic_config_overrides_the_broker_limit_up_to_what_raft_carries() {
        let none = BTreeMap::new();
        assert_eq!(max_message_bytes(1000, &none), 1000);
        let topic = |v: &str| BTreeMap::from([(MAX_MESSAGE_BYTES.to_string(), v.to_string())]);
        assert_eq!(max_message_bytes(1000, &topic("5000")), 5000);
        assert_eq!(max_message_bytes(1000, &topic("10")), 10);
        assert_eq!(
            max_message_bytes(1000, &topic(&u64::MAX.to_string())),
            MAX_RAFT_BATCH_BYTES
        );
        assert_eq!(max_message_bytes(usize::MAX, &none), MAX_RAFT_BATCH_BYTES);
    }

    #[test]
    fn the_broker_limit_must_fit_a_raft_entry() {
        use crate::config::KafkaConfig;
        assert_eq!(KafkaConfig::default().validate(), Ok(()));
        let at_most = KafkaConfig {
            message_max_bytes: MAX_RAFT_BATCH_BYTES,
            ..Default::default()
        };
        assert_eq!(at_most.validate(), Ok(()));
        let over = KafkaConfig {
            message_max_bytes: MAX_RAFT_BATCH_BYTES + 1,
            ..Default::default()
        };
        // The refusal names the setting, its bound and why the bound is there.
        assert_eq!(
            over.validate(),
            Err(format!(
                "kafka.message_max_bytes = {} must be between 1 and {MAX_RAFT_BATCH_BYTES}: a \
                 record batch is one Raft entry, and the Raft transport's frame \
                 (raft::transport::MAX_FRAME_LEN, 16 MiB) less 64 KiB of message overhead is \
                 the largest entry it carries",
                MAX_RAFT_BATCH_BYTES + 1
            ))
        );
    }

    /// The largest Raft message that carries a batch of the largest size
    /// accepted, every numeric field at its widest, fits a transport frame
    /// (payload: u32 count, then u64 group, u32 length, the message).
    #[test]
    fn the_largest_accepted_batch_fits_a_raft_frame() {
        let entry = Entry {
            term: u64::MAX,
            index: u64::MAX,
            data: vec![0xAB; MAX_RAFT_BATCH_BYTES].into(),
            context: vec![0xCD; 16].into(), // the proposal context
            sync_log: true,
            ..Default::default()
        };
        let mut message = Message {
            to: u64::MAX,
            from: u64::MAX,
            term: u64::MAX,
            log_term: u64::MAX,
            index: u64::MAX,
            commit: u64::MAX,
            commit_term: u64::MAX,
            reject: true,
            reject_hint: u64::MAX,
            request_snapshot: u64::MAX,
            priority: i64::MIN,
            deprecated_priority: u64::MAX,
            entries: vec![entry].into(),
            ..Default::default()
        };
        message.set_msg_type(MessageType::MsgAppend);
        let size = protobuf::Message::compute_size(&message) as usize;
        let frame_payload = 4 + 8 + 4 + size;
        assert!(
            frame_payload <= MAX_FRAME_LEN,
            "{frame_payload} > {MAX_FRAME_LEN}"
        );
        assert!(
            frame_payload - MAX_RAFT_BATCH_BYTES < 1024,
            "overhead measured"
        );
    }
}
