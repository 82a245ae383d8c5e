//! The apply core (DESIGN.md §2, §3 step 4): applies committed Raft entries in log order to the
//! MVCC store, the lessor and the watch hub; publishes the read view (a visible B+tree commit
//! per batch, with the applied index in the same transaction, S4); answers the proposers on
//! this member (S5: a write is answered only once it is durable on a quorum — the log core
//! delivers only committed entries — and applied here); makes the store durable periodically
//! (the WAL is the durability point; recovery replays from the durable applied index).
//!
//! Also the leader-side timers that must go through consensus: lease expiry and checkpoints
//! (L1: proposed as entries, never applied from the local clock), auto-compaction. And the
//! queries that need apply-core state (keepalive, TimeToLive, lease list, defragment).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hop;
use keel_engine::lease::{LeaseError, Lessor};
use keel_engine::mvcc::{AutoCompaction, AutoCompactor, Event, KvError, KvStore, KvWrite};
use keel_engine::watch::{WatchHub, WatchOptions, WatchResponse, WatchSink};
use keel_proto as p;
use keel_raft::consensus::{EntryKind, Role};

use crate::convert::{self, HeaderCtx};
use crate::members::{self, MemberRec};
use crate::msg::{core_of, ConnId, Query, Reply, ToApply, ToClient, Visibility};
use crate::raftnode::{ApplyHandle, ClientHandle, LogEvent, LogStatus, PeerBook};
use keel_raft::consensus::{ConfChange, ConfChangeKind};
use std::collections::BTreeMap;
use std::future::Future;

/// Watch responses a connection may have outstanding (handed over, not yet written) before
/// its watchers fall back to catching up from the store (etcd's victim handling).
pub const WATCH_CREDIT: usize = 1024;
/// Revisions read per catch-up round of behind watchers.
const SYNC_BATCH: usize = 1000;
/// Superseded revisions removed per physical compaction step.
const COMPACT_BATCH: usize = 1000;
/// Pause between physical compaction steps (etcd's compaction sleep interval): other writes get
/// the store between batches. Steps used to run once per [`TICK`], 10,000 revisions/s, so
/// compacting 49,000 revisions took 5.2–5.4 s (`keelctl compaction --physical`, tuning.md).
const COMPACT_PAUSE: Duration = Duration::from_millis(10);
/// How often the apply core's timer runs (durable sync, watch catch-up, leases).
const TICK: Duration = Duration::from_millis(100);
/// A batch is parked (applied and answered, not yet published) unless a read waits for it or
/// the parked batches exceed [`Park::max_entries`] or this many payload bytes: the bounds keep
/// the memory parking holds and the work of the publish that ends it small (it runs on the
/// executor, so every request waits for it). Unbounded, a put 10/100 run parked ~8,000 entries
/// between durable syncs and each publish took 7-10 ms, which became every in-flight request's
/// p99.
const PARK_MAX_BYTES: usize = 256 << 10;

/// When batches are parked (`--experimental-park-*`).
#[derive(Clone, Debug)]
pub struct Park {
    /// Applied entries kept out of the published view at most (0: publish every batch).
    pub max_entries: u64,
    /// After a read asked for a publish, batches are published as they apply for this long:
    /// with reads about, each would otherwise wait for its own publish request's round trip
    /// through the apply core (linearizable ranges next to puts at 10/100 lost a third of their
    /// throughput that way). Parking pays off in write-only stretches.
    pub after_read: Duration,
}

/// What the apply core needs; built by `node.rs`.
pub struct ApplyConfig {
    pub member_id: u64,
    pub cluster_id: u64,
    pub store: Arc<KvStore>,
    pub lessor_cfg: keel_engine::lease::LessorConfig,
    pub auto_compaction: Option<AutoCompaction>,
    pub max_response_bytes: usize,
    /// This member's name and client URLs (published to the cluster after start).
    pub name: String,
    pub client_urls: Vec<String>,
    /// The initial cluster from the configuration: (id, name, peer URLs). Members created by
    /// the bootstrap membership entries take their metadata from here.
    pub initial: Vec<(u64, String, Vec<String>)>,
    /// Peer addresses for the transport; updated when members are added, changed or removed.
    pub peer_book: PeerBook,
    /// How often the leader compares the members' HashKV (None: never).
    pub corrupt_check: Option<Duration>,
    /// Raised while a CORRUPT alarm is active (client cores refuse reads then).
    pub corrupt: Arc<std::sync::atomic::AtomicBool>,
    /// How far the published read view reaches (moved here, read by the client cores).
    pub vis: Arc<Visibility>,
    pub park: Park,
}

/// The auxiliary bucket of alarms other than NOSPACE: member id (BE) ‖ alarm type → [].
const ALARMS_BUCKET: &[u8] = b"alarms";
const ALARM_CORRUPT: u8 = 2;

/// Every recorded CORRUPT alarm's member.
pub fn corrupt_alarms(read: &keel_engine::mvcc::KvRead) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    read.aux_scan(ALARMS_BUCKET, |k, _| {
        if k.len() == 9 && k[8] == ALARM_CORRUPT {
            out.push(u64::from_be_bytes(k[..8].try_into().expect("8 bytes")));
        }
        true
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

fn alarm_key(member: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&member.to_be_bytes());
    k[8] = ALARM_CORRUPT;
    k
}

/// A membership request of this member waiting for its Raft change to be applied.
#[derive(Clone, Copy, Debug)]
enum ConfOp {
    Add,
    Remove,
    Promote,
}

/// A connection's watch stream: responses go to its client core, bounded by `credit`.
pub struct ConnSink {
    conn: ConnId,
    tx: Rc<hop::Tx<ToClient>>,
    credit: Arc<AtomicUsize>,
    status: Arc<LogStatus>,
    ids: (u64, u64),
}

fn watch_out(h: &HeaderCtx, r: WatchResponse) -> p::WatchResponse {
    p::WatchResponse {
        header: h.header(r.header_revision),
        watch_id: r.watch_id,
        created: r.created,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason,
        fragment: r.fragment,
        events: r
            .events
            .into_iter()
            .map(|e| convert::event_out(e, true))
            .collect(),
    }
}

impl WatchSink for ConnSink {
    fn try_send(&mut self, resp: WatchResponse) -> Result<(), WatchResponse> {
        if self.credit.load(Ordering::Acquire) >= WATCH_CREDIT {
            return Err(resp);
        }
        let h = HeaderCtx {
            cluster_id: self.ids.0,
            member_id: self.ids.1,
            raft_term: self.status.term(),
        };
        let keep = resp.clone();
        let msg = ToClient::Watch {
            conn: self.conn,
            resp: watch_out(&h, resp),
        };
        self.credit.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.credit.fetch_sub(1, Ordering::AcqRel);
                Err(keep)
            }
        }
    }

    fn has_room(&self) -> bool {
        self.credit.load(Ordering::Acquire) < WATCH_CREDIT
    }
}

