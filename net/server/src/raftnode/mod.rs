//! The log core (DESIGN.md §2, §3): one glommio task that owns the Raft state machine
//! ([`keel_raft::consensus::RawNode`]), the WAL and the peer transport, and drives the Ready/advance cycle.
//!
//! Owns: the Raft log storage over the WAL ([`storage`]), the peer wire format ([`frame`]), the TCP
//! peer transport ([`transport`]), the loop ([`core`]) and the channels through which the apply
//! and client cores talk to it (this file). It does not own the state machine, snapshot contents
//! or client connections.
//!
//! # Public API
//!
//! Wiring happens once, on any thread, before the executors start:
//!
//! ```text
//! let mut b = LogCore::builder(cfg);            // NodeConfig: id, peers, data_dir, timing...
//! b.applied(durable_applied);                  // the state machine's durable applied index
//! b.snapshot_source(Arc<dyn SnapshotSource>);  // optional: payloads for lagging followers
//! let apply: ApplyPort  = b.apply_port();      // exactly one; Send
//! let client: ClientPort = b.client_port();    // one per producer (client core); Send
//! let stop: StopHandle = b.stop_handle();      // Send + Clone
//! let status: Arc<LogStatus> = b.status();     // leader, term, role, commit; readable anywhere
//! let core: LogCore = b.build();               // Send; move it to the log executor
//! // on the log executor:   core.run().await -> Result<(), NodeError>
//! // on the apply executor: let mut a = apply.connect().await;
//! // on a client executor:  let c = client.connect().await;
//! ```
//!
//! Every port is one end of a bounded SPSC channel ([`crate::hop`]: a glommio `shared_channel`
//! across executors, a `local_channel` for a port taken with `apply_port_with(true)` /
//! `client_port_with(true)`, which must connect on the log core's own executor): connect each
//! port on exactly one executor, and give every client executor its own `ClientPort`. `run`
//! waits for the apply side to connect; client ports may connect later (or never).
//!
//! - **Propose**: `c.propose(data)` (non-blocking). `Err(Refusal::TooManyRequests)` when the
//!   producer's bounded channel is full (etcd's "too many requests"), `Err(Refusal::Stopped)`
//!   when the log core is gone. Proposals are batched: the loop takes everything queued and
//!   makes one `propose_batch` per round. On a follower the batch is forwarded to the leader
//!   (Raft's `Propose` message); a proposal the Raft core refuses on this member (no leader, a
//!   leader transfer in progress, the apply side too far behind: committed − applied >
//!   `max_apply_lag`) comes back to the apply side as [`LogEvent::Dropped`] so it can fail the
//!   waiter at once. A proposal larger than the WAL's largest append is refused the same way.
//!   A forwarded proposal lost on the network is not reported: the client core's request
//!   timeout covers it (as in etcd). Forwarding was chosen over a `NotLeader` refusal so a
//!   client may write through any member (DESIGN.md §3); [`LogStatus::leader`] gives the hint
//!   for a client that prefers to go to the leader itself.
//! - **Committed entries** arrive on the apply executor in log order: `a.next().await` yields
//!   [`LogEvent::Committed`] batches (index-contiguous across batches),
//!   [`LogEvent::InstallSnapshot`] (replace the state machine from a file, then continue with
//!   the entries after it) and [`LogEvent::Dropped`]. `None` means the log core stopped.
//!   Membership entries (`EntryKind::ConfChange`) are delivered too (the log core has already
//!   applied them to Raft); the apply side records them but need not act.
//! - **Applied index**: `a.report_applied(applied, durable)` (atomics, no lock): `applied` is what
//!   the published read view covers, `durable` what the last durable B+tree commit covers. Log
//!   compaction never passes `durable`, so a restart can always replay from the durable index.
//! - **Restart**: pass the durable applied index to `builder.applied`; the log core re-delivers
//!   every committed entry after it (S4: the B+tree stores the applied index with its changes).
//! - **ReadIndex**: `c.read_index(ctx)` with a caller-chosen `u64` context. The log core
//!   covers every read queued since its last round with one Raft `read_index` call; answers come
//!   back on the same client's handle as batches from `c.next_reads().await`:
//!   [`ReadAnswer`] `{ ctx, result: Ok(index) | Err(Refusal) }`. The client core then waits
//!   until the published applied index ≥ `index` and serves the read. A round that is not
//!   confirmed within two election timeouts (or across a leader change) is answered with an
//!   error.
//! - **Membership and leadership**: `c.propose_conf_change(ConfChange)` and
//!   `c.transfer_leader(id)`; the outcome is observed through the log (the conf-change entry is
//!   delivered as committed; a change the Raft core refuses comes back as
//!   [`LogEvent::Dropped`] with `conf_change` set) and [`LogStatus`]. Peer addresses are the
//!   static `NodeConfig::peers`: removing members works, adding one needs its address in every
//!   member's configuration (no address book travels with the change yet).
//! - **Snapshots**: the log core compacts its log once `durable - snapshot_index >
//!   snapshot_count`, keeping `catch_up_entries` entries for slow followers. When a follower
//!   needs a snapshot, the leader's log core asks the [`SnapshotSource`] (on glommio's blocking
//!   pool, never on the loop) for the state machine at its applied index and sends it as
//!   checksummed chunks of [`frame::CHUNK`] bytes (at most [`frame::MAX_FRAME`] in all; both
//!   ends hold the whole payload in memory: streaming from and to disk is not built). The follower's
//!   log core writes the payload to `<data_dir>/snap/<index>.snap` with a CRC32C, syncs it,
//!   records the snapshot in the WAL, and delivers [`LogEvent::InstallSnapshot`] with the path.
//! - **Stop**: `stop.stop()`; `run` returns within about one tick (also when blocked on a full
//!   apply channel: undelivered entries are in the WAL and re-delivered on restart), after
//!   closing the WAL. A WAL failure stops the log core with [`NodeError`] (D2).
//!
//! All I/O, clocks and threads live here; the Raft core stays pure (DESIGN.md §7).

