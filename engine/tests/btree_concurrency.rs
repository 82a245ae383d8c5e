//! Concurrency (issue 2, point 4): reader threads iterate snapshots while the writer commits
//! thousands of transactions; each reader must see exactly the state of its snapshot, also
//! after the writer has moved on (values are borrowed from the map, so a reused page would
//! show up as changed bytes). Plus: an rkyv archive stored as a value is accessed in place.
//! Plus: `Database::sync` runs its fdatasyncs without the writer, so a write transaction on
//! another thread begins and commits while a sync is blocked inside the disk.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use keel_engine::btree::{Database, Options};

const KEYS: u64 = 400;
const COMMITS: u64 = 3000;

fn key(k: u64) -> Vec<u8> {
    format!("key{k:05}").into_bytes()
}

/// The value written for key `k` by commit `i`: sometimes large enough to overflow.
fn value(k: u64, i: u64) -> Vec<u8> {
    let len = if k.is_multiple_of(40) {
        1500 + (i % 7) as usize * 300
    } else {
        16 + (i % 50) as usize
    };
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&i.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Commit i puts key i % KEYS and, every third commit, deletes key (i + KEYS/2) % KEYS.
fn state_at(c: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    for i in 1..=c {
        m.insert(key(i % KEYS), value(i % KEYS, i));
        if i % 3 == 0 {
            m.remove(&key((i + KEYS / 2) % KEYS));
        }
        m.insert(b"~counter".to_vec(), i.to_le_bytes().to_vec());
    }
    m
}

#[test]
fn readers_on_other_threads_see_exactly_their_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path().join("db"), Options::default()).unwrap());
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    w.commit().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (db, done, checked) = (db.clone(), done.clone(), checked.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    let r = db.begin_read();
                    let b = r.bucket(b"kv").unwrap().unwrap();
                    let c = b
                        .get(b"~counter")
                        .unwrap()
                        .map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap()));
                    // Borrow every value now, compare after the writer has moved on.
                    let seen: Vec<(&[u8], &[u8])> = b.iter().map(|kv| kv.unwrap()).collect();
                    let want = state_at(c);
                    let again: Vec<(&[u8], &[u8])> = b.iter().map(|kv| kv.unwrap()).collect();
                    assert_eq!(seen, again, "snapshot {c} changed under the reader");
                    assert_eq!(seen.len(), want.len(), "snapshot {c}: key count");
                    for ((k, v), (wk, wv)) in seen.iter().zip(&want) {
                        assert_eq!((*k, *v), (wk.as_slice(), wv.as_slice()), "snapshot {c}");
                    }
                    assert_eq!(b.len(), want.len() as u64);
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 1..=COMMITS {
        let mut w = db.begin_write().unwrap();
        let mut b = w.bucket(b"kv").unwrap();
        b.put(&key(i % KEYS), &value(i % KEYS, i)).unwrap();
        if i % 3 == 0 {
            b.delete(&key((i + KEYS / 2) % KEYS)).unwrap();
        }
        b.put(b"~counter", &i.to_le_bytes()).unwrap();
        if i % 500 == 0 {
            w.commit_durable().unwrap();
        } else {
            w.commit().unwrap();
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    let n = checked.load(Ordering::Relaxed);
    assert!(n >= 3, "readers verified {n} snapshots");
    eprintln!("{COMMITS} commits; readers verified {n} snapshots");
    assert_eq!(db.check().unwrap(), vec![]);
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct KeyValue {
    key: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    value: Vec<u8>,
    lease: i64,
}

#[test]
fn rkyv_values_are_accessed_in_place_from_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db"), Options::default()).unwrap();
    let small = KeyValue {
        key: b"a".to_vec(),
        create_revision: 2,
        mod_revision: 5,
        version: 3,
        value: vec![9; 256],
        lease: 0,
    };
    let large = KeyValue {
        key: b"b".to_vec(),
        create_revision: 7,
        mod_revision: 7,
        version: 1,
        value: vec![4; 100_000],
        lease: 42,
    };
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    for (k, kv) in [(b"a", &small), (b"b", &large)] {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(kv).unwrap();
        w.bucket(b"kv").unwrap().put(k, &bytes).unwrap();
        // Odd-length filler between values would misalign a packed layout.
        w.bucket(b"kv").unwrap().put(&[k[0], b'x'], b"odd").unwrap();
    }
    w.commit_durable().unwrap();
    drop(db);
    let db = Database::open(dir.path().join("db"), Options::default()).unwrap();
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    for (k, kv) in [(b"a", &small), (b"b", &large)] {
        let bytes = b.get(k).unwrap().unwrap();
        let archived = rkyv::access::<ArchivedKeyValue, rkyv::rancor::Error>(bytes).unwrap();
        assert_eq!(archived.mod_revision, kv.mod_revision);
        assert_eq!(archived.lease, kv.lease);
        assert_eq!(archived.value.as_slice(), kv.value.as_slice());
        // In place: the archived value's bytes lie inside the borrowed slice, not a copy.
        let inner = archived.value.as_slice().as_ptr() as usize;
        assert!(inner >= bytes.as_ptr() as usize && inner < bytes.as_ptr() as usize + bytes.len());
    }
}

/// A file backend whose `sync` blocks, once armed, until the test lets it go.
struct GatedSync {
    inner: keel_engine::btree::FileBackend,
    armed: Arc<AtomicBool>,
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl keel_engine::btree::StorageBackend for GatedSync {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write(offset, data)
    }
    fn sync(&self) -> std::io::Result<()> {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.entered.lock().unwrap().send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
        self.inner.sync()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn map_fd(&self) -> std::os::fd::RawFd {
        self.inner.map_fd()
    }
}

#[test]
fn a_writer_commits_while_a_sync_waits_for_the_disk() {
    use std::sync::mpsc::channel;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered_rx) = channel();
    let (release_tx, release_rx) = channel();
    let backend = GatedSync {
        inner: keel_engine::btree::FileBackend::new(file),
        armed: armed.clone(),
        entered: std::sync::Mutex::new(entered_tx),
        release: std::sync::Mutex::new(release_rx),
    };
    let db = Arc::new(Database::open_backend(Box::new(backend), Options::default()).unwrap());
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"kv").unwrap();
    w.bucket(b"kv").unwrap().put(b"a", b"1").unwrap();
    w.commit().unwrap();

    // A sync blocks in its first fdatasync...
    armed.store(true, Ordering::SeqCst);
    let syncer = {
        let db = db.clone();
        std::thread::spawn(move || db.sync())
    };
    entered_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the sync reaches the disk");
    // ...while a writer on another thread begins, changes, commits and is read back.
    let (done_tx, done_rx) = channel();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..100u32 {
                let mut w = db.begin_write().unwrap();
                w.bucket(b"kv")
                    .unwrap()
                    .put(format!("k{i:03}").as_bytes(), &[7u8; 300])
                    .unwrap();
                w.bucket(b"kv").unwrap().delete(b"a").unwrap();
                w.commit().unwrap();
            }
            done_tx.send(()).unwrap();
        })
    };
    let wrote = done_rx.recv_timeout(Duration::from_secs(30));
    // Let the sync finish either way, so a failure below does not hang the test.
    release_tx.send(()).unwrap();
    assert!(
        wrote.is_ok(),
        "write transactions waited for the sync's fdatasync"
    );
    writer.join().unwrap();
    syncer.join().unwrap().unwrap();
    assert_eq!(db.begin_read().bucket(b"kv").unwrap().unwrap().len(), 100);
    // The sync made the state at its start durable; one more makes everything durable.
    db.sync().unwrap();
    drop(db);
    let db = Database::open(&path, Options::default()).unwrap();
    assert_eq!(db.check().unwrap(), vec![]);
    let r = db.begin_read();
    let b = r.bucket(b"kv").unwrap().unwrap();
    assert_eq!(b.len(), 100);
    assert_eq!(b.get(b"a").unwrap(), None);
}
