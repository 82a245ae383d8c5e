//! keel-bench: keel's benchmarks.
//!
//! The library is the `keel-bench` load generator (binary `src/bin/keel-bench.rs`): etcd's
//! benchmark tool's workloads and flags, driving any [`target::Target`] — etcd over gRPC
//! ([`etcd`]) today, keel's native protocol once keel-client exists. Modules:
//! [`target`] (the client traits), [`etcd`] (the etcd impl), [`coalesce`] (its write-coalescing connections), [`workload`] (workloads and the
//! closed-loop runner), [`report`] (latency recording and output).
//!
//! `benches/` holds the criterion benches: the storage engine (`keel-engine`'s B+tree) against
//! LMDB (through `heed`) and redb, MVCC and consensus.

pub mod coalesce;
pub mod etcd;
pub mod keel;
pub mod report;
pub mod target;
pub mod workload;