struct State {
    cfg: ApplyConfig,
    lessor: Lessor,
    hub: WatchHub<ConnSink>,
    streams: HashMap<ConnId, keel_engine::watch::StreamId>,
    applied: u64,
    durable: u64,
    /// The applied index the published read view covers (≤ `applied`: later batches are
    /// parked), the last one announced to the client cores, and the highest index a read waits
    /// to see published.
    visible: u64,
    announced: u64,
    wanted: u64,
    /// Payload bytes of the entries applied since `visible`.
    parked_bytes: usize,
    /// Until when batches are published at once (a read asked recently, [`Park::after_read`]).
    reads_until: Instant,
    /// Replies held until physical compaction finishes (CompactionRequest.physical).
    physical_waiters: Vec<(usize, Reply)>,
    compacting: bool,
    autocompactor: Option<AutoCompactor>,
    epoch: Instant,
    leader: bool,
    /// Fatal error: the member stops applying (D2).
    failed: Option<String>,
    members: BTreeMap<u64, MemberRec>,
    /// node id → (waiter, what it asked) for this member's membership requests.
    conf_waiters: HashMap<u64, (u64, ConfOp)>,
    /// Whether this member's name and client URLs are recorded.
    published: bool,
    /// Whether the client cores were told to serve ([`ToClient::Ready`]).
    ready_sent: bool,
    /// Members with an active CORRUPT alarm.
    corrupt: Vec<u64>,
    /// When the leader last started a corruption check, and whether one is running.
    last_check: Duration,
    checking: bool,
}

impl State {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn header(&self, status: &LogStatus) -> HeaderCtx {
        HeaderCtx {
            cluster_id: self.cfg.cluster_id,
            member_id: self.cfg.member_id,
            raft_term: status.term(),
        }
    }
}

/// The apply core's channels.
pub struct ApplyIo {
    pub log: ApplyHandle,
    /// To propose lease revokes, checkpoints and auto-compactions (leader only).
    pub proposer: ClientHandle,
    pub to_clients: Vec<Rc<hop::Tx<ToClient>>>,
    pub from_clients: Vec<hop::Rx<ToApply>>,
}

fn lease_error(e: &LeaseError) -> p::ErrorResponse {
    match e {
        LeaseError::NotFound | LeaseError::Expired => {
            p::ErrorResponse::new(p::ErrorCode::LeaseNotFound)
        }
        LeaseError::AlreadyExists => p::ErrorResponse::new(p::ErrorCode::LeaseExist),
        LeaseError::TtlTooLarge => p::ErrorResponse::new(p::ErrorCode::LeaseTtlTooLarge),
        LeaseError::NotLeader => p::ErrorResponse::new(p::ErrorCode::NotLeader),
        LeaseError::Kv(k) => convert::kv_error(k),
    }
}

/// Runs the apply core on the current executor until the log core stops.
pub async fn run(cfg: ApplyConfig, io: ApplyIo) -> Result<(), String> {
    let store = cfg.store.clone();
    let lessor = Lessor::open(&store, cfg.lessor_cfg.clone()).map_err(|e| e.to_string())?;
    let read = store.read().map_err(|e| e.to_string())?;
    let applied = store.applied_index().map_err(|e| e.to_string())?;
    let hub = WatchHub::new(
        read.revision(),
        WatchOptions {
            max_response_bytes: cfg.max_response_bytes,
        },
    );
    let members = members::load(&read)?;
    let corrupt = corrupt_alarms(&read)?;
    drop(read);
    publish_addresses(&cfg.peer_book, &members);
    cfg.corrupt.store(!corrupt.is_empty(), Ordering::Release);
    let autocompactor = cfg.auto_compaction.map(AutoCompactor::new);
    let cfg_member_id = cfg.member_id;
    let (cfg_name, cfg_client_urls) = (cfg.name.clone(), cfg.client_urls.clone());
    let st = Rc::new(RefCell::new(State {
        cfg,
        lessor,
        hub,
        streams: HashMap::new(),
        applied,
        durable: applied,
        visible: applied,
        announced: applied,
        wanted: 0,
        parked_bytes: 0,
        reads_until: Instant::now(),
        physical_waiters: Vec::new(),
        compacting: true,
        autocompactor,
        epoch: Instant::now(),
        leader: false,
        failed: None,
        // Published when the stored record has this start's name and client URLs; otherwise
        // (first start, or changed flags) they are proposed again, as etcd does at every start.
        published: members
            .get(&cfg_member_id)
            .is_some_and(|m| m.name == cfg_name && m.client_urls == cfg_client_urls),
        ready_sent: false,
        members,
        conf_waiters: HashMap::new(),
        corrupt,
        last_check: Duration::ZERO,
        checking: false,
    }));
    let ApplyIo {
        log,
        proposer,
        to_clients,
        from_clients,
    } = io;
    let io = Rc::new(Shared {
        log,
        proposer,
        to_clients,
        store_gate: glommio::sync::RwLock::new(()),
    });
    io.log.report_applied(applied, applied);
    {
        let s = st.borrow();
        s.cfg.vis.set_published(applied);
        s.cfg.vis.set_acked(applied);
    }
    announce_ready(&st, &io).await;
    // Client requests: one task per client core's channel.
    let mut tasks = Vec::new();
    for (i, rx) in from_clients.into_iter().enumerate() {
        let st = st.clone();
        let io = io.clone();
        tasks.push(glommio::spawn_local(async move {
            while let Some(m) = rx.recv().await {
                on_client_message(&st, &io, i, m).await;
            }
        }));
    }
    // Timers: the tick (durable sync, watch catch-up, leases) and physical compaction (one
    // bounded step every COMPACT_PAUSE while one is scheduled).
    let timer = spawn_store_task(
        &st,
        &io,
        |_| Some(TICK),
        |st, io| async move { on_tick(&st, &io).await },
    );
    let compactor = spawn_store_task(
        &st,
        &io,
        |s| s.compacting.then_some(COMPACT_PAUSE),
        |st, io| async move { compaction_step(&st, &io).await },
    );
    // The main loop: committed entries in log order.
    let result = loop {
        let Some(ev) = io.log.next().await else {
            break Ok(());
        };
        if let Some(e) = st.borrow().failed.clone() {
            break Err(e);
        }
        let gate = io.store_gate.read().await;
        let r = match ev {
            LogEvent::Committed(entries) => {
                crate::stages::mark(crate::stages::Stage::ApplyReceived);
                apply_entries(&st, &io, entries).await
            }
            LogEvent::Dropped {
                proposals,
                reason,
                conf_change,
            } => {
                if let Some(cc) = conf_change {
                    let waiter = st.borrow_mut().conf_waiters.remove(&cc.node_id);
                    if let Some((seq, _)) = waiter {
                        let mut replies = reply_slots(&io);
                        route(&mut replies, seq, Err(refusal_error(&reason)));
                        send_replies(&io, replies).await;
                    }
                }
                fail_dropped(&st, &io, proposals, &reason).await;
                Ok(())
            }
            LogEvent::InstallSnapshot { path, index, .. } => {
                install_snapshot(&st, &io, &path, index)
            }
        };
        drop(gate);
        if let Err(e) = r {
            tracing::error!(error = %e, "apply failed; this member stops applying (D2)");
            st.borrow_mut().failed = Some(e.clone());
            break Err(e);
        }
        announce_visible(&st, &io).await;
    };
    drop(timer);
    drop(compactor);
    drop(tasks);
    // A clean stop: make everything applied durable.
    let s = st.borrow();
    if s.failed.is_none() {
        s.cfg.store.sync().map_err(|e| e.to_string())?;
    }
    result
}

