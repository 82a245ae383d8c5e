//! Crash consistency (issue 2, point 2, first half; S2, S3, D2).
//!
//! A fault-injecting backend freezes durability after the N-th storage operation (write, sync or
//! set_len), for every N over a workload of visible and durable commits with deletes, overwrites
//! and overflow values (so freed pages get reused). For each N the test builds crash images —
//! no unsynced write landed, all landed, and seeded random subsets with torn sector prefixes —
//! reopens each, and requires: the state equals the last durable commit (or the next one, if
//! its meta write itself landed), and `check` reports nothing.
//!
//! The same runs again with split durable commits (`prepare_durable` … `complete`, what
//! `Database::sync` does) and two visible commits — with deletes and overwrites that free and
//! reuse pages — between each prepare and its completion: nothing a visible commit writes while
//! a durable commit's syncs are pending may damage either durable state.
//!
//! A second test injects an I/O error at every operation of a commit and requires the database
//! to refuse further writes until reopened (D2), with the reopened state intact.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;

use keel_engine::btree::fault::{FaultBackend, FaultHandle};
use keel_engine::btree::{Database, Error, Options, PendingDurable};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options() -> Options {
    Options {
        map_size: 1 << 30,
        grow_step: 64 << 10,
        ..Default::default()
    }
}

fn tmp() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .unwrap()
}

/// A tiny deterministic generator (the workload must be identical on every run).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How the workload's durable commits are made.
#[derive(Clone, Copy, Debug)]
enum Durable {
    /// `commit_durable`: prepare and complete at once.
    Inline,
    /// `prepare_durable`, then the next two (visible) commits, then `complete`.
    Split,
}

/// Runs the workload; after every durable commit records (operations before it started,
/// operations when it completed, state). Stops at the first error (the backend may be set to
/// fail).
fn workload(
    db: &Database,
    handle: &FaultHandle,
    durable_states: &mut Vec<(u64, u64, Model)>,
    mode: Durable,
) -> Result<(), Error> {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut model = Model::new();
    let mut w = db.begin_write()?;
    w.create_bucket(b"kv")?;
    w.commit_durable()?;
    durable_states.push((0, handle.ops(), model.clone()));
    let mut in_flight: Option<(PendingDurable, u64, Model)> = None;
    for t in 0..24u64 {
        let mut w = db.begin_write()?;
        for _ in 0..rng.below(60) + 1 {
            let k = format!("key{:03}", rng.below(300)).into_bytes();
            if rng.below(4) == 0 {
                w.bucket(b"kv")?.delete(&k)?;
                model.remove(&k);
            } else {
                let len = match rng.below(10) {
                    0 => 2000 + rng.below(9000) as usize,
                    _ => rng.below(200) as usize,
                };
                let v = vec![(t as u8).wrapping_mul(31) ^ k[5]; len];
                w.bucket(b"kv")?.put(&k, &v)?;
                model.insert(k, v);
            }
        }
        match (mode, t % 3 == 2) {
            (Durable::Inline, true) => {
                let before = handle.ops();
                w.commit_durable()?;
                durable_states.push((before, handle.ops(), model.clone()));
            }
            (Durable::Split, true) => {
                if let Some((p, before, m)) = in_flight.take() {
                    p.complete()?;
                    durable_states.push((before, handle.ops(), m));
                }
                let before = handle.ops();
                in_flight = Some((w.prepare_durable()?, before, model.clone()));
            }
            (_, false) => w.commit()?,
        }
    }
    if let Some((p, before, m)) = in_flight.take() {
        p.complete()?;
        durable_states.push((before, handle.ops(), m));
    }
    Ok(())
}

fn read_all(db: &Database) -> Model {
    let r = db.begin_read();
    let b = r
        .bucket(b"kv")
        .unwrap()
        .expect("bucket kv exists in every durable state");
    b.iter()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

fn open_faulty(path: &Path) -> (Database, FaultHandle) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    let (backend, handle) = FaultBackend::new(file).unwrap();
    (
        Database::open_backend(Box::new(backend), options()).unwrap(),
        handle,
    )
}

#[test]
fn every_crash_point_reopens_at_the_last_durable_commit() {
    crash_points(Durable::Inline);
}

#[test]
fn every_crash_point_with_visible_commits_during_a_durable_sync() {
    crash_points(Durable::Split);
}

