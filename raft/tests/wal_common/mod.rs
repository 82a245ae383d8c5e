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
