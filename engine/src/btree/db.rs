//! The database handle: opening a file (meta selection, freelist load), the shared state that
//! read transactions on any thread use (the map, the published snapshot), and the single-writer
//! state. Commit logic lives in `write.rs`, reads in `read.rs`, the integrity walk in `check.rs`.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use arc_swap::ArcSwap;

use crate::btree::backend::{FileBackend, StorageBackend};
use crate::btree::error::{Error, Result};
use crate::btree::freelist::Allocator;
use crate::btree::mmap::{Mmap, Verified};
use crate::btree::page::{
    corrupted, rd_u64, validate_run, Header, Kind, Meta, PageId, FIRST_DATA_PAGE,
    FREELIST_IDS_OFFSET, HEADER_SIZE, PAGE_SIZE, PAGE_SIZE_U64,
};
use crate::btree::read::ReadTxn;
use crate::btree::write::WriteTxn;

#[derive(Clone, Debug)]
pub struct Options {
    /// Address space reserved for the map; the file can never grow past it. Virtual memory only.
    pub map_size: u64,
    /// The file grows by at least this much at a time (and by half its size when larger).
    pub grow_step: u64,
    /// After visible commits have written this many bytes of pages, the writer asks the kernel
    /// to start writing them back (`StorageBackend::start_writeback`); 0: never (the next
    /// durable commit's fdatasync writes them all). Without it every durable commit flushed
    /// 100 ms of pages at once, and the WAL's writes queued behind that burst (tuning.md).
    pub writeback_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            map_size: 64 << 30,
            grow_step: 16 << 20,
            writeback_bytes: 1 << 20,
        }
    }
}

/// A published, immutable state of the database: what a read transaction sees.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub seq: u64,
    pub catalog: PageId,
    pub hwm: u64,
}

/// Writer-only state, moved into a write transaction for its lifetime.
pub(crate) struct WriterState {
    pub alloc: Allocator,
    /// Every snapshot published since the oldest one a reader may still hold (front = oldest).
    pub history: VecDeque<Arc<Snapshot>>,
    /// Sequence and txid of the last durable commit.
    pub durable_seq: u64,
    pub txid: u64,
    /// Pages holding the freelist of the last durable commit (freed by the next durable one).
    pub freelist_pages: Vec<PageId>,
    pub file_len: u64,
    /// A transaction parked without publishing (`WriteTxn::park`); the next one resumes it.
    pub parked: Option<crate::btree::write::Changes>,
}

impl WriterState {
    /// Pages freed at sequences up to this bound may be reused (S3): no live reader holds an
    /// older snapshot and the last durable commit no longer references them.
    pub fn reclaim(&mut self, shared: &Shared) {
        self.absorb_durable(shared);
        // A snapshot only this history holds is dead: nobody can obtain it any more (only the
        // newest one is published, and it always has a second owner, the published slot).
        while self.history.len() > 1 && Arc::strong_count(&self.history[0]) == 1 {
            self.history.pop_front();
        }
        let oldest_reader = self.history.front().map_or(u64::MAX, |s| s.seq);
        self.alloc.reclaim(oldest_reader, self.durable_seq);
    }

    /// Takes in a durable commit that completed since the writer last looked (its sync ran
    /// without the writer, `write.rs`): from now on pages it no longer references may be reused.
    pub fn absorb_durable(&mut self, shared: &Shared) {
        let mut d = shared.durable.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((txid, seq)) = d.done.take() {
            self.txid = txid;
            self.durable_seq = seq;
        }
    }
}

/// The durable commit whose syncs may run outside the writer (`write.rs`, [`Database::sync`]).
#[derive(Debug, Default)]
pub(crate) struct DurableSlot {
    /// A durable commit is between its data writes and its synced meta. Only one at a time:
    /// the next one waits (it would write the same meta slot).
    pub in_flight: bool,
    /// (txid, seq) of a durable commit that completed and the writer has not absorbed yet.
    pub done: Option<(u64, u64)>,
}

/// Cache lines at the start of a run that [`Shared::run`] prefetches.
const RUN_PREFETCH_LINES: usize = 6;

