//! One plugin's pending events, between the caller (the Raft loop) and the
//! plugin's worker. Pure data structure: no locking, no threads.
//!
//! Events are keyed by a [`PartitionKey`] the host supplies, never by the
//! partition's name: a topic deleted and re-created under the same name is
//! a new partition with a new key, and its low terms are not stale.
//!
//! Rules:
//! - a partition's events come out in term order (stable among equal terms);
//! - an event older than a term already delivered for its partition is
//!   dropped as stale (the plugin never sees a partition's term go back);
//! - the queue holds at most `capacity` events and `max_bytes` bytes of
//!   them (see [`event_bytes`]). When full, every partition's pending
//!   events are coalesced to its newest one; if the queue is still full,
//!   the new event replaces its partition's pending event if it has one,
//!   and is dropped otherwise (the broker's resync re-delivers it).

use crate::contract::LeadershipEvent;
use std::collections::{HashMap, VecDeque};

/// An id the host gives each incarnation of a partition; a re-created
/// partition gets a new one. The broker uses the partition's Raft group id,
/// which is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PartitionKey(pub u64);

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Queued after coalescing this many older events away.
    Coalesced(usize),
    Dropped,
    Stale,
}

/// What an event counts for against a queue's byte bound: its size in
/// memory, with its topic name and replica list.
pub fn event_bytes(event: &LeadershipEvent) -> usize {
    std::mem::size_of::<(PartitionKey, LeadershipEvent)>()
        + event.partition.topic.len()
        + event.replicas.len() * std::mem::size_of::<u64>()
}

pub struct PendingQueue {
    capacity: usize,
    max_bytes: usize,
    by_partition: HashMap<PartitionKey, VecDeque<LeadershipEvent>>,
    /// Partitions with pending events, in order of their oldest event.
    order: VecDeque<PartitionKey>,
    len: usize,
    bytes: usize,
    delivered_term: HashMap<PartitionKey, u64>,
}

impl PendingQueue {
    pub fn new(capacity: usize) -> Self {
        Self::with_bytes(capacity, usize::MAX)
    }