pub mod core;
pub mod frame;
pub mod inbox;
pub mod storage;
pub mod transport;

use crate::hop;
use keel_raft::consensus::{ConfChange, ConfState, Entry, NodeId, Role};
use keel_raft::wal::{WalError, WalOptions};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// How one member's log core is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This member's id (non-zero).
    pub id: NodeId,
    /// Every initial member (this one included) and its peer address; this member listens on
    /// its own.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Directory of this member's snapshot files (and, by default, its WAL).
    pub data_dir: PathBuf,
    /// Directory of this member's WAL (`<data_dir>/wal` unless set otherwise: `--wal-dir`).
    pub wal_dir: PathBuf,
    /// Milliseconds per Raft tick.
    pub tick_ms: u64,
    /// Ticks without a leader before campaigning.
    pub election_ticks: u32,
    /// Ticks between heartbeats.
    pub heartbeat_ticks: u32,
    /// Entries past the last snapshot before the log is compacted (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept behind a compaction for slow followers (etcd keeps 5000).
    pub catch_up_entries: u64,
    /// Seed of the Raft core's election-timeout RNG.
    pub seed: u64,
    /// Bound on committed − applied before proposals are refused (back-pressure, §3).
    pub max_apply_lag: u64,
    /// Capacity of each producer's request channel.
    pub client_queue: usize,
    /// Capacity of each peer's outbound queue; messages beyond it are dropped.
    pub peer_queue: usize,
    /// WAL options (segment size, sync mode).
    pub wal: WalOptions,
    /// Join an existing cluster (`--initial-cluster-state existing`): a new data directory
    /// starts with an empty log and learns the membership from the leader, instead of
    /// bootstrapping `peers` as the initial voters.
    pub join: bool,
    /// Addresses of members added at runtime (the apply side records them from membership
    /// entries); the transport looks up a peer it does not know yet here.
    pub peer_book: PeerBook,
}

/// Peer addresses shared between the apply side (writer, on membership changes) and the
/// transport (reader, only for a peer it has no connection for yet). Not on the request path.
pub type PeerBook = Arc<std::sync::RwLock<BTreeMap<NodeId, SocketAddr>>>;

