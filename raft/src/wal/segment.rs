//! Segment files: naming, the header block, preparation ahead of need, and the read-only scan that
//! recovery and the dump tool share.
//!
//! A segment is `<seq as 16 hex digits>.wal`, `segment_size` bytes, block 0 its header. It is
//! created as `<seq>.<salt>.wal.tmp` — a new file allocated and zero-filled, or a released
//! segment's file recycled with a new header — synced, linked to its final name (never replacing
//! an existing file), and the directory synced, so a `.wal` file always has a valid header and
//! every later write into it overwrites allocated, already-written blocks. Owns no WAL state.

use super::error::WalError;
use super::io::{IoHook, IoOp};
use super::record::{self, Group, BLOCK};
use glommio::io::{Directory, DmaFile, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

/// Magic at byte 0 of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"KEELWAL\0";
/// On-disk format version.
pub const FORMAT_VERSION: u32 = 1;
/// Used bytes of the header: magic, version, block size, seq, salt, segment size, crc.
pub const SEGMENT_HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 8 + 4;
const _: () = assert!(SEGMENT_HEADER_LEN == 44);
const _: () = assert!(SEGMENT_HEADER_LEN <= BLOCK);

/// Chunk used to zero-fill and to read segments.
const IO_CHUNK: usize = 1 << 20;

/// The identity of a segment: what its records' checksums are seeded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Position of the segment in the log (1, 2, ...).
    pub seq: u64,
    /// Random per-segment value, so the bytes of a removed segment can never pass as valid.
    pub salt: u64,
    /// Length of the file in bytes.
    pub segment_size: u64,
}

impl SegmentHeader {
    /// The CRC32C seed every record of this segment is checksummed with.
    pub fn seed(&self) -> u32 {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.seq.to_le_bytes());
        id[8..].copy_from_slice(&self.salt.to_le_bytes());
        crc32c::crc32c(&id)
    }

    /// Writes the header into the first [`SEGMENT_HEADER_LEN`] bytes of `b`.
    pub fn encode(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.salt.to_le_bytes());
        b[32..40].copy_from_slice(&self.segment_size.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and checks a header (D1).
    pub fn decode(b: &[u8]) -> Result<Self, &'static str> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err("file shorter than the header");
        }
        let le32 = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let le64 = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad magic");
        }
        if crc32c::crc32c(&b[0..40]) != le32(40) {
            return Err("header checksum mismatch");
        }
        if le32(8) != FORMAT_VERSION {
            return Err("unknown format version");
        }
        if le32(12) as usize != BLOCK {
            return Err("unsupported block size");
        }
        let h = Self {
            seq: le64(16),
            salt: le64(24),
            segment_size: le64(32),
        };
        if h.segment_size & (BLOCK as u64 - 1) != 0 || h.segment_size < 2 * BLOCK as u64 {
            return Err("bad segment size");
        }
        Ok(h)
    }
}

/// `<dir>/<seq>.wal`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

