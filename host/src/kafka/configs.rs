//! Topic configs as the config APIs see them: every supported key
//! (`metadata::topic::SUPPORTED_CONFIGS`) with its stored value or its
//! default, and the broker's own settings (read-only: they come from the
//! node config file).

use super::Broker;
use crate::metadata::{TopicConfigs, TopicMeta};

/// Kafka's config resource types.
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

/// Kafka's config sources.
pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const STATIC_BROKER_CONFIG: i8 = 4;
pub const DEFAULT_CONFIG: i8 = 5;

/// Kafka's config types (DescribeConfigs v3+).
pub const BOOLEAN: i8 = 1;
pub const INT: i8 = 3;

/// One described config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
    pub config_type: i8,
}

/// Every supported config of a topic: stored, or the default.
pub fn of_topic(broker: &Broker, topic: &TopicMeta) -> Vec<Described> {
    let stored = |key: &str| topic.configs.get(key).cloned();
    vec![Described {
        name: "max.message.bytes",
        value: stored("max.message.bytes")
            .unwrap_or_else(|| broker.config.message_max_bytes.to_string()),
        source: if stored("max.message.bytes").is_some() {
            DYNAMIC_TOPIC_CONFIG
        } else {
            DEFAULT_CONFIG
        },
        read_only: false,
        config_type: INT,
    }]
}

/// The broker settings clients ask about, from the node config.
pub fn of_broker(broker: &Broker) -> Vec<Described> {
    let c = &broker.config;
    let read_only = |name, value: String, config_type| Described {
        name,
        value,
        source: STATIC_BROKER_CONFIG,
        read_only: true,
        config_type,
    };
    vec![
        read_only(
            "auto.create.topics.enable",
            c.auto_create_topics_enable.to_string(),
            BOOLEAN,
        ),
        read_only("num.partitions", c.num_partitions.to_string(), INT),
        read_only(
            "default.replication.factor",
            c.default_replication_factor.to_string(),
            INT,
        ),
        read_only("message.max.bytes", c.message_max_bytes.to_string(), INT),
        read_only(
            "offsets.topic.num.partitions",
            broker
                .coordinator
                .config()
                .offsets_topic_partitions
                .to_string(),
            INT,
        ),
    ]
}

/// A broker resource's name must be this node's id (or empty: any node).
pub fn is_this_broker(broker: &Broker, name: &str) -> bool {
    name.is_empty() || name == broker.node.to_string()
}

/// Validates and proposes a topic's new configs (unless `validate_only`).
pub async fn set(
    broker: &Broker,
    topic: &TopicMeta,
    configs: TopicConfigs,
    validate_only: bool,
) -> Result<(), (kafka_protocol::ResponseError, String)> {
    use crate::metadata::{Applied, Command};
    use kafka_protocol::ResponseError;
    crate::metadata::topic::validate_configs(&configs)
        .map_err(|e| (ResponseError::InvalidConfig, e))?;
    if validate_only {
        return Ok(());
    }
    let command = Command::SetTopicConfigs {
        topic_id: topic.id,
        configs,
    };
    match broker
        .raft
        .propose(command, std::time::Duration::from_secs(10))
        .await
    {
        Ok(Applied::ConfigsSet) => Ok(()),
        Ok(Applied::Refused(why)) => Err((ResponseError::UnknownTopicOrPartition, why.to_string())),
        Ok(other) => Err((ResponseError::UnknownServerError, format!("{other:?}"))),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}
