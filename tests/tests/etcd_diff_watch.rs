//! Differential test of keel's watch hub against a real etcd 3.4 (issue 6, watch half).
//!
//! The same operations run against a real etcd (requests sent verbatim as etcd's protobuf
//! messages; the watch stream is etcd's bidirectional Watch RPC) and against keel in process
//! (a `KvStore` and a `WatchHub` whose sink records every response). Operations: puts, deletes
//! (key, range, prefix), txns, compactions, and on the watch stream creates (single key,
//! range, prefix, from-key; start revision 0, past, future or compacted; NOPUT/NODELETE
//! filters; prev_kv; fragment; automatic, chosen and duplicate ids; empty ranges), cancels
//! (known and unknown ids) and progress requests.
//!
//! Both sides' responses are normalized per watch id into a list of items — each control
//! response (created / canceled with its compact revision and reason / progress, with the
//! header revision) and each event (kind, key-value, prev_kv) — after reassembling fragments.
//! How events are grouped into responses is not compared (etcd batches history replay by
//! its own rule; keel cuts at revision boundaries), the items are. etcd delivers history replay
//! from a background loop (every 100 ms), so the test waits — by receiving, with a deadline —
//! until etcd has as many items per watch id as keel before comparing, before every compaction
//! (so that both sides see the same watchers caught up when it happens), and at the end of a
//! sequence after a barrier put that a sentinel watcher sees.
//!
//! Known, documented differences kept out of the generator: etcd 3.4 answers a progress
//! request at once even while a watcher of the stream is still replaying history (keel waits,
//! W6) — progress requests are sent when keel's watchers are all synced, which is when the
//! answers agree; etcd keeps a compaction-canceled watcher's id reserved on the stream until the
//! client cancels it (keel frees it) — chosen ids are never reused.
//!
//! Environment: `KEEL_DIFF_SEED=<u64>` replays a run (a failure prints its seed),
//! `KEEL_DIFF_CASES=<n>` sets the number of sequences (default 300), `KEEL_ETCD_BIN` names the
//! etcd binary. Without etcd the test fails; it never skips.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use etcd_client::proto as pb;
use keel_engine::mvcc::*;
use keel_engine::watch::*;
use keel_tests::etcd::Etcd;
use keel_tests::support::{env_u64, Grpc, Rng};

const DEFAULT_CASES: u64 = 300;
const OPS_MIN: u64 = 8;
const OPS_MAX: u64 = 24;
/// How long etcd may take to deliver what keel delivered (its history sync runs every 100 ms).
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Deterministic randomness (SplitMix64).

// ---------------------------------------------------------------------------------------------
// etcd's watch request messages (etcdserverpb.WatchRequest), declared here with prost; the
// responses use etcd-client's generated types.

