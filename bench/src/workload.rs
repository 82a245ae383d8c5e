//! The workloads and the closed-loop runner that drives them.
//!
//! Owns [`Workload`] (how request `i` is made and issued), the runner [`run`] (every client is
//! one task pulling request numbers from a shared counter until `total`, optionally paced to
//! `rate` requests per second, each round trip timed into the client's own [`Recorder`]), the
//! request-shaped workloads ([`Put`], [`Range`], [`TxnPut`], [`TxnMixed`], [`LeaseKeepalive`]),
//! the watch workloads ([`run_watch`]) and key generation ([`make_key`], [`Rng`]).
//!
//! Keys follow etcd's benchmark tool: a zeroed `key_size` buffer whose front holds the key's
//! number as a zig-zag varint (Go's `binary.PutVarint`), so key spaces and sequential keys match.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::{Recorder, Report};
use crate::target::{BenchClient, BenchError, BenchWatch, RangeSpec, TxnOp, WatchMessage};

/// A small, fast PRNG (SplitMix64): key choice and values need speed, not quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Key number `n` as etcd's tool makes it: `size` zero bytes with the zig-zag varint of `n` at
/// the front (the key grows if `size` is shorter than the varint).
pub fn make_key(size: usize, n: u64) -> Vec<u8> {
    let mut key = vec![0u8; size];
    let mut v = (n << 1) ^ ((n as i64 >> 63) as u64); // zig-zag, as Go's PutVarint
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8 | if v >= 0x80 { 0x80 } else { 0 };
        if i < key.len() {
            key[i] = byte;
        } else {
            key.push(byte);
        }
        i += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    key
}

/// How a run is paced and shown.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Requests to issue in all.
    pub total: u64,
    /// Requests per second over all clients; 0 is unlimited.
    pub rate: u64,
    /// Draw a progress bar on stdout (only done when stdout is a terminal).
    pub progress: bool,
}

/// A request-response workload: request `i` and how to issue it.
pub trait Workload<C: BenchClient>: Send + Sync + 'static {
    /// Names of the request classes reported separately (one report each).
    fn classes(&self) -> Vec<String>;

    /// Issues request number `i` from client number `client_no`; returns the request's class
    /// (an index into [`Workload::classes`]) and its outcome.
    fn issue(
        &self,
        client: &mut C,
        client_no: usize,
        i: u64,
        rng: &mut Rng,
    ) -> impl Future<Output = (usize, Result<(), BenchError>)> + Send;
}

/// Shows `done/total` on stdout every 200 ms until aborted (stdout must be a terminal).
fn spawn_progress(done: Arc<AtomicU64>, total: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            draw_progress(done.load(Ordering::Relaxed), total);
        }
    })
}

fn draw_progress(done: u64, total: u64) {
    const WIDTH: u64 = 50;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let mut out = std::io::stdout().lock();
    let _ = write!(
        out,
        "\r {done} / {total} [{}{}] {pct}%",
        "=".repeat(filled),
        " ".repeat(WIDTH as usize - filled)
    );
    let _ = out.flush();
}

/// Whether a progress bar may be drawn: asked for, and stdout is a terminal.
pub fn progress_wanted(asked: bool) -> bool {
    asked && std::io::stdout().is_terminal()
}

