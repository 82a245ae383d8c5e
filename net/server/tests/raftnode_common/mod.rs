//! Helpers shared by the log-core tests: members of a cluster on loopback ports, each made of a
//! log executor (the log core), an apply executor (a trivial recording state machine) and, on
//! demand, client executors running a test's workload. A logger surfaces glommio's warnings
//! (it only logs a failed buffer registration).

#![allow(dead_code)]

use glommio::{LocalExecutorBuilder, Placement};
use keel_raft::consensus::{EntryKind, NodeId};
use keel_raft::wal::WalOptions;
use keel_server::raftnode::{
    ClientHandle, ClientPort, LogCore, LogEvent, LogStatus, NodeConfig, SnapshotSource, StopHandle,
};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
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

/// Spawns `f` on a fresh executor thread with a modest io_memory (several fit RLIMIT_MEMLOCK).
pub fn executor<G, F, T>(name: &str, io_memory: usize, f: G) -> JoinHandle<T>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    init_logger();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(io_memory)
        .spawn(f)
        .expect("executor starts");
    std::thread::spawn(move || ex.join().expect("executor thread"))
}

/// Runs `f` on a fresh executor and waits for it.
pub fn run<G, F, T>(f: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    executor("test", 128 << 10, f)
        .join()
        .expect("test executor")
}

#[path = "../../../../tests/src/ports.rs"]
mod ports;

/// Free loopback addresses below the ephemeral range (see `tests/src/ports.rs`).
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    ports::free_ports(n)
        .into_iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect()
}

/// The recording state machine: every applied normal entry `(index, data)`, in order.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// Last applied index.
    pub applied: u64,
    /// Applied normal entries with data.
    pub log: Vec<(u64, Vec<u8>)>,
    /// Index at which durability stops (the rest is "lost" by [`Recorder::crash`]); None: all.
    pub durable_cap: Option<u64>,
    /// Apply-order violations seen (must stay empty).
    pub violations: Vec<String>,
    /// Snapshots installed.
    pub installs: u64,
    /// Proposals reported dropped.
    pub dropped: u64,
    /// Applied membership entries `(index, encoded change)`.
    pub confs: Vec<(u64, Vec<u8>)>,
    /// First index of each payload.
    pub idx: HashMap<Vec<u8>, u64>,
    /// Tasks waiting in [`until`] for the next recorded event (woken by the apply thread).
    pub waiters: Vec<Waker>,
}

impl Recorder {
    /// The durable applied index.
    pub fn durable(&self) -> u64 {
        self.durable_cap
            .map_or(self.applied, |c| c.min(self.applied))
    }
    /// Loses everything after the durable index (a process crash of the state machine).
    pub fn crash(&mut self) {
        let d = self.durable();
        self.log.retain(|(i, _)| *i <= d);
        self.applied = d;
        self.reindex();
        self.durable_cap = None;
    }
    fn reindex(&mut self) {
        self.idx.clear();
        for (i, d) in &self.log {
            self.idx.entry(d.clone()).or_insert(*i);
        }
    }
    fn push(&mut self, i: u64, d: Vec<u8>) {
        self.idx.entry(d.clone()).or_insert(i);
        self.log.push((i, d));
    }
    /// The payloads, in order.
    pub fn datas(&self) -> Vec<Vec<u8>> {
        self.log.iter().map(|(_, d)| d.clone()).collect()
    }
    /// The index `data` was applied at.
    pub fn index_of(&self, data: &[u8]) -> Option<u64> {
        self.idx.get(data).copied()
    }
    fn encode(&self) -> Vec<u8> {
        let mut b = self.applied.to_le_bytes().to_vec();
        for (i, d) in &self.log {
            b.extend_from_slice(&i.to_le_bytes());
            b.extend_from_slice(&(d.len() as u32).to_le_bytes());
            b.extend_from_slice(d);
        }
        b
    }
    fn decode(b: &[u8]) -> Recorder {
        let mut r = Recorder {
            applied: u64::from_le_bytes(b[..8].try_into().unwrap()),
            ..Recorder::default()
        };
        let mut at = 8;
        while at < b.len() {
            let i = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
            let n = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
            r.log.push((i, b[at + 12..at + 12 + n].to_vec()));
            at += 12 + n;
        }
        r.reindex();
        r
    }
}

/// The recorder as a snapshot source: its whole state at its applied index.
pub struct Source(pub Arc<Mutex<Recorder>>);