pub(crate) struct Shared {
    /// Taken only in `Drop` (see `retired`).
    pub backend: ManuallyDrop<Box<dyn StorageBackend>>,
    /// Taken only in `Drop` (see `retired`).
    pub map: ManuallyDrop<Mmap>,
    pub verified: Verified,
    pub published: ArcSwap<Snapshot>,
    pub writer: Mutex<Option<WriterState>>,
    /// Set after any failed write or sync (D2).
    pub failed: AtomicBool,
    pub options: Options,
    pub durable: Mutex<DurableSlot>,
    /// Signalled when `durable.in_flight` goes false.
    pub durable_idle: Condvar,
    /// Bytes of pages written since the last writeback request or durable commit.
    pub unwritten_back: AtomicU64,
    /// Set when a defrag or an install switched the database to another file. This file's name
    /// is gone, so dropping the last reference to it (its descriptor and its mapping) frees all
    /// its blocks — on a filesystem mounted with `discard`, a synchronous discard as large as the
    /// file — and the last reference may be a read finishing on an executor. A retired file's
    /// descriptor and mapping are therefore released on a thread of their own.
    pub retired: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: `backend` and `map` are taken here only, once, and `self` is not used after
        // `drop`; nothing else ever takes them.
        let (backend, map) = unsafe {
            (
                ManuallyDrop::take(&mut self.backend),
                ManuallyDrop::take(&mut self.map),
            )
        };
        let files = (map, backend);
        if self.retired.load(Ordering::SeqCst) {
            // If the thread cannot start, the closure (and the files) are dropped right here.
            let _ = std::thread::Builder::new()
                .name("keel-btree-release".into())
                .spawn(move || drop(files));
        }
    }
}

impl Shared {
    /// The validated run starting at `id`, which must lie below `hwm` and have been written by a
    /// commit no later than `seq` (D1). The second bound catches a tree whose pages were reused
    /// by later commits — e.g. after falling back to the older meta when the newer one is bad.
    #[inline]
    pub fn run(&self, id: PageId, hwm: u64, seq: u64) -> Result<(&[u8], Header)> {
        if !(FIRST_DATA_PAGE..hwm).contains(&id) {
            return Err(corrupted(id, format!("page id outside [2, {hwm})")));
        }
        // The header, prefix and element arrays of a node: a leaf of small entries keeps them in
        // its first few cache lines; start those misses together rather than one per probe.
        self.map.prefetch(id, RUN_PREFETCH_LINES);
        let h = Header::read(self.map.pages(id, 1)).map_err(|r| corrupted(id, r))?;
        let n = h.run_pages();
        if id.checked_add(n).is_none_or(|end| end > hwm) {
            return Err(corrupted(
                id,
                format!("run of {n} pages runs past page {hwm}"),
            ));
        }
        if h.seq > seq {
            return Err(corrupted(
                id,
                format!("written by commit {}, after the snapshot's {seq}", h.seq),
            ));
        }
        let run = self.map.pages(id, n);
        if !self.verified.get(id) {
            validate_run(run, id, hwm).map_err(|r| corrupted(id, r))?;
            self.verified.set(id);
        }
        Ok((run, h))
    }

    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Waits until no durable commit is in flight; returns the slot, locked.
    pub fn wait_durable_idle(&self) -> std::sync::MutexGuard<'_, DurableSlot> {
        let mut d = self.durable.lock().unwrap_or_else(|e| e.into_inner());
        while d.in_flight {
            d = self.durable_idle.wait(d).unwrap_or_else(|e| e.into_inner());
        }
        d
    }
}

/// A B+tree database in one file. `Send + Sync`: share it (e.g. in an `Arc`) between the writer
/// thread and reader threads.
pub struct Database {
    pub(crate) inner: ArcSwap<Shared>,
    pub(crate) write_lock: Mutex<()>,
    pub(crate) path: Option<PathBuf>,
}

/// Sizes and shape, for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub file_size: u64,
    /// Bytes in pages that are allocated (high-water mark minus free and pending pages).
    pub size_in_use: u64,
    pub high_water_mark: u64,
    pub pages_free: u64,
    /// Freed pages still visible to a reader or to the last durable commit.
    pub pages_pending: u64,
    /// Depth of the deepest bucket tree (1 = a single leaf; 0 = all empty).
    pub tree_depth: u32,
    pub buckets: u64,
    pub durable_txid: u64,
}

