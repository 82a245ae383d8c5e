//! Model test of the watch hub (issue 6, watch half, point 1): 10,000 watchers on distinct
//! keys, 1,000 prefix watchers (plus 10 of the whole key space), and some from-key and range
//! watchers, spread over streams of
//! which some have small sinks drained at random (their watchers fall behind, become victims,
//! and are caught up from the store's history), under random puts, deletes, txns and
//! compactions; more watchers join later from past revisions, some below the compaction.
//!
//! The model is independent of the hub: the list of every event the store produced (from
//! `KvWrite::take_events`), indexed by key. Each watcher's expected events are computed from
//! it (its keys, start revision, filters, prev_kv) and compared with what its stream received,
//! in order (W1–W4). A watcher canceled by compaction must have received an exact prefix of
//! its expected events, and a compaction revision above the last one it got. Every progress
//! response at revision R must come after every expected event <= R of the stream's watchers
//! (W6).
//!
//! Compactions are made at revisions without deletions: etcd's rule (kept by keel) lets a
//! watcher replay from exactly the compaction revision, whose deletions may be physically gone.
//!
//! Knobs: `KEEL_WATCH_SEED` (replay; a failure prints the seed), `KEEL_WATCH_STEPS` (write
//! batches, default 4,000).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use keel_engine::mvcc::*;
use keel_engine::watch::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// A sink with a capacity; the test's "client" moves responses from `queue` to `log`.
#[derive(Default)]
struct SinkState {
    cap: usize,
    queue: VecDeque<WatchResponse>,
    log: Vec<WatchResponse>,
}

#[derive(Clone)]
struct Sink(Rc<RefCell<SinkState>>);

impl WatchSink for Sink {
    fn try_send(&mut self, resp: WatchResponse) -> Result<(), WatchResponse> {
        let mut s = self.0.borrow_mut();
        if s.queue.len() >= s.cap {
            return Err(resp);
        }
        s.queue.push_back(resp);
        Ok(())
    }
}

impl Sink {
    fn drain(&self, n: usize) {
        let mut s = self.0.borrow_mut();
        for _ in 0..n {
            let Some(r) = s.queue.pop_front() else { break };
            s.log.push(r);
        }
    }
}

const KEYS: usize = 10_000;

fn key(i: usize) -> Vec<u8> {
    format!("k/{i:04}").into_bytes()
}

fn prefix_end(k: &[u8]) -> Vec<u8> {
    let mut e = k.to_vec();
    *e.last_mut().expect("non-empty prefix") += 1;
    e
}

/// A watcher as the test created it.
struct Spec {
    stream: usize,
    id: WatchId,
    req: WatchCreate,
    /// The first revision it should get (its start, or the hub's revision + 1 for 0).
    from: i64,
}

fn in_range(k: &[u8], req: &WatchCreate) -> bool {
    if req.range_end.is_empty() {
        k == req.key.as_slice()
    } else if req.range_end == [0] {
        k >= req.key.as_slice()
    } else {
        k >= req.key.as_slice() && k < req.range_end.as_slice()
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().parse().expect("a u64"))
}

