//! Messages between the apply core and the client cores (DESIGN.md §2: bounded glommio
//! channels, no mutex on the request path), and the proposal-id scheme that routes a write's
//! result back to the client core that proposed it.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use keel_engine::watch::WatchCreate;
use keel_proto as p;

/// A client connection, unique in the process: the client core's index in the top 16 bits.
pub type ConnId = u64;

/// The client core a connection or proposal belongs to.
pub fn core_of(id: u64) -> usize {
    (id >> 48) as usize
}

/// Tags a client-core-local sequence number with the core's index.
pub fn tagged(core: usize, seq: u64) -> u64 {
    debug_assert!(seq < 1 << 48);
    ((core as u64) << 48) | seq
}

/// A finished request: the response (or error) for the waiter `seq` of a client core.
#[derive(Debug)]
pub struct Reply {
    pub seq: u64,
    pub resp: Result<p::Response, p::ErrorResponse>,
}

/// Apply core → client core.
#[derive(Debug)]
pub enum ToClient {
    /// Results of writes this core proposed and of queries it asked.
    Replies(Vec<Reply>),
    /// The published read view now covers this Raft index (linearizable reads wait for it).
    Applied(u64),
    /// A watch response for connection `conn` (counted against the connection's credit).
    Watch {
        conn: ConnId,
        resp: p::WatchResponse,
    },
    /// This member's name and client URLs are in the cluster's member list: client cores
    /// start accepting connections (etcd serves clients only once it has published them).
    Ready,
}

/// Requests a client core cannot serve itself: they need the apply core's state.
#[derive(Debug)]
pub enum Query {
    LeaseKeepAlive(i64),
    LeaseTimeToLive(p::LeaseTimeToLiveRequest),
    LeaseLeases,
    Defragment,
}

/// Client core → apply core.
#[derive(Debug)]
pub enum ToApply {
    Query {
        seq: u64,
        query: Query,
    },
    /// The first watch request of a connection: opens its watch stream. `credit` counts the
    /// watch responses handed to the connection and not yet written to its socket.
    WatchOpen {
        conn: ConnId,
        credit: Arc<AtomicUsize>,
    },
    WatchCreate {
        conn: ConnId,
        req: WatchCreate,
    },
    WatchCancel {
        conn: ConnId,
        watch_id: i64,
    },
    WatchProgress {
        conn: ConnId,
    },
    /// The connection closed: drop its watchers.
    Closed {
        conn: ConnId,
    },
}
