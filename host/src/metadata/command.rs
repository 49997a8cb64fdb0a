//! The commands of the metadata Raft group, as they are stored in its log,
//! and what applying one did.
//!
//! # Stored format
//!
//! An entry is one format byte ([`FORMAT_V1`]) followed by the command as
//! JSON. The types here are the broker's own (never the plugin contract's
//! generated ones), so the contract can change without changing what is on
//! disk; a later release reads older formats by their byte. An entry of an
//! unknown format is not guessed at: the node refuses to go on
//! ([`DecodeError`]).

use super::topic::{TopicConfigs, TopicId, TopicPartition};
use leaderhook_hooks::{CapError, NodeId};
use serde::{Deserialize, Serialize};

/// Format byte of [`Command`] entries written by this release.
pub const FORMAT_V1: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateTopic {
        name: String,
        /// Chosen by the proposer, so it is the same on every node.
        topic_id: TopicId,
        /// Per partition, preferred replica first.
        replicas: Vec<Vec<NodeId>>,
        #[serde(default)]
        configs: TopicConfigs,
    },
    DeleteTopic {
        topic_id: TopicId,
    },
    /// A plugin's term-fenced assignment write.
    SetLeader {
        partition: TopicPartition,
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
        partition: TopicPartition,
        isr: Vec<NodeId>,
        epoch: u64,
    },
    /// InitProducerId: takes the next idempotent producer id. Replicated
    /// so ids are unique across the cluster and across restarts.
    AllocateProducerId,
}

/// A stored entry that this release cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("metadata entry of stored format {0}; this release reads format {FORMAT_V1}")]
    UnknownFormat(u8),
    #[error("metadata entry of format {FORMAT_V1} does not decode: {0}")]
    Malformed(String),
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![FORMAT_V1];
        // Plain data with no maps keyed by non-strings: serialisation cannot fail.
        serde_json::to_writer(&mut bytes, self).expect("commands serialise");
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.split_first() {
            Some((&FORMAT_V1, json)) => {
                serde_json::from_slice(json).map_err(|e| DecodeError::Malformed(e.to_string()))
            }
            Some((&format, _)) => Err(DecodeError::UnknownFormat(format)),
            None => Err(DecodeError::Malformed("empty entry".into())),
        }
    }

    /// The partition an assignment write names, with its leader and epoch.
    pub fn leader_write(&self) -> Option<(TopicPartition, NodeId, u64)> {
        match self {
            Command::SetLeader {
                partition,
                leader,
                epoch,
                ..
            } => Some((*partition, *leader, *epoch)),
            _ => None,
        }
    }
}

/// What applying a command did; answered to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    TopicCreated {
        topic_id: TopicId,
        groups: Vec<u64>,
    },
    TopicDeleted {
        groups: Vec<u64>,
    },
    LeaderSet,
    IsrSet,
    ProducerId(i64),
    /// The command was valid Raft-wise but refused by the state machine.
    Refused(Refusal),
}

/// Why the state machine refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic id {0} is already in use")]
    TopicIdInUse(TopicId),
    #[error("unknown topic {0}")]
    UnknownTopic(TopicId),
    #[error("unknown partition {0} (its topic was deleted or never existed)")]
    UnknownPartition(TopicPartition),
    #[error("topic {0}: every partition needs replicas")]
    NoReplicas(String),
    #[error("{partition}: {}", error.describe())]
    Fenced {
        partition: TopicPartition,
        error: CapError,
    },
    #[error("{partition}: ISR of epoch {epoch}, the assignment is at {stored}")]
    IsrStale {
        partition: TopicPartition,
        epoch: u64,
        stored: u64,
    },
    #[error(
        "{partition}: ISR {isr:?} must hold the leader {leader} and only replicas {replicas:?}"
    )]
    IsrInvalid {
        partition: TopicPartition,
        isr: Vec<NodeId>,
        leader: NodeId,
        replicas: Vec<NodeId>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_with_their_format_byte() {
        let c = Command::SetLeader {
            partition: TopicPartition {
                topic: TopicId::random(),
                partition: 2,
            },
            leader: 3,
            epoch: 9,
            attested: true,
        };
        let bytes = c.encode();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(Command::decode(&bytes).unwrap(), c);
    }

    #[test]
    fn unknown_or_broken_entries_are_errors() {
        // The first wave's entries were bare JSON (starting with '{').
        assert_eq!(
            Command::decode(br#"{"AllocateProducerId":null}"#),
            Err(DecodeError::UnknownFormat(b'{'))
        );
        assert!(matches!(
            Command::decode(&[FORMAT_V1, b'{']),
            Err(DecodeError::Malformed(_))
        ));
        assert!(Command::decode(&[]).is_err());
        assert_eq!(
            Command::decode(&[9, 1, 2]),
            Err(DecodeError::UnknownFormat(9))
        );
    }
}
