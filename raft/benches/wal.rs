//! WAL benchmark: durable entries/s and append-to-durable latency (p50, p99) of 256-byte entries
//! with 1, 16 and 256 concurrent appenders, for both durability modes, against two baselines
//! measured in the same run on the same disk:
//! - `std::fs` append of 256 bytes + `fdatasync` per entry (buffered file, growing);
//! - one raw O_DIRECT 4 KiB write (+ fdatasync, or O_DSYNC) per entry into a pre-zeroed file,
//!   through the same io_uring path (glommio DmaFile) the WAL uses.
//!
//! `cargo bench -p keel-raft --bench wal` (release profile). Environment: `KEEL_WAL_BENCH_SECS`
//! (seconds per case, default 3), `KEEL_WAL_BENCH_ROUNDS` (interleaved rounds, default 3), `KEEL_WAL_BENCH_DIR` (directory on the disk to measure; default a
//! temporary directory under the system temp dir), `KEEL_WAL_BENCH_COALESCE=0` (turn
//! `WalOptions::coalesce` off).

use glommio::io::OpenOptions;
use glommio::{LocalExecutorBuilder, Placement};
use keel_raft::wal::{SyncMode, Wal, WalEntry, WalOptions};
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ENTRY_BYTES: usize = 256;

static WARNINGS: AtomicUsize = AtomicUsize::new(0);

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            WARNINGS.fetch_add(1, Ordering::Relaxed);
            eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

#[derive(Clone, Copy, Debug)]
enum Case {
    StdFs,
    Raw { dsync: bool },
    Wal { appenders: usize, sync: SyncMode },
}

#[derive(Default)]
struct Row {
    name: String,
    entries: u64,
    secs: f64,
    lat_us: Vec<f64>,
}

impl Row {
    fn new(name: String, entries: u64, secs: f64, mut lat_us: Vec<f64>) -> Self {
        lat_us.sort_by(f64::total_cmp);
        Self {
            name,
            entries,
            secs,
            lat_us,
        }
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let k = ((self.lat_us.len() - 1) as f64 * p).round() as usize;
        self.lat_us[k]
    }
    fn rate(&self) -> f64 {
        self.entries as f64 / self.secs
    }
    fn merge(&mut self, o: Row) {
        self.name = o.name;
        self.entries += o.entries;
        self.secs += o.secs;
        self.lat_us.extend(o.lat_us);
        self.lat_us.sort_by(f64::total_cmp);
    }
}

fn std_fs_baseline(dir: &Path, secs: f64) -> Row {
    let path = dir.join("stdfs.log");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .unwrap();
    let buf = [0x5Au8; ENTRY_BYTES];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let n = lat.len() as u64;
    std::fs::remove_file(&path).unwrap();
    Row::new(
        "std::fs write 256 B + fdatasync".into(),
        n,
        start.elapsed().as_secs_f64(),
        lat,
    )
}

async fn raw_direct(dir: &Path, secs: f64, dsync: bool) -> Row {
    let path = dir.join("raw.dma");
    let size: u64 = 64 << 20;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&path)
        .await
        .unwrap();
    f.pre_allocate(size, false).await.unwrap();
    // Pre-zero, as the WAL's segments are, so the timed writes are pure overwrites.
    let mut off = 0;
    while off < size {
        let mut b = f.alloc_dma_buffer(1 << 20);
        b.as_bytes_mut().fill(0);
        f.write_at(b, off).await.unwrap();
        off += 1 << 20;
    }
    f.fdatasync().await.unwrap();
    f.close().await.unwrap();
    let flags = if dsync { libc::O_DSYNC } else { 0 };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .dma_open(&path)
        .await
        .unwrap();
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut off = 0;
    while start.elapsed().as_secs_f64() < secs && off < size {
        let mut b = f.alloc_dma_buffer(4096);
        b.as_bytes_mut().fill(0xA5);
        let t = Instant::now();
        f.write_at(b, off).await.unwrap();
        if !dsync {
            f.fdatasync().await.unwrap();
        }
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        off += 4096;
    }
    let elapsed = start.elapsed().as_secs_f64();
    f.remove().await.unwrap();
    f.close().await.unwrap();
    let name = if dsync {
        "raw O_DIRECT 4 KiB write, O_DSYNC"
    } else {
        "raw O_DIRECT 4 KiB write + fdatasync"
    };
    Row::new(name.into(), lat.len() as u64, elapsed, lat)
}

