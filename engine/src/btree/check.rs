//! `check`: walks the whole file from the latest snapshot and lists every problem it finds —
//! bad meta slots, bad checksums or structure, keys out of order across nodes, uneven leaf depth,
//! a page reachable twice, wrong bucket counts, free pages that are reachable, pages that are
//! neither reachable nor free (leaks). For tests and operators; it never stops at the first
//! problem and never panics on a corrupt file. Checksums are recomputed, not taken from the
//! readers' verified cache.

use std::fmt;

use crate::btree::db::Database;
use crate::btree::error::Result;
use crate::btree::page::{
    pages_for, validate_run, Header, Kind, Meta, NodePage, PageId, ValueRef, FIRST_DATA_PAGE,
    HEADER_SIZE, MAX_DEPTH, META_LEN, PAGE_SIZE,
};
use crate::btree::write::decode_bucket;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The page concerned (0 or 1 for a meta slot).
    pub page: PageId,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "page {}: {}", self.page, self.what)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    Unused,
    Tree,
    Value,
    Freelist,
    Free,
}

struct Walker<'a> {
    map: &'a crate::btree::mmap::Mmap,
    hwm: u64,
    seq: u64,
    uses: Vec<Use>,
    problems: Vec<Problem>,
    leaf_depth: Option<usize>,
}

impl<'a> Walker<'a> {
    fn problem(&mut self, page: PageId, what: impl Into<String>) {
        self.problems.push(Problem {
            page,
            what: what.into(),
        });
    }

    /// Claims the run's pages; reports a page reachable twice.
    fn claim(&mut self, first: PageId, pages: u64, how: Use) -> bool {
        let mut ok = true;
        for p in first..first + pages {
            let prev = self.uses[p as usize];
            if prev != Use::Unused {
                self.problem(
                    p,
                    format!("page reachable twice ({} and {})", name(prev), name(how)),
                );
                ok = false;
            } else {
                self.uses[p as usize] = how;
            }
        }
        ok
    }

    /// Reads and fully validates a run.
    fn run(&mut self, id: PageId) -> Option<(&'a [u8], Header)> {
        let map = self.map;
        if !(FIRST_DATA_PAGE..self.hwm).contains(&id) {
            self.problem(id, format!("page id outside [2, {})", self.hwm));
            return None;
        }
        let h = match Header::read(map.pages(id, 1)) {
            Ok(h) => h,
            Err(e) => {
                self.problem(id, e);
                return None;
            }
        };
        if id
            .checked_add(h.run_pages())
            .is_none_or(|end| end > self.hwm)
        {
            self.problem(
                id,
                format!("run of {} pages past the high-water mark", h.run_pages()),
            );
            return None;
        }
        if h.seq > self.seq {
            self.problem(
                id,
                format!(
                    "written by commit {}, after the snapshot's {}",
                    h.seq, self.seq
                ),
            );
            return None;
        }
        let run = map.pages(id, h.run_pages());
        match validate_run(run, id, self.hwm) {
            Ok(h) => Some((run, h)),
            Err(e) => {
                self.problem(id, e);
                None
            }
        }
    }

    /// Walks a subtree whose keys must lie in [lo, hi); returns the number of leaf entries.
    fn tree(&mut self, id: PageId, lo: Option<&[u8]>, hi: Option<&[u8]>, depth: usize) -> u64 {
        if depth > MAX_DEPTH {
            self.problem(id, "tree deeper than the maximum (a cycle?)");
            return 0;
        }
        let Some((run, h)) = self.run(id) else {
            return 0;
        };
        if !matches!(h.kind, Kind::Leaf | Kind::Branch) {
            self.problem(id, format!("expected a tree node, found {:?}", h.kind));
            return 0;
        }
        if !self.claim(id, h.run_pages(), Use::Tree) {
            return 0;
        }
        let node = NodePage::new(run, &h);
        let first = node.key(0);
        let last = node.key(node.count - 1);
        if lo.is_some_and(|lo| first < lo) && depth > 0 {
            self.problem(id, "key below its parent's separator");
        }
        if hi.is_some_and(|hi| last >= hi) {
            self.problem(id, "key at or above the next separator");
        }
        if node.leaf {
            match self.leaf_depth {
                None => self.leaf_depth = Some(depth),
                Some(d) if d != depth => {
                    self.problem(id, format!("leaf at depth {depth}, others at {d}"))
                }
                _ => {}
            }
            for i in 0..node.count {
                if let ValueRef::Overflow { page, len } = node.value(i) {
                    self.overflow(page, len);
                }
            }
            return node.count as u64;
        }
        let mut total = 0;
        for i in 0..node.count {
            // Child 0 inherits the parent's lower bound: its separator may be stale-high.
            let clo = if i == 0 { lo } else { Some(node.key(i)) };
            let chi = if i + 1 < node.count {
                Some(node.key(i + 1))
            } else {
                hi
            };
            total += self.tree(node.child(i), clo, chi, depth + 1);
        }
        total
    }

