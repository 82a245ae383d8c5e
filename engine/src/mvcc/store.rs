//! The MVCC key-value store: etcd's v3 data model over the B+tree (layout in `keys.rs`).
//!
//! - Writes go through one [`KvWrite`] per apply batch (the apply core): every mutating request
//!   or txn gets the next main revision, every change in it a sub revision (S6). The batch ends
//!   with [`KvWrite::commit`], which stores the applied Raft index in the same B+tree
//!   transaction as the changes (S4) and publishes a visible commit — or with
//!   [`KvWrite::park`], which keeps it unpublished for the next batch to continue (one visible
//!   commit for several batches; [`KvStore::publish`] publishes what is parked).
//! - Reads run on [`KvRead`] snapshots from any thread, at the revision the snapshot holds.
//! - Compaction is scheduled by a request (reads below it fail at once, as in etcd) and carried
//!   out in bounded batches by [`KvStore::compact_step`].

use std::cmp::Ordering;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use crate::btree::{self, Database, Options, Range};
use crate::mvcc::keys::{archived, index_key, index_prefix, parse_index_key, rev_key, Record};
use crate::mvcc::types::*;

pub(crate) const KEY: &[u8] = b"key";
pub(crate) const INDEX: &[u8] = b"index";
pub(crate) const CURRENT: &[u8] = b"current";
pub(crate) const META: &[u8] = b"meta";

const META_REV: &[u8] = b"rev";
const META_COMPACT: &[u8] = b"compact";
const META_COMPACT_DONE: &[u8] = b"compact_done";
const META_COMPACT_CURSOR: &[u8] = b"compact_cursor";
const META_APPLIED: &[u8] = b"applied";
const META_NOSPACE: &[u8] = b"alarm_nospace";

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub btree: Options,
    /// etcd's --quota-backend-bytes (default 2 GiB).
    pub quota_bytes: u64,
    /// etcd's --max-txn-ops (default 128).
    pub max_txn_ops: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            btree: Options::default(),
            quota_bytes: 2 << 30,
            max_txn_ops: 128,
        }
    }
}

pub struct KvStore {
    db: Arc<Database>,
    options: StoreOptions,
}

type KvResult<T> = Result<T, KvError>;

// ---------------------------------------------------------------------------------------------
// Views: the same read logic over a read snapshot and inside a write transaction.

trait View {
    fn get(&self, bucket: &[u8], key: &[u8]) -> btree::Result<Option<&[u8]>>;
    fn range(
        &self,
        bucket: &[u8],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        rev: bool,
    ) -> btree::Result<Range<'_>>;
    fn count(&self, bucket: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> btree::Result<u64>;
}

/// A bucket the store created at open; its absence means a damaged or foreign file.
fn existing<'r>(txn: &'r btree::ReadTxn, name: &[u8]) -> btree::Result<btree::Bucket<'r>> {
    txn.bucket(name)?
        .ok_or_else(|| btree::Error::BucketNotFound(name.to_vec()))
}

impl View for btree::ReadTxn {
    fn get(&self, bucket: &[u8], key: &[u8]) -> btree::Result<Option<&[u8]>> {
        existing(self, bucket)?.get(key)
    }
    fn range(
        &self,
        bucket: &[u8],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        rev: bool,
    ) -> btree::Result<Range<'_>> {
        Ok(existing(self, bucket)?.range(start, end, rev))
    }
    fn count(&self, bucket: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> btree::Result<u64> {
        existing(self, bucket)?.count(start, end)
    }
}

impl View for btree::WriteTxn<'_> {
    fn get(&self, bucket: &[u8], key: &[u8]) -> btree::Result<Option<&[u8]>> {
        self.get_in(bucket, key)
    }
    fn range(
        &self,
        bucket: &[u8],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        rev: bool,
    ) -> btree::Result<Range<'_>> {
        self.range_in(bucket, start, end, rev)
    }
    fn count(&self, bucket: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> btree::Result<u64> {
        self.count_in(bucket, start, end)
    }
}

fn meta_i64(v: &dyn View, name: &[u8]) -> btree::Result<i64> {
    meta_or(v, name, 0)
}

fn meta_or(v: &dyn View, name: &[u8], default: i64) -> btree::Result<i64> {
    match v.get(META, name)? {
        None => Ok(default),
        Some(b) => Ok(i64::from_le_bytes(b.try_into().map_err(|_| {
            btree::Error::Corrupted {
                page: 0,
                reason: "bad meta value".into(),
            }
        })?)),
    }
}

/// etcd's store starts at revision 1 (the first write is revision 2) and with no compaction
/// (compactMainRev -1, so even `compact 0` and `compact 1` succeed once).
const INITIAL_REV: i64 = 1;
const NO_COMPACTION: i64 = -1;

/// etcd's key/range_end convention as B+tree bounds over user keys.
fn key_bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    if range_end.is_empty() {
        (Bound::Included(key), Bound::Included(key))
    } else if range_end == [0] {
        (Bound::Included(key), Bound::Unbounded)
    } else if range_end <= key {
        // An empty interval; B+tree bounds with end < start would be fine too, but say it.
        (Bound::Included(key), Bound::Excluded(key))
    } else {
        (Bound::Included(key), Bound::Excluded(range_end))
    }
}

