//! Property test of the MVCC index and compaction (issue 5, point 2) against a simple model: a
//! map from key to its list of (revision, value or tombstone). Random puts, deletes (single,
//! ranges, from-key), txns, compactions (scheduled, then finished in small batches), reopen, and
//! ranges at random revisions — current, historical, compacted, future — with limits; every
//! response is compared field by field with what the model derives.

use std::collections::BTreeMap;

use keel_engine::mvcc::*;
use proptest::prelude::*;

#[derive(Default, Clone)]
struct Model {
    rev: i64,
    compacted: i64,
    history: BTreeMap<Vec<u8>, Vec<(i64, Option<KeyValue>)>>,
}

impl Model {
    fn state_at(&self, rev: i64) -> BTreeMap<Vec<u8>, KeyValue> {
        let mut m = BTreeMap::new();
        for (k, h) in &self.history {
            if let Some((_, Some(kv))) = h.iter().rev().find(|(r, _)| *r <= rev) {
                m.insert(k.clone(), kv.clone());
            }
        }
        m
    }
    fn live(&self, k: &[u8]) -> Option<KeyValue> {
        self.history
            .get(k)
            .and_then(|h| h.last())
            .and_then(|(_, kv)| kv.clone())
    }
    fn put(&mut self, main: i64, k: &[u8], v: &[u8]) -> Option<KeyValue> {
        let prev = self.live(k);
        let (create, version) = prev
            .as_ref()
            .map_or((main, 1), |p| (p.create_revision, p.version + 1));
        let kv = KeyValue {
            key: k.to_vec(),
            create_revision: create,
            mod_revision: main,
            version,
            value: v.to_vec(),
            lease: 0,
        };
        self.history
            .entry(k.to_vec())
            .or_default()
            .push((main, Some(kv)));
        prev
    }
    fn delete(&mut self, main: i64, start: &[u8], end: &[u8]) -> Vec<KeyValue> {
        let victims: Vec<KeyValue> = self
            .state_at(i64::MAX)
            .into_iter()
            .filter(|(k, _)| in_range(k, start, end))
            .map(|(_, v)| v)
            .collect();
        for v in &victims {
            self.history.get_mut(&v.key).unwrap().push((main, None));
        }
        victims
    }
}

fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        k >= key
    } else {
        k >= key && k < end
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8, bool),
    Range(u8, u8, u8, i64),
    /// if version(key) == v then put else delete
    Txn(u8, i64, u8),
    /// A read-only txn (compares, ranges, nested txns) answered from the read view must equal
    /// the same txn applied through a write batch.
    ReadTxn(u8, i64, u8, u8),
    Compact(u8),
    CompactSteps,
    Reopen,
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + (k % 20)]
}

fn end_of(kind: u8, k: u8) -> Vec<u8> {
    match kind % 4 {
        0 => Vec::new(),
        1 => vec![0],
        2 => vec![b'a' + (k % 20) + 3],
        _ => vec![b'a' + (k % 20), 0xFF],
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(k, e, p)| Op::Delete(k, e, p)),
        8 => (any::<u8>(), any::<u8>(), any::<u8>(), 0i64..5).prop_map(|(k, e, r, l)| Op::Range(k, e, r, l)),
        3 => (any::<u8>(), 0i64..3, any::<u8>()).prop_map(|(k, v, x)| Op::Txn(k, v, x)),
        3 => (any::<u8>(), 0i64..3, any::<u8>(), any::<u8>()).prop_map(|(k, v, e, r)| Op::ReadTxn(k, v, e, r)),
        1 => any::<u8>().prop_map(Op::Compact),
        1 => Just(Op::CompactSteps),
        1 => Just(Op::Reopen),
    ]
}

