//! A client core (DESIGN.md §2, §4): accepts connections on its own SO_REUSEPORT listener,
//! decodes frames (untrusted: a protocol violation gets an error frame and closes that
//! connection only), serves serializable reads from the published read view without leaving the
//! core, batches linearizable reads through ReadIndex (served once the applied index reaches the
//! confirmed index), proposes writes to the log core and answers them when the apply core
//! reports them applied, and relays watch streams and lease keepalives.

use ahash::AHashMap as HashMap;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hop;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use keel_engine::mvcc::{KvError, KvStore};
use keel_engine::watch::WatchCreate;
use keel_proto as p;

use crate::apply::refusal_error;
use crate::convert::{self, HeaderCtx};
use crate::msg::{tagged, ConnId, Query, Reply, ToApply, ToClient, Visibility};
use crate::raftnode::{ClientHandle, LogStatus, ReadAnswer};

/// How long a write or linearizable read may wait before it is answered "request timed out"
/// (etcd: 5 s plus two election timeouts; the outcome of a timed-out write is unknown).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// Snapshot stream chunk size.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Everything a client core needs; built by `node.rs`.
pub struct ClientConfig {
    pub core: usize,
    pub member_id: u64,
    pub cluster_id: u64,
    pub listen: Vec<SocketAddr>,
    pub store: Arc<KvStore>,
    pub max_request_bytes: u32,
    /// --max-txn-ops (read-only txns are answered here).
    pub max_txn_ops: usize,
    /// --initial-cluster-token (ids of members added at runtime derive from it).
    pub cluster_token: String,
    /// Set by the apply core while a CORRUPT alarm is active: reads are refused.
    pub corrupt: Arc<std::sync::atomic::AtomicBool>,
    /// How far the store's published view reaches: a read waits until it covers every write
    /// already answered (the apply core may park batches).
    pub vis: Arc<Visibility>,
    pub data_dir: std::path::PathBuf,
}

/// The client core's channels.
pub struct ClientIo {
    pub log: ClientHandle,
    pub to_apply: hop::Tx<ToApply>,
    pub from_apply: hop::Rx<ToClient>,
}

/// A response frame waiting to be written, and whether it counts against watch credit.
struct Out {
    bytes: Vec<u8>,
    watch: bool,
}

struct Conn {
    out: LocalSender<Out>,
    /// watch id → the request id of the create that opened it.
    watches: RefCell<HashMap<i64, u64>>,
    /// Creates sent to the apply core, in order, waiting for their `created` response.
    creates: RefCell<VecDeque<u64>>,
    /// Progress requests waiting for their answer (watch id -1).
    progress: RefCell<VecDeque<u64>>,
    credit: RefCell<Option<Arc<AtomicUsize>>>,
}

impl Conn {
    fn send(&self, bytes: Vec<u8>, watch: bool) {
        // The writer task owns the socket; a closed connection drops the frame.
        let _ = self.out.try_send(Out { bytes, watch });
    }
}

enum Waiting {
    /// A write or query: reply on `req_id`; `more` mirrors a keepalive stream's flag.
    Reply {
        conn: ConnId,
        req_id: u64,
        more: bool,
    },
}

/// A decoded request: a range in engine form (from the archive), or anything else owned.
enum Incoming {
    Range(keel_engine::mvcc::RangeRequest),
    Owned(p::Request),
}

/// A read answered from a read view on this core: a range, or a read-only txn.
enum ReadReq {
    Range(keel_engine::mvcc::RangeRequest),
    Txn(keel_engine::mvcc::TxnRequest),
}

struct PendingRead {
    conn: ConnId,
    req_id: u64,
    req: ReadReq,
    deadline: Instant,
}

/// Something waiting for the published view to reach an index.
enum Deferred {
    Range(PendingRead),
    /// A request handler awaiting [`Core::fresh`]: woken with `()`, or the sender is dropped
    /// at its deadline.
    Wake(LocalSender<()>, Instant),
}

impl Deferred {
    fn deadline(&self) -> Instant {
        match self {
            Deferred::Range(r) => r.deadline,
            Deferred::Wake(_, d) => *d,
        }
    }
}

struct Core {
    cfg: ClientConfig,
    log: ClientHandle,
    to_apply: hop::Tx<ToApply>,
    next_seq: Cell<u64>,
    next_conn: Cell<u64>,
    conns: RefCell<HashMap<ConnId, Rc<Conn>>>,
    waiting: RefCell<HashMap<u64, (Waiting, Instant)>>,
    reads: RefCell<HashMap<u64, PendingRead>>,
    /// Reads (and other handlers) waiting for the published view to reach the key's index.
    ready_reads: RefCell<BTreeMap<u64, Vec<Deferred>>>,
    /// The highest index this core asked the apply core to publish ([`ToApply::Publish`]).
    requested: Cell<u64>,
}