/// Whether `k` lies in etcd's key/range_end interval.
fn in_bounds(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    use std::ops::RangeBounds;
    key_bounds(key, range_end).contains(&k)
}

/// What a txn's path has done to keys so far (for the put check): keys it put (true) or
/// deleted after knowing them (false), and the ranges it deleted.
#[derive(Default)]
struct PathState {
    known: ahash::AHashMap<Vec<u8>, bool>,
    deleted: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The live records of keys in the bounds at revision `at` (`cur` = the view's revision), in
/// key order, at most `limit` (0 = all) collected; returns them and the total count.
fn collect(
    v: &dyn View,
    key: &[u8],
    range_end: &[u8],
    at: i64,
    cur: i64,
    limit: usize,
    want_kvs: bool,
) -> KvResult<(Vec<KeyValue>, i64, bool)> {
    let (start, end) = key_bounds(key, range_end);
    let mut kvs = Vec::new();
    if at == cur {
        // The current state: scan `current` directly.
        if !want_kvs {
            return Ok((kvs, v.count(CURRENT, start, end)? as i64, false));
        }
        let mut total = 0i64;
        for kv in v.range(CURRENT, start, end, false)? {
            let (_, bytes) = kv?;
            if limit == 0 || kvs.len() < limit {
                kvs.push(archived(bytes)?.to_kv(false));
            }
            total += 1;
        }
        return Ok((kvs, total, true));
    }
    // A past revision: walk the key index, taking for each key its newest revision <= at.
    let lo = index_prefix(key);
    let hi = match end {
        Bound::Unbounded => None,
        Bound::Excluded(e) => Some(index_prefix(e)),
        Bound::Included(k) => {
            let mut p = index_prefix(k);
            p.push(0xFF);
            Some(p)
        } // key_bounds never returns an excluded start.
    };
    let hi_bound = hi.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let mut total = 0i64;
    let mut cur_key: Option<Vec<u8>> = None;
    let mut best: Option<(i64, i64, bool)> = None;
    let mut flush = |k: &Option<Vec<u8>>,
                     best: Option<(i64, i64, bool)>,
                     kvs: &mut Vec<KeyValue>|
     -> KvResult<()> {
        if let (Some(_), Some((main, sub, tomb))) = (k, best) {
            if !tomb {
                total += 1;
                if want_kvs && (limit == 0 || kvs.len() < limit) {
                    let bytes = v.get(KEY, &rev_key(main, sub))?.ok_or_else(|| {
                        corrupt(format!(
                            "index names revision {main}.{sub}, absent from the key bucket"
                        ))
                    })?;
                    kvs.push(archived(bytes)?.to_kv(false));
                }
            }
        }
        Ok(())
    };
    for kv in v.range(INDEX, Bound::Included(&lo), hi_bound, false)? {
        let (ik, flag) = kv?;
        let (uk, main, sub) = parse_index_key(ik).ok_or_else(|| corrupt("bad index key".into()))?;
        if cur_key.as_deref() != Some(uk.as_slice()) {
            flush(&cur_key, best.take(), &mut kvs)?;
            cur_key = Some(uk);
        }
        if main <= at {
            best = Some((main, sub, flag.first() == Some(&1)));
        }
    }
    flush(&cur_key, best.take(), &mut kvs)?;
    Ok((kvs, total, want_kvs))
}

fn corrupt(reason: String) -> KvError {
    KvError::Storage(btree::Error::Corrupted { page: 0, reason })
}

/// etcd's Range (etcdserver/apply.go + mvcc rangeKeys), over a view at revision `cur`.
fn range(v: &dyn View, r: &RangeRequest, cur: i64, compacted: i64) -> KvResult<RangeResponse> {
    if r.revision > cur {
        return Err(KvError::FutureRev);
    }
    let at = if r.revision <= 0 { cur } else { r.revision };
    if at < compacted {
        return Err(KvError::Compacted);
    }
    let filtered = r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0;
    let fetch = if r.sort_order != SortOrder::None || filtered || r.limit <= 0 {
        0
    } else {
        r.limit as usize + 1
    };
    let (mut kvs, count, _) = collect(v, &r.key, &r.range_end, at, cur, fetch, !r.count_only)?;
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }
    let mut order = r.sort_order;
    if r.sort_target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match r.sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        if order == SortOrder::Ascend {
            kvs.sort_by(cmp);
        } else {
            kvs.sort_by(|a, b| cmp(b, a));
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse {
        header: ResponseHeader { revision: cur },
        kvs,
        more,
        count,
    })
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Create(x) => kv.create_revision.cmp(x),
        CompareTarget::Mod(x) => kv.mod_revision.cmp(x),
        CompareTarget::Version(x) => kv.version.cmp(x),
        CompareTarget::Lease(x) => kv.lease.cmp(x),
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// etcd's applyCompare: every key in the range must satisfy the compare; a missing key compares
/// as a zero KeyValue, except that a VALUE compare on no keys fails.
fn apply_compare(v: &dyn View, c: &Compare, cur: i64) -> KvResult<bool> {
    let (kvs, _, _) = collect(v, &c.key, &c.range_end, cur, cur, 0, true)?;
    if kvs.is_empty() {
        return Ok(
            !matches!(c.target, CompareTarget::Value(_)) && compare_kv(c, &KeyValue::default())
        );
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
}

// ---------------------------------------------------------------------------------------------
// Request validation at the gateway (etcd's v3rpc/key.go).

pub fn check_range(r: &RangeRequest) -> KvResult<()> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> KvResult<()> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> KvResult<()> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

pub fn check_txn(r: &TxnRequest, max_ops: usize) -> KvResult<()> {
    fn op_count_ok(r: &TxnRequest, max_ops: i64) -> KvResult<()> {
        let opc = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
        if opc > max_ops {
            return Err(KvError::TooManyOps);
        }
        if r.compare.iter().any(|c| c.key.is_empty()) {
            return Err(KvError::EmptyKey);
        }
        for op in r.success.iter().chain(&r.failure) {
            match op {
                RequestOp::Range(x) => check_range(x)?,
                RequestOp::Put(x) => check_put(x)?,
                RequestOp::DeleteRange(x) => check_delete(x)?,
                RequestOp::Txn(t) => op_count_ok(t, max_ops - opc)?,
            }
        }
        Ok(())
    }
    op_count_ok(r, max_ops as i64)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

/// A delete interval [start, end) in etcd's interval-tree terms (a point is [k, k\0)).
#[derive(Clone)]
struct Interval(Vec<u8>, Vec<u8>);

impl Interval {
    fn contains_point(&self, k: &[u8]) -> bool {
        // etcd compares points against intervals as strings; "\0" as an end is the empty
        // interval there, so a delete-to-the-end never conflicts with a put (etcd's behaviour).
        self.0.as_slice() <= k && k < self.1.as_slice()
    }
}

/// etcd's checkIntervals: a key put twice, or put and deleted, in one branch is refused.
fn check_intervals(
    reqs: &[RequestOp],
) -> KvResult<(std::collections::HashSet<Vec<u8>>, Vec<Interval>)> {
    let mut dels = Vec::new();
    for r in reqs {
        if let RequestOp::DeleteRange(d) = r {
            let end = if d.range_end.is_empty() {
                let mut e = d.key.clone();
                e.push(0);
                e
            } else {
                d.range_end.clone()
            };
            dels.push(Interval(d.key.clone(), end));
        }
    }
    let mut puts = std::collections::HashSet::new();
    for r in reqs {
        let RequestOp::Txn(t) = r else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.iter().any(|d| d.contains_point(k)) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(KvError::DuplicateKey);
            }
            if dels.iter().any(|d| d.contains_point(k)) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for r in reqs {
        let RequestOp::Put(p) = r else { continue };
        if puts.contains(&p.key) || dels.iter().any(|d| d.contains_point(&p.key)) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// Which branch every txn on the chosen path takes, in path order, every compare evaluated
/// against the state at `rev`, before anything is applied (etcd's compareToPath).
fn compare_path(v: &dyn View, rev: i64, t: &TxnRequest, path: &mut Vec<bool>) -> KvResult<()> {
    let mut ok = true;
    for c in &t.compare {
        if !apply_compare(v, c, rev)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in if ok { &t.success } else { &t.failure } {
        if let RequestOp::Txn(n) = op {
            compare_path(v, rev, n, path)?;
        }
    }
    Ok(())
}

/// etcd's checkRequestRange on the chosen path: every range asks for a readable revision.
fn check_path_ranges(
    t: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    rev: i64,
    compacted: i64,
) -> KvResult<()> {
    let ok = path[*at];
    *at += 1;
    for op in if ok { &t.success } else { &t.failure } {
        match op {
            // etcd checks any non-zero revision, negative ones included, against the
            // compaction revision: -1 fails once anything is compacted, and -2 always.
            RequestOp::Range(r) if r.revision != 0 => {
                if r.revision > rev {
                    return Err(KvError::FutureRev);
                }
                if r.revision < compacted {
                    return Err(KvError::Compacted);
                }
            }
            RequestOp::Txn(n) => check_path_ranges(n, path, at, rev, compacted)?,
            _ => {}
        }
    }
    Ok(())
}

fn txn_has_put(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).any(|op| match op {
        RequestOp::Put(_) => true,
        RequestOp::Txn(t) => txn_has_put(t),
        _ => false,
    })
}

// ---------------------------------------------------------------------------------------------
// Store

impl KvStore {
    /// Opens (or creates) the store file.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> KvResult<KvStore> {
        let db = Database::open(path, options.btree.clone())?;
        // A new file gets its buckets in one durable commit; an existing store is opened without
        // writing anything (restart cost = opening the B+tree file).
        let names = db.begin_read().bucket_names()?;
        if [KEY, INDEX, CURRENT, META]
            .iter()
            .any(|b| !names.iter().any(|n| n == b))
        {
            let mut w = db.begin_write()?;
            for b in [KEY, INDEX, CURRENT, META] {
                w.ensure_bucket(b)?;
            }
            w.commit_durable()?;
        }
        Ok(KvStore {
            db: Arc::new(db),
            options,
        })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The underlying B+tree (stats, check, compaction of the file).
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// A consistent snapshot for reads; `Send + Sync`.
    pub fn read(&self) -> KvResult<KvRead> {
        let txn = self.db.begin_read();
        let rev = meta_or(&txn, META_REV, INITIAL_REV)?;
        let compacted = meta_or(&txn, META_COMPACT, NO_COMPACTION)?;
        Ok(KvRead {
            txn,
            rev,
            compacted,
        })
    }

    /// Starts an apply batch. One at a time (the apply core).
    pub fn write(&self) -> KvResult<KvWrite<'_>> {
        let txn = self.db.begin_write()?;
        let rev = meta_or(&txn, META_REV, INITIAL_REV)?;
        let compacted = meta_or(&txn, META_COMPACT, NO_COMPACTION)?;
        let nospace = meta_i64(&txn, META_NOSPACE)? != 0;
        Ok(KvWrite {
            txn,
            rev,
            compacted,
            nospace,
            store: self,
            main: 0,
            sub: 0,
            events: Vec::new(),
            lease_exists: None,
        })
    }

    /// Publishes parked batches ([`KvWrite::park`]) to readers; false when none was parked.
    pub fn publish(&self) -> KvResult<bool> {
        Ok(self.db.publish_parked()?)
    }

    /// Makes every applied batch durable, parked ones included (the B+tree's durable commit;
    /// DESIGN.md §3 step 5).
    pub fn sync(&self) -> KvResult<()> {
        Ok(self.db.sync()?)
    }

    /// The last applied Raft index as of the latest visible commit.
    pub fn applied_index(&self) -> KvResult<u64> {
        Ok(meta_i64(&self.db.begin_read(), META_APPLIED)? as u64)
    }

    /// Removes at least `max` superseded revisions at or below the scheduled compaction
    /// revision (or all that remain) in one visible commit, resuming where the previous step
    /// stopped (a cursor in the meta bucket). Returns true when physical compaction is complete.
    pub fn compact_step(&self, max: usize) -> KvResult<bool> {
        let mut w = self.db.begin_write()?;
        let target = meta_or(&w, META_COMPACT, NO_COMPACTION)?;
        let done = meta_or(&w, META_COMPACT_DONE, NO_COMPACTION)?;
        if done >= target {
            return Ok(true);
        }
        let resume: Option<Vec<u8>> = match w.get_in(META, META_COMPACT_CURSOR)? {
            Some(c) if c.len() >= 8 && c[..8] == target.to_le_bytes() => {
                let mut p = index_prefix(&c[8..]);
                p.push(0xFF);
                Some(p)
            }
            _ => None,
        };
        let start = resume.as_deref().map_or(Bound::Unbounded, Bound::Included);
        let mut doomed: Vec<(Vec<u8>, i64, i64)> = Vec::new();
        // Revisions <= target of the key being scanned.
        let mut group: Vec<(i64, i64, bool)> = Vec::new();
        let mut group_key: Option<Vec<u8>> = None;
        let mut stopped_after: Option<Vec<u8>> = None;
        let close = |key: &[u8],
                     group: &mut Vec<(i64, i64, bool)>,
                     doomed: &mut Vec<(Vec<u8>, i64, i64)>| {
            // Keep the newest revision at or below the target unless it is a tombstone.
            let n = group.len();
            for (i, (main, sub, tomb)) in group.drain(..).enumerate() {
                if i + 1 < n || tomb {
                    doomed.push((key.to_vec(), main, sub));
                }
            }
        };
        for kv in w.range_in(INDEX, start, Bound::Unbounded, false)? {
            let (ik, flag) = kv?;
            let (uk, main, sub) =
                parse_index_key(ik).ok_or_else(|| corrupt("bad index key".into()))?;
            if group_key.as_deref() != Some(uk.as_slice()) {
                if let Some(k) = group_key.take() {
                    close(&k, &mut group, &mut doomed);
                    if doomed.len() >= max {
                        stopped_after = Some(k);
                        break;
                    }
                }
                group_key = Some(uk);
            }
            if main <= target {
                group.push((main, sub, flag.first() == Some(&1)));
            }
        }
        if stopped_after.is_none() {
            if let Some(k) = group_key.take() {
                close(&k, &mut group, &mut doomed);
            }
        }
        for (k, main, sub) in &doomed {
            w.bucket(INDEX)?.delete(&index_key(k, *main, *sub))?;
            w.bucket(KEY)?.delete(&rev_key(*main, *sub))?;
        }
        let finished = stopped_after.is_none();
        match stopped_after {
            Some(k) => {
                let mut c = target.to_le_bytes().to_vec();
                c.extend_from_slice(&k);
                w.bucket(META)?.put(META_COMPACT_CURSOR, &c)?;
            }
            None => {
                w.bucket(META)?.delete(META_COMPACT_CURSOR)?;
                w.bucket(META)?
                    .put(META_COMPACT_DONE, &target.to_le_bytes())?;
            }
        }
        w.commit()?;
        Ok(finished)
    }

    /// Compacts physically until done, in batches of `batch` revisions.
    pub fn compact_all(&self, batch: usize) -> KvResult<()> {
        while !self.compact_step(batch)? {}
        Ok(())
    }

    /// Clears the NOSPACE alarm (etcd's `alarm disarm`) after space was freed.
    pub fn disarm_nospace(&self) -> KvResult<()> {
        let mut w = self.db.begin_write()?;
        w.bucket(META)?.delete(META_NOSPACE)?;
        w.commit()?;
        Ok(())
    }

    /// Whether the NOSPACE alarm is raised.
    pub fn nospace(&self) -> KvResult<bool> {
        Ok(meta_i64(&self.db.begin_read(), META_NOSPACE)? != 0)
    }

    /// CRC32C over every stored revision (key and record bytes) with main revision <= `rev`
    /// (0 = current), in revision order, and the compaction revision: equal on members with
    /// equal histories (etcd's HashKV).
    pub fn hash_kv(&self, rev: i64) -> KvResult<(u32, i64, i64)> {
        let r = self.read()?;
        let rev = if rev <= 0 { r.rev } else { rev };
        if rev > r.rev {
            return Err(KvError::FutureRev);
        }
        if rev < r.compacted {
            return Err(KvError::Compacted);
        }
        let end = rev_key(rev + 1, 0);
        let mut h = 0u32;
        for kv in r
            .txn
            .range(KEY, Bound::Unbounded, Bound::Excluded(&end), false)?
        {
            let (k, v) = kv?;
            h = crc32c::crc32c_append(h, k);
            h = crc32c::crc32c_append(h, v);
        }
        Ok((h, r.rev, r.compacted))
    }
}

/// Auxiliary buckets live beside the store's own; their names must not collide with them.
fn check_aux(bucket: &[u8]) {
    assert!(
        ![KEY, INDEX, CURRENT, META].contains(&bucket),
        "{:?} is one of the MVCC store's own buckets",
        String::from_utf8_lossy(bucket)
    );
}

/// A read snapshot of the store.
pub struct KvRead {
    pub(crate) txn: btree::ReadTxn,
    pub(crate) rev: i64,
    pub(crate) compacted: i64,
}

impl KvRead {
    /// The store's revision in this snapshot.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// The compaction revision (reads below it fail with ErrCompacted).
    pub fn compact_revision(&self) -> i64 {
        self.compacted
    }

    pub fn range(&self, r: &RangeRequest) -> KvResult<RangeResponse> {
        check_range(r)?;
        range(&self.txn, r, self.rev, self.compacted)
    }

    /// Visits the live records of keys in etcd's [key, range_end) at this snapshot's revision,
    /// in key order, borrowed from the map (zero copy: the server encodes its response straight
    /// from them). Stops early when `f` returns false. Returns the number visited.
    pub fn for_each_current<'a>(
        &'a self,
        key: &[u8],
        range_end: &[u8],
        mut f: impl FnMut(&'a crate::mvcc::keys::ArchivedRecord) -> bool,
    ) -> KvResult<u64> {
        let (start, end) = key_bounds(key, range_end);
        let mut n = 0;
        for kv in self.txn.range(CURRENT, start, end, false)? {
            let (_, bytes) = kv?;
            n += 1;
            if !f(archived(bytes)?) {
                break;
            }
        }
        Ok(n)
    }

    /// Visits every entry of an auxiliary bucket in key order (nothing when it does not
    /// exist yet). Stops early when `f` returns false.
    pub fn aux_scan(&self, bucket: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> bool) -> KvResult<()> {
        check_aux(bucket);
        let Some(b) = self.txn.bucket(bucket)? else {
            return Ok(());
        };
        for kv in b.iter() {
            let (k, v) = kv?;
            if !f(k, v) {
                break;
            }
        }
        Ok(())
    }

    /// The archived current record of `key` borrowed from the map (zero copy).
    pub fn get_current(&self, key: &[u8]) -> KvResult<Option<&crate::mvcc::keys::ArchivedRecord>> {
        match self.txn.get(CURRENT, key)? {
            Some(b) => Ok(Some(archived(b)?)),
            None => Ok(None),
        }
    }

    /// A read-only txn (see [`txn_is_read_only`]) at this snapshot's revision, answered as the
    /// apply path would answer it at that revision: compares choose each level's branch, the
    /// chosen ranges' revisions are checked before any is read (etcd's checkRequestRange), and
    /// the header carries this snapshot's revision. `max_ops` is etcd's --max-txn-ops.
    pub fn txn(&self, t: &TxnRequest, max_ops: usize) -> KvResult<TxnResponse> {
        assert!(
            txn_is_read_only(t),
            "a txn with writes goes through the log"
        );
        check_txn(t, max_ops)?;
        let mut path = Vec::new();
        compare_path(&self.txn, self.rev, t, &mut path)?;
        check_path_ranges(t, &path, &mut 0, self.rev, self.compacted)?;
        let mut resp = self.read_txn(t, &path, &mut 0)?;
        resp.header.revision = self.rev;
        Ok(resp)
    }

    fn read_txn(&self, t: &TxnRequest, path: &[bool], at: &mut usize) -> KvResult<TxnResponse> {
        let succeeded = path[*at];
        *at += 1;
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    ResponseOp::Range(range(&self.txn, r, self.rev, self.compacted)?)
                }
                RequestOp::Txn(n) => ResponseOp::Txn(self.read_txn(n, path, at)?),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    unreachable!("a read-only txn has no writes (checked by the caller)")
                }
            });
        }
        Ok(TxnResponse {
            header: ResponseHeader::default(),
            succeeded,
            responses,
        })
    }
}