/// Runs `workload` closed-loop on `clients` (one task each) and returns one report per class.
pub async fn run<C: BenchClient, W: Workload<C>>(
    clients: Vec<C>,
    workload: Arc<W>,
    spec: &RunSpec,
) -> Vec<Report> {
    let classes = workload.classes();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let total = spec.total;
    let period = (spec.rate > 0).then(|| Duration::from_secs_f64(1.0 / spec.rate as f64));
    let show = progress_wanted(spec.progress);
    let start = Instant::now();
    let bar = show.then(|| spawn_progress(done.clone(), total));
    let mut tasks = Vec::with_capacity(clients.len());
    for (n, mut client) in clients.into_iter().enumerate() {
        let (workload, next, done) = (workload.clone(), next.clone(), done.clone());
        let nclasses = classes.len();
        tasks.push(tokio::spawn(async move {
            let mut recs = vec![Recorder::new(); nclasses];
            let mut rng = Rng::new(0x6b65_656c ^ (n as u64).wrapping_mul(0x9e37_79b9));
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(p) = period {
                    // Pacing, not synchronisation: request i is due at start + i / rate.
                    let due = start + p.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                let (class, outcome) = workload.issue(&mut client, n, i, &mut rng).await;
                match outcome {
                    Ok(()) => recs[class].record(t.elapsed()),
                    Err(e) => recs[class].record_error(&e.0),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            recs
        }));
    }
    let mut merged = vec![Recorder::new(); classes.len()];
    for t in tasks {
        let recs = t.await.expect("a client task panicked");
        for (m, r) in merged.iter_mut().zip(&recs) {
            m.merge(r);
        }
    }
    let elapsed = start.elapsed();
    if let Some(bar) = bar {
        bar.abort();
        draw_progress(done.load(Ordering::Relaxed), total);
        println!();
    }
    classes
        .into_iter()
        .zip(merged)
        .map(|(name, rec)| Report {
            name,
            total: elapsed,
            rec,
        })
        .collect()
}

/// `put`: puts of `val_size`-byte values to keys drawn from a key space.
#[derive(Debug, Clone)]
pub struct Put {
    /// Key length in bytes.
    pub key_size: usize,
    /// The value every put writes (random bytes, made once).
    pub value: Vec<u8>,
    /// Number of distinct keys.
    pub key_space: u64,
    /// Key `i % key_space` for request `i` instead of a random key.
    pub sequential: bool,
}

impl<C: BenchClient> Workload<C> for Put {
    fn classes(&self) -> Vec<String> {
        vec!["put".into()]
    }

    async fn issue(
        &self,
        client: &mut C,
        _: usize,
        i: u64,
        rng: &mut Rng,
    ) -> (usize, Result<(), BenchError>) {
        let n = if self.sequential {
            i % self.key_space
        } else {
            rng.below(self.key_space)
        };
        let key = make_key(self.key_size, n);
        (0, client.put(&key, &self.value).await)
    }
}

/// `range`: the same range request, over and over.
#[derive(Debug, Clone)]
pub struct Range {
    /// The request.
    pub spec: RangeSpec,
}

impl<C: BenchClient> Workload<C> for Range {
    fn classes(&self) -> Vec<String> {
        vec!["range".into()]
    }

    async fn issue(
        &self,
        client: &mut C,
        _: usize,
        _: u64,
        _: &mut Rng,
    ) -> (usize, Result<(), BenchError>) {
        (0, client.range(&self.spec).await.map(|_| ()))
    }
}

/// `txn-put`: transactions of `ops` puts each; txn `i` writes keys `i*ops + j` (mod key space).
#[derive(Debug, Clone)]
pub struct TxnPut {
    /// Key length in bytes.
    pub key_size: usize,
    /// The value every put writes.
    pub value: Vec<u8>,
    /// Number of distinct keys.
    pub key_space: u64,
    /// Puts per transaction.
    pub ops: u64,
}

impl<C: BenchClient> Workload<C> for TxnPut {
    fn classes(&self) -> Vec<String> {
        vec!["txn-put".into()]
    }

    async fn issue(
        &self,
        client: &mut C,
        _: usize,
        i: u64,
        _: &mut Rng,
    ) -> (usize, Result<(), BenchError>) {
        let ops: Vec<TxnOp> = (0..self.ops)
            .map(|j| TxnOp::Put {
                key: make_key(self.key_size, (i * self.ops + j) % self.key_space),
                value: self.value.clone(),
            })
            .collect();
        (0, client.txn(&ops).await)
    }
}

/// `txn-mixed`: single-op transactions, each a range read with probability
/// `rw_ratio / (1 + rw_ratio)`, else a put of key `i % key_space`. Reads and writes are
/// reported separately.
#[derive(Debug, Clone)]
pub struct TxnMixed {
    /// Key length in bytes.
    pub key_size: usize,
    /// The value every put writes.
    pub value: Vec<u8>,
    /// Number of distinct keys written.
    pub key_space: u64,
    /// Reads per write.
    pub rw_ratio: f64,
    /// The read.
    pub read: RangeSpec,
}

impl<C: BenchClient> Workload<C> for TxnMixed {
    fn classes(&self) -> Vec<String> {
        vec!["txn-mixed-read".into(), "txn-mixed-write".into()]
    }

    async fn issue(
        &self,
        client: &mut C,
        _: usize,
        i: u64,
        rng: &mut Rng,
    ) -> (usize, Result<(), BenchError>) {
        if rng.unit() < self.rw_ratio / (1.0 + self.rw_ratio) {
            (0, client.txn(&[TxnOp::Range(self.read.clone())]).await)
        } else {
            let op = TxnOp::Put {
                key: make_key(self.key_size, i % self.key_space),
                value: self.value.clone(),
            };
            (1, client.txn(&[op]).await)
        }
    }
}

/// `lease-keepalive`: every client renews its own lease (granted before the run) once per
/// request.
#[derive(Debug, Clone)]
pub struct LeaseKeepalive {
    /// Lease id of client `n` at index `n`.
    pub leases: Vec<i64>,
}

impl<C: BenchClient> Workload<C> for LeaseKeepalive {
    fn classes(&self) -> Vec<String> {
        vec!["lease-keepalive".into()]
    }

    async fn issue(
        &self,
        client: &mut C,
        client_no: usize,
        _: u64,
        _: &mut Rng,
    ) -> (usize, Result<(), BenchError>) {
        (
            0,
            client.lease_keep_alive_once(self.leases[client_no]).await,
        )
    }
}

/// The watch workloads' shape.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// Watch streams, stream `s` opened by client `s % clients`.
    pub streams: usize,
    /// Watchers per stream; watcher `w` (counted over all streams) watches key `w % keys.len()`.
    pub watchers_per_stream: usize,
    /// The watched keys.
    pub keys: Vec<Vec<u8>>,
    /// Put `p` writes key `put_keys[p]` (an index into `keys`).
    pub put_keys: Vec<usize>,
    /// Puts per second; 0 is unlimited.
    pub put_rate: u64,
    /// Value length (at least 8: the value carries the put's send time).
    pub val_size: usize,
    /// Draw a progress bar.
    pub progress: bool,
}

/// Runs a watch workload: opens every stream and watcher (reporting "watch-create": time from
/// a create request to its confirmation), then issues the puts one at a time from `putter`
/// (its own connection) and reports "watch-event": for every event every watcher receives, the
/// time from the put's send to the event's arrival. The send time travels in the value's first
/// 8 bytes, so no table of revisions is needed.
pub async fn run_watch<C: BenchClient>(
    clients: Vec<C>,
    mut putter: C,
    spec: &WatchSpec,
) -> Result<Vec<Report>, BenchError> {
    assert!(!clients.is_empty() && !spec.keys.is_empty() && spec.val_size >= 8);
    let base = Instant::now();
    let nkeys = spec.keys.len();
    // (expected events per stream: set once the puts are done, from the successful puts)
    let (expect_tx, expect_rx) = tokio::sync::watch::channel::<Option<Arc<Vec<u64>>>>(None);
    let (created_tx, mut created_rx) =
        tokio::sync::mpsc::channel::<Result<Recorder, BenchError>>(spec.streams.max(1));
    let mut clients = clients;
    let nclients = clients.len();
    let mut tasks = Vec::new();
    let create_start = Instant::now();
    for s in 0..spec.streams {
        let mut client = clients[s % nclients].clone();
        let keys: Vec<usize> = (0..spec.watchers_per_stream)
            .map(|k| (s * spec.watchers_per_stream + k) % nkeys)
            .collect();
        let watched: Vec<Vec<u8>> = keys.iter().map(|&k| spec.keys[k].clone()).collect();
        let created_tx = created_tx.clone();
        let mut expect_rx = expect_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut create = Recorder::new();
            let mut events = Recorder::new();
            let mut sent = std::collections::VecDeque::new();
            sent.push_back(Instant::now());
            let mut stream = match client.watch(&watched[0], &[]).await {
                Ok(w) => w,
                Err(e) => {
                    let _ = created_tx.send(Err(e.clone())).await;
                    return Err(e);
                }
            };
            for k in &watched[1..] {
                sent.push_back(Instant::now());
                if let Err(e) = stream.add(k, &[]).await {
                    let _ = created_tx.send(Err(e.clone())).await;
                    return Err(e);
                }
            }
            let mut got = 0u64;
            let mut pending_created = watched.len();
            let mut expected: Option<u64> = None;
            loop {
                if pending_created == 0 && expected.is_some_and(|e| got >= e) {
                    break;
                }
                tokio::select! {
                    changed = expect_rx.changed(), if expected.is_none() => {
                        if changed.is_err() { break; }
                        if let Some(counts) = expect_rx.borrow().as_ref() {
                            expected = Some(keys.iter().map(|&k| counts[k]).sum());
                        }
                    }
                    msg = stream.next() => match msg {
                        Ok(Some(WatchMessage::Created { .. })) => {
                            if let Some(t) = sent.pop_front() { create.record(t.elapsed()); }
                            pending_created -= 1;
                            if pending_created == 0 {
                                let _ = created_tx.send(Ok(std::mem::take(&mut create))).await;
                            }
                        }
                        Ok(Some(WatchMessage::Events { events: evs, .. })) => {
                            let now = base.elapsed();
                            for ev in evs {
                                got += 1;
                                match stamp(&ev.value) {
                                    Some(t) => events.record(now.saturating_sub(t)),
                                    None => events.record_error("event value without a send time"),
                                }
                            }
                        }
                        Ok(Some(WatchMessage::Other)) => {}
                        Ok(None) => return Err(BenchError("watch stream closed by the server".into())),
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(events)
        }));
    }
    drop(created_tx);
    let mut create = Recorder::new();
    for _ in 0..spec.streams {
        match created_rx.recv().await {
            Some(Ok(r)) => create.merge(&r),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(BenchError(
                    "a watch stream ended before its watchers".into(),
                ))
            }
        }
    }
    let create_total = create_start.elapsed();

    // Put phase.
    let show = progress_wanted(spec.progress);
    let total = spec.put_keys.len() as u64;
    let mut ok_per_key = vec![0u64; nkeys];
    let mut put_rec = Recorder::new();
    let period = (spec.put_rate > 0).then(|| Duration::from_secs_f64(1.0 / spec.put_rate as f64));
    let put_start = Instant::now();
    for (p, &k) in spec.put_keys.iter().enumerate() {
        if let Some(period) = period {
            // Pacing, not synchronisation: put p is due at put_start + p / rate.
            tokio::time::sleep_until((put_start + period.mul_f64(p as f64)).into()).await;
        }
        let sent = base.elapsed();
        let mut value = vec![0u8; spec.val_size];
        value[..8].copy_from_slice(&(sent.as_nanos() as u64).to_le_bytes());
        let t = Instant::now();
        match putter.put(&spec.keys[k], &value).await {
            Ok(()) => {
                put_rec.record(t.elapsed());
                ok_per_key[k] += 1;
            }
            Err(e) => put_rec.record_error(&e.0),
        }
        if show && p % 100 == 99 {
            draw_progress(p as u64 + 1, total);
        }
    }
    let _ = expect_tx.send(Some(Arc::new(ok_per_key)));
    let mut events = Recorder::new();
    for t in tasks {
        events.merge(&t.await.expect("a watch task panicked")?);
    }
    let total_elapsed = put_start.elapsed();
    if show {
        draw_progress(total, total);
        println!();
    }
    clients.clear();
    Ok(vec![
        Report {
            name: "watch-create".into(),
            total: create_total,
            rec: create,
        },
        Report {
            name: "watch-put".into(),
            total: total_elapsed,
            rec: put_rec,
        },
        Report {
            name: "watch-event".into(),
            total: total_elapsed,
            rec: events,
        },
    ])
}

