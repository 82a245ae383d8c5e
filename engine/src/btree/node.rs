//! In-memory nodes of a write transaction. A committed page that a write transaction touches is
//! decoded into a [`Node`], changed there, and written to a *new* run at commit (S1: committed
//! pages are never modified in place). This module owns decoding, sizing, splitting points and
//! encoding of nodes; the write transaction owns the arena and the allocation of page ids.

use crate::btree::page::{
    self, align16, key_prefix, pages_for, seal, wr_u16, wr_u32, wr_u64, Header, Kind, NodePage,
    PageId, ValueRef, ELEM_SIZE, ENTRY_FIXED, HEADER_SIZE, PAGE_SIZE, PREFIX_SIZE,
};

/// Bytes of a dirty node: borrowed from the committed run the node was decoded from, or owned
/// (new keys and values). Borrowing makes copying a node on write cost one small allocation per
/// node instead of two per entry.
pub enum Buf {
    /// Points into the shared map. Valid for the write transaction's lifetime: the transaction
    /// holds the map (`Arc<Shared>`), the run belongs to its base snapshot and committed runs are
    /// never modified (S1), and the run is freed at this transaction's sequence, so nothing can
    /// reuse it before the transaction ends (S3); the transaction writes only at commit, to pages
    /// its base snapshot cannot reach.
    Page {
        ptr: *const u8,
        len: usize,
    },
    Owned(Vec<u8>),
}

// SAFETY: a `Page` buffer points into immutable mapped memory (see the variant's comment);
// sharing or sending a pointer to immutable bytes is sound. `Owned` is a Vec.
unsafe impl Send for Buf {}
// SAFETY: as above; `Buf` offers only shared access to the bytes.
unsafe impl Sync for Buf {}

impl Buf {
    /// Borrows `bytes` of a validated committed run (see [`Buf::Page`] for why that is sound).
    pub fn borrowed(bytes: &[u8]) -> Buf {
        Buf::Page {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            // SAFETY: `ptr`/`len` came from a live slice of the map, which outlives every node
            // of the transaction and is not modified meanwhile (the `Page` variant's comment).
            Buf::Page { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Buf::Owned(v) => v,
        }
    }
}

impl Clone for Buf {
    fn clone(&self) -> Buf {
        match self {
            Buf::Page { ptr, len } => Buf::Page {
                ptr: *ptr,
                len: *len,
            },
            Buf::Owned(v) => Buf::Owned(v.clone()),
        }
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", &**self)
    }
}

/// Index of a dirty node in the write transaction's arena.
pub type NodeId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child {
    /// A committed run, unchanged so far in this transaction.
    Page(PageId),
    /// A node copied into this transaction (its old run is already freed).
    Node(NodeId),
}

#[derive(Clone, Debug)]
pub enum Val {
    Inline(Buf),
    /// A new large value, written to an overflow run at commit.
    Big(Vec<u8>),
    /// A committed overflow run (freed if the entry is replaced or deleted).
    Overflow {
        page: PageId,
        len: usize,
    },
}

impl Val {
    pub fn new(v: &[u8]) -> Val {
        if v.len() > page::MAX_INLINE_VALUE {
            Val::Big(v.to_vec())
        } else {
            Val::Inline(Buf::Owned(v.to_vec()))
        }
    }

    /// Bytes this value takes in its leaf's value area.
    fn slot(&self) -> usize {
        match self {
            Val::Inline(v) => align16(v.len()),
            Val::Big(_) | Val::Overflow { .. } => 16,
        }
    }
}

#[derive(Debug, Default)]
pub struct Node {
    pub leaf: bool,
    /// Leaf: the entries' keys. Branch: the smallest key of each child's subtree.
    pub keys: Vec<Buf>,
    pub vals: Vec<Val>,
    pub children: Vec<Child>,
    /// Every change so far appended at the end (etcd's revision keys grow this way); such a
    /// node is split into full pages rather than half-full ones.
    pub append: bool,
}

impl Node {
    pub fn new_leaf() -> Node {
        Node {
            leaf: true,
            append: true,
            ..Node::default()
        }
    }

