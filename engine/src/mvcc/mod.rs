//! etcd's v3 data model over the B+tree (DESIGN.md §5; invariants S4, S6): revisions, range with
//! every etcd option, put, delete, txn with compares and nested txns, compaction in bounded
//! batches, size quota, HashKV. Types mirror etcd's API (`types.rs`); the byte layout of the
//! buckets is in `keys.rs`; the logic in `store.rs`.

mod autocompact;
mod history;
mod keys;
mod store;
mod types;

pub use autocompact::{AutoCompaction, AutoCompactor};
pub use history::HistoryBatch;
pub use keys::{ArchivedRecord, Record};
pub use store::{
    check_delete, check_put, check_range, check_txn, txn_is_read_only, KvRead, KvStore, KvWrite,
    StoreOptions,
};
pub use types::*;