    fn overflow(&mut self, page: PageId, len: usize) {
        let Some((_, h)) = self.run(page) else { return };
        if h.kind != Kind::Overflow
            || h.aux as usize != len
            || h.run_pages() != pages_for(HEADER_SIZE + len) as u64
        {
            self.problem(page, "overflow run does not match its leaf entry");
            return;
        }
        self.claim(page, h.run_pages(), Use::Value);
    }
}

fn name(u: Use) -> &'static str {
    match u {
        Use::Unused => "unused",
        Use::Tree => "tree node",
        Use::Value => "overflow value",
        Use::Freelist => "freelist page",
        Use::Free => "free",
    }
}

impl Database {
    /// Walks the whole database and returns every problem found (empty = consistent).
    /// Blocks writers while it runs.
    pub fn check(&self) -> Result<Vec<Problem>> {
        let _lock = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let shared = self.inner.load_full();
        let snap = shared.published.load_full();
        let guard = shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut w = Walker {
            map: &shared.map,
            hwm: snap.hwm,
            seq: snap.seq,
            uses: vec![Use::Unused; snap.hwm as usize],
            problems: Vec::new(),
            leaf_depth: None,
        };

        // Meta slots, as on disk.
        let mut metas = vec![0u8; 2 * PAGE_SIZE];
        shared.backend.read(0, &mut metas)?;
        for slot in 0..2u64 {
            let p = &metas[slot as usize * PAGE_SIZE..][..PAGE_SIZE];
            if let Err(e) = Meta::decode(p, slot) {
                w.problem(slot, format!("meta slot {slot}: {e}"));
            }
            if p[META_LEN + 4..].iter().any(|&b| b != 0) {
                w.problem(
                    slot,
                    format!("meta slot {slot} has non-zero bytes after its checksum"),
                );
            }
        }

        // Catalog and buckets.
        if snap.catalog != 0 {
            let catalog = snap.catalog;
            w.tree(catalog, None, None, 0);
            let mut buckets = Vec::new();
            collect_leaf_entries(&mut w, catalog, &mut buckets, 0);
            for (name, rec) in buckets {
                match decode_bucket(&rec) {
                    Err(e) => w.problem(
                        catalog,
                        format!("bucket {:?}: {e}", String::from_utf8_lossy(&name)),
                    ),
                    Ok((0, len)) => {
                        if len != 0 {
                            w.problem(
                                catalog,
                                format!(
                                    "empty bucket {:?} records {len} keys",
                                    String::from_utf8_lossy(&name)
                                ),
                            );
                        }
                    }
                    Ok((root, len)) => {
                        w.leaf_depth = None;
                        let n = w.tree(root, None, None, 0);
                        if n != len {
                            w.problem(
                                root,
                                format!(
                                    "bucket {:?} holds {n} keys, catalog says {len}",
                                    String::from_utf8_lossy(&name)
                                ),
                            );
                        }
                    }
                }
            }
        }

        // Free pages, and the freelist of the last durable commit.
        if let Some(state) = guard.as_ref() {
            for &p in &state.freelist_pages {
                if let Some((_, h)) = w.run(p) {
                    if h.kind != Kind::Freelist {
                        w.problem(p, "freelist page of the wrong kind");
                    }
                    w.claim(p, 1, Use::Freelist);
                }
            }
            let free = state
                .alloc
                .free
                .iter()
                .copied()
                .chain(state.alloc.pending_pages());
            for p in free {
                if !(FIRST_DATA_PAGE..snap.hwm).contains(&p) {
                    w.problem(p, "free page beyond the high-water mark");
                    continue;
                }
                match w.uses[p as usize] {
                    Use::Unused => w.uses[p as usize] = Use::Free,
                    u => w.problem(p, format!("free page is also a {}", name(u))),
                }
            }
            for p in FIRST_DATA_PAGE..snap.hwm {
                if w.uses[p as usize] == Use::Unused {
                    w.problem(p, "page is neither reachable nor free (leaked)");
                }
            }
        }
        Ok(w.problems)
    }
}

/// The (key, value) entries of a small tree (the catalog), best effort on a corrupt one.
fn collect_leaf_entries(
    w: &mut Walker<'_>,
    id: PageId,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    depth: usize,
) {
    if depth > MAX_DEPTH || !(FIRST_DATA_PAGE..w.hwm).contains(&id) {
        return;
    }
    let Ok(h) = Header::read(w.map.pages(id, 1)) else {
        return;
    };
    if h.seq > w.seq || id.checked_add(h.run_pages()).is_none_or(|end| end > w.hwm) {
        return;
    }
    let run = w.map.pages(id, h.run_pages());
    let Ok(h) = validate_run(run, id, w.hwm) else {
        return;
    };
    if !matches!(h.kind, Kind::Leaf | Kind::Branch) {
        return;
    }
    let node = NodePage::new(run, &h);
    for i in 0..node.count {
        if node.leaf {
            if let ValueRef::Inline(v) = node.value(i) {
                out.push((node.key(i).to_vec(), v.to_vec()));
            }
        } else {
            collect_leaf_entries(w, node.child(i), out, depth + 1);
        }
    }
}
