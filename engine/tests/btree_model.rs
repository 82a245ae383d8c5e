//! Property test (issue 2, point 1): random sequences of put / delete / bucket create and drop /
//! visible commit / durable commit / abort / reopen, with random key and value sizes (overflow
//! values and multi-page keys included), must agree with a `BTreeMap` model at every step:
//! the visible state after each transaction, the durable state after each reopen, old read
//! snapshots (held across later commits, so freed pages must not be reused under them, S3), and
//! `check()` reporting nothing. A transaction may also end parked (its changes invisible until
//! a later commit or `publish_parked` resumes and publishes them, lost by a reopen); aborting a
//! transaction that resumed parked changes must stop the database (D2).
//!
//! `PROPTEST_CASES` sets the number of cases (default 2,000 here).

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::path::Path;

use keel_engine::btree::{Database, Options, ReadTxn};
use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Clone, Debug)]
enum Change {
    Put {
        bucket: u8,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        bucket: u8,
        key: Vec<u8>,
    },
    CreateBucket(u8),
    DeleteBucket(u8),
}

#[derive(Clone, Copy, Debug)]
enum End {
    Visible,
    Durable,
    Abort,
    Park,
}

#[derive(Clone, Debug)]
enum Op {
    Txn(Vec<Change>, End),
    Reopen,
    /// Start a read transaction and keep it until the end of the case.
    HoldReader,
    /// `Database::publish_parked`.
    Publish,
}

fn bucket_name(b: u8) -> Vec<u8> {
    format!("bucket-{b}").into_bytes()
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => (0u16..400).prop_map(|k| format!("k{k:04}").into_bytes()),
        3 => (0u16..400, 1usize..600).prop_map(|(k, pad)| {
            let mut v = format!("k{k:04}").into_bytes();
            v.extend(std::iter::repeat_n(b'.', pad));
            v
        }),
        1 => (0u16..20, 4000usize..9000).prop_map(|(k, pad)| {
            let mut v = format!("K{k:02}").into_bytes();
            v.extend(std::iter::repeat_n(b'#', pad));
            v
        }),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => (0usize..300, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        4 => (1000usize..6000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        1 => (60_000usize..200_000, any::<u8>()).prop_map(|(n, b)| (0..n).map(|i| b ^ (i % 251) as u8).collect()),
    ]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        30 => (0u8..3, key(), value()).prop_map(|(bucket, key, value)| Change::Put { bucket, key, value }),
        12 => (0u8..3, key()).prop_map(|(bucket, key)| Change::Delete { bucket, key }),
        1 => (0u8..3).prop_map(Change::CreateBucket),
        1 => (0u8..3).prop_map(Change::DeleteBucket),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (
            prop::collection::vec(change(), 1..80),
            prop_oneof![
                3 => Just(End::Visible),
                2 => Just(End::Durable),
                1 => Just(End::Abort),
                3 => Just(End::Park),
            ],
        )
            .prop_map(|(c, e)| Op::Txn(c, e)),
        2 => Just(Op::Reopen),
        1 => Just(Op::HoldReader),
        1 => Just(Op::Publish),
    ]
}

