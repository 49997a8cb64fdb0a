//! The pending events between the caller (the Raft loop) and the
//! dispatcher thread. Pure data structure: no locking, no threads.
//!
//! Rules:
//! - a partition's events come out in term order (stable among equal terms);
//! - an event older than a term already delivered for its partition is
//!   dropped as stale (plugins never see a partition's term go backwards);
//! - the queue holds at most `capacity` events. When full, every partition's
//!   pending events are coalesced to its newest one; if the queue is still
//!   full, the new event replaces its partition's pending event if it has
//!   one, and is dropped otherwise (the broker's resync re-delivers it).

use crate::contract::{LeadershipEvent, PartitionId};
use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Queued after coalescing this many older events away.
    Coalesced(usize),
    Dropped,
    Stale,
}

pub struct PendingQueue {
    capacity: usize,
    by_partition: HashMap<PartitionId, VecDeque<LeadershipEvent>>,
    /// Partitions with pending events, in order of their oldest event.
    order: VecDeque<PartitionId>,
    len: usize,
    delivered_term: HashMap<PartitionId, u64>,
}

impl PendingQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            by_partition: HashMap::new(),
            order: VecDeque::new(),
            len: 0,
            delivered_term: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, event: LeadershipEvent) -> Push {
        if self
            .delivered_term
            .get(&event.partition)
            .is_some_and(|&t| event.term < t)
        {
            return Push::Stale;
        }
        let mut coalesced = 0;
        if self.len >= self.capacity {
            coalesced = self.coalesce_all();
        }
        if self.len >= self.capacity {
            return match self.by_partition.get_mut(&event.partition) {
                Some(pending) => {
                    let newest = pending.back_mut().expect("pending lists are never empty");
                    if event.term >= newest.term {
                        *newest = event;
                    }
                    Push::Coalesced(coalesced + 1)
                }
                None => Push::Dropped,
            };
        }
        let pending = match self.by_partition.get_mut(&event.partition) {
            Some(pending) => pending,
            None => {
                self.order.push_back(event.partition.clone());
                self.by_partition
                    .entry(event.partition.clone())
                    .or_default()
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
            pending.drain(..extra);
            removed += extra;
        }
        self.len -= removed;
        removed
    }

    /// Takes up to `max` events, whole partitions first in arrival order.
    pub fn take_batch(&mut self, max: usize) -> Vec<LeadershipEvent> {
        let mut batch = Vec::with_capacity(max.min(self.len));
        while batch.len() < max {
            let Some(partition) = self.order.front() else {
                break;
            };
            let pending = self
                .by_partition
                .get_mut(partition)
                .expect("ordered partitions have pending events");
            while batch.len() < max {
                let Some(event) = pending.pop_front() else {
                    break;
                };
                batch.push(event);
            }
            if pending.is_empty() {
                self.by_partition.remove(partition);
                self.order.pop_front();
            }
        }
        self.len -= batch.len();
        for event in &batch {
            let term = self
                .delivered_term
                .entry(event.partition.clone())
                .or_insert(0);
            *term = (*term).max(event.term);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Transition;

    fn event(partition: u32, term: u64, leader: u64) -> LeadershipEvent {
        LeadershipEvent {
            partition: PartitionId::new("t", partition),
            transition: Transition::BecameLeader,
            observer: leader,
            leader: Some(leader),
            previous_leader: None,
            term,
            replicas: vec![1, 2, 3],
            at_ms: 0,
        }
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
            assert_eq!(q.push(event(p, t, 1)), Push::Queued);
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
        q.push(event(0, 4, 1));
        q.push(event(0, 4, 2));
        q.push(event(0, 4, 3));
        let leaders: Vec<_> = q.take_batch(10).iter().map(|e| e.observer).collect();
        assert_eq!(leaders, [1, 2, 3]);
    }

    #[test]
    fn events_older_than_delivered_are_stale() {
        let mut q = PendingQueue::new(100);
        q.push(event(0, 5, 1));
        q.take_batch(10);
        assert_eq!(q.push(event(0, 4, 2)), Push::Stale);
        assert_eq!(
            q.push(event(0, 5, 1)),
            Push::Queued,
            "a duplicate is not stale"
        );
        assert_eq!(
            q.push(event(1, 1, 1)),
            Push::Queued,
            "other partitions unaffected"
        );
    }

    #[test]
    fn batches_respect_max_and_resume_in_order() {
        let mut q = PendingQueue::new(100);
        for t in 1..=5 {
            q.push(event(0, t, 1));
        }
        q.push(event(1, 1, 1));
        assert_eq!(terms(&q.take_batch(3)), [(0, 1), (0, 2), (0, 3)]);
        assert_eq!(terms(&q.take_batch(3)), [(0, 4), (0, 5), (1, 1)]);
    }

    #[test]
    fn full_queue_coalesces_each_partition_to_newest() {
        let mut q = PendingQueue::new(4);
        q.push(event(0, 1, 1));
        q.push(event(0, 2, 2));
        q.push(event(1, 1, 1));
        q.push(event(1, 2, 3));
        assert_eq!(q.push(event(2, 9, 1)), Push::Coalesced(2));
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
        q.push(event(0, 1, 1));
        q.push(event(1, 1, 1));
        assert_eq!(q.push(event(2, 1, 1)), Push::Dropped);
        assert_eq!(q.push(event(1, 3, 2)), Push::Coalesced(1));
        assert_eq!(q.len(), 2);
        let batch = q.take_batch(10);
        assert_eq!(terms(&batch), [(0, 1), (1, 3)]);
    }
}
