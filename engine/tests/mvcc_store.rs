//! MVCC behaviours beyond the model test: the size quota (etcd's NOSPACE), HashKV agreeing
//! across stores with equal histories, zero-copy reads, and reads on other threads at consistent
//! revisions while the apply thread writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use keel_engine::btree::Options;
use keel_engine::mvcc::*;

fn open(dir: &tempfile::TempDir, name: &str, quota: u64) -> KvStore {
    let btree = Options {
        map_size: 1 << 30,
        grow_step: 64 << 10,
        ..Default::default()
    };
    KvStore::open(
        dir.path().join(name),
        StoreOptions {
            btree,
            quota_bytes: quota,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn put(s: &KvStore, k: &str, v: &[u8]) -> Result<PutResponse, KvError> {
    let mut w = s.write().unwrap();
    let r = w.put(&PutRequest {
        key: k.as_bytes().to_vec(),
        value: v.to_vec(),
        ..Default::default()
    });
    w.commit(0).unwrap();
    r
}

#[test]
fn quota_raises_nospace_and_keeps_reads_and_deletes_working() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "kv", 2 << 20);
    let mut i = 0;
    let err = loop {
        match put(&s, &format!("k{i:05}"), &[7; 1000]) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 100_000, "quota never reached");
    };
    assert_eq!(err, KvError::NoSpace);
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
    assert!(s.nospace().unwrap());
    // While the alarm is raised: puts and txns with puts are refused, reads and deletes work.
    assert_eq!(put(&s, "more", b"x").unwrap_err(), KvError::NoSpace);
    let mut w = s.write().unwrap();
    let t = TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            key: b"t".to_vec(),
            ..Default::default()
        })],
        ..Default::default()
    };
    assert_eq!(w.txn(&t).unwrap_err(), KvError::NoSpace);
    let d = w
        .delete_range(&DeleteRangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            prev_kv: false,
        })
        .unwrap();
    assert_eq!(
        d.deleted,
        i + 1,
        "the put that crossed the quota was applied, as in etcd"
    );
    w.commit(0).unwrap();
    let r = s
        .read()
        .unwrap()
        .range(&RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.count, 0);
    // Compaction and defragmentation free the space; disarming lets writes in again.
    let rev = s.read().unwrap().revision();
    let mut w = s.write().unwrap();
    w.compact(rev).unwrap();
    w.commit(0).unwrap();
    s.compact_all(1000).unwrap();
    s.sync().unwrap();
    s.database().compact().unwrap();
    s.disarm_nospace().unwrap();
    assert!(!s.nospace().unwrap());
    put(&s, "after", b"disarm").unwrap();
}

#[test]
fn hash_kv_agrees_for_equal_histories_and_differs_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        open(&dir, "a", u64::MAX),
        open(&dir, "b", u64::MAX),
        open(&dir, "c", u64::MAX),
    );
    for s in [&a, &b, &c] {
        for i in 0..300 {
            put(s, &format!("k{}", i % 37), format!("v{i}").as_bytes()).unwrap();
        }
    }
    // b applies the same history in different batches; c differs by one value.
    put(&a, "x", b"1").unwrap();
    let mut w = b.write().unwrap();
    w.put(&PutRequest {
        key: b"x".to_vec(),
        value: b"1".to_vec(),
        ..Default::default()
    })
    .unwrap();
    w.commit(9).unwrap();
    put(&c, "x", b"2").unwrap();
    let (ha, rev, _) = a.hash_kv(0).unwrap();
    assert_eq!(b.hash_kv(0).unwrap().0, ha);
    assert_ne!(c.hash_kv(0).unwrap().0, ha);
    // A hash at a past revision ignores later writes.
    let past = a.hash_kv(rev - 1).unwrap().0;
    assert_eq!(c.hash_kv(rev - 1).unwrap().0, past);
    assert_eq!(a.hash_kv(rev + 1).unwrap_err(), KvError::FutureRev);
}

