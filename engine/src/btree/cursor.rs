//! Ordered navigation over one tree: seek, next, prev, and the range iterators and counting built
//! on them. Generic over where nodes come from — committed runs in the mmap (read transactions)
//! or, in a write transaction, a mix of committed runs and dirty in-memory nodes.

use std::ops::Bound;

use crate::btree::db::Shared;
use crate::btree::error::Result;
use crate::btree::node::{Child, Node, Val};
use crate::btree::page::{corrupted, Kind, NodePage, PageId, ValueRef, HEADER_SIZE, MAX_DEPTH};

#[derive(Clone, Copy)]
pub(crate) enum NodeRef<'a> {
    Page(NodePage<'a>),
    Dirty(&'a Node),
}

pub(crate) enum Value<'a> {
    Bytes(&'a [u8]),
    Overflow { page: PageId, len: usize },
}

impl<'a> NodeRef<'a> {
    #[inline]
    pub fn leaf(&self) -> bool {
        match self {
            NodeRef::Page(p) => p.leaf,
            NodeRef::Dirty(n) => n.leaf,
        }
    }
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            NodeRef::Page(p) => p.count,
            NodeRef::Dirty(n) => n.len(),
        }
    }
    #[inline]
    pub fn key(&self, i: usize) -> &'a [u8] {
        match self {
            NodeRef::Page(p) => p.key(i),
            NodeRef::Dirty(n) => &n.keys[i],
        }
    }
    #[inline]
    pub fn child(&self, i: usize) -> Child {
        match self {
            NodeRef::Page(p) => Child::Page(p.child(i)),
            NodeRef::Dirty(n) => n.children[i],
        }
    }
    #[inline]
    pub fn value(&self, i: usize) -> Value<'a> {
        match self {
            NodeRef::Page(p) => match p.value(i) {
                ValueRef::Inline(v) => Value::Bytes(v),
                ValueRef::Overflow { page, len } => Value::Overflow { page, len },
            },
            NodeRef::Dirty(n) => match &n.vals[i] {
                Val::Inline(v) => Value::Bytes(v),
                Val::Big(v) => Value::Bytes(v),
                Val::Overflow { page, len } => Value::Overflow {
                    page: *page,
                    len: *len,
                },
            },
        }
    }
    #[inline]
    pub fn search(&self, key: &[u8]) -> (usize, bool) {
        match self {
            NodeRef::Page(p) => p.search(key),
            NodeRef::Dirty(n) => n.search(key),
        }
    }
    #[inline]
    pub fn child_index(&self, key: &[u8]) -> usize {
        match self {
            NodeRef::Page(p) => p.child_index(key),
            NodeRef::Dirty(n) => n.child_index(key),
        }
    }
}

/// Cache lines of the neighbouring leaf a cursor prefetches when it enters a leaf: its header,
/// prefix and element arrays for up to ~14 entries.
const NEIGHBOUR_LINES: usize = 6;
/// How many entries ahead of the one it moves to a scanning cursor prefetches a value.
const VALUE_PREFETCH_DISTANCE: usize = 4;

/// Where a cursor's nodes come from.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub shared: &'a Shared,
    /// Page ids at or above this are outside the snapshot (D1 bound).
    pub hwm: u64,
    /// Runs written by a later commit than this are not part of the snapshot (D1 bound).
    pub seq: u64,
    /// Dirty nodes of a write transaction; empty for a read transaction.
    pub arena: &'a [Node],
}

impl<'a> Source<'a> {
    #[inline]
    pub fn node(self, c: Child) -> Result<NodeRef<'a>> {
        match c {
            Child::Node(id) => Ok(NodeRef::Dirty(&self.arena[id])),
            Child::Page(pid) => {
                let (run, h) = self.shared.run(pid, self.hwm, self.seq)?;
                match h.kind {
                    Kind::Leaf | Kind::Branch => Ok(NodeRef::Page(NodePage::new(run, &h))),
                    k => Err(corrupted(pid, format!("expected a tree node, found {k:?}"))),
                }
            }
        }
    }

    #[inline]
    pub fn value(self, v: Value<'a>) -> Result<&'a [u8]> {
        match v {
            Value::Bytes(b) => Ok(b),
            Value::Overflow { page, len } => {
                let (run, h) = self.shared.run(page, self.hwm, self.seq)?;
                if h.kind != Kind::Overflow || h.aux as usize != len {
                    return Err(corrupted(
                        page,
                        "overflow run does not match its leaf entry",
                    ));
                }
                Ok(&run[HEADER_SIZE..HEADER_SIZE + len])
            }
        }
    }

    /// Point lookup.
    pub fn get(self, root: Option<Child>, key: &[u8]) -> Result<Option<&'a [u8]>> {
        let Some(mut c) = root else { return Ok(None) };
        for _ in 0..MAX_DEPTH {
            let n = self.node(c)?;
            if n.leaf() {
                return match n.search(key) {
                    (i, true) => Ok(Some(self.value(n.value(i))?)),
                    _ => Ok(None),
                };
            }
            c = n.child(n.child_index(key));
        }
        Err(depth_error(c))
    }
}

