//! Behaviour of the B+tree API on small, hand-checked cases.

use std::ops::Bound::{Excluded, Included, Unbounded};

use keel_engine::btree::{Database, Error, Options};

fn open(dir: &tempfile::TempDir) -> Database {
    Database::open(dir.path().join("db"), Options::default()).unwrap()
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

#[test]
fn put_get_delete_across_commits_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    for i in 0..5000 {
        w.bucket(b"kv")
            .unwrap()
            .put(&key(i), format!("v{i}").as_bytes())
            .unwrap();
    }
    w.commit_durable().unwrap();
    let mut w = db.begin_write().unwrap();
    for i in (0..5000).step_by(2) {
        assert!(w.bucket(b"kv").unwrap().delete(&key(i)).unwrap());
    }
    assert!(!w.bucket(b"kv").unwrap().delete(b"absent").unwrap());
    w.commit_durable().unwrap();
    assert_eq!(db.check().unwrap(), vec![]);
    drop(db);
    let db = open(&dir);
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    assert_eq!(b.len(), 2500);
    for i in 0..5000 {
        let got = b.get(&key(i)).unwrap();
        if i % 2 == 0 {
            assert_eq!(got, None);
        } else {
            assert_eq!(got, Some(format!("v{i}").as_bytes()));
        }
    }
    assert_eq!(db.check().unwrap(), vec![]);
}

#[test]
fn iteration_forward_backward_seek_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    for i in 0..3000 {
        w.bucket(b"kv").unwrap().put(&key(i * 2), b"x").unwrap();
    }
    w.commit().unwrap();
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    let all: Vec<Vec<u8>> = b.iter().map(|kv| kv.unwrap().0.to_vec()).collect();
    assert_eq!(all, (0..3000).map(|i| key(i * 2)).collect::<Vec<_>>());
    // Seek between keys, forward.
    let from = key(1001);
    let got: Vec<Vec<u8>> = b
        .range(Included(&from[..]), Unbounded, false)
        .take(3)
        .map(|kv| kv.unwrap().0.to_vec())
        .collect();
    assert_eq!(got, vec![key(1002), key(1004), key(1006)]);
    // Backward from a seek key.
    let got: Vec<Vec<u8>> = b
        .range(Unbounded, Included(&from[..]), true)
        .take(3)
        .map(|kv| kv.unwrap().0.to_vec())
        .collect();
    assert_eq!(got, vec![key(1000), key(998), key(996)]);
    let (lo, hi) = (key(100), key(200));
    assert_eq!(b.count(Included(&lo[..]), Excluded(&hi[..])).unwrap(), 50);
    assert_eq!(b.count(Excluded(&lo[..]), Included(&hi[..])).unwrap(), 50);
    assert_eq!(b.count(Unbounded, Unbounded).unwrap(), 3000);
    let rev: Vec<Vec<u8>> = b
        .range(Included(&lo[..]), Excluded(&hi[..]), true)
        .map(|kv| kv.unwrap().0.to_vec())
        .collect();
    assert_eq!(rev, (50..100).rev().map(|i| key(i * 2)).collect::<Vec<_>>());
}

#[test]
fn large_keys_and_overflow_values_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let big_key = vec![b'k'; 32 * 1024];
    let big_val: Vec<u8> = (0..1_572_864u32).map(|i| (i % 251) as u8).collect();
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    let mut b = w.bucket(b"kv").unwrap();
    b.put(&big_key, b"small").unwrap();
    b.put(b"big", &big_val).unwrap();
    for i in 0..50 {
        b.put(&key(i), &vec![i as u8; 3000]).unwrap();
    }
    assert!(matches!(
        b.put(&vec![1; 32 * 1024 + 1], b""),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(b.put(b"", b""), Err(Error::KeyEmpty)));
    w.commit_durable().unwrap();
    drop(db);
    let db = open(&dir);
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    assert_eq!(b.get(&big_key).unwrap(), Some(&b"small"[..]));
    let v = b.get(b"big").unwrap().unwrap();
    assert_eq!(v, &big_val[..]);
    assert_eq!(
        v.as_ptr() as usize % 16,
        0,
        "values are 16-byte aligned in the map"
    );
    for i in 0..50 {
        assert_eq!(b.get(&key(i)).unwrap().unwrap(), &vec![i as u8; 3000][..]);
    }
    assert_eq!(db.check().unwrap(), vec![]);
}