impl NodeConfig {
    /// etcd-like defaults for member `id` with `peers`, storing under `data_dir`.
    pub fn new(id: NodeId, peers: BTreeMap<NodeId, SocketAddr>, data_dir: PathBuf) -> Self {
        NodeConfig {
            id,
            peers,
            wal_dir: data_dir.join("wal"),
            data_dir,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_count: 100_000,
            catch_up_entries: 5000,
            seed: id,
            max_apply_lag: 5000,
            client_queue: 4096,
            peer_queue: 4096,
            wal: WalOptions::default(),
            join: false,
            peer_book: PeerBook::default(),
        }
    }
}

/// Why a request was not accepted (the caller maps these to etcd's errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A bounded queue is full: etcd's "too many requests".
    TooManyRequests,
    /// No leader is known.
    NoLeader,
    /// The Raft core refused it (reason from the core).
    Dropped(String),
    /// The leader changed while a read round was pending.
    LeaderChanged,
    /// A read round was not confirmed in time.
    TimedOut,
    /// The log core has stopped.
    Stopped,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooManyRequests => write!(f, "too many requests"),
            Refusal::NoLeader => write!(f, "no leader"),
            Refusal::Dropped(why) => write!(f, "proposal dropped: {why}"),
            Refusal::LeaderChanged => write!(f, "leader changed"),
            Refusal::TimedOut => write!(f, "request timed out"),
            Refusal::Stopped => write!(f, "log core stopped"),
        }
    }
}

/// A fatal error of the log core: this node is dead until restarted (D2).
#[derive(Clone, Debug)]
pub enum NodeError {
    /// The WAL failed (I/O, corruption, failed state).
    Wal(WalError),
    /// A file outside the WAL (snapshot files) failed or is corrupt (D1).
    Storage(String),
    /// The configuration or the data directory does not fit (wrong applied index, ...).
    Config(String),
    /// The peer listener could not be bound.
    Listen(String),
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::Wal(e) => write!(f, "wal: {e:?}"),
            NodeError::Storage(e) => write!(f, "storage: {e}"),
            NodeError::Config(e) => write!(f, "config: {e}"),
            NodeError::Listen(e) => write!(f, "listen: {e}"),
        }
    }
}

impl std::error::Error for NodeError {}

impl From<WalError> for NodeError {
    fn from(e: WalError) -> Self {
        NodeError::Wal(e)
    }
}

/// A request from a producer (client core) to the log core.
#[derive(Clone, Debug)]
pub enum Request {
    /// Application data to replicate.
    Propose(Vec<u8>),
    /// A linearizable read identified by the caller's context.
    ReadIndex(u64),
    /// A membership change.
    ConfChange(ConfChange),
    /// Move leadership to this member.
    TransferLeader(NodeId),
}

/// The answer to one [`Request::ReadIndex`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadAnswer {
    /// The context the read was requested with.
    pub ctx: u64,
    /// The index the applied index must reach before the read is served, or why not.
    pub result: Result<u64, Refusal>,
}

/// What the log core hands to the apply side, in log order.
#[derive(Clone, Debug)]
pub enum LogEvent {
    /// Committed entries, contiguous and ascending; durable on a quorum (S5's first half).
    Committed(Vec<Entry>),
    /// Replace the state machine with the snapshot in `path` (written and synced by the log
    /// core; payload bytes exactly as the leader's [`SnapshotSource`] produced them), which
    /// covers the log up to `index`. Entries after it follow.
    InstallSnapshot {
        /// The payload file.
        path: PathBuf,
        /// Last index the snapshot covers.
        index: u64,
        /// Term of that entry.
        term: u64,
        /// Membership as of `index`.
        conf_state: ConfState,
    },
    /// Requests this member's Raft core refused; fail their waiters.
    Dropped {
        /// The refused proposals' data.
        proposals: Vec<Vec<u8>>,
        /// A refused membership change, if that was the request.
        conf_change: Option<ConfChange>,
        /// Why.
        reason: Refusal,
    },
}

/// The state machine's payload for a follower that needs a snapshot. Called on glommio's
/// blocking pool of the log executor, never on the loop itself.
pub trait SnapshotSource: Send + Sync + 'static {
    /// A consistent image of the state machine and the applied index it reflects. The index
    /// must be at least the durable applied index last reported.
    fn snapshot(&self) -> Result<(u64, Vec<u8>), String>;
}

/// Observable state of a log core, shared across executors (atomics only).
#[derive(Debug, Default)]
pub struct LogStatus {
    leader: AtomicU64,
    term: AtomicU64,
    role: AtomicU64,
    commit: AtomicU64,
    applied: AtomicU64,
    durable: AtomicU64,
    stopped: AtomicBool,
}