fn depth_error(c: Child) -> crate::btree::error::Error {
    let page = match c {
        Child::Page(p) => p,
        Child::Node(_) => 0,
    };
    corrupted(
        page,
        format!("tree deeper than {MAX_DEPTH} levels (a cycle?)"),
    )
}

/// A position in one tree. Invalid (no entry) after running off either end.
pub(crate) struct Cursor<'a> {
    src: Source<'a>,
    root: Option<Child>,
    stack: Vec<(NodeRef<'a>, usize)>,
}

impl<'a> Cursor<'a> {
    pub fn new(src: Source<'a>, root: Option<Child>) -> Cursor<'a> {
        Cursor {
            src,
            root,
            stack: Vec::with_capacity(8),
        }
    }

    /// The current entry.
    pub fn entry(&self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        match self.stack.last() {
            Some((n, i)) if n.leaf() && *i < n.len() => {
                Ok(Some((n.key(*i), self.src.value(n.value(*i))?)))
            }
            _ => Ok(None),
        }
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        match self.stack.last() {
            Some((n, i)) if n.leaf() && *i < n.len() => Some(n.key(*i)),
            _ => None,
        }
    }

    fn push(&mut self, c: Child) -> Result<NodeRef<'a>> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(depth_error(c));
        }
        self.src.node(c)
    }

    /// Called when the cursor enters a leaf on a scan in either direction. Starts loading what
    /// the scan reads next, so those cache misses overlap instead of coming one after another:
    /// the values of the next few entries of this leaf, and the header, prefix and element
    /// arrays of the neighbouring leaf the scan reaches after this one. Only hints: every page
    /// is still read through [`Source::node`], and validated, when the cursor gets there.
    #[inline]
    fn entered_leaf(&self, backward: bool) {
        let n = self.stack.len();
        let Some(&(leaf, i)) = self.stack.last() else {
            return;
        };
        if let NodeRef::Page(p) = leaf {
            for d in 0..=VALUE_PREFETCH_DISTANCE {
                let j = if backward { i.wrapping_sub(d) } else { i + d };
                p.prefetch_value(j);
            }
        }
        if n < 2 {
            return;
        }
        let (parent, i) = self.stack[n - 2];
        let j = if backward {
            match i.checked_sub(1) {
                Some(j) => j,
                None => return,
            }
        } else if i + 1 < parent.len() {
            i + 1
        } else {
            return;
        };
        if let NodeRef::Page(p) = parent {
            let pid = p.child(j);
            if pid < self.src.hwm {
                self.src.shared.map.prefetch(pid, NEIGHBOUR_LINES);
            }
        }
    }

    /// True when the top of the stack is a leaf with no entries (possible only for a dirty leaf
    /// of a write transaction whose entries were all deleted; committed runs are never empty).
    fn on_empty_leaf(&self) -> bool {
        matches!(self.stack.last(), Some((n, _)) if n.leaf() && n.len() == 0)
    }

    /// Descends from the node on top of the stack to its leftmost (or rightmost) leaf entry.
    fn descend(&mut self, mut c: Child, rightmost: bool) -> Result<()> {
        loop {
            let n = self.push(c)?;
            let i = if rightmost {
                n.len().saturating_sub(1)
            } else {
                0
            };
            self.stack.push((n, i));
            if n.leaf() {
                self.entered_leaf(rightmost);
                return Ok(());
            }
            c = n.child(i);
        }
    }

    pub fn first(&mut self) -> Result<()> {
        self.stack.clear();
        if let Some(r) = self.root {
            self.descend(r, false)?;
            if self.on_empty_leaf() {
                self.next_leaf()?;
            }
        }
        Ok(())
    }

    pub fn last(&mut self) -> Result<()> {
        self.stack.clear();
        if let Some(r) = self.root {
            self.descend(r, true)?;
            if self.on_empty_leaf() {
                self.prev_leaf()?;
            }
        }
        Ok(())
    }

    /// Positions at the first entry >= `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.stack.clear();
        let Some(mut c) = self.root else {
            return Ok(());
        };
        loop {
            let n = self.push(c)?;
            if n.leaf() {
                let (i, _) = n.search(key);
                self.stack.push((n, i));
                self.entered_leaf(false);
                if i >= n.len() {
                    self.next_leaf()?;
                }
                return Ok(());
            }
            let i = n.child_index(key);
            self.stack.push((n, i));
            c = n.child(i);
        }
    }

    /// Positions at the last entry <= `key`.
    pub fn seek_back(&mut self, key: &[u8]) -> Result<()> {
        self.seek(key)?;
        match self.key() {
            Some(k) if k == key => Ok(()),
            Some(_) => self.prev(),
            None => self.last(),
        }
    }

    /// Moves to the first entry of the next non-empty leaf (invalid if none).
    fn next_leaf(&mut self) -> Result<()> {
        loop {
            self.stack.pop();
            let Some((n, i)) = self.stack.last_mut() else {
                return Ok(());
            };
            if *i + 1 < n.len() {
                *i += 1;
                let c = n.child(*i);
                self.descend(c, false)?;
                if !self.on_empty_leaf() {
                    return Ok(());
                }
            }
        }
    }

    /// Moves to the last entry of the previous non-empty leaf (invalid if none).
    fn prev_leaf(&mut self) -> Result<()> {
        loop {
            self.stack.pop();
            let Some(top) = self.stack.last_mut() else {
                return Ok(());
            };
            if top.1 > 0 {
                top.1 -= 1;
                let c = top.0.child(top.1);
                self.descend(c, true)?;
                if !self.on_empty_leaf() {
                    return Ok(());
                }
            }
        }
    }

    pub fn next(&mut self) -> Result<()> {
        let Some((n, i)) = self.stack.last_mut() else {
            return Ok(());
        };
        *i += 1;
        if *i < n.len() {
            if let NodeRef::Page(p) = n {
                p.prefetch_value(*i + VALUE_PREFETCH_DISTANCE);
            }
            return Ok(());
        }
        self.next_leaf()
    }

    pub fn prev(&mut self) -> Result<()> {
        let Some((n, i)) = self.stack.last_mut() else {
            return Ok(());
        };
        if *i > 0 {
            *i -= 1;
            if let NodeRef::Page(p) = n {
                p.prefetch_value(i.wrapping_sub(VALUE_PREFETCH_DISTANCE));
            }
            return Ok(());
        }
        self.prev_leaf()
    }

    /// Counts the entries in [start, end) without reading values: whole leaves are counted from
    /// their headers.
    pub fn count(&mut self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<u64> {
        self.seek_start(start)?;
        let mut total = 0u64;
        while let Some((n, i)) = self.stack.last().copied() {
            if !n.leaf() || i >= n.len() {
                break;
            }
            let stop = match end {
                Bound::Unbounded => n.len(),
                Bound::Excluded(e) => n.search(e).0,
                Bound::Included(e) => match n.search(e) {
                    (j, true) => j + 1,
                    (j, false) => j,
                },
            };
            if stop < n.len() {
                total += stop.saturating_sub(i) as u64;
                break;
            }
            total += (n.len() - i) as u64;
            self.next_leaf()?;
        }
        Ok(total)
    }

    fn seek_start(&mut self, start: Bound<&[u8]>) -> Result<()> {
        match start {
            Bound::Unbounded => self.first(),
            Bound::Included(k) => self.seek(k),
            Bound::Excluded(k) => {
                self.seek(k)?;
                if self.key() == Some(k) {
                    self.next()?;
                }
                Ok(())
            }
        }
    }

    fn seek_end(&mut self, end: Bound<&[u8]>) -> Result<()> {
        match end {
            Bound::Unbounded => self.last(),
            Bound::Included(k) => self.seek_back(k),
            Bound::Excluded(k) => {
                self.seek_back(k)?;
                if self.key() == Some(k) {
                    self.prev()?;
                }
                Ok(())
            }
        }
    }
}

