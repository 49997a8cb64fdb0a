//! Auto topic creation (Kafka's `auto.create.topics.enable`, on by
//! default): a Metadata request that allows it creates the unknown topics
//! it names, with `num_partitions` partitions and
//! `default_replication_factor` replicas (at most the live nodes), and
//! answers them LEADER_NOT_AVAILABLE until they have leaders, as Kafka
//! does; the client's next Metadata finds them. The creation is a
//! proposal to the metadata group that the request does not wait for; a
//! name is proposed at most once per [`RETRY`] per node, so a client
//! polling Metadata hundreds of times a second proposes it once.

use super::Broker;
use crate::coordinator::OFFSETS_TOPIC;
use crate::metadata::topic::{self, place};
use crate::metadata::{Command, TopicConfigs, TopicId};
use leaderhook_hooks::NodeId;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A name's creation is proposed again after this long without success.
pub const RETRY: Duration = Duration::from_secs(2);
/// Names remembered at most (a client naming endless unknown topics
/// cannot grow this).
const REMEMBERED: usize = 10_000;

/// Names whose creation this node proposed, and when.
#[derive(Default)]
pub struct AutoCreate {
    proposed: Mutex<HashMap<String, Instant>>,
}

/// Why a topic is not created automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCreated {
    /// `auto_create_topics_enable` is off, or the request did not allow it.
    Disabled,
    /// The name is not a valid (or is a reserved) topic name.
    InvalidName(String),
}

impl AutoCreate {
    /// Proposes `name` unless it was proposed within [`RETRY`]. Returns
    /// whether the topic is (being) created.
    pub fn create(&self, broker: &Broker, name: &str, allowed: bool) -> Result<(), NotCreated> {
        if !allowed || !broker.config.auto_create_topics_enable {
            return Err(NotCreated::Disabled);
        }
        if name == OFFSETS_TOPIC {
            return Err(NotCreated::InvalidName(format!("{name} is internal")));
        }
        topic::validate_name(name).map_err(NotCreated::InvalidName)?;
        let now = Instant::now();
        {
            let mut proposed = self.proposed.lock().unwrap_or_else(PoisonError::into_inner);
            if proposed.get(name).is_some_and(|at| now < *at + RETRY) {
                return Ok(());
            }
            if proposed.len() >= REMEMBERED {
                proposed.retain(|_, at| now < *at + RETRY);
            }
            if proposed.len() >= REMEMBERED {
                return Ok(()); // a flood: the names already proposed go on
            }
            proposed.insert(name.to_string(), now);
        }
        let live: Vec<NodeId> = broker.shared.live_nodes().into_iter().collect();
        let replication = (broker.config.default_replication_factor as usize).min(live.len());
        let replicas = match place(
            &live,
            broker.config.num_partitions,
            replication,
            &broker.topic_limits,
        ) {
            Ok(replicas) => replicas,
            Err(e) => {
                tracing::warn!(topic = name, "cannot auto-create: {e}");
                return Ok(());
            }
        };
        let command = Command::CreateTopic {
            name: name.to_string(),
            topic_id: TopicId::random(),
            replicas,
            configs: TopicConfigs::new(),
        };
        // Not waited for: a lost proposal is proposed again after RETRY.
        if let Err(e) = broker
            .raft
            .send(crate::raft::handle::RaftCommand::Propose(command, None))
        {
            tracing::debug!(topic = name, "auto-create not proposed: {e}");
        }
        Ok(())
    }
}
