//! `check perf`: etcdctl 3.4's performance check. Writes 1 KiB values under 256-byte random
//! keys below `--prefix`, at the load's rate, from the load's number of clients (each its own
//! connections), for 60 s (keelctl's `--duration` shortens it); then deletes the keys, optionally
//! compacts and defragments, and judges throughput (> 90 % of the rate), the slowest request
//! (≤ 0.5 s), the latency standard deviation (≤ 0.1 s) and errors (none), printing etcdctl's
//! lines (`PASS: Throughput is N writes/s`, …, `PASS` or `FAIL`, exit 1 on `FAIL`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_client::{Client, ConnectOptions};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use crate::progress::{perf_line, Progress};
use crate::{exit_error, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};

/// One workload model: writes per second and concurrent clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub rate: u32,
    pub clients: usize,
}

/// etcdctl's models (`s`, `m`, `l`, `xl` and their long names).
pub fn load(name: &str) -> Option<Load> {
    let (rate, clients) = match name {
        "s" | "small" => (150, 50),
        "m" | "medium" => (1000, 200),
        "l" | "large" => (8000, 500),
        "xl" | "xLarge" => (15000, 1000),
        _ => return None,
    };
    Some(Load { rate, clients })
}

/// What the run measured: latencies of the successful writes (seconds), errors by message,
/// and the wall time of the run.
#[derive(Debug, Default)]
pub struct Results {
    pub lats: Vec<f64>,
    pub errors: BTreeMap<String, u64>,
    pub total: Duration,
}

/// The verdict lines etcdctl prints (without the progress bar) and whether the check passed.
pub fn verdict(r: &Results, rate: u32) -> (Vec<String>, bool) {
    let n = r.lats.len() as f64;
    let rps = n / r.total.as_secs_f64();
    let avg = r.lats.iter().sum::<f64>() / n;
    let stddev = (r.lats.iter().map(|l| (l - avg) * (l - avg)).sum::<f64>() / n).sqrt();
    let slowest = r.lats.iter().copied().fold(0f64, f64::max);
    let mut out = Vec::new();
    let mut ok = true;
    if !r.errors.is_empty() {
        out.push("FAIL: too many errors".to_string());
        for (e, c) in &r.errors {
            out.push(format!("FAIL: ERROR({e}) -> {c}"));
        }
        ok = false;
    }
    let shown_rps = rps as i64 + 1;
    if rps / f64::from(rate) <= 0.9 {
        out.push(format!("FAIL: Throughput too low: {shown_rps} writes/s"));
        ok = false;
    } else {
        out.push(format!("PASS: Throughput is {shown_rps} writes/s"));
    }
    if slowest > 0.5 {
        out.push(format!("Slowest request took too long: {}s", go_f(slowest)));
        ok = false;
    } else {
        out.push(format!("PASS: Slowest request took {}s", go_f(slowest)));
    }
    if stddev > 0.1 {
        out.push(format!("Stddev too high: {}s", go_f(stddev)));
        ok = false;
    } else {
        out.push(format!("PASS: Stddev is {}s", go_f(stddev)));
    }
    out.push(if ok { "PASS" } else { "FAIL" }.to_string());
    (out, ok)
}

/// Go's `%f` (six decimals; NaN as `NaN`).
fn go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v:.6}")
    }
}

/// Go's `binary.PutVarint` (zig-zag, then base-128) into the front of `buf`.
pub fn put_varint(buf: &mut [u8], x: i64) -> usize {
    let mut ux = ((x << 1) ^ (x >> 63)) as u64;
    let mut i = 0;
    while ux >= 0x80 {
        buf[i] = (ux as u8) | 0x80;
        ux >>= 7;
        i += 1;
    }
    buf[i] = ux as u8;
    i + 1
}

/// A small xorshift generator for the keys (no need for quality or secrecy).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Options of one `check perf` run.
pub struct PerfArgs {
    pub load: String,
    pub prefix: String,
    pub auto_compact: bool,
    pub auto_defrag: bool,
    pub duration: Duration,
}

