//! Shared by `tests/btree_corruption.rs` and the cargo-fuzz target `fuzz/fuzz_targets/open_corrupt.rs`
//! (included there with `#[path]`): a small valid database image with a known model of its two
//! durable states, a decoder that turns fuzz bytes into a corrupted file, and a walk that opens a
//! file and reads *everything* through the public API, sorting what happens into "the corruption
//! was detected" (an error, or a problem from `check`) and "wrong data was served" (D1 broken).
//!
//! Only `std` and `keel_engine` (plus `crc32c` to forge checksums) so the fuzz crate needs
//! nothing else.

#![allow(dead_code)] // each includer uses a different part

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use keel_engine::btree::{Database, Options, PAGE_SIZE};

pub type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// One durable state of the image: the commit sequence its meta records, and every bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub seq: u64,
    pub buckets: BTreeMap<Vec<u8>, Tree>,
}

/// The image and the states a reader may legitimately see in it: the newest durable commit and,
/// if the newest meta is damaged, the older one (open falls back to it by design).
pub struct Image {
    pub bytes: Vec<u8>,
    pub states: Vec<State>,
    /// High-water mark of the newest meta: pages at or above it hold nothing.
    pub hwm: u64,
    /// Page ids listed as free by the newest meta's freelist (content unused).
    pub free: Vec<u64>,
    /// Meta slot (0 or 1) holding the newest durable commit.
    pub newest_slot: usize,
}

impl Image {
    /// Whether `file` differs from the image in a byte that must not change unnoticed: a meta
    /// page, or a page reachable from the newest meta (not free, below the high-water mark).
    pub fn damaged_reachable(&self, file: &[u8]) -> bool {
        file.len() != self.bytes.len()
            || file.iter().zip(&self.bytes).enumerate().any(|(i, (a, b))| {
                let page = (i / PAGE_SIZE) as u64;
                a != b && (page < 2 || (page < self.hwm && !self.free.contains(&page)))
            })
    }
}

/// A directory removed on drop; std only (the fuzz crate has no `tempfile`).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("keel-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Small map and growth step: every open reserves `map_size` of address space and a bitmap
/// sized by it, and thousands of opens per test should not pay for 64 GiB.
pub fn options() -> Options {
    Options {
        map_size: 16 << 20,
        grow_step: 4096,
        ..Default::default()
    }
}

fn value(bucket: u8, i: u32, version: u32) -> Vec<u8> {
    // Mostly inline values of varied length; every 23rd is an overflow value (> 1 KiB).
    let len = if i.is_multiple_of(23) {
        1100 + (i as usize * 97) % 5000
    } else {
        8 + (i as usize * 37) % 200
    };
    (0..len)
        .map(|j| (j as u32 ^ i.wrapping_mul(31) ^ version.wrapping_mul(7) ^ bucket as u32) as u8)
        .collect()
}

fn key(bucket: u8, i: u32) -> Vec<u8> {
    // Bucket "beta" has long keys so its tree has more levels for fewer keys.
    if bucket == b'b' {
        format!("beta/{i:05}/{}", "x".repeat(150 + (i as usize % 50))).into_bytes()
    } else {
        format!("{}{i:05}", bucket as char).into_bytes()
    }
}

