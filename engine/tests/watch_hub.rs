//! Focused tests of the watch hub, one guarantee or feature each: ordering and atomic
//! revisions (W1, W4), the seam between history and live events (W2, W3), resuming (W5),
//! progress (W6), a stalled sink (victim, catch-up, compaction overtaking it), compaction at
//! create, fragments, filters, prev_kv, ids and cancels.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use keel_engine::mvcc::*;
use keel_engine::watch::*;

#[derive(Default)]
struct SinkState {
    cap: usize,
    queue: VecDeque<WatchResponse>,
}

/// A sink with a capacity; the test reads its queue.
#[derive(Clone)]
struct Sink(Rc<RefCell<SinkState>>);

impl Sink {
    fn new(cap: usize) -> Sink {
        Sink(Rc::new(RefCell::new(SinkState {
            cap,
            queue: VecDeque::new(),
        })))
    }
    fn take(&self) -> Vec<WatchResponse> {
        self.0.borrow_mut().queue.drain(..).collect()
    }
    fn set_cap(&self, cap: usize) {
        self.0.borrow_mut().cap = cap;
    }
}

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

struct World {
    _dir: tempfile::TempDir,
    store: KvStore,
    hub: WatchHub<Sink>,
    applied: u64,
}

impl World {
    fn new(opts: WatchOptions) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = KvStore::open(dir.path().join("kv"), StoreOptions::default()).expect("open");
        let rev = store.read().expect("read").revision();
        World {
            _dir: dir,
            store,
            hub: WatchHub::new(rev, opts),
            applied: 0,
        }
    }

    /// One apply batch: `f` writes, then commit and notify (as the apply core does).
    fn apply(&mut self, f: impl FnOnce(&mut KvWrite<'_>)) -> i64 {
        let mut w = self.store.write().expect("write");
        f(&mut w);
        let events = w.take_events();
        let rev = w.revision();
        self.applied += 1;
        w.commit(self.applied).expect("commit");
        self.hub.notify(rev, &events);
        rev
    }

    fn put(&mut self, k: &str, v: &str) -> i64 {
        self.apply(|w| {
            w.put(&PutRequest {
                key: k.into(),
                value: v.into(),
                ..Default::default()
            })
            .expect("put");
        })
    }

    fn delete(&mut self, k: &str, end: &str) -> i64 {
        self.apply(|w| {
            w.delete_range(&DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                prev_kv: false,
            })
            .expect("delete");
        })
    }

    fn sync(&mut self, max: usize) -> bool {
        let r = self.store.read().expect("read");
        self.hub.sync_unsynced(&r, max).expect("sync")
    }

    fn watch(&mut self, sid: StreamId, req: WatchCreate) -> WatchId {
        self.hub.create(sid, req).expect("create")
    }
}

fn key_watch(k: &str) -> WatchCreate {
    WatchCreate {
        key: k.into(),
        ..Default::default()
    }
}

fn prefix_watch(p: &str) -> WatchCreate {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    WatchCreate {
        key: p.into(),
        range_end: end,
        ..Default::default()
    }
}

/// (revision, key, kind) of the events in responses to watcher `id`.
fn events_of(rs: &[WatchResponse], id: WatchId) -> Vec<(i64, String, EventType)> {
    rs.iter()
        .filter(|r| r.watch_id == id)
        .flat_map(|r| r.events.iter())
        .map(|e| {
            (
                e.kv.mod_revision,
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                e.kind,
            )
        })
        .collect()
}

