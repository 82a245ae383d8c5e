//! The WAL's typed errors. `Io`, `Corrupt` and `Failed` are fatal to the WAL instance (the node
//! must reopen it or stop); `InvalidArgument`, `Unavailable` and `TooLarge` reject one request.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything a WAL operation can fail with.
#[derive(Clone, Debug)]
pub enum WalError {
    /// An I/O operation failed. After a failed write or sync the WAL is failed (D2).
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error (shared: every waiter of the failed group gets it).
        source: Arc<std::io::Error>,
    },
    /// Data on disk failed its checks and is followed by valid data, or breaks the log's structure:
    /// the WAL refuses to open (D1).
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the bad data in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or sync failed; nothing more is accepted until the WAL is reopened (D2).
    Failed {
        /// The first failure, as text.
        cause: String,
    },
    /// The request breaks the log's rules (non-contiguous indexes, index 0, below the snapshot...).
    InvalidArgument(String),
    /// The requested entries are compacted away or not (yet) in the log.
    Unavailable {
        /// First index asked for.
        lo: u64,
        /// One past the last index asked for.
        hi: u64,
        /// First index present.
        first: u64,
        /// Last index present.
        last: u64,
    },
    /// An entry bigger than the WAL accepts.
    TooLarge {
        /// Encoded record size.
        len: usize,
        /// Largest accepted.
        max: usize,
    },
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn short_write(path: &Path, offset: u64, done: usize, want: usize) -> Self {
        let e = std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("short write at offset {offset}: {done} of {want} bytes"),
        );
        Self::io("write", path, e)
    }

    /// True when the WAL instance is dead: reopen it (or stop the node).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Io { .. } | Self::Corrupt { .. } | Self::Failed { .. }
        )
    }
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => write!(f, "wal: {op} {}: {source}", path.display()),
            Self::Corrupt {
                segment,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "wal: corrupt segment {} at offset {offset}: {reason}",
                    segment.display()
                )
            }
            Self::Failed { cause } => write!(
                f,
                "wal: failed by an earlier I/O error ({cause}); reopen it"
            ),
            Self::InvalidArgument(why) => write!(f, "wal: invalid argument: {why}"),
            Self::Unavailable {
                lo,
                hi,
                first,
                last,
            } => {
                write!(
                    f,
                    "wal: entries [{lo}, {hi}) unavailable; the log holds [{first}, {last}]"
                )
            }
            Self::TooLarge { len, max } => {
                write!(f, "wal: entry of {len} bytes over the {max}-byte limit")
            }
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