#[test]
fn current_records_are_read_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "kv", u64::MAX);
    for i in 0..50 {
        put(&s, &format!("k{i:02}"), &vec![i as u8; 300]).unwrap();
    }
    let r = s.read().unwrap();
    let mut seen = Vec::new();
    let n = r
        .for_each_current(b"k10", b"k20", |rec| {
            seen.push((
                rec.key.as_slice().to_vec(),
                rec.mod_revision.to_native(),
                rec.value.as_slice()[0],
            ));
            true
        })
        .unwrap();
    assert_eq!(n, 10);
    assert_eq!(seen[0], (b"k10".to_vec(), 12, 10));
    assert_eq!(seen[9], (b"k19".to_vec(), 21, 19));
    let rec = r.get_current(b"k07").unwrap().unwrap();
    assert_eq!(rec.version.to_native(), 1);
    assert_eq!(rec.value.as_slice(), &[7u8; 300][..]);
}

#[test]
fn readers_on_other_threads_see_consistent_revisions_while_the_apply_thread_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir, "kv", u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    // Every write request moves one unit between two keys: at any consistent revision the two
    // balances sum to 1000, and a historical read at any earlier revision does too.
    let mut w = s.write().unwrap();
    w.put(&PutRequest {
        key: b"a".to_vec(),
        value: b"1000".to_vec(),
        ..Default::default()
    })
    .unwrap();
    w.put(&PutRequest {
        key: b"b".to_vec(),
        value: b"0".to_vec(),
        ..Default::default()
    })
    .unwrap();
    w.commit(0).unwrap();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                let mut checks = 0;
                while !done.load(Ordering::Acquire) || checks == 0 {
                    let r = s.read().unwrap();
                    let rev = r.revision();
                    for at in [0, (rev - 7).max(3)] {
                        let resp = r
                            .range(&RangeRequest {
                                key: b"a".to_vec(),
                                range_end: b"c".to_vec(),
                                revision: at,
                                ..Default::default()
                            })
                            .unwrap();
                        let sum: i64 = resp
                            .kvs
                            .iter()
                            .map(|kv| {
                                std::str::from_utf8(&kv.value)
                                    .unwrap()
                                    .parse::<i64>()
                                    .unwrap()
                            })
                            .sum();
                        assert_eq!(sum, 1000, "revision {at} of snapshot {rev}");
                        assert_eq!(resp.header.revision, rev);
                    }
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    for i in 1..=2000i64 {
        let mut w = s.write().unwrap();
        let t = TxnRequest {
            success: vec![
                RequestOp::Put(PutRequest {
                    key: b"a".to_vec(),
                    value: (1000 - i % 1000).to_string().into_bytes(),
                    ..Default::default()
                }),
                RequestOp::Put(PutRequest {
                    key: b"b".to_vec(),
                    value: (i % 1000).to_string().into_bytes(),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        };
        w.txn(&t).unwrap();
        w.commit(i as u64).unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(s.applied_index().unwrap(), 2000);
}

fn kv_put(k: &str, v: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        lease,
        ..Default::default()
    }
}

#[test]
fn writes_report_their_events_in_revision_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "db", 1 << 30);
    let mut w = s.write().unwrap();
    w.put(&kv_put("a", "1", 0)).unwrap();
    w.put(&kv_put("a", "2", 0)).unwrap();
    w.txn(&TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(kv_put("b", "x", 0)),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                ..Default::default()
            }),
        ],
        failure: vec![],
    })
    .unwrap();
    let ev = w.take_events();
    w.commit(7).unwrap();
    let got: Vec<_> = ev
        .iter()
        .map(|e| {
            (
                e.kind,
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                e.kv.mod_revision,
                e.kv.version,
                e.prev_kv.as_ref().map(|p| p.mod_revision),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (EventType::Put, "a".into(), 2, 1, None),
            (EventType::Put, "a".into(), 3, 2, Some(2)),
            (EventType::Put, "b".into(), 4, 1, None),
            (EventType::Delete, "a".into(), 4, 0, Some(3)),
        ]
    );
}

