//! How other threads talk to the Raft loop: [`RaftHandle`] queues a
//! [`RaftCommand`] and wakes the loop. The queue is bounded in commands and
//! in bytes (appends carry record batches), and never blocks the caller: a
//! full queue is [`RaftError::Busy`], a retriable answer.

use crate::metadata::{Applied, Command};
use crate::raft::transport::{self, Envelope};
use leaderhook_hooks::NodeId;
use raft::prelude::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Group id that carries no Raft message: it wakes the loop so a queued
/// command runs without waiting for the next tick, or carries the
/// transport's notice that a peer's connection ended.
pub const WAKE_GROUP: u64 = transport::LOCAL_GROUP;

/// Commands queued for the Raft loop at most.
pub const COMMAND_QUEUE_CAPACITY: usize = 16_384;
/// Bytes of commands (mostly record batches) queued for the Raft loop at
/// most; beyond it callers get [`RaftError::Busy`].
pub const COMMAND_QUEUE_BYTES: usize = 256 << 20;

/// Why a request to the Raft loop got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    #[error("the Raft loop has stopped")]
    Stopped,
    #[error("the Raft loop's queue is full; retry")]
    Busy,
    /// No leader to take a proposal (e.g. right after start, or while an
    /// election runs): nothing was appended.
    #[error("proposal dropped: the metadata group has no leader here yet")]
    Dropped,
    #[error("not committed within {0:?}")]
    TimedOut(Duration),
}

impl RaftError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        !matches!(self, RaftError::Stopped)
    }
}

/// Where the answer to a metadata proposal goes: a waiting thread or task.
pub enum Reply {
    Blocking(std::sync::mpsc::Sender<Result<Applied, RaftError>>),
    Async(tokio::sync::oneshot::Sender<Result<Applied, RaftError>>),
}

impl Reply {
    pub fn send(self, result: Result<Applied, RaftError>) {
        // A caller that gave up is no error.
        match self {
            Reply::Blocking(tx) => drop(tx.send(result)),
            Reply::Async(tx) => drop(tx.send(result)),
        }
    }
}

/// A proposal's waiter: its reply and when its caller stops waiting (the
/// loop forgets it then).
pub struct Waiter {
    pub reply: Reply,
    pub deadline: Instant,
}

/// Answer to an append: the batch's base offset once committed and applied
/// (a oneshot: the Kafka front end awaits it without holding a thread).
pub type AppendReply = tokio::sync::oneshot::Sender<Result<i64, AppendError>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// This replica does not lead the group (or has not committed an entry
    /// of its term yet); carries the leader it knows.
    NotLeader(Option<NodeId>),
    UnknownGroup,
    /// Applied but refused (a malformed batch, an idempotent producer's
    /// sequence or epoch).
    Refused(crate::partition_log::Refused),
    /// Raft dropped the proposal.
    Dropped(String),
}

pub enum RaftCommand {
    /// Propose a metadata command; the reply comes once it is applied here.
    Propose(Command, Option<Waiter>),
    /// Ask a partition's group to move leadership to `to`.
    Transfer { group: u64, to: NodeId },
    /// Append a Kafka record batch to a partition group this node leads:
    /// `entry` is `partition_log::entry::records(batch)`, which the leader
    /// completes (offsets, leader epoch) before proposing it.
    Append {
        group: u64,
        entry: Vec<u8>,
        reply: AppendReply,
    },
}

impl RaftCommand {
    /// Bytes this command holds while queued (what the byte bound counts).
    fn size(&self) -> usize {
        const BASE: usize = 64;
        match self {
            RaftCommand::Append { entry, .. } => BASE + entry.len(),
            RaftCommand::Propose(Command::CreateTopic { replicas, .. }, _) => {
                BASE + replicas.iter().map(|r| 8 * r.len() + 8).sum::<usize>()
            }
            _ => BASE,
        }
    }
}

/// Handle to queue commands and wake the loop. Cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    commands: SyncSender<(RaftCommand, usize)>,
    wake: SyncSender<Envelope>,
    queued_bytes: Arc<AtomicUsize>,
}

/// The loop's end of the command queue.
pub struct CommandQueue {
    commands: Receiver<(RaftCommand, usize)>,
    queued_bytes: Arc<AtomicUsize>,
}

impl CommandQueue {
    /// The next queued command, if any (never blocks).
    pub fn try_next(&self) -> Option<RaftCommand> {
        let (command, size) = self.commands.try_recv().ok()?;
        self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        Some(command)
    }
}

