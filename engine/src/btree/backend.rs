//! The narrow storage backend under the pager: read, write, sync, len, set_len — and the file
//! descriptor that readers map. Tests wrap it to inject I/O errors and to build the exact image a
//! crash leaves (see [`crate::btree::fault`]).
//!
//! Reads of B+tree pages go through the shared read-only mmap of `map_fd()`; the backend's own
//! `read` is only used for the meta pages at open. Every write goes through `write`.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

#[allow(clippy::len_without_is_empty)]
pub trait StorageBackend: Send + Sync + 'static {
    fn len(&self) -> io::Result<u64>;
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every completed write durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Starts writing completed writes back to the device without waiting for them and without
    /// making them durable (`sync` still does that). Lets visible commits trickle their pages to
    /// the disk instead of leaving them all to the next durable commit's fdatasync.
    fn start_writeback(&self) -> io::Result<()> {
        Ok(())
    }
    /// The file readers map. Writes through `write` must be visible through a MAP_SHARED map of
    /// it (true for a regular file on Linux: one page cache).
    fn map_fd(&self) -> RawFd;
}

/// A regular file.
pub struct FileBackend {
    file: File,
}

impl FileBackend {
    pub fn new(file: File) -> FileBackend {
        FileBackend { file }
    }
}

impl StorageBackend for FileBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn start_writeback(&self) -> io::Result<()> {
        // SAFETY: sync_file_range takes a file descriptor and plain integers; the descriptor is
        // open for as long as `self.file` lives, and offset 0 / nbytes 0 means "to the end".
        let r = unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    fn map_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
