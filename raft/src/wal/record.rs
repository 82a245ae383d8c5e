//! Record encoding: the on-disk frame of every WAL record and the group frame around a commit group.
//!
//! Owns the byte layout documented in the module top comment of [`crate::wal`]; owns no I/O.
//! Decoding checks every length against its buffer and every checksum before a byte is used (D1).

use std::fmt;

/// Size of a disk block: the unit of every write and the granularity of torn writes we assume.
pub const BLOCK: usize = 4096;

/// Record header: crc u32, payload length u32, kind u8, three reserved zero bytes.
pub const RECORD_HEADER_LEN: usize = 12;
const _: () = assert!(RECORD_HEADER_LEN == 4 + 4 + 1 + 3);

/// Group payload: body length u32, record count u32, body crc u32.
pub const GROUP_PAYLOAD_LEN: usize = 12;
/// A group frame: its record header plus its payload; the group's body follows it.
pub const GROUP_FRAME_LEN: usize = RECORD_HEADER_LEN + GROUP_PAYLOAD_LEN;
const _: () = assert!(GROUP_FRAME_LEN == 24);

/// Entry payload before the data: index u64, term u64, kind u8.
pub const ENTRY_FIXED_LEN: usize = 17;
/// Hard state payload: term u64, vote u64, commit u64.
pub const HARD_STATE_LEN: usize = 24;
/// Snapshot marker payload: index u64, term u64.
pub const SNAPSHOT_LEN: usize = 16;
/// Truncate payload: index u64.
pub const TRUNCATE_LEN: usize = 8;
/// Checkpoint payload: previous segment seq u64, previous segment end u64, hard state, snapshot.
pub const CHECKPOINT_LEN: usize = 16 + HARD_STATE_LEN + SNAPSHOT_LEN;
const _: () = assert!(CHECKPOINT_LEN == 56);

/// Largest payload a record may carry; larger entries are refused at the gateway.
pub const MAX_PAYLOAD_LEN: usize = 16 << 20;

/// One Raft log entry as the WAL stores it. Independent of the Raft core's own entry type: the
/// integration layer maps between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalEntry {
    /// Raft log index, ≥ 1.
    pub index: u64,
    /// Raft term of the entry.
    pub term: u64,
    /// Entry type (normal, configuration change, ...), opaque to the WAL.
    pub kind: u8,
    /// Entry payload, opaque to the WAL.
    pub data: Vec<u8>,
}

/// Raft's persistent state besides the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Member voted for in `term` (0: none).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

/// Marks that a snapshot covers the log up to and including `index`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMarker {
    /// Last index the snapshot covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
}

/// The record kinds, as stored in the header's kind byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Frame of a commit group; only ever at a block boundary.
    Group = 1,
    /// A log entry.
    Entry = 2,
    /// A hard state.
    HardState = 3,
    /// A snapshot marker.
    Snapshot = 4,
    /// Entries at and after an index are dropped.
    Truncate = 5,
    /// First record of every segment: chains it to its predecessor and repeats the state.
    Checkpoint = 6,
    /// Frame of a commit group written while the group before it was still in flight (not yet
    /// known durable); only ever at a block boundary. Recovery may drop it together with an
    /// invalid group before it (a crash with both in flight), see `segment::scan_segment`.
    OverlapGroup = 7,
}

impl RecordKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Group,
            2 => Self::Entry,
            3 => Self::HardState,
            4 => Self::Snapshot,
            5 => Self::Truncate,
            6 => Self::Checkpoint,
            7 => Self::OverlapGroup,
            _ => return None,
        })
    }
}

/// A decoded record (the group frame is not one: it is handled by [`decode_group`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A log entry.
    Entry(WalEntry),
    /// A hard state.
    HardState(HardState),
    /// A snapshot marker.
    Snapshot(SnapshotMarker),
    /// Drop entries with index ≥ this.
    Truncate(u64),
    /// Segment chaining and state repeated at the start of each segment.
    Checkpoint(Checkpoint),
}

/// First record of each segment's first group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence number of the previous segment (0: none).
    pub prev_seq: u64,
    /// Byte offset where the previous segment's valid data ends.
    pub prev_end: u64,
    /// Hard state as of the end of the previous segment.
    pub hard_state: HardState,
    /// Snapshot marker as of the end of the previous segment.
    pub snapshot: SnapshotMarker,
}