impl SnapshotSource for Source {
    fn snapshot(&self) -> Result<(u64, Vec<u8>), String> {
        let r = self.0.lock().unwrap();
        Ok((r.applied, r.encode()))
    }
}

/// One running member.
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its configuration (to restart it).
    pub cfg: NodeConfig,
    /// Its state machine (survives a restart).
    pub rec: Arc<Mutex<Recorder>>,
    /// The log core's state.
    pub status: Arc<LogStatus>,
    stop: StopHandle,
    clients: Vec<ClientPort>,
    log_thread: Option<JoinHandle<Result<(), String>>>,
    apply_thread: Option<JoinHandle<()>>,
}

/// How many client ports each member is wired with.
pub const CLIENT_PORTS: usize = 6;

/// A configuration for member `id` of `addrs` (ids 1..=n), fast ticks, small WAL segments.
pub fn config(id: NodeId, addrs: &[SocketAddr], dir: PathBuf) -> NodeConfig {
    let peers: BTreeMap<NodeId, SocketAddr> = addrs
        .iter()
        .enumerate()
        .map(|(k, a)| (k as u64 + 1, *a))
        .collect();
    let mut cfg = NodeConfig::new(id, peers, dir);
    cfg.tick_ms = 20;
    cfg.election_ticks = 10;
    cfg.heartbeat_ticks = 1;
    cfg.wal = WalOptions {
        segment_size: 1 << 20,
        ..WalOptions::default()
    };
    cfg
}

impl Member {
    /// Starts a member: its log core and its apply side on their own executor threads.
    pub fn start(cfg: NodeConfig, rec: Arc<Mutex<Recorder>>) -> Member {
        let applied = rec.lock().unwrap().durable();
        let mut b = LogCore::builder(cfg.clone());
        b.applied(applied);
        b.snapshot_source(Arc::new(Source(rec.clone())));
        let apply = b.apply_port();
        let clients = (0..CLIENT_PORTS).map(|_| b.client_port()).collect();
        let stop = b.stop_handle();
        let status = b.status();
        let core = b.build();
        let id = cfg.id;
        let log_thread = executor(&format!("log{id}"), 512 << 10, move || async move {
            core.run().await.map_err(|e| e.to_string())
        });
        let r = rec.clone();
        let apply_thread = executor(&format!("apply{id}"), 64 << 10, move || async move {
            let a = apply.connect().await;
            while let Some(ev) = a.next().await {
                let mut rec = r.lock().unwrap();
                match ev {
                    LogEvent::Committed(es) => {
                        for e in es {
                            if e.index != rec.applied + 1 {
                                let v = format!("applied {} after {}", e.index, rec.applied);
                                rec.violations.push(v);
                            }
                            rec.applied = e.index;
                            if e.kind == EntryKind::ConfChange {
                                rec.confs.push((e.index, e.data.clone()));
                            }
                            if e.kind == EntryKind::Normal && !e.data.is_empty() {
                                rec.push(e.index, e.data);
                            }
                        }
                    }
                    LogEvent::InstallSnapshot { path, index, .. } => {
                        let b = std::fs::read(&path).expect("snapshot file");
                        let mut s = Recorder::decode(&b);
                        s.installs = rec.installs + 1;
                        s.dropped = rec.dropped;
                        s.durable_cap = rec.durable_cap;
                        if s.applied != index {
                            s.violations
                                .push(format!("snapshot {} at {index}", s.applied));
                        }
                        s.waiters = std::mem::take(&mut rec.waiters);
                        *rec = s;
                    }
                    LogEvent::Dropped { proposals, .. } => rec.dropped += proposals.len() as u64,
                }
                a.report_applied(rec.applied, rec.durable());
                rec.waiters.drain(..).for_each(Waker::wake);
            }
        });
        Member {
            id,
            cfg,
            rec,
            status,
            stop,
            clients,
            log_thread: Some(log_thread),
            apply_thread: Some(apply_thread),
        }
    }