/// Whether `t` only reads, on either branch at every level (etcd's isTxnReadonly): only such a
/// txn may be answered by [`KvRead::txn`].
pub fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match op {
        RequestOp::Range(_) => true,
        RequestOp::Txn(n) => txn_is_read_only(n),
        RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
    })
}

/// One apply batch: requests applied in order, then one commit.
pub struct KvWrite<'s> {
    txn: btree::WriteTxn<'s>,
    /// The store's revision including requests applied earlier in this batch.
    rev: i64,
    compacted: i64,
    nospace: bool,
    store: &'s KvStore,
    /// Main and next sub revision of the request being applied (0 = none yet).
    main: i64,
    sub: i64,
    /// Every change of this batch, in revision order (the watch hub's input).
    events: Vec<Event>,
    /// The lessor's answer to "does this lease exist?" (None: every lease is accepted).
    lease_exists: Option<Box<dyn Fn(i64) -> bool + 's>>,
}

impl<'s> KvWrite<'s> {
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Starts a request: its changes share main revision rev + 1.
    fn begin(&mut self) {
        self.main = self.rev + 1;
        self.sub = 0;
    }

    /// Ends a request; returns whether it changed anything (and so consumed the revision).
    fn end(&mut self) -> KvResult<bool> {
        let changed = self.sub > 0;
        if changed {
            self.rev = self.main;
            self.txn
                .bucket(META)?
                .put(META_REV, &self.rev.to_le_bytes())?;
        }
        self.main = 0;
        Ok(changed)
    }