fn encode(req_id: u64, more: bool, resp: &p::Response) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = p::encode_response(&mut out, req_id, more, resp) {
        out.clear();
        let _ = p::encode_error(&mut out, req_id, e.to_error_response());
    }
    out
}

fn encode_err(req_id: u64, err: p::ErrorResponse) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = p::encode_error(&mut out, req_id, err);
    out
}

impl Core {
    fn status(&self) -> &Arc<LogStatus> {
        self.log.status()
    }

    fn header(&self) -> HeaderCtx {
        HeaderCtx {
            cluster_id: self.cfg.cluster_id,
            member_id: self.cfg.member_id,
            raft_term: self.status().term(),
        }
    }

    fn seq(&self) -> u64 {
        let s = self.next_seq.get() + 1;
        self.next_seq.set(s);
        tagged(self.cfg.core, s)
    }

    fn conn(&self, id: ConnId) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&id).cloned()
    }

    fn reply(
        &self,
        conn: ConnId,
        req_id: u64,
        more: bool,
        r: Result<p::Response, p::ErrorResponse>,
    ) {
        if let Some(c) = self.conn(conn) {
            let bytes = match r {
                Ok(resp) => encode(req_id, more, &resp),
                Err(e) => encode_err(req_id, e),
            };
            c.send(bytes, false);
        }
    }

    /// Proposes a write; the answer comes back from the apply core.
    fn propose(&self, conn: ConnId, req_id: u64, body: p::InternalBody) {
        crate::stages::mark(crate::stages::Stage::ClientDecoded);
        let seq = self.seq();
        let req = p::InternalRequest {
            header: p::InternalHeader {
                id: seq,
                member_id: self.cfg.member_id,
            },
            body,
        };
        let data = match req.encode() {
            Ok(d) => d.to_vec(),
            Err(e) => return self.reply(conn, req_id, false, Err(e.to_error_response())),
        };
        match self.log.propose(data) {
            Ok(()) => {
                self.waiting.borrow_mut().insert(
                    seq,
                    (
                        Waiting::Reply {
                            conn,
                            req_id,
                            more: false,
                        },
                        Instant::now() + REQUEST_TIMEOUT,
                    ),
                );
            }
            Err(r) => self.reply(conn, req_id, false, Err(refusal_error(&r))),
        }
    }

    async fn query(&self, conn: ConnId, req_id: u64, more: bool, query: Query) {
        let seq = self.seq();
        self.waiting.borrow_mut().insert(
            seq,
            (
                Waiting::Reply { conn, req_id, more },
                Instant::now() + REQUEST_TIMEOUT,
            ),
        );
        if self
            .to_apply
            .send(ToApply::Query { seq, query })
            .await
            .is_err()
        {
            self.waiting.borrow_mut().remove(&seq);
            self.reply(
                conn,
                req_id,
                false,
                Err(p::ErrorResponse::new(p::ErrorCode::Stopped)),
            );
        }
    }

    fn serve_read(&self, conn: ConnId, req_id: u64, req: &ReadReq) {
        let h = self.header();
        let r = self
            .cfg
            .store
            .read()
            .and_then(|view| match req {
                ReadReq::Range(r) => view
                    .range(r)
                    .map(|resp| p::Response::Range(convert::range_out(&h, resp))),
                ReadReq::Txn(t) => view
                    .txn(t, self.cfg.max_txn_ops)
                    .map(|resp| p::Response::Txn(convert::txn_out(&h, resp))),
            })
            .map_err(|e: KvError| convert::kv_error(&e));
        self.reply(conn, req_id, false, r);
    }

    fn on_applied(&self, index: u64) {
        // Only what the apply core published counts: the log core's applied index (its status)
        // may include parked batches.
        let index = index.max(self.cfg.vis.published());
        let ready: Vec<Deferred> = {
            let mut rr = self.ready_reads.borrow_mut();
            let later = rr.split_off(&(index + 1));
            let now: Vec<Deferred> = std::mem::replace(&mut *rr, later)
                .into_values()
                .flatten()
                .collect();
            now
        };
        for d in ready {
            match d {
                Deferred::Range(r) => self.serve_read(r.conn, r.req_id, &r.req),
                Deferred::Wake(tx, _) => {
                    let _ = tx.try_send(());
                }
            }
        }
    }

    /// Holds `d` until the published view covers `index`, asking the apply core to publish
    /// what it parked (once per index: its answer, [`ToClient::Applied`], wakes every waiter).
    async fn defer(&self, index: u64, d: Deferred) {
        self.ready_reads
            .borrow_mut()
            .entry(index)
            .or_default()
            .push(d);
        if index > self.requested.get() {
            self.requested.set(index);
            let _ = self.to_apply.send(ToApply::Publish { index }).await;
        }
    }

    /// The index a read starting now must wait for, if the published view does not cover
    /// every write answered so far.
    fn stale(&self) -> Option<u64> {
        let need = self.cfg.vis.needed();
        (!self.cfg.vis.covers(need)).then_some(need)
    }

    /// Waits until the published view covers every write answered so far (false: timed out).
    /// For the handlers that read the store directly (status, hashes, members, alarms,
    /// snapshots); ranges queue instead of holding their connection's handler.
    async fn fresh(&self) -> bool {
        let Some(need) = self.stale() else {
            return true;
        };
        let (tx, rx) = local_channel::new_bounded::<()>(1);
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        self.defer(need, Deferred::Wake(tx, deadline)).await;
        rx.recv().await.is_some()
    }

    async fn on_read_answers(&self, answers: Vec<ReadAnswer>) {
        for a in answers {
            let Some(r) = self.reads.borrow_mut().remove(&a.ctx) else {
                continue;
            };
            match a.result {
                Ok(index) if self.cfg.vis.covers(index) => {
                    self.serve_read(r.conn, r.req_id, &r.req)
                }
                Ok(index) => self.defer(index, Deferred::Range(r)).await,
                Err(e) => self.reply(r.conn, r.req_id, false, Err(refusal_error(&e))),
            }
        }
    }

    fn on_replies(&self, replies: Vec<Reply>) {
        for r in replies {
            let Some((w, _)) = self.waiting.borrow_mut().remove(&r.seq) else {
                continue;
            };
            match w {
                Waiting::Reply { conn, req_id, more } => self.reply(conn, req_id, more, r.resp),
            }
            crate::stages::mark(crate::stages::Stage::Replied);
        }
    }

    fn on_watch(&self, conn: ConnId, resp: p::WatchResponse) {
        let Some(c) = self.conn(conn) else {
            return;
        };
        let req_id = if resp.created {
            let Some(id) = c.creates.borrow_mut().pop_front() else {
                return;
            };
            if !resp.canceled {
                c.watches.borrow_mut().insert(resp.watch_id, id);
            }
            id
        } else if resp.watch_id == -1 {
            match c.progress.borrow_mut().pop_front() {
                Some(id) => id,
                None => return,
            }
        } else {
            match c.watches.borrow().get(&resp.watch_id) {
                Some(&id) => id,
                None => return,
            }
        };
        let ends = resp.canceled || (resp.watch_id == -1 && !resp.created);
        if resp.canceled {
            c.watches.borrow_mut().remove(&resp.watch_id);
        }
        c.send(encode(req_id, !ends, &p::Response::Watch(resp)), true);
    }

    /// Answers what waited too long: "request timed out" (a write's outcome is then unknown).
    fn expire(&self, now: Instant) {
        let expired: Vec<u64> = self
            .waiting
            .borrow()
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            if let Some((Waiting::Reply { conn, req_id, .. }, _)) =
                self.waiting.borrow_mut().remove(&s)
            {
                self.reply(
                    conn,
                    req_id,
                    false,
                    Err(p::ErrorResponse::new(p::ErrorCode::Timeout)),
                );
            }
        }
        let stale: Vec<u64> = self
            .reads
            .borrow()
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for c in stale {
            if let Some(r) = self.reads.borrow_mut().remove(&c) {
                self.reply(
                    r.conn,
                    r.req_id,
                    false,
                    Err(p::ErrorResponse::new(p::ErrorCode::Timeout)),
                );
            }
        }
        let mut rr = self.ready_reads.borrow_mut();
        let mut late = Vec::new();
        for reads in rr.values_mut() {
            let (gone, keep): (Vec<_>, Vec<_>) = reads.drain(..).partition(|d| d.deadline() <= now);
            *reads = keep;
            late.extend(gone);
        }
        rr.retain(|_, v| !v.is_empty());
        drop(rr);
        for d in late {
            match d {
                Deferred::Range(r) => self.reply(
                    r.conn,
                    r.req_id,
                    false,
                    Err(p::ErrorResponse::new(p::ErrorCode::Timeout)),
                ),
                // Dropping the sender wakes the handler with "timed out".
                Deferred::Wake(..) => {}
            }
        }
    }

    /// Whether another member leads (requests that need the leader's clock go there).
    fn forwarding(&self) -> bool {
        let l = self.status().leader();
        l != 0 && l != self.cfg.member_id
    }

    /// Sends `req` to the leader's client port and returns its answer (one connection per
    /// call: used for lease keepalive and TimeToLive, whose state is the leader's alone).
    async fn forward(&self, req: p::Request) -> Result<p::Response, p::ErrorResponse> {
        let unavailable = || p::ErrorResponse::new(p::ErrorCode::NoLeader);
        let leader = self.status().leader();
        let addr = self
            .cfg
            .store
            .read()
            .map_err(|e| e.to_string())
            .and_then(|r| crate::members::load(&r))
            .ok()
            .and_then(|m| m.get(&leader)?.client_urls.first().cloned())
            .and_then(|u| crate::config::url_addr(&u).ok())
            .ok_or_else(unavailable)?;
        let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(1))
            .await
            .map_err(|_| unavailable())?;
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(REQUEST_TIMEOUT));
        let mut out = Vec::new();
        p::encode_request(&mut out, 1, false, &req).map_err(|e| e.to_error_response())?;
        s.write_all(&out).await.map_err(|_| unavailable())?;
        let mut dec = p::FrameDecoder::new(p::limits::DEFAULT_MAX_RESPONSE_PAYLOAD);
        loop {
            if let Ok(p::Decoded::Frame(f)) = dec.decode() {
                return match f.decode_response() {
                    Ok(p::Response::Error(e)) => Err(e),
                    Ok(r) => Ok(r),
                    Err(e) => Err(e.to_error_response()),
                };
            }
            let buf = dec.read_buf(4096);
            match s.read(buf).await {
                Ok(0) | Err(_) => {
                    return Err(p::ErrorResponse::new(
                        p::ErrorCode::TimeoutDueToConnectionLost,
                    ))
                }
                Ok(n) => dec.filled(n),
            }
        }
    }

    /// A range or a read-only txn: served here when serializable (once the published view
    /// covers every write answered), else after a ReadIndex round (DESIGN.md §4).
    async fn read(&self, conn_id: ConnId, req_id: u64, r: ReadReq, serializable: bool) {
        if self.cfg.corrupt.load(Ordering::Acquire) {
            let e = p::ErrorResponse::new(p::ErrorCode::Corrupt);
            return self.reply(conn_id, req_id, false, Err(e));
        }
        if serializable {
            let Some(need) = self.stale() else {
                return self.serve_read(conn_id, req_id, &r);
            };
            let pending = PendingRead {
                conn: conn_id,
                req_id,
                req: r,
                deadline: Instant::now() + REQUEST_TIMEOUT,
            };
            return self.defer(need, Deferred::Range(pending)).await;
        }
        let ctx = self.seq();
        match self.log.read_index(ctx) {
            Ok(()) => {
                self.reads.borrow_mut().insert(
                    ctx,
                    PendingRead {
                        conn: conn_id,
                        req_id,
                        req: r,
                        deadline: Instant::now() + REQUEST_TIMEOUT,
                    },
                );
            }
            Err(e) => self.reply(conn_id, req_id, false, Err(refusal_error(&e))),
        }
    }

    async fn dispatch(
        &self,
        conn: &Rc<Conn>,
        conn_id: ConnId,
        req_id: u64,
        more: bool,
        req: p::Request,
    ) {
        // Handlers that read the store here see every write answered before they started.
        let reads_store = match &req {
            p::Request::Status(_)
            | p::Request::Hash(_)
            | p::Request::HashKv(_)
            | p::Request::MemberList(_)
            | p::Request::Snapshot(_) => true,
            p::Request::Alarm(a) => matches!(a.action, p::AlarmAction::Get),
            _ => false,
        };
        if reads_store && !self.fresh().await {
            let e = p::ErrorResponse::new(p::ErrorCode::Timeout);
            return self.reply(conn_id, req_id, false, Err(e));
        }
        let h = self.header();
        match req {
            p::Request::Range(r) => {
                let serializable = r.serializable;
                let r = ReadReq::Range(convert::range_in(r));
                self.read(conn_id, req_id, r, serializable).await
            }
            p::Request::Put(r) => {
                if r.key.len() + r.value.len() > self.cfg.max_request_bytes as usize {
                    return self.reply(
                        conn_id,
                        req_id,
                        false,
                        Err(p::ErrorResponse::new(p::ErrorCode::RequestTooLarge)),
                    );
                }
                self.propose(conn_id, req_id, p::InternalBody::Put(r))
            }
            p::Request::DeleteRange(r) => {
                self.propose(conn_id, req_id, p::InternalBody::DeleteRange(r))
            }
            // A read-only txn is a read, as in etcd: no log entry, no apply.
            p::Request::Txn(t) if convert::txn_read_only(&t) => {
                let serializable = convert::txn_serializable(&t);
                let t = ReadReq::Txn(convert::txn_in(t));
                self.read(conn_id, req_id, t, serializable).await
            }
            p::Request::Txn(t) => self.propose(conn_id, req_id, p::InternalBody::Txn(t)),
            p::Request::Compact(c) => self.propose(conn_id, req_id, p::InternalBody::Compaction(c)),
            p::Request::LeaseGrant(g) => {
                self.propose(conn_id, req_id, p::InternalBody::LeaseGrant(g))
            }
            p::Request::LeaseRevoke(r) => {
                self.propose(conn_id, req_id, p::InternalBody::LeaseRevoke(r))
            }
            p::Request::Alarm(a) => match a.action {
                p::AlarmAction::Get => {
                    let read = self.cfg.store.read();
                    let alarms = match (
                        self.cfg.store.nospace(),
                        read.map_err(|e| e.to_string())
                            .and_then(|r| crate::apply::corrupt_alarms(&r)),
                    ) {
                        (Ok(nospace), Ok(corrupt)) => {
                            let mut a: Vec<p::AlarmMember> = corrupt
                                .into_iter()
                                .map(|m| p::AlarmMember {
                                    member_id: m,
                                    alarm: p::AlarmType::Corrupt,
                                })
                                .collect();
                            if nospace {
                                a.push(p::AlarmMember {
                                    member_id: self.cfg.member_id,
                                    alarm: p::AlarmType::NoSpace,
                                });
                            }
                            a
                        }
                        (Err(e), _) => {
                            return self.reply(conn_id, req_id, false, Err(convert::kv_error(&e)))
                        }
                        (_, Err(e)) => {
                            tracing::error!(error = %e, "reading alarms");
                            let e = p::ErrorResponse::new(p::ErrorCode::Corrupt);
                            return self.reply(conn_id, req_id, false, Err(e));
                        }
                    };
                    self.reply(
                        conn_id,
                        req_id,
                        false,
                        // etcd 3.4 answers alarm requests without a response header.
                        Ok(p::Response::Alarm(p::AlarmResponse {
                            header: p::ResponseHeader::default(),
                            alarms,
                        })),
                    );
                }
                _ => self.propose(conn_id, req_id, p::InternalBody::Alarm(a)),
            },
            p::Request::Watch(w) => self.watch(conn, conn_id, req_id, w).await,
            // Lease deadlines live on the leader (L1): a follower forwards these, as etcd does.
            p::Request::LeaseKeepAlive(k) if self.forwarding() => {
                let r = self.forward(p::Request::LeaseKeepAlive(k)).await;
                self.reply(conn_id, req_id, more && r.is_ok(), r)
            }
            p::Request::LeaseTimeToLive(t) if self.forwarding() => {
                let r = self.forward(p::Request::LeaseTimeToLive(t)).await;
                self.reply(conn_id, req_id, false, r)
            }
            p::Request::LeaseKeepAlive(k) => {
                self.query(conn_id, req_id, more, Query::LeaseKeepAlive(k.id))
                    .await
            }
            p::Request::LeaseTimeToLive(t) => {
                self.query(conn_id, req_id, false, Query::LeaseTimeToLive(t))
                    .await
            }
            p::Request::LeaseLeases(_) => {
                self.query(conn_id, req_id, false, Query::LeaseLeases).await
            }
            p::Request::Defragment(_) => {
                self.query(conn_id, req_id, false, Query::Defragment).await
            }
            p::Request::Status(_) => {
                let st = self.status();
                let db = self.cfg.store.database().stats();
                let (size, in_use) = db
                    .map(|s| (s.file_size as i64, s.size_in_use as i64))
                    .unwrap_or((0, 0));
                let rev = self.cfg.store.read().map(|r| r.revision()).unwrap_or(0);
                let is_learner = self
                    .cfg
                    .store
                    .read()
                    .map_err(|e| e.to_string())
                    .and_then(|r| crate::members::load(&r))
                    .is_ok_and(|m| m.get(&self.cfg.member_id).is_some_and(|m| m.is_learner));
                self.reply(
                    conn_id,
                    req_id,
                    false,
                    Ok(p::Response::Status(p::StatusResponse {
                        header: h.header(rev),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        db_size: size,
                        leader: st.leader(),
                        raft_index: st.commit(),
                        raft_term: st.term(),
                        raft_applied_index: st.applied(),
                        errors: Vec::new(),
                        db_size_in_use: in_use,
                        is_learner,
                    })),
                );
            }
            p::Request::Hash(_) => {
                let r = self.cfg.store.hash_kv(0).map(|(hash, rev, _)| {
                    p::Response::Hash(p::HashResponse {
                        header: h.header(rev),
                        hash,
                    })
                });
                self.reply(conn_id, req_id, false, r.map_err(|e| convert::kv_error(&e)));
            }
            p::Request::HashKv(r) => {
                let r = self
                    .cfg
                    .store
                    .hash_kv(r.revision)
                    .map(|(hash, rev, compact)| {
                        p::Response::HashKv(p::HashKvResponse {
                            header: h.header(rev),
                            hash,
                            compact_revision: compact,
                        })
                    });
                self.reply(conn_id, req_id, false, r.map_err(|e| convert::kv_error(&e)));
            }
            p::Request::MemberList(_) => {
                let r = self
                    .cfg
                    .store
                    .read()
                    .map_err(|e| e.to_string())
                    .and_then(|r| crate::members::load(&r))
                    .map(|m| {
                        p::Response::MemberList(p::MemberListResponse {
                            header: h.header(0),
                            members: crate::members::to_proto(&m),
                        })
                    })
                    .map_err(|e| {
                        tracing::error!(error = %e, "reading members");
                        p::ErrorResponse::new(p::ErrorCode::Corrupt)
                    });
                self.reply(conn_id, req_id, false, r);
            }
            p::Request::MemberAdd(a) => {
                // The id the new member derives itself from its peer URLs and the token
                // (etcd also mixes in the time; keel's new member must find its id alone).
                let id = crate::config::member_id(&a.peer_urls, &self.cfg.cluster_token);
                self.propose(
                    conn_id,
                    req_id,
                    p::InternalBody::MemberAdd(p::MemberAddEntry {
                        id,
                        peer_urls: a.peer_urls,
                        is_learner: a.is_learner,
                    }),
                )
            }
            p::Request::MemberRemove(r) => {
                self.propose(conn_id, req_id, p::InternalBody::MemberRemove(r))
            }
            p::Request::MemberUpdate(u) => {
                self.propose(conn_id, req_id, p::InternalBody::MemberUpdate(u))
            }
            p::Request::MemberPromote(r) => {
                self.propose(conn_id, req_id, p::InternalBody::MemberPromote(r))
            }
            p::Request::MoveLeader(m) => match self.log.transfer_leader(m.target_id) {
                Ok(()) => self.reply(
                    conn_id,
                    req_id,
                    false,
                    Ok(p::Response::MoveLeader(p::MoveLeaderResponse {
                        header: h.header(0),
                    })),
                ),
                Err(e) => self.reply(conn_id, req_id, false, Err(refusal_error(&e))),
            },
            p::Request::Snapshot(_) => self.snapshot(conn_id, req_id).await,
        }
    }

    async fn watch(&self, conn: &Rc<Conn>, conn_id: ConnId, req_id: u64, w: p::WatchRequest) {
        if conn.credit.borrow().is_none() {
            let credit = Arc::new(AtomicUsize::new(0));
            *conn.credit.borrow_mut() = Some(credit.clone());
            let _ = self
                .to_apply
                .send(ToApply::WatchOpen {
                    conn: conn_id,
                    credit,
                })
                .await;
        }
        match w {
            p::WatchRequest::Create(c) => {
                conn.creates.borrow_mut().push_back(req_id);
                let req = WatchCreate {
                    key: c.key,
                    range_end: c.range_end,
                    start_revision: c.start_revision,
                    progress_notify: c.progress_notify,
                    no_put: c.filters.contains(&p::FilterType::NoPut),
                    no_delete: c.filters.contains(&p::FilterType::NoDelete),
                    prev_kv: c.prev_kv,
                    watch_id: c.watch_id,
                    fragment: c.fragment,
                };
                let _ = self
                    .to_apply
                    .send(ToApply::WatchCreate { conn: conn_id, req })
                    .await;
            }
            p::WatchRequest::Cancel(c) => {
                let _ = self
                    .to_apply
                    .send(ToApply::WatchCancel {
                        conn: conn_id,
                        watch_id: c.watch_id,
                    })
                    .await;
                let resp = p::WatchResponse {
                    header: self.header().header(0),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                };
                conn.send(encode(req_id, false, &p::Response::Watch(resp)), false);
            }
            p::WatchRequest::Progress(_) => {
                conn.progress.borrow_mut().push_back(req_id);
                let _ = self
                    .to_apply
                    .send(ToApply::WatchProgress { conn: conn_id })
                    .await;
            }
        }
    }

    /// Streams a consistent copy of the store (etcd's snapshot save): compacted into a
    /// temporary file on the blocking pool, then sent in chunks.
    async fn snapshot(&self, conn_id: ConnId, req_id: u64) {
        let store = self.cfg.store.clone();
        let tmp = self
            .cfg
            .data_dir
            .join(format!("snapshot-{}-{req_id}.tmp", self.cfg.core));
        let path = tmp.clone();
        let r = glommio::executor()
            .spawn_blocking(move || -> Result<Vec<u8>, String> {
                let _ = std::fs::remove_file(&path);
                store
                    .database()
                    .compact_to(&path, keel_engine::btree::Options::default())
                    .map_err(|e| e.to_string())?;
                let bytes = std::fs::read(&path).map_err(|e| e.to_string());
                let _ = std::fs::remove_file(&path);
                bytes
            })
            .await;
        let bytes = match r {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "snapshot failed");
                return self.reply(
                    conn_id,
                    req_id,
                    false,
                    Err(p::ErrorResponse::new(p::ErrorCode::Corrupt)),
                );
            }
        };
        let h = self.header();
        let mut sent = 0;
        let total = bytes.len();
        loop {
            let end = (sent + SNAPSHOT_CHUNK).min(total);
            let resp = p::Response::Snapshot(p::SnapshotResponse {
                header: h.header(0),
                remaining_bytes: (total - end) as u64,
                blob: bytes[sent..end].to_vec(),
            });
            let last = end == total;
            self.reply(conn_id, req_id, !last, Ok(resp));
            sent = end;
            if last {
                break;
            }
        }
    }
}