/// Parses a segment file name back to its seq.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Lists the segment seqs in `dir`, ascending; removes leftover `.wal.tmp` files when `clean`.
pub fn list_segments(dir: &Path, clean: bool) -> Result<Vec<u64>, WalError> {
    let io = |e| WalError::io("list directory", dir, e);
    let mut seqs = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(io)? {
        let ent = ent.map_err(io)?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_segment_name(name) {
            seqs.push(seq);
        } else if clean && name.ends_with(".wal.tmp") && !name.ends_with(RECYCLED_SUFFIX) {
            // A segment whose preparation a crash interrupted; never referenced by anything.
            // (Or one a dropped WAL's cancelled task is still finishing: it may vanish meanwhile.)
            match std::fs::remove_file(ent.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(WalError::io("remove", &ent.path(), e));
                }
                _ => {}
            }
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

fn random_salt(seq: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(seq);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(t.as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

/// Opens a segment file for the WAL's reads and writes (O_DIRECT; plus O_DSYNC when `dsync`).
pub async fn open_segment(path: &Path, dsync: bool) -> Result<DmaFile, WalError> {
    let flags = if dsync { libc::O_DSYNC } else { 0 };
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .dma_open(path)
        .await
        .map_err(|e| WalError::io("open", path, e.into()))
}

/// Creates segment `seq` in `dir`, fully allocated and written, header in place, everything
/// synced and linked into place; returns it opened for the WAL.
///
/// With `recycled` (a released segment's file, see [`recycle_path`]) it takes that file instead
/// of a new one and writes only the header block: the file's blocks are already allocated and
/// written, and its old groups, checksummed with the old segment's identity seed, never verify
/// in the new segment (they read as the end of its data). Without, it allocates a new file and
/// zero-fills all of it.
pub async fn prepare_segment(
    dir: &Path,
    seq: u64,
    segment_size: u64,
    dsync: bool,
    hook: &IoHook,
    recycled: Option<PathBuf>,
) -> Result<(DmaFile, SegmentHeader), WalError> {
    let header = SegmentHeader {
        seq,
        salt: random_salt(seq),
        segment_size,
    };
    // A name of its own, so a preparation abandoned by a dropped WAL (a cancelled task whose last
    // syscall may still land) never touches the file of another preparation of the same seq.
    let tmp = dir.join(format!("{seq:016x}.{:016x}.wal.tmp", header.salt));
    let path = segment_path(dir, seq);
    {
        let f = match recycled {
            Some(old) => {
                std::fs::rename(&old, &tmp).map_err(|e| WalError::io("rename", &old, e))?;
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .dma_open(&tmp)
                    .await
                    .map_err(io("open", &tmp))?;
                let len = f.file_size().await.map_err(io("stat", &tmp))?;
                if len != segment_size {
                    let why = format!("recycled segment is {len} bytes, not {segment_size}");
                    return Err(WalError::InvalidArgument(why));
                }
                write_chunk(&f, &tmp, &header, hook, 0, BLOCK).await?;
                f
            }
            None => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .dma_open(&tmp)
                    .await
                    .map_err(io("create", &tmp))?;
                f.pre_allocate(segment_size, false)
                    .await
                    .map_err(io("allocate", &tmp))?;
                let mut off = 0u64;
                while off < segment_size {
                    let len = (segment_size - off).min(IO_CHUNK as u64) as usize;
                    write_chunk(&f, &tmp, &header, hook, off, len).await?;
                    off += len as u64;
                }
                f
            }
        };
        hook.check(IoOp::Sync { seq })?;
        f.fdatasync().await.map_err(io("sync", &tmp))?;
        f.close().await.map_err(io("close", &tmp))?;
    }
    // link(2) rather than rename(2): it fails if the segment exists, so a stale preparation can
    // never replace a segment in use. (A metadata syscall of a few µs, in the background task.)
    std::fs::hard_link(&tmp, &path).map_err(|e| WalError::io("link", &path, e))?;
    std::fs::remove_file(&tmp).map_err(|e| WalError::io("remove", &tmp, e))?;
    sync_dir(dir).await?;
    Ok((open_segment(&path, dsync).await?, header))
}

/// Writes `len` zero bytes at `off` of a segment being prepared, the header at the start of
/// block 0.
async fn write_chunk(
    f: &DmaFile,
    tmp: &Path,
    header: &SegmentHeader,
    hook: &IoHook,
    off: u64,
    len: usize,
) -> Result<(), WalError> {
    let mut buf = f.alloc_dma_buffer(len);
    buf.as_bytes_mut().fill(0);
    if off == 0 {
        header.encode(buf.as_bytes_mut());
    }
    hook.check(IoOp::Prepare {
        seq: header.seq,
        offset: off,
    })?;
    let n = f.write_at(buf, off).await.map_err(io("zero-fill", tmp))?;
    if n != len {
        return Err(WalError::short_write(tmp, off, n, len));
    }
    Ok(())
}

/// Durably zeroes the block at `offset` of segment `seq` (the frame of an overlap group recovery
/// dropped as part of a torn tail), so it can never decode again.
pub async fn zero_block(path: &Path, seq: u64, offset: u64, hook: &IoHook) -> Result<(), WalError> {
    let f = open_segment(path, false).await?;
    let mut buf = f.alloc_dma_buffer(BLOCK);
    buf.as_bytes_mut().fill(0);
    hook.check(IoOp::Write {
        seq,
        offset,
        len: BLOCK,
    })?;
    let n = f.write_at(buf, offset).await.map_err(io("write", path))?;
    if n != BLOCK {
        return Err(WalError::short_write(path, offset, n, BLOCK));
    }
    hook.check(IoOp::Sync { seq })?;
    f.fdatasync().await.map_err(io("fdatasync", path))?;
    f.close().await.map_err(io("close", path))
}

const RECYCLED_SUFFIX: &str = ".recycled.wal.tmp";

/// Where a released segment waits to be recycled: a `.wal.tmp` name, never read by recovery.
pub fn recycle_path(dir: &Path, old_seq: u64) -> PathBuf {
    dir.join(format!("{old_seq:016x}{RECYCLED_SUFFIX}"))
}

/// The released segments a previous run left for recycling: up to `keep` files of exactly
/// `segment_size` bytes are kept (a restart does not free and re-create them); any other is
/// removed. A file is renamed to its recycle name only after it is closed, whole, and is never
/// written there, so its size is all there is to check; its bytes are never read as records.
pub fn recycled_files(
    dir: &Path,
    segment_size: u64,
    keep: usize,
) -> Result<Vec<PathBuf>, WalError> {
    let io = |e| WalError::io("list directory", dir, e);
    let mut found = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(io)? {
        let ent = ent.map_err(io)?;
        if ent
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(RECYCLED_SUFFIX))
        {
            found.push(ent.path());
        }
    }
    found.sort();
    let mut kept = Vec::new();
    for path in found {
        let len = std::fs::metadata(&path)
            .map_err(|e| WalError::io("stat", &path, e))?
            .len();
        if kept.len() < keep && len == segment_size {
            kept.push(path);
        } else {
            std::fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
        }
    }
    Ok(kept)
}

fn io<'a>(what: &'static str, p: &'a Path) -> impl Fn(glommio::GlommioError<()>) -> WalError + 'a {
    move |e| WalError::io(what, p, e.into())
}

/// Makes glommio's per-thread, per-device probe for io_uring polling (IOPOLL) support see a read
/// that reaches the device.
///
/// glommio probes a device the first time a thread opens a DMA file on it, by reading block 0 of
/// that file, and caches the answer. If that file is new (empty, or only fallocated), the read
/// completes without touching the device, the probe concludes "pollable", and from then on every
/// read on the device is sent to the poll ring and fails with EOPNOTSUPP on devices without poll
/// queues (as on this project's virtio disks). Opening a synced file with real data first gives
/// the probe a true answer. Call before opening any DMA file in `dir` on this thread.
pub async fn prime_iopoll_probe(dir: &Path) -> Result<(), WalError> {
    use std::io::Write;
    let path = dir.join(".iopoll-probe");
    let mut f = std::fs::File::create(&path).map_err(|e| WalError::io("create", &path, e))?;
    f.write_all(&[0xA5; BLOCK])
        .map_err(|e| WalError::io("write", &path, e))?;
    f.sync_data().map_err(|e| WalError::io("sync", &path, e))?;
    drop(f);
    let d = DmaFile::open(&path).await.map_err(io("open", &path))?;
    d.close().await.map_err(io("close", &path))?;
    std::fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))
}