    /// Runs `f` with a connected client handle on a new client executor.
    pub fn client<G, F, T>(&mut self, f: G) -> JoinHandle<T>
    where
        G: FnOnce(ClientHandle) -> F + Send + 'static,
        F: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let port = self.clients.pop().expect("a client port left");
        executor(
            &format!("client{}", self.id),
            64 << 10,
            move || async move {
                let c = port.connect().await;
                f(c).await
            },
        )
    }

    /// Stops the log core and waits for both threads; returns the log core's result.
    pub fn stop(&mut self) -> Result<(), String> {
        self.stop.stop();
        let r = self.log_thread.take().map_or(Ok(()), |t| t.join().unwrap());
        if let Some(t) = self.apply_thread.take() {
            t.join().unwrap();
        }
        r
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.log_thread.is_some() {
            let _ = self.stop();
        }
    }
}

/// Polls `cond` until it holds or `limit` passes (a bounded poll on an observable condition).
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(2));
    }
}

/// One line per member: id, leader, role, term, commit, applied, installs (for failure messages).
pub fn describe(ms: &[&Member]) -> String {
    ms.iter()
        .map(|m| {
            let r = m.rec.lock().unwrap();
            format!(
                "[m{} leader={} role={:?} term={} commit={} applied={} installs={} dropped={}]",
                m.id,
                m.status.leader(),
                m.status.role(),
                m.status.term(),
                m.status.commit(),
                r.applied,
                r.installs,
                r.dropped
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The member every running member agrees leads, if any.
pub fn agreed_leader(ms: &[&Member]) -> Option<NodeId> {
    let l = ms[0].status.leader();
    (l != 0 && ms.iter().all(|m| m.status.leader() == l)).then_some(l)
}

/// Waits until `cond` holds for `rec` or `deadline` passes; returns whether it holds. The apply
/// thread wakes the waiting task after every event it records, so this waits on the recorder,
/// not on a timer (the timer only bounds the wait).
pub async fn until(
    rec: &Arc<Mutex<Recorder>>,
    deadline: Instant,
    cond: impl Fn(&Recorder) -> bool,
) -> bool {
    let holds = std::future::poll_fn(|cx| {
        let mut r = rec.lock().unwrap();
        if cond(&r) {
            return Poll::Ready(true);
        }
        r.waiters.push(cx.waker().clone());
        Poll::Pending
    });
    let left = deadline.saturating_duration_since(Instant::now());
    let expired = async {
        glommio::timer::Timer::new(left).await;
        false
    };
    futures_lite::future::or(holds, expired).await || cond(&rec.lock().unwrap())
}

/// Proposes every payload in `datas` through `c`, retrying refused ones, until each is applied
/// on the proposer's member (observed in `rec`) or `limit` passes. Returns how many were
/// not (0 on success).
pub async fn propose_all(
    c: &ClientHandle,
    rec: &Arc<Mutex<Recorder>>,
    datas: Vec<Vec<u8>>,
    limit: Duration,
) -> usize {
    let deadline = Instant::now() + limit;
    let mut left = datas;
    while !left.is_empty() && Instant::now() < deadline {
        for d in &left {
            while c.propose(d.clone()).is_err() && Instant::now() < deadline {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
        // Wait for this round to apply locally; re-propose what did not within the round.
        let round_end = Instant::now() + Duration::from_millis(1500);
        until(rec, round_end, |r| {
            left.iter().all(|d| r.index_of(d).is_some())
        })
        .await;
        let r = rec.lock().unwrap();
        left.retain(|d| r.index_of(d).is_none());
    }
    left.len()
}

/// Checks that every member applied the same entries at the same indexes (compared up to the
/// lowest applied index, under all locks at once, since late duplicates of re-proposed writes
/// may still be applying), that none saw an apply-order violation, and that each holds every
/// payload in `want`.
pub fn check_same_history(ms: &[&Member], want: &[Vec<u8>]) {
    let recs: Vec<_> = ms.iter().map(|m| m.rec.lock().unwrap()).collect();
    let low = recs.iter().map(|r| r.applied).min().unwrap();
    let upto = |r: &Recorder| -> Vec<(u64, Vec<u8>)> {
        r.log.iter().filter(|(i, _)| *i <= low).cloned().collect()
    };
    let first = upto(&recs[0]);
    for (m, r) in ms.iter().zip(&recs) {
        assert!(
            r.violations.is_empty(),
            "member {}: {:?}",
            m.id,
            r.violations
        );
        assert!(
            upto(r) == first,
            "member {} applied a different history up to {low}",
            m.id
        );
        for w in want {
            assert!(
                r.index_of(w).is_some(),
                "member {} lacks a committed write",
                m.id
            );
        }
    }
}