/// A task of the apply core that sleeps `pause(state)`, then runs `work` under the store gate,
/// until the log core stops; an error from `work` fails the apply core. While `pause` returns
/// `None` (nothing to do) it only sleeps a [`TICK`] and looks again, without taking the gate.
fn spawn_store_task<W, F>(
    st: &Rc<RefCell<State>>,
    io: &Rc<Shared>,
    pause: fn(&State) -> Option<Duration>,
    work: W,
) -> glommio::Task<()>
where
    W: Fn(Rc<RefCell<State>>, Rc<Shared>) -> F + 'static,
    F: Future<Output = Result<(), String>>,
{
    let st = st.clone();
    let io = io.clone();
    glommio::spawn_local(async move {
        loop {
            let wait = pause(&st.borrow());
            glommio::timer::sleep(wait.unwrap_or(TICK)).await;
            if io.log.status().is_stopped() {
                break;
            }
            if pause(&st.borrow()).is_none() {
                continue;
            }
            let gate = io.store_gate.read().await;
            let r = work(st.clone(), io.clone()).await;
            drop(gate);
            if let Err(e) = r {
                st.borrow_mut().failed = Some(e.clone());
                tracing::error!(error = %e, "apply core failed");
                break;
            }
        }
    })
}

/// The channels once the receivers have been handed to their tasks.
struct Shared {
    log: ApplyHandle,
    proposer: ClientHandle,
    to_clients: Vec<Rc<hop::Tx<ToClient>>>,
    /// Held shared around the apply core's own store writes, exclusively around a defrag (which
    /// holds the B+tree's writer for its whole copy on a blocking thread). A write would block
    /// this executor's thread on that lock — and with it any role sharing the executor, the log
    /// core included — so it waits here, asynchronously, instead.
    store_gate: glommio::sync::RwLock<()>,
}

/// One empty batch of replies per client core.
fn reply_slots(io: &Shared) -> Vec<Vec<Reply>> {
    (0..io.to_clients.len()).map(|_| Vec::new()).collect()
}

/// Where a reply for `id` (a tagged proposal or query sequence) goes, if this member has it.
fn route(replies: &mut [Vec<Reply>], id: u64, resp: Result<p::Response, p::ErrorResponse>) {
    let core = core_of(id);
    if let Some(v) = replies.get_mut(core) {
        v.push(Reply { seq: id, resp });
    }
}

async fn send_replies(io: &Shared, replies: Vec<Vec<Reply>>) {
    for (i, batch) in replies.into_iter().enumerate() {
        if !batch.is_empty() {
            let _ = io.to_clients[i].send(ToClient::Replies(batch)).await;
        }
    }
}

/// The published view now covers `index` (every batch applied so far, when called after a
/// commit that published what was parked).
fn mark_visible(s: &mut State, index: u64) {
    s.visible = s.visible.max(index);
    if s.visible >= s.applied {
        s.parked_bytes = 0;
    }
    s.cfg.vis.set_published(s.visible);
}

/// Publishes parked batches now (a visible commit), if any.
fn publish_parked(s: &mut State) -> Result<(), String> {
    if s.visible < s.applied {
        s.cfg.store.publish().map_err(|e| e.to_string())?;
        let a = s.applied;
        mark_visible(s, a);
    }
    Ok(())
}

/// Tells every client core how far the published view reaches, when that moved: reads waiting
/// for it are served.
async fn announce_visible(st: &Rc<RefCell<State>>, io: &Shared) {
    let v = {
        let mut s = st.borrow_mut();
        if s.visible <= s.announced {
            return;
        }
        s.announced = s.visible;
        s.visible
    };
    for tx in &io.to_clients {
        let _ = tx.send(ToClient::Applied(v)).await;
    }
}

