//! At most one assignment write per partition in flight from this node.
//!
//! A plugin may call `set-leader` again and again while its first write
//! waits to be applied (every call passes the fence until the write lands).
//! Without a gate each call became its own metadata proposal: one topic
//! creation under such a plugin grew the metadata log tenfold. Here a
//! repeat costs nothing, a different write waits as the partition's single
//! `next` (newer replaces older), and the slot frees when the metadata group
//! applies the write (or after `ttl`, if Raft lost it).

use crate::metadata::TopicPartition;
use leaderhook_hooks::NodeId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One assignment write, as it will be proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderWrite {
    pub partition: TopicPartition,
    pub leader: NodeId,
    pub epoch: u64,
    pub attested: bool,
}

impl LeaderWrite {
    fn same_effect(&self, leader: NodeId, epoch: u64) -> bool {
        self.leader == leader && self.epoch == epoch
    }
}

/// What to do with a write a plugin made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Propose it now.
    Propose,
    /// Already in flight, or queued behind the write in flight: nothing to do.
    Held,
}

struct Slot {
    in_flight: LeaderWrite,
    since: Instant,
    next: Option<LeaderWrite>,
}

pub struct InflightWrites {
    slots: Mutex<HashMap<TopicPartition, Slot>>,
    ttl: Duration,
}

impl InflightWrites {
    /// `ttl`: how long a write may stay unapplied before it is presumed
    /// lost (a proposal forwarded to a leader that died).
    pub fn new(ttl: Duration) -> Self {
        Self {
            slots: Mutex::default(),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, Slot>> {
        // Every critical section below leaves the map consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn admit(&self, write: LeaderWrite, now: Instant) -> Admit {
        let mut slots = self.lock();
        match slots.get_mut(&write.partition) {
            Some(slot) if now.duration_since(slot.since) < self.ttl => {
                if !slot.in_flight.same_effect(write.leader, write.epoch) {
                    slot.next = Some(write);
                }
                Admit::Held
            }
            _ => {
                slots.insert(
                    write.partition,
                    Slot {
                        in_flight: write,
                        since: now,
                        next: None,
                    },
                );
                Admit::Propose
            }
        }
    }

    /// The metadata group applied a write for `partition` (from any node,
    /// accepted or refused). Returns the write to propose next, if one was
    /// waiting behind the one it settles.
    pub fn settle(
        &self,
        partition: TopicPartition,
        leader: NodeId,
        epoch: u64,
        now: Instant,
    ) -> Option<LeaderWrite> {
        let mut slots = self.lock();
        let slot = slots.get_mut(&partition)?;
        if !slot.in_flight.same_effect(leader, epoch) {
            return None;
        }
        match slot.next.take() {
            Some(next) if !next.same_effect(leader, epoch) => {
                slot.in_flight = next;
                slot.since = now;
                Some(next)
            }
            _ => {
                slots.remove(&partition);
                None
            }
        }
    }

    /// Raft refused the proposal outright (no leader to take it): free the
    /// slot, so the next attempt (the resync's) proposes again.
    pub fn dropped(&self, partition: TopicPartition) {
        self.lock().remove(&partition);
    }

    /// Forgets the slots older than `ttl` and returns the writes that
    /// waited behind them, now in flight in their place.
    pub fn expire(&self, now: Instant) -> Vec<LeaderWrite> {
        let mut slots = self.lock();
        let mut resend = Vec::new();
        slots.retain(|_, slot| {
            if now.duration_since(slot.since) < self.ttl {
                return true;
            }
            match slot.next.take() {
                Some(next) => {
                    slot.in_flight = next;
                    slot.since = now;
                    resend.push(next);
                    true
                }
                None => false,
            }
        });
        resend
    }

    /// Drops every slot of a deleted topic's partitions.
    pub fn forget(&self, partition: &TopicPartition) {
        self.lock().remove(partition);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicId;

    fn write(partition: &TopicPartition, leader: NodeId, epoch: u64) -> LeaderWrite {
        LeaderWrite {
            partition: *partition,
            leader,
            epoch,
            attested: true,
        }
    }

    fn p() -> TopicPartition {
        TopicPartition {
            topic: TopicId::random(),
            partition: 0,
        }
    }

    #[test]
    fn repeats_while_in_flight_cost_nothing() {
        let gate = InflightWrites::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let p = p();
        assert_eq!(gate.admit(write(&p, 2, 7), t0), Admit::Propose);
        for _ in 0..10_000 {
            assert_eq!(gate.admit(write(&p, 2, 7), t0), Admit::Held);
        }
        assert_eq!(gate.len(), 1);
        assert_eq!(gate.settle(p, 2, 7, t0), None);
        assert!(gate.is_empty());
        assert_eq!(gate.admit(write(&p, 2, 7), t0), Admit::Propose);
    }

    #[test]
    fn a_different_write_waits_as_the_single_next() {
        let gate = InflightWrites::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let p = p();
        gate.admit(write(&p, 2, 7), t0);
        assert_eq!(gate.admit(write(&p, 3, 8), t0), Admit::Held);
        assert_eq!(gate.admit(write(&p, 1, 9), t0), Admit::Held);
        // Another node's write of something else settles nothing.
        assert_eq!(gate.settle(p, 3, 8, t0), None);
        assert_eq!(gate.settle(p, 2, 7, t0), Some(write(&p, 1, 9)));
        assert_eq!(gate.settle(p, 1, 9, t0), None);
        assert!(gate.is_empty());
    }

    #[test]
    fn lost_writes_expire() {
        let gate = InflightWrites::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let (a, b) = (p(), p());
        gate.admit(write(&a, 2, 7), t0);
        gate.admit(write(&b, 2, 7), t0);
        gate.admit(write(&b, 3, 8), t0);
        assert!(gate.expire(t0 + Duration::from_secs(1)).is_empty());
        let later = t0 + Duration::from_secs(6);
        assert_eq!(gate.expire(later), vec![write(&b, 3, 8)]);
        assert_eq!(gate.len(), 1, "b's next is in flight now; a is gone");
        // An expired slot also admits a new write directly.
        assert_eq!(gate.admit(write(&b, 3, 8), later), Admit::Held);
        assert_eq!(
            gate.admit(write(&b, 3, 8), later + Duration::from_secs(6)),
            Admit::Propose
        );
    }
}