#[test]
fn buckets_commit_together_and_abort_discards() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"a").unwrap();
    w.create_bucket(b"b").unwrap();
    assert!(matches!(w.create_bucket(b"a"), Err(Error::BucketExists(_))));
    w.bucket(b"a").unwrap().put(b"1", b"x").unwrap();
    w.bucket(b"b").unwrap().put(b"2", b"y").unwrap();
    w.commit().unwrap();
    let mut w = db.begin_write().unwrap();
    w.bucket(b"a").unwrap().put(b"3", b"z").unwrap();
    w.delete_bucket(b"b").unwrap();
    w.abort();
    let r = db.begin_read();
    assert_eq!(
        r.bucket_names().unwrap(),
        vec![b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(r.bucket(b"a").unwrap().unwrap().get(b"3").unwrap(), None);
    let mut w = db.begin_write().unwrap();
    w.delete_bucket(b"b").unwrap();
    assert!(matches!(w.bucket(b"b"), Err(Error::BucketNotFound(_))));
    w.commit_durable().unwrap();
    assert_eq!(db.begin_read().bucket_names().unwrap(), vec![b"a".to_vec()]);
    assert_eq!(db.check().unwrap(), vec![]);
}

#[test]
fn compaction_shrinks_the_file_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    for i in 0..20000 {
        w.bucket(b"kv").unwrap().put(&key(i), &[7u8; 200]).unwrap();
    }
    w.commit_durable().unwrap();
    let mut w = db.begin_write().unwrap();
    for i in 0..19000 {
        w.bucket(b"kv").unwrap().delete(&key(i)).unwrap();
    }
    w.commit_durable().unwrap();
    let old_reader = db.begin_read();
    let (before, after) = db.compact().unwrap();
    assert!(after < before / 4, "compacted {before} -> {after}");
    assert_eq!(db.stats().unwrap().file_size, after);
    // A reader opened before compaction still sees its snapshot.
    assert_eq!(old_reader.bucket(b"kv").unwrap().unwrap().len(), 1000);
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    assert_eq!(b.len(), 1000);
    assert_eq!(b.get(&key(19500)).unwrap(), Some(&[7u8; 200][..]));
    assert_eq!(db.check().unwrap(), vec![]);
    // Writes continue on the new file and survive reopen.
    let mut w = db.begin_write().unwrap();
    w.bucket(b"kv")
        .unwrap()
        .put(b"after", b"compaction")
        .unwrap();
    w.commit_durable().unwrap();
    drop((r, old_reader, db));
    let db = open(&dir);
    let r = db.begin_read();
    assert_eq!(
        r.bucket(b"kv").unwrap().unwrap().get(b"after").unwrap(),
        Some(&b"compaction"[..])
    );
}

#[test]
fn parked_changes_are_invisible_until_published_and_a_defrag_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    w.bucket(b"kv").unwrap().put(b"a", b"1").unwrap();
    w.commit_durable().unwrap();
    // Two parked transactions: the second resumes the first's change.
    let mut w = db.begin_write().unwrap();
    assert!(!w.resumed());
    w.bucket(b"kv").unwrap().put(b"b", b"2").unwrap();
    w.park();
    assert!(db.has_parked());
    assert_eq!(db.begin_read().bucket(b"kv").unwrap().unwrap().len(), 1);
    let mut w = db.begin_write().unwrap();
    assert!(w.resumed());
    assert_eq!(w.bucket(b"kv").unwrap().get(b"b").unwrap(), Some(&b"2"[..]));
    w.bucket(b"kv").unwrap().put(b"c", b"3").unwrap();
    w.park();
    assert_eq!(db.begin_read().bucket(b"kv").unwrap().unwrap().len(), 1);
    // A defrag copies the published state: it publishes the parked changes first.
    db.compact().unwrap();
    assert!(!db.has_parked());
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    assert_eq!(b.len(), 3);
    assert_eq!(b.get(b"c").unwrap(), Some(&b"3"[..]));
    drop(r);
    // publish_parked with nothing parked changes nothing.
    assert!(!db.publish_parked().unwrap());
    // Parked and never published: a reopen returns to the last durable commit.
    let mut w = db.begin_write().unwrap();
    w.bucket(b"kv").unwrap().put(b"d", b"4").unwrap();
    w.park();
    db.sync().unwrap();
    let mut w = db.begin_write().unwrap();
    w.bucket(b"kv").unwrap().put(b"e", b"5").unwrap();
    w.park();
    drop(db);
    let db = open(&dir);
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    // The sync resumed and published "d"; "e" was parked after it.
    assert_eq!(b.get(b"d").unwrap(), Some(&b"4"[..]));
    assert_eq!(b.get(b"e").unwrap(), None);
    assert_eq!(b.len(), 4);
}

#[test]
fn aborting_resumed_parked_changes_stops_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir);
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    w.commit_durable().unwrap();
    let mut w = db.begin_write().unwrap();
    w.bucket(b"kv").unwrap().put(b"a", b"1").unwrap();
    w.park();
    // Dropped without a commit: the parked changes would be lost silently (D2 instead).
    drop(db.begin_write().unwrap());
    assert!(matches!(db.begin_write(), Err(Error::PreviousIo)));
}
