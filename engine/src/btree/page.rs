//! On-disk byte layout of the B+tree file: page header, meta pages, node pages, overflow runs and
//! freelist pages. Everything here is little-endian and fixed-width; nothing is host-endian.
//!
//! This module owns encoding and *validation* (D1): bytes that come from the file are checked
//! (checksum, bounds, ordering) before any other module indexes into them. Once a run passed
//! [`validate_run`], the accessors in this module may index without further checks.
//!
//! ```text
//! file   = meta(page 0) | meta(page 1) | page 2 | page 3 | ...      (4 KiB pages)
//!
//! meta   0  magic      [u8; 8]  "KEELBT\0\x01"
//!        8  version    u32      FORMAT_VERSION
//!       12  page_size  u32      4096
//!       16  txid       u64      durable commit number; written to slot txid % 2
//!       24  seq        u64      commit sequence (visible and durable commits) of this state
//!       32  catalog    u64      root page of the catalog tree (bucket name -> root, len); 0 = empty
//!       40  freelist   u64      first freelist page; 0 = none
//!       48  free_count u64      number of page ids in the freelist chain
//!       56  hwm        u64      high-water mark: pages [0, hwm) are allocated or free; >= hwm unused
//!       64  checksum   u32      CRC32C of bytes [0, 64)
//!
//! run    = one or more contiguous pages holding one node, one value or one freelist chunk
//! header 0  checksum   u32      CRC32C of bytes [4, run_len) of the whole run
//!        4  kind       u8       1 branch, 2 leaf, 3 overflow value, 4 freelist
//!        5  flags      u8       0
//!        6  count      u16      entries (branch/leaf), ids (freelist)
//!        8  overflow   u32      pages in the run after the first
//!       12  aux        u32      overflow: value length; otherwise 0
//!       16  id         u64      the run's own page id (catches misdirected writes)
//!       24  seq        u64      commit sequence that wrote the run
//!
//! leaf   header | count x prefix u64
//!        | count x elem{key_off u32, key_len u16, flags u8, 0 u8, val_off u32, val_len u32}
//!        | values, each at a 16-byte-aligned offset | keys
//!        flags bit 0: the value lives in an overflow run; the value slot holds {page u64, 0 u64}
//! branch header | count x prefix u64 | count x elem{key_off u32, key_len u32, child u64} | keys
//!        key i is the smallest key of child i's subtree (key 0 may be smaller than all of it)
//! prefix i = key i's first 8 bytes, zero-padded, read as a big-endian integer (stored, like
//!        every field, little-endian). Prefixes order like the keys except where they tie, so a
//!        binary search compares them first and reads a key only on a tie: the dense prefix array
//!        is a few cache lines, where the keys lie at the far end of the page (format 2).
//! overflow header | value bytes (at offset 32, 16-byte aligned) | zero padding
//! freelist header | next u64 | count x page id u64
//! ```

use crate::btree::error::{Error, Result};

pub const PAGE_SIZE: usize = 4096;
pub const PAGE_SIZE_U64: u64 = PAGE_SIZE as u64;
pub type PageId = u64;

pub const MAGIC: [u8; 8] = *b"KEELBT\0\x01";
/// 2: leaves and branches carry the key-prefix array (see the layout above).
pub const FORMAT_VERSION: u32 = 2;
pub const META_LEN: usize = 64;
/// Pages 0 and 1 are the meta slots; the first data page.
pub const FIRST_DATA_PAGE: PageId = 2;

pub const HEADER_SIZE: usize = 32;
pub const ELEM_SIZE: usize = 16;
/// Bytes of one entry of a node's key-prefix array.
pub const PREFIX_SIZE: usize = 8;
/// Fixed bytes of one node entry: its prefix and its element.
pub const ENTRY_FIXED: usize = PREFIX_SIZE + ELEM_SIZE;
pub const FREELIST_IDS_OFFSET: usize = HEADER_SIZE + 8;
pub const FREELIST_IDS_PER_PAGE: usize = (PAGE_SIZE - FREELIST_IDS_OFFSET) / 8;

/// bbolt's key limit, which etcd inherits.
pub const MAX_KEY_LEN: usize = 32 * 1024;
/// Values above this are stored in an overflow run of their own, page-aligned.
pub const MAX_INLINE_VALUE: usize = 1024;
/// Hard upper bound on one value (the run length must fit the header's u32 fields).
pub const MAX_VALUE_LEN: usize = 1 << 30;
/// No file has more pages than this (4 PiB); a meta that says so is corrupt.
pub const MAX_PAGES: u64 = 1 << 40;
/// Commit counters stay far below this; a meta at or above it is corrupt (and `+ 1` is safe).
pub const MAX_COUNTER: u64 = 1 << 62;
/// A node deeper than this is certainly a cycle in a corrupt file.
pub const MAX_DEPTH: usize = 64;