#[test]
fn created_response_then_live_events_in_order_with_atomic_revisions() {
    let mut w = World::new(WatchOptions::default());
    let s = Sink::new(usize::MAX);
    let sid = w.hub.open_stream(s.clone());
    let id = w.watch(sid, prefix_watch("a/"));
    let created = s.take();
    assert_eq!(created.len(), 1);
    assert!(created[0].created && !created[0].canceled);
    assert_eq!(created[0].watch_id, id);
    assert_eq!(created[0].header_revision, w.hub.revision());
    let r1 = w.put("a/1", "x");
    // One txn: three changes at one revision.
    let r2 = w.apply(|t| {
        let put = |k: &str| {
            RequestOp::Put(PutRequest {
                key: k.into(),
                value: b"y".to_vec(),
                ..Default::default()
            })
        };
        t.txn(&TxnRequest {
            compare: vec![],
            success: vec![put("a/2"), put("a/3"), put("b/1")],
            failure: vec![],
        })
        .expect("txn");
    });
    let r3 = w.delete("a/", "a0");
    let rs = s.take();
    // W4: one response per revision here, all of the revision's matching events in it.
    let per_resp: Vec<Vec<i64>> = rs
        .iter()
        .map(|r| r.events.iter().map(|e| e.kv.mod_revision).collect())
        .collect();
    assert_eq!(
        per_resp,
        vec![vec![r1], vec![r2, r2], vec![r3, r3, r3]],
        "{rs:?}"
    );
    assert_eq!(
        rs.iter().map(|r| r.header_revision).collect::<Vec<_>>(),
        vec![r1, r2, r3]
    );
    let del: Vec<String> = events_of(&rs, id)
        .into_iter()
        .filter(|e| e.2 == EventType::Delete)
        .map(|e| e.1)
        .collect();
    assert_eq!(del, vec!["a/1", "a/2", "a/3"]);
    // A delete event carries the key and the deleting revision only.
    let d = &rs[2].events[0];
    assert_eq!(
        d.kv,
        KeyValue {
            key: b"a/1".to_vec(),
            mod_revision: r3,
            ..Default::default()
        }
    );
    assert!(d.prev_kv.is_none(), "prev_kv only when asked");
}

#[test]
fn history_then_live_with_no_gap_and_no_duplicate_at_the_seam() {
    let mut w = World::new(WatchOptions::default());
    let mut revs = Vec::new();
    for i in 0..50 {
        revs.push(w.put(&format!("k/{}", i % 7), &i.to_string()));
    }
    let s = Sink::new(usize::MAX);
    let sid = w.hub.open_stream(s.clone());
    let id = w.watch(
        sid,
        WatchCreate {
            start_revision: revs[10],
            ..prefix_watch("k/")
        },
    );
    assert_eq!(w.hub.unsynced_count(), 1);
    // Catch up in small batches while writes continue between them.
    let mut rounds = 0;
    while w.sync(5) {
        revs.push(w.put(&format!("k/{}", rounds % 3), "live"));
        rounds += 1;
        assert!(rounds < 100);
    }
    assert!(rounds > 3, "the catch-up took several batches");
    revs.push(w.put("k/9", "after"));
    let got: Vec<i64> = events_of(&s.take(), id).iter().map(|e| e.0).collect();
    assert_eq!(
        got,
        revs[10..].to_vec(),
        "W1-W3: every revision once, in order"
    );
}

#[test]
fn resuming_from_the_last_revision_plus_one_gives_exactly_the_rest() {
    let mut w = World::new(WatchOptions::default());
    let s = Sink::new(usize::MAX);
    let sid = w.hub.open_stream(s.clone());
    let first = w.watch(sid, key_watch("r"));
    let mut all = Vec::new();
    for i in 0..20 {
        all.push(w.put("r", &i.to_string()));
        w.put("other", "x");
    }
    let seen = events_of(&s.take(), first);
    let last = seen[7].0;
    w.hub.cancel(sid, first);
    let second = w.watch(
        sid,
        WatchCreate {
            start_revision: last + 1,
            ..key_watch("r")
        },
    );
    w.sync(1000);
    let rest: Vec<i64> = events_of(&s.take(), second).iter().map(|e| e.0).collect();
    assert_eq!(rest, all[8..].to_vec());
}

