//! Watch: etcd's v3 watch over the MVCC store (DESIGN.md §2: the apply core owns the hub).
//!
//! This module owns the watch hub ([`WatchHub`]): the watchers of every watch stream, the
//! fan-out of each applied revision's events to the watchers it concerns, the catch-up of
//! watchers that are behind from the store's history, and the responses each stream is
//! offered. It has no threads, no clock and no async: the server calls it from the apply core
//! and gives every stream a [`WatchSink`] (a bounded channel with `try_send`).
//!
//! Invariants (DESIGN.md §9), and where they are enforced:
//! - W1 ordered and W2 unique: a watcher has one position (`next_rev`); it is only ever sent
//!   events at or after it, in revision order, and the position moves past what was offered
//!   (`hub.rs`: `notify`, `sync_unsynced`).
//! - W3 no gaps: a watcher that misses a live revision (its stream was full) keeps its position
//!   and is caught up from the store before it rejoins the live set; the seam is the hub's
//!   revision, so nothing is read twice or skipped (`hub.rs`: `sync_unsynced`).
//! - W4 atomic per revision: responses are cut at revision boundaries only; one revision is
//!   split only into fragments, for a watcher that asked for them, when it alone exceeds the
//!   size limit — and its fragments are delivered all or none (`hub.rs`: `package`, `deliver`).
//! - W5 resumable: a watch from `last + 1` replays exactly the rest (history reads in
//!   `mvcc/history.rs`).
//! - W6 bookmarkable: a progress response at revision R is sent only when every event up to R
//!   was offered to the stream before it (`hub.rs`: `progress`, `progress_tick`).
//!
//! Submodules: `hub.rs` (the hub), `interval.rs` (the interval set that finds range watchers).

mod hub;
mod interval;

pub use hub::{WatchHub, WatchOptions};

use crate::mvcc::Event;

/// One client watch stream (a gRPC Watch call or a keel protocol stream); chosen by the hub.
pub type StreamId = u64;

/// A watcher's id within its stream (etcd's `watch_id`).
pub type WatchId = i64;

/// etcdserverpb.WatchCreateRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchCreate {
    /// The key, or the start of the range.
    pub key: Vec<u8>,
    /// Empty: the single `key`; `[0]`: every key >= `key`; otherwise `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// 0: from the next revision; otherwise the first revision to send (history included).
    pub start_revision: i64,
    /// Ask for periodic progress responses while idle ([`WatchHub::progress_tick`]).
    pub progress_notify: bool,
    /// etcd's NOPUT filter: drop put events.
    pub no_put: bool,
    /// etcd's NODELETE filter: drop delete events.
    pub no_delete: bool,
    /// Attach each event's previous key-value.
    pub prev_kv: bool,
    /// 0: the hub chooses; otherwise the id to use (must be unused on the stream).
    pub watch_id: WatchId,
    /// Allow a revision larger than the response limit to be split into fragments.
    pub fragment: bool,
}

/// etcdserverpb.WatchResponse (the header's revision; cluster, member and term are the
/// server's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    pub header_revision: i64,
    /// The watcher, or -1 for a stream-wide progress response ([`WatchHub::progress`]) and for
    /// a refused create.
    pub watch_id: WatchId,
    pub created: bool,
    pub canceled: bool,
    /// Set when the watcher was canceled because its next revision was compacted.
    pub compact_revision: i64,
    pub cancel_reason: String,
    /// More fragments of the same revision follow.
    pub fragment: bool,
    pub events: Vec<Event>,
}

/// Where a stream's responses go: the server implements it with a bounded channel to the
/// client's connection.
pub trait WatchSink {
    /// Offers a response without blocking; gives it back when there is no room now.
    fn try_send(&mut self, resp: WatchResponse) -> Result<(), WatchResponse>;

    /// Whether a `try_send` could succeed now (a bounded channel: not full). The hub asks it
    /// before reading history for a stream's behind watchers, so a stalled stream costs no
    /// history reads; `true` (the default) is always correct, only slower.
    fn has_room(&self) -> bool {
        true
    }
}

/// Why a create was refused (answered in-band as etcd does: a response with `created` and
/// `canceled` set, watch id -1, and this message as `cancel_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchError {
    /// The client-chosen watch id is in use on the stream.
    DuplicateId,
    /// `range_end` is not empty, not `[0]`, and not greater than `key`.
    EmptyRange,
}

impl WatchError {
    /// etcd 3.4's message for it.
    pub fn message(&self) -> &'static str {
        match self {
            WatchError::DuplicateId => "mvcc: duplicate watch ID provided on the WatchStream",
            WatchError::EmptyRange => "mvcc: watcher range is empty",
        }
    }
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for WatchError {}
