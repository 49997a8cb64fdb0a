//! A partition leader's appends: the leader decides before it proposes,
//! so the Raft log holds exactly what consumers read (as Kafka's leader
//! does). It assigns each batch its offsets and its partition leader epoch,
//! answers a retried idempotent batch with its original offset (or waits
//! for it if still in flight), refuses sequence gaps and old epochs, and
//! answers each produce once its entry is committed and applied.
//!
//! [`Pending`] starts from the applied state when the leader starts serving
//! (everything before its first own entry is applied by then), so its
//! decisions continue exactly where the log is.

use crate::partition_log::entry::PREFIX_LEN;
use crate::partition_log::producers::{ProducerBatch, Producers};
use crate::partition_log::{PartitionLog, Refused, producer_batch, record_batch};
use crate::raft::handle::{AppendError, AppendReply};
use leaderhook_hooks::NodeId;
use std::collections::HashMap;

/// What a leader has decided and proposed but not applied yet.
pub struct Pending {
    /// The offset the next proposed batch takes.
    next_offset: i64,
    /// Producers as of the proposals so far.
    producers: Producers,
    /// Produce requests waiting for their entry, by proposal id.
    waiting: HashMap<u64, AppendReply>,
    /// Retries of a batch still in flight, by its base offset.
    retries: HashMap<i64, Vec<AppendReply>>,
}

/// The leader's decision on one produced batch.
pub enum Decision {
    /// Propose the entry (offsets written in); `records` offsets it takes.
    Propose {
        base: i64,
        records: i32,
        producer: Option<ProducerBatch>,
    },
    /// Answered already (a retry, or refused).
    Answered,
}

impl Pending {
    pub fn new(log: &PartitionLog) -> Self {
        Self {
            next_offset: log.high_watermark(),
            producers: log.producers().clone(),
            waiting: HashMap::new(),
            retries: HashMap::new(),
        }
    }

    /// Decides on `entry` (an `entry::records` entry holding a batch the
    /// produce handler checked). On `Propose`, its offsets and `term` are
    /// written into it; `reply` is kept until [`Pending::proposed`] or
    /// answered here.
    pub fn decide(
        &mut self,
        entry: &mut [u8],
        term: u64,
        applied_next: i64,
        reply: AppendReply,
    ) -> (Decision, Option<AppendReply>) {
        let batch = &mut entry[PREFIX_LEN..];
        let header = match record_batch::check(batch) {
            Ok(header) => header,
            Err(e) => {
                let _ = reply.send(Err(AppendError::Refused(Refused::Batch(e))));
                return (Decision::Answered, None);
            }
        };
        let producer = producer_batch(&header);
        if let Some(p) = &producer {
            match self.producers.check(p) {
                Err(e) => {
                    let _ = reply.send(Err(AppendError::Refused(e.into())));
                    return (Decision::Answered, None);
                }
                Ok(Some(base)) if base < applied_next => {
                    let _ = reply.send(Ok(base));
                    return (Decision::Answered, None);
                }
                Ok(Some(base)) => {
                    // Still in flight: answered with it.
                    self.retries.entry(base).or_default().push(reply);
                    return (Decision::Answered, None);
                }
                Ok(None) => {}
            }
        }
        let base = self.next_offset;
        let epoch = i32::try_from(term).unwrap_or(i32::MAX);
        record_batch::assign(batch, base, epoch);
        (
            Decision::Propose {
                base,
                records: header.records,
                producer,
            },
            Some(reply),
        )
    }

    /// The entry decided on was proposed as `id`.
    pub fn proposed(
        &mut self,
        id: u64,
        reply: AppendReply,
        base: i64,
        records: i32,
        producer: Option<ProducerBatch>,
        now_ms: u64,
    ) {
        self.next_offset = base + i64::from(records);
        if let Some(p) = producer {
            self.producers.record(&p, base, now_ms);
        }
        self.waiting.insert(id, reply);
    }

    /// The entry proposed as `id` (if this leader proposed it) holding the
    /// batch at `base` was applied: answers everyone waiting for it.
    pub fn applied(&mut self, id: Option<u64>, base: i64) {
        if let Some(reply) = id.and_then(|id| self.waiting.remove(&id)) {
            let _ = reply.send(Ok(base));
        }
        for reply in self.retries.remove(&base).unwrap_or_default() {
            let _ = reply.send(Ok(base));
        }
    }

    /// Leadership is gone: everyone still waiting retries with the leader
    /// this replica knows.
    pub fn abandon(self, leader: Option<NodeId>) {
        let replies = self
            .waiting
            .into_values()
            .chain(self.retries.into_values().flatten());
        for reply in replies {
            let _ = reply.send(Err(AppendError::NotLeader(leader)));
        }
    }

