//! keel's B+tree (`keel-engine`) against LMDB (through `heed`) and redb, same machine, one run.
//!
//! Workloads (issue 2, point 5), each run for the three engines back to back:
//! - `bulk_load`: 1M keys (8-byte big-endian, 256-byte values) in ascending order into a fresh
//!   file, committed in batches (keel: visible commits of 5k keys; redb: `Durability::None`
//!   commits of 100k keys; LMDB: synced commits of 100k keys, its only kind) and durably at the
//!   end. One sample = one whole load.
//! - `get`: random point gets on the loaded 1M-key store, in one long read transaction.
//! - `scan100`: 100 consecutive entries from a random start key, in one long read transaction.
//! - `durable_put1000`: 1,000 random overwrites per transaction, committed durably (keel:
//!   `commit_durable`, LMDB: default sync, redb: `Durability::Immediate`, its default).
//!
//! Keys are drawn from a seeded xorshift generator, so every engine sees the same sequence.
//!
//! The reads are measured twice: in wall time (`get`, `scan100`) and in the CPU time of the
//! benchmark thread (`get_cpu`, `scan100_cpu`). They do no I/O (the stores sit in the page
//! cache), so on a shared, oversubscribed machine the CPU time is the steadier comparison: it
//! leaves out the time the thread waited for a core. Loads and durable writes wait for the disk
//! and are measured in wall time only.
//! Run: `cargo bench -p keel-bench --bench btree` (6 to 10 minutes on 2 busy cores).

use std::hint::black_box;
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use redb::ReadableDatabase;
use tempfile::TempDir;

const KEYS: u64 = 1_000_000;
const VALUE_LEN: usize = 256;
/// Keys per transaction in the bulk load (LMDB and redb).
const LOAD_BATCH: u64 = 100_000;
/// keel commits its bulk load every 5k keys: visible commits cost no fsync, and the engine's
/// commit is quadratic in the entries of one dirty node (`Node::split_points` recomputes the
/// size of the rest for every piece), so 100k appended keys in one transaction take ~1.5 s to
/// commit. 5k was the fastest of 1k/5k/10k/20k here. See engine/README.md.
const KEEL_LOAD_BATCH: u64 = 5_000;
const WRITE_BATCH: usize = 1_000;
const SCAN_LEN: usize = 100;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// xorshift64*: tiny, seeded, identical for every engine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A key index in `0..KEYS`.
    fn key(&mut self) -> u64 {
        self.next() % KEYS
    }
}

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// A 256-byte value that depends on the key and a generation, so overwrites change bytes.
fn value(i: u64, generation: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let mut x = Rng::new(i.wrapping_mul(0x1000_0000_01b3) ^ generation);
    for chunk in v.chunks_exact_mut(8) {
        chunk.copy_from_slice(&x.next().to_le_bytes());
    }
    v
}

/// What the benchmark needs from an engine. Each method runs `ops` operations and returns a
/// checksum so the optimizer cannot drop the reads.
trait Engine: Sized {
    const NAME: &'static str;
    fn open(dir: &Path) -> Self;
    /// Loads `KEYS` keys in ascending order; durable when it returns.
    fn load(&self);
    fn gets(&self, rng: &mut Rng, ops: u64) -> u64;
    fn scans(&self, rng: &mut Rng, ops: u64) -> u64;
    /// `ops` durable transactions of `WRITE_BATCH` random overwrites each.
    fn durable_batches(&self, rng: &mut Rng, ops: u64, generation: u64);
}

// ---------------------------------------------------------------------------------------------
// keel

struct Keel(keel_engine::btree::Database);

const BUCKET: &[u8] = b"kv";

impl Engine for Keel {
    const NAME: &'static str = "keel";

    fn open(dir: &Path) -> Keel {
        let db = keel_engine::btree::Database::open(
            dir.join("keel.db"),
            keel_engine::btree::Options::default(),
        )
        .unwrap();
        let mut w = db.begin_write().unwrap();
        w.ensure_bucket(BUCKET).unwrap();
        w.commit_durable().unwrap();
        Keel(db)
    }

    fn load(&self) {
        for batch in 0..KEYS / KEEL_LOAD_BATCH {
            let mut w = self.0.begin_write().unwrap();
            let mut b = w.bucket(BUCKET).unwrap();
            for i in batch * KEEL_LOAD_BATCH..(batch + 1) * KEEL_LOAD_BATCH {
                b.put(&key(i), &value(i, 0)).unwrap();
            }
            if batch + 1 == KEYS / KEEL_LOAD_BATCH {
                w.commit_durable().unwrap();
            } else {
                w.commit().unwrap();
            }
        }
    }

    fn gets(&self, rng: &mut Rng, ops: u64) -> u64 {
        let r = self.0.begin_read();
        let b = r.bucket(BUCKET).unwrap().unwrap();
        let mut sum = 0u64;
        for _ in 0..ops {
            let v = b.get(&key(rng.key())).unwrap().unwrap();
            sum += u64::from(v[0]);
        }
        sum
    }