fn crash_points(mode: Durable) {
    let dir = tmp();
    // A dry run counts the operations.
    let (db, handle) = open_faulty(&dir.path().join("count"));
    let mut states = Vec::new();
    workload(&db, &handle, &mut states, mode).unwrap();
    let total = handle.ops();
    drop(db);
    assert!(total > 50, "workload too small: {total} operations");
    let mut images = 0;
    for n in 1..=total {
        let path = dir.path().join(format!("run{n}"));
        let (db, handle) = open_faulty(&path);
        // Initialization of the empty file is done; durability freezes n operations later.
        let base = handle.ops();
        handle.freeze_after(base + n);
        let mut states = Vec::new();
        workload(&db, &handle, &mut states, mode).unwrap();
        drop(db);
        // Durable commits whose final sync happened by the freeze; and the one in flight.
        let last = states.iter().rposition(|(_, end, _)| *end <= base + n);
        let next = last
            .and_then(|i| states.get(i + 1))
            .filter(|(start, _, _)| *start < base + n);
        for variant in 0..4u64 {
            let mut rng = Rng(n * 7919 + variant + 1);
            let img = handle.crash_image(|_, sectors| match variant {
                0 => 0,
                1 => sectors,
                _ => match rng.below(3) {
                    0 => 0,
                    1 => sectors,
                    _ => rng.below(sectors as u64 + 1) as usize,
                },
            });
            let img_path = dir.path().join(format!("img{n}-{variant}"));
            std::fs::write(&img_path, &img).unwrap();
            images += 1;
            let db = match Database::open(&img_path, options()) {
                Ok(db) => db,
                Err(e) => panic!("crash after op {n} (variant {variant}): open failed: {e}"),
            };
            let problems = db.check().unwrap();
            assert!(
                problems.is_empty(),
                "crash after op {n} (variant {variant}): {problems:?}"
            );
            match last {
                None => {
                    // Crash before the bucket's first durable commit: an empty database.
                    assert!(
                        db.begin_read().bucket_names().unwrap().is_empty()
                            || read_all(&db).is_empty()
                    );
                }
                Some(i) => {
                    let got = read_all(&db);
                    let ok_last = got == states[i].2;
                    let ok_next = next.is_some_and(|s| got == s.2);
                    assert!(ok_last || ok_next, "crash after op {n} (variant {variant}): state is neither durable commit {i} nor the next");
                    if variant == 0 {
                        assert!(ok_last, "crash after op {n}: with nothing unsynced landing, the last durable commit");
                    }
                }
            }
            drop(db);
            std::fs::remove_file(&img_path).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
    }
    eprintln!("{mode:?}: {total} crash points, {images} crash images reopened and checked");
}

#[test]
fn a_failed_write_or_sync_stops_writes_until_reopen() {
    let dir = tmp();
    // Count the operations of one durable commit on top of a populated database.
    let mut per_commit = 0;
    for attempt in 1.. {
        let path = dir.path().join(format!("db{attempt}"));
        let (db, handle) = open_faulty(&path);
        let mut w = db.begin_write().unwrap();
        w.create_bucket(b"kv").unwrap();
        for i in 0..500u32 {
            w.bucket(b"kv")
                .unwrap()
                .put(format!("k{i:04}").as_bytes(), &[1u8; 100])
                .unwrap();
        }
        w.commit_durable().unwrap();
        let before = handle.ops();
        if per_commit > 0 {
            handle.fail_at(attempt as u64 - 1);
        }
        let mut w = db.begin_write().unwrap();
        for i in 0..500u32 {
            w.bucket(b"kv")
                .unwrap()
                .put(format!("k{i:04}").as_bytes(), &[2u8; 3000])
                .unwrap();
        }
        let r = w.commit_durable();
        if per_commit == 0 {
            r.unwrap();
            per_commit = handle.ops() - before;
            continue;
        }
        assert!(matches!(r, Err(Error::Io(_))), "op {}: {r:?}", attempt - 1);
        // D2: no more writes, reads of the last published snapshot still work.
        assert!(matches!(db.begin_write(), Err(Error::PreviousIo)));
        let rd = db.begin_read();
        assert_eq!(
            rd.bucket(b"kv").unwrap().unwrap().get(b"k0001").unwrap(),
            Some(&[1u8; 100][..])
        );
        drop(rd);
        drop(db);
        // Reopened, the database holds the last durable state and accepts writes again.
        let db = Database::open(&path, options()).unwrap();
        let r = db.begin_read();
        let v = r
            .bucket(b"kv")
            .unwrap()
            .unwrap()
            .get(b"k0001")
            .unwrap()
            .unwrap()
            .to_vec();
        assert!(
            v == [1u8; 100] || v == [2u8; 3000],
            "op {}: value of length {}",
            attempt - 1,
            v.len()
        );
        drop(r);
        assert_eq!(db.check().unwrap(), vec![]);
        let mut w = db.begin_write().unwrap();
        w.bucket(b"kv").unwrap().put(b"after", b"reopen").unwrap();
        w.commit_durable().unwrap();
        if attempt as u64 > per_commit {
            break;
        }
    }
    assert!(
        per_commit >= 4,
        "a durable commit is at least write, sync, meta write, sync"
    );
}
