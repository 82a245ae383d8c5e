//! The server-independent client interface that the workloads drive.
//!
//! Owns the [`Target`] / [`BenchClient`] / [`BenchWatch`] traits and the plain request types
//! ([`RangeSpec`], [`TxnOp`], [`WatchEvent`]). A workload is written once against these traits;
//! each server gets one small impl: etcd over gRPC ([`crate::etcd::Etcd`]) and keel over its
//! native protocol ([`crate::keel::Keel`]).
//!
//! Connection semantics follow etcd's benchmark tool: [`Target::connect`] opens `conns`
//! connections (connection `i` to `endpoints[i % endpoints.len()]`) and returns `clients`
//! clients, client `j` multiplexed over connection `j % conns`.

use std::fmt;
use std::future::Future;

/// A request failed, or a connection could not be made. The message is what the report groups
/// errors by, so it should be the server's (or transport's) own text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// Where to connect and how many connections and clients to make.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// `host:port` endpoints (an `http://` prefix is accepted too).
    pub endpoints: Vec<String>,
    /// Number of connections to open.
    pub conns: usize,
    /// Number of clients to hand out, spread round-robin over the connections.
    pub clients: usize,
}

/// Read consistency of a range request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable (etcd's default): goes through the leader's ReadIndex.
    Linearizable,
    /// Serializable: served from the local member's state.
    Serializable,
}

/// A range (get) request, mirroring etcd's RangeRequest fields the workloads use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    /// First key.
    pub key: Vec<u8>,
    /// End of the range (exclusive); empty means the single key `key`.
    pub range_end: Vec<u8>,
    /// Maximum number of keys returned; 0 is no limit.
    pub limit: i64,
    /// Read consistency.
    pub consistency: Consistency,
    /// Return only the count of keys.
    pub count_only: bool,
    /// Return keys without values.
    pub keys_only: bool,
}

/// One operation inside a transaction's success branch (no compares: the workloads commit
/// unconditionally, as etcd's tool does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Put `key` = `value`.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// A range read.
    Range(RangeSpec),
}

/// One event delivered to a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Key of the changed pair.
    pub key: Vec<u8>,
    /// Its new value (empty for a delete).
    pub value: Vec<u8>,
    /// Revision of the change.
    pub mod_revision: i64,
}

/// What a watch stream delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// A watcher was created on the stream.
    Created {
        /// The server's id for it.
        watch_id: i64,
    },
    /// Events for one watcher.
    Events {
        /// The watcher they are for.
        watch_id: i64,
        /// The events, in revision order.
        events: Vec<WatchEvent>,
    },
    /// Anything else (progress notification, cancel).
    Other,
}

/// A server the benchmark can drive.
pub trait Target: Send + Sync + 'static {
    /// One benchmark client (a handle on one of the target's connections).
    type Client: BenchClient;

    /// Opens the connections and returns `spec.clients` clients spread over them.
    fn connect(
        &self,
        spec: &ConnectSpec,
    ) -> impl Future<Output = Result<Vec<Self::Client>, BenchError>> + Send;
}

/// The requests the workloads issue. Each call is one round trip; the caller measures it.
/// A clone shares the original's connection (the watch workloads open several streams on one
/// client's connection).
pub trait BenchClient: Clone + Send + 'static {
    /// A watch stream opened by this client (several watchers share one stream).
    type Watch: BenchWatch;

    /// Puts `key` = `value`.
    fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
    ) -> impl Future<Output = Result<(), BenchError>> + Send;

    /// Reads a range; returns the number of keys the server reported (`count`).
    fn range(&mut self, spec: &RangeSpec) -> impl Future<Output = Result<i64, BenchError>> + Send;

    /// Commits a transaction whose success branch is `ops` (no compares).
    fn txn(&mut self, ops: &[TxnOp]) -> impl Future<Output = Result<(), BenchError>> + Send;

    /// Opens a watch stream with one watcher on `[key, range_end)` (empty end: the key alone).
    fn watch(
        &mut self,
        key: &[u8],
        range_end: &[u8],
    ) -> impl Future<Output = Result<Self::Watch, BenchError>> + Send;

    /// Grants a lease with `ttl_s` seconds to live; returns its id.
    fn lease_grant(&mut self, ttl_s: i64) -> impl Future<Output = Result<i64, BenchError>> + Send;

    /// Renews lease `id` once (one request and its response, like clientv3's KeepAliveOnce).
    fn lease_keep_alive_once(
        &mut self,
        id: i64,
    ) -> impl Future<Output = Result<(), BenchError>> + Send;
}

/// A watch stream: more watchers can be added to it, and it yields their messages.
pub trait BenchWatch: Send + 'static {
    /// Adds a watcher on `[key, range_end)` to this stream (its `Created` comes via `next`).
    fn add(
        &mut self,
        key: &[u8],
        range_end: &[u8],
    ) -> impl Future<Output = Result<(), BenchError>> + Send;

    /// The next message; `None` when the server closed the stream.
    fn next(&mut self) -> impl Future<Output = Result<Option<WatchMessage>, BenchError>> + Send;
}

/// Which server `--target` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// etcd (or anything speaking etcd's v3 gRPC API).
    Etcd,
    /// keel over its native protocol (the keel-client library; `crate::keel`).
    Keel,
}

impl TargetKind {
    /// Parses `etcd` or `keel`.
    pub fn parse(s: &str) -> Result<Self, BenchError> {
        match s {
            "etcd" => Ok(Self::Etcd),
            "keel" => Ok(Self::Keel),
            other => Err(BenchError(format!(
                "unknown target {other:?} (etcd or keel)"
            ))),
        }
    }
}
