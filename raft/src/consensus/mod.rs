//! The pure Raft state machine (DESIGN.md §7) — no I/O, clock, thread or global RNG: time is
//! [`RawNode::tick`], randomness a seeded [`SplitMix64`], storage a [`Storage`] the caller
//! implements, and the network whatever carries [`Message`]s. Same state and inputs, same outputs.
//!
//! Owns: elections (pre-vote, check-quorum), log replication and commitment, ReadIndex,
//! snapshots (sending and installing, not producing), membership and leader transfer. Does not
//! own: persistence, the transport, the state machine or snapshot contents.
//!
//! Files: [`message`] (data types), [`raft`] (the state machine), [`config`], [`error`], [`raw_node`] (the
//! Ready/advance interface), [`log`] (stable + unstable log), [`progress`] and [`tracker`]
//! (the leader's view of members), [`read_only`] (ReadIndex rounds), [`conf`] (membership
//! changes), [`storage`] (the storage trait, [`MemStorage`]), [`rng`].
//!
//! Invariants kept (DESIGN.md §9): R1 Election Safety (one vote per term, persisted before it is
//! sent; majority quorums), R2 Leader Append-Only (a leader never truncates its log), R3 Log
//! Matching (the AppendEntries consistency check), R4 Leader Completeness (the up-to-date vote
//! check, committing only own-term entries by counting), R5 State Machine Safety (commit never
//! decreases; committed entries are never overwritten — asserted in [`log::RaftLog::append`]).

pub mod conf;
pub mod config;
pub mod error;
pub mod log;
pub mod message;
pub mod progress;
pub mod raft;
pub mod raw_node;
pub mod read_only;
pub mod rng;
pub mod storage;
pub mod tracker;

pub use conf::{ConfChange, ConfChangeError, ConfChangeKind};
pub use message::{
    ConfState, Entry, EntryKind, HardState, Message, MessageKind, NodeId, Snapshot, SnapshotMeta,
    CAMPAIGN_TRANSFER, NO_NODE,
};
pub use progress::{Progress, ProgressState};
pub use raft::{Config, Raft, RaftError, ReadState, Role, SoftState};
pub use raw_node::{RawNode, Ready};
pub use rng::SplitMix64;
pub use storage::{MemStorage, Storage, StorageError};
