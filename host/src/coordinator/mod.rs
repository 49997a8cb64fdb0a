//! Consumer groups (Kafka's classic group protocol) whose coordinators
//! follow Raft.
//!
//! Kafka places a group on a partition of its internal offsets topic and
//! makes that partition's leader the group's coordinator. Here the offsets
//! topic ([`OFFSETS_TOPIC`]) is an ordinary replicated topic whose
//! partitions are Raft groups, so a group's coordinator is the Raft leader
//! of partition `hash(group id) % partitions` — found by FindCoordinator in
//! the replicated assignment the hook plugins keep true, like every other
//! partition's leader.
//!
//! Group membership (after each rebalance) and committed offsets are
//! [`record::GroupRecord`]s in that partition's Raft log (the broker's own
//! versioned format, never Kafka's or the plugin contract's types). Every
//! replica applies them to its [`store::GroupStore`], so a new leader has
//! every group already; it coordinates once it serves (an entry of its own
//! term committed, so everything before is applied). Until then it answers
//! COORDINATOR_LOAD_IN_PROGRESS; a node that does not lead the partition
//! answers NOT_COORDINATOR.
//!
//! The join/sync protocol itself (who waits for whom, session and
//! rebalance timeouts, static membership) is live state on the coordinator
//! only ([`group::Group`]), as in Kafka: a coordinator that takes over
//! loads each group as stored (its members, generation and assignments)
//! and its members' sessions start again.
//!
//! KIP-848's consumer protocol (ConsumerGroupHeartbeat) is not supported:
//! clients use the classic protocol, whose assignors (range, roundrobin,
//! cooperative-sticky, ...) run in the clients; the broker only carries
//! their metadata.
//!
//! # Bounds (`[groups]` in the node config, see [`GroupsConfig`])
//!
//! Members per group (`max_members`), groups per offsets partition
//! (`max_groups`), bytes of one member's protocol metadata
//! (`max_member_metadata_bytes`) and of one committed offset's metadata
//! string (`max_offset_metadata_bytes`); a group record must fit one Raft
//! entry ([`record::MAX_RECORD_BYTES`]). Offsets are only accepted for
//! partitions that exist, so a group holds at most one offset per
//! partition of the cluster.
//!
//! # Layout
//!
//! - [`record`]: the replicated records and their stored format.
//! - [`store`]: the state every replica of an offsets partition applies.
//! - [`group`]: one group's live join/sync state machine (pure, clocked by
//!   the caller).
//! - [`service`]: the node's coordinator: routing a group to its offsets
//!   partition, loading groups on a new term, proposing records, timers.

pub mod group;
pub mod record;
pub mod service;
pub mod store;

use serde::{Deserialize, Serialize};

/// The internal topic whose partitions hold groups and their offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The offsets partition of a group, as Kafka computes it:
/// `abs(javaHashCode(group id)) % partitions`.
pub fn partition_for(group_id: &str, partitions: u32) -> u32 {
    let mut hash: i32 = 0;
    for unit in group_id.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs: i32::MIN maps to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs as u32 % partitions.max(1)
}

/// `[groups]` in the node config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupsConfig {
    /// Partitions of the offsets topic, fixed when it is created (by the
    /// first FindCoordinator). Each is a Raft group on each of its
    /// replicas, hence fewer than Kafka's 50.
    pub offsets_topic_partitions: u32,
    /// Replicas per offsets partition (at most the cluster size). The
    /// topic is created once this many nodes are alive.
    pub offsets_topic_replication: u32,
    /// How long a new group waits for more members before its first
    /// rebalance completes (Kafka's `group.initial.rebalance.delay.ms`),
    /// extended by each new member up to the rebalance timeout.
    pub initial_rebalance_delay_ms: u64,
    /// Session timeouts a member may ask for (Kafka's
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`).
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    /// Members per group (Kafka's `group.max.size`).
    pub max_members: usize,
    /// Groups per offsets partition.
    pub max_groups: usize,
    /// Bytes of one member's protocol metadata (all its protocols).
    pub max_member_metadata_bytes: usize,
    /// Bytes of a committed offset's metadata string (Kafka's
    /// `offset.metadata.max.bytes`).
    pub max_offset_metadata_bytes: usize,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self {
            offsets_topic_partitions: 10,
            offsets_topic_replication: 3,
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_members: 1000,
            max_groups: 10_000,
            max_member_metadata_bytes: 1 << 20,
            max_offset_metadata_bytes: 4096,
        }
    }
}

impl GroupsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.offsets_topic_partitions == 0 || self.offsets_topic_replication == 0 {
            return Err(
                "groups.offsets_topic_partitions and offsets_topic_replication must be at least 1"
                    .into(),
            );
        }
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            return Err("groups.min_session_timeout_ms exceeds max_session_timeout_ms".into());
        }
        if self.max_members == 0 || self.max_groups == 0 {
            return Err("groups.max_members and max_groups must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_on_the_partition_kafka_would_choose() {
        // Java: Math.abs("my-group".hashCode()) % 50 and friends.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        // "my-group".hashCode() == 1_116_447_349 (computed with Java's rule).
        let java = "my-group"
            .chars()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(partition_for("my-group", 50), java.unsigned_abs() % 50);
        // Non-ASCII: UTF-16 code units, as Java hashes them.
        let java = "grüppe-😀"
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
        assert_eq!(partition_for("grüppe-😀", 7), java.unsigned_abs() % 7);
        assert!(partition_for("anything", 1) == 0);
    }
}