    pub fn with_bytes(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            by_partition: HashMap::new(),
            order: VecDeque::new(),
            len: 0,
            bytes: 0,
            delivered_term: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the pending events (see [`event_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn full(&self, incoming: usize) -> bool {
        self.len >= self.capacity || self.bytes.saturating_add(incoming) > self.max_bytes
    }

    pub fn push(&mut self, key: PartitionKey, event: LeadershipEvent) -> Push {
        if self
            .delivered_term
            .get(&key)
            .is_some_and(|&t| event.term < t)
        {
            return Push::Stale;
        }
        let size = event_bytes(&event);
        let mut coalesced = 0;
        if self.full(size) {
            coalesced = self.coalesce_all();
        }
        if self.full(size) {
            return match self.by_partition.get_mut(&key) {
                Some(pending) => {
                    let newest = pending.back_mut().expect("pending lists are never empty");
                    if event.term >= newest.term {
                        self.bytes = self.bytes - event_bytes(newest) + size;
                        *newest = event;
                    }
                    Push::Coalesced(coalesced + 1)
                }
                None => Push::Dropped,
            };
        }
        let pending = match self.by_partition.get_mut(&key) {
            Some(pending) => pending,
            None => {
                self.order.push_back(key);
                self.by_partition.entry(key).or_default()
            }
        };
        // After the last event with a term not above this one: term order,
        // arrival order among equal terms.
        let at = pending
            .iter()
            .rposition(|e| e.term <= event.term)
            .map_or(0, |i| i + 1);
        pending.insert(at, event);
        self.len += 1;
        self.bytes += size;
        if coalesced > 0 {
            Push::Coalesced(coalesced)
        } else {
            Push::Queued
        }
    }

    /// Keeps only the newest pending event of each partition.
    fn coalesce_all(&mut self) -> usize {
        let mut removed = 0;
        for pending in self.by_partition.values_mut() {
            let extra = pending.len() - 1;
            for event in pending.drain(..extra) {
                self.bytes -= event_bytes(&event);
            }
            removed += extra;
        }
        self.len -= removed;
        removed
    }

    /// Drops a partition's pending events and its memory of delivered
    /// terms (the partition is gone). Returns how many events were pending.
    pub fn forget(&mut self, key: PartitionKey) -> usize {
        self.delivered_term.remove(&key);
        let Some(pending) = self.by_partition.remove(&key) else {
            return 0;
        };
        self.order.retain(|k| *k != key);
        self.len -= pending.len();
        self.bytes -= pending.iter().map(event_bytes).sum::<usize>();
        pending.len()
    }

    /// Drops every pending event (the memory of delivered terms stays).
    /// Returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.len;
        self.by_partition.clear();
        self.order.clear();
        self.len = 0;
        self.bytes = 0;
        n
    }

    /// Partitions this queue remembers (pending or delivered).
    pub fn known_partitions(&self) -> usize {
        let mut keys: Vec<&PartitionKey> = self.delivered_term.keys().collect();
        keys.extend(self.by_partition.keys());
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    }

    /// Takes up to `max` events, whole partitions first in arrival order.
    pub fn take_batch(&mut self, max: usize) -> Vec<LeadershipEvent> {
        self.take_keyed_batch(max).1
    }

    /// [`take_batch`](Self::take_batch), with each event's key beside it.
    pub fn take_keyed_batch(&mut self, max: usize) -> (Vec<PartitionKey>, Vec<LeadershipEvent>) {
        let mut keys = Vec::with_capacity(max.min(self.len));
        let mut batch = Vec::with_capacity(max.min(self.len));
        while batch.len() < max {
            let Some(&key) = self.order.front() else {
                break;
            };
            let pending = self
                .by_partition
                .get_mut(&key)
                .expect("ordered partitions have pending events");
            while batch.len() < max {
                let Some(event) = pending.pop_front() else {
                    break;
                };
                self.bytes -= event_bytes(&event);
                let term = self.delivered_term.entry(key).or_insert(0);
                *term = (*term).max(event.term);
                keys.push(key);
                batch.push(event);
            }
            if pending.is_empty() {
                self.by_partition.remove(&key);
                self.order.pop_front();
            }
        }
        self.len -= batch.len();
        (keys, batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{PartitionId, Transition};

    fn event(partition: u32, term: u64, leader: u64) -> (PartitionKey, LeadershipEvent) {
        let event = LeadershipEvent {
            partition: PartitionId::new("t", partition),
            transition: Transition::BecameLeader,
            observer: leader,
            leader: Some(leader),
            previous_leader: None,
            term,
            replicas: vec![1, 2, 3],
            at_ms: 0,
        };
        (PartitionKey(u64::from(partition)), event)
    }

    fn push(q: &mut PendingQueue, (key, event): (PartitionKey, LeadershipEvent)) -> Push {
        q.push(key, event)
    }

    fn terms(batch: &[LeadershipEvent]) -> Vec<(u32, u64)> {
        batch
            .iter()
            .map(|e| (e.partition.partition, e.term))
            .collect()
    }

    #[test]
    fn partition_events_come_out_in_term_order() {
        let mut q = PendingQueue::new(100);
        for (p, t) in [(0, 5), (1, 2), (0, 3), (0, 7), (1, 1)] {
            assert_eq!(push(&mut q, event(p, t, 1)), Push::Queued);
        }
        assert_eq!(
            terms(&q.take_batch(100)),
            [(0, 3), (0, 5), (0, 7), (1, 1), (1, 2)]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn equal_terms_keep_arrival_order() {
        let mut q = PendingQueue::new(100);
        push(&mut q, event(0, 4, 1));
        push(&mut q, event(0, 4, 2));
        push(&mut q, event(0, 4, 3));
        let leaders: Vec<_> = q.take_batch(10).iter().map(|e| e.observer).collect();
        assert_eq!(leaders, [1, 2, 3]);
    }

    #[test]
    fn events_older_than_delivered_are_stale() {
        let mut q = PendingQueue::new(100);
        push(&mut q, event(0, 5, 1));
        q.take_batch(10);
        assert_eq!(push(&mut q, event(0, 4, 2)), Push::Stale);
        assert_eq!(
            push(&mut q, event(0, 5, 1)),
            Push::Queued,
            "a duplicate is not stale"
        );
        assert_eq!(
            push(&mut q, event(1, 1, 1)),
            Push::Queued,
            "other partitions unaffected"
        );
    }

    #[test]
    fn batches_respect_max_and_resume_in_order() {
        let mut q = PendingQueue::new(100);
        for t in 1..=5 {
            push(&mut q, event(0, t, 1));
        }
        push(&mut q, event(1, 1, 1));
        assert_eq!(terms(&q.take_batch(3)), [(0, 1), (0, 2), (0, 3)]);
        assert_eq!(terms(&q.take_batch(3)), [(0, 4), (0, 5), (1, 1)]);
    }

    #[test]
    fn full_queue_coalesces_each_partition_to_newest() {
        let mut q = PendingQueue::new(4);
        push(&mut q, event(0, 1, 1));
        push(&mut q, event(0, 2, 2));
        push(&mut q, event(1, 1, 1));
        push(&mut q, event(1, 2, 3));
        assert_eq!(push(&mut q, event(2, 9, 1)), Push::Coalesced(2));
        assert_eq!(q.len(), 3);
        let batch = q.take_batch(10);
        assert_eq!(terms(&batch), [(0, 2), (1, 2), (2, 9)]);
        assert_eq!(
            batch[1].observer, 3,
            "the newest event of partition 1 survived"
        );
    }

    #[test]
    fn full_queue_of_distinct_partitions_drops_new_partitions_only() {
        let mut q = PendingQueue::new(2);
        push(&mut q, event(0, 1, 1));
        push(&mut q, event(1, 1, 1));
        assert_eq!(push(&mut q, event(2, 1, 1)), Push::Dropped);
        assert_eq!(push(&mut q, event(1, 3, 2)), Push::Coalesced(1));
        assert_eq!(q.len(), 2);
        let batch = q.take_batch(10);
        assert_eq!(terms(&batch), [(0, 1), (1, 3)]);
    }

    #[test]
    fn a_recreated_partition_has_a_new_key_and_its_low_terms_are_not_stale() {
        let mut q = PendingQueue::new(100);
        let (_, old) = event(0, 9, 1);
        q.push(PartitionKey(1), old.clone());
        q.take_batch(10);
        // Deleted and re-created under the same name: new key, term 1.
        let reborn = LeadershipEvent {
            term: 1,
            ..old.clone()
        };
        assert_eq!(q.push(PartitionKey(2), reborn.clone()), Push::Queued);
        assert_eq!(q.take_batch(10), [reborn]);
        // The old incarnation's memory is still keyed by its own id.
        assert_eq!(
            q.push(PartitionKey(1), LeadershipEvent { term: 1, ..old }),
            Push::Stale
        );
    }

    #[test]
    fn forget_drops_pending_events_and_memory() {
        let mut q = PendingQueue::new(100);
        push(&mut q, event(0, 5, 1));
        q.take_batch(10);
        push(&mut q, event(0, 6, 1));
        push(&mut q, event(0, 7, 1));
        push(&mut q, event(1, 1, 1));
        assert_eq!(q.forget(PartitionKey(0)), 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.bytes(), event_bytes(&event(1, 1, 1).1));
        assert_eq!(q.known_partitions(), 1);
        assert_eq!(
            push(&mut q, event(0, 1, 1)),
            Push::Queued,
            "no memory of term 5"
        );
        assert_eq!(terms(&q.take_batch(10)), [(1, 1), (0, 1)]);
    }

    #[test]
    fn the_byte_bound_coalesces_like_the_count_bound() {
        let size = event_bytes(&event(0, 1, 1).1);
        let mut q = PendingQueue::with_bytes(1000, size * 2);
        push(&mut q, event(0, 1, 1));
        push(&mut q, event(0, 2, 2));
        assert_eq!(push(&mut q, event(1, 1, 1)), Push::Coalesced(1));
        assert_eq!(q.bytes(), size * 2);
        assert_eq!(push(&mut q, event(2, 1, 1)), Push::Dropped);
        // A long topic name counts for its bytes.
        let (_, mut big) = event(3, 1, 1);
        big.partition.topic = "x".repeat(size * 3);
        let mut q = PendingQueue::with_bytes(1000, size * 2);
        assert_eq!(q.push(PartitionKey(3), big), Push::Dropped);
        assert!(q.is_empty());
    }
}
