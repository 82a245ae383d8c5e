//! [`RaftLog`]: one member's view of the log — the stable prefix in [`Storage`], the unstable
//! suffix (and a snapshot being installed) held in memory until the caller persists them, and
//! the commit, persist and apply positions.

use super::message::{Entry, Snapshot};
use super::storage::{Storage, StorageError};

/// Entries and a snapshot not yet persisted.
#[derive(Debug, Default)]
struct Unstable {
    /// A snapshot received from the leader that the caller has not yet installed.
    snapshot: Option<Snapshot>,
    /// Whether `snapshot` was handed out in a Ready (and awaits `advance`).
    snapshot_in_progress: bool,
    /// Entries after the stable log, the first at index `offset`.
    entries: Vec<Entry>,
    offset: u64,
    /// Entries with index `< in_progress` were handed out in a Ready and await `advance`.
    in_progress: u64,
}

/// The log of one member.
pub struct RaftLog<S: Storage> {
    storage: S,
    unstable: Unstable,
    /// Highest index known committed.
    pub(crate) committed: u64,
    /// Highest index handed to the application to apply.
    pub(crate) applied: u64,
    /// Highest index known persisted whose entries equal the current log.
    pub(crate) persisted: u64,
}

/// Reads from storage must work; anything but `Compacted` means this member cannot go on.
fn fatal(e: StorageError) -> ! {
    panic!("raft storage failed: {e}")
}

impl<S: Storage> RaftLog<S> {
    /// A log over `storage`, everything in it considered persisted, committed up to `committed`.
    pub fn new(storage: S, committed: u64) -> Self {
        let first = storage.first_index().unwrap_or_else(|e| fatal(e));
        let last = storage.last_index().unwrap_or_else(|e| fatal(e));
        assert!(
            committed <= last,
            "hard state commit {committed} > last index {last}"
        );
        RaftLog {
            storage,
            unstable: Unstable {
                offset: last + 1,
                in_progress: last + 1,
                ..Unstable::default()
            },
            committed: committed.max(first - 1),
            applied: first - 1,
            persisted: last,
        }
    }

    /// The storage this log reads its stable part from.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// First index held as an entry (after the snapshot).
    pub fn first_index(&self) -> u64 {
        match &self.unstable.snapshot {
            Some(s) => s.meta.index + 1,
            None => self.storage.first_index().unwrap_or_else(|e| fatal(e)),
        }
    }

    /// Last index in the log.
    pub fn last_index(&self) -> u64 {
        if let Some(e) = self.unstable.entries.last() {
            return e.index;
        }
        match &self.unstable.snapshot {
            Some(s) => s.meta.index,
            None => self.storage.last_index().unwrap_or_else(|e| fatal(e)),
        }
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.term(self.last_index())
            .expect("last term always known")
    }

    /// Term of entry `index`; `Err(Compacted)` if before the snapshot, `Ok(0)` past the end
    /// (no entry matches term 0, which keeps callers simple).
    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        let dummy = self.first_index() - 1;
        if index < dummy {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index() {
            return Ok(0);
        }
        if let Some(s) = &self.unstable.snapshot {
            if index == s.meta.index {
                return Ok(s.meta.term);
            }
        }
        if index >= self.unstable.offset {
            return Ok(self.unstable.entries[(index - self.unstable.offset) as usize].term);
        }
        match self.storage.term(index) {
            Ok(t) => Ok(t),
            Err(StorageError::Compacted) => Err(StorageError::Compacted),
            Err(e) => fatal(e),
        }
    }

