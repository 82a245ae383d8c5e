//! The write transaction: copy-on-write changes to any number of buckets, then one of two
//! commits.
//!
//! - Changes: a committed run on the path to a changed key is decoded into the arena and its page
//!   freed at this transaction's sequence (S1: it is never modified in place).
//! - Commit (`spill`): small dirty nodes are merged with a sibling, large ones split; every dirty
//!   node, new value and new freelist chunk is written to freshly allocated pages. Allocation only
//!   hands out pages no reader and no durable commit can see (S3, `freelist.rs`).
//! - **Visible** commit: the pages are written (no fsync) and the new root is published to readers.
//! - **Durable** commit: additionally the freelist is written, the data synced, then the meta
//!   written to slot txid % 2 and synced (S2). A crash reopens the last durable commit.
//!   [`WriteTxn::prepare_durable`] splits it: the pages are written and published under the
//!   writer, and the returned [`PendingDurable`] runs the syncs and the meta write after the
//!   writer is released ([`crate::btree::Database::sync`]), so visible commits go on meanwhile.
//!   That is safe because nothing a later visible commit writes is referenced by the pending
//!   meta (copy-on-write), and the pages it frees are not reused before the pending commit (or a
//!   later one) completes: at prepare time every page allocated so far stops counting as
//!   "fresh" (`freelist.rs`), and `durable_seq` moves only when the meta is synced. One durable
//!   commit is in flight at a time (both would write the same meta slot).
//! - **Parked** ([`WriteTxn::park`]): nothing is written or published; the changes stay with the
//!   writer and the next write transaction resumes them (same sequence, same base), so several
//!   apply batches can share one visible commit. Readers see none of them until a commit (or
//!   [`crate::btree::Database::publish_parked`]); a defrag publishes them first, an install
//!   discards them (the installed file supersedes them). A resumed transaction dropped without
//!   a commit or park loses acknowledged changes, so it marks the database failed (D2).
//! - Any failed write or sync marks the database failed (D2): no further write transactions.

use ahash::AHashMap as HashMap;
use std::ops::Bound;
use std::sync::{Arc, MutexGuard};

use crate::btree::cursor::{Cursor, Range, Source};
use crate::btree::db::{Shared, Snapshot, WriterState};
use crate::btree::error::{Error, Result};
use crate::btree::node::{encode_overflow, Buf, Child, Node, NodeId, Val};
use crate::btree::page::{
    check_key, check_value, corrupted, pages_for, rd_u64, seal, wr_u64, Header, Kind, Meta, PageId,
    FIRST_DATA_PAGE, FREELIST_IDS_OFFSET, FREELIST_IDS_PER_PAGE, HEADER_SIZE, MAX_DEPTH, PAGE_SIZE,
    PAGE_SIZE_U64,
};

struct BucketState {
    name: Vec<u8>,
    root: Option<Child>,
    len: u64,
    dirty: bool,
    deleted: bool,
}

pub struct WriteTxn<'db> {
    _lock: MutexGuard<'db, ()>,
    shared: Arc<Shared>,
    state: Option<WriterState>,
    ch: Changes,
    /// The buffer each new run is encoded into before it is written (one, reused: it stays hot
    /// in the CPU cache).
    scratch: Vec<u8>,
    fill: usize,
    /// Carries a parked transaction's changes (see the module comment).
    resumed: bool,
    /// Committed, prepared or parked: dropping it is not a loss.
    done: bool,
}

/// Bucket catalog value: root page (0 = empty tree) and number of keys.
fn encode_bucket(root: PageId, len: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    wr_u64(&mut v, 0, root);
    wr_u64(&mut v, 8, len);
    v
}

pub(crate) fn decode_bucket(v: &[u8]) -> Result<(PageId, u64)> {
    if v.len() != 16 {
        return Err(corrupted(0, format!("bucket record of {} bytes", v.len())));
    }
    Ok((rd_u64(v, 0), rd_u64(v, 8)))
}

/// A write transaction's changes: what a park hands to the writer state for the next
/// transaction to resume.
pub(crate) struct Changes {
    /// The published snapshot the changes start from, and the sequence they commit at.
    base: Arc<Snapshot>,
    seq: u64,
    arena: Vec<Node>,
    /// Runs (first page, pages) freed by this transaction.
    freed: Vec<(PageId, u64)>,
    catalog: Option<Child>,
    buckets: Vec<BucketState>,
    by_name: HashMap<Vec<u8>, usize>,
}