/// Runs a client core on the current executor until `stop` resolves.
pub async fn run(cfg: ClientConfig, io: ClientIo) -> Result<(), String> {
    let mut listeners = Vec::new();
    for a in &cfg.listen {
        listeners.push(TcpListener::bind(a).map_err(|e| format!("listen on {a}: {e}"))?);
    }
    let ClientIo {
        log,
        to_apply,
        from_apply,
    } = io;
    let core = Rc::new(Core {
        cfg,
        log,
        to_apply,
        next_seq: Cell::new(0),
        next_conn: Cell::new(0),
        conns: RefCell::new(HashMap::new()),
        waiting: RefCell::new(HashMap::new()),
        reads: RefCell::new(HashMap::new()),
        ready_reads: RefCell::new(BTreeMap::new()),
        requested: Cell::new(0),
    });
    let mut tasks = Vec::new();
    let (ready_tx, ready_rx) = local_channel::new_bounded::<()>(1);
    {
        let core = core.clone();
        tasks.push(glommio::spawn_local(async move {
            while let Some(m) = from_apply.recv().await {
                match m {
                    ToClient::Replies(r) => core.on_replies(r),
                    ToClient::Applied(i) => core.on_applied(i),
                    ToClient::Watch { conn, resp } => core.on_watch(conn, resp),
                    ToClient::Ready => {
                        let _ = ready_tx.try_send(());
                    }
                }
            }
        }));
    }
    {
        let core = core.clone();
        tasks.push(glommio::spawn_local(async move {
            while let Some(a) = core.log.next_reads().await {
                core.on_read_answers(a).await;
            }
        }));
    }
    {
        let core = core.clone();
        tasks.push(glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                if core.status().is_stopped() {
                    break;
                }
                core.expire(Instant::now());
            }
        }));
    }
    // The listeners are bound from the start (connections wait in the backlog); they are
    // accepted once the apply core reports this member published (`ToClient::Ready`).
    let accepts = {
        let core = core.clone();
        glommio::spawn_local(async move {
            if ready_rx.recv().await.is_none() {
                return;
            }
            tracing::info!("member published: serving clients");
            let accepts: Vec<_> = listeners
                .into_iter()
                .map(|l| {
                    let core = core.clone();
                    glommio::spawn_local(async move {
                        loop {
                            match l.accept().await {
                                Ok(s) => {
                                    let core = core.clone();
                                    glommio::spawn_local(async move { serve_conn(core, s).await })
                                        .detach();
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "accept failed");
                                    if core.status().is_stopped() {
                                        break;
                                    }
                                }
                            }
                        }
                    })
                })
                .collect();
            // Held until this task is dropped at shutdown, which cancels the accept loops.
            std::future::pending::<()>().await;
            drop(accepts);
        })
    };
    // Run until the log core stops (clean shutdown or a fatal error).
    while !core.status().is_stopped() {
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    drop(accepts);
    drop(tasks);
    Ok(())
}

