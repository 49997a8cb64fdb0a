//! The replicated metadata: topics (keyed by their ids), partitions,
//! replica lists and assignments, as the metadata Raft group applies them.
//!
//! - [`topic`]: topic ids, name rules, configs, placement and limits.
//! - [`command`]: the stored commands (versioned) and what applying one did.
//! - [`state`]: the state machine every node applies them to.

pub mod command;
pub mod state;
pub mod topic;

pub use command::{Applied, Command, DecodeError, Refusal};
pub use state::{METADATA_GROUP, Metadata, PartitionMeta, TopicMeta};
pub use topic::{TopicConfigs, TopicId, TopicLimits, TopicPartition};
