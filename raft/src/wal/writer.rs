//! [`Wal`]: the handle the log core holds. Owns the segment files, the group-commit queue and the
//! in-memory index; callers on the same executor share it (it is `Clone`, not `Send`).
//!
//! Group commit: `append` queues its records and waits. Whoever finds the queue non-empty and a
//! write slot free becomes a flusher: it takes everything queued (up to a byte bound), writes it
//! as one block-aligned group with one `write_at` (+ one `fdatasync` unless the files are
//! O_DSYNC), then wakes everyone. Records queued meanwhile go in the next group; nothing waits on
//! a timer.
//!
//! Two groups may be in flight at once ([`WalOptions::overlap_groups`]): the next group is
//! written while the previous one's write runs, instead of after it (with one slot the disk sat
//! idle while the executor ran everything the last completion woke; tuning.md). Groups are taken,
//! placed and numbered in queue order; each is published (indexed, its tickets durable) only
//! after every earlier group is, so callers see durability in queue order exactly as with one
//! slot. A group written while an earlier one is unpublished is framed as an overlap group;
//! recovery treats an invalid group followed by one valid overlap group as a torn tail
//! (`segment::scan_segment`). A rollover waits until every earlier group is published, so no
//! overlap ever spans two segments.
//!
//! Each group starts on a fresh block and is zero-padded to the next one, so no block holding an
//! acknowledged record is ever written again until its segment is released.

use super::error::WalError;
use super::index::{Loc, LogIndex};
use super::io::{IoHook, IoOp};
use super::reader;
use super::record::{self, HardState, Record, SnapshotMarker, WalEntry, BLOCK, GROUP_FRAME_LEN};
use super::segment::{self, SegmentHeader};
use super::{SyncMode, WalOptions};
use glommio::io::DmaFile;
use glommio::Task;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Encoded size of the checkpoint record that opens each segment.
const CHECKPOINT_RECORD_LEN: usize = record::RECORD_HEADER_LEN + record::CHECKPOINT_LEN;
/// Smallest segment accepted.
pub const MIN_SEGMENT_SIZE: u64 = 16 * BLOCK as u64;

/// Counters for tests, benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Commit groups written (= writes issued).
    pub groups: u64,
    /// fdatasync calls issued for groups.
    pub syncs: u64,
    /// Records written, checkpoints included.
    pub records: u64,
    /// Bytes written by groups, padding included.
    pub bytes: u64,
    /// Segments switched to.
    pub rollovers: u64,
}

struct Seg {
    path: PathBuf,
    file: Rc<DmaFile>,
    header: SegmentHeader,
    /// Highest entry index stored in this segment (0: none).
    max_index: u64,
}

type Prepared = Result<(DmaFile, SegmentHeader), WalError>;

enum Spare {
    Ready(DmaFile, SegmentHeader),
    Preparing(Task<Prepared>),
}

struct Submission {
    ticket: u64,
    records: Vec<Record>,
    bytes: usize,
}

struct State {
    dir: PathBuf,
    opts: WalOptions,
    segs: BTreeMap<u64, Seg>,
    current: u64,
    write_offset: u64,
    /// (seq, end) of the segment before `current`, for the checkpoint that opens `current`.
    prev: (u64, u64),
    spare: Option<Spare>,
    index: LogIndex,
    queue: VecDeque<Submission>,
    next_ticket: u64,
    durable_ticket: u64,
    /// Last index and snapshot index once everything queued is durable.
    sub_last: u64,
    sub_snapshot: u64,
    /// `close` or `ready_next_segment` holds the writer: no flush starts.
    exclusive: bool,
    /// Flushers running: groups being cut, written or waiting to be published (≤ 2).
    in_flight: usize,
    /// A flusher is taking, placing and numbering its group (only a rollover makes that wait),
    /// and whether another flusher waits for it to finish.
    issuing: bool,
    issue_waiting: bool,
    /// Groups numbered so far, and groups published so far (in number order).
    issued: u64,
    published: u64,
    /// Set by the first failed write or sync (D2).
    failed: Option<String>,
    waiters: Vec<Waker>,
    stats: WalStats,
    /// Released segments' files waiting to be recycled as the next spare (at most
    /// [`RECYCLE_POOL`]), at their [`segment::recycle_path`].
    pool: Vec<PathBuf>,
}