    /// Whether entry `index` has term `term`.
    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Entries in `[lo, hi)`, at most `max_bytes` (but at least one), or `Compacted`.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        assert!(
            lo <= hi && hi <= self.last_index() + 1,
            "entries({lo}, {hi}) out of range"
        );
        if lo < self.first_index() {
            return Err(StorageError::Compacted);
        }
        let mut out = Vec::new();
        if lo < self.unstable.offset {
            let stable_hi = hi.min(self.unstable.offset);
            match self.storage.entries(lo, stable_hi, max_bytes) {
                Ok(es) => out = es,
                Err(StorageError::Compacted) => return Err(StorageError::Compacted),
                Err(e) => fatal(e),
            }
            if (out.len() as u64) < stable_hi - lo {
                return Ok(out);
            }
        }
        let mut size: u64 = out.iter().map(Entry::size_bytes).sum();
        let from = lo.max(self.unstable.offset);
        for i in from..hi {
            let e = &self.unstable.entries[(i - self.unstable.offset) as usize];
            size += e.size_bytes();
            if !out.is_empty() && size > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    /// Raft's "at least as up-to-date" rule (§5.4.1): a later last term wins, equal terms
    /// compare last indexes.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// The follower side of AppendEntries: if the entry at `prev_index` has `prev_term`, append
    /// `entries` (truncating from the first conflict), commit up to `min(commit, last new)`, and
    /// return the last index now known to match the leader. `None` on mismatch.
    pub fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as u64;
        if let Some(pos) = self.find_conflict(entries) {
            let conflict = entries[pos].index;
            assert!(
                conflict > self.committed,
                "entry {conflict} conflicts with committed entry (commit {})",
                self.committed
            );
            self.append(&entries[pos..]);
        }
        self.commit_to(commit.min(last_new));
        Some(last_new)
    }

    /// Position in `entries` of the first one that is new or conflicts with the log. Entries
    /// covered by our snapshot are committed, hence match, and are skipped.
    fn find_conflict(&self, entries: &[Entry]) -> Option<usize> {
        let first = self.first_index();
        entries
            .iter()
            .position(|e| e.index >= first && !self.match_term(e.index, e.term))
    }

