//! Conversions between the generated bindings and the SDK's types.

use crate::bindings::types as wit;
use crate::types::{
    Assignment, CapError, LeadershipEvent, PartitionId, Quota, QuotaWindow, Transition,
    WriteOutcome,
};

pub(crate) fn partition_from_wit(p: wit::PartitionId) -> PartitionId {
    PartitionId {
        topic: p.topic,
        partition: p.partition,
    }
}

pub(crate) fn partition_to_wit(p: &PartitionId) -> wit::PartitionId {
    wit::PartitionId {
        topic: p.topic.clone(),
        partition: p.partition,
    }
}

pub(crate) fn event_from_wit(e: wit::LeadershipEvent) -> LeadershipEvent {
    LeadershipEvent {
        partition: partition_from_wit(e.partition),
        transition: match e.transition {
            wit::Transition::BecameLeader => Transition::BecameLeader,
            wit::Transition::SteppedDown => Transition::SteppedDown,
            wit::Transition::LeaderObserved => Transition::LeaderObserved,
            wit::Transition::LeaderLost => Transition::LeaderLost,
        },
        observer: e.observer,
        leader: e.leader,
        previous_leader: e.previous_leader,
        term: e.term,
        replicas: e.replicas,
        at_ms: e.at_ms,
    }
}

pub(crate) fn assignment_from_wit(a: wit::PartitionAssignment) -> Assignment {
    Assignment {
        partition: partition_from_wit(a.partition),
        replicas: a.replicas,
        leader: a.leader,
        epoch: a.epoch,
    }
}

pub(crate) fn write_outcome_from_wit(o: wit::WriteOutcome) -> WriteOutcome {
    match o {
        wit::WriteOutcome::Queued => WriteOutcome::Queued,
        wit::WriteOutcome::Unchanged => WriteOutcome::Unchanged,
    }
}

pub(crate) fn cap_error_from_wit(e: wit::CapError) -> CapError {
    match e {
        wit::CapError::NotGranted(cap) => CapError::NotGranted(cap),
        wit::CapError::UnknownPartition => CapError::UnknownPartition,
        wit::CapError::NotAReplica(node) => CapError::NotAReplica(node),
        wit::CapError::StaleEpoch(stored) => CapError::StaleEpoch(stored),
        wit::CapError::FutureEpoch(known) => CapError::FutureEpoch(known),
        wit::CapError::UnknownSink(sink) => CapError::UnknownSink(sink),
        wit::CapError::Unavailable(why) => CapError::Unavailable(why),
        wit::CapError::NotElected(node) => CapError::NotElected(node),
        wit::CapError::OverQuota(q) => CapError::OverQuota(Quota {
            limit: q.limit,
            window: match q.window {
                wit::QuotaWindow::Batch => QuotaWindow::Batch,
                wit::QuotaWindow::Second => QuotaWindow::Second,
            },
        }),
        wit::CapError::Cooldown(ms) => CapError::Cooldown(ms),
    }
}