    fn scans(&self, rng: &mut Rng, ops: u64) -> u64 {
        let r = self.0.begin_read();
        let b = r.bucket(BUCKET).unwrap().unwrap();
        let mut sum = 0u64;
        for _ in 0..ops {
            let k = key(rng.key());
            for kv in b
                .range(Bound::Included(&k[..]), Bound::Unbounded, false)
                .take(SCAN_LEN)
            {
                let (k, v) = kv.unwrap();
                sum += u64::from(k[7]) + u64::from(v[0]);
            }
        }
        sum
    }

    fn durable_batches(&self, rng: &mut Rng, ops: u64, generation: u64) {
        for _ in 0..ops {
            let mut w = self.0.begin_write().unwrap();
            let mut b = w.bucket(BUCKET).unwrap();
            for _ in 0..WRITE_BATCH {
                let i = rng.key();
                b.put(&key(i), &value(i, generation)).unwrap();
            }
            w.commit_durable().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LMDB (heed)

/// heed 0.23 ties a `Database` handle to a borrow of its `Env`, so each call opens the unnamed
/// database (one `mdb_dbi_open` in a read transaction; once per call, not per operation).
struct Lmdb {
    env: heed::Env,
}

type LmdbDb<'e> = heed::Database<'e, heed::types::Bytes, heed::types::Bytes>;

impl Lmdb {
    fn db(&self) -> LmdbDb<'_> {
        let r = self.env.read_txn().unwrap();
        self.env
            .open_databases_and_commit(r, |dbo, r| {
                dbo.open_database(r, None)
                    .map(heed::CommitOrAbort::<_, ()>::Commit)
            })
            .unwrap()
            .unwrap_commit()
            .expect("the unnamed database always exists")
    }
}

impl Engine for Lmdb {
    const NAME: &'static str = "lmdb";

    fn open(dir: &Path) -> Lmdb {
        // SAFETY: the directory is a fresh temporary one; no other process or `Env` in this
        // process opens it, which is what heed requires of `open`.
        let env = unsafe {
            heed::EnvOpenOptions::new()
                .map_size(8 << 30)
                .open(dir)
                .unwrap()
        };
        Lmdb { env }
    }

    fn load(&self) {
        let db = self.db();
        for batch in 0..KEYS / LOAD_BATCH {
            let mut w = self.env.write_txn().unwrap();
            for i in batch * LOAD_BATCH..(batch + 1) * LOAD_BATCH {
                db.put(&mut w, &key(i), &value(i, 0)).unwrap();
            }
            w.commit().unwrap();
        }
    }

    fn gets(&self, rng: &mut Rng, ops: u64) -> u64 {
        let db = self.db();
        let r = self.env.read_txn().unwrap();
        let mut sum = 0u64;
        for _ in 0..ops {
            let v = db.get(&r, &key(rng.key())).unwrap().unwrap();
            sum += u64::from(v[0]);
        }
        sum
    }

    fn scans(&self, rng: &mut Rng, ops: u64) -> u64 {
        let db = self.db();
        let r = self.env.read_txn().unwrap();
        let mut sum = 0u64;
        for _ in 0..ops {
            let k = key(rng.key());
            let bounds = (Bound::Included(&k[..]), Bound::Unbounded);
            for kv in db.range(&r, &bounds).unwrap().take(SCAN_LEN) {
                let (k, v) = kv.unwrap();
                sum += u64::from(k[7]) + u64::from(v[0]);
            }
        }
        sum
    }

    fn durable_batches(&self, rng: &mut Rng, ops: u64, generation: u64) {
        let db = self.db();
        for _ in 0..ops {
            let mut w = self.env.write_txn().unwrap();
            for _ in 0..WRITE_BATCH {
                let i = rng.key();
                db.put(&mut w, &key(i), &value(i, generation)).unwrap();
            }
            w.commit().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// redb

struct Redb(redb::Database);

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

impl Engine for Redb {
    const NAME: &'static str = "redb";

    fn open(dir: &Path) -> Redb {
        let db = redb::Database::create(dir.join("redb.db")).unwrap();
        let w = db.begin_write().unwrap();
        w.open_table(TABLE).unwrap();
        w.commit().unwrap();
        Redb(db)
    }

    fn load(&self) {
        for batch in 0..KEYS / LOAD_BATCH {
            let mut w = self.0.begin_write().unwrap();
            if batch + 1 < KEYS / LOAD_BATCH {
                w.set_durability(redb::Durability::None).unwrap();
            }
            {
                let mut t = w.open_table(TABLE).unwrap();
                for i in batch * LOAD_BATCH..(batch + 1) * LOAD_BATCH {
                    t.insert(&key(i)[..], &value(i, 0)[..]).unwrap();
                }
            }
            w.commit().unwrap();
        }
    }

    fn gets(&self, rng: &mut Rng, ops: u64) -> u64 {
        let r = self.0.begin_read().unwrap();
        let t = r.open_table(TABLE).unwrap();
        let mut sum = 0u64;
        for _ in 0..ops {
            let v = t.get(&key(rng.key())[..]).unwrap().unwrap();
            sum += u64::from(v.value()[0]);
        }
        sum
    }

    fn scans(&self, rng: &mut Rng, ops: u64) -> u64 {
        let r = self.0.begin_read().unwrap();
        let t = r.open_table(TABLE).unwrap();
        let mut sum = 0u64;
        for _ in 0..ops {
            let k = key(rng.key());
            for kv in t.range::<&[u8]>(&k[..]..).unwrap().take(SCAN_LEN) {
                let (k, v) = kv.unwrap();
                sum += u64::from(k.value()[7]) + u64::from(v.value()[0]);
            }
        }
        sum
    }

    fn durable_batches(&self, rng: &mut Rng, ops: u64, generation: u64) {
        for _ in 0..ops {
            let w = self.0.begin_write().unwrap();
            {
                let mut t = w.open_table(TABLE).unwrap();
                for _ in 0..WRITE_BATCH {
                    let i = rng.key();
                    t.insert(&key(i)[..], &value(i, generation)[..]).unwrap();
                }
            }
            w.commit().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

/// CPU time consumed so far by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes one timespec into `ts`, a valid exclusive borrow.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Which clock a group reads.
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    ThreadCpu,
}

impl Clock {
    fn time(self, f: impl FnOnce()) -> Duration {
        match self {
            Clock::Wall => {
                let start = Instant::now();
                f();
                start.elapsed()
            }
            Clock::ThreadCpu => {
                let start = thread_cpu_time();
                f();
                thread_cpu_time() - start
            }
        }
    }
}

fn tmpdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("keel-bench-")
        .tempdir_in("/tmp")
        .unwrap()
}

fn bench_load<E: Engine>(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.bench_function(E::NAME, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tmpdir();
                let e = E::open(dir.path());
                let start = Instant::now();
                e.load();
                total += start.elapsed();
            }
            total
        })
    });
}

/// A loaded store, kept open for the read and write groups.
struct Loaded<E> {
    engine: E,
    _dir: TempDir,
}

fn loaded<E: Engine>() -> Loaded<E> {
    let dir = tmpdir();
    let engine = E::open(dir.path());
    engine.load();
    Loaded { engine, _dir: dir }
}

fn btree(c: &mut Criterion) {
    {
        let mut g = c.benchmark_group("bulk_load_1M");
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_secs(15))
            .throughput(Throughput::Elements(KEYS));
        bench_load::<Keel>(&mut g);
        bench_load::<Lmdb>(&mut g);
        bench_load::<Redb>(&mut g);
        g.finish();
    }

    let keel = loaded::<Keel>();
    let lmdb = loaded::<Lmdb>();
    let redb = loaded::<Redb>();

    macro_rules! each {
        ($g:expr, $clock:expr, |$e:ident, $rng:ident, $iters:ident| $body:expr) => {{
            each!(@one $g, $clock, keel, $e, $rng, $iters, $body);
            each!(@one $g, $clock, lmdb, $e, $rng, $iters, $body);
            each!(@one $g, $clock, redb, $e, $rng, $iters, $body);
        }};
        (@one $g:expr, $clock:expr, $store:ident, $e:ident, $rng:ident, $iters:ident, $body:expr) => {{
            let $e = &$store.engine;
            let mut $rng = Rng::new(SEED);
            $g.bench_function(stringify!($store), |b| {
                b.iter_custom(|$iters| $clock.time(|| { black_box($body); }))
            });
        }};
    }

    for (name, clock) in [("get", Clock::Wall), ("get_cpu", Clock::ThreadCpu)] {
        let mut g = c.benchmark_group(name);
        g.sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Elements(1));
        each!(g, clock, |e, rng, iters| e.gets(&mut rng, iters));
        g.finish();
    }
    for (name, clock) in [("scan100", Clock::Wall), ("scan100_cpu", Clock::ThreadCpu)] {
        let mut g = c.benchmark_group(name);
        g.sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Elements(SCAN_LEN as u64));
        each!(g, clock, |e, rng, iters| e.scans(&mut rng, iters));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("durable_put1000");
        let mut generation = 0u64;
        g.sampling_mode(SamplingMode::Flat)
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10))
            .throughput(Throughput::Elements(WRITE_BATCH as u64));
        each!(g, Clock::Wall, |e, rng, iters| {
            generation += 1;
            e.durable_batches(&mut rng, iters, generation)
        });
        g.finish();
    }
}

criterion_group!(benches, btree);
criterion_main!(benches);