impl LogStatus {
    /// The leader this member knows of (0: none).
    pub fn leader(&self) -> NodeId {
        self.leader.load(Ordering::Acquire)
    }
    /// The member's current term.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    /// The member's role.
    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            1 => Role::PreCandidate,
            2 => Role::Candidate,
            3 => Role::Leader,
            _ => Role::Follower,
        }
    }
    /// The highest index handed to the apply side.
    pub fn commit(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }
    /// The applied index the apply side last reported.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
    /// Whether the log core has stopped (cleanly or after a fatal error).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
    fn set_role(&self, r: Role) {
        let v = match r {
            Role::Follower => 0,
            Role::PreCandidate => 1,
            Role::Candidate => 2,
            Role::Leader => 3,
        };
        self.role.store(v, Ordering::Release);
    }
}

/// Asks a running log core to stop. Send + Clone.
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Requests the stop; `run` returns within about one tick.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }
    fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The apply side's end, not yet bound to an executor. Send.
pub struct ApplyPort {
    rx: hop::Receiver<LogEvent>,
    status: Arc<LogStatus>,
}

impl ApplyPort {
    /// Binds the port to the calling (apply) executor.
    pub async fn connect(self) -> ApplyHandle {
        ApplyHandle {
            rx: self.rx.connect().await,
            status: self.status,
        }
    }
}

/// The apply side's end on its executor.
pub struct ApplyHandle {
    rx: hop::Rx<LogEvent>,
    status: Arc<LogStatus>,
}

impl ApplyHandle {
    /// The next event in log order; `None` once the log core stopped.
    pub async fn next(&self) -> Option<LogEvent> {
        self.rx.recv().await
    }
    /// Reports the applied index of the published read view and of the last durable commit.
    pub fn report_applied(&self, applied: u64, durable: u64) {
        self.status.applied.store(applied, Ordering::Release);
        self.status.durable.store(durable, Ordering::Release);
    }
    /// The log core's observable state.
    pub fn status(&self) -> &Arc<LogStatus> {
        &self.status
    }
}

/// A producer's end, not yet bound to an executor. Send.
pub struct ClientPort {
    tx: hop::Sender<Request>,
    answers: hop::Receiver<Vec<ReadAnswer>>,
    status: Arc<LogStatus>,
}

impl ClientPort {
    /// Binds the port to the calling (client) executor.
    pub async fn connect(self) -> ClientHandle {
        ClientHandle {
            tx: self.tx.connect().await,
            answers: self.answers.connect().await,
            status: self.status,
        }
    }
}

/// A producer's end on its executor.
pub struct ClientHandle {
    tx: hop::Tx<Request>,
    answers: hop::Rx<Vec<ReadAnswer>>,
    status: Arc<LogStatus>,
}

impl ClientHandle {
    fn submit(&self, r: Request) -> Result<(), Refusal> {
        if self.status.is_stopped() {
            return Err(Refusal::Stopped);
        }
        self.tx.try_send(r).map_err(|e| match e {
            glommio::GlommioError::WouldBlock(_) => Refusal::TooManyRequests,
            _ => Refusal::Stopped,
        })
    }
    /// Queues a proposal; never waits.
    pub fn propose(&self, data: Vec<u8>) -> Result<(), Refusal> {
        self.submit(Request::Propose(data))
    }
    /// Queues a linearizable read; the answer comes from [`ClientHandle::next_reads`].
    pub fn read_index(&self, ctx: u64) -> Result<(), Refusal> {
        self.submit(Request::ReadIndex(ctx))
    }
    /// Queues a membership change.
    pub fn propose_conf_change(&self, cc: ConfChange) -> Result<(), Refusal> {
        self.submit(Request::ConfChange(cc))
    }
    /// Asks for leadership to move to `target`.
    pub fn transfer_leader(&self, target: NodeId) -> Result<(), Refusal> {
        self.submit(Request::TransferLeader(target))
    }
    /// The next batch of read answers; `None` once the log core stopped.
    pub async fn next_reads(&self) -> Option<Vec<ReadAnswer>> {
        self.answers.recv().await
    }
    /// The log core's observable state.
    pub fn status(&self) -> &Arc<LogStatus> {
        &self.status
    }
}

