//! [`RawNode`]: the caller's handle on a [`Raft`] member — inputs (tick, step, propose, ...)
//! and the [`Ready`] / `advance` cycle through which the caller persists, sends and applies.
//!
//! The cycle: after inputs, if `has_ready()`, take `ready()`; send `messages` at once (for a
//! leader these are the Appends it sends while writing its own log, Raft thesis §10.2.1);
//! persist `snapshot`, `entries` and `hard_state` (in that order, atomically or with one sync);
//! then send `persisted_messages`, apply `committed_entries`, serve `read_states`, and call
//! `advance(ready)`. Inputs may be stepped between `ready()` and `advance()`; a second `ready()`
//! must wait for `advance()`.
//!
//! Pipelined persistence: a caller whose writes complete in the order it queued them need not
//! wait for one before taking the next Ready. It sends `messages`, applies `committed_entries`
//! (they are always entries this member has already persisted), queues the write and calls
//! `advance_handed(ready)`; when that write completes it sends the Ready's
//! `persisted_messages` and calls `on_persisted(index, term)` with the Ready's last entry. A
//! Ready carrying a snapshot is persisted before anything else goes on: wait for the earlier
//! writes, write it, and `advance(ready)`.

use super::conf::ConfChange;
use super::message::{ConfState, Entry, HardState, Message, NodeId, Snapshot};
use super::raft::{Config, Raft, RaftError, ReadState, SoftState};
use super::storage::Storage;

/// What the caller must do next. See the module documentation for the order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// The new volatile state, if it changed since the last Ready.
    pub soft_state: Option<SoftState>,
    /// The hard state to persist, if it changed since the last Ready.
    pub hard_state: Option<HardState>,
    /// Confirmed reads: serve each once the applied index reaches its `index`.
    pub read_states: Vec<ReadState>,
    /// Entries to persist (they replace any persisted entries from the first one's index on).
    pub entries: Vec<Entry>,
    /// A snapshot to install and persist (replacing the log and the state machine).
    pub snapshot: Option<Snapshot>,
    /// Committed entries to apply, in order. All are already persisted on this member (the
    /// entries of this same Ready never are: they come in a later Ready).
    pub committed_entries: Vec<Entry>,
    /// Messages that may be sent at once.
    pub messages: Vec<Message>,
    /// Messages that may be sent only after this Ready's entries, snapshot and hard state are
    /// durable (votes, Append answers, vote requests).
    pub persisted_messages: Vec<Message>,
}

impl Ready {
    /// Whether the Ready holds something to persist (and thus a sync is needed).
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || !self.entries.is_empty() || self.snapshot.is_some()
    }
}

/// A Raft member driven by its caller. All methods are deterministic functions of the state and
/// the inputs: no clock, I/O, thread or global randomness.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_soft: SoftState,
    prev_hard: HardState,
    awaiting_advance: bool,
}

impl<S: Storage> RawNode<S> {
    /// Starts (or restarts) a member from `storage`.
    pub fn new(cfg: &Config, storage: S) -> Result<Self, RaftError> {
        let raft = Raft::new(cfg, storage)?;
        let (prev_soft, prev_hard) = (raft.soft_state(), raft.hard_state());
        Ok(RawNode {
            raft,
            prev_soft,
            prev_hard,
            awaiting_advance: false,
        })
    }

    /// The state machine, for observation.
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// The storage the member reads its stable log from.
    pub fn storage(&self) -> &S {
        self.raft.storage()
    }

    fn checked<T>(&mut self, f: impl FnOnce(&mut Raft<S>) -> T) -> T {
        #[cfg(debug_assertions)]
        let before = self.raft.hard_state();
        let out = f(&mut self.raft);
        #[cfg(debug_assertions)]
        self.raft.assert_invariants(&before);
        out
    }

    /// Advances logical time by one tick (elections, heartbeats, check-quorum).
    pub fn tick(&mut self) {
        self.checked(|r| r.tick());
    }

    /// Starts an election now.
    pub fn campaign(&mut self) {
        self.checked(|r| r.campaign());
    }