#[derive(Clone, PartialEq, prost::Message)]
struct PbWatchRequest {
    #[prost(oneof = "PbWatchUnion", tags = "1, 2, 3")]
    request_union: Option<PbWatchUnion>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum PbWatchUnion {
    #[prost(message, tag = "1")]
    Create(PbWatchCreate),
    #[prost(message, tag = "2")]
    Cancel(PbWatchCancel),
    #[prost(message, tag = "3")]
    Progress(PbWatchProgress),
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbWatchCreate {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    start_revision: i64,
    #[prost(bool, tag = "4")]
    progress_notify: bool,
    /// 0 = NOPUT, 1 = NODELETE.
    #[prost(int32, repeated, tag = "5")]
    filters: Vec<i32>,
    #[prost(bool, tag = "6")]
    prev_kv: bool,
    #[prost(int64, tag = "7")]
    watch_id: i64,
    #[prost(bool, tag = "8")]
    fragment: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbWatchCancel {
    #[prost(int64, tag = "1")]
    watch_id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbWatchProgress {}

// ---------------------------------------------------------------------------------------------
// Normalized responses.

#[derive(Clone, Debug, PartialEq)]
enum Item {
    /// A response without events: created / canceled / progress, as etcd sets them.
    Ctrl {
        header: i64,
        created: bool,
        canceled: bool,
        compact_revision: i64,
        reason: String,
    },
    Event(Event),
}

/// Items per watch id, with fragment reassembly.
#[derive(Default)]
struct Log {
    items: BTreeMap<i64, Vec<Item>>,
    /// Events of fragments received so far, per watch id.
    partial: BTreeMap<i64, Vec<Event>>,
    /// Responses that had the fragment flag set (keel's are checked to follow W4).
    fragments: usize,
}

impl Log {
    fn add(&mut self, r: WatchResponse) {
        if r.fragment {
            self.fragments += 1;
            self.partial.entry(r.watch_id).or_default().extend(r.events);
            return;
        }
        let mut events = self.partial.remove(&r.watch_id).unwrap_or_default();
        let had_events = !events.is_empty() || !r.events.is_empty();
        events.extend(r.events);
        let items = self.items.entry(r.watch_id).or_default();
        if had_events {
            assert!(
                !r.created && !r.canceled && r.compact_revision == 0,
                "a response with events and control flags: {} {} {}",
                r.created,
                r.canceled,
                r.compact_revision
            );
            items.extend(events.into_iter().map(Item::Event));
        } else {
            items.push(Item::Ctrl {
                header: r.header_revision,
                created: r.created,
                canceled: r.canceled,
                compact_revision: r.compact_revision,
                reason: r.cancel_reason,
            });
        }
    }

    fn count(&self, id: i64) -> usize {
        self.items.get(&id).map_or(0, Vec::len)
    }
}

/// Control responses answered on etcd's control path (compaction cancels come from its sync
/// loop instead).
fn ctrl_count(log: &Log) -> usize {
    log.items
        .values()
        .flatten()
        .filter(|x| {
            matches!(
                x,
                Item::Ctrl {
                    compact_revision: 0,
                    ..
                }
            )
        })
        .count()
}

fn from_pb_kv(kv: Option<pb::PbKeyValue>) -> Option<KeyValue> {
    kv.map(|kv| KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    })
}

fn from_pb(r: pb::PbWatchResponse) -> WatchResponse {
    WatchResponse {
        header_revision: r.header.map_or(0, |h| h.revision),
        watch_id: r.watch_id,
        created: r.created,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason,
        fragment: r.fragment,
        events: r
            .events
            .into_iter()
            .map(|e| Event {
                kind: if e.r#type == 1 {
                    EventType::Delete
                } else {
                    EventType::Put
                },
                kv: from_pb_kv(e.kv).unwrap_or_default(),
                prev_kv: from_pb_kv(e.prev_kv),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// etcd side.

type WatchStreaming = tonic::Streaming<pb::PbWatchResponse>;

struct EtcdSide {
    g: Grpc,
}

struct EtcdStream {
    tx: tokio::sync::mpsc::Sender<PbWatchRequest>,
    rx: WatchStreaming,
    log: Log,
}

impl EtcdSide {
    fn connect(url: &str) -> EtcdSide {
        EtcdSide {
            g: Grpc::connect(url),
        }
    }

    fn unary<Q, R>(&self, method: &'static str, q: Q) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.g.unary(method, q)
    }

    /// Opens a watch stream whose first request is `first` (etcd sends the response headers
    /// only with its first response, so the call completes once there is one).
    fn open_watch(&self, first: PbWatchUnion) -> EtcdStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<PbWatchRequest>(1024);
        tx.try_send(PbWatchRequest {
            request_union: Some(first),
        })
        .expect("an empty channel has room");
        let rx = self.g.rt.block_on(async {
            let mut g = tonic::client::Grpc::new(self.g.channel.clone())
                .max_decoding_message_size(64 << 20);
            g.ready().await.expect("channel ready");
            let path =
                tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
            let codec = tonic_prost::ProstCodec::<PbWatchRequest, pb::PbWatchResponse>::default();
            let stream = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx);
            g.streaming(tonic::Request::new(stream), path, codec)
                .await
                .expect("open etcd watch stream")
                .into_inner()
        });
        EtcdStream {
            tx,
            rx,
            log: Log::default(),
        }
    }

    fn send(&self, s: &EtcdStream, r: PbWatchUnion) {
        self.g
            .rt
            .block_on(s.tx.send(PbWatchRequest {
                request_union: Some(r),
            }))
            .expect("etcd watch stream open");
    }

    /// Receives until `done(log)` holds or the deadline passes; returns whether it held.
    fn recv_until(&self, s: &mut EtcdStream, done: impl Fn(&Log) -> bool) -> bool {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        while !done(&s.log) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let msg = self
                .g
                .rt
                .block_on(async { tokio::time::timeout(left, s.rx.message()).await });
            match msg {
                Err(_) => return false,
                Ok(Ok(Some(r))) => s.log.add(from_pb(r)),
                Ok(Ok(None)) => panic!("etcd closed the watch stream"),
                Ok(Err(e)) => panic!("etcd watch stream failed: {e}"),
            }
        }
        true
    }

    fn put(&self, p: &PutRequest) {
        self.unary::<_, pb::PbPutResponse>(
            "/etcdserverpb.KV/Put",
            pb::PbPutRequest {
                key: p.key.clone(),
                value: p.value.clone(),
                ..Default::default()
            },
        )
        .expect("etcd put");
    }

    fn delete(&self, d: &DeleteRangeRequest) {
        self.unary::<_, pb::PbDeleteResponse>(
            "/etcdserverpb.KV/DeleteRange",
            pb::PbDeleteRequest {
                key: d.key.clone(),
                range_end: d.range_end.clone(),
                prev_kv: false,
            },
        )
        .expect("etcd delete");
    }

    fn txn(&self, ops: &[Op]) {
        let success = ops
            .iter()
            .map(|op| pb::PbTxnRequestOp {
                request: Some(match op {
                    Op::Put(p) => pb::PbTxnOpRequest::RequestPut(pb::PbPutRequest {
                        key: p.key.clone(),
                        value: p.value.clone(),
                        ..Default::default()
                    }),
                    Op::Delete(d) => pb::PbTxnOpRequest::RequestDeleteRange(pb::PbDeleteRequest {
                        key: d.key.clone(),
                        range_end: d.range_end.clone(),
                        prev_kv: false,
                    }),
                    _ => unreachable!("txn of puts and deletes"),
                }),
            })
            .collect();
        self.unary::<_, pb::PbTxnResponse>(
            "/etcdserverpb.KV/Txn",
            pb::PbTxnRequest {
                compare: Vec::new(),
                success,
                failure: Vec::new(),
            },
        )
        .expect("etcd txn");
    }

    fn compact(&self, rev: i64) {
        self.unary::<_, pb::PbCompactionResponse>(
            "/etcdserverpb.KV/Compact",
            pb::PbCompactionRequest {
                revision: rev,
                physical: true,
            },
        )
        .expect("etcd compact");
    }
}

// ---------------------------------------------------------------------------------------------
// keel side.

/// A sink that keeps everything (the differential test never fills it).
#[derive(Clone, Default)]
struct Recorder(Rc<RefCell<VecDeque<WatchResponse>>>);

impl WatchSink for Recorder {
    fn try_send(&mut self, resp: WatchResponse) -> Result<(), WatchResponse> {
        self.0.borrow_mut().push_back(resp);
        Ok(())
    }
}

struct KeelSide {
    store: KvStore,
    hub: WatchHub<Recorder>,
    applied: u64,
}

impl KeelSide {
    fn apply(&mut self, f: impl FnOnce(&mut KvWrite<'_>)) {
        let mut w = self.store.write().expect("keel write");
        f(&mut w);
        let events = w.take_events();
        let rev = w.revision();
        self.applied += 1;
        w.commit(self.applied).expect("keel commit");
        self.hub.notify(rev, &events);
        self.sync();
    }

    fn sync(&mut self) {
        let r = self.store.read().expect("keel read");
        self.hub.sync_unsynced(&r, 1 << 20).expect("keel sync");
        assert_eq!(self.hub.unsynced_count(), 0, "an unbounded sink never lags");
    }

    fn revision(&self) -> i64 {
        self.store.read().expect("read").revision()
    }
}

// ---------------------------------------------------------------------------------------------
// Operations.

#[derive(Clone, Debug)]
enum Op {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(Vec<Op>),
    Compact(i64),
    Create(WatchCreate),
    Cancel(i64),
    Progress,
}

fn prefix_end(k: &[u8]) -> Vec<u8> {
    let mut e = k.to_vec();
    while let Some(&last) = e.last() {
        if last < 0xFF {
            *e.last_mut().expect("non-empty") += 1;
            return e;
        }
        e.pop();
    }
    vec![0]
}

const SUFFIXES: [&str; 6] = ["a", "b", "c", "d", "d/x", "d/y"];

struct Gen {
    rng: Rng,
    prefix: Vec<u8>,
    cur: i64,
    compacted: i64,
    /// Chosen watch ids handed out (never reused: see the module comment).
    next_chosen: i64,
    /// Ids known to be live on the stream (for cancels and duplicate creates).
    live: Vec<i64>,
    /// Live watchers created from a past revision that have received no event yet, with their
    /// start: etcd may still hold them in its unsynced set (nothing tells when its sync loop
    /// took them), where a compaction above their start would cancel them; keel has caught
    /// them up already. Compactions stay at or below their starts.
    pending_past: Vec<(i64, i64)>,
}

impl Gen {
    fn key(&mut self) -> Vec<u8> {
        let s = SUFFIXES[self.rng.below(SUFFIXES.len() as u64) as usize];
        [self.prefix.as_slice(), s.as_bytes()].concat()
    }

    fn value(&mut self) -> Vec<u8> {
        let n = self.rng.below(12) as usize;
        (0..n).map(|_| b'a' + self.rng.below(26) as u8).collect()
    }

    fn put(&mut self) -> Op {
        Op::Put(PutRequest {
            key: self.key(),
            value: self.value(),
            ..Default::default()
        })
    }

    fn delete(&mut self) -> Op {
        let key = self.key();
        let range_end = match self.rng.below(3) {
            0 => Vec::new(),
            1 => prefix_end(&key),
            _ => {
                let other = self.key();
                if other > key {
                    other
                } else {
                    prefix_end(&self.prefix)
                }
            }
        };
        Op::Delete(DeleteRangeRequest {
            key,
            range_end,
            prev_kv: false,
        })
    }

    fn txn(&mut self) -> Op {
        // Distinct keys, puts only or one delete of a single key plus puts of others.
        let mut used: Vec<Vec<u8>> = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..self.rng.range_i64(1, 4) {
            let k = self.key();
            if used.contains(&k) {
                continue;
            }
            used.push(k.clone());
            if self.rng.pct(25) {
                ops.push(Op::Delete(DeleteRangeRequest {
                    key: k,
                    range_end: Vec::new(),
                    prev_kv: false,
                }));
            } else {
                ops.push(Op::Put(PutRequest {
                    key: k,
                    value: self.value(),
                    ..Default::default()
                }));
            }
        }
        Op::Txn(ops)
    }

    fn create(&mut self) -> Op {
        let key = self.key();
        let (key, range_end) = match self.rng.below(6) {
            0 | 1 => (key, Vec::new()),
            2 => (self.prefix.clone(), prefix_end(&self.prefix)),
            3 => {
                let e = prefix_end(&key);
                (key, e)
            }
            4 => (key, vec![0]),
            // Sometimes empty (refused), sometimes a real range.
            _ => {
                let other = self.key();
                (key, other)
            }
        };
        let start_revision = match self.rng.below(10) {
            0..=3 => 0,
            4 => self.cur + self.rng.range_i64(1, 3),
            5 if self.compacted > 1 => self.rng.range_i64(1, self.compacted - 1),
            _ => self.rng.range_i64((self.cur - 15).max(1), self.cur),
        };
        let watch_id = match self.rng.below(10) {
            0 | 1 => {
                self.next_chosen += 1;
                self.next_chosen
            }
            2 if !self.live.is_empty() => {
                self.live[self.rng.below(self.live.len() as u64) as usize]
            }
            _ => 0,
        };
        Op::Create(WatchCreate {
            key,
            range_end,
            start_revision,
            progress_notify: self.rng.pct(20),
            no_put: self.rng.pct(15),
            no_delete: self.rng.pct(15),
            prev_kv: self.rng.pct(50),
            watch_id,
            fragment: self.rng.pct(30),
        })
    }

    /// The highest revision a compaction may pick (see `pending_past`).
    fn compact_limit(&self) -> i64 {
        self.pending_past
            .iter()
            .map(|p| p.1)
            .fold(self.cur, i64::min)
    }

    fn op(&mut self) -> Op {
        match self.rng.below(100) {
            0..=29 => self.put(),
            30..=39 => self.delete(),
            40..=49 => self.txn(),
            50..=74 => self.create(),
            75..=84 if !self.live.is_empty() => {
                Op::Cancel(self.live[self.rng.below(self.live.len() as u64) as usize])
            }
            85..=86 => Op::Cancel(1_000_000 + self.rng.below(10) as i64),
            87..=91 => Op::Progress,
            92..=95 if self.compact_limit() > self.compacted.max(0) => Op::Compact(
                self.rng
                    .range_i64(self.compacted.max(0) + 1, self.compact_limit()),
            ),
            _ => self.put(),
        }
    }
}

fn keel_apply_simple(w: &mut KvWrite<'_>, op: &Op) {
    match op {
        Op::Put(p) => {
            w.put(p).expect("keel put");
        }
        Op::Delete(d) => {
            w.delete_range(d).expect("keel delete");
        }
        Op::Txn(ops) => {
            let success = ops
                .iter()
                .map(|o| match o {
                    Op::Put(p) => RequestOp::Put(p.clone()),
                    Op::Delete(d) => RequestOp::DeleteRange(d.clone()),
                    _ => unreachable!(),
                })
                .collect();
            w.txn(&TxnRequest {
                compare: Vec::new(),
                success,
                failure: Vec::new(),
            })
            .expect("keel txn");
        }
        _ => unreachable!(),
    }
}

fn pb_create(c: &WatchCreate) -> PbWatchCreate {
    let mut filters = Vec::new();
    if c.no_put {
        filters.push(0);
    }
    if c.no_delete {
        filters.push(1);
    }
    PbWatchCreate {
        key: c.key.clone(),
        range_end: c.range_end.clone(),
        start_revision: c.start_revision,
        progress_notify: c.progress_notify,
        filters,
        prev_kv: c.prev_kv,
        watch_id: c.watch_id,
        fragment: c.fragment,
    }
}

fn readable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { '.' } else { c })
        .collect()
}

/// Waits for etcd to have at least keel's items per id, then requires equal item lists.
fn settle_and_compare(etcd: &EtcdSide, es: &mut EtcdStream, keel: &Log, ctx: &dyn Fn() -> String) {
    let want: Vec<(i64, usize)> = keel.items.iter().map(|(id, v)| (*id, v.len())).collect();
    let ok = etcd.recv_until(es, |log| want.iter().all(|&(id, n)| log.count(id) >= n));
    let mut diffs = Vec::new();
    let ids: std::collections::BTreeSet<i64> = keel
        .items
        .keys()
        .chain(es.log.items.keys())
        .copied()
        .collect();
    for id in ids {
        let k = keel.items.get(&id).cloned().unwrap_or_default();
        let e = es.log.items.get(&id).cloned().unwrap_or_default();
        if k != e {
            diffs.push(format!("watch id {id}:\n  keel: {k:?}\n  etcd: {e:?}"));
        }
    }
    if !diffs.is_empty() || !ok {
        panic!(
            "{}",
            readable(&format!(
                "keel and etcd watch responses differ (etcd settled: {ok})\n{}\n{}",
                diffs.join("\n"),
                ctx()
            ))
        );
    }
}

fn drain(rec: &Recorder, log: &mut Log) {
    while let Some(r) = rec.0.borrow_mut().pop_front() {
        log.add(r);
    }
}

#[test]
fn keel_watch_answers_as_etcd_3_4() {
    let seed = env_u64("KEEL_DIFF_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    });
    let cases = env_u64("KEEL_DIFF_CASES").unwrap_or(DEFAULT_CASES);
    eprintln!("etcd_diff_watch: seed {seed} (replay: KEEL_DIFF_SEED={seed}), {cases} sequences");

    let etcd_proc = Etcd::start();
    let etcd = EtcdSide::connect(etcd_proc.client_url());
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KvStore::open(dir.path().join("kv"), StoreOptions::default()).expect("open");
    let rev = store.read().expect("read").revision();
    let mut keel = KeelSide {
        store,
        hub: WatchHub::new(rev, WatchOptions::default()),
        applied: 0,
    };
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut compacted = 0i64;
    let (mut ops_run, mut events_seen) = (0u64, 0usize);
    let (mut compact_cancels, mut refused) = (0usize, 0usize);
    for seq in 0..cases {
        let prefix = format!("{seq:06}/").into_bytes();
        let mut g = Gen {
            rng: Rng(rng.next_u64()),
            prefix: prefix.clone(),
            cur: keel.revision(),
            compacted,
            next_chosen: 100,
            live: Vec::new(),
            pending_past: Vec::new(),
        };
        let rec = Recorder::default();
        let sid = keel.hub.open_stream(rec.clone());
        let mut klog = Log::default();
        // The sentinel: a synced watcher on the barrier key (chosen id 1).
        let barrier = [prefix.as_slice(), b"~barrier"].concat();
        let sentinel = WatchCreate {
            key: barrier.clone(),
            watch_id: 1,
            ..Default::default()
        };
        keel.hub.create(sid, sentinel.clone()).expect("sentinel");
        let mut es = etcd.open_watch(PbWatchUnion::Create(pb_create(&sentinel)));
        drain(&rec, &mut klog);
        assert!(etcd.recv_until(&mut es, |log| ctrl_count(log) >= 1));
        let mut history: Vec<String> = Vec::new();
        let n = g.rng.range_i64(OPS_MIN as i64, OPS_MAX as i64) as usize;
        for i in 0..n {
            let op = g.op();
            history.push(format!("{i}: {op:?}"));
            let ctx = || {
                format!(
                    "sequence {seq}, after op {i}; replay with KEEL_DIFF_SEED={seed}\n\
                     sequence:\n{}\netcd's log (tail):\n{}",
                    history.join("\n"),
                    etcd_proc.log_tail()
                )
            };
            match &op {
                Op::Put(p) => {
                    etcd.put(p);
                    keel.apply(|w| keel_apply_simple(w, &op));
                }
                Op::Delete(d) => {
                    etcd.delete(d);
                    keel.apply(|w| keel_apply_simple(w, &op));
                }
                Op::Txn(ops) => {
                    etcd.txn(ops);
                    keel.apply(|w| keel_apply_simple(w, &op));
                }
                Op::Compact(rev) => {
                    // Both sides must have caught every watcher up before compacting.
                    drain(&rec, &mut klog);
                    settle_and_compare(&etcd, &mut es, &klog, &ctx);
                    etcd.compact(*rev);
                    keel.apply(|w| {
                        w.compact(*rev).expect("keel compact");
                    });
                    keel.store
                        .compact_all(1000)
                        .expect("keel physical compaction");
                    keel.sync();
                    g.compacted = *rev;
                }
                Op::Create(c) => {
                    etcd.send(&es, PbWatchUnion::Create(pb_create(c)));
                    if let Ok(id) = keel.hub.create(sid, c.clone()) {
                        if !g.live.contains(&id) {
                            g.live.push(id);
                        }
                        if c.start_revision > 0 && c.start_revision <= g.cur {
                            g.pending_past.push((id, c.start_revision));
                        }
                    }
                    keel.sync();
                }
                Op::Cancel(id) => {
                    // etcd may not have replayed the watcher's history yet (its sync loop):
                    // let it catch up first, or the cancel would cut the replay short there.
                    drain(&rec, &mut klog);
                    settle_and_compare(&etcd, &mut es, &klog, &ctx);
                    etcd.send(&es, PbWatchUnion::Cancel(PbWatchCancel { watch_id: *id }));
                    keel.hub.cancel(sid, *id);
                    g.live.retain(|x| x != id);
                }
                Op::Progress => {
                    assert_eq!(keel.hub.unsynced_count(), 0);
                    etcd.send(&es, PbWatchUnion::Progress(PbWatchProgress {}));
                    keel.hub.progress(sid);
                }
            }
            // etcd answers stream requests on its control path, apart from the writes: wait
            // for its answers before the next write, so both sides see the same order.
            drain(&rec, &mut klog);
            if matches!(op, Op::Create(_) | Op::Cancel(_) | Op::Progress) {
                let want = ctrl_count(&klog);
                if !etcd.recv_until(&mut es, |log| ctrl_count(log) >= want) {
                    settle_and_compare(&etcd, &mut es, &klog, &ctx);
                    panic!("etcd did not answer a watch request\n{}", ctx());
                }
            }
            // A compaction-canceled watcher is gone on keel's side; cancels of it would differ
            // (etcd keeps its id until the client cancels), so forget it.
            drain(&rec, &mut klog);
            for (id, items) in &klog.items {
                if items
                    .iter()
                    .any(|x| matches!(x, Item::Ctrl { compact_revision: c, .. } if *c != 0))
                {
                    g.live.retain(|x| x != id);
                }
            }
            let live = &g.live;
            g.pending_past.retain(|(id, _)| {
                live.contains(id) && !klog.items[id].iter().any(|x| matches!(x, Item::Event(_)))
            });
            g.cur = keel.revision();
            ops_run += 1;
        }
        // Barrier: every event up to the barrier's revision is in etcd's stream before it.
        let bput = PutRequest {
            key: barrier,
            value: b"b".to_vec(),
            ..Default::default()
        };
        etcd.put(&bput);
        keel.apply(|w| {
            w.put(&bput).expect("barrier put");
        });
        drain(&rec, &mut klog);
        let ctx = || {
            format!(
                "sequence {seq}, at its end; replay with KEEL_DIFF_SEED={seed}\n\
                 sequence:\n{}\netcd's log (tail):\n{}",
                history.join("\n"),
                etcd_proc.log_tail()
            )
        };
        settle_and_compare(&etcd, &mut es, &klog, &ctx);
        for (id, items) in &klog.items {
            for x in items {
                if let Item::Ctrl {
                    canceled: true,
                    compact_revision,
                    ..
                } = x
                {
                    if *compact_revision != 0 {
                        compact_cancels += 1;
                    } else if *id == -1 {
                        refused += 1;
                    }
                }
            }
        }
        events_seen += klog
            .items
            .values()
            .flatten()
            .filter(|x| matches!(x, Item::Event(_)))
            .count();
        keel.hub.close_stream(sid);
        compacted = g.compacted;
    }
    if cases >= 100 {
        // The run exercised what it claims to compare.
        assert!(
            compact_cancels > 0 && refused > 0,
            "{compact_cancels} {refused}"
        );
    }
    eprintln!(
        "etcd_diff_watch: {cases} sequences, {ops_run} operations, {events_seen} events, \
         {compact_cancels} compaction cancels, {refused} refused creates, \
         identical watch responses, {:.1}s (etcd pid {})",
        started.elapsed().as_secs_f64(),
        etcd_proc.pid()
    );
}

/// A revision larger than the response limit: etcd and keel split it into fragments for a
/// watcher that asked (reassembled equal), and send it whole to one that did not.
#[test]
fn big_revision_fragments_as_etcd_3_4() {
    let etcd_proc = Etcd::start();
    let etcd = EtcdSide::connect(etcd_proc.client_url());
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KvStore::open(dir.path().join("kv"), StoreOptions::default()).expect("open");
    let rev = store.read().expect("read").revision();
    let mut keel = KeelSide {
        store,
        hub: WatchHub::new(rev, WatchOptions::default()),
        applied: 0,
    };
    let rec = Recorder::default();
    let sid = keel.hub.open_stream(rec.clone());
    let mut es = etcd.open_watch(PbWatchUnion::Progress(PbWatchProgress {}));
    let mut klog = Log::default();
    assert!(etcd.recv_until(&mut es, |log| ctrl_count(log) >= 1));
    es.log = Log::default();
    let mut keel_raw: Vec<WatchResponse> = Vec::new();
    let prefix = b"big/".to_vec();
    for (id, fragment, start) in [(1, true, 0), (2, false, 0), (3, true, 2), (4, false, 2)] {
        let c = WatchCreate {
            key: prefix.clone(),
            range_end: prefix_end(&prefix),
            prev_kv: true,
            fragment,
            watch_id: id,
            start_revision: start,
            ..Default::default()
        };
        etcd.send(&es, PbWatchUnion::Create(pb_create(&c)));
        keel.hub.create(sid, c).expect("create");
        drain(&rec, &mut klog);
        let want = ctrl_count(&klog);
        assert!(etcd.recv_until(&mut es, |log| ctrl_count(log) >= want));
    }
    // Three values of 700 KiB, then one delete of all three: the delete's revision carries
    // 2.1 MiB of prev_kv, over etcd's default 1.5 MiB limit.
    for k in ["big/a", "big/b", "big/c"] {
        let p = PutRequest {
            key: k.into(),
            value: vec![b'v'; 700 << 10],
            ..Default::default()
        };
        etcd.put(&p);
        keel.apply(|w| {
            w.put(&p).expect("put");
        });
    }
    let d = DeleteRangeRequest {
        key: prefix.clone(),
        range_end: prefix_end(&prefix),
        prev_kv: false,
    };
    etcd.delete(&d);
    keel.apply(|w| {
        w.delete_range(&d).expect("delete");
    });
    while let Some(r) = rec.0.borrow_mut().pop_front() {
        keel_raw.push(r.clone());
        klog.add(r);
    }
    settle_and_compare(&etcd, &mut es, &klog, &|| etcd_proc.log_tail());
    // keel: the delete revision reached watchers 1 and 3 as fragments, 2 and 4 whole.
    let del_rev = keel.revision();
    for id in [1, 2, 3, 4] {
        let parts: Vec<&WatchResponse> = keel_raw
            .iter()
            .filter(|r| r.watch_id == id && r.events.iter().any(|e| e.kv.mod_revision == del_rev))
            .collect();
        if id % 2 == 1 {
            assert!(parts.len() > 1, "watcher {id}: {} parts", parts.len());
            assert!(parts[..parts.len() - 1].iter().all(|r| r.fragment));
            assert!(!parts[parts.len() - 1].fragment);
            assert!(parts
                .iter()
                .all(|r| r.events.iter().all(|e| e.kv.mod_revision == del_rev)));
        } else {
            assert_eq!(parts.len(), 1, "watcher {id}");
            assert!(!parts[0].fragment);
        }
    }
    assert!(es.log.fragments > 0, "etcd fragmented too");
}
