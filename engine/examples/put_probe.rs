//! Apply-path cost probe: MVCC puts in batches of `BATCH` (one visible commit each) on a store of
//! 100k keys, with a durable commit every `SYNC_EVERY` batches (the server's periodic sync).
//! Prints µs per put for the whole loop and its parts. `perf record` it to see where time goes.
//! `cargo run --release -p keel-engine --example put_probe [secs] [batch] [key-space]`

use std::time::{Duration, Instant};

use keel_engine::mvcc::*;

/// CPU time of this thread (user + system): robust on a machine shared with other work.
fn cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

const KEYS: u64 = 100_000;
const SYNC_EVERY: u32 = 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let batch: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    // Keys written by the loop (etcd's benchmark defaults to --key-space-size=1).
    let space: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(KEYS);
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(dir.path().join("kv"), StoreOptions::default()).unwrap();
    let key = |i: u64| format!("key{i:08}").into_bytes();
    for c in 0..KEYS / 10_000 {
        let mut w = store.write().unwrap();
        for i in c * 10_000..(c + 1) * 10_000 {
            w.put(&PutRequest {
                key: key(i),
                value: vec![7; 256],
                ..Default::default()
            })
            .unwrap();
        }
        w.commit(0).unwrap();
    }
    store.sync().unwrap();
    let mut x: u64 = 0x2545f4914f6cdd1d;
    let (mut puts, mut batches) = (0u64, 0u32);
    let (mut t_put, mut t_commit, mut t_sync) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut c_put, mut c_commit, mut c_sync) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    let cpu0 = cpu();
    while start.elapsed() < Duration::from_secs(secs) {
        let t0 = Instant::now();
        let k0 = cpu();
        let mut w = store.write().unwrap();
        for _ in 0..batch {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.put(&PutRequest {
                key: key(x % space),
                value: vec![1; 256],
                ..Default::default()
            })
            .unwrap();
        }
        let t1 = Instant::now();
        let k1 = cpu();
        w.commit(batches as u64).unwrap();
        let t2 = Instant::now();
        let k2 = cpu();
        c_put += k1 - k0;
        c_commit += k2 - k1;
        t_put += t1 - t0;
        t_commit += t2 - t1;
        puts += batch;
        batches += 1;
        if batches % SYNC_EVERY == 0 {
            store.sync().unwrap();
            t_sync += t2.elapsed();
            c_sync += cpu() - k2;
        }
    }
    let cpu_used = cpu() - cpu0;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / puts as f64;
    println!(
        "{puts} puts in batches of {batch}: {:.1} µs CPU/put (puts {:.1}, visible commits {:.1}, durable syncs {:.1}); wall {:.1} µs/put total (puts {:.1}, visible commits {:.1}, durable syncs {:.1}); file {} MiB",
        us(cpu_used),
        us(c_put),
        us(c_commit),
        us(c_sync),
        us(start.elapsed()),
        us(t_put),
        us(t_commit),
        us(t_sync),
        store.database().size_bytes() >> 20
    );
}