async fn serve_conn(core: Rc<Core>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let id = {
        let n = core.next_conn.get() + 1;
        core.next_conn.set(n);
        tagged(core.cfg.core, n)
    };
    let (tx, rx) = local_channel::new_unbounded::<Out>();
    let conn = Rc::new(Conn {
        out: tx,
        watches: RefCell::new(HashMap::new()),
        creates: RefCell::new(VecDeque::new()),
        progress: RefCell::new(VecDeque::new()),
        credit: RefCell::new(None),
    });
    core.conns.borrow_mut().insert(id, conn.clone());
    // futures-lite's split shares the stream between the two halves with a lock taken only
    // inside a poll, on this one thread: never contended.
    let (mut reader, mut wr) = futures_lite::io::split(stream);
    // Writer: gathers every queued frame into one write; ends when the connection's senders
    // are gone (after flushing what was queued, e.g. a final error frame).
    {
        let conn = conn.clone();
        glommio::spawn_local(async move {
            let mut buf = Vec::new();
            while let Some(first) = rx.recv().await {
                buf.clear();
                let mut watch = usize::from(first.watch);
                buf.extend_from_slice(&first.bytes);
                while let Some(Some(o)) = futures_lite::future::poll_once(rx.recv()).await {
                    watch += usize::from(o.watch);
                    buf.extend_from_slice(&o.bytes);
                }
                if wr.write_all(&buf).await.is_err() {
                    break;
                }
                if watch > 0 {
                    if let Some(c) = conn.credit.borrow().as_ref() {
                        c.fetch_sub(watch, Ordering::AcqRel);
                    }
                }
            }
            let _ = wr.close().await;
        })
        .detach();
    }
    let max = core
        .cfg
        .max_request_bytes
        .saturating_add(64 << 10)
        .max(p::limits::DEFAULT_MAX_REQUEST_PAYLOAD);
    let mut dec = p::FrameDecoder::new(max);
    let mut closing = false;
    'conn: loop {
        loop {
            let frame = match dec.decode() {
                Ok(p::Decoded::Frame(f)) => f,
                Ok(p::Decoded::NeedMore(_)) => break,
                Err(e) => {
                    conn.send(encode_err(0, e.to_error_response()), false);
                    closing = true;
                    break 'conn;
                }
            };
            let req_id = frame.header.request_id;
            let more = frame.header.more();
            // Validated in place (D1); reads go to the engine straight from the archive, other
            // requests are deserialized (they are copied into Raft entries anyway).
            let req = frame.access_request().and_then(|a| match a {
                p::ArchivedRequest::Range(r) => Ok(Incoming::Range(convert::range_in_archived(r))),
                other => rkyv::deserialize::<p::Request, rkyv::rancor::Error>(other)
                    .map(Incoming::Owned)
                    .map_err(|e| p::ProtoError::InvalidPayload(e.to_string())),
            });
            match req {
                Ok(Incoming::Range(r)) => {
                    let serializable = r.serializable;
                    core.read(id, req_id, ReadReq::Range(r), serializable).await
                }
                Ok(Incoming::Owned(req)) => {
                    let c = conn.clone();
                    core.dispatch(&c, id, req_id, more, req).await;
                }
                Err(e) => {
                    conn.send(encode_err(req_id, e.to_error_response()), false);
                    closing = true;
                    break 'conn;
                }
            }
        }
        let buf = dec.read_buf(64 << 10);
        match reader.read(buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => dec.filled(n),
        }
    }
    if closing {
        tracing::debug!(conn = id, "closing a connection after a protocol violation");
    }
    core.conns.borrow_mut().remove(&id);
    if conn.credit.borrow().is_some() {
        let _ = core.to_apply.send(ToApply::Closed { conn: id }).await;
    }
}
