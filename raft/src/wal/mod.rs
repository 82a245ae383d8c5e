//! The Raft write-ahead log (DESIGN.md §6): entries, hard state and snapshot markers made durable
//! with O_DIRECT writes through io_uring (glommio DMA files) and group commit.
//!
//! Owns the files of one WAL directory and nothing else; knows nothing of the Raft core's types
//! ([`WalEntry`], [`HardState`] and [`SnapshotMarker`] are its own; the integration layer maps).
//!
//! # Files
//!
//! A directory of segments `<seq:016x>.wal` (seq = 1, 2, ...; a removed prefix is allowed, a gap
//! is not), each `segment_size` bytes (64 MiB by default), created as `<seq>.<salt>.wal.tmp`,
//! allocated, zero-filled, synced and linked into place (never over an existing file) by a
//! background task before it is needed, so every append overwrites allocated, already-written
//! blocks. Compaction keeps up to two released segments (closed, renamed
//! `<old seq>.recycled.wal.tmp`) from which the next spares are made with just a new header; the
//! rest it closes and unlinks on glommio's blocking pool (freeing their blocks there, not on the
//! executor). Oldest first, one at a time, with a directory sync after each: what a crash leaves
//! is always a suffix of the chain, even where the filesystem does not order directory updates.
//! On open, leftover `.wal.tmp` files are removed, except up to two recycle-pool files of the
//! configured segment size, which stay in the pool.
//!
//! # Byte layout (all integers little-endian, fixed width)
//!
//! ```text
//! segment block 0 (4096 bytes, rest zero)
//!   0  magic      [u8; 8]  "KEELWAL\0"
//!   8  version    u32      1
//!  12  block size u32      4096
//!  16  seq        u64      this segment's position in the log
//!  24  salt       u64      random, chosen when the segment is prepared
//!  32  size       u64      segment file length
//!  40  crc        u32      CRC32C of bytes 0..40
//! identity seed = CRC32C(seq ‖ salt): every record CRC below starts from it, so bytes of another
//! segment (an old file, a recycled one) never verify here.
//!
//! record (12-byte header + payload)
//!   0  crc        u32      CRC32C(seed; bytes 4..12+len)
//!   4  len        u32      payload length (≤ 16 MiB)
//!   8  kind       u8       1 group, 2 entry, 3 hard state, 4 snapshot, 5 truncate, 6 checkpoint
//!   9  reserved   [u8; 3]  zero
//! payloads
//!   group      body_len u32, count u32, body_crc u32 = CRC32C(seed; body)
//!   entry      index u64, term u64, type u8, data [u8]
//!   hard state term u64, vote u64, commit u64
//!   snapshot   index u64, term u64
//!   truncate   index u64           entries ≥ index are dropped
//!   checkpoint prev_seq u64, prev_end u64, hard state (24), snapshot (16)
//!
//! commit group, at a 4096-byte boundary from block 1 on:
//!   group record | body: `count` records | zero padding to the next 4096-byte boundary
//! ```
//!
//! The first group of a segment starts with a checkpoint: the previous segment's seq and the
//! offset its data ends at (so recovery can tell a damaged last group of a full segment from the
//! end of data) and the hard state and snapshot as of then (so releasing earlier segments loses
//! no state).
//!
//! # Invariants
//!
//! - One write per group, block-aligned, and each group starts on a fresh block: a block holding
//!   acknowledged records is never written again, so a torn write can only damage the groups being
//!   written, never an acknowledged one (DESIGN.md §6).
//! - At most two groups are in flight; a group written while the one before it is still in
//!   flight is framed as an overlap group. A caller's future resolves only after its group and
//!   every earlier one are durable (write with O_DSYNC, or write + fdatasync): durability is
//!   reported in queue order.
//! - D1: everything read back (on open, by [`Wal::entries`], by the dump tool) is checked —
//!   checksums with the segment identity, lengths against buffers — before use. On open, an invalid
//!   group with no valid group after it is a torn tail and is ignored (appends continue there); an
//!   invalid group followed by one valid overlap group and nothing valid after it is a torn tail
//!   too (both were in flight; the overlap group's frame is zeroed before appends continue); any
//!   other valid group after an invalid one, a broken segment chain or a gap in the indexes is
//!   [`WalError::Corrupt`] with the segment file and byte offset, and the WAL does not open.
//! - D2: after a failed write, sync, or segment preparation, every later call fails with
//!   [`WalError::Failed`] until the WAL is reopened; fsync is never retried.

mod error;
mod index;
mod io;
mod reader;
mod record;
mod segment;
mod writer;

pub use error::WalError;
pub use index::{Loc, LogIndex};
pub use io::{IoHook, IoOp};
pub use reader::{replay, scan_dir, Replayed, ScannedSegment};
pub use record::{Checkpoint, DecodeError, HardState, Record, SnapshotMarker, WalEntry, BLOCK};
pub use segment::{
    list_segments, prime_iopoll_probe, recycle_path, segment_path, SegmentHeader, SegmentScan,
};
pub use writer::{Wal, WalStats, MIN_SEGMENT_SIZE};

/// How a group is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Segment files opened O_DSYNC: the write completes once durable; no separate sync.
    Dsync,
    /// A plain O_DIRECT write, then fdatasync.
    Fdatasync,
}

/// WAL configuration.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Segment file size in bytes: a multiple of 4096, at least [`MIN_SEGMENT_SIZE`].
    pub segment_size: u64,
    /// How groups are made durable (see tuning.md for the measurement behind the default).
    pub sync: SyncMode,
    /// Bytes of entry data kept in the recent-entries cache.
    pub cache_bytes: usize,
    /// Upper bound on one group's bytes (a single larger append still goes out alone).
    pub max_group_bytes: usize,
    /// Before cutting a group, yield once to the executor so the tasks the previous group's
    /// completion just woke can queue their next records into it. No timer is involved: the group
    /// is cut as soon as every runnable task has had one turn. Halves the number of groups when
    /// many appenders wait (see tuning.md).
    pub coalesce: bool,
    /// Let a second group be written while the first one's write is in flight (published in
    /// order all the same; recovery knows the torn tail this can leave). `false`: one group at a
    /// time, each written only after the previous one is durable.
    pub overlap_groups: bool,
    /// Fault injection for tests; [`IoHook::none`] in production.
    pub io_hook: IoHook,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            sync: SyncMode::Dsync,
            cache_bytes: 8 << 20,
            max_group_bytes: 4 << 20,
            coalesce: true,
            overlap_groups: true,
            io_hook: IoHook::none(),
        }
    }
}