/// Entries of one tree within bounds, in key order or reversed. Yields `Err` once on corruption
/// and then ends.
pub struct Range<'a> {
    cursor: Cursor<'a>,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    reverse: bool,
    started: bool,
    done: bool,
}

impl<'a> Range<'a> {
    pub(crate) fn new(
        cursor: Cursor<'a>,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
    ) -> Range<'a> {
        Range {
            cursor,
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
            reverse,
            started: false,
            done: false,
        }
    }

    /// Whether `k` is still inside the bound the iteration moves towards. The bound it started
    /// from was applied by the seek, and keys only move away from it.
    fn in_bounds(&self, k: &[u8]) -> bool {
        if self.reverse {
            match &self.start {
                Bound::Unbounded => true,
                Bound::Included(s) => k >= s.as_slice(),
                Bound::Excluded(s) => k > s.as_slice(),
            }
        } else {
            match &self.end {
                Bound::Unbounded => true,
                Bound::Included(e) => k <= e.as_slice(),
                Bound::Excluded(e) => k < e.as_slice(),
            }
        }
    }

    fn step(&mut self) -> Result<Option<(&'a [u8], &'a [u8])>> {
        if !self.started {
            self.started = true;
            let Range {
                cursor,
                start,
                end,
                reverse,
                ..
            } = self;
            if *reverse {
                cursor.seek_end(end.as_ref().map(Vec::as_slice))?;
            } else {
                cursor.seek_start(start.as_ref().map(Vec::as_slice))?;
            }
        } else if self.reverse {
            self.cursor.prev()?;
        } else {
            self.cursor.next()?;
        }
        match self.cursor.entry()? {
            Some((k, v)) if self.in_bounds(k) => Ok(Some((k, v))),
            _ => Ok(None),
        }
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