    pub fn producers_mut(&mut self) -> &mut Producers {
        &mut self.producers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition_log::entry;
    use crate::partition_log::record_batch::tests::batch_from;
    use tokio::sync::oneshot;

    type Answer = oneshot::Receiver<Result<i64, AppendError>>;
    /// A proposal: its id and entry.
    type Proposal = (u64, Vec<u8>);

    /// Decides and proposes like the Raft loop (proposal ids 1, 2, ...).
    struct Leader {
        log: PartitionLog,
        pending: Pending,
        next_id: u64,
        next_index: u64,
    }

    impl Leader {
        fn new() -> Self {
            let log = PartitionLog::default();
            let pending = Pending::new(&log);
            Self {
                log,
                pending,
                next_id: 1,
                next_index: 1,
            }
        }

        fn produce(&mut self, batch: Vec<u8>) -> (Answer, Option<Proposal>) {
            let (tx, rx) = oneshot::channel();
            let mut e = entry::records(&batch);
            let applied_next = self.log.high_watermark();
            match self.pending.decide(&mut e, 3, applied_next, tx) {
                (
                    Decision::Propose {
                        base,
                        records,
                        producer,
                    },
                    Some(reply),
                ) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.pending.proposed(id, reply, base, records, producer, 0);
                    (rx, Some((id, e)))
                }
                _ => (rx, None),
            }
        }

        fn apply(&mut self, (id, e): Proposal) {
            let crate::partition_log::Applied::Batch(base) =
                self.log.apply(self.next_index, &e, 0).unwrap()
            else {
                panic!("a batch was applied");
            };
            self.next_index += 1;
            self.pending.applied(Some(id), base);
        }
    }

    fn answer(mut rx: Answer) -> Option<Result<i64, AppendError>> {
        rx.try_recv().ok()
    }

    #[test]
    fn offsets_and_the_leader_epoch_are_written_before_proposing() {
        let mut l = Leader::new();
        let (rx1, p1) = l.produce(batch_from(-1, -1, -1, 3));
        let (rx2, p2) = l.produce(batch_from(-1, -1, -1, 2));
        let (p1, p2) = (p1.unwrap(), p2.unwrap());
        let stored = &p2.1[entry::PREFIX_LEN..];
        assert_eq!(record_batch::base_offset(stored), 3);
        assert_eq!(record_batch::leader_epoch(stored), 3);
        record_batch::check_stored(stored).expect("the CRC still holds");
        l.apply(p1);
        l.apply(p2);
        assert_eq!(answer(rx1), Some(Ok(0)));
        assert_eq!(answer(rx2), Some(Ok(3)));
        assert_eq!(l.log.high_watermark(), 5);
    }

    #[test]
    fn retries_answer_their_offset_in_flight_or_applied_and_append_nothing() {
        let mut l = Leader::new();
        let first = batch_from(7, 0, 0, 2);
        let (rx, proposal) = l.produce(first.clone());
        // The client retries before the first attempt committed.
        let (rx_retry, none) = l.produce(first.clone());
        assert!(none.is_none(), "a retry is never proposed");
        assert_eq!(answer(rx_retry), None, "waits for the original");
        l.apply(proposal.unwrap());
        assert_eq!(answer(rx), Some(Ok(0)));
        // (rx_retry was moved into answer(); check through a new retry.)
        let (rx_late, none) = l.produce(first);
        assert!(none.is_none());
        assert_eq!(answer(rx_late), Some(Ok(0)));
        assert_eq!(l.log.high_watermark(), 2);
        // Gaps and old epochs are refused, nothing proposed.
        let (rx_gap, none) = l.produce(batch_from(7, 0, 5, 1));
        assert!(none.is_none());
        assert!(matches!(
            answer(rx_gap),
            Some(Err(AppendError::Refused(Refused::OutOfOrderSequence(_))))
        ));
    }

    #[test]
    fn a_retry_in_flight_is_answered_when_its_original_applies() {
        let mut l = Leader::new();
        let first = batch_from(7, 0, 0, 2);
        let (_rx, proposal) = l.produce(first.clone());
        let (mut rx_retry, _) = l.produce(first);
        assert!(rx_retry.try_recv().is_err());
        l.apply(proposal.unwrap());
        assert_eq!(rx_retry.try_recv().ok(), Some(Ok(0)));
    }

    #[test]
    fn abandoned_appends_are_told_where_the_leader_went() {
        let mut l = Leader::new();
        let (mut rx, _) = l.produce(batch_from(-1, -1, -1, 1));
        l.pending.abandon(Some(2));
        assert_eq!(
            rx.try_recv().ok(),
            Some(Err(AppendError::NotLeader(Some(2))))
        );
    }
}