/// Runs `check perf`; returns the exit code.
pub async fn perf(endpoints: &[String], opts: ConnectOptions, a: &PerfArgs) -> i32 {
    let Some(cfg) = load(&a.load) else {
        exit_error(EXIT_BAD_FEATURE, &format!("unknown load option {}", a.load))
    };
    let connect = |o: ConnectOptions| {
        let eps = endpoints.to_vec();
        async move {
            Client::connect(eps, o)
                .await
                .unwrap_or_else(|_| exit_error(EXIT_ERROR, "context deadline exceeded"))
        }
    };
    // The client that checks, cleans up and maintains; etcdctl gives those calls 30 s or more.
    let ctl = connect(opts.clone().with_request_timeout(Duration::from_secs(30))).await;
    let mut writers = Vec::with_capacity(cfg.clients);
    for _ in 0..cfg.clients {
        writers.push(tokio::spawn(connect(opts.clone())));
    }
    let mut clients = Vec::with_capacity(cfg.clients);
    for w in writers {
        clients.push(w.await.expect("connect task"));
    }

    let existing = ctl
        .get(a.prefix.clone())
        .prefix()
        .limit(1)
        .await
        .unwrap_or_else(|e| exit_error(EXIT_ERROR, &e.to_string()));
    if !existing.kvs.is_empty() {
        exit_error(
            EXIT_INVALID_INPUT,
            &format!(
                "prefix {} has keys. Delete with etcdctl del --prefix {} first",
                crate::out::go_quote(&a.prefix),
                a.prefix
            ),
        );
    }

    // The pacer hands keys to the clients through a queue as deep as there are clients.
    let (req_tx, req_rx) = mpsc::channel::<Vec<u8>>(cfg.clients);
    let req_rx = Arc::new(Mutex::new(req_rx));
    type Outcome = (Duration, Result<(), String>);
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<Outcome>();
    let done = Arc::new(AtomicU64::new(0));
    let value = vec![0u8; 1024];
    let started = Instant::now();
    let mut workers = Vec::new();
    for c in clients {
        let (rx, tx, done, value) = (req_rx.clone(), res_tx.clone(), done.clone(), value.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(key) = rx.lock().await.recv().await else {
                    return;
                };
                let t = Instant::now();
                let r = c.put(key, value.clone()).await;
                done.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send((t.elapsed(), r.map(|_| ()).map_err(|e| e.to_string())));
            }
        }));
    }
    drop(res_tx);

    let prefix = a.prefix.clone().into_bytes();
    let (duration, rate) = (a.duration, cfg.rate);
    let pacer = tokio::spawn(async move {
        let end = Instant::now() + duration;
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        // etcdctl's limiter holds one token; tokio's timer ticks in milliseconds, so allow up
        // to 2 ms of writes to go out together rather than fall behind the rate.
        let slack = interval.max(Duration::from_millis(2));
        let mut next = Instant::now();
        let mut rng = XorShift(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                | 1,
        );
        loop {
            let now = Instant::now();
            if next > now {
                tokio::time::sleep_until(next).await;
            } else if now - next > slack {
                next = now - slack;
            }
            if Instant::now() >= end {
                return;
            }
            next += interval;
            let mut k = vec![0u8; 256];
            put_varint(&mut k, (rng.next() >> 1) as i64);
            let mut key = prefix.clone();
            key.extend_from_slice(&k);
            if req_tx.send(key).await.is_err() {
                return;
            }
        }
    });

    let mut progress = Progress::for_stdout();
    let mut results = Results::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = res_rx.recv() => match r {
                Some((lat, Ok(()))) => results.lats.push(lat.as_secs_f64()),
                Some((_, Err(e))) => *results.errors.entry(e).or_default() += 1,
                None => break,
            },
            _ = tick.tick() => {
                let n = done.load(Ordering::Relaxed);
                progress.update(|t| perf_line(t, duration, n));
            }
        }
    }
    results.total = started.elapsed();
    progress.finish();
    pacer.await.expect("pacer");
    for w in workers {
        w.await.expect("writer");
    }

    let del = ctl
        .delete(a.prefix.clone())
        .prefix()
        .await
        .unwrap_or_else(|e| exit_error(EXIT_ERROR, &e.to_string()));
    if a.auto_compact {
        let rev = del.header.revision;
        println!("Compacting with revision {rev}");
        ctl.compact(rev, true)
            .await
            .unwrap_or_else(|e| exit_error(EXIT_ERROR, &e.to_string()));
        println!("Compacted with revision {rev}");
    }
    if a.auto_defrag {
        for (i, ep) in ctl.endpoints().iter().enumerate() {
            let q = crate::out::go_quote(ep);
            println!("Defragmenting {q}");
            ctl.defragment_on(i)
                .await
                .unwrap_or_else(|e| exit_error(EXIT_ERROR, &e.to_string()));
            println!("Defragmented {q}");
        }
    }
    let (lines, ok) = verdict(&results, cfg.rate);
    for l in lines {
        println!("{l}");
    }
    if ok {
        0
    } else {
        EXIT_ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_matches_go() {
        let mut b = [0u8; 10];
        assert_eq!(put_varint(&mut b, 0), 1);
        assert_eq!(b[0], 0);
        assert_eq!(put_varint(&mut b, 1), 1);
        assert_eq!(b[0], 2);
        assert_eq!(put_varint(&mut b, -1), 1);
        assert_eq!(b[0], 1);
        assert_eq!(put_varint(&mut b, 300), 2);
        assert_eq!(&b[..2], &[0xd8, 0x04]);
        assert_eq!(put_varint(&mut b, i64::MAX), 10);
    }

    #[test]
    fn verdict_lines() {
        let r = Results {
            lats: vec![0.01, 0.03],
            errors: BTreeMap::new(),
            total: Duration::from_secs(1),
        };
        let (lines, ok) = verdict(&r, 2);
        assert!(ok);
        assert_eq!(
            lines,
            [
                "PASS: Throughput is 3 writes/s",
                "PASS: Slowest request took 0.030000s",
                "PASS: Stddev is 0.010000s",
                "PASS"
            ]
        );
        let mut errors = BTreeMap::new();
        errors.insert("boom".to_string(), 2);
        let r = Results {
            lats: vec![0.7],
            errors,
            total: Duration::from_secs(1),
        };
        let (lines, ok) = verdict(&r, 150);
        assert!(!ok);
        assert_eq!(
            lines,
            [
                "FAIL: too many errors",
                "FAIL: ERROR(boom) -> 2",
                "FAIL: Throughput too low: 2 writes/s",
                "Slowest request took too long: 0.700000s",
                "PASS: Stddev is 0.000000s",
                "FAIL"
            ]
        );
        assert_eq!(
            load("xLarge"),
            Some(Load {
                rate: 15000,
                clients: 1000
            })
        );
        assert_eq!(load("huge"), None);
    }
}
