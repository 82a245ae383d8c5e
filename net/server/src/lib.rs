//! The keel server: executors pinned to cores in three roles (log, apply, client), wired to the
//! engine (MVCC, watch, lease), the Raft core and the WAL. See ARCHITECTURE.md and DESIGN.md §2–§4.
pub mod raftnode;
