//! Opt-in timing of the write path's stages, for finding where a single client's put spends
//! its time (tuning.md). Off unless `KEEL_STAGE_TIMES=1` is set when the server starts; then
//! every stage boundary records a timestamp and the time since the previous boundary, and the
//! server logs the distribution of each stage at shutdown.
//!
//! The deltas are meaningful only with one write in flight at a time (a 1 conn / 1 client put
//! benchmark): with concurrent writes the boundaries of different requests interleave. When
//! off, a mark costs one relaxed atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// A boundary on the write path, in the order a put crosses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// A client core decoded the request.
    ClientDecoded = 0,
    /// The log core took the proposal from its inbox.
    LogReceived,
    /// The log core started the WAL write holding the entry.
    WalStart,
    /// The WAL write is durable.
    WalDurable,
    /// The log core handed the committed entry to the apply core.
    Delivered,
    /// The apply core received it.
    ApplyReceived,
    /// The apply core's visible B+tree commit is done.
    Applied,
    /// The client core queued the response on the connection.
    Replied,
}

const N: usize = 8;
const NAMES: [&str; N] = [
    "",
    "client core -> log core",
    "log core: step, ready",
    "WAL write + sync",
    "log core: advance, deliver",
    "log core -> apply core",
    "apply: MVCC + visible commit",
    "apply core -> client core, reply",
];

static ON: AtomicBool = AtomicBool::new(false);
static LAST: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static SAMPLES: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Turns recording on when `KEEL_STAGE_TIMES=1`; returns whether it is on.
pub fn init_from_env() -> bool {
    if std::env::var("KEEL_STAGE_TIMES").is_ok_and(|v| v == "1") {
        epoch();
        *SAMPLES.lock().unwrap_or_else(|e| e.into_inner()) = vec![Vec::new(); N];
        ON.store(true, Ordering::Release);
    }
    ON.load(Ordering::Acquire)
}

/// Records that the write in flight crossed `s`.
#[inline]
pub fn mark(s: Stage) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let now = epoch().elapsed().as_nanos() as u64 | 1;
    let i = s as usize;
    LAST[i].store(now, Ordering::Release);
    let prev = if i == 0 {
        0
    } else {
        LAST[i - 1].load(Ordering::Acquire)
    };
    if prev != 0 && now >= prev {
        let mut g = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = g.get_mut(i) {
            v.push(((now - prev) / 1000).min(u32::MAX as u64) as u32);
        }
    }
}

/// The recorded distribution of each stage (µs), one line per stage; empty when off.
pub fn report() -> String {
    if !ON.load(Ordering::Acquire) {
        return String::new();
    }
    let mut g = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let mut out =
        String::from("stage times (µs, one write in flight): p10 / p50 / p90 / p99 / n\n");
    for (i, v) in g.iter_mut().enumerate().skip(1) {
        v.sort_unstable();
        let q = |p: f64| v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)));
        let f = |x: Option<&u32>| x.map_or("-".to_string(), |x| x.to_string());
        out.push_str(&format!(
            "  {:<34} {} / {} / {} / {} / {}\n",
            NAMES[i],
            f(q(0.10)),
            f(q(0.50)),
            f(q(0.90)),
            f(q(0.99)),
            v.len()
        ));
    }
    out
}