/// The send time stamped into a watch workload's value.
fn stamp(value: &[u8]) -> Option<Duration> {
    let b: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(Duration::from_nanos(u64::from_le_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::WatchMessage;
    use std::sync::Mutex;

    #[test]
    fn keys_match_gos_put_varint() {
        assert_eq!(make_key(8, 0), vec![0; 8]);
        assert_eq!(make_key(8, 1), vec![2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(make_key(4, 63), vec![126, 0, 0, 0]);
        assert_eq!(make_key(4, 64), vec![0x80, 0x01, 0, 0]);
        assert_eq!(make_key(1, 64), vec![0x80, 0x01], "a short buffer grows");
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert!(r.below(3) < 3);
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    /// A test double that records the keys it was asked to put (no server involved).
    #[derive(Clone, Default)]
    struct Recording(Arc<Mutex<Vec<Vec<u8>>>>);

    struct NoWatch;

    impl BenchWatch for NoWatch {
        async fn add(&mut self, _: &[u8], _: &[u8]) -> Result<(), BenchError> {
            Ok(())
        }
        async fn next(&mut self) -> Result<Option<WatchMessage>, BenchError> {
            Ok(None)
        }
    }

    impl BenchClient for Recording {
        type Watch = NoWatch;
        async fn put(&mut self, key: &[u8], _: &[u8]) -> Result<(), BenchError> {
            self.0.lock().unwrap().push(key.to_vec());
            if key[0] == 2 {
                return Err(BenchError("key one refused".into()));
            }
            Ok(())
        }
        async fn range(&mut self, _: &RangeSpec) -> Result<i64, BenchError> {
            Ok(0)
        }
        async fn txn(&mut self, _: &[TxnOp]) -> Result<(), BenchError> {
            Ok(())
        }
        async fn watch(&mut self, _: &[u8], _: &[u8]) -> Result<NoWatch, BenchError> {
            Ok(NoWatch)
        }
        async fn lease_grant(&mut self, _: i64) -> Result<i64, BenchError> {
            Ok(1)
        }
        async fn lease_keep_alive_once(&mut self, _: i64) -> Result<(), BenchError> {
            Ok(())
        }
    }

    #[test]
    fn run_issues_total_requests_over_all_clients() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seen = Recording::default();
        let clients = vec![seen.clone(); 7];
        let w = Put {
            key_size: 8,
            value: vec![1; 4],
            key_space: 5,
            sequential: true,
        };
        let spec = RunSpec {
            total: 1000,
            rate: 0,
            progress: false,
        };
        let reports = rt.block_on(run(clients, Arc::new(w), &spec));
        assert_eq!(reports.len(), 1);
        let keys = seen.0.lock().unwrap();
        assert_eq!(keys.len(), 1000);
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 5, "sequential keys cover the key space");
        // Key 1 (first byte 2) is refused: 200 of the 1000 sequential requests.
        assert_eq!(reports[0].rec.error_count(), 200);
        assert_eq!(reports[0].rec.count(), 800);
    }
}