impl Changes {
    /// No changes yet, on top of `base`.
    fn on(base: Arc<Snapshot>) -> Changes {
        let seq = base.seq + 1;
        let catalog = (base.catalog != 0).then_some(Child::Page(base.catalog));
        Changes {
            base,
            seq,
            arena: Vec::new(),
            freed: Vec::new(),
            catalog,
            buckets: Vec::new(),
            by_name: HashMap::new(),
        }
    }
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn new(
        lock: MutexGuard<'db, ()>,
        shared: Arc<Shared>,
        mut state: WriterState,
    ) -> WriteTxn<'db> {
        let (ch, resumed) = match state.parked.take() {
            Some(parked) => (parked, true),
            None => (Changes::on(shared.published.load_full()), false),
        };
        WriteTxn {
            _lock: lock,
            shared,
            state: Some(state),
            ch,
            scratch: Vec::new(),
            fill: PAGE_SIZE / 2,
            resumed,
            done: false,
        }
    }

    /// Whether this transaction carries the changes of a parked one.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// How full split pages are left for random inserts, in percent (bbolt's fill percent;
    /// default 50). Appends at the right edge of a node always fill pages completely.
    pub fn set_fill_percent(&mut self, percent: u32) {
        self.fill = (PAGE_SIZE * percent.clamp(10, 100) as usize) / 100;
    }

    fn src(&self) -> Source<'_> {
        Source {
            shared: &self.shared,
            hwm: self.ch.base.hwm,
            seq: self.ch.base.seq,
            arena: &self.ch.arena,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Buckets

    fn find_bucket(&mut self, name: &[u8]) -> Result<Option<usize>> {
        if let Some(&i) = self.ch.by_name.get(name) {
            return Ok((!self.ch.buckets[i].deleted).then_some(i));
        }
        let Some(v) = self.src().get(self.ch.catalog, name)? else {
            return Ok(None);
        };
        let (root, len) = decode_bucket(v)?;
        let i = self.ch.buckets.len();
        self.ch.buckets.push(BucketState {
            name: name.to_vec(),
            root: (root != 0).then_some(Child::Page(root)),
            len,
            dirty: false,
            deleted: false,
        });
        self.ch.by_name.insert(name.to_vec(), i);
        Ok(Some(i))
    }

    pub fn create_bucket(&mut self, name: &[u8]) -> Result<()> {
        check_key(name)?;
        if self.find_bucket(name)?.is_some() {
            return Err(Error::BucketExists(name.to_vec()));
        }
        let st = BucketState {
            name: name.to_vec(),
            root: None,
            len: 0,
            dirty: true,
            deleted: false,
        };
        match self.ch.by_name.get(name) {
            Some(&i) => self.ch.buckets[i] = st,
            None => {
                self.ch.by_name.insert(name.to_vec(), self.ch.buckets.len());
                self.ch.buckets.push(st);
            }
        }
        Ok(())
    }

    /// Creates the bucket unless it exists.
    pub fn ensure_bucket(&mut self, name: &[u8]) -> Result<()> {
        match self.find_bucket(name)? {
            Some(_) => Ok(()),
            None => self.create_bucket(name),
        }
    }

    /// Deletes a bucket and frees every page of its tree.
    pub fn delete_bucket(&mut self, name: &[u8]) -> Result<()> {
        let i = self
            .find_bucket(name)?
            .ok_or_else(|| Error::BucketNotFound(name.to_vec()))?;
        if let Some(root) = self.ch.buckets[i].root.take() {
            self.free_subtree(root, 0)?;
        }
        let b = &mut self.ch.buckets[i];
        b.deleted = true;
        b.dirty = true;
        b.len = 0;
        Ok(())
    }

    fn free_subtree(&mut self, c: Child, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(corrupted(0, "tree too deep"));
        }
        let node = self.src().node(c)?;
        let mut children = Vec::new();
        let mut overflow = Vec::new();
        for i in 0..node.len() {
            if node.leaf() {
                if let crate::btree::cursor::Value::Overflow { page, len } = node.value(i) {
                    overflow.push((page, pages_for(HEADER_SIZE + len) as u64));
                }
            } else {
                children.push(node.child(i));
            }
        }
        if let Child::Page(p) = c {
            let (_, h) = self.shared.run(p, self.ch.base.hwm, self.ch.base.seq)?;
            self.ch.freed.push((p, h.run_pages()));
        }
        self.ch.freed.extend(overflow);
        for ch in children {
            self.free_subtree(ch, depth + 1)?;
        }
        Ok(())
    }

    pub fn bucket_names(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let mut r = Range::new(
            Cursor::new(self.src(), self.ch.catalog),
            Bound::Unbounded,
            Bound::Unbounded,
            false,
        );
        for kv in &mut r {
            let (k, _) = kv?;
            if !self
                .ch
                .by_name
                .get(k)
                .is_some_and(|&i| self.ch.buckets[i].deleted)
            {
                names.push(k.to_vec());
            }
        }
        for b in &self.ch.buckets {
            if !b.deleted && !names.contains(&b.name) {
                names.push(b.name.clone());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The root of a bucket as this transaction sees it, without caching it (so `&self`).
    fn peek_root(&self, name: &[u8]) -> Result<Option<Child>> {
        if let Some(&i) = self.ch.by_name.get(name) {
            let b = &self.ch.buckets[i];
            return if b.deleted {
                Err(Error::BucketNotFound(name.to_vec()))
            } else {
                Ok(b.root)
            };
        }
        let v = self
            .src()
            .get(self.ch.catalog, name)?
            .ok_or_else(|| Error::BucketNotFound(name.to_vec()))?;
        let (root, _) = decode_bucket(v)?;
        Ok((root != 0).then_some(Child::Page(root)))
    }

    /// Reads `key` of bucket `name`, including this transaction's changes.
    pub fn get_in(&self, name: &[u8], key: &[u8]) -> Result<Option<&[u8]>> {
        self.src().get(self.peek_root(name)?, key)
    }

    /// Entries of bucket `name` in the bounds, including this transaction's changes.
    pub fn range_in(
        &self,
        name: &[u8],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
    ) -> Result<Range<'_>> {
        Ok(Range::new(
            Cursor::new(self.src(), self.peek_root(name)?),
            start,
            end,
            reverse,
        ))
    }

    /// Counts entries of bucket `name` in the bounds without reading values.
    pub fn count_in(&self, name: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<u64> {
        Cursor::new(self.src(), self.peek_root(name)?).count(start, end)
    }

    /// A handle to change one bucket.
    pub fn bucket<'t>(&'t mut self, name: &[u8]) -> Result<BucketMut<'t, 'db>> {
        let idx = self
            .find_bucket(name)?
            .ok_or_else(|| Error::BucketNotFound(name.to_vec()))?;
        Ok(BucketMut { txn: self, idx })
    }

    // -----------------------------------------------------------------------------------------
    // Tree changes

    /// Makes `c` a dirty node: decode a committed run into the arena and free the run.
    fn touch(&mut self, c: Child) -> Result<NodeId> {
        match c {
            Child::Node(id) => Ok(id),
            Child::Page(pid) => {
                let (run, h) = self.shared.run(pid, self.ch.base.hwm, self.ch.base.seq)?;
                if !matches!(h.kind, Kind::Leaf | Kind::Branch) {
                    return Err(corrupted(
                        pid,
                        format!("expected a tree node, found {:?}", h.kind),
                    ));
                }
                let node = Node::decode(&crate::btree::page::NodePage::new(run, &h));
                self.ch.freed.push((pid, h.run_pages()));
                self.ch.arena.push(node);
                Ok(self.ch.arena.len() - 1)
            }
        }
    }

    /// Copies the path to `key`'s leaf into the arena; returns the leaf.
    fn touch_path(&mut self, root: &mut Option<Child>, key: &[u8]) -> Result<NodeId> {
        let mut id = match *root {
            None => {
                self.ch.arena.push(Node::new_leaf());
                self.ch.arena.len() - 1
            }
            Some(c) => self.touch(c)?,
        };
        *root = Some(Child::Node(id));
        for _ in 0..MAX_DEPTH {
            if self.ch.arena[id].leaf {
                return Ok(id);
            }
            let i = self.ch.arena[id].child_index(key);
            let c = self.ch.arena[id].children[i];
            let cid = self.touch(c)?;
            self.ch.arena[id].children[i] = Child::Node(cid);
            id = cid;
        }
        Err(corrupted(0, "tree too deep"))
    }

    fn free_value(&mut self, v: &Val) {
        if let Val::Overflow { page, len } = v {
            self.ch
                .freed
                .push((*page, pages_for(HEADER_SIZE + len) as u64));
        }
    }

    /// Inserts or replaces; returns true if the key is new.
    fn tree_put(&mut self, root: &mut Option<Child>, key: &[u8], value: &[u8]) -> Result<bool> {
        let leaf = self.touch_path(root, key)?;
        let n = &mut self.ch.arena[leaf];
        match n.search(key) {
            (i, true) => {
                let old = std::mem::replace(&mut n.vals[i], Val::new(value));
                self.free_value(&old);
                Ok(false)
            }
            (i, false) => {
                n.append &= i == n.keys.len();
                n.keys.insert(i, Buf::Owned(key.to_vec()));
                n.vals.insert(i, Val::new(value));
                Ok(true)
            }
        }
    }

    /// Removes `key`; returns whether it existed. Absent keys copy nothing.
    fn tree_delete(&mut self, root: &mut Option<Child>, key: &[u8]) -> Result<bool> {
        if self.src().get(*root, key)?.is_none() {
            return Ok(false);
        }
        let leaf = self.touch_path(root, key)?;
        let n = &mut self.ch.arena[leaf];
        let (i, found) = n.search(key);
        debug_assert!(found);
        n.append = false;
        n.keys.remove(i);
        let old = n.vals.remove(i);
        self.free_value(&old);
        Ok(true)
    }

    // -----------------------------------------------------------------------------------------
    // Commit

    fn state(&mut self) -> &mut WriterState {
        self.state
            .as_mut()
            .expect("writer state present until the transaction ends")
    }

    /// Writes a new run (pages allocated by this transaction: no reader or durable commit can
    /// see them, S1/S3) at once, one 4 KiB page per write call.
    ///
    /// Written as the commit encodes them, from one reused buffer: collecting a commit's runs
    /// first cost a cold 4 KiB buffer per page (~6 MB for 1,000 random puts into a 1M-key tree).
    /// Not coalesced on purpose: Linux 6.16+ gives ext4 large folios, sized by the write, and a
    /// later 4 KiB write into a page of a large folio (what every commit after the first does:
    /// freed pages are reused one by one) walks all the folio's buffers on the write and again
    /// at writeback. Measured here (kernel 6.18, ext4): 1,400 random page writes + fdatasync
    /// into a file first filled with 1 MiB writes took 9.4 + 25.3 ms, into one filled with
    /// 4 KiB writes 3.6 + 14.1 ms. Adjacent pages still reach the disk as one request (the block
    /// layer merges them, whatever order they were written in).
    fn write_run(&self, first: PageId, data: &[u8]) -> Result<()> {
        for (i, chunk) in data.chunks(PAGE_SIZE).enumerate() {
            self.shared
                .backend
                .write((first + i as u64) * PAGE_SIZE_U64, chunk)?;
        }
        self.shared
            .unwritten_back
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Once visible commits have written `Options::writeback_bytes` since the last request (or
    /// durable commit), asks the kernel to start writing the file's dirty pages back, so the
    /// next durable commit's fdatasync does not send them to the disk in one burst in front of
    /// the WAL's writes. Measured (tuning.md, "B+tree writeback"): put 10/100 p99 halved.
    fn pace_writeback(&self) -> Result<()> {
        let every = self.shared.options.writeback_bytes;
        let written = &self.shared.unwritten_back;
        if every == 0 || written.load(std::sync::atomic::Ordering::Relaxed) < every {
            return Ok(());
        }
        written.store(0, std::sync::atomic::Ordering::Relaxed);
        self.shared.backend.start_writeback()?;
        Ok(())
    }

    /// Grows the file to hold every page below the high-water mark, before any of them is
    /// written: by at least `grow_step`, or half the file when larger, never past the map.
    fn ensure_file_len(&mut self) -> Result<()> {
        let needed = self.state().alloc.hwm * PAGE_SIZE_U64;
        let cur = self.state().file_len;
        if needed <= cur {
            return Ok(());
        }
        let step = self.shared.options.grow_step.max(cur / 2);
        let new_len = needed.max(cur + step).div_ceil(PAGE_SIZE_U64) * PAGE_SIZE_U64;
        let new_len = new_len.min(self.shared.map.len() as u64).max(needed);
        self.shared.backend.set_len(new_len)?;
        self.state().file_len = new_len;
        Ok(())
    }

    /// Allocates a run of `pages` pages for new content.
    fn alloc(&mut self, pages: u64) -> Result<PageId> {
        self.alloc_for(pages, false)
    }

    /// Allocates a run of `pages` pages; a one-page branch comes from the top of the free set
    /// (`Allocator::alloc_high`).
    fn alloc_for(&mut self, pages: u64, branch: bool) -> Result<PageId> {
        let map_pages = self.shared.map.len() as u64 / PAGE_SIZE_U64;
        let st = self.state();
        let p = if branch && pages == 1 {
            st.alloc.alloc_high()
        } else {
            st.alloc.alloc(pages)
        };
        if st.alloc.hwm > map_pages {
            return Err(Error::MapFull {
                needed: st.alloc.hwm * PAGE_SIZE_U64,
                map_size: map_pages * PAGE_SIZE_U64,
            });
        }
        self.shared.verified.clear(p, pages);
        self.ensure_file_len()?;
        Ok(p)
    }

    /// Merges small dirty children with a sibling and drops empty ones, bottom-up.
    fn rebalance(&mut self, id: NodeId) -> Result<()> {
        if self.ch.arena[id].leaf {
            return Ok(());
        }
        for i in 0..self.ch.arena[id].children.len() {
            if let Child::Node(c) = self.ch.arena[id].children[i] {
                self.rebalance(c)?;
            }
        }
        let min = PAGE_SIZE / 4;
        let mut i = 0;
        while i < self.ch.arena[id].children.len() {
            let Child::Node(c) = self.ch.arena[id].children[i] else {
                i += 1;
                continue;
            };
            if self.ch.arena[c].len() == 0 {
                self.ch.arena[id].children.remove(i);
                self.ch.arena[id].keys.remove(i);
                continue;
            }
            if self.ch.arena[c].size() >= min || self.ch.arena[id].children.len() < 2 {
                i += 1;
                continue;
            }
            // Merge child i with its right sibling (or the left one for the last child).
            let (l, r) = if i + 1 < self.ch.arena[id].children.len() {
                (i, i + 1)
            } else {
                (i - 1, i)
            };
            let lc = self.ch.arena[id].children[l];
            let rc = self.ch.arena[id].children[r];
            let lid = self.touch(lc)?;
            let rid = self.touch(rc)?;
            if self.ch.arena[lid].leaf != self.ch.arena[rid].leaf {
                return Err(corrupted(0, "siblings at different levels"));
            }
            let right = std::mem::take(&mut self.ch.arena[rid]);
            let left = &mut self.ch.arena[lid];
            left.append = false;
            if !left.leaf {
                // The right node's first separator may be stale; the parent's key is exact
                // enough (it bounds the right subtree from below).
                let mut keys = right.keys;
                if let Some(k0) = keys.first_mut() {
                    *k0 = self.ch.arena[id].keys[r].clone();
                }
                self.ch.arena[lid].keys.extend(keys);
                self.ch.arena[lid].children.extend(right.children);
            } else {
                left.keys.extend(right.keys);
                left.vals.extend(right.vals);
            }
            self.ch.arena[id].children[l] = Child::Node(lid);
            self.ch.arena[id].children.remove(r);
            self.ch.arena[id].keys.remove(r);
            i = l;
        }
        Ok(())
    }

    /// Writes a dirty node (and below it) to new pages; returns (first key, page) per piece.
    fn spill(&mut self, id: NodeId) -> Result<Vec<(Buf, PageId)>> {
        let mut node = std::mem::take(&mut self.ch.arena[id]);
        let mut append_only = node.append;
        if node.leaf {
            for v in node.vals.iter_mut() {
                if let Val::Big(data) = v {
                    let pages = pages_for(HEADER_SIZE + data.len()) as u64;
                    let p = self.alloc(pages)?;
                    self.write_run(p, &encode_overflow(data, p, self.ch.seq))?;
                    *v = Val::Overflow {
                        page: p,
                        len: data.len(),
                    };
                }
            }
        } else {
            let mut keys = Vec::with_capacity(node.keys.len());
            let mut children = Vec::with_capacity(node.children.len());
            let last = node.children.len().saturating_sub(1);
            for (i, (k, c)) in node.keys.into_iter().zip(node.children).enumerate() {
                match c {
                    Child::Page(p) => {
                        keys.push(k);
                        children.push(Child::Page(p));
                    }
                    Child::Node(cid) => {
                        let pieces = self.spill(cid)?;
                        if pieces.len() > 1 && i != last {
                            append_only = false;
                        }
                        for (pk, pp) in pieces {
                            keys.push(pk);
                            children.push(Child::Page(pp));
                        }
                    }
                }
            }
            node.keys = keys;
            node.children = children;
        }
        if node.len() == 0 {
            return Ok(Vec::new());
        }
        let threshold = if append_only { PAGE_SIZE } else { self.fill };
        let mut out = Vec::new();
        for (a, b) in node.split_points(threshold) {
            let pages = pages_for(node.size_of(a, b)) as u64;
            let p = self.alloc_for(pages, !node.leaf)?;
            let buf = std::mem::take(&mut self.scratch);
            let buf = node.encode_into(a, b, p, self.ch.seq, buf);
            let written = self.write_run(p, &buf);
            self.scratch = buf;
            written?;
            out.push((node.keys[a].clone(), p));
        }
        Ok(out)
    }

    /// Spills a whole tree; returns its new root page (0 = empty).
    fn spill_tree(&mut self, root: Option<Child>) -> Result<PageId> {
        let Some(root) = root else { return Ok(0) };
        let mut id = match root {
            Child::Page(p) => return Ok(p),
            Child::Node(id) => id,
        };
        self.rebalance(id)?;
        // A branch root with a single child is replaced by that child.
        loop {
            let n = &self.ch.arena[id];
            if n.leaf || n.children.len() != 1 {
                break;
            }
            match n.children[0] {
                Child::Page(p) => return Ok(p),
                Child::Node(c) => id = c,
            }
        }
        let mut pieces = self.spill(id)?;
        loop {
            match pieces.len() {
                0 => return Ok(0),
                1 => return Ok(pieces[0].1),
                _ => {
                    let (keys, pages): (Vec<_>, Vec<_>) = pieces.into_iter().unzip();
                    let children = pages.into_iter().map(Child::Page).collect();
                    self.ch.arena.push(Node {
                        leaf: false,
                        keys,
                        vals: Vec::new(),
                        children,
                        append: true,
                    });
                    let nid = self.ch.arena.len() - 1;
                    pieces = self.spill(nid)?;
                }
            }
        }
    }

    /// Writes the durable freelist chain; returns (head, id count).
    fn spill_freelist(&mut self) -> Result<(PageId, u64)> {
        let seq = self.ch.seq;
        let st = self.state();
        let old = std::mem::take(&mut st.freelist_pages);
        for p in old {
            st.alloc.release(seq, p, 1);
        }
        let total = st.alloc.free.len() + st.alloc.pending_count();
        let n = total.div_ceil(FREELIST_IDS_PER_PAGE);
        let mut pages = Vec::with_capacity(n);
        for _ in 0..n {
            pages.push(self.alloc(1)?);
        }
        let ids = self.state().alloc.durable_free_list();
        assert!(
            ids.len() <= n * FREELIST_IDS_PER_PAGE,
            "freelist pages were sized for the larger set"
        );
        for (j, &p) in pages.iter().enumerate() {
            let chunk = ids.chunks(FREELIST_IDS_PER_PAGE).nth(j).unwrap_or(&[]);
            let mut buf = std::mem::take(&mut self.scratch);
            buf.clear();
            buf.resize(PAGE_SIZE, 0);
            Header {
                kind: Kind::Freelist,
                count: chunk.len() as u16,
                overflow: 0,
                aux: 0,
                id: p,
                seq,
            }
            .write(&mut buf);
            wr_u64(
                &mut buf,
                HEADER_SIZE,
                pages.get(j + 1).copied().unwrap_or(0),
            );
            for (i, id) in chunk.iter().enumerate() {
                wr_u64(&mut buf, FREELIST_IDS_OFFSET + 8 * i, *id);
            }
            seal(&mut buf);
            let written = self.write_run(p, &buf);
            self.scratch = buf;
            written?;
        }
        let head = pages.first().copied().unwrap_or(0);
        self.state().freelist_pages = pages;
        Ok((head, ids.len() as u64))
    }

    /// Publishes the changes to readers without syncing. Survives a crash only once a later
    /// durable commit (or [`crate::btree::Database::sync`]) completes.
    pub fn commit(self) -> Result<()> {
        self.finish(false)
    }

    /// Commits and makes everything up to this commit crash-safe (S2).
    /// Readers see the commit only once it is durable (a failed sync publishes nothing).
    pub fn commit_durable(mut self) -> Result<()> {
        let r = self
            .try_prepare_durable()
            .and_then(|(pending, catalog, hwm)| {
                pending.complete()?;
                self.publish(catalog, hwm);
                Ok(())
            });
        if r.is_err() {
            self.shared.fail();
        }
        r
    }

    /// The first half of a durable commit: writes every page (the freelist included) and
    /// publishes the commit to readers (as a visible commit does), then releases the writer. The
    /// commit is crash-safe once [`PendingDurable::complete`] returns. Waits while another
    /// durable commit is in flight.
    pub fn prepare_durable(mut self) -> Result<PendingDurable> {
        let r = self.try_prepare_durable().map(|(pending, catalog, hwm)| {
            self.publish(catalog, hwm);
            pending
        });
        if r.is_err() {
            self.shared.fail();
        }
        r
    }

    /// Writes the pages of a durable commit; returns it with its catalog root and high-water
    /// mark, not yet published.
    fn try_prepare_durable(&mut self) -> Result<(PendingDurable, PageId, u64)> {
        self.done = true;
        // One durable commit in flight at a time: wait for the previous one's syncs.
        {
            let mut d = self.shared.wait_durable_idle();
            if self.shared.failed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::PreviousIo);
            }
            d.in_flight = true;
        }
        let mut pending = PendingDurable {
            shared: self.shared.clone(),
            txid: 0,
            seq: self.ch.seq,
            meta: Box::new([0u8; PAGE_SIZE]),
            armed: true,
        };
        let shared = self.shared.clone();
        // This commit's fdatasync writes back everything written so far.
        shared
            .unwritten_back
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.state().absorb_durable(&shared);
        let (catalog, freelist, hwm) = self.write_commit(true)?;
        let (freelist, free_count) = freelist.expect("a durable commit spills its freelist");
        let txid = self.state().txid + 1;
        pending.txid = txid;
        *pending.meta = Meta {
            txid,
            seq: self.ch.seq,
            catalog,
            freelist,
            free_count,
            hwm,
        }
        .encode();
        // Every page allocated so far is in the pending commit's tree or free in it: once freed
        // it must wait for durability like any other (the pending commit, or a later one).
        self.state().alloc.durable();
        Ok((pending, catalog, hwm))
    }

    /// Discards every change. A resumed transaction cannot be aborted: the changes it resumed
    /// were parked as applied, so losing them marks the database failed (D2).
    pub fn abort(self) {}

    /// Keeps the changes unpublished, unwritten, for the next write transaction to resume; the
    /// writer is released. Readers keep seeing the last published commit.
    pub fn park(mut self) {
        self.done = true;
        let empty = Changes::on(self.ch.base.clone());
        let changes = std::mem::replace(&mut self.ch, empty);
        self.state().parked = Some(changes);
    }

    fn finish(mut self, durable: bool) -> Result<()> {
        debug_assert!(!durable, "durable commits go through prepare_durable");
        self.done = true;
        let r = self
            .write_commit(durable)
            .and_then(|(catalog, _, hwm)| {
                self.pace_writeback()?;
                Ok((catalog, hwm))
            })
            .map(|(catalog, hwm)| self.publish(catalog, hwm));
        if r.is_err() {
            // D2 for I/O failures; any other error (MapFull, corruption) also leaves this
            // transaction's allocations inconsistent, so the writer stops until reopened.
            self.shared.fail();
        }
        r
    }

    /// Spills the changes and writes every page of the commit; returns the catalog root, the
    /// durable freelist (head, count) when `durable`, and the high-water mark.
    #[allow(clippy::type_complexity)]
    fn write_commit(&mut self, durable: bool) -> Result<(PageId, Option<(PageId, u64)>, u64)> {
        // 1. Spill dirty buckets and record them in the catalog.
        for i in 0..self.ch.buckets.len() {
            if !self.ch.buckets[i].dirty {
                continue;
            }
            let name = self.ch.buckets[i].name.clone();
            let mut catalog = self.ch.catalog;
            if self.ch.buckets[i].deleted {
                self.tree_delete(&mut catalog, &name)?;
            } else {
                let root = self.spill_tree(self.ch.buckets[i].root)?;
                let rec = encode_bucket(root, self.ch.buckets[i].len);
                self.tree_put(&mut catalog, &name, &rec)?;
            }
            self.ch.catalog = catalog;
        }
        let catalog = self.spill_tree(self.ch.catalog)?;
        // 2. Freed runs wait for readers and durability (S3).
        let seq = self.ch.seq;
        let freed = std::mem::take(&mut self.ch.freed);
        for (p, n) in freed {
            self.state().alloc.release(seq, p, n);
        }
        let freelist = if durable {
            Some(self.spill_freelist()?)
        } else {
            None
        };
        // Every new run was written as it was encoded (`write_run`).
        let hwm = self.state().alloc.hwm;
        Ok((catalog, freelist, hwm))
    }

    /// Makes the commit the one new readers see.
    fn publish(&mut self, catalog: PageId, hwm: u64) {
        let snap = Arc::new(Snapshot {
            seq: self.ch.seq,
            catalog,
            hwm,
        });
        self.state().history.push_back(snap.clone());
        self.shared.published.store(snap);
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if self.resumed && !self.done {
            self.shared.fail();
        }
        // Hand the writer state back. After a failed commit it is not: D2, reopen to write.
        if let Some(state) = self.state.take() {
            if !self.shared.failed.load(std::sync::atomic::Ordering::SeqCst) {
                *self.shared.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
            }
        }
    }
}

/// A durable commit whose pages are written and published, waiting for its syncs and its meta
/// (S2). Complete it with [`PendingDurable::complete`]; dropped instead, the commit stays
/// visible but not durable (the previous durable commit remains the recovery point).
#[must_use = "the commit is not durable until complete() returns"]
pub struct PendingDurable {
    shared: Arc<Shared>,
    txid: u64,
    seq: u64,
    meta: Box<[u8; PAGE_SIZE]>,
    /// Still marks the durable slot in flight (cleared by `complete` or `drop`).
    armed: bool,
}

impl PendingDurable {
    /// Syncs the data, writes the meta to slot txid % 2 and syncs it. Needs no writer: a write
    /// transaction may run on another thread meanwhile. A failure marks the database failed (D2).
    pub fn complete(mut self) -> Result<()> {
        let backend = &self.shared.backend;
        let r = backend
            .sync()
            .and_then(|()| backend.write((self.txid % 2) * PAGE_SIZE_U64, &self.meta[..]))
            .and_then(|()| backend.sync());
        if r.is_err() {
            self.shared.fail();
        }
        self.release(r.is_ok());
        Ok(r?)
    }

    fn release(&mut self, done: bool) {
        self.armed = false;
        let mut d = self
            .shared
            .durable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        d.in_flight = false;
        if done {
            d.done = Some((self.txid, self.seq));
        }
        self.shared.durable_idle.notify_all();
    }
}

impl Drop for PendingDurable {
    fn drop(&mut self) {
        if self.armed {
            self.release(false);
        }
    }
}

/// Changes to one bucket inside a write transaction.
pub struct BucketMut<'t, 'db> {
    txn: &'t mut WriteTxn<'db>,
    idx: usize,
}

impl BucketMut<'_, '_> {
    /// Inserts or replaces `key`. Keys are 1..=32 KiB; values up to 1 GiB.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        check_value(value)?;
        let mut root = self.txn.ch.buckets[self.idx].root;
        let new = self.txn.tree_put(&mut root, key, value)?;
        let b = &mut self.txn.ch.buckets[self.idx];
        b.root = root;
        b.dirty = true;
        b.len += new as u64;
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool> {
        let mut root = self.txn.ch.buckets[self.idx].root;
        let found = self.txn.tree_delete(&mut root, key)?;
        if found {
            let b = &mut self.txn.ch.buckets[self.idx];
            b.root = root;
            b.dirty = true;
            b.len -= 1;
        }
        Ok(found)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>> {
        self.txn.src().get(self.txn.ch.buckets[self.idx].root, key)
    }

    /// Number of keys.
    pub fn len(&self) -> u64 {
        self.txn.ch.buckets[self.idx].len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries in [start, end), in key order (`reverse`: descending), including this
    /// transaction's changes.
    pub fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Range<'_> {
        Range::new(
            Cursor::new(self.txn.src(), self.txn.ch.buckets[self.idx].root),
            start,
            end,
            reverse,
        )
    }
}

const _: () = assert!(FIRST_DATA_PAGE == 2);