#[test]
fn a_stalled_sink_makes_a_victim_that_catches_up_without_holding_others_back() {
    let mut w = World::new(WatchOptions::default());
    let slow = Sink::new(1);
    let fast = Sink::new(usize::MAX);
    let s_slow = w.hub.open_stream(slow.clone());
    let s_fast = w.hub.open_stream(fast.clone());
    let id_slow = w.watch(s_slow, key_watch("x"));
    let id_fast = w.watch(s_fast, key_watch("x"));
    // The slow sink is full with its created response: the watcher becomes a victim.
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(w.put("x", &i.to_string()));
        // The fast stream has each event at once.
        let got: Vec<i64> = events_of(&fast.take(), id_fast)
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(got, vec![revs[i]]);
    }
    assert_eq!(w.hub.unsynced_count(), 1);
    assert!(w.hub.needs_sync());
    // Still full: nothing moves.
    w.sync(1000);
    assert_eq!(w.hub.unsynced_count(), 1);
    // The client reads; room for everything: caught up from history, then live again.
    let mut got = slow.take();
    slow.set_cap(usize::MAX);
    assert!(!w.sync(1000));
    assert_eq!(w.hub.unsynced_count(), 0);
    revs.push(w.put("x", "live"));
    got.extend(slow.take());
    assert!(got[0].created);
    let evs: Vec<i64> = events_of(&got, id_slow).iter().map(|e| e.0).collect();
    assert_eq!(evs, revs);
}

#[test]
fn a_victim_overtaken_by_compaction_is_canceled_with_the_compact_revision() {
    let mut w = World::new(WatchOptions::default());
    let slow = Sink::new(1);
    let sid = w.hub.open_stream(slow.clone());
    let id = w.watch(sid, key_watch("x"));
    let first = w.put("x", "1");
    for i in 0..5 {
        w.put("x", &i.to_string());
    }
    let c = w.put("y", "compact here");
    w.apply(|t| {
        t.compact(c).expect("compact");
    });
    w.store.compact_all(100).expect("physical");
    let got_before = slow.take();
    slow.set_cap(usize::MAX);
    assert!(!w.sync(1000));
    let rs = slow.take();
    assert!(got_before[0].created);
    assert!(events_of(&rs, id).is_empty(), "{rs:?}");
    let cancel = rs.last().expect("a cancel");
    assert!(cancel.canceled);
    assert_eq!(cancel.watch_id, id);
    assert_eq!(cancel.compact_revision, c);
    assert!(first < c);
    assert_eq!(w.hub.watcher_count(), 0);
    // Later writes reach nobody on that stream.
    w.put("x", "after");
    assert!(slow.take().is_empty());
}

#[test]
fn watching_from_a_compacted_revision_answers_created_then_canceled() {
    let mut w = World::new(WatchOptions::default());
    for i in 0..5 {
        w.put("k", &i.to_string());
    }
    let c = w.hub.revision() - 1;
    w.apply(|t| {
        t.compact(c).expect("compact");
    });
    let s = Sink::new(usize::MAX);
    let sid = w.hub.open_stream(s.clone());
    let id = w.watch(
        sid,
        WatchCreate {
            start_revision: c - 1,
            ..key_watch("k")
        },
    );
    // At the compaction revision itself is allowed (etcd's rule): it gets revision c on.
    let at = w.watch(
        sid,
        WatchCreate {
            start_revision: c,
            ..key_watch("k")
        },
    );
    w.sync(100);
    let rs = s.take();
    assert!(rs[0].created && rs[0].watch_id == id);
    assert!(rs[1].created && rs[1].watch_id == at);
    let canceled: Vec<&WatchResponse> = rs.iter().filter(|r| r.canceled).collect();
    assert_eq!(canceled.len(), 1);
    assert_eq!(canceled[0].watch_id, id);
    assert_eq!(canceled[0].compact_revision, c);
    let got: Vec<i64> = events_of(&rs, at).iter().map(|e| e.0).collect();
    assert_eq!(got, vec![c, c + 1]);
}