impl RaftHandle {
    /// A handle and the queue the loop reads; `wake` is a sender into the
    /// loop's inbox.
    pub fn new(wake: SyncSender<Envelope>) -> (Self, CommandQueue) {
        let (tx, rx) = std::sync::mpsc::sync_channel(COMMAND_QUEUE_CAPACITY);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        (
            Self {
                commands: tx,
                wake,
                queued_bytes: queued_bytes.clone(),
            },
            CommandQueue {
                commands: rx,
                queued_bytes,
            },
        )
    }

    /// Queues a command without blocking.
    pub fn send(&self, command: RaftCommand) -> Result<(), RaftError> {
        let size = command.size();
        let before = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        // One command larger than the whole bound still goes through an
        // empty queue: the bound is on what waits, not on one request.
        if before > 0 && before + size > COMMAND_QUEUE_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return Err(RaftError::Busy);
        }
        match self.commands.try_send((command, size)) {
            Ok(()) => {}
            Err(e) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                return Err(match e {
                    TrySendError::Full(_) => RaftError::Busy,
                    TrySendError::Disconnected(_) => RaftError::Stopped,
                });
            }
        }
        // Full inbox: the loop is busy and will see the command anyway.
        let _ = self.wake.try_send(Envelope {
            group: WAKE_GROUP,
            message: Message::default(),
        });
        Ok(())
    }

    /// Proposes a metadata command and waits (async, bounded) until it is
    /// applied here. A proposal Raft dropped (no metadata leader yet) was
    /// never appended, so it is retried until the deadline.
    pub async fn propose(&self, command: Command, timeout: Duration) -> Result<Applied, RaftError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let waiter = Waiter {
                reply: Reply::Async(tx),
                deadline,
            };
            self.send(RaftCommand::Propose(command.clone(), Some(waiter)))?;
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(left, rx).await {
                Ok(Ok(outcome)) => outcome,
                // The loop dropped the waiter: it stopped, or forgot a
                // waiter past its deadline.
                Ok(Err(_)) if Instant::now() < deadline => Err(RaftError::Stopped),
                _ => Err(RaftError::TimedOut(timeout)),
            };
            match outcome {
                Err(RaftError::Dropped | RaftError::Busy) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_DELAY.min(left)).await;
                }
                Err(RaftError::Dropped | RaftError::Busy) => {
                    return Err(RaftError::TimedOut(timeout));
                }
                other => return other,
            }
        }
    }

    /// [`propose`](Self::propose) for threads outside the async runtime.
    pub fn propose_and_wait(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<Applied, RaftError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (tx, rx) = std::sync::mpsc::channel();
            let waiter = Waiter {
                reply: Reply::Blocking(tx),
                deadline,
            };
            self.send(RaftCommand::Propose(command.clone(), Some(waiter)))?;
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = rx
                .recv_timeout(left)
                .unwrap_or(Err(RaftError::TimedOut(timeout)));
            match outcome {
                Err(RaftError::Dropped | RaftError::Busy) if Instant::now() < deadline => {
                    std::thread::sleep(RETRY_DELAY.min(left));
                }
                Err(RaftError::Dropped | RaftError::Busy) => {
                    return Err(RaftError::TimedOut(timeout));
                }
                other => return other,
            }
        }
    }
}

/// Pause before proposing again after a dropped proposal.
const RETRY_DELAY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn append(bytes: usize) -> RaftCommand {
        RaftCommand::Append {
            group: 2,
            entry: vec![0; bytes],
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_frees_what_the_loop_takes() {
        let (wake, _inbox) = std::sync::mpsc::sync_channel(1);
        let (handle, queue) = RaftHandle::new(wake);
        let big = COMMAND_QUEUE_BYTES / 2;
        handle.send(append(big)).unwrap();
        assert_eq!(handle.send(append(big)), Err(RaftError::Busy));
        assert!(queue.try_next().is_some());
        handle.send(append(big)).unwrap();
        // One oversized command passes an empty queue only.
        assert!(queue.try_next().is_some());
        handle.send(append(COMMAND_QUEUE_BYTES * 2)).unwrap();
        assert_eq!(handle.send(append(1)), Err(RaftError::Busy));
    }

    #[test]
    fn a_stopped_loop_is_reported() {
        let (wake, _inbox) = std::sync::mpsc::sync_channel(1);
        let (handle, queue) = RaftHandle::new(wake);
        drop(queue);
        assert_eq!(handle.send(append(1)), Err(RaftError::Stopped));
    }

    #[tokio::test]
    async fn an_unanswered_proposal_times_out() {
        let (wake, _inbox) = std::sync::mpsc::sync_channel(8);
        let (handle, _queue) = RaftHandle::new(wake);
        let result = handle
            .propose(Command::AllocateProducerId, Duration::from_millis(50))
            .await;
        assert_eq!(result, Err(RaftError::TimedOut(Duration::from_millis(50))));
    }
}