fn open(path: &Path) -> Database {
    Database::open(
        path,
        Options {
            map_size: 1 << 30,
            grow_step: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Everything the snapshot holds, read three ways (forward, backward, point gets), with counts.
fn assert_snapshot(r: &ReadTxn, model: &Model, what: &str) -> Result<(), TestCaseError> {
    let names: Vec<Vec<u8>> = model.keys().cloned().collect();
    prop_assert_eq!(r.bucket_names().unwrap(), names, "{}: bucket names", what);
    for (name, want) in model {
        let b = r.bucket(name).unwrap().unwrap();
        prop_assert_eq!(b.len(), want.len() as u64, "{}: len", what);
        let fwd: Vec<(Vec<u8>, Vec<u8>)> = b
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        let want_v: Vec<(Vec<u8>, Vec<u8>)> =
            want.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert!(fwd == want_v, "{}: forward iteration differs", what);
        let back: Vec<Vec<u8>> = b
            .range(Unbounded, Unbounded, true)
            .map(|kv| kv.unwrap().0.to_vec())
            .collect();
        prop_assert!(
            back.iter().eq(want.keys().rev()),
            "{}: backward iteration differs",
            what
        );
        prop_assert_eq!(b.count(Unbounded, Unbounded).unwrap(), want.len() as u64);
        for (k, v) in want.iter().step_by(7) {
            prop_assert_eq!(b.get(k).unwrap(), Some(v.as_slice()), "{}: get", what);
        }
        // A bounded range from the middle, both directions.
        if let (Some(lo), Some(hi)) = (
            want.keys().nth(want.len() / 4),
            want.keys().nth(3 * want.len() / 4),
        ) {
            let got: Vec<Vec<u8>> = b
                .range(Excluded(lo), Included(hi), false)
                .map(|kv| kv.unwrap().0.to_vec())
                .collect();
            let exp: Vec<Vec<u8>> = want
                .range::<Vec<u8>, _>((Excluded(lo), Included(hi)))
                .map(|(k, _)| k.clone())
                .collect();
            prop_assert_eq!(&got, &exp, "{}: bounded range", what);
            prop_assert_eq!(
                b.count(Excluded(lo), Included(hi)).unwrap(),
                exp.len() as u64
            );
            let rev: Vec<Vec<u8>> = b
                .range(Excluded(lo), Included(hi), true)
                .map(|kv| kv.unwrap().0.to_vec())
                .collect();
            prop_assert!(
                rev.iter().eq(exp.iter().rev()),
                "{}: bounded reverse range",
                what
            );
        }
    }
    Ok(())
}

/// Checks and drops the held readers (a reopened handle does not know the old one's readers, so
/// it may reuse their pages), then reopens the database.
fn reopen(
    db: Database,
    path: &Path,
    readers: &mut Vec<(ReadTxn, Model)>,
    step: usize,
) -> Result<Database, TestCaseError> {
    for (r, m) in readers.drain(..) {
        assert_snapshot(&r, &m, &format!("step {step} held reader"))?;
    }
    drop(db);
    Ok(open(path))
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    };
    let dir = base.unwrap();
    let path = dir.path().join("db");
    let mut db = open(&path);
    let mut visible = Model::new();
    let mut durable = Model::new();
    let mut readers: Vec<(ReadTxn, Model)> = Vec::new();
    // The parked changes (the state a resumed transaction starts from), if any.
    let mut parked: Option<Model> = None;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Txn(changes, end) => {
                let mut m = parked.clone().unwrap_or_else(|| visible.clone());
                let mut w = db.begin_write().unwrap();
                prop_assert_eq!(w.resumed(), parked.is_some(), "step {}: resumed", step);
                for c in changes {
                    match c {
                        Change::Put { bucket, key, value } => {
                            let name = bucket_name(bucket);
                            if let Some(b) = m.get_mut(&name) {
                                w.bucket(&name).unwrap().put(&key, &value).unwrap();
                                b.insert(key, value);
                            } else {
                                prop_assert!(w.bucket(&name).is_err());
                            }
                        }
                        Change::Delete { bucket, key } => {
                            let name = bucket_name(bucket);
                            if let Some(b) = m.get_mut(&name) {
                                let found = w.bucket(&name).unwrap().delete(&key).unwrap();
                                prop_assert_eq!(found, b.remove(&key).is_some());
                            }
                        }
                        Change::CreateBucket(b) => {
                            let name = bucket_name(b);
                            let r = w.create_bucket(&name);
                            prop_assert_eq!(r.is_ok(), !m.contains_key(&name));
                            m.entry(name).or_default();
                        }
                        Change::DeleteBucket(b) => {
                            let name = bucket_name(b);
                            let r = w.delete_bucket(&name);
                            prop_assert_eq!(r.is_ok(), m.remove(&name).is_some());
                        }
                    }
                }
                // Reads inside the transaction see its own changes.
                for (name, want) in &m {
                    let b = w.bucket(name).unwrap();
                    prop_assert_eq!(b.len(), want.len() as u64);
                    let got: Vec<Vec<u8>> = b
                        .range(Unbounded, Unbounded, false)
                        .map(|kv| kv.unwrap().0.to_vec())
                        .collect();
                    prop_assert!(
                        got.iter().eq(want.keys()),
                        "step {}: in-txn iteration",
                        step
                    );
                    let back: Vec<Vec<u8>> = b
                        .range(Unbounded, Unbounded, true)
                        .map(|kv| kv.unwrap().0.to_vec())
                        .collect();
                    prop_assert!(
                        back.iter().eq(want.keys().rev()),
                        "step {}: in-txn reverse iteration",
                        step
                    );
                    for (k, v) in want.iter().step_by(5) {
                        prop_assert_eq!(b.get(k).unwrap(), Some(v.as_slice()));
                    }
                }
                match end {
                    End::Visible => {
                        w.commit().unwrap();
                        visible = m;
                        parked = None;
                    }
                    End::Durable => {
                        w.commit_durable().unwrap();
                        visible = m;
                        durable = visible.clone();
                        parked = None;
                    }
                    End::Park => {
                        w.park();
                        parked = Some(m);
                    }
                    End::Abort if parked.is_some() => {
                        // The parked changes would be lost: the database stops (D2).
                        w.abort();
                        prop_assert!(
                            db.begin_write().is_err(),
                            "step {}: writes after losing parked changes",
                            step
                        );
                        assert_snapshot(
                            &db.begin_read(),
                            &visible,
                            &format!("step {step} failed"),
                        )?;
                        db = reopen(db, &path, &mut readers, step)?;
                        visible = durable.clone();
                        parked = None;
                    }
                    End::Abort => w.abort(),
                }
                assert_snapshot(&db.begin_read(), &visible, &format!("step {step} visible"))?;
            }
            Op::Reopen => {
                db = reopen(db, &path, &mut readers, step)?;
                visible = durable.clone();
                parked = None;
                assert_snapshot(&db.begin_read(), &visible, &format!("step {step} reopened"))?;
                let problems = db.check().unwrap();
                prop_assert!(
                    problems.is_empty(),
                    "step {}: check after reopen: {:?}",
                    step,
                    problems
                );
            }
            Op::HoldReader => readers.push((db.begin_read(), visible.clone())),
            Op::Publish => {
                prop_assert_eq!(db.has_parked(), parked.is_some());
                prop_assert_eq!(db.publish_parked().unwrap(), parked.is_some());
                if let Some(m) = parked.take() {
                    visible = m;
                }
                assert_snapshot(
                    &db.begin_read(),
                    &visible,
                    &format!("step {step} published"),
                )?;
            }
        }
        if step % 4 == 0 {
            let problems = db.check().unwrap();
            prop_assert!(problems.is_empty(), "step {}: check: {:?}", step, problems);
        }
    }
    for (r, m) in &readers {
        assert_snapshot(r, m, "final held reader")?;
    }
    let problems = db.check().unwrap();
    prop_assert!(problems.is_empty(), "final check: {:?}", problems);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn btree_agrees_with_a_btreemap_model(ops in prop::collection::vec(op(), 1..25)) {
        run(ops)?;
    }
}