/// A range's revision chosen by `rsel`: current (0), the head, a future one, or any past one.
fn pick_revision(rsel: u8, head: i64) -> i64 {
    match rsel % 5 {
        0 => 0,
        1 => head,
        2 => head + 1 + (rsel as i64 % 3),
        _ => (rsel as i64) % (head + 1),
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        btree: keel_engine::btree::Options {
            map_size: 1 << 30,
            grow_step: 1 << 20,
            ..Default::default()
        },
        ..StoreOptions::default()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let path = dir.path().join("kv");
    let mut store = KvStore::open(&path, opts()).unwrap();
    // etcd's conventions: revision 1 before the first write, no compaction yet.
    let mut m = Model {
        rev: 1,
        compacted: -1,
        ..Model::default()
    };
    let mut applied = 0u64;
    for op in ops {
        let mut w = store.write().unwrap();
        match op {
            Op::Put(k, v) => {
                let r = w
                    .put(&PutRequest {
                        key: key(k),
                        value: vec![v; (v % 5) as usize],
                        prev_kv: true,
                        ..Default::default()
                    })
                    .unwrap();
                m.rev += 1;
                let prev = m.put(m.rev, &key(k), &vec![v; (v % 5) as usize]);
                prop_assert_eq!(
                    r,
                    PutResponse {
                        header: ResponseHeader { revision: m.rev },
                        prev_kv: prev
                    }
                );
            }
            Op::Delete(k, e, prev_kv) => {
                let end = end_of(e, k);
                let r = w
                    .delete_range(&DeleteRangeRequest {
                        key: key(k),
                        range_end: end.clone(),
                        prev_kv,
                    })
                    .unwrap();
                let victims = m.delete(m.rev + 1, &key(k), &end);
                if !victims.is_empty() {
                    m.rev += 1;
                }
                let want = DeleteRangeResponse {
                    header: ResponseHeader { revision: m.rev },
                    deleted: victims.len() as i64,
                    prev_kvs: if prev_kv { victims } else { vec![] },
                };
                prop_assert_eq!(r, want);
            }
            Op::Range(k, e, rsel, limit) => {
                let revision = pick_revision(rsel, m.rev);
                let end = end_of(e, k);
                let req = RangeRequest {
                    key: key(k),
                    range_end: end.clone(),
                    revision,
                    limit,
                    ..Default::default()
                };
                let got = w.range(&req);
                let at = if revision <= 0 { m.rev } else { revision };
                if revision > m.rev {
                    prop_assert_eq!(got.unwrap_err(), KvError::FutureRev);
                } else if at < m.compacted {
                    prop_assert_eq!(got.unwrap_err(), KvError::Compacted);
                } else {
                    let all: Vec<KeyValue> = m
                        .state_at(at)
                        .into_iter()
                        .filter(|(kk, _)| in_range(kk, &key(k), &end))
                        .map(|(_, v)| v)
                        .collect();
                    let more = limit > 0 && all.len() > limit as usize;
                    let kvs = if more {
                        all[..limit as usize].to_vec()
                    } else {
                        all.clone()
                    };
                    let want = RangeResponse {
                        header: ResponseHeader { revision: m.rev },
                        kvs,
                        more,
                        count: all.len() as i64,
                    };
                    prop_assert_eq!(
                        got.unwrap(),
                        want,
                        "range at {} of {:?}..{:?}",
                        at,
                        key(k),
                        end
                    );
                }
            }
            Op::Txn(k, v, x) => {
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Version(v),
                        key: key(k),
                        range_end: vec![],
                    }],
                    success: vec![
                        RequestOp::Put(PutRequest {
                            key: key(k),
                            value: vec![x],
                            ..Default::default()
                        }),
                        RequestOp::Range(RangeRequest {
                            key: key(k),
                            ..Default::default()
                        }),
                    ],
                    failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                        key: key(x),
                        range_end: vec![],
                        prev_kv: true,
                    })],
                };
                let r = w.txn(&req).unwrap();
                let version = m.live(&key(k)).map_or(0, |kv| kv.version);
                if version == v {
                    m.rev += 1;
                    m.put(m.rev, &key(k), &[x]);
                    prop_assert!(r.succeeded);
                    let ResponseOp::Range(rr) = &r.responses[1] else {
                        panic!()
                    };
                    prop_assert_eq!(&rr.kvs, &vec![m.live(&key(k)).unwrap()]);
                } else {
                    let victims = m.delete(m.rev + 1, &key(x), &[]);
                    if !victims.is_empty() {
                        m.rev += 1;
                    }
                    prop_assert!(!r.succeeded);
                    let ResponseOp::DeleteRange(d) = &r.responses[0] else {
                        panic!()
                    };
                    prop_assert_eq!(&d.prev_kvs, &victims);
                }
                prop_assert_eq!(r.header.revision, m.rev);
            }
            Op::ReadTxn(k, v, e, rsel) => {
                let revision = pick_revision(rsel, m.rev);
                let range = RangeRequest {
                    key: key(k),
                    range_end: end_of(e, k),
                    revision,
                    limit: (rsel % 3) as i64,
                    ..Default::default()
                };
                let version = |result| Compare {
                    result,
                    target: CompareTarget::Version(v),
                    key: key(k),
                    range_end: vec![],
                };
                let nested = |compare, op| {
                    RequestOp::Txn(TxnRequest {
                        compare,
                        success: vec![op],
                        failure: vec![],
                    })
                };
                let t = TxnRequest {
                    compare: vec![version(CompareResult::Equal)],
                    success: vec![
                        RequestOp::Range(range.clone()),
                        nested(
                            vec![],
                            RequestOp::Range(RangeRequest {
                                key: key(k),
                                ..Default::default()
                            }),
                        ),
                    ],
                    failure: vec![nested(
                        vec![version(CompareResult::Greater)],
                        RequestOp::Range(range),
                    )],
                };
                let via_view = store.read().unwrap().txn(&t, 128);
                let via_log = w.txn(&t);
                prop_assert_eq!(&via_view, &via_log);
                if let Ok(r) = via_view {
                    let live = m.live(&key(k)).map_or(0, |kv| kv.version);
                    prop_assert_eq!(r.succeeded, live == v);
                    prop_assert_eq!(r.header.revision, m.rev);
                }
            }
            Op::Compact(c) => {
                let rev = (c as i64) % (m.rev + 2);
                let r = w.compact(rev);
                if rev <= m.compacted {
                    prop_assert_eq!(r.unwrap_err(), KvError::Compacted);
                } else if rev > m.rev {
                    prop_assert_eq!(r.unwrap_err(), KvError::FutureRev);
                } else {
                    prop_assert_eq!(r.unwrap().header.revision, m.rev);
                    m.compacted = rev;
                }
            }
            Op::CompactSteps => {
                w.commit(applied).unwrap();
                store.compact_all(3).unwrap();
                // Physically compacted: no revision the model no longer needs is left. Every
                // state at or after the compaction revision must still read the same.
                for at in m.compacted.max(1)..=m.rev {
                    let r = store
                        .read()
                        .unwrap()
                        .range(&RangeRequest {
                            key: vec![0],
                            range_end: vec![0],
                            revision: at,
                            ..Default::default()
                        })
                        .unwrap();
                    let want: Vec<KeyValue> = m.state_at(at).into_values().collect();
                    prop_assert_eq!(r.kvs, want, "after compaction, at {}", at);
                }
                continue;
            }
            Op::Reopen => {
                w.commit(applied).unwrap();
                store.sync().unwrap();
                drop(store);
                store = KvStore::open(&path, opts()).unwrap();
                prop_assert_eq!(store.applied_index().unwrap(), applied);
                continue;
            }
        }
        applied += 1;
        w.commit(applied).unwrap();
        let r = store.read().unwrap();
        prop_assert_eq!(r.revision(), m.rev);
    }
    let problems = store.database().check().unwrap();
    prop_assert!(problems.is_empty(), "{:?}", problems);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400), ..ProptestConfig::default() })]

    #[test]
    fn mvcc_agrees_with_a_revision_map_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
