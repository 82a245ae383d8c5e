//! Helpers shared by the WAL integration tests: a glommio executor per test thread, a logger that
//! surfaces glommio's warnings (it only logs a failed buffer registration), deterministic entries.

#![allow(dead_code)]

use glommio::{LocalExecutorBuilder, Placement};
use keel_raft::wal::{WalEntry, WalOptions};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// glommio warnings seen so far (buffer registration failures among them).
pub static GLOMMIO_WARNINGS: AtomicUsize = AtomicUsize::new(0);

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            GLOMMIO_WARNINGS.fetch_add(1, Ordering::Relaxed);
            eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

/// Installs the logger once per process.
pub fn init_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&StderrLogger).expect("no other logger");
        log::set_max_level(log::LevelFilter::Warn);
    });
}

/// Runs `f` on a fresh glommio executor on its own thread, with a modest io_memory so that several
/// executors fit RLIMIT_MEMLOCK at once.
pub fn run<G, F, T>(f: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    init_logger();
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(f)
        .expect("executor starts")
        .join()
        .expect("executor thread")
}

/// Deterministic payload for entry `index`: its length and bytes derive from the index.
pub fn payload(index: u64) -> Vec<u8> {
    let len = (index.wrapping_mul(2_654_435_761) % 300) as usize;
    (0..len)
        .map(|k| (index as usize).wrapping_mul(31).wrapping_add(k) as u8)
        .collect()
}

/// The entry every test writes at `index`.
pub fn entry(index: u64, term: u64) -> WalEntry {
    WalEntry {
        index,
        term,
        kind: (index % 3) as u8,
        data: payload(index),
    }
}

/// Options with small segments, so tests cross segment boundaries.
pub fn small(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        ..WalOptions::default()
    }
}

/// Appends entries `first .. first + 2 * rounds` (term 1) as `rounds` pairs: the second append of
/// each pair is queued after the first one's group was cut and its write issued (nothing
/// completes before this executor's task queue runs dry), so with
/// [`WalOptions::overlap_groups`] it goes out while the first is in flight, framed as an overlap
/// group. Each append must resolve only once it and every earlier one are durable.
pub async fn append_in_overlapping_pairs(wal: &keel_raft::wal::Wal, first: u64, rounds: u64) {
    let waiter = |ticket: u64, index: u64| {
        let wal = wal.clone();
        glommio::spawn_local(async move {
            wal.durable(ticket).await.unwrap();
            assert!(
                wal.last_index() >= index,
                "{index} resolved before it was durable"
            );
        })
    };
    for r in 0..rounds {
        let i = first + 2 * r;
        let a = wal.queue_append(vec![entry(i, 1)], None).unwrap();
        let wa = waiter(a, i);
        // The waiter leads, yields once (coalesce), then cuts and issues its group.
        for _ in 0..4 {
            glommio::executor().yield_now().await;
        }
        let b = wal.queue_append(vec![entry(i + 1, 1)], None).unwrap();
        let wb = waiter(b, i + 1);
        wa.await;
        wb.await;
    }
}

/// Every group in `dir` in order: (segment seq, offset, padded length, overlap frame, last entry
/// index in it or 0). Scans read-only; primes the io-poll probe first.
pub async fn groups_on_disk(dir: &std::path::Path) -> Vec<(u64, u64, usize, bool, u64)> {
    use keel_raft::wal::{prime_iopoll_probe, scan_dir, Record};
    prime_iopoll_probe(dir).await.unwrap();
    let segs = scan_dir(dir).await.unwrap();
    segs.iter()
        .flat_map(|s| {
            s.scan.groups.iter().map(|(off, g)| {
                let last = g
                    .records
                    .iter()
                    .filter_map(|(_, _, r)| match r {
                        Record::Entry(e) => Some(e.index),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                (s.scan.header.seq, *off, g.padded_len, g.overlap, last)
            })
        })
        .collect()
}