    /// The revision reads inside the current request see.
    fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.rev
        }
    }

    fn current(&self, key: &[u8]) -> KvResult<Option<Record>> {
        match self.txn.get_in(CURRENT, key)? {
            None => Ok(None),
            Some(b) => {
                let a = archived(b)?;
                let kv = a.to_kv(false);
                Ok(Some(Record {
                    key: kv.key,
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                    lease: kv.lease,
                    value: kv.value,
                    tombstone: false,
                }))
            }
        }
    }

    fn into_kv(r: Record) -> KeyValue {
        KeyValue {
            key: r.key,
            create_revision: r.create_revision,
            mod_revision: r.mod_revision,
            version: r.version,
            value: r.value,
            lease: r.lease,
        }
    }

    fn put_change(&mut self, p: &PutRequest) -> KvResult<Option<KeyValue>> {
        let prev = self.current(&p.key)?;
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(KvError::KeyNotFound);
        }
        if !p.ignore_lease && !self.lease_ok(p.lease) {
            return Err(KvError::LeaseNotFound);
        }
        let main = self.main;
        let sub = self.sub;
        self.sub += 1;
        let value = match (&prev, p.ignore_value) {
            (Some(pr), true) => pr.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev, p.ignore_lease) {
            (Some(pr), true) => pr.lease,
            _ => p.lease,
        };
        let (create, version) = prev
            .as_ref()
            .map_or((main, 1), |pr| (pr.create_revision, pr.version + 1));
        let rec = Record {
            key: p.key.clone(),
            create_revision: create,
            mod_revision: main,
            version,
            lease,
            value,
            tombstone: false,
        };
        let bytes = rec.to_bytes();
        self.txn.bucket(KEY)?.put(&rev_key(main, sub), &bytes)?;
        self.txn
            .bucket(INDEX)?
            .put(&index_key(&p.key, main, sub), &[0])?;
        self.txn.bucket(CURRENT)?.put(&p.key, &bytes)?;
        // The records move into the event and the answer: one copy of prev, none of rec.
        let prev = prev.map(Self::into_kv);
        self.events.push(Event {
            kind: EventType::Put,
            kv: Self::into_kv(rec),
            prev_kv: prev.clone(),
        });
        Ok(prev)
    }

    fn delete_change(&mut self, key: &[u8], range_end: &[u8]) -> KvResult<Vec<KeyValue>> {
        let (start, end) = key_bounds(key, range_end);
        let mut victims = Vec::new();
        for kv in self.txn.range_in(CURRENT, start, end, false)? {
            let (_, v) = kv?;
            victims.push(archived(v)?.to_kv(false));
        }
        for kv in &victims {
            let (main, sub) = (self.main, self.sub);
            self.sub += 1;
            let tomb = Record {
                key: kv.key.clone(),
                create_revision: 0,
                mod_revision: main,
                version: 0,
                lease: 0,
                value: Vec::new(),
                tombstone: true,
            };
            self.txn
                .bucket(KEY)?
                .put(&rev_key(main, sub), &tomb.to_bytes())?;
            self.txn
                .bucket(INDEX)?
                .put(&index_key(&kv.key, main, sub), &[1])?;
            self.txn.bucket(CURRENT)?.delete(&kv.key)?;
            self.events.push(Event {
                kind: EventType::Delete,
                kv: KeyValue {
                    key: kv.key.clone(),
                    mod_revision: main,
                    ..KeyValue::default()
                },
                prev_kv: Some(kv.clone()),
            });
        }
        Ok(victims)
    }

    /// Deletes the listed live keys (absent ones are skipped) in one revision: a lease revoke
    /// (etcd deletes every key attached to the lease in one txn). No txn op limit applies.
    pub fn delete_keys(&mut self, keys: &[Vec<u8>]) -> KvResult<DeleteRangeResponse> {
        self.begin();
        let mut deleted = Vec::new();
        for k in keys {
            if k.is_empty() {
                continue;
            }
            deleted.extend(self.delete_change(k, &[])?);
        }
        self.end()?;
        Ok(DeleteRangeResponse {
            header: ResponseHeader { revision: self.rev },
            deleted: deleted.len() as i64,
            prev_kvs: deleted,
        })
    }

    /// Installs the lessor's lease lookup: puts (alone or in a txn) naming a lease it does not
    /// know fail with LeaseNotFound before anything of the request is applied.
    pub fn set_lease_check(&mut self, f: impl Fn(i64) -> bool + 's) {
        self.lease_exists = Some(Box::new(f));
    }

    fn lease_ok(&self, lease: i64) -> bool {
        lease == 0 || self.lease_exists.as_ref().is_none_or(|f| f(lease))
    }

    /// Takes the events of the requests applied so far in this batch, in revision order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Writes `key` → `value` in an auxiliary bucket (leases, cluster metadata), created on
    /// first use, in this batch's transaction (so it commits atomically with the changes, S4).
    pub fn aux_put(&mut self, bucket: &[u8], key: &[u8], value: &[u8]) -> KvResult<()> {
        check_aux(bucket);
        self.txn.ensure_bucket(bucket)?;
        self.txn.bucket(bucket)?.put(key, value)?;
        Ok(())
    }

    /// Deletes `key` from an auxiliary bucket; returns whether it was there.
    pub fn aux_delete(&mut self, bucket: &[u8], key: &[u8]) -> KvResult<bool> {
        check_aux(bucket);
        self.txn.ensure_bucket(bucket)?;
        Ok(self.txn.bucket(bucket)?.delete(key)?)
    }

    /// Reads `key` from an auxiliary bucket, including this batch's changes.
    pub fn aux_get(&mut self, bucket: &[u8], key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        check_aux(bucket);
        self.txn.ensure_bucket(bucket)?;
        Ok(self.txn.get_in(bucket, key)?.map(<[u8]>::to_vec))
    }

    /// etcd measures the whole backend file against the quota; so do we (the high-water mark).
    fn quota_ok(&self) -> bool {
        self.store.db.size_bytes() <= self.store.options.quota_bytes
    }

    /// etcd's quota applier: while NOSPACE is raised puts are refused; a put that takes the
    /// store over the quota is applied, then answered NOSPACE and raises the alarm.
    fn after_growth(&mut self) -> KvResult<()> {
        if !self.quota_ok() {
            self.nospace = true;
            self.txn
                .bucket(META)?
                .put(META_NOSPACE, &1i64.to_le_bytes())?;
            return Err(KvError::NoSpace);
        }
        Ok(())
    }

    /// Raises the NOSPACE alarm in this batch (etcd's `alarm activate` of NOSPACE).
    pub fn raise_nospace(&mut self) -> KvResult<()> {
        self.nospace = true;
        self.txn
            .bucket(META)?
            .put(META_NOSPACE, &1i64.to_le_bytes())?;
        Ok(())
    }

    /// Clears the NOSPACE alarm in this batch (etcd's `alarm disarm`).
    pub fn clear_nospace(&mut self) -> KvResult<()> {
        self.nospace = false;
        self.txn.bucket(META)?.delete(META_NOSPACE)?;
        Ok(())
    }

    /// Whether NOSPACE is raised, as of this batch.
    pub fn nospace(&self) -> bool {
        self.nospace
    }

    pub fn put(&mut self, p: &PutRequest) -> KvResult<PutResponse> {
        check_put(p)?;
        if self.nospace {
            return Err(KvError::NoSpace);
        }
        self.begin();
        let prev = match self.put_change(p) {
            Ok(prev) => prev,
            Err(e) => {
                self.main = 0;
                return Err(e);
            }
        };
        self.end()?;
        self.after_growth()?;
        Ok(PutResponse {
            header: ResponseHeader { revision: self.rev },
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    pub fn delete_range(&mut self, d: &DeleteRangeRequest) -> KvResult<DeleteRangeResponse> {
        check_delete(d)?;
        self.begin();
        let victims = self.delete_change(&d.key, &d.range_end)?;
        self.end()?;
        Ok(DeleteRangeResponse {
            header: ResponseHeader { revision: self.rev },
            deleted: victims.len() as i64,
            prev_kvs: if d.prev_kv { victims } else { Vec::new() },
        })
    }

    pub fn range(&self, r: &RangeRequest) -> KvResult<RangeResponse> {
        check_range(r)?;
        range(&self.txn, r, self.rev, self.compacted)
    }

    pub fn txn(&mut self, t: &TxnRequest) -> KvResult<TxnResponse> {
        check_txn(t, self.store.options.max_txn_ops)?;
        if self.nospace && txn_has_put(t) {
            return Err(KvError::NoSpace);
        }
        // Every compare of every txn on the chosen path is evaluated against the state before
        // the txn (etcd's compareToPath).
        let mut path = Vec::new();
        compare_path(&self.txn, self.rev, t, &mut path)?;
        self.check_path(t, &path)?;
        self.begin();
        let mut at = 0;
        let mut resp = self.apply_txn(t, &path, &mut at)?;
        self.end()?;
        resp.header.revision = self.rev;
        if txn_has_put(t) {
            self.after_growth()?;
        }
        Ok(resp)
    }

    /// etcd's checkRequests on the chosen path, before anything is applied: first every put
    /// that needs an existing key finds one (checkRequestPut), then, in a second pass, every
    /// range asks for a readable revision (checkRequestRange) — so a put's error wins over a
    /// range's wherever they stand on the path.
    ///
    /// Unlike etcd 3.4, the put check sees the txn's own earlier deletes and puts: etcd checks
    /// against the state before the txn, so `delete [k, \0)` then `put k ignore_value` (a
    /// from-key delete escapes its duplicate-key check) passes the check, fails while applying,
    /// and panics the member (etcd issues #14110, #22445). keel refuses it with KeyNotFound,
    /// the error etcd's check means to give, and applies nothing.
    fn check_path(&self, t: &TxnRequest, path: &[bool]) -> KvResult<()> {
        let mut state = PathState::default();
        self.check_path_puts(t, path, &mut 0, &mut state)?;
        check_path_ranges(t, path, &mut 0, self.rev, self.compacted)
    }

    fn check_path_puts(
        &self,
        t: &TxnRequest,
        path: &[bool],
        at: &mut usize,
        state: &mut PathState,
    ) -> KvResult<()> {
        let ok = path[*at];
        *at += 1;
        for op in if ok { &t.success } else { &t.failure } {
            match op {
                RequestOp::Put(p) => {
                    if (p.ignore_value || p.ignore_lease) && !self.exists_on_path(&p.key, state)? {
                        return Err(KvError::KeyNotFound);
                    }
                    if !p.ignore_lease && !self.lease_ok(p.lease) {
                        return Err(KvError::LeaseNotFound);
                    }
                    state.known.insert(p.key.clone(), true);
                }
                RequestOp::DeleteRange(d) => {
                    for (k, live) in state.known.iter_mut() {
                        if in_bounds(k, &d.key, &d.range_end) {
                            *live = false;
                        }
                    }
                    state.deleted.push((d.key.clone(), d.range_end.clone()));
                }
                RequestOp::Txn(n) => self.check_path_puts(n, path, at, state)?,
                RequestOp::Range(_) => {}
            }
        }
        Ok(())
    }

    /// Whether `key` exists at this point of the txn's path.
    fn exists_on_path(&self, key: &[u8], state: &PathState) -> KvResult<bool> {
        if let Some(live) = state.known.get(key) {
            return Ok(*live);
        }
        if state.deleted.iter().any(|(k, e)| in_bounds(key, k, e)) {
            return Ok(false);
        }
        Ok(self.current(key)?.is_some())
    }

    fn apply_txn(
        &mut self,
        t: &TxnRequest,
        path: &[bool],
        at: &mut usize,
    ) -> KvResult<TxnResponse> {
        let ok = path[*at];
        *at += 1;
        let mut responses = Vec::new();
        for op in if ok { &t.success } else { &t.failure } {
            responses.push(match op {
                RequestOp::Range(r) => {
                    ResponseOp::Range(range(&self.txn, r, self.read_rev(), self.compacted)?)
                }
                RequestOp::Put(p) => {
                    let prev = self.put_change(p)?;
                    ResponseOp::Put(PutResponse {
                        header: ResponseHeader {
                            revision: self.main,
                        },
                        prev_kv: if p.prev_kv { prev } else { None },
                    })
                }
                RequestOp::DeleteRange(d) => {
                    let victims = self.delete_change(&d.key, &d.range_end)?;
                    ResponseOp::DeleteRange(DeleteRangeResponse {
                        header: ResponseHeader {
                            revision: self.read_rev(),
                        },
                        deleted: victims.len() as i64,
                        prev_kvs: if d.prev_kv { victims } else { Vec::new() },
                    })
                }
                RequestOp::Txn(n) => ResponseOp::Txn(self.apply_txn(n, path, at)?),
            });
        }
        Ok(TxnResponse {
            header: ResponseHeader::default(),
            succeeded: ok,
            responses,
        })
    }

    /// Schedules compaction to `rev`: reads below it fail from now on; the superseded revisions
    /// are removed later by [`KvStore::compact_step`].
    pub fn compact(&mut self, rev: i64) -> KvResult<CompactionResponse> {
        if rev <= self.compacted {
            return Err(KvError::Compacted);
        }
        if rev > self.rev {
            return Err(KvError::FutureRev);
        }
        self.compacted = rev;
        self.txn
            .bucket(META)?
            .put(META_COMPACT, &rev.to_le_bytes())?;
        Ok(CompactionResponse {
            header: ResponseHeader { revision: self.rev },
        })
    }

    /// Ends the batch: stores the applied Raft index with the changes (S4) and publishes them.
    pub fn commit(mut self, applied_index: u64) -> KvResult<()> {
        self.txn
            .bucket(META)?
            .put(META_APPLIED, &applied_index.to_le_bytes())?;
        self.txn.commit()?;
        Ok(())
    }

    /// Ends the batch like [`KvWrite::commit`] but keeps it unpublished: readers see none of it
    /// until a later commit or [`KvStore::publish`]; the next [`KvStore::write`] continues from
    /// it. Nothing is written to the file, so several batches share one visible commit.
    pub fn park(mut self, applied_index: u64) -> KvResult<()> {
        self.txn
            .bucket(META)?
            .put(META_APPLIED, &applied_index.to_le_bytes())?;
        self.txn.park();
        Ok(())
    }
}
