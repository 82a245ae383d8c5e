//! Counts bytes written per apply batch (a development probe; prints a histogram of pages).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use keel_engine::btree::{FileBackend, StorageBackend};

struct Counting(FileBackend, Arc<AtomicU64>, Arc<AtomicU64>);
impl StorageBackend for Counting {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
        self.0.read(o, b)
    }
    fn write(&self, o: u64, d: &[u8]) -> std::io::Result<()> {
        self.1.fetch_add(d.len() as u64, Ordering::Relaxed);
        self.2.fetch_add(1, Ordering::Relaxed);
        self.0.write(o, d)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.0.sync()
    }
    fn set_len(&self, l: u64) -> std::io::Result<()> {
        self.0.set_len(l)
    }
    fn map_fd(&self) -> std::os::fd::RawFd {
        self.0.map_fd()
    }
}

fn main() {
    let bytes = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open("/tmp/probe/db")
        .unwrap();
    let db = keel_engine::btree::Database::open_backend(
        Box::new(Counting(FileBackend::new(f), bytes.clone(), calls.clone())),
        Default::default(),
    )
    .unwrap();
    let mut w = db.begin_write().unwrap();
    for b in [&b"key"[..], b"index", b"current", b"meta"] {
        w.create_bucket(b).unwrap();
    }
    for i in 0..100_000u64 {
        let k = format!("key{i:08}");
        w.bucket(b"current")
            .unwrap()
            .put(k.as_bytes(), &[7; 330])
            .unwrap();
        w.bucket(b"index")
            .unwrap()
            .put(format!("{k}\0\x01{i:016}").as_bytes(), &[0])
            .unwrap();
        w.bucket(b"key")
            .unwrap()
            .put(&i.to_be_bytes(), &[7; 330])
            .unwrap();
    }
    w.commit().unwrap();
    let mut x = 0x2545f4914f6cdd1du64;
    let t = std::time::Instant::now();
    bytes.store(0, Ordering::Relaxed);
    calls.store(0, Ordering::Relaxed);
    for c in 0..200u64 {
        let mut w = db.begin_write().unwrap();
        for j in 0..100u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = x % 100_000;
            let k = format!("key{i:08}");
            w.bucket(b"current")
                .unwrap()
                .put(k.as_bytes(), &[8; 330])
                .unwrap();
            w.bucket(b"index")
                .unwrap()
                .put(
                    format!("{k}\0\x01{:016}", 100_000 + c * 100 + j).as_bytes(),
                    &[0],
                )
                .unwrap();
            w.bucket(b"key")
                .unwrap()
                .put(&(100_000 + c * 100 + j).to_be_bytes(), &[8; 330])
                .unwrap();
            w.bucket(b"meta")
                .unwrap()
                .put(b"rev", &j.to_le_bytes())
                .unwrap();
        }
        w.commit().unwrap();
    }
    let el = t.elapsed();
    println!(
        "200 commits x 100 puts: {:?} per commit, {} KiB and {} write calls per commit; stats {:?}",
        el / 200,
        bytes.load(Ordering::Relaxed) / 200 / 1024,
        calls.load(Ordering::Relaxed) / 200,
        db.stats().unwrap()
    );
}
