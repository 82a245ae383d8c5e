//! The narrow interface through which Raft reads its stable (persisted) log, and
//! [`MemStorage`], an in-memory implementation for tests, the simulator and benchmarks.
//!
//! Raft itself never writes storage: the caller persists what a `Ready` hands out (entries, hard
//! state, snapshot) and then reports it with `advance`. The WAL implements [`Storage`] over its
//! in-memory index of what it has made durable.

use std::cell::RefCell;
use std::rc::Rc;

use super::conf::{ConfChange, ConfChangeKind};
use super::message::{ConfState, Entry, EntryKind, HardState, NodeId, Snapshot, NO_NODE};

/// Why storage could not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The requested index lies before `first_index() - 1`: it was compacted into a snapshot.
    Compacted,
    /// The requested index lies after `last_index()`. Raft never asks for this; seeing it means a
    /// broken `Storage` implementation.
    Unavailable,
    /// A snapshot is being produced; Raft retries later.
    SnapshotTemporarilyUnavailable,
    /// The backing store failed. Raft treats this as fatal (it panics with the message): a member
    /// that cannot read its own log must stop (DESIGN.md D2).
    Io(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Compacted => write!(f, "log compacted"),
            StorageError::Unavailable => write!(f, "log index unavailable"),
            StorageError::SnapshotTemporarilyUnavailable => {
                write!(f, "snapshot temporarily unavailable")
            }
            StorageError::Io(e) => write!(f, "storage I/O error: {e}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// Read access to the persisted log. Index `first_index() - 1` is the "dummy" position covered
/// by the latest snapshot (or compaction point): its term is known, its entry is not.
pub trait Storage {
    /// The persisted hard state and the membership as of the latest snapshot. Called once, when
    /// a member starts; the application re-applies membership changes committed after it.
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError>;

    /// Entries in `[lo, hi)`, stopping early once `max_bytes` (by [`Entry::size_bytes`]) would be
    /// exceeded, but always at least one entry when `lo < hi`. Requires
    /// `first_index() <= lo < hi <= last_index() + 1`; `Compacted` if `lo` is too small.
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;

    /// The term of entry `index`, for `first_index() - 1 <= index <= last_index()`.
    fn term(&self, index: u64) -> Result<u64, StorageError>;

    /// The first index still held as an entry.
    fn first_index(&self) -> Result<u64, StorageError>;

    /// The last persisted index (`first_index() - 1` when no entries are held).
    fn last_index(&self) -> Result<u64, StorageError>;

    /// The latest snapshot, to send to a follower whose next entry was compacted away.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// The state behind a [`MemStorage`] handle.
#[derive(Clone, Debug, Default)]
pub struct MemStorageCore {
    hard_state: HardState,
    snapshot: Snapshot,
    /// `(index, term)` of the position just before `entries[0]`.
    dummy: (u64, u64),
    entries: Vec<Entry>,
}

/// An in-memory [`Storage`]; clones share the same state (the simulator keeps a clone as the
/// "disk" that survives a crash of the member that owns the other one).
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    core: Rc<RefCell<MemStorageCore>>,
}

impl MemStorage {
    /// Empty storage with no members (a member that joins later and learns membership from its
    /// leader).
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty storage with `conf_state` as the membership at index 0. Members added later cannot
    /// learn this membership by replication (only from a snapshot); prefer
    /// [`MemStorage::bootstrap`] for clusters that change membership.
    pub fn new_with_conf_state(conf_state: ConfState) -> Self {
        let s = Self::new();
        s.core.borrow_mut().snapshot.meta.conf_state = conf_state;
        s
    }

    /// Storage of an initial member of a new cluster with `voters` (etcd's bootstrap): the
    /// membership is written as committed `AddVoter` entries at indexes `1..=voters.len()` in
    /// term 1, so members added later learn it through replication like any other change. The
    /// application applies them (and calls `apply_conf_change`) in the first Ready.
    pub fn bootstrap(voters: &[NodeId]) -> Self {
        let s = Self::new();
        let entries: Vec<Entry> = voters
            .iter()
            .enumerate()
            .map(|(i, &id)| Entry {
                index: i as u64 + 1,
                term: 1,
                kind: EntryKind::ConfChange,
                data: ConfChange {
                    kind: ConfChangeKind::AddVoter,
                    node_id: id,
                }
                .encode(),
            })
            .collect();
        s.append(&entries);
        s.set_hard_state(HardState {
            term: 1,
            vote: NO_NODE,
            commit: voters.len() as u64,
        });
        s
    }

    /// A deep copy that no longer shares state with `self`.
    pub fn deep_clone(&self) -> Self {
        MemStorage {
            core: Rc::new(RefCell::new(self.core.borrow().clone())),
        }
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.core.borrow().hard_state
    }

    /// Persists `hs`.
    pub fn set_hard_state(&self, hs: HardState) {
        self.core.borrow_mut().hard_state = hs;
    }

    /// Persists `entries` (contiguous, ascending), replacing any persisted entries at and after
    /// the first of them. Entries already covered by the snapshot are skipped.
    pub fn append(&self, entries: &[Entry]) {
        let mut c = self.core.borrow_mut();
        let first_new = c.dummy.0 + 1;
        let entries: Vec<&Entry> = entries.iter().filter(|e| e.index >= first_new).collect();
        let Some(first) = entries.first() else { return };
        let last = c.dummy.0 + c.entries.len() as u64;
        assert!(
            first.index <= last + 1,
            "append leaves a gap: first {} after last {last}",
            first.index
        );
        let keep = (first.index - first_new) as usize;
        c.entries.truncate(keep);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                first.index + i as u64,
                "entries must be contiguous"
            );
            c.entries.push((*e).clone());
        }
    }

    /// Installs a snapshot received from the leader: it replaces the whole log. Older snapshots
    /// than the one held are ignored (returns false).
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> bool {
        let mut c = self.core.borrow_mut();
        if snapshot.meta.index <= c.snapshot.meta.index && c.snapshot.meta.index > 0 {
            return false;
        }
        c.dummy = (snapshot.meta.index, snapshot.meta.term);
        c.entries.clear();
        c.hard_state.commit = c.hard_state.commit.max(snapshot.meta.index);
        c.snapshot = snapshot;
        true
    }

    /// Records a snapshot of the application's state at `index` (which must be held), without
    /// discarding entries; see [`MemStorage::compact`].
    pub fn create_snapshot(&self, index: u64, conf_state: ConfState, data: Vec<u8>) {
        let term = self.term(index).expect("snapshot index must be in the log");
        let mut c = self.core.borrow_mut();
        assert!(index >= c.snapshot.meta.index, "snapshot goes backwards");
        c.snapshot = Snapshot {
            meta: super::message::SnapshotMeta {
                index,
                term,
                conf_state,
            },
            data,
        };
    }

    /// Discards entries up to and including `index`, which the snapshot must cover.
    pub fn compact(&self, index: u64) {
        let term = self
            .term(index)
            .expect("compaction point must be in the log");
        let mut c = self.core.borrow_mut();
        assert!(
            index <= c.snapshot.meta.index,
            "compacting past the snapshot"
        );
        if index <= c.dummy.0 {
            return;
        }
        let drop = (index - c.dummy.0) as usize;
        c.entries.drain(..drop);
        c.dummy = (index, term);
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        let c = self.core.borrow();
        Ok((c.hard_state, c.snapshot.meta.conf_state.clone()))
    }

    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let c = self.core.borrow();
        if lo <= c.dummy.0 {
            return Err(StorageError::Compacted);
        }
        let last = c.dummy.0 + c.entries.len() as u64;
        if hi > last + 1 || lo > hi {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for e in &c.entries[(lo - c.dummy.0 - 1) as usize..(hi - c.dummy.0 - 1) as usize] {
            size += e.size_bytes();
            if !out.is_empty() && size > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let c = self.core.borrow();
        if index < c.dummy.0 {
            return Err(StorageError::Compacted);
        }
        if index == c.dummy.0 {
            return Ok(c.dummy.1);
        }
        c.entries
            .get((index - c.dummy.0 - 1) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.core.borrow().dummy.0 + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        let c = self.core.borrow();
        Ok(c.dummy.0 + c.entries.len() as u64)
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.core.borrow().snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn append_overwrites_conflicts_and_compact_keeps_the_dummy_term() {
        let s = MemStorage::new();
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 2)]);
        s.append(&[ent(3, 3), ent(4, 3)]);
        assert_eq!(s.last_index(), Ok(4));
        assert_eq!(s.term(3), Ok(3));
        s.create_snapshot(2, ConfState::default(), vec![]);
        s.compact(2);
        assert_eq!(s.first_index(), Ok(3));
        assert_eq!(s.term(2), Ok(1));
        assert_eq!(s.term(1), Err(StorageError::Compacted));
        assert_eq!(s.entries(2, 4, u64::MAX), Err(StorageError::Compacted));
        assert_eq!(s.entries(3, 5, 0).unwrap().len(), 1, "at least one entry");
    }
}
