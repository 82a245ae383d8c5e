//! keel's storage engine (DESIGN.md §5): the copy-on-write mmap B+tree in [`btree`]; the MVCC
//! store, watch and lease are built on it. No networking and no Raft here (DESIGN.md §1).

pub mod btree;
pub mod lease;
pub mod mvcc;
pub mod watch;