/// Released segments kept for recycling. Recycling makes a new segment cost one header write
/// instead of zero-filling `segment_size` bytes (as much disk writing as the log itself), and a
/// released segment's blocks are not freed (no discard). Two cover a rollover while the
/// compaction that releases the next one has not happened yet; the disk they hold is at most two
/// segments.
const RECYCLE_POOL: usize = 2;

impl State {
    fn check_failed(&self) -> Result<(), WalError> {
        match &self.failed {
            Some(cause) => Err(WalError::Failed {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn capacity(&self, segment_size: u64) -> usize {
        segment_size as usize - BLOCK - GROUP_FRAME_LEN - CHECKPOINT_RECORD_LEN
    }

    fn spawn_prepare(&mut self, seq: u64) {
        let dir = self.dir.clone();
        let size = self.opts.segment_size;
        let dsync = self.opts.sync == SyncMode::Dsync;
        let hook = self.opts.io_hook.clone();
        let recycled = self.pool.pop();
        let task = glommio::spawn_local(async move {
            segment::prepare_segment(&dir, seq, size, dsync, &hook, recycled).await
        });
        self.spare = Some(Spare::Preparing(task));
    }
}

/// The Raft write-ahead log. See the module documentation of [`crate::wal`].
#[derive(Clone)]
pub struct Wal {
    sh: Rc<RefCell<State>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.sh.borrow();
        f.debug_struct("Wal")
            .field("dir", &st.dir)
            .field("current", &st.current)
            .field("first", &st.index.first())
            .field("last", &st.index.last())
            .finish()
    }
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`: scans every segment, truncates a torn tail,
    /// refuses corruption with [`WalError::Corrupt`] naming the segment and offset (D1), and makes
    /// sure the next segment is being prepared. Must run inside a glommio executor.
    pub async fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal, WalError> {
        let dir = dir.as_ref().to_path_buf();
        if opts.segment_size & (BLOCK as u64 - 1) != 0 || opts.segment_size < MIN_SEGMENT_SIZE {
            let why = format!(
                "segment size {} must be a multiple of {BLOCK} and ≥ {MIN_SEGMENT_SIZE}",
                opts.segment_size
            );
            return Err(WalError::InvalidArgument(why));
        }
        std::fs::create_dir_all(&dir).map_err(|e| WalError::io("create directory", &dir, e))?;
        segment::list_segments(&dir, true)?;
        segment::prime_iopoll_probe(&dir).await?;
        let scans = reader::scan_dir(&dir).await?;
        let rep = reader::replay(&scans, opts.cache_bytes)?;
        // An overlap group dropped with the torn tail would decode again once later groups
        // reach its offset: its frame goes before anything is written there.
        for s in &scans {
            if let Some(at) = s.scan.overlap_tail {
                segment::zero_block(&s.path, s.scan.header.seq, at, &opts.io_hook).await?;
            }
        }
        let dsync = opts.sync == SyncMode::Dsync;
        let mut segs = BTreeMap::new();
        let mut spare = None;
        let (current, write_offset) = if scans.is_empty() {
            let (file, header) =
                segment::prepare_segment(&dir, 1, opts.segment_size, dsync, &opts.io_hook, None)
                    .await?;
            segs.insert(
                1,
                Seg {
                    path: segment::segment_path(&dir, 1),
                    file: Rc::new(file),
                    header,
                    max_index: 0,
                },
            );
            (1, BLOCK as u64)
        } else {
            for (k, s) in scans.iter().enumerate() {
                let file = segment::open_segment(&s.path, dsync).await?;
                if k <= rep.current {
                    let seg = Seg {
                        path: s.path.clone(),
                        file: Rc::new(file),
                        header: s.scan.header,
                        max_index: rep.max_index[k],
                    };
                    segs.insert(s.scan.header.seq, seg);
                } else if k == rep.current + 1 {
                    spare = Some(Spare::Ready(file, s.scan.header));
                } else {
                    // Only a crash mid-rollover leaves a second prepared segment; it holds nothing.
                    file.remove()
                        .await
                        .map_err(|e| WalError::io("remove", &s.path, e.into()))?;
                    file.close()
                        .await
                        .map_err(|e| WalError::io("close", &s.path, e.into()))?;
                }
            }
            let cur = &scans[rep.current];
            (cur.scan.header.seq, cur.scan.valid_end)
        };
        let pool = segment::recycled_files(&dir, opts.segment_size, RECYCLE_POOL)?;
        let index = rep.index;
        let (sub_last, sub_snapshot) = (index.last(), index.snapshot().index);
        let mut st = State {
            dir,
            opts,
            segs,
            current,
            write_offset,
            prev: (0, 0),
            spare,
            index,
            queue: VecDeque::new(),
            next_ticket: 1,
            durable_ticket: 0,
            sub_last,
            sub_snapshot,
            exclusive: false,
            in_flight: 0,
            issuing: false,
            issue_waiting: false,
            issued: 0,
            published: 0,
            failed: None,
            waiters: Vec::new(),
            stats: WalStats::default(),
            pool,
        };
        if st.spare.is_none() {
            st.spawn_prepare(current + 1);
        }
        Ok(Wal {
            sh: Rc::new(RefCell::new(st)),
        })
    }

    /// Appends `entries` (contiguous; the first at most `last_index() + 1`, truncating any
    /// conflicting suffix) and then `hard_state`, in one group; resolves when they are durable, to
    /// the log's last index.
    pub async fn append(
        &self,
        entries: Vec<WalEntry>,
        hard_state: Option<HardState>,
    ) -> Result<u64, WalError> {
        self.write(append_records(entries, hard_state)).await
    }

    /// Queues `entries` and `hard_state` as [`Wal::append`] does, without waiting: returns
    /// the append's ticket for [`Wal::durable`]. Queued appends are written in the order they
    /// were queued (group commit may put several in one group); nothing is written until some
    /// caller waits.
    pub fn queue_append(
        &self,
        entries: Vec<WalEntry>,
        hard_state: Option<HardState>,
    ) -> Result<u64, WalError> {
        Ok(self.submit(append_records(entries, hard_state))?.0)
    }

    /// Resolves once the append with `ticket`, and so every one queued before it, is durable
    /// (writing queued groups while no other caller is).
    pub async fn durable(&self, ticket: u64) -> Result<(), WalError> {
        self.wait(ticket).await
    }

    /// Makes `hs` durable.
    pub async fn save_hard_state(&self, hs: HardState) -> Result<u64, WalError> {
        self.write(vec![Record::HardState(hs)]).await
    }

    /// Records that a snapshot covers the log up to `m.index`; a snapshot past the last entry
    /// empties the log, which continues at `m.index + 1`.
    pub async fn save_snapshot(&self, m: SnapshotMarker) -> Result<u64, WalError> {
        self.write(vec![Record::Snapshot(m)]).await
    }

    /// Durably drops the entries with index ≥ `from` (a Raft log conflict).
    pub async fn truncate_suffix(&self, from: u64) -> Result<u64, WalError> {
        self.write(vec![Record::Truncate(from)]).await
    }

    async fn write(&self, recs: Vec<Record>) -> Result<u64, WalError> {
        let (ticket, last) = self.submit(recs)?;
        self.wait(ticket).await?;
        Ok(last)
    }

    /// Validates at the gateway and queues; returns the ticket and the last index after it.
    fn submit(&self, records: Vec<Record>) -> Result<(u64, u64), WalError> {
        let mut st = self.sh.borrow_mut();
        st.check_failed()?;
        let (mut last, mut snap) = (st.sub_last, st.sub_snapshot);
        let mut bytes = 0usize;
        let capacity = st.capacity(st.opts.segment_size);
        for r in &records {
            let mut scratch = 0;
            match r {
                Record::Entry(e) => {
                    if e.index <= snap || e.index > last + 1 {
                        let why = format!("entry {} outside ({snap}, {}]", e.index, last + 1);
                        return Err(WalError::InvalidArgument(why));
                    }
                    last = e.index;
                    scratch = record::entry_record_len(e);
                    let max = capacity.min(record::MAX_PAYLOAD_LEN);
                    if scratch > max {
                        return Err(WalError::TooLarge { len: scratch, max });
                    }
                }
                Record::Truncate(i) => {
                    if *i <= snap || *i > last + 1 {
                        return Err(WalError::InvalidArgument(format!(
                            "truncate at {i} outside ({snap}, {}]",
                            last + 1
                        )));
                    }
                    last = i - 1;
                }
                Record::Snapshot(m) => {
                    if m.index < snap {
                        return Err(WalError::InvalidArgument(format!(
                            "snapshot {} older than {snap}",
                            m.index
                        )));
                    }
                    snap = m.index;
                    last = last.max(m.index);
                }
                Record::HardState(_) => {}
                Record::Checkpoint(_) => {
                    return Err(WalError::InvalidArgument("checkpoints are internal".into()))
                }
            }
            bytes += if scratch > 0 { scratch } else { encoded_len(r) };
        }
        if bytes > capacity {
            return Err(WalError::TooLarge {
                len: bytes,
                max: capacity,
            });
        }
        st.sub_last = last;
        st.sub_snapshot = snap;
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back(Submission {
            ticket,
            records,
            bytes,
        });
        Ok((ticket, last))
    }

    /// Waits until `ticket` is durable, flushing groups whenever records are queued and a write
    /// slot is free.
    async fn wait(&self, ticket: u64) -> Result<(), WalError> {
        loop {
            let lead = std::future::poll_fn(|cx| {
                let mut st = self.sh.borrow_mut();
                if st.durable_ticket >= ticket {
                    return Poll::Ready(Ok(false));
                }
                if let Err(e) = st.check_failed() {
                    return Poll::Ready(Err(e));
                }
                let slots = if st.opts.overlap_groups { 2 } else { 1 };
                if !st.exclusive && st.in_flight < slots && !st.queue.is_empty() {
                    st.in_flight += 1;
                    return Poll::Ready(Ok(true));
                }
                st.waiters.push(cx.waker().clone());
                Poll::Pending
            })
            .await?;
            if !lead {
                return Ok(());
            }
            let mut guard = FlushGuard {
                sh: &self.sh,
                hold: Hold::Flush,
                done: false,
            };
            let r = flush(&self.sh).await;
            guard.finish(r.as_ref().err());
            r?;
        }
    }

    /// Waits for the group in flight, if any, then shuts this handle (and its clones) down: later
    /// calls fail with [`WalError::Failed`]. Dropping a `Wal` while a group write is in flight
    /// leaves that write to land later, possibly after a new `Wal` on the same directory has
    /// written there; close first when reopening in the same process.
    pub async fn close(&self) {
        std::future::poll_fn(|cx| {
            let mut st = self.sh.borrow_mut();
            if st.exclusive || st.in_flight > 0 {
                st.waiters.push(cx.waker().clone());
                return Poll::Pending;
            }
            st.exclusive = true;
            st.failed.get_or_insert_with(|| "closed".into());
            // Dropping the task cancels the preparation; it never links a half-made segment.
            st.spare = None;
            Poll::Ready(())
        })
        .await;
        let waiters = std::mem::take(&mut self.sh.borrow_mut().waiters);
        waiters.into_iter().for_each(Waker::wake);
    }

    /// Waits until the next segment is fully prepared (allocated, zero-filled, synced), so the
    /// next rollover costs nothing. Optional: `open` starts the preparation in the background;
    /// call this after `open` to keep that I/O out of the first appends' way (benchmarks do).
    pub async fn ready_next_segment(&self) -> Result<(), WalError> {
        // Take the writer's turn, so no rollover can race for the spare meanwhile.
        std::future::poll_fn(|cx| {
            let mut st = self.sh.borrow_mut();
            if let Err(e) = st.check_failed() {
                return Poll::Ready(Err(e));
            }
            if !st.exclusive && st.in_flight == 0 {
                st.exclusive = true;
                return Poll::Ready(Ok(()));
            }
            st.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        let mut guard = FlushGuard {
            sh: &self.sh,
            hold: Hold::Exclusive,
            done: false,
        };
        let spare = self.sh.borrow_mut().spare.take();
        let r = match spare {
            Some(Spare::Preparing(task)) => task.await.map(|(f, h)| Some(Spare::Ready(f, h))),
            other => Ok(other),
        };
        match r {
            Ok(s) => {
                self.sh.borrow_mut().spare = s;
                guard.finish(None);
                Ok(())
            }
            Err(e) => {
                guard.finish(Some(&e));
                Err(e)
            }
        }
    }

    /// Releases whole segments whose entries all have index ≤ `index` (log compaction). `index`
    /// must not pass the durable snapshot marker. Never releases the segment being written.
    /// Returns how many segments were removed.
    pub async fn compact(&self, index: u64) -> Result<usize, WalError> {
        let (victims, dir, hook) = {
            let mut st = self.sh.borrow_mut();
            st.check_failed()?;
            if index > st.index.snapshot().index {
                let why = format!(
                    "compact to {index} past the snapshot at {}",
                    st.index.snapshot().index
                );
                return Err(WalError::InvalidArgument(why));
            }
            let mut victims = Vec::new();
            let seqs: Vec<u64> = st.segs.keys().copied().collect();
            for seq in seqs {
                if seq == st.current || st.segs[&seq].max_index > index {
                    break;
                }
                victims.push(st.segs.remove(&seq).expect("listed"));
            }
            let keep = *st.segs.keys().next().expect("current is kept");
            st.index.release_before(keep);
            (victims, st.dir.clone(), st.opts.io_hook.clone())
        };
        let n = victims.len();
        // Ascending order, stopping at the first failure, so what survives is always a suffix —
        // after a crash too: each name's removal is made durable before the next one is touched.
        // One sync at the end would not do: a filesystem without a journal (ext2, ext4 with no
        // journal) may persist a later unlink and lose an earlier one, leaving a gap in the
        // segment chain, which open refuses as corrupt. Compaction releases one segment at a
        // time in the common case (`--snapshot-count` entries fill less than a segment), so this
        // costs no more syncs than one at the end did.
        for v in victims {
            let seq = v.header.seq;
            let room = {
                let st = self.sh.borrow();
                st.pool.len() < RECYCLE_POOL && v.header.segment_size == st.opts.segment_size
            };
            let v = if room { pool_segment(v).await? } else { Err(v) };
            match v {
                Ok(pooled) => self.sh.borrow_mut().pool.push(pooled),
                Err(v) => remove_segment(v, &hook).await?,
            }
            hook.check(IoOp::SyncDir { seq })?;
            segment::sync_dir(&dir).await?;
        }
        Ok(n)
    }

    /// Entries `[lo, hi)` from the cache or the segment files (checksums verified, D1).
    pub async fn entries(&self, lo: u64, hi: u64) -> Result<Vec<WalEntry>, WalError> {
        enum Slot {
            Have(WalEntry),
            Read(Loc, Rc<DmaFile>, u32, PathBuf),
        }
        let plan: Vec<Slot> = {
            let st = self.sh.borrow();
            let (first, last) = (st.index.first(), st.index.last());
            if lo > hi || lo < first || hi > last + 1 {
                return Err(WalError::Unavailable {
                    lo,
                    hi,
                    first,
                    last,
                });
            }
            (lo..hi)
                .map(|i| match st.index.cached(i) {
                    Some(e) => Slot::Have(e.clone()),
                    None => {
                        let loc = st.index.loc(i).expect("in range");
                        let seg = &st.segs[&loc.seq];
                        Slot::Read(loc, seg.file.clone(), seg.header.seed(), seg.path.clone())
                    }
                })
                .collect()
        };
        let mut out = Vec::with_capacity(plan.len());
        let mut k = 0;
        while k < plan.len() {
            match &plan[k] {
                Slot::Have(e) => {
                    out.push(e.clone());
                    k += 1;
                }
                Slot::Read(l0, file, seed, path) => {
                    // One read for a run of uncached entries in the same segment (≤ 1 MiB).
                    let mut end = k + 1;
                    while let Some(Slot::Read(l, ..)) = plan.get(end) {
                        if l.seq != l0.seq || l.offset + l.len as u64 - l0.offset > 1 << 20 {
                            break;
                        }
                        end += 1;
                    }
                    let Slot::Read(ll, ..) = &plan[end - 1] else {
                        unreachable!("run holds reads")
                    };
                    let span = (ll.offset + ll.len as u64 - l0.offset) as usize;
                    let buf = file
                        .read_at(l0.offset, span)
                        .await
                        .map_err(|e| WalError::io("read", path, e.into()))?;
                    for (j, slot) in plan[k..end].iter().enumerate() {
                        let Slot::Read(l, ..) = slot else {
                            unreachable!("run holds reads")
                        };
                        let want = lo + (k + j) as u64;
                        let at = (l.offset - l0.offset) as usize;
                        let corrupt = |reason: String| WalError::Corrupt {
                            segment: path.clone(),
                            offset: l.offset,
                            reason,
                        };
                        let bytes = buf
                            .get(at..at + l.len as usize)
                            .ok_or_else(|| corrupt("short read".into()))?;
                        match record::decode(bytes, *seed) {
                            Ok((Record::Entry(e), _)) if e.index == want => out.push(e),
                            Ok(_) => return Err(corrupt(format!("expected entry {want}"))),
                            Err(e) => return Err(corrupt(e.to_string())),
                        }
                    }
                    k = end;
                }
            }
        }
        Ok(out)
    }

    /// First index present (the next one when the log is empty).
    pub fn first_index(&self) -> u64 {
        self.sh.borrow().index.first()
    }

    /// Last durable index.
    pub fn last_index(&self) -> u64 {
        self.sh.borrow().index.last()
    }

    /// Term of durable entry `i` (or of the snapshot at `i`).
    pub fn term(&self, i: u64) -> Option<u64> {
        self.sh.borrow().index.term(i)
    }

    /// Durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.sh.borrow().index.hard_state()
    }

    /// Durable snapshot marker.
    pub fn snapshot(&self) -> SnapshotMarker {
        self.sh.borrow().index.snapshot()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.sh.borrow().stats
    }

    /// Segment seqs in use (the prepared spare excluded).
    pub fn segments(&self) -> Vec<u64> {
        self.sh.borrow().segs.keys().copied().collect()
    }

    /// Whether an earlier write or sync failed (D2), or the handle was closed. Reads of entries
    /// already durable keep working; every write fails with [`WalError::Failed`].
    pub fn is_failed(&self) -> bool {
        self.sh.borrow().failed.is_some()
    }
}

/// The records of one append: its entries, then its hard state.
fn append_records(entries: Vec<WalEntry>, hard_state: Option<HardState>) -> Vec<Record> {
    let mut recs: Vec<Record> = entries.into_iter().map(Record::Entry).collect();
    recs.extend(hard_state.map(Record::HardState));
    recs
}

fn encoded_len(r: &Record) -> usize {
    let mut v = Vec::new();
    record::encode(&mut v, 0, r);
    v.len()
}

/// What a [`FlushGuard`] releases.
enum Hold {
    /// A write slot (`in_flight`).
    Flush,
    /// The whole writer (`exclusive`).
    Exclusive,
}

/// Releases its hold and wakes the waiters however the flush ends; a flush abandoned half-way
/// (its future dropped) leaves the file state unknown, so it fails the WAL (D2).
struct FlushGuard<'a> {
    sh: &'a Rc<RefCell<State>>,
    hold: Hold,
    done: bool,
}

impl FlushGuard<'_> {
    fn finish(&mut self, err: Option<&WalError>) {
        self.done = true;
        self.end(err.map(|e| e.to_string()));
    }

    fn end(&self, failure: Option<String>) {
        let waiters = {
            let mut st = self.sh.borrow_mut();
            match self.hold {
                Hold::Flush => st.in_flight -= 1,
                Hold::Exclusive => st.exclusive = false,
            }
            if let Some(f) = failure {
                st.failed.get_or_insert(f);
            }
            std::mem::take(&mut st.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.end(Some("a flush was cancelled mid-write".into()));
        }
    }
}

/// Resolves once `ready(state)` holds, or with the WAL's failure.
async fn until(sh: &Rc<RefCell<State>>, ready: impl Fn(&State) -> bool) -> Result<(), WalError> {
    std::future::poll_fn(|cx| {
        let mut st = sh.borrow_mut();
        if let Err(e) = st.check_failed() {
            return Poll::Ready(Err(e));
        }
        if ready(&st) {
            return Poll::Ready(Ok(()));
        }
        st.waiters.push(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Clears `issuing` however the issue phase ends, and wakes the waiters if a flusher waits for
/// it (only possible when the phase awaited a rollover).
struct IssueGuard<'a>(&'a Rc<RefCell<State>>);

impl Drop for IssueGuard<'_> {
    fn drop(&mut self) {
        let waiters = {
            let mut st = self.0.borrow_mut();
            st.issuing = false;
            if !std::mem::take(&mut st.issue_waiting) {
                return;
            }
            std::mem::take(&mut st.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// A group cut from the queue, numbered, placed and encoded, ready to be written.
struct Issued {
    subs: Vec<Submission>,
    /// Its number: it is published after group `number - 1`.
    number: u64,
    file: Rc<DmaFile>,
    path: PathBuf,
    seq: u64,
    offset: u64,
    buf: glommio::io::DmaBuffer,
    /// (offset in the group, encoded length) of each record, in order.
    placed: Vec<(usize, usize)>,
}

/// Writes one group: everything queued, up to the group bound.
async fn flush(sh: &Rc<RefCell<State>>) -> Result<(), WalError> {
    if sh.borrow().opts.coalesce {
        glommio::executor().yield_now().await;
    }
    // Groups are cut, placed and numbered one flusher at a time, so queue order, file order and
    // publication order agree; only a rollover awaits inside.
    std::future::poll_fn(|cx| {
        let mut st = sh.borrow_mut();
        st.check_failed()?;
        if !st.issuing {
            st.issuing = true;
            return Poll::Ready(Ok(()));
        }
        st.issue_waiting = true;
        st.waiters.push(cx.waker().clone());
        Poll::Pending
    })
    .await?;
    let issued = {
        let _issuing = IssueGuard(sh);
        issue(sh).await?
    };
    let Some(g) = issued else {
        return Ok(());
    };
    let len = g.buf.len();
    let (hook, sync) = {
        let st = sh.borrow();
        (st.opts.io_hook.clone(), st.opts.sync)
    };
    let (seq, offset, path) = (g.seq, g.offset, &g.path);
    hook.check(IoOp::Write { seq, offset, len })?;
    let n = g
        .file
        .write_at(g.buf, offset)
        .await
        .map_err(|e| WalError::io("write", path, e.into()))?;
    if n != len {
        return Err(WalError::short_write(path, offset, n, len));
    }
    if sync == SyncMode::Fdatasync {
        hook.check(IoOp::Sync { seq })?;
        g.file
            .fdatasync()
            .await
            .map_err(|e| WalError::io("fdatasync", path, e.into()))?;
    }
    // Durable. Published in group order: an earlier group still in flight goes first.
    until(sh, |st| st.published + 1 == g.number).await?;
    let mut st = sh.borrow_mut();
    st.published = g.number;
    st.stats.groups += 1;
    st.stats.bytes += len as u64;
    if sync == SyncMode::Fdatasync {
        st.stats.syncs += 1;
    }
    let mut places = g.placed.into_iter();
    let mut max_index = 0;
    let mut last_ticket = 0;
    for s in g.subs {
        last_ticket = s.ticket;
        for r in s.records {
            let (at, rlen) = places.next().expect("one place per record");
            match r {
                Record::Entry(e) => {
                    max_index = max_index.max(e.index);
                    let loc = Loc {
                        seq,
                        offset: offset + at as u64,
                        len: rlen as u32,
                        term: e.term,
                    };
                    st.index
                        .push_entry(e, loc)
                        .expect("validated at submission");
                }
                Record::HardState(hs) => st.index.set_hard_state(hs),
                Record::Snapshot(m) => st.index.set_snapshot(m),
                Record::Truncate(i) => st.index.truncate(i),
                Record::Checkpoint(_) => unreachable!("refused at submission"),
            }
        }
    }
    let seg = st.segs.get_mut(&seq).expect("current segment");
    seg.max_index = seg.max_index.max(max_index);
    st.durable_ticket = last_ticket;
    Ok(())
}

/// Cuts the next group from the queue (`None`: another flusher took everything), rolls over to
/// the next segment first when it does not fit (after every earlier group is published), and
/// numbers, places and encodes it. Runs with `issuing` held.
async fn issue(sh: &Rc<RefCell<State>>) -> Result<Option<Issued>, WalError> {
    let (subs, body_len) = {
        let mut st = sh.borrow_mut();
        let limit = st
            .opts
            .max_group_bytes
            .min(st.capacity(st.opts.segment_size));
        let mut subs = Vec::new();
        let mut total = 0;
        while let Some(s) = st.queue.front() {
            if !subs.is_empty() && total + s.bytes > limit {
                break;
            }
            total += s.bytes;
            subs.push(st.queue.pop_front().expect("front exists"));
        }
        (subs, total)
    };
    if subs.is_empty() {
        return Ok(None);
    }
    let roll = {
        let st = sh.borrow();
        let fresh = st.write_offset == BLOCK as u64;
        let need =
            record::padded_group_len(body_len + if fresh { CHECKPOINT_RECORD_LEN } else { 0 });
        st.write_offset + need as u64 > st.segs[&st.current].header.segment_size
    };
    if roll {
        // The checkpoint opening the next segment names where this one's data ends: every
        // group placed here must be durable first.
        until(sh, |st| st.published == st.issued).await?;
        rollover(sh).await?;
    }
    // Encode with the identity of the segment the group lands in.
    let mut st = sh.borrow_mut();
    let seg = &st.segs[&st.current];
    let seed = seg.header.seed();
    let mut body = Vec::with_capacity(body_len + CHECKPOINT_RECORD_LEN);
    let mut count = 0u32;
    if st.write_offset == BLOCK as u64 {
        let cp = record::Checkpoint {
            prev_seq: st.prev.0,
            prev_end: st.prev.1,
            hard_state: st.index.hard_state(),
            snapshot: st.index.snapshot(),
        };
        record::encode(&mut body, seed, &Record::Checkpoint(cp));
        count += 1;
    }
    let mut placed = Vec::new();
    for s in &subs {
        for r in &s.records {
            let at = body.len();
            record::encode(&mut body, seed, r);
            placed.push((GROUP_FRAME_LEN + at, body.len() - at));
            count += 1;
        }
    }
    let overlap = st.published < st.issued;
    let padded = record::padded_group_len(body.len());
    let mut buf = seg.file.alloc_dma_buffer(padded);
    let b = buf.as_bytes_mut();
    record::encode_group_frame(&mut b[..GROUP_FRAME_LEN], seed, &body, count, overlap);
    b[GROUP_FRAME_LEN..GROUP_FRAME_LEN + body.len()].copy_from_slice(&body);
    b[GROUP_FRAME_LEN + body.len()..].fill(0);
    let g = Issued {
        subs,
        number: st.issued + 1,
        file: seg.file.clone(),
        path: seg.path.clone(),
        seq: st.current,
        offset: st.write_offset,
        buf,
        placed,
    };
    st.issued += 1;
    st.write_offset += padded as u64;
    st.stats.records += count as u64;
    Ok(Some(g))
}

/// Closes `file` when the WAL holds its only reference; gives it back when a read still holds it.
async fn close_if_sole(file: Rc<DmaFile>, path: &Path) -> Result<Option<Rc<DmaFile>>, WalError> {
    match Rc::try_unwrap(file) {
        Ok(f) => {
            f.close()
                .await
                .map_err(|e| WalError::io("close", path, e.into()))?;
            Ok(None)
        }
        Err(shared) => Ok(Some(shared)),
    }
}

/// Closes a released segment and moves its file to its recycle name, returned; gives the
/// segment back when a read still holds it open (it is then removed instead).
async fn pool_segment(mut v: Seg) -> Result<Result<PathBuf, Seg>, WalError> {
    if let Some(shared) = close_if_sole(v.file, &v.path).await? {
        v.file = shared;
        return Ok(Err(v));
    }
    let dir = v.path.parent().expect("a segment is in its directory");
    let to = segment::recycle_path(dir, v.header.seq);
    // A metadata syscall of a few µs; the compaction syncs the directory before the next name.
    std::fs::rename(&v.path, &to).map_err(|e| WalError::io("rename", &v.path, e))?;
    Ok(Ok(to))
}

/// Removes a compacted segment without making the executor free its blocks.
///
/// Whoever drops the last reference to an unlinked file frees its blocks there and then, and on
/// a filesystem mounted with `discard` that includes a synchronous discard of the whole segment:
/// measured on this project's VM, 14–51 ms during which the executor ran nothing else (every
/// role on it stalled) when glommio's io_uring close of the unlinked segment did it. So our
/// descriptor is closed first, while the name still holds the inode (nothing is freed), and the
/// unlink, which then drops the last reference, runs on the blocking pool. If a read still holds
/// the file (an `entries` read in flight), its last close frees the blocks wherever it happens.
async fn remove_segment(v: Seg, hook: &IoHook) -> Result<(), WalError> {
    let Seg {
        path, file, header, ..
    } = v;
    drop(close_if_sole(file, &path).await?);
    let (hook, seq) = (hook.clone(), header.seq);
    glommio::executor()
        .spawn_blocking(move || {
            hook.check(IoOp::Remove { seq })?;
            std::fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))
        })
        .await
}

/// Switches to the prepared next segment and starts preparing the one after.
async fn rollover(sh: &Rc<RefCell<State>>) -> Result<(), WalError> {
    let (spare, next) = {
        let mut st = sh.borrow_mut();
        (st.spare.take(), st.current + 1)
    };
    let (file, header) = match spare {
        Some(Spare::Ready(f, h)) => (f, h),
        Some(Spare::Preparing(task)) => task.await?,
        None => {
            let (dir, size, dsync, hook, recycled) = {
                let mut st = sh.borrow_mut();
                (
                    st.dir.clone(),
                    st.opts.segment_size,
                    st.opts.sync == SyncMode::Dsync,
                    st.opts.io_hook.clone(),
                    st.pool.pop(),
                )
            };
            segment::prepare_segment(&dir, next, size, dsync, &hook, recycled).await?
        }
    };
    assert_eq!(header.seq, next, "the spare is the next segment");
    let mut st = sh.borrow_mut();
    st.prev = (st.current, st.write_offset);
    let path = segment::segment_path(&st.dir, next);
    st.segs.insert(
        next,
        Seg {
            path,
            file: Rc::new(file),
            header,
            max_index: 0,
        },
    );
    st.current = next;
    st.write_offset = BLOCK as u64;
    st.stats.rollovers += 1;
    st.spawn_prepare(next + 1);
    Ok(())
}
