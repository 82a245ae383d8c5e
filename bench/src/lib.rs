//! keel-bench: keel's benchmarks.
//!
//! Today it holds `benches/btree.rs`, a criterion comparison of the storage engine
//! (`keel-engine`'s B+tree) with LMDB (through `heed`) and redb. Later it will also own the
//! etcd-vs-keel load generator that drives both servers with the same workload.
