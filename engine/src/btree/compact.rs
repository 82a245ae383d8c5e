//! Compaction (the basis of defrag): copy the live buckets of a snapshot into a fresh file with
//! full pages, make it durable, then atomically rename it over the database file. Readers that
//! are open on the old file keep their mapping (the old inode lives until they finish); new
//! readers and the writer move to the new file. Writers wait while it runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::btree::db::{open_shared, Database, Options};
use crate::btree::error::{Error, Result};
use crate::btree::FileBackend;

/// Keys copied per commit while compacting; bounds the writer's memory.
const BATCH: usize = 16 * 1024;

impl Database {
    /// Copies the latest snapshot's buckets into a new database file at `dest` (which must not
    /// exist or be empty) and makes it durable.
    pub fn compact_to(&self, dest: &Path, options: Options) -> Result<()> {
        let read = self.begin_read();
        let out = Database::open(dest, options)?;
        if !out.begin_read().bucket_names()?.is_empty() {
            return Err(Error::Io(std::io::Error::other(format!(
                "{} is not empty",
                dest.display()
            ))));
        }
        for name in read.bucket_names()? {
            let mut w = out.begin_write()?;
            w.set_fill_percent(100);
            w.create_bucket(&name)?;
            let Some(bucket) = read.bucket(&name)? else {
                continue;
            };
            let mut n = 0;
            for kv in bucket.iter() {
                let (k, v) = kv?;
                w.bucket(&name)?.put(k, v)?;
                n += 1;
                if n % BATCH == 0 {
                    w.commit()?;
                    w = out.begin_write()?;
                    w.set_fill_percent(100);
                }
            }
            w.commit()?;
        }
        out.sync()?;
        // Drop the growth slack: nothing at or above the high-water mark is referenced.
        let shared = out.inner.load_full();
        let live = shared.published.load().hwm * crate::btree::page::PAGE_SIZE_U64;
        shared.backend.set_len(live)?;
        shared.backend.sync()?;
        Ok(())
    }

    /// Defragments the database file in place: compacts into `<file>.compact`, renames it over
    /// the file (atomic; the directory is synced) and switches this handle to it. The file
    /// shrinks to its live size. Returns (size before, size after) in bytes.
    /// A parked transaction is published first: the copy is of the published state.
    pub fn compact(&self) -> Result<(u64, u64)> {
        let path = self.path.clone().ok_or_else(|| {
            Error::Io(std::io::Error::other(
                "compaction needs a database opened from a path",
            ))
        })?;
        self.publish_parked()?;
        let _lock = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.inner.load_full();
        if self.has_parked() {
            // Parked between the publish and the lock: the copy would lose it.
            return Err(Error::Io(std::io::Error::other(
                "a write transaction was parked while the defrag started",
            )));
        }
        // A durable commit syncing outside the writer finishes on the old file first.
        drop(old.wait_durable_idle());
        if old.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::PreviousIo);
        }
        let before = old.backend.len()?;
        let tmp = PathBuf::from(format!("{}.compact", path.display()));
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = self.compact_to(&tmp, old.options.clone()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(&path)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let shared = open_shared(Box::new(FileBackend::new(file)), old.options.clone())?;
        let after = shared.backend.len()?;
        self.inner.store(Arc::new(shared));
        old.retired.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok((before, after))
    }
}

impl Database {
    /// Replaces the database with the file at `src` (a complete database, e.g. a Raft snapshot
    /// received from the leader): `src` is opened and verified first (a file that does not open
    /// is refused and nothing changes, D1), then renamed over the database file (atomic; the
    /// directory is synced) and this handle switches to it. Open readers keep the old file. A
    /// parked transaction is discarded: the installed state supersedes it.
    pub fn install(&self, src: &Path) -> Result<()> {
        let path = self.path.clone().ok_or_else(|| {
            Error::Io(std::io::Error::other(
                "installing a file needs a database opened from a path",
            ))
        })?;
        let _lock = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.inner.load_full();
        // A durable commit syncing outside the writer finishes on the old file first.
        drop(old.wait_durable_idle());
        if old.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::PreviousIo);
        }
        // Verify before anything is replaced.
        Database::open(src, old.options.clone())?;
        std::fs::rename(src, &path)?;
        sync_dir(&path)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let shared = open_shared(Box::new(FileBackend::new(file)), old.options.clone())?;
        self.inner.store(Arc::new(shared));
        old.retired.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::btree::backend::{FileBackend, StorageBackend};
    use crate::btree::{Database, Options};
    use std::io;
    use std::os::fd::RawFd;
    use std::sync::mpsc;
    use std::thread::ThreadId;

    /// A file backend that reports the thread its descriptor is closed on.
    struct Reporting {
        inner: FileBackend,
        closed: mpsc::Sender<ThreadId>,
    }

    impl StorageBackend for Reporting {
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.inner.read(offset, buf)
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.inner.write(offset, data)
        }
        fn sync(&self) -> io::Result<()> {
            self.inner.sync()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
        fn map_fd(&self) -> RawFd {
            self.inner.map_fd()
        }
    }

    impl Drop for Reporting {
        fn drop(&mut self) {
            let _ = self.closed.send(std::thread::current().id());
        }
    }

    /// A database on `path` (created with a few keys) whose current file reports its closing.
    fn reporting_db(path: &std::path::Path) -> (Database, mpsc::Receiver<ThreadId>) {
        if !path.exists() {
            let db = Database::open(path, Options::default()).unwrap();
            let mut w = db.begin_write().unwrap();
            w.create_bucket(b"kv").unwrap();
            for i in 0..1000u32 {
                w.bucket(b"kv")
                    .unwrap()
                    .put(&i.to_be_bytes(), b"v")
                    .unwrap();
            }
            w.commit_durable().unwrap();
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let backend = Reporting {
            inner: FileBackend::new(file),
            closed: tx,
        };
        let mut db = Database::open_backend(Box::new(backend), Options::default()).unwrap();
        db.path = Some(path.to_path_buf());
        (db, rx)
    }

    #[test]
    fn a_file_switched_out_is_closed_off_the_thread_that_read_it_last() {
        // The old file of a defrag has no name left: closing it frees all its blocks (a
        // synchronous discard on `discard` mounts), which must not happen on an executor whose
        // read happened to hold the last reference.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let me = std::thread::current().id();
        let (db, closed) = reporting_db(&path);
        let reader = db.begin_read();
        db.compact().unwrap();
        assert!(closed.try_recv().is_err(), "closed while a reader holds it");
        drop(reader);
        let on = closed
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the old file is closed once its last reader is gone");
        assert_ne!(on, me, "closed on the thread of its last reader");
        // The new file serves the data.
        let r = db.begin_read();
        assert_eq!(
            r.bucket(b"kv")
                .unwrap()
                .unwrap()
                .get(&7u32.to_be_bytes())
                .unwrap(),
            Some(&b"v"[..])
        );
        drop(r);
        // A file still in use is closed where the database is dropped, at once.
        drop(db);
        let (db, closed) = reporting_db(&path);
        drop(db);
        assert_eq!(closed.try_recv(), Ok(me));
    }
}