#[test]
fn big_revisions_fragment_only_when_asked_and_fragments_are_never_lost() {
    let mut w = World::new(WatchOptions {
        max_response_bytes: 1000,
    });
    // Sink room for 2: a revision of 4 fragments must still arrive whole.
    let s = Sink::new(2);
    let sid = w.hub.open_stream(s.clone());
    let frag = w.watch(
        sid,
        WatchCreate {
            fragment: true,
            ..prefix_watch("f/")
        },
    );
    let plain = w.watch(sid, prefix_watch("f/"));
    s.take();
    let big = "v".repeat(600);
    let rev = w.apply(|t| {
        let ops = (0..4)
            .map(|i| {
                RequestOp::Put(PutRequest {
                    key: format!("f/{i}").into(),
                    value: big.clone().into(),
                    ..Default::default()
                })
            })
            .collect();
        t.txn(&TxnRequest {
            compare: vec![],
            success: ops,
            failure: vec![],
        })
        .expect("txn");
    });
    let mut rs = s.take();
    s.set_cap(usize::MAX);
    w.sync(100);
    rs.extend(s.take());
    let f: Vec<&WatchResponse> = rs.iter().filter(|r| r.watch_id == frag).collect();
    assert_eq!(f.len(), 4, "{f:?}");
    assert!(f[..3].iter().all(|r| r.fragment) && !f[3].fragment);
    assert_eq!(f.iter().map(|r| r.events.len()).sum::<usize>(), 4);
    // Contiguous: no other response of this watcher in between.
    let p: Vec<&WatchResponse> = rs.iter().filter(|r| r.watch_id == plain).collect();
    assert_eq!(p.len(), 1, "whole revision for a watcher without fragment");
    assert_eq!(p[0].events.len(), 4);
    assert!(p[0].events.iter().all(|e| e.kv.mod_revision == rev));
}

#[test]
fn filters_and_prev_kv() {
    let mut w = World::new(WatchOptions::default());
    let s = Sink::new(usize::MAX);
    let sid = w.hub.open_stream(s.clone());
    let no_put = w.watch(
        sid,
        WatchCreate {
            no_put: true,
            ..key_watch("p")
        },
    );
    let no_del = w.watch(
        sid,
        WatchCreate {
            no_delete: true,
            prev_kv: true,
            ..key_watch("p")
        },
    );
    let r1 = w.put("p", "1");
    let r2 = w.put("p", "2");
    let r3 = w.delete("p", "");
    let rs = s.take();
    assert_eq!(
        events_of(&rs, no_put),
        vec![(r3, "p".into(), EventType::Delete)]
    );
    assert_eq!(
        events_of(&rs, no_del),
        vec![
            (r1, "p".into(), EventType::Put),
            (r2, "p".into(), EventType::Put)
        ]
    );
    let second = rs
        .iter()
        .filter(|r| r.watch_id == no_del && !r.events.is_empty())
        .nth(1)
        .expect("second put");
    let prev = second.events[0].prev_kv.as_ref().expect("prev_kv");
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], r1));
    // A response of filtered-out events only is not sent (created + the delete).
    assert_eq!(rs.iter().filter(|r| r.watch_id == no_put).count(), 2);
    // The same from history.
    let hist = w.watch(
        sid,
        WatchCreate {
            start_revision: r1,
            prev_kv: true,
            ..key_watch("p")
        },
    );
    w.sync(100);
    let rs = s.take();
    let evs: Vec<&Event> = rs
        .iter()
        .filter(|r| r.watch_id == hist)
        .flat_map(|r| &r.events)
        .collect();
    assert_eq!(evs.len(), 3);
    assert!(evs[0].prev_kv.is_none());
    assert_eq!(evs[1].prev_kv.as_ref().unwrap().mod_revision, r1);
    assert_eq!(evs[2].prev_kv.as_ref().unwrap().mod_revision, r2);
}

