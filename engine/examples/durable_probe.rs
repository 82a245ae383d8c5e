//! Development probe: where one durable commit of 1,000 random puts spends its time.
use keel_engine::btree::{Database, FileBackend, StorageBackend};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
struct T(FileBackend, Arc<[AtomicU64; 3]>);
impl StorageBackend for T {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, o: u64, b: &mut [u8]) -> std::io::Result<()> {
        self.0.read(o, b)
    }
    fn write(&self, o: u64, d: &[u8]) -> std::io::Result<()> {
        let t = Instant::now();
        let r = self.0.write(o, d);
        self.1[0].fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
        self.1[2].fetch_add(1, Relaxed);
        r
    }
    fn sync(&self) -> std::io::Result<()> {
        let t = Instant::now();
        let r = self.0.sync();
        self.1[1].fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
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
    let c = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open("/tmp/probe2/db")
        .unwrap();
    let db = Database::open_backend(
        Box::new(T(FileBackend::new(f), c.clone())),
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
    let mut x = 0x2545f4914f6cdd1du64;
    for a in &*c {
        a.store(0, Relaxed);
    }
    let (mut tput, mut tcommit) = (0u128, 0u128);
    let rounds = 30;
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
    let r = rounds as u128;
    println!("per durable commit of 1000 puts: puts {} us, commit {} us (pwrite {} us in {} calls, fdatasync x2 {} us)", tput / r, tcommit / r, c[0].load(Relaxed) as u128 / 1000 / r, c[2].load(Relaxed) as u128 / r, c[1].load(Relaxed) as u128 / 1000 / r);
}
