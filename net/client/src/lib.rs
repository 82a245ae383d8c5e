//! keel's client library (tokio): a [`Client`] over a set of endpoints that finds the leader,
//! fails over on connection errors and leader changes, spreads serializable reads, and pipelines
//! every request on one connection per member (request ids, responses in any order). A write
//! is never re-sent by the client once it may have reached a server: an ambiguous failure is
//! [`Error::Unknown`].
//!
//! - [`kv`]: get/put/delete/txn builders, compaction.
//! - [`watch`]: watches that resume after failover with no gap and no duplicate.
//! - [`lease`]: leases and the [`KeepAlive`] helper.
//! - [`maintenance`]: member list, status, hashes, defragment, alarms, snapshot, move leader.
//! - [`concurrency`]: [`Session`], [`Mutex`], [`Election`].
//! - [`blocking`]: a synchronous wrapper.
//!
//! ```no_run
//! # async fn demo() -> keel_client::Result<()> {
//! use keel_client::{Client, ConnectOptions};
//! let c = Client::connect(["127.0.0.1:2379", "127.0.0.1:22379"], ConnectOptions::default()).await?;
//! c.put("k", "v").await?;
//! let r = c.get("k").serializable().await?;
//! println!("{:?}", r.kvs);
//! # Ok(()) }
//! ```

pub mod blocking;
pub mod client;
pub mod concurrency;
mod conn;
pub mod error;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;

pub use client::{Client, ConnectOptions};
pub use concurrency::{Election, Leadership, LockGuard, Mutex, Session};
pub use error::{Error, Result};
pub use keel_proto as proto;
pub use kv::{
    prefix_end, CmpValue, Compare, CompareTarget, Delete, Get, Op, Put, SortOrder, SortTarget, Txn,
};
pub use lease::{KeepAlive, LeaseState};
pub use watch::{WatchBuilder, Watcher};