#[test]
fn progress_waits_for_unsynced_watchers_and_ticks_only_quiet_watchers() {
    let mut w = World::new(WatchOptions::default());
    for i in 0..10 {
        w.put("h", &i.to_string());
    }
    let s = Sink::new(usize::MAX);
    let sid = w.hub.open_stream(s.clone());
    let live = w.watch(
        sid,
        WatchCreate {
            progress_notify: true,
            ..key_watch("q")
        },
    );
    let behind = w.watch(
        sid,
        WatchCreate {
            start_revision: 2,
            ..key_watch("h")
        },
    );
    s.take();
    w.hub.progress(sid);
    assert!(s.take().is_empty(), "W6: a watcher is still behind");
    w.sync(3);
    let mut rs = s.take();
    assert!(rs.iter().all(|r| r.watch_id != -1));
    while w.sync(3) {}
    rs.extend(s.take());
    let progress = rs.last().expect("progress");
    assert_eq!((progress.watch_id, progress.header_revision), (-1, 11));
    assert_eq!(events_of(&rs, behind).len(), 10);
    // Synced stream: answered at once.
    w.hub.progress(sid);
    assert_eq!(s.take()[0].header_revision, w.hub.revision());
    // Periodic: only the progress_notify watcher, only when it was quiet.
    w.hub.progress_tick();
    let t = s.take();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].watch_id, t[0].events.len()), (live, 0));
    let r = w.put("q", "busy");
    s.take();
    w.hub.progress_tick();
    assert!(s.take().is_empty(), "not quiet since the last tick");
    w.hub.progress_tick();
    assert_eq!(s.take()[0].header_revision, r);
}

#[test]
fn ids_duplicates_empty_ranges_and_cancels() {
    let mut w = World::new(WatchOptions::default());
    let s = Sink::new(usize::MAX);
    let sid = w.hub.open_stream(s.clone());
    assert_eq!(w.watch(sid, key_watch("a")), 0);
    assert_eq!(
        w.watch(
            sid,
            WatchCreate {
                watch_id: 1,
                ..key_watch("a")
            }
        ),
        1
    );
    assert_eq!(
        w.watch(sid, key_watch("a")),
        2,
        "automatic ids skip used ones"
    );
    let dup = w.hub.create(
        sid,
        WatchCreate {
            watch_id: 2,
            ..key_watch("b")
        },
    );
    assert_eq!(dup, Err(WatchError::DuplicateId));
    let empty = w.hub.create(
        sid,
        WatchCreate {
            key: b"b".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        },
    );
    assert_eq!(empty, Err(WatchError::EmptyRange));
    let rs = s.take();
    let refused: Vec<&WatchResponse> = rs.iter().filter(|r| r.canceled).collect();
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|r| r.created && r.watch_id == -1));
    assert_eq!(refused[0].cancel_reason, WatchError::DuplicateId.message());
    assert!(w.hub.cancel(sid, 1));
    assert!(!w.hub.cancel(sid, 1));
    let rs = s.take();
    assert_eq!(rs.len(), 1);
    assert!(rs[0].canceled && rs[0].watch_id == 1);
    let r = w.put("a", "v");
    let ids: Vec<WatchId> = s.take().iter().map(|r| r.watch_id).collect();
    assert_eq!(ids, vec![0, 2], "{r}");
    w.hub.close_stream(sid);
    assert_eq!(w.hub.watcher_count(), 0);
    w.put("a", "w");
    assert!(s.take().is_empty());
}

#[test]
fn a_future_start_revision_holds_back_earlier_events() {
    let mut w = World::new(WatchOptions::default());
    let s = Sink::new(usize::MAX);
    let sid = w.hub.open_stream(s.clone());
    let start = w.hub.revision() + 3;
    let id = w.watch(
        sid,
        WatchCreate {
            start_revision: start,
            ..key_watch("f")
        },
    );
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(w.put("f", &i.to_string()));
    }
    let got: Vec<i64> = events_of(&s.take(), id).iter().map(|e| e.0).collect();
    assert_eq!(
        got,
        revs.into_iter().filter(|&r| r >= start).collect::<Vec<_>>()
    );
}