const _: () = assert!(HEADER_SIZE.is_multiple_of(16));
const _: () = assert!(ELEM_SIZE == 16);
const _: () = assert!(META_LEN + 4 <= PAGE_SIZE);
const _: () = assert!(FREELIST_IDS_PER_PAGE <= u16::MAX as usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Branch = 1,
    Leaf = 2,
    Overflow = 3,
    Freelist = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Branch),
            2 => Some(Kind::Leaf),
            3 => Some(Kind::Overflow),
            4 => Some(Kind::Freelist),
            _ => None,
        }
    }
}

#[inline]
pub fn rd_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
pub fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
#[inline]
pub fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
#[inline]
pub fn wr_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn wr_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn wr_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A key's first 8 bytes, zero-padded, as a big-endian integer. For any keys `a` and `b`,
/// `key_prefix(a) < key_prefix(b)` implies `a < b` (the first differing byte lies in the first
/// 8, or `a` ends there and is a prefix of `b`); equal prefixes say nothing, and the keys decide.
#[inline]
pub fn key_prefix(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(b) => u64::from_be_bytes(*b),
        None => {
            let mut b = [0u8; 8];
            b[..key.len()].copy_from_slice(key);
            u64::from_be_bytes(b)
        }
    }
}

#[inline]
pub fn align16(n: usize) -> usize {
    (n + 15) & !15
}

/// Pages needed for a run of `bytes` bytes (at least one).
#[inline]
pub fn pages_for(bytes: usize) -> u32 {
    bytes.div_ceil(PAGE_SIZE).max(1) as u32
}

// ---------------------------------------------------------------------------------------------
// Meta

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub txid: u64,
    pub seq: u64,
    pub catalog: PageId,
    pub freelist: PageId,
    pub free_count: u64,
    pub hwm: u64,
}

impl Meta {
    pub fn encode(&self) -> [u8; PAGE_SIZE] {
        let mut p = [0u8; PAGE_SIZE];
        p[0..8].copy_from_slice(&MAGIC);
        wr_u32(&mut p, 8, FORMAT_VERSION);
        wr_u32(&mut p, 12, PAGE_SIZE as u32);
        wr_u64(&mut p, 16, self.txid);
        wr_u64(&mut p, 24, self.seq);
        wr_u64(&mut p, 32, self.catalog);
        wr_u64(&mut p, 40, self.freelist);
        wr_u64(&mut p, 48, self.free_count);
        wr_u64(&mut p, 56, self.hwm);
        let crc = crc32c::crc32c(&p[..META_LEN]);
        wr_u32(&mut p, META_LEN, crc);
        p
    }