#[test]
fn lease_check_refuses_unknown_leases_before_applying_anything() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "db", 1 << 30);
    let mut w = s.write().unwrap();
    w.set_lease_check(|id| id == 5);
    w.put(&kv_put("k", "v", 5)).unwrap();
    assert_eq!(w.put(&kv_put("k", "v", 6)), Err(KvError::LeaseNotFound));
    let t = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(kv_put("x", "1", 0)),
            RequestOp::Put(kv_put("y", "1", 9)),
        ],
        failure: vec![],
    };
    assert_eq!(w.txn(&t).map(|_| ()), Err(KvError::LeaseNotFound));
    assert_eq!(w.revision(), 2, "nothing of the failed txn was applied");
    assert_eq!(w.take_events().len(), 1);
    // Several keys go in one revision (a lease revoke); absent keys are skipped.
    w.put(&kv_put("k2", "v", 5)).unwrap();
    let d = w
        .delete_keys(&[b"k".to_vec(), b"nope".to_vec(), b"k2".to_vec()])
        .unwrap();
    assert_eq!((d.deleted, d.header.revision), (2, 4));
    // Auxiliary buckets commit with the batch.
    w.aux_put(b"lease", b"5", b"ttl").unwrap();
    w.commit(1).unwrap();
    let r = s.read().unwrap();
    let mut seen = Vec::new();
    r.aux_scan(b"lease", |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        true
    })
    .unwrap();
    assert_eq!(seen, vec![(b"5".to_vec(), b"ttl".to_vec())]);
    assert_eq!(r.revision(), 4);
}

#[test]
fn a_snapshot_file_installs_over_another_store_and_garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir, "a", 1 << 30);
    let b = open(&dir, "b", 1 << 30);
    put(&a, "from-a", b"1").unwrap();
    put(&a, "from-a2", b"2").unwrap();
    put(&b, "from-b", b"3").unwrap();
    let snap = dir.path().join("snap");
    a.database().compact_to(&snap, Options::default()).unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, vec![0xAB; 16384]).unwrap();
    assert!(b.database().install(&garbage).is_err());
    let r = b.read().unwrap();
    assert_eq!(r.revision(), 2, "a refused install changes nothing");
    drop(r);
    let old_reader = b.read().unwrap();
    b.database().install(&snap).unwrap();
    let r = b.read().unwrap();
    assert_eq!(r.revision(), 3);
    let all = r
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .unwrap();
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b"from-a".to_vec(), b"from-a2".to_vec()]);
    assert_eq!(old_reader.revision(), 2, "open readers keep the old file");
    // Writes continue on the installed file.
    put(&b, "after", b"4").unwrap();
    assert_eq!(b.read().unwrap().revision(), 4);
}

#[test]
fn parked_batches_continue_revisions_and_become_visible_together() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "db", 1 << 30);
    put(&s, "a", b"1").unwrap(); // revision 2, published
    let range = |key: &str| RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    for (i, v) in [b"2", b"3"].iter().enumerate() {
        let mut w = s.write().unwrap();
        let r = w
            .put(&PutRequest {
                key: b"a".to_vec(),
                value: v.to_vec(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(r.header.revision, 3 + i as i64);
        // The batch reads what earlier parked batches changed.
        assert_eq!(w.revision(), 3 + i as i64);
        w.park(10 + i as u64).unwrap();
    }
    // Readers still see revision 2 and the applied index of the last published commit.
    let r = s.read().unwrap();
    assert_eq!(r.revision(), 2);
    assert_eq!(r.range(&range("a")).unwrap().kvs[0].value, b"1");
    assert_eq!(s.applied_index().unwrap(), 0);
    assert!(s.publish().unwrap());
    assert!(!s.publish().unwrap());
    // The held snapshot keeps its revision; a new one sees both batches.
    assert_eq!(r.revision(), 2);
    let r = s.read().unwrap();
    assert_eq!(r.revision(), 4);
    let kv = &r.range(&range("a")).unwrap().kvs[0];
    assert_eq!(
        (kv.value.as_slice(), kv.version, kv.mod_revision),
        (&b"3"[..], 3, 4)
    );
    assert_eq!(s.applied_index().unwrap(), 11);
    // A durable sync publishes what is parked, too.
    let mut w = s.write().unwrap();
    w.put(&PutRequest {
        key: b"b".to_vec(),
        value: b"x".to_vec(),
        ..Default::default()
    })
    .unwrap();
    w.park(12).unwrap();
    s.sync().unwrap();
    assert_eq!(s.read().unwrap().revision(), 5);
    assert_eq!(s.applied_index().unwrap(), 12);
}