impl Database {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Database> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut db = Database::open_backend(Box::new(FileBackend::new(file)), options)?;
        db.path = Some(path.to_path_buf());
        Ok(db)
    }

    /// Opens a database over any backend (tests inject faults here).
    pub fn open_backend(backend: Box<dyn StorageBackend>, options: Options) -> Result<Database> {
        let shared = open_shared(backend, options)?;
        Ok(Database {
            inner: ArcSwap::from_pointee(shared),
            write_lock: Mutex::new(()),
            path: None,
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A snapshot of the latest visible commit. Cheap; `Send + Sync`.
    pub fn begin_read(&self) -> ReadTxn {
        let shared = self.inner.load_full();
        let snap = shared.published.load_full();
        ReadTxn::new(shared, snap)
    }

    /// The single write transaction; waits while another one is open.
    pub fn begin_write(&self) -> Result<WriteTxn<'_>> {
        let lock = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let shared = self.inner.load_full();
        if shared.failed.load(Ordering::SeqCst) {
            return Err(Error::PreviousIo);
        }
        let state = shared
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut state) = state else {
            return Err(Error::PreviousIo);
        };
        state.reclaim(&shared);
        Ok(WriteTxn::new(lock, shared, state))
    }

    /// Publishes a parked transaction's changes (a visible commit); false when none was parked.
    pub fn publish_parked(&self) -> Result<bool> {
        let w = self.begin_write()?;
        if !w.resumed() {
            w.abort();
            return Ok(false);
        }
        w.commit()?;
        Ok(true)
    }

    /// Whether a parked transaction waits to be resumed.
    pub fn has_parked(&self) -> bool {
        let shared = self.inner.load_full();
        let guard = shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_some_and(|w| w.parked.is_some())
    }

    /// Makes the latest visible commit durable (a parked transaction's changes included). The writer is held only while the commit's
    /// pages are written; the two syncs (data, then meta: S2) run after it is released, so a
    /// writer on another thread can begin and commit visibly meanwhile (the apply loop never
    /// waits for this method's fdatasyncs). Another durable commit waits for this one.
    pub fn sync(&self) -> Result<()> {
        let pending = self.begin_write()?.prepare_durable()?;
        pending.complete()
    }

    /// Bytes below the high-water mark of the latest snapshot (free pages included): what a
    /// size quota measures. Cheap.
    pub fn size_bytes(&self) -> u64 {
        self.inner.load().published.load().hwm * PAGE_SIZE_U64
    }

    /// Sizes of the latest snapshot. Free-page counts come from the writer and read 0 while a
    /// write transaction is open.
    pub fn stats(&self) -> Result<Stats> {
        let shared = self.inner.load_full();
        let snap = shared.published.load_full();
        let guard = shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (free, pending, txid) = match guard.as_ref() {
            Some(w) => (
                w.alloc.free.len() as u64,
                w.alloc.pending_count() as u64,
                w.txid,
            ),
            None => (0, 0, 0),
        };
        drop(guard);
        let rtx = ReadTxn::new(shared.clone(), snap.clone());
        let mut depth = 0;
        let mut buckets = 0;
        for b in rtx.bucket_names()? {
            buckets += 1;
            depth = depth.max(rtx.bucket(&b)?.map_or(Ok(0), |t| t.depth())?);
        }
        Ok(Stats {
            file_size: shared.backend.len()?,
            size_in_use: snap.hwm.saturating_sub(free + pending) * PAGE_SIZE_U64,
            high_water_mark: snap.hwm,
            pages_free: free,
            pages_pending: pending,
            tree_depth: depth,
            buckets,
            durable_txid: txid,
        })
    }
}