/// Why bytes failed to decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer ends before the record does.
    Truncated,
    /// The stored checksum does not match.
    Checksum,
    /// Unknown kind byte, non-zero reserved bytes, or a payload length wrong for its kind.
    Malformed(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("record runs past the end of the data"),
            Self::Checksum => f.write_str("checksum mismatch"),
            Self::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Appends one record (header + payload) to `out`; `payload` writes the payload bytes.
fn put_record(out: &mut Vec<u8>, seed: u32, kind: RecordKind, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    payload(out);
    let len = out.len() - start - RECORD_HEADER_LEN;
    assert!(
        len <= MAX_PAYLOAD_LEN,
        "record payload {len} over the limit"
    );
    out[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 8] = kind as u8;
    let crc = crc32c::crc32c_append(seed, &out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

fn put_hard_state(out: &mut Vec<u8>, hs: &HardState) {
    out.extend_from_slice(&hs.term.to_le_bytes());
    out.extend_from_slice(&hs.vote.to_le_bytes());
    out.extend_from_slice(&hs.commit.to_le_bytes());
}

fn put_snapshot(out: &mut Vec<u8>, s: &SnapshotMarker) {
    out.extend_from_slice(&s.index.to_le_bytes());
    out.extend_from_slice(&s.term.to_le_bytes());
}

/// Encoded size of an entry record.
pub fn entry_record_len(e: &WalEntry) -> usize {
    RECORD_HEADER_LEN + ENTRY_FIXED_LEN + e.data.len()
}

/// Appends `rec`, checksummed with the segment identity `seed`, to `out`.
pub fn encode(out: &mut Vec<u8>, seed: u32, rec: &Record) {
    match rec {
        Record::Entry(e) => put_record(out, seed, RecordKind::Entry, |o| {
            o.extend_from_slice(&e.index.to_le_bytes());
            o.extend_from_slice(&e.term.to_le_bytes());
            o.push(e.kind);
            o.extend_from_slice(&e.data);
        }),
        Record::HardState(hs) => {
            put_record(out, seed, RecordKind::HardState, |o| put_hard_state(o, hs))
        }
        Record::Snapshot(s) => put_record(out, seed, RecordKind::Snapshot, |o| put_snapshot(o, s)),
        Record::Truncate(i) => put_record(out, seed, RecordKind::Truncate, |o| {
            o.extend_from_slice(&i.to_le_bytes())
        }),
        Record::Checkpoint(c) => put_record(out, seed, RecordKind::Checkpoint, |o| {
            o.extend_from_slice(&c.prev_seq.to_le_bytes());
            o.extend_from_slice(&c.prev_end.to_le_bytes());
            put_hard_state(o, &c.hard_state);
            put_snapshot(o, &c.snapshot);
        }),
    }
}

/// Writes the group frame for `body` (`count` records) into `frame` (exactly [`GROUP_FRAME_LEN`]
/// bytes); `overlap`: the group is written while the one before it is still in flight.
pub fn encode_group_frame(frame: &mut [u8], seed: u32, body: &[u8], count: u32, overlap: bool) {
    assert_eq!(frame.len(), GROUP_FRAME_LEN);
    let mut v = Vec::with_capacity(GROUP_FRAME_LEN);
    let kind = if overlap {
        RecordKind::OverlapGroup
    } else {
        RecordKind::Group
    };
    put_record(&mut v, seed, kind, |o| {
        o.extend_from_slice(&(body.len() as u32).to_le_bytes());
        o.extend_from_slice(&count.to_le_bytes());
        o.extend_from_slice(&crc32c::crc32c_append(seed, body).to_le_bytes());
    });
    frame.copy_from_slice(&v);
}

/// Decodes the record at the start of `b`; returns it and its encoded length.
pub fn decode(b: &[u8], seed: u32) -> Result<(Record, usize), DecodeError> {
    let (kind, payload) = decode_raw(b, seed)?;
    let len = RECORD_HEADER_LEN + payload.len();
    let want = |n: usize, what| {
        if payload.len() == n {
            Ok(())
        } else {
            Err(DecodeError::Malformed(what))
        }
    };
    let rec = match kind {
        RecordKind::Group | RecordKind::OverlapGroup => {
            return Err(DecodeError::Malformed("group frame inside a group"))
        }
        RecordKind::Entry => {
            if payload.len() < ENTRY_FIXED_LEN {
                return Err(DecodeError::Malformed("entry payload too short"));
            }
            Record::Entry(WalEntry {
                index: u64_at(payload, 0),
                term: u64_at(payload, 8),
                kind: payload[16],
                data: payload[ENTRY_FIXED_LEN..].to_vec(),
            })
        }
        RecordKind::HardState => {
            want(HARD_STATE_LEN, "hard state length")?;
            Record::HardState(hard_state_at(payload, 0))
        }
        RecordKind::Snapshot => {
            want(SNAPSHOT_LEN, "snapshot length")?;
            Record::Snapshot(snapshot_at(payload, 0))
        }
        RecordKind::Truncate => {
            want(TRUNCATE_LEN, "truncate length")?;
            Record::Truncate(u64_at(payload, 0))
        }
        RecordKind::Checkpoint => {
            want(CHECKPOINT_LEN, "checkpoint length")?;
            Record::Checkpoint(Checkpoint {
                prev_seq: u64_at(payload, 0),
                prev_end: u64_at(payload, 8),
                hard_state: hard_state_at(payload, 16),
                snapshot: snapshot_at(payload, 16 + HARD_STATE_LEN),
            })
        }
    };
    Ok((rec, len))
}

fn hard_state_at(p: &[u8], at: usize) -> HardState {
    HardState {
        term: u64_at(p, at),
        vote: u64_at(p, at + 8),
        commit: u64_at(p, at + 16),
    }
}

fn snapshot_at(p: &[u8], at: usize) -> SnapshotMarker {
    SnapshotMarker {
        index: u64_at(p, at),
        term: u64_at(p, at + 8),
    }
}

/// Checks the header and checksum of the record at the start of `b`; returns its kind and payload.
fn decode_raw(b: &[u8], seed: u32) -> Result<(RecordKind, &[u8]), DecodeError> {
    if b.len() < RECORD_HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let len = u32_at(b, 4) as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(DecodeError::Malformed("payload length over the limit"));
    }
    if b.len() - RECORD_HEADER_LEN < len {
        return Err(DecodeError::Truncated);
    }
    let end = RECORD_HEADER_LEN + len;
    if crc32c::crc32c_append(seed, &b[4..end]) != u32_at(b, 0) {
        return Err(DecodeError::Checksum);
    }
    if b[9..12] != [0, 0, 0] {
        return Err(DecodeError::Malformed("reserved bytes not zero"));
    }
    let kind = RecordKind::from_u8(b[8]).ok_or(DecodeError::Malformed("unknown record kind"))?;
    Ok((kind, &b[RECORD_HEADER_LEN..end]))
}

/// A commit group decoded from a block boundary.
#[derive(Debug)]
pub struct Group {
    /// The records, each with its offset relative to the group start and its encoded length.
    pub records: Vec<(usize, usize, Record)>,
    /// Bytes the group occupies on disk, padding to the block boundary included.
    pub padded_len: usize,
    /// Written while the group before it was still in flight ([`RecordKind::OverlapGroup`]).
    pub overlap: bool,
}

/// Decodes the commit group at the start of `b` (which must start at a block boundary): checks the
/// frame, the body checksum and every record inside, all with the segment identity `seed` (D1).
pub fn decode_group(b: &[u8], seed: u32) -> Result<Group, DecodeError> {
    // A group frame has a fixed payload length and kind: checked before the checksum, so probing
    // a block of other bytes (an old segment's data in a recycled one) never checksums up to
    // `MAX_PAYLOAD_LEN` bytes that a stray length field names.
    let frame_kind = |k: u8| k == RecordKind::Group as u8 || k == RecordKind::OverlapGroup as u8;
    if b.len() >= RECORD_HEADER_LEN
        && (u32_at(b, 4) as usize != GROUP_PAYLOAD_LEN || !frame_kind(b[8]))
    {
        return Err(DecodeError::Malformed("no group frame"));
    }
    // A shorter `b` fails here as truncated; a longer one passed the check above.
    let (kind, payload) = decode_raw(b, seed)?;
    debug_assert!(frame_kind(kind as u8) && payload.len() == GROUP_PAYLOAD_LEN);
    let body_len = u32_at(payload, 0) as usize;
    let count = u32_at(payload, 4) as usize;
    let body_crc = u32_at(payload, 8);
    if b.len() - GROUP_FRAME_LEN < body_len {
        return Err(DecodeError::Truncated);
    }
    let body = &b[GROUP_FRAME_LEN..GROUP_FRAME_LEN + body_len];
    if crc32c::crc32c_append(seed, body) != body_crc {
        return Err(DecodeError::Checksum);
    }
    let mut records = Vec::with_capacity(count.min(body_len / RECORD_HEADER_LEN));
    let mut at = 0;
    while at < body.len() {
        let (rec, len) = decode(&body[at..], seed)?;
        records.push((GROUP_FRAME_LEN + at, len, rec));
        at += len;
    }
    if records.len() != count {
        return Err(DecodeError::Malformed("group record count"));
    }
    Ok(Group {
        records,
        padded_len: padded_group_len(body_len),
        overlap: kind == RecordKind::OverlapGroup,
    })
}

/// Bytes a group with a body of `body_len` bytes occupies on disk.
pub fn padded_group_len(body_len: usize) -> usize {
    (GROUP_FRAME_LEN + body_len).div_ceil(BLOCK) * BLOCK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Checkpoint(Checkpoint {
                prev_seq: 3,
                prev_end: 8192,
                hard_state: HardState {
                    term: 2,
                    vote: 1,
                    commit: 9,
                },
                snapshot: SnapshotMarker { index: 4, term: 1 },
            }),
            Record::Entry(WalEntry {
                index: 10,
                term: 2,
                kind: 1,
                data: b"hello".to_vec(),
            }),
            Record::Entry(WalEntry {
                index: 11,
                term: 2,
                kind: 0,
                data: vec![],
            }),
            Record::HardState(HardState {
                term: 3,
                vote: 2,
                commit: 10,
            }),
            Record::Snapshot(SnapshotMarker { index: 9, term: 2 }),
            Record::Truncate(11),
        ]
    }

    fn group_bytes(seed: u32) -> Vec<u8> {
        group_bytes_with(seed, false)
    }

    fn group_bytes_with(seed: u32, overlap: bool) -> Vec<u8> {
        let mut body = Vec::new();
        for r in sample() {
            encode(&mut body, seed, &r);
        }
        let mut b = vec![0u8; padded_group_len(body.len())];
        encode_group_frame(
            &mut b[..GROUP_FRAME_LEN],
            seed,
            &body,
            sample().len() as u32,
            overlap,
        );
        b[GROUP_FRAME_LEN..GROUP_FRAME_LEN + body.len()].copy_from_slice(&body);
        b
    }

    #[test]
    fn records_round_trip() {
        let b = group_bytes(77);
        let g = decode_group(&b, 77).unwrap();
        let recs: Vec<Record> = g.records.into_iter().map(|(_, _, r)| r).collect();
        assert_eq!(recs, sample());
        assert_eq!(g.padded_len, BLOCK);
        assert!(!g.overlap);
        let o = decode_group(&group_bytes_with(77, true), 77).unwrap();
        assert!(o.overlap, "an overlap group's frame says so");
        assert_eq!(o.records.len(), sample().len());
    }

    #[test]
    fn another_segment_identity_never_decodes() {
        let b = group_bytes(77);
        assert_eq!(decode_group(&b, 78).unwrap_err(), DecodeError::Checksum);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let b = group_bytes(5);
        let used = GROUP_FRAME_LEN + u32_at(&b, RECORD_HEADER_LEN) as usize;
        for byte in 0..used {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                assert!(
                    decode_group(&c, 5).is_err(),
                    "flip at byte {byte} bit {bit} passed"
                );
            }
        }
    }

    #[test]
    fn zeroes_and_short_buffers_are_errors_not_panics() {
        assert!(decode_group(&[0u8; BLOCK], 0).is_err());
        assert!(decode_group(&[0u8; 3], 0).is_err());
        let b = group_bytes(9);
        for cut in 0..GROUP_FRAME_LEN + 40 {
            assert!(decode_group(&b[..cut], 9).is_err());
        }
    }

    #[test]
    fn byte_layout_is_little_endian_and_fixed() {
        let mut out = Vec::new();
        encode(&mut out, 0, &Record::Truncate(0x0102_0304_0506_0708));
        assert_eq!(out.len(), RECORD_HEADER_LEN + TRUNCATE_LEN);
        assert_eq!(&out[4..8], &8u32.to_le_bytes());
        assert_eq!(out[8], RecordKind::Truncate as u8);
        assert_eq!(&out[12..20], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(u32_at(&out, 0), crc32c::crc32c(&out[4..]));
    }
}
