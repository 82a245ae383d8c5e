//! A fault-injecting storage backend for tests: it fails a chosen operation (D2 tests) and it
//! tracks what is *durable* — the bytes a crash at any moment would leave — separately from the
//! live file, so a test can build the exact image of a crash after the N-th operation.
//!
//! Crash model: a write is durable once a later `sync` completed. Writes not yet synced at the
//! crash may each be lost, land whole, or land torn at a 512-byte sector boundary (a prefix);
//! sector writes are atomic (the assumption LMDB and bbolt make for their meta pages). A
//! `set_len` becomes durable with the next `sync`, as with fdatasync.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use crate::btree::backend::{FileBackend, StorageBackend};

pub const SECTOR: usize = 512;

#[derive(Default)]
struct State {
    ops: u64,
    /// Operation number (1-based) that fails with an I/O error.
    fail_at: Option<u64>,
    /// Operation number after which nothing more becomes durable.
    freeze_after: Option<u64>,
    durable: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
    pending_len: Option<u64>,
}

/// Shared view of a [`FaultBackend`]'s bookkeeping; keep it to build crash images.
#[derive(Clone, Default)]
pub struct FaultHandle(Arc<Mutex<State>>);

pub struct FaultBackend {
    inner: FileBackend,
    handle: FaultHandle,
}

impl FaultBackend {
    /// Wraps `file`, whose current contents count as durable.
    pub fn new(file: File) -> io::Result<(FaultBackend, FaultHandle)> {
        let inner = FileBackend::new(file);
        let len = inner.len()? as usize;
        let mut durable = vec![0u8; len];
        inner.read(0, &mut durable)?;
        let handle = FaultHandle::default();
        handle.lock().durable = durable;
        Ok((
            FaultBackend {
                inner,
                handle: handle.clone(),
            },
            handle,
        ))
    }
}

impl FaultHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Operations (write, sync, set_len) seen so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Makes operation number `n` (1-based, counted from now on) fail.
    pub fn fail_at(&self, n: u64) {
        let mut s = self.lock();
        s.fail_at = Some(s.ops + n);
    }

    /// Nothing after operation number `n` (counted from the start) becomes durable.
    pub fn freeze_after(&self, n: u64) {
        self.lock().freeze_after = Some(n);
    }

    /// The durable bytes plus, for each write not yet synced, one of: lost, whole, or a torn
    /// prefix of whole sectors — chosen by `choose(index, sectors)`, which returns how many
    /// sectors of that write land (0..=sectors).
    pub fn crash_image(&self, mut choose: impl FnMut(usize, usize) -> usize) -> Vec<u8> {
        let s = self.lock();
        let mut img = s.durable.clone();
        for (i, (off, data)) in s.unsynced.iter().enumerate() {
            let sectors = data.len().div_ceil(SECTOR);
            let land = choose(i, sectors).min(sectors);
            let n = (land * SECTOR).min(data.len());
            let off = *off as usize;
            if img.len() < off + n {
                img.resize(off + n, 0);
            }
            img[off..off + n].copy_from_slice(&data[..n]);
        }
        img
    }

    /// Writes not yet durable.
    pub fn unsynced_writes(&self) -> usize {
        self.lock().unsynced.len()
    }

    /// Counts one operation; returns (should fail, still recording durability).
    fn op(&self) -> (bool, bool) {
        let mut s = self.lock();
        s.ops += 1;
        let fail = s.fail_at == Some(s.ops);
        let live = s.freeze_after.is_none_or(|f| s.ops <= f);
        (fail, live)
    }
}

fn injected() -> io::Error {
    io::Error::other("injected I/O error")
}

impl StorageBackend for FaultBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, buf)
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let (fail, live) = self.handle.op();
        if fail {
            return Err(injected());
        }
        self.inner.write(offset, data)?;
        if live {
            self.handle.lock().unsynced.push((offset, data.to_vec()));
        }
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let (fail, live) = self.handle.op();
        if fail {
            return Err(injected());
        }
        self.inner.sync()?;
        if live {
            let mut s = self.handle.lock();
            if let Some(len) = s.pending_len.take() {
                s.durable.resize(len as usize, 0);
            }
            let writes = std::mem::take(&mut s.unsynced);
            for (off, data) in writes {
                let end = off as usize + data.len();
                if s.durable.len() < end {
                    s.durable.resize(end, 0);
                }
                s.durable[off as usize..end].copy_from_slice(&data);
            }
        }
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let (fail, live) = self.handle.op();
        if fail {
            return Err(injected());
        }
        self.inner.set_len(len)?;
        if live {
            self.handle.lock().pending_len = Some(len);
        }
        Ok(())
    }
    /// Forwarded, never failed: it starts writeback but neither makes anything durable nor
    /// changes what a crash leaves (only `sync` does), so the crash image ignores it.
    fn start_writeback(&self) -> io::Result<()> {
        self.inner.start_writeback()
    }
    fn map_fd(&self) -> RawFd {
        self.inner.map_fd()
    }
}
