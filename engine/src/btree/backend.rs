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
    /// Writes `bufs` back to back from `offset`, as `write` would one after the other (the
    /// default does exactly that; a file does it with as few `pwritev` calls as it can).
    fn write_vectored(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        let mut at = offset;
        for b in bufs {
            self.write(at, b)?;
            at += b.len() as u64;
        }
        Ok(())
    }
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
    fn write_vectored(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        // At most this many buffers per call (Linux's IOV_MAX is 1024).
        const MAX_IOVS: usize = 512;
        let mut at = offset;
        for batch in bufs.chunks(MAX_IOVS) {
            let iovs: Vec<libc::iovec> = batch
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            let total: usize = batch.iter().map(|b| b.len()).sum();
            // SAFETY: every iovec points into a slice of `batch`, alive and unmodified for the
            // whole call (pwritev only reads them); the descriptor is open while `self.file`
            // lives; the count is at most MAX_IOVS, under IOV_MAX.
            let n = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    iovs.as_ptr(),
                    iovs.len() as libc::c_int,
                    at as libc::off_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let mut done = n.max(0) as usize;
            if done < total {
                // A short (or interrupted) write: the rest one buffer at a time.
                let mut off = at;
                for b in batch {
                    let skip = done.min(b.len());
                    done -= skip;
                    if skip < b.len() {
                        self.file.write_all_at(&b[skip..], off + skip as u64)?;
                    }
                    off += b.len() as u64;
                }
            }
            at += total as u64;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vectored_write_lands_as_its_buffers_written_back_to_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let b = FileBackend::new(f);
        b.write(0, &[7u8; 20_000]).unwrap();
        let (x, y, z) = (vec![1u8; 4096], vec![2u8; 3], vec![3u8; 8192]);
        // More buffers than one pwritev call takes, and an odd length among them.
        let mut bufs: Vec<&[u8]> = vec![&x, &y, &z];
        bufs.extend(std::iter::repeat_n(&y[..], 600));
        b.write_vectored(5, &bufs).unwrap();
        let want: Vec<u8> = std::iter::once(&[7u8; 5][..])
            .chain(bufs.iter().copied())
            .flatten()
            .copied()
            .collect();
        let mut got = vec![0u8; want.len() + 1];
        b.read(0, &mut got).unwrap();
        assert_eq!(&got[..want.len()], &want[..]);
        assert_eq!(
            got[want.len()],
            7,
            "nothing past the last buffer was touched"
        );
    }
}
