//! [`Progress`]: the leader's view of one follower's log — match/next indexes, the replication
//! state (probe / replicate / snapshot) and the in-flight window that bounds pipelining.

use std::collections::VecDeque;

/// How the leader currently sends to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the follower's log matches is unknown: send one Append per heartbeat interval and
    /// wait for the answer before the next.
    Probe,
    /// The follower's log matches up to `matched`: stream Appends optimistically, bounded by
    /// the in-flight window.
    Replicate,
    /// The follower needs a snapshot (its next entry was compacted); send nothing until it
    /// reports having installed one.
    Snapshot,
}

/// The last index of each Append in flight to one follower, oldest first, at most `cap`.
#[derive(Clone, Debug)]
pub struct Inflights {
    last_indexes: VecDeque<u64>,
    cap: usize,
}

impl Inflights {
    /// An empty window of `cap` messages.
    pub fn new(cap: usize) -> Self {
        assert!(cap > 0, "the in-flight window must allow one message");
        Inflights {
            last_indexes: VecDeque::with_capacity(cap),
            cap,
        }
    }

    /// Records an Append whose last entry is `index`.
    pub fn add(&mut self, index: u64) {
        assert!(!self.full(), "in-flight window overflow");
        debug_assert!(self.last_indexes.back().is_none_or(|&b| b < index));
        self.last_indexes.push_back(index);
    }

    /// The follower acknowledged up to `index`: every Append ending at or before it is done.
    pub fn free_le(&mut self, index: u64) {
        while self.last_indexes.front().is_some_and(|&i| i <= index) {
            self.last_indexes.pop_front();
        }
    }

    /// Frees the oldest slot (a heartbeat answer proves the follower is alive, so let one more
    /// Append through even if responses were lost).
    pub fn free_first_one(&mut self) {
        self.last_indexes.pop_front();
    }

    /// Whether no more Appends may be sent.
    pub fn full(&self) -> bool {
        self.last_indexes.len() >= self.cap
    }

    /// Number of Appends in flight.
    pub fn len(&self) -> usize {
        self.last_indexes.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.last_indexes.is_empty()
    }

    /// Forgets everything in flight.
    pub fn reset(&mut self) {
        self.last_indexes.clear();
    }
}

/// The leader's view of one member.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to match the leader's log.
    pub matched: u64,
    /// Next index to send.
    pub next: u64,
    /// Replication state.
    pub state: ProgressState,
    /// In `Snapshot` state: the index of the snapshot sent.
    pub pending_snapshot: u64,
    /// Leader tick count when the snapshot was sent (to retry a lost one).
    pub snapshot_sent_at: u64,
    /// In `Probe` state: a probe is outstanding, wait for its answer or the next heartbeat.
    pub probe_sent: bool,
    /// Whether the member was heard from in the current check-quorum period.
    pub recent_active: bool,
    /// Appends in flight in `Replicate` state.
    pub inflights: Inflights,
}

impl Progress {
    /// A member about which nothing is known yet; probing starts at `next`.
    pub fn new(next: u64, max_inflight: usize) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            snapshot_sent_at: 0,
            probe_sent: false,
            recent_active: false,
            inflights: Inflights::new(max_inflight),
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.inflights.reset();
    }

    /// Back to probing from just after `matched` (or after a snapshot that was installed).
    pub fn become_probe(&mut self) {
        let after_snapshot = if self.state == ProgressState::Snapshot {
            self.pending_snapshot + 1
        } else {
            0
        };
        self.reset_state(ProgressState::Probe);
        self.next = (self.matched + 1).max(after_snapshot);
    }

    /// Stream from just after `matched`.
    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next = self.matched + 1;
    }

    /// A snapshot at `index` is on its way.
    pub fn become_snapshot(&mut self, index: u64, now: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = index;
        self.snapshot_sent_at = now;
    }

    /// The follower acknowledged `index`. Returns whether `matched` moved.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let moved = index > self.matched;
        if moved {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index + 1);
        moved
    }

    /// The follower rejected an Append at `rejected`; `match_hint` is the highest index that may
    /// still match. Returns false when the rejection is stale (answers an older send).
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            return true;
        }
        if self.next == 0 || self.next - 1 != rejected {
            return false;
        }
        self.next = rejected.min(match_hint + 1).max(self.matched + 1).max(1);
        self.probe_sent = false;
        true
    }

    /// Whether the leader must not send Appends now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_free_acknowledged_prefix() {
        let mut w = Inflights::new(3);
        w.add(5);
        w.add(9);
        w.add(12);
        assert!(w.full());
        w.free_le(9);
        assert_eq!(w.len(), 1);
        w.free_first_one();
        assert!(w.is_empty());
    }

    #[test]
    fn probe_ignores_stale_rejections_and_jumps_to_the_hint() {
        let mut p = Progress::new(11, 4);
        assert!(
            !p.maybe_decr_to(5, 3),
            "rejects an Append we no longer wait for"
        );
        assert!(p.maybe_decr_to(10, 3));
        assert_eq!(p.next, 4);
        p.state = ProgressState::Replicate;
        p.matched = 6;
        assert!(!p.maybe_decr_to(6, 0));
        assert!(p.maybe_decr_to(8, 0));
        assert_eq!(p.next, 7);
    }
}
