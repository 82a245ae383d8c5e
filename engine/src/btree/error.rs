//! Errors of the B+tree layer. Caller mistakes (a key too large, a missing bucket) are separate
//! from disk trouble (`Io`, `Corrupted`) and from the fail-stop state after an I/O error (D2).

use std::fmt;

use crate::btree::page::PageId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// The storage backend failed. The database refuses writes from now on (D2).
    Io(std::io::Error),
    /// An earlier write or sync failed; reopen the database to continue writing (D2).
    PreviousIo,
    /// Bytes read from the file failed a check (D1). `page` is 0 or 1 for the meta slots.
    Corrupted {
        page: PageId,
        reason: String,
    },
    KeyEmpty,
    KeyTooLarge {
        len: usize,
        max: usize,
    },
    ValueTooLarge {
        len: usize,
        max: usize,
    },
    BucketNotFound(Vec<u8>),
    BucketExists(Vec<u8>),
    /// The file would grow past the reserved address space (`Options::map_size`).
    MapFull {
        needed: u64,
        map_size: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "storage I/O error: {e}"),
            Error::PreviousIo => {
                write!(
                    f,
                    "an earlier write or sync failed; the database must be reopened"
                )
            }
            Error::Corrupted { page, reason } => {
                write!(f, "corrupted database: page {page}: {reason}")
            }
            Error::KeyEmpty => write!(f, "key is empty"),
            Error::KeyTooLarge { len, max } => write!(f, "key of {len} bytes exceeds {max}"),
            Error::ValueTooLarge { len, max } => write!(f, "value of {len} bytes exceeds {max}"),
            Error::BucketNotFound(n) => {
                write!(f, "bucket {:?} not found", String::from_utf8_lossy(n))
            }
            Error::BucketExists(n) => {
                write!(f, "bucket {:?} already exists", String::from_utf8_lossy(n))
            }
            Error::MapFull { needed, map_size } => {
                write!(
                    f,
                    "database needs {needed} bytes but the map size is {map_size}"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl Error {
    pub fn is_corrupted(&self) -> bool {
        matches!(self, Error::Corrupted { .. })
    }
}
