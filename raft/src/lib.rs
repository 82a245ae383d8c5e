//! keel's consensus crate (DESIGN.md §6, §7).
//!
//! - [`consensus`]: the Raft state machine, pure — no I/O, clock, thread or global RNG. Time is
//!   `tick()`, randomness a seeded RNG the caller passes in, storage and network belong to the caller.
//! - [`wal`]: the write-ahead log that makes Raft entries and hard state durable (O_DIRECT through
//!   io_uring via glommio's DMA files, group commit).
//!
//! This crate never depends on `keel-engine` or `keel-net` (DESIGN.md §1).

pub mod consensus;
pub mod wal;
