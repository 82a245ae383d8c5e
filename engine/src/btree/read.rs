//! Read transactions: a snapshot of one visible commit, usable from any thread (`Send + Sync`)
//! while the writer goes on committing. Values are borrowed straight from the mmap for the life
//! of the transaction (zero copy; 16-byte aligned, so rkyv archives can be accessed in place).
//!
//! Holding a `ReadTxn` keeps its snapshot's pages from being reused (S3); the writer sees that
//! through the snapshot's reference count.

use std::ops::Bound;
use std::sync::Arc;

use crate::btree::cursor::{Cursor, Range, Source};
use crate::btree::db::{Shared, Snapshot};
use crate::btree::error::Result;
use crate::btree::node::Child;
use crate::btree::page::MAX_DEPTH;
use crate::btree::write::decode_bucket;

pub struct ReadTxn {
    shared: Arc<Shared>,
    snap: Arc<Snapshot>,
}

impl ReadTxn {
    pub(crate) fn new(shared: Arc<Shared>, snap: Arc<Snapshot>) -> ReadTxn {
        ReadTxn { shared, snap }
    }

    fn src(&self) -> Source<'_> {
        Source {
            shared: &self.shared,
            hwm: self.snap.hwm,
            seq: self.snap.seq,
            arena: &[],
        }
    }

    fn catalog(&self) -> Option<Child> {
        (self.snap.catalog != 0).then_some(Child::Page(self.snap.catalog))
    }

    /// The commit sequence number of this snapshot (increases with every commit).
    pub fn sequence(&self) -> u64 {
        self.snap.seq
    }

    /// A bucket of this snapshot, if it exists.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_>>> {
        let Some(v) = self.src().get(self.catalog(), name)? else {
            return Ok(None);
        };
        let (root, len) = decode_bucket(v)?;
        Ok(Some(Bucket {
            src: self.src(),
            root: (root != 0).then_some(Child::Page(root)),
            len,
        }))
    }

    pub fn bucket_names(&self) -> Result<Vec<Vec<u8>>> {
        Range::new(
            Cursor::new(self.src(), self.catalog()),
            Bound::Unbounded,
            Bound::Unbounded,
            false,
        )
        .map(|kv| kv.map(|(k, _)| k.to_vec()))
        .collect()
    }
}

/// One bucket of a read snapshot. Borrowed values live as long as the read transaction.
#[derive(Clone, Copy)]
pub struct Bucket<'r> {
    src: Source<'r>,
    root: Option<Child>,
    len: u64,
}

impl<'r> Bucket<'r> {
    pub fn get(&self, key: &[u8]) -> Result<Option<&'r [u8]>> {
        self.src.get(self.root, key)
    }

    /// Number of keys (kept in the catalog; O(1)).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries in the bounds in ascending key order, or descending with `reverse`.
    pub fn range(&self, start: Bound<&[u8]>, end: Bound<&[u8]>, reverse: bool) -> Range<'r> {
        Range::new(Cursor::new(self.src, self.root), start, end, reverse)
    }

    pub fn iter(&self) -> Range<'r> {
        self.range(Bound::Unbounded, Bound::Unbounded, false)
    }

    /// Number of keys in the bounds, without reading any value.
    pub fn count(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<u64> {
        Cursor::new(self.src, self.root).count(start, end)
    }

    /// Levels from the root to the leaves (0 for an empty bucket).
    pub fn depth(&self) -> Result<u32> {
        let Some(mut c) = self.root else { return Ok(0) };
        for d in 1..=MAX_DEPTH as u32 {
            let n = self.src.node(c)?;
            if n.leaf() {
                return Ok(d);
            }
            c = n.child(0);
        }
        Err(crate::btree::page::corrupted(0, "tree too deep"))
    }
}