    /// Fast backtracking: the largest index `<= index` whose term is `<= term`. Every index in
    /// between certainly conflicts with a log whose entry at `index` has term `term`.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> u64 {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term && i > 0 => i -= 1,
                _ => return i,
            }
        }
    }

    /// Appends `entries` after truncating everything from `entries[0].index` on. Returns the
    /// new last index.
    pub fn append(&mut self, entries: &[Entry]) -> u64 {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        assert!(
            first.index > self.committed,
            "append at {} would overwrite committed {}",
            first.index,
            self.committed
        );
        assert!(first.index <= self.last_index() + 1, "append leaves a gap");
        let u = &mut self.unstable;
        if first.index >= u.offset {
            u.entries.truncate((first.index - u.offset) as usize);
        } else {
            // Replaces part of the stable log: the new suffix overwrites it once persisted.
            u.entries.clear();
            u.offset = first.index;
        }
        u.in_progress = u.in_progress.min(first.index);
        self.persisted = self.persisted.min(first.index - 1);
        u.entries.extend_from_slice(entries);
        self.last_index()
    }

    /// Raises the commit index (never lowers it).
    pub fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} beyond last index {} (log lost or corrupted?)",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Commits `index` if its entry has `term` (a leader commits only entries of its own term by
    /// counting, Figure 8). Returns whether the commit index moved.
    pub fn maybe_commit(&mut self, index: u64, term: u64) -> bool {
        if index > self.committed && self.match_term(index, term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    /// Replaces the log with `snapshot` (not yet persisted).
    pub fn restore(&mut self, snapshot: Snapshot) {
        let idx = snapshot.meta.index;
        self.committed = idx;
        self.unstable.entries.clear();
        self.unstable.offset = idx + 1;
        self.unstable.in_progress = idx + 1;
        self.unstable.snapshot = Some(snapshot);
        self.unstable.snapshot_in_progress = false;
        self.persisted = self.persisted.min(idx);
    }

    /// Whether anything awaits being handed out for persistence.
    pub fn has_unstable(&self) -> bool {
        (self.unstable.snapshot.is_some() && !self.unstable.snapshot_in_progress)
            || self
                .unstable
                .entries
                .last()
                .is_some_and(|e| e.index >= self.unstable.in_progress)
    }

    /// Hands out the unstable snapshot and entries not handed out before.
    pub fn take_unstable(&mut self) -> (Option<Snapshot>, Vec<Entry>) {
        let u = &mut self.unstable;
        let snap = if u.snapshot.is_some() && !u.snapshot_in_progress {
            u.snapshot_in_progress = true;
            u.snapshot.clone()
        } else {
            None
        };
        let start = (u.in_progress.max(u.offset) - u.offset) as usize;
        let entries = u.entries[start.min(u.entries.len())..].to_vec();
        if let Some(e) = entries.last() {
            u.in_progress = e.index + 1;
        }
        (snap, entries)
    }

    /// The caller persisted entries up to `(index, term)`: drop them from memory unless the
    /// log changed meanwhile. Returns whether they are still part of the log.
    pub fn stable_to(&mut self, index: u64, term: u64) -> bool {
        if !self.match_term(index, term) || index < self.unstable.offset {
            return false;
        }
        // The entry at `index` still has the persisted term, so entries up to it are the ones
        // persisted (Log Matching within one member's history).
        let n = (index + 1 - self.unstable.offset) as usize;
        self.unstable.entries.drain(..n);
        self.unstable.offset = index + 1;
        self.persisted = self.persisted.max(index);
        true
    }

    /// The caller installed the snapshot at `index`.
    pub fn stable_snap_to(&mut self, index: u64) {
        if self
            .unstable
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.index == index)
        {
            self.unstable.snapshot = None;
            self.unstable.snapshot_in_progress = false;
            self.persisted = self.persisted.max(index);
            self.applied = self.applied.max(index);
        }
    }

    /// The highest index that may be handed to the application: committed and persisted
    /// here. A member learns of a commit before its own copy is durable (a follower with the
    /// entries themselves; a leader from a quorum of followers while its own write is still
    /// running); such entries wait for this member's write, so the state machine never gets
    /// ahead of the log a restart replays.
    fn applicable(&self) -> u64 {
        self.committed.min(self.persisted)
    }

    /// Committed entries, persisted here, not yet handed to the application.
    pub fn next_committed_entries(&self, max_bytes: u64) -> Vec<Entry> {
        let lo = (self.applied + 1).max(self.first_index());
        let hi = self.applicable();
        if hi < lo {
            return Vec::new();
        }
        self.entries(lo, hi + 1, max_bytes)
            .unwrap_or_else(|e| panic!("committed entries {lo}..={hi} unreadable: {e}"))
    }

    /// Whether committed, persisted entries await application.
    pub fn has_next_committed_entries(&self) -> bool {
        self.applicable() > self.applied.max(self.first_index() - 1)
    }

    /// The application was handed entries up to `index`.
    pub fn applied_to(&mut self, index: u64) {
        assert!(
            index <= self.committed,
            "applied {index} > committed {}",
            self.committed
        );
        self.applied = self.applied.max(index);
    }

    /// The snapshot to send to a follower (from storage).
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        if let Some(s) = &self.unstable.snapshot {
            return Ok(s.clone());
        }
        self.storage.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::storage::MemStorage;

    fn ents(from: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                index: from + i as u64,
                term,
                ..Entry::default()
            })
            .collect()
    }

    #[test]
    fn find_conflict_by_term_skips_a_whole_term() {
        let s = MemStorage::new();
        s.append(&ents(1, &[1, 1, 2, 2, 2, 4, 4]));
        let log = RaftLog::new(s, 0);
        assert_eq!(
            log.find_conflict_by_term(7, 3),
            5,
            "skips the term-4 entries"
        );
        assert_eq!(log.find_conflict_by_term(7, 1), 2);
        assert_eq!(
            log.find_conflict_by_term(9, 4),
            7,
            "clamped to the last index"
        );
        assert_eq!(log.find_conflict_by_term(3, 0), 0);
    }

    #[test]
    fn a_truncated_unstable_suffix_is_not_marked_stable_by_an_older_persist() {
        let s = MemStorage::new();
        s.append(&ents(1, &[1, 1]));
        let mut log = RaftLog::new(s, 0);
        log.append(&ents(3, &[2, 2]));
        let (_, handed) = log.take_unstable();
        assert_eq!(handed.len(), 2);
        // Before the caller persisted 3..=4 (term 2), a new leader overwrites index 4.
        assert_eq!(log.maybe_append(3, 2, 0, &ents(4, &[3])), Some(4));
        assert!(!log.stable_to(4, 2), "index 4 now has term 3");
        let (_, again) = log.take_unstable();
        assert_eq!(
            again,
            ents(4, &[3]),
            "only the replacement is handed out again"
        );
        assert!(log.stable_to(4, 3));
        assert_eq!(log.persisted, 4);
        assert!(!log.has_unstable());
    }
}
