//! Falling back to the older meta (the newer one rotted) after later visible commits reused the
//! older tree's pages: reads must fail with `Corrupted` (each run's header names the commit that
//! wrote it, and a run newer than the snapshot is refused), never serve later data as the old
//! state. Found by the corruption tests' author; kept as a regression test.
use keel_engine::btree::{Database, Options, PAGE_SIZE};
use std::collections::BTreeMap;

fn k(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}
fn v(i: u32, ver: u32) -> Vec<u8> {
    format!("value-{i}-{ver}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

#[test]
fn fallback_to_an_older_meta_never_serves_pages_of_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = Options {
        map_size: 64 << 20,
        grow_step: 4096,
        ..Default::default()
    };
    let mut model_n = BTreeMap::new();
    {
        let db = Database::open(&path, opts.clone()).unwrap();
        // Durable commit N.
        let mut w = db.begin_write().unwrap();
        w.create_bucket(b"kv").unwrap();
        for i in 0..2000 {
            w.bucket(b"kv").unwrap().put(&k(i), &v(i, 0)).unwrap();
            model_n.insert(k(i), v(i, 0));
        }
        w.commit_durable().unwrap();
        // Durable commit N+1: rewrites every key, so every page of tree N is freed at N+1.
        let mut w = db.begin_write().unwrap();
        for i in 0..2000 {
            w.bucket(b"kv").unwrap().put(&k(i), &v(i, 1)).unwrap();
        }
        w.commit_durable().unwrap();
        // Visible commits (no durable one after): they may reuse the pages of tree N (S3 only
        // protects the *last* durable commit).
        for ver in 2..6 {
            let mut w = db.begin_write().unwrap();
            for i in 0..2000 {
                w.bucket(b"kv").unwrap().put(&k(i), &v(i, ver)).unwrap();
            }
            w.commit().unwrap();
        }
    }
    // Bit rot in the newest meta (N+1): open falls back to meta N.
    let mut img = std::fs::read(&path).unwrap();
    let txid = |s: usize| {
        u64::from_le_bytes(
            img[s * PAGE_SIZE + 16..s * PAGE_SIZE + 24]
                .try_into()
                .unwrap(),
        )
    };
    let newest = if txid(0) > txid(1) { 0 } else { 1 };
    img[newest * PAGE_SIZE + 40] ^= 1;
    std::fs::write(&path, &img).unwrap();
    let db = match Database::open(&path, opts) {
        Ok(db) => db,
        // Refusing to open (e.g. the old freelist was overwritten) is a fine answer too.
        Err(e) => {
            assert!(e.is_corrupted(), "{e}");
            return;
        }
    };
    assert!(
        !db.check().unwrap().is_empty(),
        "check reports the bad meta and the overwritten pages"
    );
    let r = db.begin_read();
    let b = match r.bucket(b"kv") {
        Ok(b) => b.unwrap(),
        Err(e) => {
            assert!(e.is_corrupted(), "{e}");
            return;
        }
    };
    let mut wrong = 0;
    let mut errors = 0;
    let mut ok = 0;
    for (key, want) in &model_n {
        match b.get(key) {
            Ok(Some(got)) if got == &want[..] => ok += 1,
            Ok(got) => {
                if wrong == 0 {
                    println!(
                        "first wrong: {:?} -> {:?}",
                        String::from_utf8_lossy(key),
                        got.map(String::from_utf8_lossy)
                    );
                }
                wrong += 1
            }
            Err(_) => errors += 1,
        }
    }
    println!("fallback to meta N: {ok} right, {wrong} wrong values served, {errors} errors");
    assert_eq!(wrong, 0, "values of later commits served as state N");
}