/// Applies one request of an entry; returns the wire response.
fn apply_one(
    s: &mut State,
    w: &mut KvWrite<'_>,
    h: &HeaderCtx,
    req: p::InternalRequest,
    index: u64,
) -> Result<Result<p::Response, p::ErrorResponse>, String> {
    let fatal = |e: &KvError| e.is_fatal();
    // etcd's corrupt applier: with a CORRUPT alarm active, the data path is closed.
    if !s.corrupt.is_empty()
        && matches!(
            req.body,
            p::InternalBody::Put(_)
                | p::InternalBody::DeleteRange(_)
                | p::InternalBody::Txn(_)
                | p::InternalBody::Compaction(_)
                | p::InternalBody::LeaseGrant(_)
                | p::InternalBody::LeaseRevoke(_)
        )
    {
        return Ok(Err(p::ErrorResponse::new(p::ErrorCode::Corrupt)));
    }
    let r: Result<p::Response, p::ErrorResponse> = match req.body {
        p::InternalBody::Put(r) => match w.put(&convert::put_in(r)) {
            Ok(resp) => Ok(p::Response::Put(convert::put_out(h, resp))),
            Err(e) if fatal(&e) => return Err(e.to_string()),
            Err(e) => Err(convert::kv_error(&e)),
        },
        p::InternalBody::DeleteRange(r) => match w.delete_range(&convert::delete_in(r)) {
            Ok(resp) => Ok(p::Response::DeleteRange(convert::delete_out(h, resp))),
            Err(e) if fatal(&e) => return Err(e.to_string()),
            Err(e) => Err(convert::kv_error(&e)),
        },
        p::InternalBody::Txn(t) => match w.txn(&convert::txn_in(t)) {
            Ok(resp) => Ok(p::Response::Txn(convert::txn_out(h, resp))),
            Err(e) if fatal(&e) => return Err(e.to_string()),
            Err(e) => Err(convert::kv_error(&e)),
        },
        p::InternalBody::Compaction(c) => match w.compact(c.revision) {
            Ok(resp) => {
                s.compacting = true;
                Ok(p::Response::Compact(p::CompactionResponse {
                    header: h.header(resp.header.revision),
                }))
            }
            Err(e) if fatal(&e) => return Err(e.to_string()),
            Err(e) => Err(convert::kv_error(&e)),
        },
        p::InternalBody::LeaseGrant(g) => {
            let now = s.now();
            match s.lessor.grant(w, g.id, g.ttl, req.header.id ^ index, now) {
                Ok((id, ttl)) => Ok(p::Response::LeaseGrant(p::LeaseGrantResponse {
                    header: h.header(w.revision()),
                    id,
                    ttl,
                    error: String::new(),
                })),
                Err(e) if e.is_fatal() => return Err(e.to_string()),
                Err(e) => Err(lease_error(&e)),
            }
        }
        p::InternalBody::LeaseRevoke(r) => match s.lessor.revoke(w, r.id) {
            Ok(resp) => Ok(p::Response::LeaseRevoke(p::LeaseRevokeResponse {
                header: h.header(resp.header.revision),
            })),
            Err(e) if e.is_fatal() => return Err(e.to_string()),
            Err(e) => Err(lease_error(&e)),
        },
        p::InternalBody::LeaseCheckpoint(c) => {
            for cp in c.checkpoints {
                if let Err(e) = s.lessor.checkpoint(w, cp.id, cp.remaining_ttl) {
                    if e.is_fatal() {
                        return Err(e.to_string());
                    }
                }
            }
            Ok(p::Response::LeaseLeases(p::LeaseLeasesResponse::default()))
        }
        p::InternalBody::Alarm(a) => Ok(p::Response::Alarm(apply_alarm(s, w, a)?)),
        p::InternalBody::MemberAdd(_)
        | p::InternalBody::MemberRemove(_)
        | p::InternalBody::MemberUpdate(_)
        | p::InternalBody::MemberPromote(_)
        | p::InternalBody::MemberAttrs(_) => {
            unreachable!("membership entries are applied by apply_member")
        }
    };
    Ok(r)
}

fn publish_addresses(book: &PeerBook, members: &BTreeMap<u64, MemberRec>) {
    let mut b = book.write().unwrap_or_else(|e| e.into_inner());
    for (id, m) in members {
        if let Some(addr) = m
            .peer_urls
            .first()
            .and_then(|u| crate::config::url_addr(u).ok())
        {
            b.insert(*id, addr);
        }
    }
}

/// Applies a membership entry. `Ok(None)`: the answer waits for the Raft change that this
/// member (the proposer) proposes now.
fn apply_member(
    s: &mut State,
    w: &mut KvWrite<'_>,
    h: &HeaderCtx,
    body: p::InternalBody,
    proposer: Option<(&ClientHandle, u64)>,
) -> Result<Option<Result<p::Response, p::ErrorResponse>>, String> {
    let err = |c| Ok(Some(Err(p::ErrorResponse::new(c))));
    let propose = |s: &mut State, kind: ConfChangeKind, id: u64, op: ConfOp| {
        let Some((proposer, seq)) = proposer else {
            return Ok(Some(Ok(p::Response::MemberList(
                p::MemberListResponse::default(),
            ))));
        };
        match proposer.propose_conf_change(ConfChange { kind, node_id: id }) {
            Ok(()) => {
                s.conf_waiters.insert(id, (seq, op));
                Ok(None)
            }
            Err(r) => Ok(Some(Err(refusal_error(&r)))),
        }
    };
    match body {
        p::InternalBody::MemberAdd(a) => {
            if s.members.contains_key(&a.id) {
                return err(p::ErrorCode::MemberExist);
            }
            if a.peer_urls.is_empty()
                || a.peer_urls
                    .iter()
                    .any(|u| crate::config::url_addr(u).is_err())
            {
                return err(p::ErrorCode::MemberBadUrls);
            }
            if s.members
                .values()
                .any(|m| m.peer_urls.iter().any(|u| a.peer_urls.contains(u)))
            {
                return err(p::ErrorCode::PeerUrlExist);
            }
            let rec = MemberRec {
                peer_urls: a.peer_urls,
                is_learner: a.is_learner,
                ..MemberRec::default()
            };
            members::store(w, a.id, &rec)?;
            s.members.insert(a.id, rec);
            publish_addresses(&s.cfg.peer_book, &s.members);
            let kind = if a.is_learner {
                ConfChangeKind::AddLearner
            } else {
                ConfChangeKind::AddVoter
            };
            propose(s, kind, a.id, ConfOp::Add)
        }
        p::InternalBody::MemberRemove(r) => {
            if !s.members.contains_key(&r.id) {
                return err(p::ErrorCode::MemberNotFound);
            }
            propose(s, ConfChangeKind::RemoveNode, r.id, ConfOp::Remove)
        }
        p::InternalBody::MemberPromote(r) => match s.members.get(&r.id) {
            None => err(p::ErrorCode::MemberNotFound),
            Some(m) if !m.is_learner => err(p::ErrorCode::MemberNotLearner),
            Some(_) => propose(s, ConfChangeKind::AddVoter, r.id, ConfOp::Promote),
        },
        p::InternalBody::MemberUpdate(u) => {
            let Some(mut rec) = s.members.get(&u.id).cloned() else {
                return err(p::ErrorCode::MemberNotFound);
            };
            if u.peer_urls.is_empty()
                || u.peer_urls
                    .iter()
                    .any(|x| crate::config::url_addr(x).is_err())
            {
                return err(p::ErrorCode::MemberBadUrls);
            }
            rec.peer_urls = u.peer_urls;
            members::store(w, u.id, &rec)?;
            s.members.insert(u.id, rec);
            publish_addresses(&s.cfg.peer_book, &s.members);
            Ok(Some(Ok(p::Response::MemberUpdate(
                p::MemberUpdateResponse {
                    header: h.header(0),
                    members: members::to_proto(&s.members),
                },
            ))))
        }
        p::InternalBody::MemberAttrs(a) => {
            if let Some(mut rec) = s.members.get(&a.id).cloned() {
                rec.name = a.name;
                rec.client_urls = a.client_urls;
                members::store(w, a.id, &rec)?;
                s.members.insert(a.id, rec);
            }
            if a.id == s.cfg.member_id {
                s.published = true;
            }
            Ok(Some(Ok(p::Response::MemberList(
                p::MemberListResponse::default(),
            ))))
        }
        _ => unreachable!("not a membership entry"),
    }
}