    /// Decodes and checks one meta slot. `slot` is 0 or 1; a meta must sit in slot txid % 2.
    pub fn decode(p: &[u8], slot: u64) -> std::result::Result<Meta, String> {
        if p.len() < META_LEN + 4 {
            return Err("meta page is short".into());
        }
        let crc = crc32c::crc32c(&p[..META_LEN]);
        if crc != rd_u32(p, META_LEN) {
            return Err("meta checksum mismatch".into());
        }
        if p[0..8] != MAGIC {
            return Err("bad magic".into());
        }
        let version = rd_u32(p, 8);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        let ps = rd_u32(p, 12);
        if ps as usize != PAGE_SIZE {
            return Err(format!("unsupported page size {ps}"));
        }
        let m = Meta {
            txid: rd_u64(p, 16),
            seq: rd_u64(p, 24),
            catalog: rd_u64(p, 32),
            freelist: rd_u64(p, 40),
            free_count: rd_u64(p, 48),
            hwm: rd_u64(p, 56),
        };
        if m.txid % 2 != slot {
            return Err(format!("txid {} in meta slot {slot}", m.txid));
        }
        if m.txid >= MAX_COUNTER || m.seq >= MAX_COUNTER {
            return Err(format!(
                "txid {} or sequence {} out of range",
                m.txid, m.seq
            ));
        }
        if m.hwm > MAX_PAGES {
            return Err(format!(
                "high-water mark {} beyond {MAX_PAGES} pages",
                m.hwm
            ));
        }
        if m.hwm < FIRST_DATA_PAGE {
            return Err(format!(
                "high-water mark {} below the first data page",
                m.hwm
            ));
        }
        for (what, id) in [("catalog", m.catalog), ("freelist", m.freelist)] {
            if id != 0 && (id < FIRST_DATA_PAGE || id >= m.hwm) {
                return Err(format!("{what} page {id} outside [2, {})", m.hwm));
            }
        }
        if m.free_count > m.hwm {
            return Err(format!(
                "free count {} above high-water mark {}",
                m.free_count, m.hwm
            ));
        }
        Ok(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Run header

#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: Kind,
    pub count: u16,
    pub overflow: u32,
    pub aux: u32,
    pub id: PageId,
    pub seq: u64,
}

impl Header {
    pub fn write(&self, run: &mut [u8]) {
        run[4] = self.kind as u8;
        run[5] = 0;
        wr_u16(run, 6, self.count);
        wr_u32(run, 8, self.overflow);
        wr_u32(run, 12, self.aux);
        wr_u64(run, 16, self.id);
        wr_u64(run, 24, self.seq);
    }

    /// Reads a header without validating it beyond the kind byte.
    pub fn read(first_page: &[u8]) -> std::result::Result<Header, String> {
        let kind = Kind::from_u8(first_page[4])
            .ok_or_else(|| format!("unknown page kind {}", first_page[4]))?;
        Ok(Header {
            kind,
            count: rd_u16(first_page, 6),
            overflow: rd_u32(first_page, 8),
            aux: rd_u32(first_page, 12),
            id: rd_u64(first_page, 16),
            seq: rd_u64(first_page, 24),
        })
    }

    pub fn run_pages(&self) -> u64 {
        1 + self.overflow as u64
    }
}

/// Stamps the checksum of a fully encoded run (header included).
pub fn seal(run: &mut [u8]) {
    let crc = crc32c::crc32c(&run[4..]);
    wr_u32(run, 0, crc);
}

/// Checks a run read from the file: checksum, identity, and the structure of its kind, so the
/// accessors below can index it without panicking (D1). `hwm` bounds every page id it names.
pub fn validate_run(run: &[u8], id: PageId, hwm: u64) -> std::result::Result<Header, String> {
    let h = Header::read(run)?;
    if h.run_pages() as usize * PAGE_SIZE != run.len() {
        return Err(format!(
            "run length {} pages, header says {}",
            run.len() / PAGE_SIZE,
            h.run_pages()
        ));
    }
    if crc32c::crc32c(&run[4..]) != rd_u32(run, 0) {
        return Err("checksum mismatch".into());
    }
    if h.id != id {
        return Err(format!("page claims id {}", h.id));
    }
    match h.kind {
        Kind::Leaf => validate_leaf(run, h.count as usize, hwm)?,
        Kind::Branch => validate_branch(run, h.count as usize, hwm)?,
        Kind::Overflow => {
            if HEADER_SIZE + h.aux as usize > run.len() {
                return Err(format!("overflow value of {} bytes exceeds its run", h.aux));
            }
        }
        Kind::Freelist => {
            let n = h.count as usize;
            if h.overflow != 0 || n > FREELIST_IDS_PER_PAGE {
                return Err(format!("freelist page with {n} ids"));
            }
            let next = rd_u64(run, HEADER_SIZE);
            if next != 0 && (next < FIRST_DATA_PAGE || next >= hwm) {
                return Err(format!("freelist next page {next} out of range"));
            }
            for i in 0..n {
                let p = rd_u64(run, FREELIST_IDS_OFFSET + 8 * i);
                if !(FIRST_DATA_PAGE..hwm).contains(&p) {
                    return Err(format!("freelist holds page {p} outside [2, {hwm})"));
                }
            }
        }
    }
    Ok(h)
}

fn validate_leaf(run: &[u8], n: usize, hwm: u64) -> std::result::Result<(), String> {
    if n == 0 {
        return Err("empty leaf".into());
    }
    let elems_end = HEADER_SIZE + n * ENTRY_FIXED;
    if elems_end > run.len() {
        return Err(format!("{n} leaf elements overrun the page"));
    }
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let e = HEADER_SIZE + n * PREFIX_SIZE + i * ELEM_SIZE;
        let ko = rd_u32(run, e) as usize;
        let kl = rd_u16(run, e + 4) as usize;
        let flags = run[e + 6];
        let vo = rd_u32(run, e + 8) as usize;
        let vl = rd_u32(run, e + 12) as usize;
        if kl == 0 || kl > MAX_KEY_LEN || ko < elems_end || ko + kl > run.len() {
            return Err(format!("leaf key {i} out of bounds"));
        }
        let key = &run[ko..ko + kl];
        if rd_u64(run, HEADER_SIZE + i * PREFIX_SIZE) != key_prefix(key) {
            return Err(format!("leaf key {i} does not match its prefix"));
        }
        if let Some(p) = prev {
            if p >= key {
                return Err(format!("leaf keys out of order at {i}"));
            }
        }
        prev = Some(key);
        if !vo.is_multiple_of(16) || vo < elems_end {
            return Err(format!(
                "leaf value {i} misaligned or inside the element array"
            ));
        }
        match flags {
            0 => {
                if vo + vl > run.len() {
                    return Err(format!("leaf value {i} out of bounds"));
                }
            }
            1 => {
                if vo + 16 > run.len() {
                    return Err(format!("leaf overflow pointer {i} out of bounds"));
                }
                let p = rd_u64(run, vo);
                let pages = pages_for(HEADER_SIZE + vl) as u64;
                if p < FIRST_DATA_PAGE || p.saturating_add(pages) > hwm || vl > MAX_VALUE_LEN {
                    return Err(format!(
                        "leaf overflow value {i} points at page {p} outside [2, {hwm})"
                    ));
                }
            }
            f => return Err(format!("leaf element {i} has flags {f}")),
        }
    }
    Ok(())
}

fn validate_branch(run: &[u8], n: usize, hwm: u64) -> std::result::Result<(), String> {
    if n == 0 {
        return Err("empty branch".into());
    }
    let elems_end = HEADER_SIZE + n * ENTRY_FIXED;
    if elems_end > run.len() {
        return Err(format!("{n} branch elements overrun the page"));
    }
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let e = HEADER_SIZE + n * PREFIX_SIZE + i * ELEM_SIZE;
        let ko = rd_u32(run, e) as usize;
        let kl = rd_u32(run, e + 4) as usize;
        let child = rd_u64(run, e + 8);
        if kl == 0 || kl > MAX_KEY_LEN || ko < elems_end || ko + kl > run.len() {
            return Err(format!("branch key {i} out of bounds"));
        }
        let key = &run[ko..ko + kl];
        if rd_u64(run, HEADER_SIZE + i * PREFIX_SIZE) != key_prefix(key) {
            return Err(format!("branch key {i} does not match its prefix"));
        }
        if let Some(p) = prev {
            if p >= key {
                return Err(format!("branch keys out of order at {i}"));
            }
        }
        prev = Some(key);
        if !(FIRST_DATA_PAGE..hwm).contains(&child) {
            return Err(format!(
                "branch child {i} is page {child}, outside [2, {hwm})"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Accessors over validated runs

/// A validated leaf or branch run.
#[derive(Clone, Copy)]
pub struct NodePage<'a> {
    pub bytes: &'a [u8],
    pub leaf: bool,
    pub count: usize,
    /// The key-prefix array: `count` little-endian u64s.
    prefixes: &'a [u8],
    /// The element array: `count` elements of `ELEM_SIZE` bytes.
    elems: &'a [u8],
}

/// Where a leaf entry's value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRef<'a> {
    Inline(&'a [u8]),
    Overflow { page: PageId, len: usize },
}

impl<'a> NodePage<'a> {
    #[inline]
    pub fn new(bytes: &'a [u8], h: &Header) -> NodePage<'a> {
        debug_assert!(matches!(h.kind, Kind::Leaf | Kind::Branch));
        let count = h.count as usize;
        let elems_at = HEADER_SIZE + count * PREFIX_SIZE;
        NodePage {
            bytes,
            leaf: h.kind == Kind::Leaf,
            count,
            prefixes: &bytes[HEADER_SIZE..elems_at],
            elems: &bytes[elems_at..elems_at + count * ELEM_SIZE],
        }
    }

    #[inline]
    fn elem(&self, i: usize) -> &'a [u8; ELEM_SIZE] {
        self.elems[i * ELEM_SIZE..]
            .first_chunk::<ELEM_SIZE>()
            .expect("element inside the element array")
    }

    #[inline]
    fn prefix(&self, i: usize) -> u64 {
        u64::from_le_bytes(
            *self.prefixes[i * PREFIX_SIZE..]
                .first_chunk::<PREFIX_SIZE>()
                .expect("prefix inside the prefix array"),
        )
    }

    #[inline]
    fn key_len(&self, e: &[u8; ELEM_SIZE]) -> usize {
        if self.leaf {
            u16::from_le_bytes([e[4], e[5]]) as usize
        } else {
            u32::from_le_bytes([e[4], e[5], e[6], e[7]]) as usize
        }
    }

    #[inline]
    pub fn key(&self, i: usize) -> &'a [u8] {
        let e = self.elem(i);
        let ko = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
        &self.bytes[ko..ko + self.key_len(e)]
    }

    #[inline]
    pub fn child(&self, i: usize) -> PageId {
        debug_assert!(!self.leaf);
        let e = self.elem(i);
        u64::from_le_bytes(*e[8..].first_chunk::<8>().expect("8 bytes"))
    }

    #[inline]
    pub fn value(&self, i: usize) -> ValueRef<'a> {
        debug_assert!(self.leaf);
        let e = self.elem(i);
        let flags = e[6];
        let vo = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as usize;
        let vl = u32::from_le_bytes([e[12], e[13], e[14], e[15]]) as usize;
        if flags & 1 == 0 {
            ValueRef::Inline(&self.bytes[vo..vo + vl])
        } else {
            ValueRef::Overflow {
                page: rd_u64(self.bytes, vo),
                len: vl,
            }
        }
    }

    /// Starts loading the first cache line of leaf entry `i`'s inline value (nothing when `i`
    /// is past the end or the value lives in an overflow run).
    #[inline]
    pub fn prefetch_value(&self, i: usize) {
        if i >= self.count {
            return;
        }
        let e = self.elem(i);
        let vo = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as usize;
        if e[6] & 1 == 0 {
            if let Some(b) = self.bytes.get(vo) {
                crate::btree::mmap::prefetch_line(b);
            }
        }
    }

    /// Compares entry `i`'s key with `key`, whose prefix `q` is already known.
    #[inline]
    fn cmp_entry(&self, i: usize, q: u64, key: &[u8]) -> std::cmp::Ordering {
        match self.prefix(i).cmp(&q) {
            std::cmp::Ordering::Equal => {}
            o => return o,
        }
        let e = self.elem(i);
        let kl = self.key_len(e);
        if kl <= PREFIX_SIZE && key.len() <= PREFIX_SIZE {
            // Both keys lie inside their equal zero-padded prefixes: the shorter one is the
            // other minus trailing zero bytes, hence a prefix of it and smaller.
            return kl.cmp(&key.len());
        }
        let ko = u32::from_le_bytes([e[0], e[1], e[2], e[3]]) as usize;
        self.bytes[ko..ko + kl].cmp(key)
    }

    /// Index of the first key >= `key` (leaf search), and whether it is equal. Probes compare
    /// the prefix array and read a key only where the prefixes tie.
    #[inline]
    pub fn search(&self, key: &[u8]) -> (usize, bool) {
        let q = key_prefix(key);
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.cmp_entry(mid, q, key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Equal => return (mid, true),
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        (lo, false)
    }

    /// The child of a branch whose subtree may hold `key`.
    #[inline]
    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.search(key) {
            (i, true) => i,
            (0, false) => 0,
            (i, false) => i - 1,
        }
    }
}

pub fn corrupted(page: PageId, reason: impl Into<String>) -> Error {
    Error::Corrupted {
        page,
        reason: reason.into(),
    }
}

pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::KeyEmpty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::ValueTooLarge {
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefix_orders_like_the_keys_where_it_differs() {
        let keys: Vec<Vec<u8>> = vec![
            vec![0],
            vec![0, 0],
            vec![0, 0, 0, 0, 0, 0, 0, 0],
            vec![0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![0, 1],
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"ab".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefghi".to_vec(),
            b"abcdefgi".to_vec(),
            vec![0xff; 8],
            vec![0xff; 9],
        ];
        for a in &keys {
            for b in &keys {
                let (pa, pb) = (key_prefix(a), key_prefix(b));
                if pa != pb {
                    assert_eq!(pa.cmp(&pb), a.cmp(b), "{a:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn meta_roundtrip_and_every_flipped_byte_is_rejected() {
        let m = Meta {
            txid: 7,
            seq: 99,
            catalog: 5,
            freelist: 9,
            free_count: 3,
            hwm: 12,
        };
        let p = m.encode();
        assert_eq!(Meta::decode(&p, 1), Ok(m));
        assert!(
            Meta::decode(&p, 0).is_err(),
            "a meta in the wrong slot is rejected"
        );
        for i in 0..META_LEN + 4 {
            for bit in 0..8 {
                let mut q = p;
                q[i] ^= 1 << bit;
                assert!(
                    Meta::decode(&q, 1).is_err(),
                    "byte {i} bit {bit} flip accepted"
                );
            }
        }
    }
}
