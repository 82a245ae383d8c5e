//! The fault-injection point in front of every WAL write, sync and segment removal.
//!
//! Production code passes [`IoHook::none`]; tests pass a closure that fails a chosen operation, to
//! check that the WAL stops on the first failed write or sync (D2) and that what it acknowledged
//! before survives a reopen.

use super::error::WalError;
use std::fmt;
use std::sync::Arc;

/// A WAL I/O operation about to be issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// A commit-group write into segment `seq` at `offset`, `len` bytes.
    Write {
        /// Segment.
        seq: u64,
        /// Byte offset in the segment.
        offset: u64,
        /// Bytes written.
        len: usize,
    },
    /// An fdatasync of segment `seq`.
    Sync {
        /// Segment.
        seq: u64,
    },
    /// The unlink of compacted segment `seq` (issued from glommio's blocking pool, after the
    /// WAL closed its own descriptor of the segment).
    Remove {
        /// Segment.
        seq: u64,
    },
    /// The fsync of the WAL directory that makes the removal (or move to the recycle pool) of
    /// released segment `seq` durable, before the next released segment's name is touched.
    SyncDir {
        /// The released segment whose removal this sync makes durable.
        seq: u64,
    },
    /// A zero-fill write while preparing segment `seq`.
    Prepare {
        /// Segment.
        seq: u64,
        /// Byte offset in the segment.
        offset: u64,
    },
}

type HookFn = dyn Fn(IoOp) -> Option<std::io::Error> + Send + Sync;

/// Called before each write and sync; an `Err` it returns is treated exactly like the kernel
/// failing that operation.
#[derive(Clone, Default)]
pub struct IoHook(Option<Arc<HookFn>>);

impl IoHook {
    /// No injected faults.
    pub fn none() -> Self {
        Self(None)
    }

    /// Calls `f` before every operation; `Some(err)` fails it.
    pub fn new(f: impl Fn(IoOp) -> Option<std::io::Error> + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    pub(crate) fn check(&self, op: IoOp) -> Result<(), WalError> {
        match self.0.as_ref().and_then(|f| f(op)) {
            None => Ok(()),
            Some(e) => Err(WalError::Io {
                op: "injected fault",
                path: format!("{op:?}").into(),
                source: Arc::new(e),
            }),
        }
    }
}

impl fmt::Debug for IoHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "IoHook(set)"
        } else {
            "IoHook(none)"
        })
    }
}
