//! The in-memory view of the durable log: where each entry lives on disk, a bounded cache of the
//! most recent entries, the hard state and the snapshot marker. Recovery and the group-commit writer
//! apply records to it with the same rules, so a reopened WAL sees exactly what the live one saw.

use super::record::{HardState, SnapshotMarker, WalEntry};
use std::collections::VecDeque;

/// Where one entry's record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    /// Segment seq.
    pub seq: u64,
    /// Byte offset of the record in the segment.
    pub offset: u64,
    /// Encoded record length.
    pub len: u32,
    /// The entry's term (kept so `term(i)` needs no I/O).
    pub term: u64,
}

/// Entries `[first, first + locs.len())` plus state.
#[derive(Debug)]
pub struct LogIndex {
    first: u64,
    locs: VecDeque<Loc>,
    /// A suffix of the log: entries `[last - cache.len() + 1, last]`.
    cache: VecDeque<WalEntry>,
    cache_bytes: usize,
    cache_limit: usize,
    hard_state: HardState,
    snapshot: SnapshotMarker,
}

impl LogIndex {
    /// An empty log.
    pub fn new(cache_limit: usize) -> Self {
        Self {
            first: 1,
            locs: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_limit,
            hard_state: HardState::default(),
            snapshot: SnapshotMarker::default(),
        }
    }

    /// First index present (or the next to be written when the log is empty).
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Last index present (`first - 1` when empty).
    pub fn last(&self) -> u64 {
        self.first + self.locs.len() as u64 - 1
    }

    /// Durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Durable snapshot marker.
    pub fn snapshot(&self) -> SnapshotMarker {
        self.snapshot
    }

    /// Location of entry `i`.
    pub fn loc(&self, i: u64) -> Option<Loc> {
        i.checked_sub(self.first)
            .and_then(|k| self.locs.get(k as usize))
            .copied()
    }

    /// Term of entry `i`, or of the snapshot when `i` is its index.
    pub fn term(&self, i: u64) -> Option<u64> {
        match self.loc(i) {
            Some(l) => Some(l.term),
            None if i == self.snapshot.index => Some(self.snapshot.term),
            None => None,
        }
    }

    /// Entry `i` from the cache.
    pub fn cached(&self, i: u64) -> Option<&WalEntry> {
        let cache_first = self.last() + 1 - self.cache.len() as u64;
        i.checked_sub(cache_first)
            .and_then(|k| self.cache.get(k as usize))
    }

    /// Applies an entry record: an index at or below the last truncates the suffix first (a Raft
    /// log conflict); an index past `last + 1` is a gap and refused.
    pub fn push_entry(&mut self, e: WalEntry, loc: Loc) -> Result<(), String> {
        if e.index == 0 {
            return Err("entry index 0".into());
        }
        if e.index > self.last() + 1 {
            return Err(format!(
                "entry {} leaves a gap after {}",
                e.index,
                self.last()
            ));
        }
        if e.index < self.first {
            self.clear(e.index);
        } else {
            self.truncate(e.index);
        }
        self.locs.push_back(loc);
        self.cache_bytes += e.data.len();
        self.cache.push_back(e);
        while self.cache_bytes > self.cache_limit {
            match self.cache.pop_front() {
                Some(old) => self.cache_bytes -= old.data.len(),
                None => break,
            }
        }
        Ok(())
    }

    /// Drops entries with index ≥ `from`.
    pub fn truncate(&mut self, from: u64) {
        if from < self.first {
            self.clear(from.max(1));
            return;
        }
        let keep = (from - self.first) as usize;
        self.locs.truncate(keep);
        while self.cache.back().is_some_and(|e| e.index >= from) {
            let e = self.cache.pop_back().expect("checked non-empty");
            self.cache_bytes -= e.data.len();
        }
    }

    /// True when no entry is present.
    pub fn is_empty(&self) -> bool {
        self.locs.is_empty()
    }

    /// Empties the log; the next entry is `next`.
    pub fn reset(&mut self, next: u64) {
        self.clear(next);
    }

    fn clear(&mut self, next: u64) {
        self.locs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.first = next;
    }

    /// Applies a hard state record.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Applies a snapshot marker: a snapshot past the last entry empties the log, which then
    /// continues after the snapshot.
    pub fn set_snapshot(&mut self, s: SnapshotMarker) {
        self.snapshot = s;
        if s.index > self.last() {
            self.clear(s.index + 1);
        }
    }

    /// Forgets the entries stored in segments before `seq` (they were released).
    pub fn release_before(&mut self, seq: u64) {
        while self.locs.front().is_some_and(|l| l.seq < seq) {
            self.locs.pop_front();
            self.first += 1;
        }
        let cache_first = self.last() + 1 - self.cache.len() as u64;
        for _ in cache_first..self.first.min(self.last() + 1) {
            if let Some(e) = self.cache.pop_front() {
                self.cache_bytes -= e.data.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, term: u64) -> WalEntry {
        WalEntry {
            index,
            term,
            kind: 0,
            data: vec![index as u8; 10],
        }
    }

    fn loc(seq: u64, index: u64) -> Loc {
        Loc {
            seq,
            offset: index * 100,
            len: 40,
            term: index,
        }
    }

    #[test]
    fn conflict_truncates_and_cache_stays_a_suffix() {
        let mut ix = LogIndex::new(25);
        for i in 1..=5 {
            ix.push_entry(e(i, 1), loc(1, i)).unwrap();
        }
        assert_eq!((ix.first(), ix.last()), (1, 5));
        assert!(
            ix.cached(3).is_none(),
            "cache holds only 2 entries of 10 bytes"
        );
        assert_eq!(ix.cached(5).unwrap().index, 5);
        ix.push_entry(e(4, 2), loc(2, 4)).unwrap();
        assert_eq!(ix.last(), 4);
        assert_eq!(ix.cached(4).unwrap().term, 2);
        assert_eq!(ix.loc(4).unwrap().seq, 2);
        assert!(ix.push_entry(e(6, 2), loc(2, 6)).is_err());
    }

    #[test]
    fn snapshot_past_the_log_restarts_it_and_release_drops_a_prefix() {
        let mut ix = LogIndex::new(1000);
        for i in 1..=4 {
            ix.push_entry(e(i, 1), loc(if i <= 2 { 1 } else { 2 }, i))
                .unwrap();
        }
        ix.release_before(2);
        assert_eq!((ix.first(), ix.last()), (3, 4));
        assert!(ix.cached(2).is_none());
        assert_eq!(ix.cached(3).unwrap().index, 3);
        ix.set_snapshot(SnapshotMarker { index: 10, term: 3 });
        assert_eq!((ix.first(), ix.last()), (11, 10));
        assert_eq!(ix.term(10), Some(3));
        ix.push_entry(e(11, 3), loc(3, 11)).unwrap();
        assert_eq!(ix.last(), 11);
    }
}