/// Applies a Raft membership change entry to the member records; answers this member's
/// request that waited for it.
fn apply_conf_change(
    s: &mut State,
    w: &mut KvWrite<'_>,
    h: &HeaderCtx,
    cc: ConfChange,
    replies: &mut [Vec<Reply>],
) -> Result<(), String> {
    let id = cc.node_id;
    match cc.kind {
        ConfChangeKind::AddVoter | ConfChangeKind::AddLearner => {
            let mut rec = s.members.get(&id).cloned().unwrap_or_else(|| {
                // A bootstrap member: its metadata comes from the initial cluster.
                let init = s.cfg.initial.iter().find(|(i, _, _)| *i == id);
                MemberRec {
                    name: init.map(|i| i.1.clone()).unwrap_or_default(),
                    peer_urls: init.map(|i| i.2.clone()).unwrap_or_default(),
                    ..MemberRec::default()
                }
            });
            rec.is_learner = cc.kind == ConfChangeKind::AddLearner;
            members::store(w, id, &rec)?;
            s.members.insert(id, rec);
            publish_addresses(&s.cfg.peer_book, &s.members);
        }
        ConfChangeKind::RemoveNode => {
            members::remove(w, id)?;
            s.members.remove(&id);
            s.cfg
                .peer_book
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
    if let Some((seq, op)) = s.conf_waiters.remove(&id) {
        let list = members::to_proto(&s.members);
        let resp = match op {
            ConfOp::Add => p::Response::MemberAdd(p::MemberAddResponse {
                header: h.header(0),
                member: s.members.get(&id).map(|m| m.to_proto(id)),
                members: list,
            }),
            ConfOp::Remove => p::Response::MemberRemove(p::MemberRemoveResponse {
                header: h.header(0),
                members: list,
            }),
            ConfOp::Promote => p::Response::MemberPromote(p::MemberPromoteResponse {
                header: h.header(0),
                members: list,
            }),
        };
        route(replies, seq, Ok(resp));
    }
    Ok(())
}

fn apply_alarm(
    s: &mut State,
    w: &mut KvWrite<'_>,
    a: p::AlarmRequest,
) -> Result<p::AlarmResponse, String> {
    match (a.action, a.alarm) {
        (p::AlarmAction::Activate, p::AlarmType::NoSpace) => {
            w.raise_nospace().map_err(|e| e.to_string())?
        }
        (p::AlarmAction::Deactivate, p::AlarmType::NoSpace) => {
            w.clear_nospace().map_err(|e| e.to_string())?
        }
        (p::AlarmAction::Activate, p::AlarmType::Corrupt) => {
            w.aux_put(ALARMS_BUCKET, &alarm_key(a.member_id), &[])
                .map_err(|e| e.to_string())?;
            if !s.corrupt.contains(&a.member_id) {
                s.corrupt.push(a.member_id);
            }
            tracing::error!(
                member = format_args!("{:x}", a.member_id),
                "CORRUPT alarm raised"
            );
        }
        (p::AlarmAction::Deactivate, p::AlarmType::Corrupt) => {
            w.aux_delete(ALARMS_BUCKET, &alarm_key(a.member_id))
                .map_err(|e| e.to_string())?;
            s.corrupt.retain(|&m| m != a.member_id);
        }
        _ => {}
    }
    s.cfg
        .corrupt
        .store(!s.corrupt.is_empty(), Ordering::Release);
    let mut alarms: Vec<p::AlarmMember> = s
        .corrupt
        .iter()
        .map(|&m| p::AlarmMember {
            member_id: m,
            alarm: p::AlarmType::Corrupt,
        })
        .collect();
    if w.nospace() {
        alarms.push(p::AlarmMember {
            member_id: s.cfg.member_id,
            alarm: p::AlarmType::NoSpace,
        });
    }
    // etcd 3.4 answers alarm requests without a response header (etcdctl prints `{}`).
    Ok(p::AlarmResponse {
        header: p::ResponseHeader::default(),
        alarms,
    })
}

async fn apply_entries(
    st: &Rc<RefCell<State>>,
    io: &Shared,
    entries: Vec<keel_raft::consensus::Entry>,
) -> Result<(), String> {
    let Some(last) = entries.last().map(|e| e.index) else {
        return Ok(());
    };
    let status = io.log.status().clone();
    let mut replies = reply_slots(io);
    let (rev, events) = {
        let mut guard = st.borrow_mut();
        let s = &mut *guard;
        if last <= s.applied {
            return Ok(()); // already applied before a restart
        }
        let h = s.header(&status);
        let store = s.cfg.store.clone();
        let mut w = store.write().map_err(|e| e.to_string())?;
        w.set_lease_check(s.lessor.lease_check());
        let mut events: Vec<Event> = Vec::new();
        for e in entries {
            if e.index <= s.applied {
                continue;
            }
            s.parked_bytes += e.data.len();
            if e.kind == EntryKind::ConfChange {
                match ConfChange::decode(&e.data) {
                    Ok(cc) => apply_conf_change(s, &mut w, &h, cc, &mut replies)?,
                    // The log core already applied it to Raft; it decoded there (D1).
                    Err(err) => return Err(format!("conf change at {}: {err}", e.index)),
                }
                continue;
            }
            if e.kind != EntryKind::Normal || e.data.is_empty() {
                continue;
            }
            let req = match p::InternalRequest::decode(&e.data) {
                Ok(r) => r,
                // D1: the entry came from disk or a peer and was checked by the WAL or the
                // transport; a payload that still fails to decode was written by a broken
                // proposer. Every member skips it identically, so state stays equal.
                Err(err) => {
                    tracing::error!(index = e.index, error = %err, "undecodable entry skipped");
                    continue;
                }
            };
            let id = req.header.id;
            let mine = req.header.member_id == s.cfg.member_id;
            let physical = matches!(&req.body, p::InternalBody::Compaction(c) if c.physical);
            if matches!(
                req.body,
                p::InternalBody::MemberAdd(_)
                    | p::InternalBody::MemberRemove(_)
                    | p::InternalBody::MemberUpdate(_)
                    | p::InternalBody::MemberPromote(_)
                    | p::InternalBody::MemberAttrs(_)
            ) {
                let proposer = mine.then_some((&io.proposer, id));
                if let Some(resp) = apply_member(s, &mut w, &h, req.body, proposer)? {
                    if mine {
                        route(&mut replies, id, resp);
                    }
                }
                continue;
            }
            let resp = apply_one(s, &mut w, &h, req, e.index)?;
            let evs = w.take_events();
            s.lessor.observe(&evs);
            events.extend(evs);
            if mine {
                if physical && resp.is_ok() {
                    // Answered once the superseded revisions are gone (etcd's physical).
                    s.physical_waiters
                        .push((core_of(id), Reply { seq: id, resp }));
                } else {
                    route(&mut replies, id, resp);
                }
            }
        }
        let rev = w.revision();
        // Published now when a read waits for this batch (or an earlier one) or the parked
        // batches grew large; otherwise parked, to share a later visible commit. Either way the
        // replies go out now: the entries are durable in the WAL (S5), and a read is served
        // only once the published view covers every index answered (`Visibility`).
        let read_waits = s.wanted > s.visible || Instant::now() < s.reads_until;
        let full = last - s.visible > s.cfg.park.max_entries || s.parked_bytes > PARK_MAX_BYTES;
        s.applied = last;
        if read_waits || full {
            w.commit(last).map_err(|e| e.to_string())?;
            mark_visible(s, last);
        } else {
            w.park(last).map_err(|e| e.to_string())?;
        }
        crate::stages::mark(crate::stages::Stage::Applied);
        s.cfg.vis.set_acked(last);
        (rev, events)
    };
    {
        let mut s = st.borrow_mut();
        s.hub.notify(rev, &events);
        let (a, d) = (s.applied, s.durable);
        io.log.report_applied(a, d);
    }
    send_replies(io, replies).await;
    announce_visible(st, io).await;
    announce_ready(st, io).await;
    Ok(())
}

/// Tells every client core to start serving, once this member is published.
async fn announce_ready(st: &Rc<RefCell<State>>, io: &Shared) {
    {
        let mut s = st.borrow_mut();
        if !s.published || s.ready_sent {
            return;
        }
        s.ready_sent = true;
    }
    for tx in &io.to_clients {
        let _ = tx.send(ToClient::Ready).await;
    }
}

async fn fail_dropped(
    st: &Rc<RefCell<State>>,
    io: &Shared,
    proposals: Vec<Vec<u8>>,
    reason: &crate::raftnode::Refusal,
) {
    let member = st.borrow().cfg.member_id;
    let mut replies = reply_slots(io);
    let err = refusal_error(reason);
    for data in proposals {
        if let Ok(req) = p::InternalRequest::decode(&data) {
            if req.header.member_id == member {
                route(&mut replies, req.header.id, Err(err.clone()));
            }
        }
    }
    send_replies(io, replies).await;
}

/// The wire error for a log-core refusal.
pub fn refusal_error(r: &crate::raftnode::Refusal) -> p::ErrorResponse {
    use crate::raftnode::Refusal;
    p::ErrorResponse::new(match r {
        Refusal::TooManyRequests => p::ErrorCode::TooManyRequests,
        Refusal::NoLeader => p::ErrorCode::NoLeader,
        Refusal::Dropped(_) => p::ErrorCode::NoLeader,
        Refusal::LeaderChanged => p::ErrorCode::LeaderChanged,
        Refusal::TimedOut => p::ErrorCode::Timeout,
        Refusal::Stopped => p::ErrorCode::Stopped,
    })
}

fn install_snapshot(
    st: &Rc<RefCell<State>>,
    io: &Shared,
    path: &std::path::Path,
    index: u64,
) -> Result<(), String> {
    let mut s = st.borrow_mut();
    s.cfg
        .store
        .database()
        .install(path)
        .map_err(|e| format!("installing snapshot {}: {e}", path.display()))?;
    let applied = s.cfg.store.applied_index().map_err(|e| e.to_string())?;
    if applied < index {
        return Err(format!(
            "snapshot {} covers index {applied}, expected {index}",
            path.display()
        ));
    }
    let lessor = Lessor::open(&s.cfg.store, s.cfg.lessor_cfg.clone()).map_err(|e| e.to_string())?;
    s.lessor = lessor;
    if s.leader {
        let now = s.now();
        s.lessor.promote(now);
    }
    let rev = s.cfg.store.read().map_err(|e| e.to_string())?.revision();
    // Watchers continue from the installed revision: those behind catch up from the store.
    let streams: Vec<_> = s.streams.drain().collect();
    for (_, sid) in streams {
        s.hub.close_stream(sid);
    }
    s.hub = WatchHub::new(
        rev,
        WatchOptions {
            max_response_bytes: s.cfg.max_response_bytes,
        },
    );
    let read = s.cfg.store.read().map_err(|e| e.to_string())?;
    s.members = members::load(&read)?;
    drop(read);
    publish_addresses(&s.cfg.peer_book, &s.members);
    s.applied = applied;
    s.durable = applied;
    // The installed file superseded anything parked (`Database::install` dropped it).
    mark_visible(&mut s, applied);
    s.cfg.vis.set_acked(applied);
    io.log.report_applied(applied, applied);
    tracing::info!(index = applied, "installed snapshot");
    Ok(())
}

/// Durable commit of the store (the WAL covers everything after it), on the blocking pool; then
/// tells the log core how far the store is durable.
async fn sync_store(st: &Rc<RefCell<State>>, io: &Rc<Shared>) -> Result<(), String> {
    let (store, applied) = {
        let mut s = st.borrow_mut();
        // Published here rather than by the durable commit's first half on the blocking
        // thread, which holds the writer while it writes pages: preempted there (two CPUs shared
        // with clients), it held this executor's next apply batch 11-19 ms (perf trace).
        publish_parked(&mut s)?;
        (s.cfg.store.clone(), s.applied)
    };
    let r = glommio::executor()
        .spawn_blocking(move || store.sync())
        .await;
    r.map_err(|e| e.to_string())?;
    {
        let mut s = st.borrow_mut();
        s.durable = s.durable.max(applied.min(s.applied));
        let (a, d) = (s.applied, s.durable);
        io.log.report_applied(a, d);
    }
    announce_visible(st, io).await;
    Ok(())
}

/// Removes one batch of superseded revisions and makes the step durable; once none remain,
/// answers the `--physical` compaction requests waiting for it.
///
/// Durable after every step because the pages a step frees are reusable only once a durable
/// commit no longer references them (S3): without it, a compaction with no other writes
/// running rewrote the whole history into new pages (200,000 revisions: the file grew from
/// 108 to 243 MiB before its pages came free).
async fn compaction_step(st: &Rc<RefCell<State>>, io: &Rc<Shared>) -> Result<(), String> {
    let (store, applied) = {
        let s = st.borrow();
        (s.cfg.store.clone(), s.applied)
    };
    let done = store
        .compact_step(COMPACT_BATCH)
        .map_err(|e| e.to_string())?;
    // The step's commit published what was parked.
    mark_visible(&mut st.borrow_mut(), applied);
    sync_store(st, io).await?;
    if done {
        let waiters = {
            let mut s = st.borrow_mut();
            s.compacting = false;
            std::mem::take(&mut s.physical_waiters)
        };
        let mut replies = reply_slots(io);
        for (core, r) in waiters {
            replies[core].push(r);
        }
        send_replies(io, replies).await;
    }
    Ok(())
}

async fn on_tick(st: &Rc<RefCell<State>>, io: &Rc<Shared>) -> Result<(), String> {
    // Durable commit of the store (the WAL covers everything after it).
    let need_sync = {
        let s = st.borrow();
        s.durable < s.applied
    };
    if need_sync {
        sync_store(st, io).await?;
    }
    // Watchers behind: catch up from the store.
    {
        let mut s = st.borrow_mut();
        s.hub.flush();
        if s.hub.needs_sync() {
            // The hub's revision may be in parked batches: catch-up reads must see them.
            publish_parked(&mut s)?;
            let read = s.cfg.store.read().map_err(|e| e.to_string())?;
            s.hub
                .sync_unsynced(&read, SYNC_BATCH)
                .map_err(|e| e.to_string())?;
        }
    }
    let mut proposals = Vec::new();
    {
        let mut s = st.borrow_mut();
        let is_leader = sync_leadership(&mut s, io.log.status());
        let now = s.now();
        if is_leader {
            let max = s.lessor.config().max_revokes_per_round;
            for id in s.lessor.expired(now, max) {
                proposals.push(p::InternalBody::LeaseRevoke(p::LeaseRevokeRequest { id }));
            }
            let maxc = s.lessor.config().max_checkpoints_per_round;
            let cps = s.lessor.checkpoints_due(now, maxc);
            if !cps.is_empty() {
                proposals.push(p::InternalBody::LeaseCheckpoint(
                    p::internal::LeaseCheckpointRequest {
                        checkpoints: cps
                            .into_iter()
                            .map(|(id, remaining_ttl)| p::internal::LeaseCheckpoint {
                                id,
                                remaining_ttl,
                            })
                            .collect(),
                    },
                ));
            }
            let rev = s.hub.revision();
            let now_ms = now.as_millis() as u64;
            if let Some(ac) = s.autocompactor.as_mut() {
                if let Some(r) = ac.tick(now_ms, rev) {
                    proposals.push(p::InternalBody::Compaction(p::CompactionRequest {
                        revision: r,
                        physical: false,
                    }));
                }
            }
        }
    }
    {
        let s = st.borrow();
        let me = s.cfg.member_id;
        if !s.published && io.log.status().leader() != 0 && s.members.contains_key(&me) {
            proposals.push(p::InternalBody::MemberAttrs(p::MemberAttrsEntry {
                id: me,
                name: s.cfg.name.clone(),
                client_urls: s.cfg.client_urls.clone(),
            }));
        }
    }
    start_corrupt_check(st, io);
    let member = st.borrow().cfg.member_id;
    for body in proposals {
        // Proposals of the apply core have no waiter: core_of(u64::MAX) is no client core.
        let req = p::InternalRequest {
            header: p::InternalHeader {
                id: u64::MAX,
                member_id: member,
            },
            body,
        };
        if let Ok(data) = req.encode() {
            // A refused proposal is retried at a later tick (the lessor reports the lease
            // again after its retry interval).
            let _ = io.proposer.propose(data.to_vec());
        }
    }
    st.borrow_mut().hub.progress_tick();
    Ok(())
}

/// The leader's periodic corruption check (etcd's): its own HashKV at its revision against
/// every other member's at the same revision, asked over the client protocol; a member whose
/// hash differs (with the same compaction revision) gets a CORRUPT alarm, raised through Raft.
fn start_corrupt_check(st: &Rc<RefCell<State>>, io: &Rc<Shared>) {
    let (store, peers, me) = {
        let mut s = st.borrow_mut();
        let Some(every) = s.cfg.corrupt_check else {
            return;
        };
        let now = s.now();
        if !s.leader || s.checking || now < s.last_check + every {
            return;
        }
        s.last_check = now;
        s.checking = true;
        let me = s.cfg.member_id;
        let peers: Vec<(u64, std::net::SocketAddr)> = s
            .members
            .iter()
            .filter(|(id, m)| **id != me && !m.is_learner)
            .filter_map(|(id, m)| {
                let url = m.client_urls.first()?;
                Some((*id, crate::config::url_addr(url).ok()?))
            })
            .collect();
        (s.cfg.store.clone(), peers, me)
    };
    let st = st.clone();
    let io = io.clone();
    glommio::spawn_local(async move {
        let bad = check_hashes(store, peers).await;
        st.borrow_mut().checking = false;
        for m in bad {
            tracing::error!(
                member = format_args!("{m:x}"),
                "HashKV differs from the leader's"
            );
            let req = p::InternalRequest {
                header: p::InternalHeader {
                    id: u64::MAX,
                    member_id: me,
                },
                body: p::InternalBody::Alarm(p::AlarmRequest {
                    action: p::AlarmAction::Activate,
                    member_id: m,
                    alarm: p::AlarmType::Corrupt,
                }),
            };
            if let Ok(d) = req.encode() {
                let _ = io.proposer.propose(d.to_vec());
            }
        }
    })
    .detach();
}

/// The members whose HashKV at the leader's revision differs from the leader's.
async fn check_hashes(store: Arc<KvStore>, peers: Vec<(u64, std::net::SocketAddr)>) -> Vec<u64> {
    let Ok(rev) = store.read().map(|r| r.revision()) else {
        return Vec::new();
    };
    let mine = glommio::executor()
        .spawn_blocking(move || store.hash_kv(rev))
        .await;
    let Ok((hash, _, compacted)) = mine else {
        return Vec::new();
    };
    let mut bad = Vec::new();
    for (id, addr) in peers {
        match peer_hash(addr, rev).await {
            // A member that is behind answers FutureRev (skipped: checked next round); one that
            // compacted differently cannot be compared.
            Some((h, c)) if c == compacted && h != hash => bad.push(id),
            _ => {}
        }
    }
    bad
}

/// One HashKV request to a member's client port: (hash, compaction revision).
async fn peer_hash(addr: std::net::SocketAddr, rev: i64) -> Option<(u32, i64)> {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut s = glommio::net::TcpStream::connect_timeout(addr, Duration::from_secs(1))
        .await
        .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut out = Vec::new();
    p::encode_request(
        &mut out,
        1,
        false,
        &p::Request::HashKv(p::HashKvRequest { revision: rev }),
    )
    .ok()?;
    s.write_all(&out).await.ok()?;
    let mut dec = p::FrameDecoder::new(p::limits::DEFAULT_MAX_RESPONSE_PAYLOAD);
    loop {
        if let Ok(p::Decoded::Frame(f)) = dec.decode() {
            return match f.decode_response().ok()? {
                p::Response::HashKv(h) => Some((h.hash, h.compact_revision)),
                _ => None,
            };
        }
        let buf = dec.read_buf(4096);
        let n = s.read(buf).await.ok()?;
        if n == 0 {
            return None;
        }
        dec.filled(n);
    }
}

/// Moves lease deadlines to this member when it became leader, or drops them when it lost
/// leadership (etcd's promote/demote). Returns whether it leads.
fn sync_leadership(s: &mut State, status: &LogStatus) -> bool {
    let is_leader = status.role() == Role::Leader;
    if is_leader && !s.leader {
        let now = s.now();
        s.lessor.promote(now);
    } else if !is_leader && s.leader {
        s.lessor.demote();
    }
    s.leader = is_leader;
    is_leader
}

async fn on_client_message(st: &Rc<RefCell<State>>, io: &Shared, core: usize, m: ToApply) {
    match m {
        ToApply::WatchOpen { conn, credit } => {
            let mut s = st.borrow_mut();
            let ids = (s.cfg.cluster_id, s.cfg.member_id);
            let sink = ConnSink {
                conn,
                tx: io.to_clients[core].clone(),
                credit,
                status: io.log.status().clone(),
                ids,
            };
            let sid = s.hub.open_stream(sink);
            s.streams.insert(conn, sid);
        }
        ToApply::WatchCreate { conn, req } => {
            let mut s = st.borrow_mut();
            if let Some(&sid) = s.streams.get(&conn) {
                // Refusals are answered in-band by the hub (created + canceled).
                let _ = s.hub.create(sid, req);
            }
        }
        ToApply::WatchCancel { conn, watch_id } => {
            let mut s = st.borrow_mut();
            if let Some(&sid) = s.streams.get(&conn) {
                s.hub.cancel(sid, watch_id);
            }
        }
        ToApply::WatchProgress { conn } => {
            let mut s = st.borrow_mut();
            if let Some(&sid) = s.streams.get(&conn) {
                s.hub.progress(sid);
            }
        }
        ToApply::Closed { conn } => {
            let mut s = st.borrow_mut();
            if let Some(sid) = s.streams.remove(&conn) {
                s.hub.close_stream(sid);
            }
        }
        ToApply::Publish { index } => {
            let gate = io.store_gate.read().await;
            // Covered already: the asking core read the view just before it moved (and may
            // have been told already); nothing moves now, so answer it directly.
            let covered = st.borrow().visible >= index;
            let r = {
                let mut s = st.borrow_mut();
                s.reads_until = Instant::now() + s.cfg.park.after_read;
                if s.failed.is_some() || covered {
                    Ok(())
                } else if s.applied >= index {
                    publish_parked(&mut s)
                } else {
                    // Published with the batch that applies it.
                    s.wanted = s.wanted.max(index);
                    Ok(())
                }
            };
            drop(gate);
            if let Err(e) = r {
                tracing::error!(error = %e, "publishing parked batches failed; this member stops applying (D2)");
                st.borrow_mut().failed = Some(e);
                return;
            }
            if covered {
                let v = st.borrow().visible;
                let _ = io.to_clients[core].send(ToClient::Applied(v)).await;
            }
            // A publish made now reaches every core (the asking one included) this way.
            announce_visible(st, io).await;
        }
        ToApply::Query { seq, query } => {
            let resp = answer_query(st, io, query).await;
            let _ = io.to_clients[core]
                .send(ToClient::Replies(vec![Reply { seq, resp }]))
                .await;
        }
    }
}

async fn answer_query(
    st: &Rc<RefCell<State>>,
    io: &Shared,
    q: Query,
) -> Result<p::Response, p::ErrorResponse> {
    let status = io.log.status().clone();
    match q {
        Query::LeaseKeepAlive(id) => {
            let mut s = st.borrow_mut();
            sync_leadership(&mut s, &status);
            let h = s.header(&status);
            let now = s.now();
            let rev = s.hub.revision();
            match s.lessor.renew(id, now) {
                Ok(ttl) => Ok(p::Response::LeaseKeepAlive(p::LeaseKeepAliveResponse {
                    header: h.header(rev),
                    id,
                    ttl,
                })),
                // etcd answers a keepalive for an unknown lease with TTL 0, not an error.
                Err(LeaseError::NotFound) | Err(LeaseError::Expired) => {
                    Ok(p::Response::LeaseKeepAlive(p::LeaseKeepAliveResponse {
                        header: h.header(rev),
                        id,
                        ttl: 0,
                    }))
                }
                Err(e) => Err(lease_error(&e)),
            }
        }
        Query::LeaseTimeToLive(r) => {
            let s = st.borrow();
            let h = s.header(&status);
            let t = s.lessor.time_to_live(r.id, r.keys, s.now());
            Ok(p::Response::LeaseTimeToLive(p::LeaseTimeToLiveResponse {
                header: h.header(s.hub.revision()),
                id: t.id,
                ttl: t.ttl,
                granted_ttl: t.granted_ttl,
                keys: t.keys,
            }))
        }
        Query::LeaseLeases => {
            let s = st.borrow();
            let h = s.header(&status);
            Ok(p::Response::LeaseLeases(p::LeaseLeasesResponse {
                header: h.header(s.hub.revision()),
                leases: s
                    .lessor
                    .leases()
                    .into_iter()
                    .map(|id| p::LeaseStatus { id })
                    .collect(),
            }))
        }
        Query::Defragment => {
            let store = st.borrow().cfg.store.clone();
            let h = st.borrow().header(&status);
            let gate = io.store_gate.write().await;
            // Nothing applies while the gate is held: the defrag publishes what is parked.
            let applied = st.borrow().applied;
            let r = glommio::executor()
                .spawn_blocking(move || store.database().compact())
                .await;
            drop(gate);
            if r.is_ok() {
                mark_visible(&mut st.borrow_mut(), applied);
                announce_visible(st, io).await;
            }
            match r {
                Ok(_) => Ok(p::Response::Defragment(p::DefragmentResponse {
                    header: h.header(0),
                })),
                Err(e) => Err(convert::kv_error(&KvError::Storage(e))),
            }
        }
    }
}
