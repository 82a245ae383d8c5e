//! The shared read-only mapping of the database file, reserved once at open for `map_size` bytes
//! so that growing the file never remaps under a live reader (LMDB's mapsize). Pages past the
//! current end of file are never touched: every page id read is checked against the reader's
//! snapshot high-water mark, and the file is grown before a snapshot that uses new pages is
//! published.
//!
//! Also owns the "verified" bitmap: one bit per page, set once a run's checksum and structure were
//! validated (D1), cleared by the writer when it reallocates the page. Committed runs are immutable
//! (S1), so a run verified once stays valid for as long as anyone can see it.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::btree::page::{PageId, PAGE_SIZE};

pub struct Mmap {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and its address range stays valid until Drop; sharing a
// pointer to immutable memory between threads is sound. Mutation happens only through the file
// (pwrite) to pages that no reader can reach (S1, S3).
unsafe impl Send for Mmap {}
// SAFETY: as above — readers only ever create shared references into the map.
unsafe impl Sync for Mmap {}

impl Mmap {
    pub fn map(fd: RawFd, len: u64) -> std::io::Result<Mmap> {
        let len =
            usize::try_from(len).map_err(|_| std::io::Error::other("map size exceeds usize"))?;
        // SAFETY: a fresh PROT_READ MAP_SHARED mapping of a file descriptor we own; the kernel
        // chooses the address; we check for MAP_FAILED below. MAP_NORESERVE: address space only.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mmap {
            ptr: ptr as *const u8,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes of pages [`first`, `first + pages`).
    ///
    /// The caller guarantees these pages lie inside the file (below a published high-water mark)
    /// and are not being rewritten: they belong to a snapshot it holds (S1, S3).
    #[inline]
    pub fn pages(&self, first: PageId, pages: u64) -> &[u8] {
        let off = first as usize * PAGE_SIZE;
        let len = pages as usize * PAGE_SIZE;
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "page beyond the map"
        );
        // SAFETY: the range is inside the mapping (asserted), the mapping lives as long as
        // `self`, and the caller guarantees the pages are within the file and immutable while
        // borrowed (module docs: S1, S3), so no `&mut` alias exists and no SIGBUS can occur.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }

    /// Hints the CPU to start loading the first `lines` cache lines of page `page` (no-op when
    /// the page lies outside the map). See [`prefetch_line`].
    #[inline]
    pub fn prefetch(&self, page: PageId, lines: usize) {
        if page >= (self.len / PAGE_SIZE) as u64 {
            return;
        }
        let first = self.ptr.wrapping_add(page as usize * PAGE_SIZE);
        for l in 0..lines.min(PAGE_SIZE / 64) {
            prefetch_line(first.wrapping_add(l * 64));
        }
    }

    /// Asks the kernel to read the first `len` bytes ahead (the working set is meant to be
    /// resident; DESIGN.md §2).
    pub fn will_need(&self, len: u64) {
        let len = (len as usize).min(self.len);
        // SAFETY: advisory call on our own mapping's range; it cannot affect memory safety.
        unsafe {
            libc::madvise(self.ptr as *mut libc::c_void, len, libc::MADV_WILLNEED);
        }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping the region we mapped; no borrow outlives `self` (borrows of pages
        // are tied to read transactions that hold an Arc to the owner of this map).
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// Hints the CPU to start loading the cache line holding `p` (a no-op on targets without a
/// prefetch instruction). A hint never faults and changes no memory, whatever the address, so it
/// needs no guarantee about the page: the bytes are read, and validated, only when used.
#[inline]
pub fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is only a hint: it never faults, whatever the address, and writes no
    // memory; SSE, which provides it, is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One bit per page of the map: "this run was validated".
pub struct Verified {
    bits: Vec<AtomicU64>,
}

impl Verified {
    pub fn new(pages: u64) -> Verified {
        let words = pages.div_ceil(64) as usize;
        let mut bits = Vec::with_capacity(words);
        bits.resize_with(words, || AtomicU64::new(0));
        Verified { bits }
    }

    #[inline]
    pub fn get(&self, page: PageId) -> bool {
        self.bits[(page / 64) as usize].load(Ordering::Acquire) & (1 << (page % 64)) != 0
    }

    #[inline]
    pub fn set(&self, page: PageId) {
        self.bits[(page / 64) as usize].fetch_or(1 << (page % 64), Ordering::Release);
    }

    /// Called by the writer before it writes a new run over [`first`, `first + pages`).
    pub fn clear(&self, first: PageId, pages: u64) {
        for p in first..first + pages {
            self.bits[(p / 64) as usize].fetch_and(!(1 << (p % 64)), Ordering::Release);
        }
    }
}