/// Builds the image: four buckets (one empty, one with ~400 keys in a multi-level tree, one with
/// long keys, one tiny), overflow values, a durable commit, a visible commit, then deletes and
/// updates committed durably so the file has a freelist and an older meta whose tree is intact.
pub fn build_image() -> Image {
    let dir = Scratch::new("image");
    let path = dir.0.join("db");
    let mut model: BTreeMap<Vec<u8>, Tree> = BTreeMap::new();
    let mut states = Vec::new();
    let db = Database::open(&path, options()).expect("open new db");

    let mut w = db.begin_write().expect("begin");
    for (name, n) in [(b'a', 400u32), (b'b', 120), (b'c', 3)] {
        let bname = vec![b'0' + name - b'a', name];
        w.create_bucket(&bname).expect("create");
        let t = model.entry(bname.clone()).or_default();
        for i in 0..n {
            let (k, v) = (key(name, i), value(name, i, 0));
            w.bucket(&bname).expect("bucket").put(&k, &v).expect("put");
            t.insert(k, v);
        }
    }
    w.create_bucket(b"9empty").expect("create");
    model.insert(b"9empty".to_vec(), Tree::new());
    w.commit_durable().expect("commit 1");
    states.push(State {
        seq: db.begin_read().sequence(),
        buckets: model.clone(),
    });

    // A visible commit: rewrites some values (frees their old overflow runs).
    let mut w = db.begin_write().expect("begin");
    for i in (0..400).step_by(11) {
        let (k, v) = (key(b'a', i), value(b'a', i, 1));
        w.bucket(b"0a").expect("bucket").put(&k, &v).expect("put");
        model.get_mut(&b"0a"[..]).expect("0a").insert(k, v);
    }
    w.commit().expect("commit 2");

    // Deletes across both big buckets, committed durably: pages are freed into the freelist.
    let mut w = db.begin_write().expect("begin");
    for (name, n, step) in [(b'a', 400u32, 3usize), (b'b', 120, 4)] {
        let bname = vec![b'0' + name - b'a', name];
        for i in (0..n).step_by(step) {
            let k = key(name, i);
            assert!(w
                .bucket(&bname)
                .expect("bucket")
                .delete(&k)
                .expect("delete"));
            model.get_mut(&bname).expect("bucket").remove(&k);
        }
    }
    w.commit_durable().expect("commit 3");
    states.push(State {
        seq: db.begin_read().sequence(),
        buckets: model.clone(),
    });
    let problems = db.check().expect("check");
    assert!(
        problems.is_empty(),
        "fresh image has problems: {problems:?}"
    );
    let stats = db.stats().expect("stats");
    assert!(
        stats.tree_depth >= 2,
        "image tree should have several levels"
    );
    drop(db);

    let bytes = std::fs::read(&path).expect("read image");
    let (newest_slot, hwm, free) = newest_meta_free_pages(&bytes);
    assert!(!free.is_empty(), "image should have a freelist");
    Image {
        bytes,
        states,
        hwm,
        free,
        newest_slot,
    }
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the newest meta and its freelist chain straight from the layout documented in
/// `engine/src/btree/page.rs`, on a known-good image (so it may index freely).
fn newest_meta_free_pages(img: &[u8]) -> (usize, u64, Vec<u64>) {
    let meta = |slot: usize| &img[slot * PAGE_SIZE..slot * PAGE_SIZE + 68];
    let slot = if rd_u64(meta(0), 16) > rd_u64(meta(1), 16) {
        0
    } else {
        1
    };
    let newest = meta(slot);
    let hwm = rd_u64(newest, 56);
    let mut free = Vec::new();
    let mut next = rd_u64(newest, 40) as usize;
    while next != 0 {
        let page = &img[next * PAGE_SIZE..(next + 1) * PAGE_SIZE];
        let count = u16::from_le_bytes([page[6], page[7]]) as usize;
        for i in 0..count {
            free.push(rd_u64(page, 40 + 8 * i));
        }
        next = rd_u64(page, 32) as usize;
    }
    assert_eq!(free.len() as u64, rd_u64(newest, 48), "freelist count");
    (slot, hwm, free)
}

/// Recomputes every checksum of a (patched) image: the meta CRCs and the CRC of every run whose
/// header still parses. Turns random damage into *structurally* wrong pages that pass the
/// checksum, so the validation behind the checksum gets exercised too.
pub fn reseal(img: &mut [u8]) {
    for slot in 0..2 {
        if img.len() >= (slot + 1) * PAGE_SIZE {
            let p = &mut img[slot * PAGE_SIZE..];
            let crc = crc32c::crc32c(&p[..64]);
            p[64..68].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let pages = img.len() / PAGE_SIZE;
    let mut p = 2;
    while p < pages {
        let at = p * PAGE_SIZE;
        let kind = img[at + 4];
        let overflow = u32::from_le_bytes(img[at + 8..at + 12].try_into().expect("4")) as usize;
        if (1..=4).contains(&kind) && p + 1 + overflow <= pages {
            let end = (p + 1 + overflow) * PAGE_SIZE;
            let crc = crc32c::crc32c(&img[at + 4..end]);
            img[at..at + 4].copy_from_slice(&crc.to_le_bytes());
            p += 1 + overflow;
        } else {
            p += 1;
        }
    }
}

/// How fuzz bytes become a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The input is the file, byte for byte.
    Raw,
    /// XOR patches on the valid image; checksums left alone, so damage must be detected.
    Patch,
    /// XOR patches, then every checksum recomputed: only structural validation stands between
    /// the damage and the reader.
    PatchResealed,
}

/// Input layout: byte 0 picks the mode; then the raw file, or 4-byte patches
/// `{offset: u24 LE (modulo the image length), xor: u8 (0 means 0xff)}`.
pub fn decode_input(image: &[u8], input: &[u8]) -> (Mode, Vec<u8>) {
    let Some((&sel, rest)) = input.split_first() else {
        return (Mode::Raw, Vec::new());
    };
    let mode = match sel % 3 {
        0 => Mode::Raw,
        1 => Mode::Patch,
        _ => Mode::PatchResealed,
    };
    if mode == Mode::Raw {
        return (mode, rest.to_vec());
    }
    let mut img = image.to_vec();
    for p in rest.chunks_exact(4) {
        let off = u32::from_le_bytes([p[0], p[1], p[2], 0]) as usize % img.len();
        img[off] ^= if p[3] == 0 { 0xff } else { p[3] };
    }
    if mode == Mode::PatchResealed {
        reseal(&mut img);
    }
    (mode, img)
}

/// What a walk saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Errors and `check` problems: each one means the damage was noticed.
    pub detected: Vec<String>,
    /// Data served that differs from every state the file may legitimately hold (D1 broken).
    pub wrong: Vec<String>,
    /// Sequence of the state that was opened, if open succeeded.
    pub opened_seq: Option<u64>,
}

/// Most entries one iteration may serve: a corrupt file whose checksums were forged can make a
/// tree of shared subtrees that iterates for ever; the walk stops there instead of hanging.
const MAX_ENTRIES: usize = 100_000;

/// Opens `path` and reads everything: bucket names, and for every bucket its length, a full
/// iteration both ways, a get of every key plus absent keys, counts, and two seeks; then
/// `check`. With `states` non-empty, every value served is compared with the state whose
/// sequence the file opened at. With `write`, also tries a write transaction and a reopen (the
/// fuzz target: they must not panic either).
pub fn open_and_walk(path: &Path, states: &[State], write: bool) -> Outcome {
    let mut out = Outcome::default();
    let db = match Database::open(path, options()) {
        Ok(db) => db,
        Err(e) => {
            out.detected.push(format!("open: {e}"));
            return out;
        }
    };
    walk(&db, states, &mut out);
    match db.check() {
        Ok(p) if p.is_empty() => {}
        Ok(p) => out
            .detected
            .push(format!("check: {} problems, first: {}", p.len(), p[0])),
        Err(e) => out.detected.push(format!("check: {e}")),
    }
    if write {
        write_phase(&db);
        drop(db);
        if let Ok(db) = Database::open(path, options()) {
            let _ = db.check();
            walk(&db, &[], &mut Outcome::default());
        }
    }
    out
}

fn walk(db: &Database, states: &[State], out: &mut Outcome) {
    let r = db.begin_read();
    let seq = r.sequence();
    out.opened_seq = Some(seq);
    let model = states.iter().find(|s| s.seq == seq);
    if !states.is_empty() && model.is_none() {
        out.wrong
            .push(format!("opened at sequence {seq}, not a durable state"));
        return;
    }
    let mut names: Vec<Vec<u8>> = model.map_or(Vec::new(), |m| m.buckets.keys().cloned().collect());
    match r.bucket_names() {
        Err(e) => out.detected.push(format!("bucket_names: {e}")),
        Ok(served) => {
            if model.is_some() && served != names {
                out.wrong.push(format!("bucket names {served:?}"));
            }
            for n in served {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    for name in names {
        let expect = model.and_then(|m| m.buckets.get(&name));
        let b = match r.bucket(&name) {
            Err(e) => {
                out.detected.push(format!("bucket {name:?}: {e}"));
                continue;
            }
            Ok(None) => {
                if model.is_some() {
                    out.wrong.push(format!("bucket {name:?} missing"));
                }
                continue;
            }
            Ok(Some(b)) => b,
        };
        walk_bucket(&name, &b, expect, model.is_some(), out);
    }
}

fn walk_bucket(
    name: &[u8],
    b: &keel_engine::btree::Bucket<'_>,
    expect: Option<&Tree>,
    have_model: bool,
    out: &mut Outcome,
) {
    let tag = String::from_utf8_lossy(name).into_owned();
    if have_model && expect.is_none() {
        out.wrong
            .push(format!("{tag}: bucket served but not in the state"));
    }
    if let Some(t) = expect {
        if b.len() != t.len() as u64 {
            out.wrong
                .push(format!("{tag}: len {} != {}", b.len(), t.len()));
        }
    }
    // Full iteration, both directions.
    let mut served_keys: Vec<Vec<u8>> = Vec::new();
    for reverse in [false, true] {
        let exp: Vec<(&Vec<u8>, &Vec<u8>)> = match expect {
            Some(t) if reverse => t.iter().rev().collect(),
            Some(t) => t.iter().collect(),
            None => Vec::new(),
        };
        let mut n = 0usize;
        let mut failed = false;
        for kv in b.range(Bound::Unbounded, Bound::Unbounded, reverse) {
            match kv {
                Err(e) => {
                    out.detected
                        .push(format!("{tag}: iter(rev={reverse}): {e}"));
                    failed = true;
                    break;
                }
                Ok((k, v)) => {
                    if expect.is_some() {
                        match exp.get(n) {
                            Some((ek, ev)) if ek.as_slice() == k && ev.as_slice() == v => {}
                            _ => {
                                out.wrong.push(format!(
                                    "{tag}: iter(rev={reverse}) entry {n} is {:?}",
                                    String::from_utf8_lossy(&k[..k.len().min(40)])
                                ));
                                failed = true;
                                break;
                            }
                        }
                    } else if !reverse && served_keys.len() < MAX_ENTRIES {
                        served_keys.push(k.to_vec());
                    }
                    n += 1;
                    if n >= MAX_ENTRIES {
                        break;
                    }
                }
            }
        }
        if expect.is_some() && !failed && n != exp.len() {
            out.wrong.push(format!(
                "{tag}: iter(rev={reverse}) served {n} of {} entries",
                exp.len()
            ));
        }
    }
    // Point reads of every key, and of keys that must be absent.
    let keys: Vec<Vec<u8>> = match expect {
        Some(t) => t.keys().cloned().collect(),
        None => served_keys,
    };
    for k in &keys {
        match b.get(k) {
            Err(e) => {
                out.detected.push(format!("{tag}: get: {e}"));
                break;
            }
            Ok(got) => {
                if let Some(t) = expect {
                    if got != t.get(k).map(Vec::as_slice) {
                        out.wrong.push(format!(
                            "{tag}: get {:?} served wrong value",
                            String::from_utf8_lossy(&k[..k.len().min(40)])
                        ));
                        break;
                    }
                }
            }
        }
        let mut absent = k.clone();
        absent.push(0);
        match b.get(&absent) {
            Err(e) => {
                out.detected.push(format!("{tag}: get absent: {e}"));
                break;
            }
            Ok(Some(_)) if expect.is_some_and(|t| !t.contains_key(&absent)) => {
                out.wrong.push(format!("{tag}: absent key served"));
                break;
            }
            Ok(_) => {}
        }
    }
    // Counts (whole and from the middle) and seeks from the middle, both ways.
    let mid = keys.get(keys.len() / 2).cloned();
    match b.count(Bound::Unbounded, Bound::Unbounded) {
        Err(e) => out.detected.push(format!("{tag}: count: {e}")),
        Ok(c) => {
            if let Some(t) = expect {
                if c != t.len() as u64 {
                    out.wrong.push(format!("{tag}: count {c} != {}", t.len()));
                }
            }
        }
    }
    if let Some(mid) = mid {
        let lo = Bound::Included(mid.as_slice());
        match b.count(lo, Bound::Unbounded) {
            Err(e) => out.detected.push(format!("{tag}: count from mid: {e}")),
            Ok(c) => {
                if let Some(t) = expect {
                    let want = t.range(mid.clone()..).count() as u64;
                    if c != want {
                        out.wrong
                            .push(format!("{tag}: count from mid {c} != {want}"));
                    }
                }
            }
        }
        for reverse in [false, true] {
            let (s, e) = if reverse {
                (Bound::Unbounded, lo)
            } else {
                (lo, Bound::Unbounded)
            };
            let served: Result<Vec<(Vec<u8>, Vec<u8>)>, _> = b
                .range(s, e, reverse)
                .take(5)
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect();
            match served {
                Err(e) => out
                    .detected
                    .push(format!("{tag}: seek(rev={reverse}): {e}")),
                Ok(got) => {
                    if let Some(t) = expect {
                        let want: Vec<(Vec<u8>, Vec<u8>)> = if reverse {
                            t.range(..=mid.clone())
                                .rev()
                                .take(5)
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        } else {
                            t.range(mid.clone()..)
                                .take(5)
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect()
                        };
                        if got != want {
                            out.wrong
                                .push(format!("{tag}: seek(rev={reverse}) differs"));
                        }
                    }
                }
            }
        }
    }
}

/// A write transaction on a possibly corrupt file: put into and delete from every bucket, create
/// and drop a bucket, commit durably. Errors are fine; panics are not.
fn write_phase(db: &Database) {
    let names = db.begin_read().bucket_names().unwrap_or_default();
    let Ok(mut w) = db.begin_write() else { return };
    for name in &names {
        let Ok(mut b) = w.bucket(name) else { return };
        let first = db.begin_read().bucket(name).ok().flatten().and_then(|r| {
            r.iter()
                .next()
                .and_then(|kv| kv.ok().map(|(k, _)| k.to_vec()))
        });
        if let Some(k) = first {
            if b.delete(&k).is_err() {
                return;
            }
        }
        if b.put(b"fuzz-new", &[7u8; 2000]).is_err() || b.put(b"a", b"b").is_err() {
            return;
        }
    }
    if w.create_bucket(b"fuzz-bucket").is_err() {
        return;
    }
    if let Some(first) = names.first() {
        if w.delete_bucket(first).is_err() {
            return;
        }
    }
    let _ = w.commit_durable();
}
