//! The inbound side of the Raft loop's inbox: envelopes from peers, bounded in count (the
//! channel) and in payload bytes. Readers wait for room in bytes (so a Raft loop that falls
//! behind slows its peers' connections down through TCP instead of piling up entries in
//! memory); the loop gives the room back as it takes each envelope ([`InboxBytes::release`]).

use super::Envelope;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use tokio::sync::Semaphore;

/// The payload bytes an envelope holds in memory: its entries and snapshot (headers are
/// bounded by the channel's count).
pub fn payload_bytes(envelope: &Envelope) -> usize {
    let message = &envelope.message;
    let entries: usize = message
        .get_entries()
        .iter()
        .map(|e| e.get_data().len() + e.get_context().len())
        .sum();
    entries + message.get_snapshot().get_data().len()
}

/// Bytes of envelopes pushed by readers and not yet taken by the Raft loop. Cheap to clone.
#[derive(Clone)]
pub struct InboxBytes {
    permits: Arc<Semaphore>,
    max: usize,
}

impl InboxBytes {
    /// A budget of `max` bytes (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, u32::MAX as usize);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// What `envelope` costs: its payload, at most the whole budget (so one message larger
    /// than the budget still goes through, alone).
    fn cost(&self, envelope: &Envelope) -> u32 {
        payload_bytes(envelope).min(self.max) as u32
    }

    /// Gives back the room `envelope` took and returns it; the Raft loop calls it for every
    /// envelope it receives (envelopes that were never reserved, such as wake-ups, cost
    /// nothing).
    pub fn release(&self, envelope: &Envelope) -> usize {
        let cost = self.cost(envelope) as usize;
        if cost > 0 {
            self.permits.add_permits(cost);
        }
        cost
    }

    /// The whole budget.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

/// Why an envelope did not reach the inbox.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The channel is full (count): the envelope was dropped.
    Full,
    /// The Raft loop is gone.
    Closed,
}

/// Where readers push envelopes.
#[derive(Clone)]
pub struct Inbox {
    pub tx: SyncSender<Envelope>,
    pub bytes: InboxBytes,
}

impl Inbox {
    /// Waits for room in bytes, then pushes without waiting on the channel.
    pub async fn push(&self, envelope: Envelope) -> Result<(), PushError> {
        let cost = self.bytes.cost(&envelope);
        if cost > 0 {
            self.bytes
                .permits
                .acquire_many(cost)
                .await
                .map_err(|_| PushError::Closed)?
                .forget();
        }
        match self.tx.try_send(envelope) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(envelope)) => {
                self.bytes.release(&envelope);
                Err(PushError::Full)
            }
            Err(TrySendError::Disconnected(envelope)) => {
                self.bytes.release(&envelope);
                Err(PushError::Closed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, Message};
    use std::time::Duration;

    fn append(bytes: usize) -> Envelope {
        let entry = Entry {
            data: vec![7u8; bytes].into(),
            ..Default::default()
        };
        let mut message = Message::default();
        message.set_entries(vec![entry].into());
        Envelope { group: 2, message }
    }

    #[tokio::test]
    async fn readers_wait_for_room_in_bytes_and_the_loop_gives_it_back() {
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        let inbox = Inbox {
            tx,
            bytes: InboxBytes::new(1000),
        };
        inbox.push(append(600)).await.unwrap();
        assert_eq!(inbox.bytes.held(), 600);
        // A second 600 does not fit: the reader waits...
        let second = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.push(append(600)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished());
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "the second is not in the inbox yet");
        // ...until the loop takes the first.
        inbox.bytes.release(&append(600));
        second.await.unwrap().unwrap();
        assert_eq!(payload_bytes(&rx.try_recv().unwrap()), 600);
        assert_eq!(inbox.bytes.held(), 600);
    }

    #[tokio::test]
    async fn a_message_larger_than_the_budget_passes_alone_and_a_full_channel_gives_room_back() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let inbox = Inbox {
            tx,
            bytes: InboxBytes::new(1000),
        };
        inbox.push(append(5000)).await.unwrap();
        assert_eq!(inbox.bytes.held(), 1000);
        assert_eq!(
            inbox
                .push(Envelope {
                    group: 2,
                    message: Message::default()
                })
                .await,
            Err(PushError::Full)
        );
        assert_eq!(inbox.bytes.held(), 1000, "a dropped envelope holds nothing");
        inbox.bytes.release(&rx.recv().unwrap());
        assert_eq!(inbox.bytes.held(), 0);
    }
}
