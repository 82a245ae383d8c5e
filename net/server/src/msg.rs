//! Messages between the apply core and the client cores (DESIGN.md §2: bounded glommio
//! channels, no mutex on the request path), and the proposal-id scheme that routes a write's
//! result back to the client core that proposed it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// How far the store's published read view reaches, shared by the apply core (which moves it)
/// and the client cores (which read the store). The apply core may park a batch — applied and
/// answered, not yet in the published view (one visible commit then covers several batches,
/// `apply.rs`) — so a read must not be served from the view until it covers every applied
/// index whose effects anyone may have seen (`acked`): etcd answers reads from state that
/// includes every write it acknowledged.
#[derive(Debug, Default)]
pub struct Visibility {
    /// The highest applied index whose replies or watch events were handed out (or are about to
    /// be: it moves before they are sent).
    acked: AtomicU64,
    /// The highest applied index the published read view covers.
    published: AtomicU64,
}

impl Visibility {
    /// The index the published view must cover before a read arriving now is served.
    pub fn needed(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Whether the published view covers `index`.
    pub fn covers(&self, index: u64) -> bool {
        self.published() >= index
    }

    /// Apply core only: the view now covers `index`.
    pub fn set_published(&self, index: u64) {
        self.published.fetch_max(index, Ordering::AcqRel);
    }

    /// Apply core only: effects up to `index` are being handed out.
    pub fn set_acked(&self, index: u64) {
        self.acked.fetch_max(index, Ordering::AcqRel);
    }
}

/// Apply core → client core.
#[derive(Debug)]
pub enum ToClient {
    /// Results of writes this core proposed and of queries it asked.
    Replies(Vec<Reply>),
    /// The published read view now covers this Raft index (reads waiting for it are served;
    /// sent when the view moves, and to a core that asked with [`ToApply::Publish`]).
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
    /// A read waits for the published view to cover `index`: publish parked batches (now, or
    /// once `index` is applied) and answer with [`ToClient::Applied`].
    Publish {
        index: u64,
    },
}
