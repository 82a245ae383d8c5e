//! Page allocation: which pages are free now, which are freed but may still be seen, and the
//! high-water mark. Owned by the single writer.
//!
//! A page freed by the commit with sequence T is in the trees of snapshots < T only. It may be
//! reused once (S3) no open reader holds a snapshot < T *and* the last durable commit is >= T
//! (otherwise a crash would reopen a tree that still points at it). Until then it waits in
//! `pending[T]`.

use std::collections::{BTreeMap, BTreeSet};

use crate::btree::page::{PageId, FIRST_DATA_PAGE};

#[derive(Debug, Default)]
pub struct Allocator {
    /// Reusable now.
    pub free: BTreeSet<PageId>,
    /// Freed by commit `seq`, waiting for readers and durability.
    pub pending: BTreeMap<u64, Vec<PageId>>,
    /// Pages [hwm, ...) have never been handed out in the durable lineage.
    pub hwm: u64,
}

impl Allocator {
    pub fn new(hwm: u64, free: impl IntoIterator<Item = PageId>) -> Allocator {
        debug_assert!(hwm >= FIRST_DATA_PAGE);
        Allocator {
            free: free.into_iter().collect(),
            pending: BTreeMap::new(),
            hwm,
        }
    }

    /// A run of `n` contiguous pages: the lowest free run, else from the high-water mark.
    /// Returns the first page and whether it was reused (so its verified bits must be cleared).
    pub fn alloc(&mut self, n: u64) -> PageId {
        debug_assert!(n >= 1);
        if n == 1 {
            if let Some(p) = self.free.pop_first() {
                return p;
            }
        } else if let Some(start) = self.find_run(n) {
            for p in start..start + n {
                self.free.remove(&p);
            }
            return start;
        }
        let p = self.hwm;
        self.hwm += n;
        p
    }

    fn find_run(&self, n: u64) -> Option<PageId> {
        let mut start = 0;
        let mut len = 0;
        for &p in &self.free {
            if len > 0 && p == start + len {
                len += 1;
            } else {
                start = p;
                len = 1;
            }
            if len == n {
                return Some(start);
            }
        }
        None
    }

    pub fn release(&mut self, seq: u64, first: PageId, n: u64) {
        self.pending
            .entry(seq)
            .or_default()
            .extend(first..first + n);
    }

    /// Moves every page freed at a sequence <= `limit` to the reusable set.
    pub fn reclaim(&mut self, limit: u64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > limit {
                break;
            }
            let pages = entry.remove();
            self.free.extend(pages);
        }
    }

    pub fn pending_count(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    /// Every page that is free in the durable image about to be written: reusable ones and
    /// pending ones (all pending pages were freed by commits up to the one being made durable).
    pub fn durable_free_list(&self) -> Vec<PageId> {
        let mut v: Vec<PageId> = self.free.iter().copied().collect();
        for p in self.pending.values() {
            v.extend_from_slice(p);
        }
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_come_from_the_free_set_before_the_high_water_mark() {
        let mut a = Allocator::new(100, [5, 6, 8, 9, 10, 20]);
        assert_eq!(a.alloc(3), 8);
        assert_eq!(a.alloc(2), 5);
        assert_eq!(a.alloc(2), 100);
        assert_eq!(a.hwm, 102);
        assert_eq!(a.alloc(1), 20);
        assert_eq!(a.alloc(1), 102);
    }

    #[test]
    fn pending_pages_wait_for_the_limit() {
        let mut a = Allocator::new(10, []);
        a.release(3, 4, 2);
        a.release(5, 7, 1);
        a.reclaim(4);
        assert_eq!(a.free.iter().copied().collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(a.pending_count(), 1);
        assert_eq!(a.durable_free_list(), vec![4, 5, 7]);
    }
}