async fn wal_case(dir: &Path, secs: f64, appenders: usize, sync: SyncMode) -> Row {
    let wdir = dir.join(format!("wal-{appenders}-{sync:?}"));
    let wal = Wal::open(
        &wdir,
        WalOptions {
            sync,
            coalesce: std::env::var("KEEL_WAL_BENCH_COALESCE").map_or(true, |v| v != "0"),
            ..WalOptions::default()
        },
    )
    .await
    .unwrap();
    // The baselines pre-zero their file before timing; let the spare segment finish too.
    wal.ready_next_segment().await.unwrap();
    let next = Rc::new(Cell::new(1u64));
    let lat = Rc::new(RefCell::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let (wal, next, lat) = (wal.clone(), next.clone(), lat.clone());
            glommio::spawn_local(async move {
                while Instant::now() < deadline {
                    let i = next.get();
                    next.set(i + 1);
                    let e = WalEntry {
                        index: i,
                        term: 1,
                        kind: 0,
                        data: vec![i as u8; ENTRY_BYTES],
                    };
                    let t = Instant::now();
                    wal.append(vec![e], None).await.unwrap();
                    lat.borrow_mut().push(t.elapsed().as_secs_f64() * 1e6);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = wal.stats();
    drop(wal);
    std::fs::remove_dir_all(&wdir).unwrap();
    let lat = Rc::try_unwrap(lat).unwrap().into_inner();
    let n = lat.len() as u64;
    let per_group = n as f64 / stats.groups.max(1) as f64;
    let name = format!("WAL {appenders:>3} appenders, {sync:?} ({per_group:.1} entries/group)");
    Row::new(name, n, elapsed, lat)
}

fn main() {
    log::set_logger(&Logger).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let secs: f64 = std::env::var("KEEL_WAL_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let tmp;
    let dir: PathBuf = match std::env::var("KEEL_WAL_BENCH_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir).unwrap();
    let rounds: usize = std::env::var("KEEL_WAL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut cases = vec![
        Case::StdFs,
        Case::Raw { dsync: false },
        Case::Raw { dsync: true },
    ];
    for sync in [SyncMode::Fdatasync, SyncMode::Dsync] {
        for appenders in [1, 16, 256] {
            cases.push(Case::Wal { appenders, sync });
        }
    }
    // Every case runs in each round, the order rotated per round, so slow phases of a shared disk
    // spread over all cases instead of landing on one.
    let slice = secs / rounds as f64;
    let mut rows: Vec<Row> = cases.iter().map(|_| Row::default()).collect();
    for round in 0..rounds {
        for k in 0..cases.len() {
            let at = (k + round) % cases.len();
            let row = match cases[at] {
                Case::StdFs => std_fs_baseline(&dir, slice),
                case => {
                    let d = dir.clone();
                    LocalExecutorBuilder::new(Placement::Unbound)
                        .io_memory(4 << 20)
                        .spawn(move || async move {
                            keel_raft::wal::prime_iopoll_probe(&d).await.unwrap();
                            match case {
                                Case::Raw { dsync } => raw_direct(&d, slice, dsync).await,
                                Case::Wal { appenders, sync } => {
                                    wal_case(&d, slice, appenders, sync).await
                                }
                                Case::StdFs => unreachable!("runs outside the executor"),
                            }
                        })
                        .unwrap()
                        .join()
                        .unwrap()
                }
            };
            rows[at].merge(row);
        }
    }
    println!("| case | durable entries/s | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            r.name,
            r.rate(),
            r.pct(0.5),
            r.pct(0.99)
        );
    }
    let warnings = WARNINGS.load(Ordering::Relaxed);
    if warnings > 0 {
        println!("\nWARNING: glommio logged {warnings} warning(s) (see stderr): buffer registration may have failed");
    }
}