    /// Processes a message from another member.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        self.checked(|r| r.step(m))
    }

    /// Proposes application data (forwarded to the leader by a follower).
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), RaftError> {
        self.checked(|r| r.propose(data))
    }

    /// Proposes a batch of application entries (their `index`/`term` are assigned by the leader).
    pub fn propose_batch(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        self.checked(|r| r.propose_entries(entries))
    }

    /// Proposes a membership change (leader only; one in flight at a time).
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<(), RaftError> {
        self.checked(|r| r.propose_conf_change(cc))
    }

    /// Applies a committed membership change, returning the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        self.checked(|r| r.apply_conf_change(cc))
    }

    /// Requests a linearizable read index for `context`.
    pub fn read_index(&mut self, context: Vec<u8>) -> Result<(), RaftError> {
        self.checked(|r| r.read_index(context))
    }

    /// Asks the leader to transfer leadership to `target`.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), RaftError> {
        self.checked(|r| r.transfer_leader(target))
    }

    /// The transport could not reach `id`.
    pub fn report_unreachable(&mut self, id: NodeId) {
        self.checked(|r| r.report_unreachable(id));
    }

    /// The transport finished (or failed) sending a snapshot to `id`.
    pub fn report_snapshot(&mut self, id: NodeId, ok: bool) {
        self.checked(|r| r.report_snapshot(id, ok));
    }

    /// Whether `ready()` would return something to do.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        !self.awaiting_advance
            && (r.soft_state() != self.prev_soft
                || r.hard_state() != self.prev_hard
                || r.log.has_unstable()
                || !r.msgs.is_empty()
                || !r.msgs_after_persist.is_empty()
                || !r.read_states.is_empty()
                || r.log.has_next_committed_entries())
    }

    /// Collects what the caller must persist, send and apply. Panics if the previous Ready was
    /// not yet advanced (a caller bug).
    pub fn ready(&mut self) -> Ready {
        assert!(!self.awaiting_advance, "ready() called before advance()");
        self.awaiting_advance = true;
        let r = &mut self.raft;
        let (snapshot, entries) = r.log.take_unstable();
        let soft = r.soft_state();
        let hard = r.hard_state();
        let rd = Ready {
            soft_state: (soft != self.prev_soft).then_some(soft),
            hard_state: (hard != self.prev_hard).then_some(hard),
            read_states: std::mem::take(&mut r.read_states),
            committed_entries: r.log.next_committed_entries(u64::MAX),
            entries,
            snapshot,
            messages: std::mem::take(&mut r.msgs),
            persisted_messages: std::mem::take(&mut r.msgs_after_persist),
        };
        self.prev_soft = soft;
        self.prev_hard = hard;
        rd
    }

    /// The caller persisted `rd` and handed its committed entries to the application. A leader
    /// now counts itself toward the quorum of the persisted entries.
    pub fn advance(&mut self, rd: &Ready) {
        assert!(self.awaiting_advance, "advance() without ready()");
        self.awaiting_advance = false;
        self.checked(|r| {
            if let Some(s) = &rd.snapshot {
                r.on_snapshot_persisted(s.meta.index);
            }
            if let Some(e) = rd.entries.last() {
                r.on_persisted(e.index, e.term);
            }
            if let Some(e) = rd.committed_entries.last() {
                r.on_applied(e.index);
            }
        });
    }

    /// Pipelined persistence (module documentation): the caller sent `rd.messages`, handed
    /// `rd.committed_entries` to the application and queued the write of `rd`'s entries and
    /// hard state behind every earlier write, and has not waited for it. The next `ready()` may
    /// follow at once; the write's completion is reported with [`RawNode::on_persisted`].
    /// Panics on a Ready with a snapshot (that one is persisted first, then `advance`d).
    pub fn advance_handed(&mut self, rd: &Ready) {
        assert!(self.awaiting_advance, "advance_handed() without ready()");
        assert!(
            rd.snapshot.is_none(),
            "a Ready with a snapshot is persisted before it is advanced"
        );
        self.awaiting_advance = false;
        if let Some(e) = rd.committed_entries.last() {
            self.checked(|r| r.on_applied(e.index));
        }
    }

    /// A queued write completed: the log is durable up to `(index, term)`, the last entry of
    /// the Ready it came from. Reports must come in the order the writes were queued. If the
    /// log changed meanwhile (a new leader overwrote that entry), the report is ignored for the
    /// overwritten part; a leader now counts itself toward the quorum of the persisted entries.
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        self.checked(|r| r.on_persisted(index, term));
    }
}
