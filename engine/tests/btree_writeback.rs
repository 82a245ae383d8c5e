//! Writeback pacing (`Options::writeback_bytes`): visible commits ask the backend to start
//! writing pages back once they have written that many bytes since the last request or durable
//! commit, never otherwise; a failed request fails the commit like a failed write (D2); the data
//! is unaffected.
use keel_engine::btree::{Database, Error, FileBackend, Options, StorageBackend};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Counts {
    written: AtomicU64,
    kicks: AtomicU64,
    /// Makes the next writeback requests fail.
    fail_kick: AtomicBool,
}

struct Counting {
    inner: FileBackend,
    counts: Arc<Counts>,
}

impl StorageBackend for Counting {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.counts
            .written
            .fetch_add(data.len() as u64, Ordering::SeqCst);
        self.inner.write(offset, data)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn start_writeback(&self) -> io::Result<()> {
        self.counts.kicks.fetch_add(1, Ordering::SeqCst);
        if self.counts.fail_kick.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected writeback error"));
        }
        self.inner.start_writeback()
    }
    fn map_fd(&self) -> RawFd {
        self.inner.map_fd()
    }
}

/// A database on a counting file backend with bucket `kv`, created by a durable commit.
fn open(dir: &std::path::Path, writeback_bytes: u64) -> (Database, Arc<Counts>) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("db"))
        .unwrap();
    let counts = Arc::new(Counts::default());
    let backend = Counting {
        inner: FileBackend::new(file),
        counts: counts.clone(),
    };
    let opts = Options {
        map_size: 256 << 20,
        grow_step: 1 << 20,
        writeback_bytes,
    };
    let db = Database::open_backend(Box::new(backend), opts).unwrap();
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    w.commit_durable().unwrap();
    (db, counts)
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

/// One visible commit of 20 new 200-byte values.
fn commit(db: &Database, batch: u32) {
    let mut w = db.begin_write().unwrap();
    for i in batch * 20..(batch + 1) * 20 {
        w.bucket(b"kv").unwrap().put(&key(i), &[b'v'; 200]).unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn visible_commits_request_writeback_every_writeback_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let every = 64 << 10;
    let (db, counts) = open(dir.path(), every);
    let base = counts.written.load(Ordering::SeqCst);
    assert_eq!(counts.kicks.load(Ordering::SeqCst), 0);
    // Checked after every commit: a commit kicks iff the bytes since the last kick (or durable
    // commit) reached `every` — the backend's own count of the bytes written, minus the meta
    // page writes of durable commits, which `base` absorbs.
    let mut since = 0u64;
    let mut kicks = 0u64;
    let mut last = base;
    for b in 0..400 {
        commit(&db, b);
        let now = counts.written.load(Ordering::SeqCst);
        since += now - last;
        last = now;
        if since >= every {
            kicks += 1;
            since = 0;
        }
        assert_eq!(
            counts.kicks.load(Ordering::SeqCst),
            kicks,
            "after commit {b}"
        );
    }
    let written = last - base;
    assert!(
        written > 20 * every,
        "the commits wrote {written} bytes: too few to test pacing"
    );
    assert!(
        kicks >= written / (2 * every),
        "{kicks} kicks for {written} bytes"
    );
    // A durable commit writes everything back itself: the count starts again after it.
    let w = db.begin_write().unwrap();
    w.commit_durable().unwrap();
    let before = counts.kicks.load(Ordering::SeqCst);
    commit(&db, 1000);
    assert_eq!(counts.kicks.load(Ordering::SeqCst), before);
    // The data is all there.
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    for i in 0..400 * 20 {
        assert_eq!(b.get(&key(i)).unwrap(), Some(&[b'v'; 200][..]));
    }
}

#[test]
fn writeback_bytes_zero_never_requests_writeback() {
    let dir = tempfile::tempdir().unwrap();
    let (db, counts) = open(dir.path(), 0);
    for b in 0..200 {
        commit(&db, b);
    }
    assert!(counts.written.load(Ordering::SeqCst) > 1 << 20);
    assert_eq!(counts.kicks.load(Ordering::SeqCst), 0);
}

#[test]
fn a_failed_writeback_request_fails_the_commit_and_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (db, counts) = open(dir.path(), 4096);
    counts.fail_kick.store(true, Ordering::SeqCst);
    let mut w = db.begin_write().unwrap();
    for i in 0..100 {
        w.bucket(b"kv").unwrap().put(&key(i), &[b'v'; 200]).unwrap();
    }
    assert!(matches!(w.commit(), Err(Error::Io(_))));
    assert_eq!(counts.kicks.load(Ordering::SeqCst), 1);
    // D2: the writer refuses further work until reopened; readers still see the last commit.
    assert!(db.begin_write().is_err());
    let r = db.begin_read();
    assert_eq!(
        r.bucket(b"kv").unwrap().unwrap().get(&key(0)).unwrap(),
        None
    );
}