/// fsyncs the directory so created, renamed and removed names are durable.
pub async fn sync_dir(dir: &Path) -> Result<(), WalError> {
    let d = Directory::open(dir)
        .await
        .map_err(|e| WalError::io("open directory", dir, e.into()))?;
    d.sync()
        .await
        .map_err(|e| WalError::io("sync directory", dir, e.into()))?;
    d.close()
        .await
        .map_err(|e| WalError::io("close directory", dir, e.into()))
}

/// Reads a whole file into memory through the DMA file.
pub async fn read_all(file: &DmaFile, path: &Path) -> Result<Vec<u8>, WalError> {
    let size = file
        .file_size()
        .await
        .map_err(|e| WalError::io("stat", path, e.into()))?;
    let mut out = Vec::with_capacity(size as usize);
    let mut off = 0u64;
    while off < size {
        let len = (size - off).min(IO_CHUNK as u64) as usize;
        let r = file
            .read_at_aligned(off, len)
            .await
            .map_err(|e| WalError::io("read", path, e.into()))?;
        if r.is_empty() {
            break;
        }
        out.extend_from_slice(&r[..]);
        off += r.len() as u64;
    }
    Ok(out)
}

/// What a read-only scan of one segment found.
#[derive(Debug)]
pub struct SegmentScan {
    /// The validated header.
    pub header: SegmentHeader,
    /// Valid groups in order, with their byte offsets in the file.
    pub groups: Vec<(u64, Group)>,
    /// Offset just past the last valid group: where the next group goes.
    pub valid_end: u64,
    /// Why the first group after `valid_end` failed to decode (`None` when the segment is full).
    pub stop_reason: Option<record::DecodeError>,
    /// Offset of a valid group found after an invalid one: corruption, not a torn tail (D1).
    pub valid_after_invalid: Option<u64>,
    /// Offset of an overlap group (written while the group before it was in flight) found after
    /// the invalid group at `valid_end` with nothing valid after it: both were in flight at a
    /// crash, neither was acknowledged, and both belong to the torn tail. Its frame must be
    /// overwritten before the segment is written again (`Wal::open` zeroes it), or it would
    /// decode again once later groups reach its offset.
    pub overlap_tail: Option<u64>,
}