    pub fn decode(p: &NodePage<'_>) -> Node {
        let mut n = Node {
            leaf: p.leaf,
            append: true,
            ..Node::default()
        };
        n.keys.reserve(p.count);
        if p.leaf {
            n.vals.reserve(p.count);
        } else {
            n.children.reserve(p.count);
        }
        for i in 0..p.count {
            n.keys.push(Buf::borrowed(p.key(i)));
            if p.leaf {
                n.vals.push(match p.value(i) {
                    ValueRef::Inline(v) => Val::Inline(Buf::borrowed(v)),
                    ValueRef::Overflow { page, len } => Val::Overflow { page, len },
                });
            } else {
                n.children.push(Child::Page(p.child(i)));
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    fn entry_size(&self, i: usize) -> usize {
        let v = if self.leaf { self.vals[i].slot() } else { 0 };
        ENTRY_FIXED + self.keys[i].len() + v
    }

    /// Encoded size of entries [a, b) including the header; padding of the value area included.
    pub fn size_of(&self, a: usize, b: usize) -> usize {
        HEADER_SIZE + (a..b).map(|i| self.entry_size(i)).sum::<usize>() + 15
    }

    pub fn size(&self) -> usize {
        self.size_of(0, self.len())
    }

    /// Splits the entries into pieces that each fit one page where possible: while the rest does
    /// not fit a page, cut a piece once it holds `threshold` bytes (bbolt's fill percent). A
    /// single entry larger than a page becomes a multi-page piece of its own.
    pub fn split_points(&self, threshold: usize) -> Vec<(usize, usize)> {
        let n = self.len();
        let sizes: Vec<usize> = (0..n).map(|i| self.entry_size(i)).collect();
        // Bytes of entries [start, n); kept up to date so the whole split is linear.
        let mut rest: usize = sizes.iter().sum();
        let mut out = Vec::new();
        let mut start = 0;
        while start < n {
            if HEADER_SIZE + 15 + rest <= PAGE_SIZE {
                out.push((start, n));
                break;
            }
            let mut size = HEADER_SIZE + 15;
            let mut end = start;
            while end < n {
                let s = sizes[end];
                // Leave at least one entry behind: the rest is known not to fit one page.
                if end > start && (size + s > threshold || size + s > PAGE_SIZE) {
                    break;
                }
                size += s;
                end += 1;
                if size >= threshold {
                    break;
                }
            }
            // A branch piece needs two children unless the node has only one left.
            if !self.leaf && end - start == 1 && end < n {
                end += 1;
            }
            rest -= sizes[start..end].iter().sum::<usize>();
            out.push((start, end));
            start = end;
        }
        out
    }

    /// Encodes entries [a, b) as run `id`. Leaf values must already be Inline or Overflow.
    #[cfg(test)]
    pub fn encode(&self, a: usize, b: usize, id: PageId, seq: u64) -> Vec<u8> {
        self.encode_into(a, b, id, seq, Vec::new())
    }

    /// Encodes entries `a..b` into `buf` (any recycled buffer: it is cleared and zero-filled to
    /// the run's size first, so no earlier content survives) and returns it.
    pub fn encode_into(
        &self,
        a: usize,
        b: usize,
        id: PageId,
        seq: u64,
        mut buf: Vec<u8>,
    ) -> Vec<u8> {
        let count = b - a;
        let pages = pages_for(self.size_of(a, b));
        buf.clear();
        buf.resize(pages as usize * PAGE_SIZE, 0);
        let h = Header {
            kind: if self.leaf { Kind::Leaf } else { Kind::Branch },
            count: u16::try_from(count).expect("node entry count fits u16"),
            overflow: pages - 1,
            aux: 0,
            id,
            seq,
        };
        h.write(&mut buf);
        let elems_at = HEADER_SIZE + count * PREFIX_SIZE;
        for (j, i) in (a..b).enumerate() {
            wr_u64(
                &mut buf,
                HEADER_SIZE + j * PREFIX_SIZE,
                key_prefix(&self.keys[i]),
            );
        }
        let mut at = elems_at + count * ELEM_SIZE;
        if self.leaf {
            at = align16(at);
            let mut val_at = Vec::with_capacity(count);
            for i in a..b {
                val_at.push(at);
                match &self.vals[i] {
                    Val::Inline(v) => {
                        buf[at..at + v.len()].copy_from_slice(v);
                        at += align16(v.len());
                    }
                    Val::Overflow { page, .. } => {
                        wr_u64(&mut buf, at, *page);
                        at += 16;
                    }
                    Val::Big(_) => unreachable!("big values are written before their leaf"),
                }
            }
            for (j, i) in (a..b).enumerate() {
                let e = elems_at + j * ELEM_SIZE;
                let k = &self.keys[i];
                buf[at..at + k.len()].copy_from_slice(k);
                wr_u32(&mut buf, e, at as u32);
                wr_u16(&mut buf, e + 4, k.len() as u16);
                let (flags, vlen) = match &self.vals[i] {
                    Val::Inline(v) => (0u8, v.len()),
                    Val::Overflow { len, .. } => (1u8, *len),
                    Val::Big(_) => unreachable!(),
                };
                buf[e + 6] = flags;
                wr_u32(&mut buf, e + 8, val_at[j] as u32);
                wr_u32(&mut buf, e + 12, vlen as u32);
                at += k.len();
            }
        } else {
            for (j, i) in (a..b).enumerate() {
                let e = elems_at + j * ELEM_SIZE;
                let k = &self.keys[i];
                buf[at..at + k.len()].copy_from_slice(k);
                wr_u32(&mut buf, e, at as u32);
                wr_u32(&mut buf, e + 4, k.len() as u32);
                let Child::Page(p) = self.children[i] else {
                    unreachable!("children are spilled before their parent")
                };
                wr_u64(&mut buf, e + 8, p);
                at += k.len();
            }
        }
        debug_assert!(at <= buf.len());
        seal(&mut buf);
        buf
    }

    /// Index of the first key >= `key`, and whether it is equal (leaves directly, branches
    /// through `child_index`).
    ///
    /// Compares the keys' 8-byte prefixes first (as committed pages do) and tries the last key
    /// before bisecting: the revision tree takes every put past its last key (revisions only
    /// grow), and a write transaction walks that rightmost path once per put through dirty
    /// nodes. For a key that lands elsewhere the extra probe is one prefix compare.
    pub fn search(&self, key: &[u8]) -> (usize, bool) {
        use std::cmp::Ordering;
        let q = key_prefix(key);
        let cmp = |k: &Buf| -> Ordering {
            let k: &[u8] = k;
            match key_prefix(k).cmp(&q) {
                Ordering::Equal => k.cmp(key),
                o => o,
            }
        };
        let Some(last) = self.keys.last() else {
            return (0, false);
        };
        let n = self.keys.len();
        match cmp(last) {
            Ordering::Less => (n, false),
            Ordering::Equal => (n - 1, true),
            Ordering::Greater => match self.keys[..n - 1].binary_search_by(cmp) {
                Ok(i) => (i, true),
                Err(i) => (i, false),
            },
        }
    }

    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.search(key) {
            (i, true) => i,
            (0, false) => 0,
            (i, false) => i - 1,
        }
    }
}

/// Encodes an overflow run holding `value`.
pub fn encode_overflow(value: &[u8], id: PageId, seq: u64) -> Vec<u8> {
    let pages = pages_for(HEADER_SIZE + value.len());
    let mut buf = vec![0u8; pages as usize * PAGE_SIZE];
    Header {
        kind: Kind::Overflow,
        count: 0,
        overflow: pages - 1,
        aux: value.len() as u32,
        id,
        seq,
    }
    .write(&mut buf);
    buf[HEADER_SIZE..HEADER_SIZE + value.len()].copy_from_slice(value);
    seal(&mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::page::validate_run;

    impl Node {
        fn clone_shape(&self) -> Node {
            Node {
                leaf: self.leaf,
                keys: self.keys.clone(),
                vals: self.vals.clone(),
                children: self.children.clone(),
                append: self.append,
            }
        }
    }

    fn leaf(entries: &[(&[u8], usize)]) -> Node {
        let mut n = Node::new_leaf();
        for (k, vl) in entries {
            n.keys.push(Buf::Owned(k.to_vec()));
            n.vals.push(Val::Inline(Buf::Owned(vec![7; *vl])));
        }
        n
    }

    proptest::proptest! {
        /// The prefix-first, last-key-first search finds what a plain bisection of the sorted
        /// keys finds, for keys around the 8-byte prefix boundary (shared prefixes, zero bytes,
        /// one key a prefix of another) and for probes past either end.
        #[test]
        fn search_agrees_with_plain_bisection(
            mut keys in proptest::collection::vec(proptest::collection::vec(0u8..3, 1..11), 0..40),
            probes in proptest::collection::vec(proptest::collection::vec(0u8..3, 1..11), 1..20),
        ) {
            keys.sort();
            keys.dedup();
            let entries: Vec<(&[u8], usize)> = keys.iter().map(|k| (k.as_slice(), 1)).collect();
            let n = leaf(&entries);
            for probe in probes.iter().chain(keys.iter()) {
                let want = match keys.binary_search(probe) {
                    Ok(i) => (i, true),
                    Err(i) => (i, false),
                };
                proptest::prop_assert_eq!(n.search(probe), want, "probe {:?}", probe);
            }
        }
    }

    #[test]
    fn encoded_leaf_validates_and_values_are_16_byte_aligned() {
        let n = leaf(&[(b"a", 3), (b"bb", 17), (b"ccc", 0), (b"dddd", 100)]);
        let buf = n.encode(0, 4, 9, 1);
        let h = validate_run(&buf, 9, 10).unwrap();
        let p = NodePage::new(&buf, &h);
        for i in 0..4 {
            assert_eq!(p.key(i), &*n.keys[i]);
            let ValueRef::Inline(v) = p.value(i) else {
                panic!()
            };
            assert_eq!(v.len(), [3, 17, 0, 100][i]);
            assert_eq!((v.as_ptr() as usize - buf.as_ptr() as usize) % 16, 0);
        }
    }

    #[test]
    fn a_prefix_that_does_not_match_its_key_is_rejected_even_with_a_valid_checksum() {
        let n = leaf(&[(b"a", 3), (b"bb", 17), (b"ccc", 0)]);
        for branch in [false, true] {
            let mut n = n.clone_shape();
            if branch {
                n.leaf = false;
                n.vals.clear();
                n.children = vec![Child::Page(3); 3];
            }
            let good = n.encode(0, 3, 9, 1);
            validate_run(&good, 9, 10).unwrap();
            for i in 0..3 {
                // Prefixes that still sort the same way, so only the prefix check can object.
                let mut buf = good.clone();
                buf[HEADER_SIZE + i * PREFIX_SIZE] ^= 1;
                seal(&mut buf);
                let err = validate_run(&buf, 9, 10).unwrap_err();
                assert!(err.contains("prefix"), "{err}");
            }
        }
    }

    #[test]
    fn split_pieces_fit_a_page_and_cover_every_entry() {
        let keys: Vec<Vec<u8>> = (0..200u32)
            .map(|i| format!("key{i:05}").into_bytes())
            .collect();
        let mut n = Node::new_leaf();
        for k in &keys {
            n.keys.push(Buf::Owned(k.clone()));
            n.vals.push(Val::Inline(Buf::Owned(vec![1; 100])));
        }
        for fill in [PAGE_SIZE / 2, PAGE_SIZE] {
            let pts = n.split_points(fill);
            assert_eq!(pts.first().unwrap().0, 0);
            assert_eq!(pts.last().unwrap().1, 200);
            for w in pts.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
            for (a, b) in pts {
                assert!(n.size_of(a, b) <= PAGE_SIZE);
            }
        }
    }
}
