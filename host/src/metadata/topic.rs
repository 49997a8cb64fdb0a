//! What a topic is before it is stored: its id, its name rules, its
//! configs, and where its partitions' replicas go. One generator and one
//! validator, used by the Kafka front end and the admin endpoint alike.

use leaderhook_hooks::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A topic's id: Kafka's topic UUID, random at creation. Every internal
/// key uses it (or a partition's Raft group), never the name: a topic
/// deleted and created again under the same name is a new topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TopicId(pub uuid::Uuid);

impl TopicId {
    /// A fresh random (v4) id; never the nil UUID, which means "no id" in Kafka.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl std::fmt::Display for TopicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One partition of one topic incarnation: what stored commands name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: TopicId,
    pub partition: u32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// Longest topic name Kafka accepts.
pub const MAX_NAME_LEN: usize = 249;

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.`
/// or `..`.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name must not be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "topic name is {} characters long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        return Err(format!(
            "topic name {name:?} contains {bad:?}; use only ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Topic configs the broker stores and honours; anything else is refused
/// (Kafka's INVALID_CONFIG), never silently accepted.
pub const SUPPORTED_CONFIGS: &[&str] = &["max.message.bytes", "retention.ms", "retention.bytes"];

/// A topic's configs, validated: only [`SUPPORTED_CONFIGS`], values parsed.
pub type TopicConfigs = BTreeMap<String, String>;

/// Checks topic configs given at creation.
pub fn validate_configs(configs: &TopicConfigs) -> Result<(), String> {
    for (key, value) in configs {
        match key.as_str() {
            "max.message.bytes" => {
                let bytes: u64 = value.parse().map_err(|_| {
                    format!("max.message.bytes must be a positive integer, not {value:?}")
                })?;
                if bytes == 0 {
                    return Err("max.message.bytes must be at least 1".into());
                }
            }
            "retention.ms" | "retention.bytes" => {
                let v: i64 = value.parse().map_err(|_| {
                    format!("{key} must be an integer (-1: no limit), not {value:?}")
                })?;
                if v < -1 {
                    return Err(format!(
                        "{key} must be -1 (no limit) or at least 0, not {v}"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "topic config {other:?} is not supported (supported: {})",
                    SUPPORTED_CONFIGS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Bounds on what one creation may ask for. A metadata command must stay far
/// below the Raft message size, and every replica is a Raft group on some
/// node: one request must not be able to ask for millions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicLimits {
    /// Most partitions one topic may have.
    pub max_partitions_per_topic: u32,
    /// Most partitions (summed over its topics) one CreateTopics request may create.
    pub max_partitions_per_request: u32,
}

impl Default for TopicLimits {
    fn default() -> Self {
        Self {
            max_partitions_per_topic: 10_000,
            max_partitions_per_request: 10_000,
        }
    }
}

/// Why a topic cannot be created as asked (each maps to a Kafka error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    PolicyViolation(String),
}

/// Round-robin placement of `partitions` × `replication` over `nodes` (the
/// live ones; sorted here), starting each partition one node further, so
/// preferred replicas (and so first leaders) spread evenly.
pub fn place(
    nodes: &[NodeId],
    partitions: u32,
    replication: usize,
    limits: &TopicLimits,
) -> Result<Vec<Vec<NodeId>>, PlacementError> {
    if partitions == 0 {
        return Err(PlacementError::InvalidPartitions(
            "a topic needs at least one partition".into(),
        ));
    }
    if partitions > limits.max_partitions_per_topic {
        return Err(PlacementError::PolicyViolation(format!(
            "{partitions} partitions exceed the limit of {} per topic",
            limits.max_partitions_per_topic
        )));
    }
    if replication == 0 || replication > nodes.len() {
        return Err(PlacementError::InvalidReplicationFactor(format!(
            "replication factor {replication} is invalid with {} live nodes",
            nodes.len()
        )));
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

/// Checks a manual replica assignment (CreateTopics' `assignments`).
pub fn check_assignment(
    cluster: &[NodeId],
    assignment: &[Vec<NodeId>],
    limits: &TopicLimits,
) -> Result<(), PlacementError> {
    if assignment.is_empty() {
        return Err(PlacementError::InvalidPartitions(
            "a topic needs at least one partition".into(),
        ));
    }
    if assignment.len() as u64 > u64::from(limits.max_partitions_per_topic) {
        return Err(PlacementError::PolicyViolation(format!(
            "{} partitions exceed the limit of {} per topic",
            assignment.len(),
            limits.max_partitions_per_topic
        )));
    }
    let replication = assignment[0].len();
    for (i, replicas) in assignment.iter().enumerate() {
        if replicas.is_empty() || replicas.len() != replication {
            return Err(PlacementError::InvalidReplicationFactor(format!(
                "partition {i} lists {} replicas; every partition needs the same number, at least one",
                replicas.len()
            )));
        }
        let mut distinct = replicas.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != replicas.len() {
            return Err(PlacementError::InvalidReplicationFactor(format!(
                "partition {i} lists a replica twice: {replicas:?}"
            )));
        }
        if let Some(stranger) = replicas.iter().find(|r| !cluster.contains(r)) {
            return Err(PlacementError::InvalidReplicationFactor(format!(
                "partition {i} names node {stranger}, which is not in the cluster"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        for good in ["orders", "a.b_c-D9", &"x".repeat(249)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ids_are_random_and_never_nil() {
        let a = TopicId::random();
        let b = TopicId::random();
        assert_ne!(a, b);
        assert!(!a.0.is_nil());
    }

    #[test]
    fn placement_is_round_robin_and_bounded() {
        let limits = TopicLimits::default();
        assert_eq!(
            place(&[3, 1, 2], 3, 2, &limits).unwrap(),
            vec![vec![1, 2], vec![2, 3], vec![3, 1]]
        );
        assert!(matches!(
            place(&[1, 2], 1, 3, &limits),
            Err(PlacementError::InvalidReplicationFactor(_))
        ));
        assert!(matches!(
            place(&[1, 2], 0, 1, &limits),
            Err(PlacementError::InvalidPartitions(_))
        ));
        assert!(matches!(
            place(&[1, 2], u32::MAX, 1, &limits),
            Err(PlacementError::PolicyViolation(_))
        ));
    }

    #[test]
    fn manual_assignments_are_checked() {
        let limits = TopicLimits::default();
        assert!(check_assignment(&[1, 2, 3], &[vec![1, 2], vec![3, 1]], &limits).is_ok());
        for bad in [
            vec![],
            vec![vec![1, 1]],
            vec![vec![1, 9]],
            vec![vec![1, 2], vec![3]],
            vec![vec![]],
        ] {
            assert!(
                check_assignment(&[1, 2, 3], &bad, &limits).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn only_supported_configs_are_accepted() {
        let config = |k: &str, v: &str| TopicConfigs::from([(k.to_string(), v.to_string())]);
        assert!(validate_configs(&config("max.message.bytes", "2048")).is_ok());
        assert!(validate_configs(&config("max.message.bytes", "lots")).is_err());
        assert!(validate_configs(&config("max.message.bytes", "0")).is_err());
        assert!(validate_configs(&config("retention.ms", "1000")).is_ok());
        assert!(validate_configs(&config("retention.bytes", "-1")).is_ok());
        assert!(validate_configs(&config("retention.ms", "-2")).is_err());
        assert!(validate_configs(&config("retention.ms", "soon")).is_err());
        assert!(validate_configs(&config("cleanup.policy", "compact")).is_err());
    }
}