pub(crate) fn open_shared(backend: Box<dyn StorageBackend>, options: Options) -> Result<Shared> {
    let mut len = backend.len()?;
    if len == 0 {
        init_file(backend.as_ref())?;
        len = backend.len()?;
    }
    if len < 2 * PAGE_SIZE_U64 {
        return Err(corrupted(
            0,
            format!("file of {len} bytes is shorter than its two meta pages"),
        ));
    }
    let meta = pick_meta(backend.as_ref(), len)?;
    if meta.hwm * PAGE_SIZE_U64 > len {
        return Err(corrupted(
            0,
            format!("high-water mark {} beyond the file's {len} bytes", meta.hwm),
        ));
    }
    let map_size = options.map_size.max(len);
    let map = Mmap::map(backend.map_fd(), map_size)?;
    map.will_need(len);
    let verified = Verified::new(map_size / PAGE_SIZE_U64);
    let snap = Arc::new(Snapshot {
        seq: meta.seq,
        catalog: meta.catalog,
        hwm: meta.hwm,
    });
    let shared = Shared {
        backend: ManuallyDrop::new(backend),
        map: ManuallyDrop::new(map),
        verified,
        published: ArcSwap::new(snap.clone()),
        writer: Mutex::new(None),
        failed: AtomicBool::new(false),
        options,
        durable: Mutex::new(DurableSlot::default()),
        durable_idle: Condvar::new(),
        unwritten_back: AtomicU64::new(0),
        retired: AtomicBool::new(false),
    };
    let (free, freelist_pages) = load_freelist(&shared, &meta)?;
    let state = WriterState {
        alloc: Allocator::new(meta.hwm, free),
        history: VecDeque::from([snap]),
        durable_seq: meta.seq,
        txid: meta.txid,
        freelist_pages,
        file_len: len,
        parked: None,
    };
    *shared.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    Ok(shared)
}

/// A new file: two valid metas (txid 0 and 1) describing an empty database.
fn init_file(backend: &dyn StorageBackend) -> Result<()> {
    let mut buf = vec![0u8; 2 * PAGE_SIZE];
    for txid in 0..2u64 {
        let m = Meta {
            txid,
            seq: 0,
            catalog: 0,
            freelist: 0,
            free_count: 0,
            hwm: FIRST_DATA_PAGE,
        };
        buf[txid as usize * PAGE_SIZE..][..PAGE_SIZE].copy_from_slice(&m.encode());
    }
    backend.write(0, &buf)?;
    backend.sync()?;
    Ok(())
}

/// The newest meta whose checksum and fields verify; the other one if it does not (D1).
fn pick_meta(backend: &dyn StorageBackend, len: u64) -> Result<Meta> {
    let mut buf = vec![0u8; 2 * PAGE_SIZE];
    backend.read(0, &mut buf)?;
    let a = Meta::decode(&buf[..PAGE_SIZE], 0);
    let b = Meta::decode(&buf[PAGE_SIZE..], 1);
    // A meta whose high-water mark lies past the end of the file cannot be the one we wrote.
    let fits = |m: &Meta| m.hwm * PAGE_SIZE_U64 <= len;
    match (a, b) {
        (Ok(a), Ok(b)) => {
            let (newer, older) = if a.txid > b.txid { (a, b) } else { (b, a) };
            if fits(&newer) {
                Ok(newer)
            } else {
                Ok(older)
            }
        }
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
        (Err(ea), Err(eb)) => Err(corrupted(
            0,
            format!("both meta pages are invalid: slot 0: {ea}; slot 1: {eb}"),
        )),
    }
}

/// Reads the freelist chain of `meta`: the free page ids and the pages that hold the list.
fn load_freelist(shared: &Shared, meta: &Meta) -> Result<(Vec<PageId>, Vec<PageId>)> {
    let mut free = Vec::new();
    let mut pages = Vec::new();
    let mut next = meta.freelist;
    while next != 0 {
        if pages.len() as u64 > meta.hwm {
            return Err(corrupted(next, "freelist chain loops"));
        }
        let (run, h) = shared.run(next, meta.hwm, meta.seq)?;
        if h.kind != Kind::Freelist {
            return Err(corrupted(
                next,
                format!("expected a freelist page, found {:?}", h.kind),
            ));
        }
        for i in 0..h.count as usize {
            free.push(rd_u64(run, FREELIST_IDS_OFFSET + 8 * i));
        }
        pages.push(next);
        next = rd_u64(run, HEADER_SIZE);
    }
    if free.len() as u64 != meta.free_count {
        return Err(corrupted(
            meta.freelist,
            format!(
                "freelist holds {} ids, meta says {}",
                free.len(),
                meta.free_count
            ),
        ));
    }
    let mut sorted = free.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) || sorted.iter().any(|p| pages.contains(p)) {
        return Err(corrupted(
            meta.freelist,
            "freelist lists a page twice or lists its own pages",
        ));
    }
    Ok((sorted, pages))
}
