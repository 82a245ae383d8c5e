//! The copy-on-write B+tree file (DESIGN.md §5): one file of 4 KiB pages, two checksummed metas,
//! named buckets committed atomically together, visible and durable commits, snapshot readers on
//! any thread reading through a shared read-only mmap.
//!
//! Layers, top to bottom: [`Database`] (`db.rs`: open, readers, writer hand-off) →
//! [`WriteTxn`] / [`ReadTxn`] (`write.rs`, `read.rs`) → `cursor.rs` (navigation) → `node.rs`
//! (dirty nodes) → `page.rs` (byte layout, validation) → `freelist.rs` (allocation) →
//! `mmap.rs` + [`StorageBackend`] (`backend.rs`).
//!
//! Invariants kept here (DESIGN.md §9): S1 committed pages are never modified in place
//! (`write.rs`); S2 a meta reaches disk only after every page it references (`write.rs`,
//! `try_finish`); S3 no page visible to a reader or to the last durable commit is reused
//! (`freelist.rs`, `db.rs::WriterState::reclaim`); D1 bytes from disk are validated before use
//! (`page.rs`); D2 after a failed write or sync, no more writes until reopened (`write.rs`).

mod backend;
mod check;
mod compact;
mod cursor;
mod db;
mod error;
pub mod fault;
mod freelist;
mod mmap;
mod node;
mod page;
mod read;
mod write;

pub use backend::{FileBackend, StorageBackend};
pub use check::Problem;
pub use cursor::Range;
pub use db::{Database, Options, Stats};
pub use error::{Error, Result};
pub use page::{MAX_INLINE_VALUE, MAX_KEY_LEN, MAX_VALUE_LEN, PAGE_SIZE};
pub use read::{Bucket, ReadTxn};
pub use write::{BucketMut, PendingDurable, WriteTxn};
