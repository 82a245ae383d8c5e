//! Development probe: where one durable commit of 1,000 random puts spends its time (the
//! `durable_put1000` workload of `bench/benches/btree.rs`, without criterion).
//! Run: `cargo run --release -p keel-engine --example durable_probe` (`ROUNDS=n` commits, 30 by
//! default). Prints the CPU of the puts, the whole commit, and inside it the page writes and the
//! two fdatasyncs (data, then meta).
use keel_engine::btree::{Database, FileBackend, StorageBackend};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

#[derive(Default)]
struct Counters {
    write_ns: AtomicU64,
    data_sync_ns: AtomicU64,
    meta_sync_ns: AtomicU64,
    syncs: AtomicU64,
}

impl Counters {
    fn reset(&self) {
        for c in [
            &self.write_ns,
            &self.data_sync_ns,
            &self.meta_sync_ns,
            &self.syncs,
        ] {
            c.store(0, Relaxed);
        }
    }
}

/// A file backend that times its writes and syncs.
struct Timed(FileBackend, Arc<Counters>);

impl StorageBackend for Timed {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
        self.0.read(o, b)
    }
    fn write(&self, o: u64, d: &[u8]) -> std::io::Result<()> {
        let t = Instant::now();
        let r = self.0.write(o, d);
        self.1
            .write_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
        r
    }
    fn sync(&self) -> std::io::Result<()> {
        let t = Instant::now();
        let r = self.0.sync();
        let ns = t.elapsed().as_nanos() as u64;
        // A durable commit syncs twice: the data, then the meta.
        if self.1.syncs.fetch_add(1, Relaxed).is_multiple_of(2) {
            self.1.data_sync_ns.fetch_add(ns, Relaxed);
        } else {
            self.1.meta_sync_ns.fetch_add(ns, Relaxed);
        }
        r
    }
    fn set_len(&self, l: u64) -> std::io::Result<()> {
        self.0.set_len(l)
    }
    fn map_fd(&self) -> std::os::fd::RawFd {
        self.0.map_fd()
    }
}

fn main() {
    let c = Arc::new(Counters::default());
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("db"))
        .unwrap();
    let db = Database::open_backend(
        Box::new(Timed(FileBackend::new(f), c.clone())),
        Default::default(),
    )
    .unwrap();
    let mut n = 0u64;
    while n < 1_000_000 {
        let mut w = db.begin_write().unwrap();
        if n == 0 {
            w.create_bucket(b"kv").unwrap();
        }
        for _ in 0..5000 {
            w.bucket(b"kv")
                .unwrap()
                .put(&n.to_be_bytes(), &[7; 256])
                .unwrap();
            n += 1;
        }
        w.commit().unwrap();
    }
    db.sync().unwrap();
    println!("loaded: file {} MiB", db.size_bytes() >> 20);
    // COLD=1: reopen with the file evicted from the page cache, as after a reboot.
    let db = if std::env::var_os("COLD").is_some() {
        drop(db);
        let f = std::fs::File::open(dir.path().join("db")).unwrap();
        // SAFETY: advisory call on a descriptor we own.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("db"))
            .unwrap();
        Database::open_backend(
            Box::new(Timed(FileBackend::new(f), c.clone())),
            Default::default(),
        )
        .unwrap()
    } else {
        db
    };
    c.reset();
    let mut x = 0x2545f4914f6cdd1du64;
    let (mut tput, mut tcommit) = (0u128, 0u128);
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    for _ in 0..rounds {
        let t = Instant::now();
        let mut w = db.begin_write().unwrap();
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.bucket(b"kv")
                .unwrap()
                .put(&(x % 1_000_000).to_be_bytes(), &[9; 256])
                .unwrap();
        }
        let t2 = Instant::now();
        tput += (t2 - t).as_micros();
        w.commit_durable().unwrap();
        tcommit += t2.elapsed().as_micros();
    }
    let r = rounds.max(1) as u64;
    println!("after {rounds} commits: file {} MiB", db.size_bytes() >> 20);
    println!(
        "per durable commit of 1000 puts: puts {} us, commit {} us (page writes {} us, data fdatasync {} us, meta fdatasync {} us)",
        tput / r as u128,
        tcommit / r as u128,
        c.write_ns.load(Relaxed) / 1000 / r,
        c.data_sync_ns.load(Relaxed) / 1000 / r,
        c.meta_sync_ns.load(Relaxed) / 1000 / r,
    );
}