#[test]
fn every_watcher_gets_exactly_its_events() {
    let seed = env_u64("KEEL_WATCH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    });
    let steps = env_u64("KEEL_WATCH_STEPS").unwrap_or(4000);
    eprintln!("watch_model: seed {seed} (replay: KEEL_WATCH_SEED={seed}), {steps} steps");
    let result = std::panic::catch_unwind(|| run(seed, steps));
    if let Err(e) = result {
        eprintln!("watch_model failed; replay with KEEL_WATCH_SEED={seed}");
        std::panic::resume_unwind(e);
    }
}

fn run(seed: u64, steps: u64) {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = KvStore::open(dir.path().join("kv"), StoreOptions::default()).expect("open");
    let mut hub: WatchHub<Sink> = WatchHub::new(
        store.read().expect("read").revision(),
        WatchOptions {
            // Small, so that replays are cut into several responses.
            max_response_bytes: 4096,
        },
    );

    // Streams: 100 for the key watchers, 10 for prefixes, 2 for from-key/range watchers, 8
    // for late watchers. Every fourth stream has a small sink drained at random.
    let mut sinks: Vec<Sink> = Vec::new();
    let mut sids: Vec<StreamId> = Vec::new();
    for i in 0..120 {
        let cap = if i % 4 == 3 { 3 } else { usize::MAX };
        let s = Sink(Rc::new(RefCell::new(SinkState {
            cap,
            ..Default::default()
        })));
        sids.push(hub.open_stream(s.clone()));
        sinks.push(s);
    }
    let mut specs: Vec<Spec> = Vec::new();
    let random_flags = |rng: &mut Rng, mut req: WatchCreate| {
        req.prev_kv = rng.pct(50);
        req.no_put = rng.pct(10);
        req.no_delete = rng.pct(10);
        req
    };
    let create = |hub: &mut WatchHub<Sink>, specs: &mut Vec<Spec>, stream: usize, req| {
        let from = if req_start(&req) == 0 {
            hub.revision() + 1
        } else {
            req_start(&req)
        };
        let id = hub
            .create(sids[stream], WatchCreate::clone(&req))
            .expect("create");
        specs.push(Spec {
            stream,
            id,
            req,
            from,
        });
    };
    fn req_start(r: &WatchCreate) -> i64 {
        r.start_revision
    }
    for i in 0..KEYS {
        let req = random_flags(
            &mut rng,
            WatchCreate {
                key: key(i),
                ..Default::default()
            },
        );
        create(&mut hub, &mut specs, i / 100, req);
    }
    for p in 0..1000 {
        let prefix = format!("k/{p:03}").into_bytes();
        let fragment = rng.pct(50);
        let req = random_flags(
            &mut rng,
            WatchCreate {
                range_end: prefix_end(&prefix),
                key: prefix,
                fragment,
                ..Default::default()
            },
        );
        create(&mut hub, &mut specs, 100 + p / 100, req);
    }
    for j in 0..40 {
        let a = rng.below(KEYS as u64 - 1) as usize;
        let b = (a + 1 + rng.below(300) as usize).min(KEYS - 1);
        let req = random_flags(
            &mut rng,
            WatchCreate {
                key: key(a),
                range_end: if j % 2 == 0 { vec![0] } else { key(b) },
                ..Default::default()
            },
        );
        create(&mut hub, &mut specs, 110 + j / 20, req);
    }
    // Watchers of every key on small sinks: always busy, often victims, caught up often.
    for j in 0..10 {
        let req = random_flags(
            &mut rng,
            WatchCreate {
                key: b"k/".to_vec(),
                range_end: b"k0".to_vec(),
                fragment: j % 2 == 0,
                ..Default::default()
            },
        );
        create(&mut hub, &mut specs, if j < 5 { 103 } else { 107 }, req);
    }

    // The model: every event, and per key the indices of its events.
    let mut all: Vec<Event> = Vec::new();
    let mut by_key: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    let mut revs_with_delete: std::collections::HashSet<i64> = Default::default();
    let mut compacted = 0i64;
    let mut applied = 0u64;
    let mut became_victim = 0usize;
    for step in 0..steps {
        let mut w = store.write().expect("write");
        for _ in 0..1 + rng.below(3) {
            match rng.below(100) {
                0..=49 => {
                    let k = key(rng.below(KEYS as u64) as usize);
                    w.put(&PutRequest {
                        key: k,
                        value: vec![b'a' + rng.below(26) as u8; rng.below(300) as usize],
                        ..Default::default()
                    })
                    .expect("put");
                }
                50..=69 => {
                    let i = rng.below(KEYS as u64) as usize;
                    let d = if rng.pct(50) {
                        DeleteRangeRequest {
                            key: key(i),
                            ..Default::default()
                        }
                    } else {
                        let p = format!("k/{:03}", i / 10).into_bytes();
                        DeleteRangeRequest {
                            range_end: prefix_end(&p),
                            key: p,
                            prev_kv: false,
                        }
                    };
                    w.delete_range(&d).expect("delete");
                }
                70..=97 => {
                    let base = rng.below(KEYS as u64 - 10) as usize;
                    let mut ops = Vec::new();
                    for j in 0..1 + rng.below(4) as usize {
                        let k = key(base + j * 2);
                        ops.push(if rng.pct(20) {
                            RequestOp::DeleteRange(DeleteRangeRequest {
                                key: k,
                                ..Default::default()
                            })
                        } else {
                            RequestOp::Put(PutRequest {
                                key: k,
                                value: vec![b'x'; rng.below(200) as usize],
                                ..Default::default()
                            })
                        });
                    }
                    w.txn(&TxnRequest {
                        compare: Vec::new(),
                        success: ops,
                        failure: Vec::new(),
                    })
                    .expect("txn");
                }
                _ => {
                    // Compaction at a revision without deletions (see the module comment).
                    let cur = w.revision();
                    let lo = compacted + 1;
                    if cur > lo + 100 {
                        let c = lo + rng.below((cur - 100 - lo) as u64) as i64;
                        if !revs_with_delete.contains(&c) {
                            w.compact(c).expect("compact");
                            compacted = c;
                        }
                    }
                }
            }
        }
        let events = w.take_events();
        let rev = w.revision();
        applied += 1;
        w.commit(applied).expect("commit");
        for e in &events {
            if e.kind == EventType::Delete {
                revs_with_delete.insert(e.kv.mod_revision);
            }
            by_key.entry(e.kv.key.clone()).or_default().push(all.len());
            all.push(e.clone());
        }
        let before = hub.unsynced_count();
        hub.notify(rev, &events);
        became_victim += hub.unsynced_count() - before;
        if rng.pct(20) {
            store.compact_step(500).expect("physical compaction");
        }
        // Late watchers, from past revisions (some below the compaction revision).
        if rng.pct(15) {
            let stream = 112 + rng.below(8) as usize;
            let start = 1 + rng.below(rev as u64) as i64;
            let req = if rng.pct(50) {
                WatchCreate {
                    key: key(rng.below(KEYS as u64) as usize),
                    start_revision: start,
                    ..Default::default()
                }
            } else {
                let p = format!("k/{:02}", rng.below(100)).into_bytes();
                WatchCreate {
                    range_end: prefix_end(&p),
                    key: p,
                    start_revision: start,
                    ..Default::default()
                }
            };
            let req = random_flags(&mut rng, req);
            create(&mut hub, &mut specs, stream, req);
        }
        // Clients read at random; progress requests now and then.
        for (i, s) in sinks.iter().enumerate() {
            if i % 4 != 3 || rng.pct(30) {
                s.drain(usize::MAX);
            }
        }
        if rng.pct(10) {
            let s = rng.below(sids.len() as u64) as usize;
            hub.progress(sids[s]);
        }
        if step % 3 == 0 || rng.pct(30) {
            let r = store.read().expect("read");
            hub.sync_unsynced(&r, 200).expect("sync");
        }
    }
    // Drain everything and catch everyone up.
    let r = store.read().expect("read");
    for round in 0.. {
        for s in &sinks {
            s.drain(usize::MAX);
        }
        if !hub.sync_unsynced(&r, 10_000).expect("sync") {
            break;
        }
        assert!(round < 10_000, "the hub never caught up");
    }
    for s in &sinks {
        s.drain(usize::MAX);
    }
    assert_eq!(hub.unsynced_count(), 0);

    let canceled = check(&specs, &sinks, &all, &by_key, compacted);
    eprintln!(
        "watch_model: {} watchers, {} events, compacted to {compacted}, {became_victim} times \
         a watcher fell behind, {canceled} watchers canceled by compaction",
        specs.len(),
        all.len(),
    );
}

/// Expected events of a watcher, from the model.
fn expected(spec: &Spec, all: &[Event], by_key: &HashMap<Vec<u8>, Vec<usize>>) -> Vec<Event> {
    let req = &spec.req;
    let mut idx: Vec<usize> = if req.range_end.is_empty() {
        by_key.get(&req.key).cloned().unwrap_or_default()
    } else {
        by_key
            .iter()
            .filter(|(k, _)| in_range(k, req))
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    };
    idx.sort_unstable();
    idx.into_iter()
        .map(|i| &all[i])
        .filter(|e| e.kv.mod_revision >= spec.from)
        .filter(|e| match e.kind {
            EventType::Put => !req.no_put,
            EventType::Delete => !req.no_delete,
        })
        .map(|e| Event {
            prev_kv: if req.prev_kv { e.prev_kv.clone() } else { None },
            ..e.clone()
        })
        .collect()
}

fn check(
    specs: &[Spec],
    sinks: &[Sink],
    all: &[Event],
    by_key: &HashMap<Vec<u8>, Vec<usize>>,
    compacted: i64,
) -> usize {
    // Expected events per (stream, id), and per stream the ids in creation order.
    let mut exp: HashMap<(usize, WatchId), Vec<Event>> = HashMap::new();
    for s in specs {
        exp.insert((s.stream, s.id), expected(s, all, by_key));
    }
    let mut checked = 0usize;
    let mut n_canceled = 0usize;
    for (si, sink) in sinks.iter().enumerate() {
        let st = sink.0.borrow();
        // Per id: events received so far, whether created / canceled, fragments pending.
        let mut got: HashMap<WatchId, Vec<Event>> = HashMap::new();
        let mut canceled: HashMap<WatchId, i64> = HashMap::new();
        let mut frag_open: HashMap<WatchId, i64> = HashMap::new();
        for r in &st.log {
            if r.created {
                assert!(!r.canceled, "stream {si}: refused create {r:?}");
                assert!(got.insert(r.watch_id, Vec::new()).is_none());
                continue;
            }
            if r.watch_id == -1 {
                // W6: a progress response at R follows every event <= R of every watcher.
                for (id, evs) in &got {
                    if canceled.contains_key(id) {
                        continue;
                    }
                    let want = exp[&(si, *id)]
                        .iter()
                        .filter(|e| e.kv.mod_revision <= r.header_revision)
                        .count();
                    assert_eq!(
                        evs.len(),
                        want,
                        "stream {si} watcher {id}: progress at {} before all its events",
                        r.header_revision
                    );
                }
                continue;
            }
            let evs = got
                .get_mut(&r.watch_id)
                .unwrap_or_else(|| panic!("stream {si}: response before created: {r:?}"));
            if r.canceled {
                assert!(
                    r.compact_revision > 0,
                    "only compaction cancels here: {r:?}"
                );
                assert!(canceled.insert(r.watch_id, r.compact_revision).is_none());
                continue;
            }
            assert!(!canceled.contains_key(&r.watch_id), "events after cancel");
            assert!(!r.events.is_empty(), "empty event response {r:?}");
            // W4: one response holds whole revisions, or fragments of one revision.
            let first = r.events[0].kv.mod_revision;
            if let Some(open) = frag_open.get(&r.watch_id) {
                assert!(r.events.iter().all(|e| e.kv.mod_revision == *open));
            } else if let Some(last) = evs.last() {
                assert!(
                    last.kv.mod_revision < first,
                    "a revision split across responses"
                );
            }
            if r.fragment {
                assert!(r.events.iter().all(|e| e.kv.mod_revision == first));
                frag_open.insert(r.watch_id, first);
            } else {
                frag_open.remove(&r.watch_id);
            }
            evs.extend(r.events.iter().cloned());
        }
        for (id, evs) in &got {
            let want = &exp[&(si, *id)];
            match canceled.get(id) {
                None => {
                    assert_eq!(evs.len(), want.len(), "stream {si} watcher {id}: count");
                    for (g, w) in evs.iter().zip(want) {
                        assert_events_eq(g, w, compacted, si, *id);
                    }
                }
                Some(c) => {
                    n_canceled += 1;
                    assert!(evs.len() <= want.len());
                    for (g, w) in evs.iter().zip(want) {
                        assert_events_eq(g, w, compacted, si, *id);
                    }
                    if let Some(l) = evs.last() {
                        assert!(l.kv.mod_revision < *c, "canceled at {c} after {l:?}");
                    }
                    assert!(*c <= compacted);
                }
            }
            checked += 1;
        }
        assert!(frag_open.is_empty(), "a fragment series never ended");
    }
    assert_eq!(checked, specs.len(), "every watcher was created");
    n_canceled
}

/// Equal events; a replayed event at the compaction revision may lack its prev_kv (the read at
/// rev - 1 is below the compaction, as in etcd).
fn assert_events_eq(g: &Event, w: &Event, compacted: i64, si: usize, id: WatchId) {
    if g.prev_kv.is_none() && w.prev_kv.is_some() && w.kv.mod_revision - 1 < compacted {
        assert_eq!((g.kind, &g.kv), (w.kind, &w.kv), "stream {si} watcher {id}");
        return;
    }
    assert_eq!(g, w, "stream {si} watcher {id}");
}