/// Scans segment bytes: the header, then group after group from block 1 until the first that does
/// not decode, then every later block boundary for a valid group frame.
///
/// At most two groups are in flight at once and the second is framed as an overlap group, so
/// a crash can leave the first torn and the second whole: an invalid group followed by one valid
/// overlap group and nothing valid after it is a torn tail (`overlap_tail`). Any other valid
/// group after an invalid one is corruption (`valid_after_invalid`).
pub fn scan_segment(bytes: &[u8]) -> Result<SegmentScan, (u64, String)> {
    let header =
        SegmentHeader::decode(bytes).map_err(|why| (0, format!("segment header: {why}")))?;
    if (bytes.len() as u64) < header.segment_size {
        return Err((
            bytes.len() as u64,
            format!("file shorter than its segment size {}", header.segment_size),
        ));
    }
    let bytes = &bytes[..header.segment_size as usize];
    let seed = header.seed();
    let mut groups = Vec::new();
    let mut at = BLOCK;
    let mut stop_reason = None;
    while at < bytes.len() {
        match record::decode_group(&bytes[at..], seed) {
            Ok(g) => {
                let len = g.padded_len;
                groups.push((at as u64, g));
                at += len;
            }
            Err(e) => {
                stop_reason = Some(e);
                break;
            }
        }
    }
    let valid_end = at as u64;
    // The first valid group at a block boundary at or after `from`, with its padded length.
    let next_valid = |from: usize| {
        (from..bytes.len()).step_by(BLOCK).find_map(|p| {
            record::decode_group(&bytes[p..], seed)
                .ok()
                .map(|g| (p, g.overlap, g.padded_len))
        })
    };
    let (mut valid_after_invalid, mut overlap_tail) = (None, None);
    if let Some((p, overlap, len)) = next_valid(at + BLOCK) {
        if overlap && next_valid(p + len).is_none() {
            overlap_tail = Some(p as u64);
        } else {
            valid_after_invalid = Some(p as u64);
        }
    }
    Ok(SegmentScan {
        header,
        groups,
        valid_end,
        stop_reason,
        valid_after_invalid,
        overlap_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            seq: 7,
            salt: 0x0123_4567_89ab_cdef,
            segment_size: 64 << 10,
        }
    }

    #[test]
    fn header_round_trips_and_every_damage_is_refused() {
        let mut b = vec![0u8; BLOCK];
        header().encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(header()));
        for byte in 0..SEGMENT_HEADER_LEN {
            let mut c = b.clone();
            c[byte] ^= 0x01;
            assert!(
                SegmentHeader::decode(&c).is_err(),
                "flip in byte {byte} passed"
            );
        }
        assert!(SegmentHeader::decode(&b[..10]).is_err());
    }

    #[test]
    fn identity_seed_differs_per_segment() {
        let a = header();
        let b = SegmentHeader {
            salt: a.salt + 1,
            ..a
        };
        let c = SegmentHeader {
            seq: a.seq + 1,
            ..a
        };
        assert_ne!(a.seed(), b.seed());
        assert_ne!(a.seed(), c.seed());
    }

    #[test]
    fn segment_names_parse_back() {
        let p = segment_path(Path::new("/x"), 0x2a);
        assert_eq!(p, Path::new("/x/000000000000002a.wal"));
        assert_eq!(parse_segment_name("000000000000002a.wal"), Some(0x2a));
        assert_eq!(parse_segment_name("2a.wal"), None);
        assert_eq!(parse_segment_name("000000000000002a.wal.tmp"), None);
    }

    #[test]
    fn scan_finds_valid_data_after_invalid_data() {
        let h = header();
        let mut seg = vec![0u8; h.segment_size as usize];
        h.encode(&mut seg);
        let group = |seg: &mut Vec<u8>, at: usize, idx: u64, overlap: bool| {
            let mut body = Vec::new();
            let e = record::WalEntry {
                index: idx,
                term: 1,
                kind: 0,
                data: vec![1; 10],
            };
            record::encode(&mut body, h.seed(), &record::Record::Entry(e));
            record::encode_group_frame(
                &mut seg[at..at + record::GROUP_FRAME_LEN],
                h.seed(),
                &body,
                1,
                overlap,
            );
            seg[at + record::GROUP_FRAME_LEN..][..body.len()].copy_from_slice(&body);
        };
        group(&mut seg, BLOCK, 1, false);
        group(&mut seg, 2 * BLOCK, 2, true);
        let s = scan_segment(&seg).unwrap();
        assert_eq!(
            (s.groups.len(), s.valid_end, s.valid_after_invalid),
            (2, 3 * BLOCK as u64, None)
        );
        assert!(s.groups[1].1.overlap && !s.groups[0].1.overlap);
        // A plain group after an invalid one: corruption.
        group(&mut seg, 5 * BLOCK, 3, false);
        let s = scan_segment(&seg).unwrap();
        assert_eq!(
            (s.valid_end, s.valid_after_invalid, s.overlap_tail),
            (3 * BLOCK as u64, Some(5 * BLOCK as u64), None)
        );
        // An overlap group after an invalid one, nothing after it: both were in flight.
        group(&mut seg, 5 * BLOCK, 3, true);
        let s = scan_segment(&seg).unwrap();
        assert_eq!(
            (s.valid_end, s.valid_after_invalid, s.overlap_tail),
            (3 * BLOCK as u64, None, Some(5 * BLOCK as u64))
        );
        // ... with another valid group after it: corruption again.
        group(&mut seg, 7 * BLOCK, 4, true);
        let s = scan_segment(&seg).unwrap();
        assert_eq!(
            (s.valid_end, s.valid_after_invalid, s.overlap_tail),
            (3 * BLOCK as u64, Some(5 * BLOCK as u64), None)
        );
    }
}