/// Wires a log core's channels before the executors start. See the module documentation.
pub struct LogCoreBuilder {
    cfg: NodeConfig,
    applied: u64,
    source: Option<Arc<dyn SnapshotSource>>,
    apply_tx: Option<hop::Sender<LogEvent>>,
    clients: Vec<(hop::Receiver<Request>, hop::Sender<Vec<ReadAnswer>>)>,
    status: Arc<LogStatus>,
    stop: StopHandle,
}

/// Capacity of the log → apply channel, in events.
const APPLY_QUEUE: usize = 1024;
/// Capacity of each log → client read-answer channel, in batches.
const ANSWER_QUEUE: usize = 1024;

impl LogCoreBuilder {
    /// The durable applied index of the state machine (0 for a new one).
    pub fn applied(&mut self, applied: u64) -> &mut Self {
        self.applied = applied;
        self
    }
    /// Where snapshot payloads for lagging followers come from.
    pub fn snapshot_source(&mut self, s: Arc<dyn SnapshotSource>) -> &mut Self {
        self.source = Some(s);
        self
    }
    /// The apply side's port (call exactly once), for an apply side on another executor.
    pub fn apply_port(&mut self) -> ApplyPort {
        self.apply_port_with(false)
    }
    /// The apply side's port; `same_executor`: it will connect on the log core's executor.
    pub fn apply_port_with(&mut self, same_executor: bool) -> ApplyPort {
        assert!(self.apply_tx.is_none(), "one apply port per log core");
        let (tx, rx) = hop::bounded(APPLY_QUEUE, same_executor);
        self.apply_tx = Some(tx);
        ApplyPort {
            rx,
            status: self.status.clone(),
        }
    }
    /// A new producer's port (one per client core: each gets its own bounded channel, SPSC),
    /// for a producer on another executor.
    pub fn client_port(&mut self) -> ClientPort {
        self.client_port_with(false)
    }
    /// A new producer's port; `same_executor`: it will connect on the log core's executor.
    pub fn client_port_with(&mut self, same_executor: bool) -> ClientPort {
        let (tx, rx) = hop::bounded(self.cfg.client_queue.max(1), same_executor);
        let (atx, arx) = hop::bounded(ANSWER_QUEUE, same_executor);
        self.clients.push((rx, atx));
        ClientPort {
            tx,
            answers: arx,
            status: self.status.clone(),
        }
    }
    /// A handle that stops the log core.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }
    /// The shared observable state.
    pub fn status(&self) -> Arc<LogStatus> {
        self.status.clone()
    }
    /// Finishes the wiring. Panics if no apply port was taken (a wiring bug).
    pub fn build(self) -> LogCore {
        LogCore {
            cfg: self.cfg,
            applied: self.applied,
            source: self.source,
            apply_tx: self.apply_tx.expect("apply_port() was not called"),
            clients: self.clients,
            status: self.status,
            stop: self.stop,
        }
    }
}

/// A wired log core, ready to run on its executor. Send.
pub struct LogCore {
    cfg: NodeConfig,
    applied: u64,
    source: Option<Arc<dyn SnapshotSource>>,
    apply_tx: hop::Sender<LogEvent>,
    clients: Vec<(hop::Receiver<Request>, hop::Sender<Vec<ReadAnswer>>)>,
    status: Arc<LogStatus>,
    stop: StopHandle,
}

impl LogCore {
    /// Starts wiring a log core for `cfg`.
    pub fn builder(cfg: NodeConfig) -> LogCoreBuilder {
        LogCoreBuilder {
            cfg,
            applied: 0,
            source: None,
            apply_tx: None,
            clients: Vec::new(),
            status: Arc::new(LogStatus::default()),
            stop: StopHandle::default(),
        }
    }

    /// Runs the log core on the current glommio executor until stopped or a fatal error (after
    /// which the node must be restarted, D2). Opens (or bootstraps) the WAL, binds the peer
    /// listener, waits for the apply side to connect, then loops.
    pub async fn run(self) -> Result<(), NodeError> {
        let status = self.status.clone();
        let r = core::run(self).await;
        status.stopped.store(true, Ordering::Release);
        r
    }
}
