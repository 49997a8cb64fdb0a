//! The records of an offsets partition's Raft log.
//!
//! # Stored format
//!
//! One format byte ([`FORMAT_V1`]) followed by the record as JSON, bytes
//! (protocol metadata, assignments) as hex strings. The types are the
//! broker's own: Kafka's `__consumer_offsets` key/value schemas and the
//! plugin contract can change without changing what is on disk. A later
//! release reads older formats by their byte.

use serde::{Deserialize, Serialize};

/// Format byte of records written by this release.
pub const FORMAT_V1: u8 = 1;

/// Largest encoded record: one Raft entry, well inside the transport's
/// 16 MiB frame. A rebalance whose membership does not fit fails its
/// SyncGroup (UNKNOWN_SERVER_ERROR, as Kafka answers a group record too
/// large for its log).
pub const MAX_RECORD_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRecord {
    /// A group's membership once a rebalance completed (its leader's
    /// assignments were handed out), or once it emptied.
    Membership { group: String, state: Membership },
    /// Committed offsets of a group.
    Offsets {
        group: String,
        offsets: Vec<CommittedOffset>,
    },
    /// DeleteGroups: the group and its offsets.
    DeleteGroup { group: String },
    /// OffsetDelete: some of a group's offsets.
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
    },
}

/// A group as a coordinator that takes over loads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Kafka's protocol type ("consumer", "connect", ...); none while empty
    /// and never joined.
    pub protocol_type: Option<String>,
    pub generation: i32,
    /// The protocol (assignor) chosen for this generation.
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// The member's protocols, in its order of preference, with metadata.
    pub protocols: Vec<Protocol>,
    #[serde(with = "hex_bytes")]
    pub assignment: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    pub name: String,
    #[serde(with = "hex_bytes")]
    pub metadata: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The leader epoch of the record at `offset - 1` as the client knew it
    /// (-1: unknown).
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: u64,
}

/// A stored record this release cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("group record of stored format {0}; this release reads format {FORMAT_V1}")]
    UnknownFormat(u8),
    #[error("group record of format {FORMAT_V1} does not decode: {0}")]
    Malformed(String),
    #[error(
        "offsets partition snapshot of stored format {0}; this release reads format {v}",
        v = super::store::SNAPSHOT_FORMAT_V1
    )]
    UnknownSnapshotFormat(u8),
}

impl GroupRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![FORMAT_V1];
        serde_json::to_writer(&mut bytes, self).expect("records serialise");
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            Some((&FORMAT_V1, json)) => {
                serde_json::from_slice(json).map_err(|e| DecodeError::Malformed(e.to_string()))
            }
            Some((&format, _)) => Err(DecodeError::UnknownFormat(format)),
            None => Err(DecodeError::Malformed("empty record".into())),
        }
    }

    pub fn group(&self) -> &str {
        match self {
            GroupRecord::Membership { group, .. }
            | GroupRecord::Offsets { group, .. }
            | GroupRecord::DeleteGroup { group }
            | GroupRecord::DeleteOffsets { group, .. } => group,
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_their_format_byte() {
        let record = GroupRecord::Membership {
            group: "g".into(),
            state: Membership {
                protocol_type: Some("consumer".into()),
                generation: 3,
                protocol: Some("range".into()),
                leader: Some("m-1".into()),
                members: vec![StoredMember {
                    member_id: "m-1".into(),
                    instance_id: Some("i-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 30_000,
                    protocols: vec![Protocol {
                        name: "range".into(),
                        metadata: vec![0, 1, 255],
                    }],
                    assignment: vec![9, 8],
                }],
            },
        };
        let bytes = record.encode();
        assert_eq!(bytes[0], FORMAT_V1);
        assert!(String::from_utf8_lossy(&bytes).contains("\"0001ff\""));
        assert_eq!(GroupRecord::decode(&bytes).unwrap(), record);
    }

    #[test]
    fn unknown_or_broken_records_are_errors() {
        assert_eq!(
            GroupRecord::decode(&[7, 1]),
            Err(DecodeError::UnknownFormat(7))
        );
        assert!(matches!(
            GroupRecord::decode(&[FORMAT_V1, b'{']),
            Err(DecodeError::Malformed(_))
        ));
        // A Kafka record batch (base offset 0 first) is no record.
        assert_eq!(
            GroupRecord::decode(&[0; 61]),
            Err(DecodeError::UnknownFormat(0))
        );
        assert!(GroupRecord::decode(&[]).is_err());
    }
}
