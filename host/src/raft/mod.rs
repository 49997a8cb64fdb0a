//! Multi-Raft: groups, durable storage, transport.
