//! Page allocation: which pages are free now, which are freed but may still be seen, and the
//! high-water mark. Owned by the single writer.
//!
//! A page freed by the commit with sequence T is in the trees of snapshots < T only. It may be
//! reused once (S3) no open reader holds a snapshot < T *and* the last durable commit is >= T
//! (otherwise a crash would reopen a tree that still points at it). Until then it waits in
//! `pending[T]`.
//!
//! Exception: a page allocated after the last durable commit is not in that commit's tree, so
//! once freed it only waits for readers (`pending_fresh[T]`). Without this, a run of visible
//! commits with no durable one in between could never reuse a page.

use ahash::AHashSet as HashSet;
use std::collections::{BTreeMap, BTreeSet};

use crate::btree::page::{PageId, FIRST_DATA_PAGE};

#[derive(Debug, Default)]
pub struct Allocator {
    /// Reusable now.
    pub free: BTreeSet<PageId>,
    /// Freed by commit `seq`, waiting for readers and durability.
    pub pending: BTreeMap<u64, Vec<PageId>>,
    /// Freed by commit `seq`, allocated after the last durable commit: waiting for readers.
    pub pending_fresh: BTreeMap<u64, Vec<PageId>>,
    /// Pages allocated since the last durable commit.
    pub fresh: HashSet<PageId>,
    /// Pages [hwm, ...) have never been handed out in the durable lineage.
    pub hwm: u64,
}

impl Allocator {
    pub fn new(hwm: u64, free: impl IntoIterator<Item = PageId>) -> Allocator {
        debug_assert!(hwm >= FIRST_DATA_PAGE);
        Allocator {
            free: free.into_iter().collect(),
            pending: BTreeMap::new(),
            pending_fresh: BTreeMap::new(),
            fresh: HashSet::new(),
            hwm,
        }
    }

    /// A run of `n` contiguous pages: the lowest free run, else from the high-water mark.
    /// Returns the first page and whether it was reused (so its verified bits must be cleared).
    pub fn alloc(&mut self, n: u64) -> PageId {
        let p = self.alloc_run(n);
        self.fresh.extend(p..p + n);
        p
    }

    /// One page for a branch node: the highest free page, else from the high-water mark.
    ///
    /// Branches are kept apart from leaves on purpose. A batch of random writes rewrites a
    /// few leaves here and there but nearly every branch above them, so the branches one
    /// commit writes are the pages the next commit frees, nearly all of them. Taken from the
    /// top of the free set they land next to each other again, and the disk gets a few long
    /// writes instead of one request per branch (leaves come from the bottom, [`Self::alloc`]).
    pub fn alloc_high(&mut self) -> PageId {
        let p = self.free.pop_last().unwrap_or_else(|| {
            self.hwm += 1;
            self.hwm - 1
        });
        self.fresh.insert(p);
        p
    }

    fn alloc_run(&mut self, n: u64) -> PageId {
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
        for p in first..first + n {
            if self.fresh.remove(&p) {
                self.pending_fresh.entry(seq).or_default().push(p);
            } else {
                self.pending.entry(seq).or_default().push(p);
            }
        }
    }

    /// A durable commit completed: every page allocated so far is in its tree (or free in it).
    pub fn durable(&mut self) {
        self.fresh.clear();
    }

    /// Moves pages to the reusable set: those freed at a sequence <= `oldest_reader` that were
    /// allocated after the last durable commit, and the others freed at a sequence <=
    /// min(`oldest_reader`, `durable_seq`).
    pub fn reclaim(&mut self, oldest_reader: u64, durable_seq: u64) {
        let limit = oldest_reader.min(durable_seq);
        for (map, limit) in [
            (&mut self.pending_fresh, oldest_reader),
            (&mut self.pending, limit),
        ] {
            while let Some(entry) = map.first_entry() {
                if *entry.key() > limit {
                    break;
                }
                let pages = entry.remove();
                self.free.extend(pages);
            }
        }
    }

    pub fn pending_count(&self) -> usize {
        self.pending
            .values()
            .chain(self.pending_fresh.values())
            .map(Vec::len)
            .sum()
    }

    /// Every freed page not yet reusable.
    pub fn pending_pages(&self) -> impl Iterator<Item = PageId> + '_ {
        self.pending
            .values()
            .chain(self.pending_fresh.values())
            .flatten()
            .copied()
    }

    /// Every page that is free in the durable image about to be written: reusable ones and
    /// pending ones (all pending pages were freed by commits up to the one being made durable).
    pub fn durable_free_list(&self) -> Vec<PageId> {
        let mut v: Vec<PageId> = self.free.iter().copied().collect();
        v.extend(self.pending_pages());
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
    fn branches_come_from_the_top_of_the_free_set() {
        let mut a = Allocator::new(100, [5, 6, 50, 51]);
        assert_eq!(a.alloc_high(), 51);
        assert_eq!(a.alloc(1), 5);
        assert_eq!(a.alloc_high(), 50);
        assert_eq!(a.alloc_high(), 6);
        assert_eq!(a.alloc_high(), 100);
        assert_eq!(a.hwm, 101);
        assert!(a.fresh.contains(&51) && a.fresh.contains(&100));
    }

    #[test]
    fn pending_pages_wait_for_the_limit() {
        let mut a = Allocator::new(10, []);
        a.release(3, 4, 2);
        a.release(5, 7, 1);
        a.reclaim(4, 4);
        assert_eq!(a.free.iter().copied().collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(a.pending_count(), 1);
        assert_eq!(a.durable_free_list(), vec![4, 5, 7]);
    }

    #[test]
    fn pages_allocated_after_the_last_durable_commit_wait_only_for_readers() {
        let mut a = Allocator::new(10, []);
        let p = a.alloc(1);
        a.release(7, p, 1);
        a.release(7, 3, 1);
        // Durable commit at 2: page 3 may be in it, page p cannot.
        a.reclaim(7, 2);
        assert_eq!(a.free.iter().copied().collect::<Vec<_>>(), vec![p]);
        let q = a.alloc(1);
        assert_eq!(q, p);
        a.durable();
        a.release(8, q, 1);
        a.reclaim(8, 2);
        assert!(
            a.free.is_empty(),
            "after a durable commit the page is in a durable tree"
        );
    }
}
