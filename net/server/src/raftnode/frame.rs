//! The peer wire format: consensus [`Message`]s in length-prefixed, CRC32C-checked frames.
//!
//! Owns the byte layout of peer traffic and nothing else. Every field is checked on decode
//! (D1): a bad frame from a peer is a [`FrameError`] that drops the connection, never a panic.
//!
//! ```text
//! frame   magic u32 "KLRP" | len u32 (payload bytes, ≤ MAX_FRAME) | crc u32 = CRC32C(payload)
//!         | payload
//! payload (all integers little-endian)
//!   kind u8 | from u64 | to u64 | term u64 | log_term u64 | index u64 | commit u64
//!   | reject u8 (0/1) | reject_hint u64
//!   | n_entries u32 | n × (index u64 | term u64 | kind u8 | len u32 | data)
//!   | has_snapshot u8 (0/1) [ | index u64 | term u64 | n_voters u32 | ids u64…
//!                             | n_learners u32 | ids u64… | len u32 | data ]
//!   | context_len u32 | context
//! ```
//!
//! The payload must be consumed exactly: trailing bytes are an error.
//!
//! A frame longer than [`CHUNK`] bytes (in practice: a snapshot) travels as a sequence of chunk
//! frames, each checked on its own, reassembled in order and then decoded as one frame:
//!
//! ```text
//! chunk   magic u32 "KLRC" | len u32 (≤ CHUNK + 16) | crc u32 = CRC32C(chunk payload)
//!         | total u64 (bytes of the whole frame) | offset u64 | bytes
//! ```

use keel_raft::consensus::{
    ConfState, Entry, EntryKind, Message, MessageKind, Snapshot, SnapshotMeta,
};

/// Frame magic, "KLRP" little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"KLRP");
/// Bytes of the frame header.
pub const HEADER_LEN: usize = 12;
/// Largest payload a frame may carry (a snapshot travels in one frame, so this also bounds a
/// snapshot's size; see the module documentation of [`crate::raftnode`]).
pub const MAX_FRAME: usize = 256 << 20;

/// Chunk frame magic, "KLRC" little-endian.
pub const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"KLRC");
/// Largest piece of a frame one chunk carries.
pub const CHUNK: usize = 1 << 20;

/// Why bytes from a peer were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The header's magic is wrong.
    BadMagic(u32),
    /// The declared length exceeds [`MAX_FRAME`].
    TooLong(usize),
    /// The payload's checksum does not match.
    BadChecksum,
    /// The payload ended early.
    Truncated,
    /// A field holds an impossible value.
    Invalid(&'static str),
    /// Bytes were left after the message.
    Trailing(usize),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadMagic(m) => write!(f, "bad frame magic {m:#x}"),
            FrameError::TooLong(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            FrameError::BadChecksum => write!(f, "frame checksum mismatch"),
            FrameError::Truncated => write!(f, "frame payload truncated"),
            FrameError::Invalid(why) => write!(f, "invalid frame field: {why}"),
            FrameError::Trailing(n) => write!(f, "{n} trailing bytes after the message"),
        }
    }
}

impl std::error::Error for FrameError {}

fn kind_code(k: MessageKind) -> u8 {
    match k {
        MessageKind::Append => 1,
        MessageKind::AppendResp => 2,
        MessageKind::RequestVote => 3,
        MessageKind::RequestVoteResp => 4,
        MessageKind::RequestPreVote => 5,
        MessageKind::RequestPreVoteResp => 6,
        MessageKind::Heartbeat => 7,
        MessageKind::HeartbeatResp => 8,
        MessageKind::InstallSnapshot => 9,
        MessageKind::Propose => 10,
        MessageKind::ReadIndex => 11,
        MessageKind::ReadIndexResp => 12,
        MessageKind::TimeoutNow => 13,
        MessageKind::TransferLeader => 14,
    }
}

fn code_kind(c: u8) -> Result<MessageKind, FrameError> {
    Ok(match c {
        1 => MessageKind::Append,
        2 => MessageKind::AppendResp,
        3 => MessageKind::RequestVote,
        4 => MessageKind::RequestVoteResp,
        5 => MessageKind::RequestPreVote,
        6 => MessageKind::RequestPreVoteResp,
        7 => MessageKind::Heartbeat,
        8 => MessageKind::HeartbeatResp,
        9 => MessageKind::InstallSnapshot,
        10 => MessageKind::Propose,
        11 => MessageKind::ReadIndex,
        12 => MessageKind::ReadIndexResp,
        13 => MessageKind::TimeoutNow,
        14 => MessageKind::TransferLeader,
        _ => return Err(FrameError::Invalid("message kind")),
    })
}

/// The entry kind's byte, shared with the WAL mapping.
pub fn entry_kind_code(k: EntryKind) -> u8 {
    match k {
        EntryKind::Normal => 0,
        EntryKind::ConfChange => 1,
    }
}

/// The inverse of [`entry_kind_code`]; `None` for an unknown byte.
pub fn code_entry_kind(c: u8) -> Option<EntryKind> {
    match c {
        0 => Some(EntryKind::Normal),
        1 => Some(EntryKind::ConfChange),
        _ => None,
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths fit: the encoder's caller keeps payloads under MAX_FRAME (the WAL caps entries
    // at 16 MiB); a longer field is a programmer error.
    put_u32(out, u32::try_from(b.len()).expect("field under 4 GiB"));
    out.extend_from_slice(b);
}

fn put_ids(out: &mut Vec<u8>, ids: &[u64]) {
    put_u32(out, ids.len() as u32);
    ids.iter().for_each(|&i| put_u64(out, i));
}

/// Appends one frame holding `m` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, m: &Message) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.push(kind_code(m.kind));
    for v in [m.from, m.to, m.term, m.log_term, m.index, m.commit] {
        put_u64(out, v);
    }
    out.push(m.reject as u8);
    put_u64(out, m.reject_hint);
    put_u32(out, m.entries.len() as u32);
    for e in &m.entries {
        put_u64(out, e.index);
        put_u64(out, e.term);
        out.push(entry_kind_code(e.kind));
        put_bytes(out, &e.data);
    }
    match &m.snapshot {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_u64(out, s.meta.index);
            put_u64(out, s.meta.term);
            put_ids(out, &s.meta.conf_state.voters);
            put_ids(out, &s.meta.conf_state.learners);
            put_bytes(out, &s.data);
        }
    }
    put_bytes(out, &m.context);
    let len = out.len() - start - HEADER_LEN;
    let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&MAGIC.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// A checked frame header: the payload length and checksum that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes.
    pub len: usize,
    /// Expected CRC32C of the payload.
    pub crc: u32,
}

/// Checks a frame header (magic, length bound) before any payload is read or allocated.
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    let word = |k: usize| u32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]]);
    let magic = word(0);
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let len = word(4) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    Ok(Header { len, crc: word(8) })
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn flag(&mut self) -> Result<bool, FrameError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FrameError::Invalid("boolean")),
        }
    }
    fn bytes(&mut self) -> Result<Vec<u8>, FrameError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    /// A count of items of at least `min_item` bytes each, checked against the bytes left so a
    /// forged count cannot make the decoder allocate more than the frame holds.
    fn count(&mut self, min_item: usize) -> Result<usize, FrameError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.b.len() {
            return Err(FrameError::Truncated);
        }
        Ok(n)
    }
    fn ids(&mut self) -> Result<Vec<u64>, FrameError> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }
}

/// Decodes a payload whose header was checked by [`decode_header`]: verifies the checksum, then
/// every field (D1).
pub fn decode_payload(h: Header, payload: &[u8]) -> Result<Message, FrameError> {
    if payload.len() != h.len {
        return Err(FrameError::Truncated);
    }
    if crc32c::crc32c(payload) != h.crc {
        return Err(FrameError::BadChecksum);
    }
    let mut c = Cursor { b: payload };
    let kind = code_kind(c.u8()?)?;
    let mut m = Message::new(kind, c.u64()?, c.u64()?, c.u64()?);
    m.log_term = c.u64()?;
    m.index = c.u64()?;
    m.commit = c.u64()?;
    m.reject = c.flag()?;
    m.reject_hint = c.u64()?;
    let n = c.count(21)?;
    m.entries.reserve(n);
    for _ in 0..n {
        let index = c.u64()?;
        let term = c.u64()?;
        let kind = code_entry_kind(c.u8()?).ok_or(FrameError::Invalid("entry kind"))?;
        let data = c.bytes()?;
        m.entries.push(Entry {
            index,
            term,
            kind,
            data,
        });
    }
    if c.flag()? {
        let index = c.u64()?;
        let term = c.u64()?;
        let voters = c.ids()?;
        let learners = c.ids()?;
        let data = c.bytes()?;
        m.snapshot = Some(Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                conf_state: ConfState { voters, learners },
            },
            data,
        });
    }
    m.context = c.bytes()?;
    if !c.b.is_empty() {
        return Err(FrameError::Trailing(c.b.len()));
    }
    Ok(m)
}

/// Appends `m`'s frame to `out`, as chunk frames when it is longer than [`CHUNK`].
pub fn encode_chunked(out: &mut Vec<u8>, m: &Message) {
    let mut whole = Vec::new();
    encode_frame(&mut whole, m);
    if whole.len() <= CHUNK {
        out.extend_from_slice(&whole);
        return;
    }
    let total = whole.len() as u64;
    for (k, piece) in whole.chunks(CHUNK).enumerate() {
        let mut payload = Vec::with_capacity(16 + piece.len());
        payload.extend_from_slice(&total.to_le_bytes());
        payload.extend_from_slice(&((k * CHUNK) as u64).to_le_bytes());
        payload.extend_from_slice(piece);
        out.extend_from_slice(&CHUNK_MAGIC.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }
}

/// Reassembles chunk frames into the frame they carry.
#[derive(Default)]
pub struct Reassembly {
    buf: Vec<u8>,
    total: usize,
}

impl Reassembly {
    /// Checks a chunk frame's header: its declared length, before the payload is read.
    pub fn chunk_len(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let word = |k: usize| u32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]]);
        let len = word(4) as usize;
        if !(17..=CHUNK + 16).contains(&len) {
            return Err(FrameError::Invalid("chunk length"));
        }
        Ok(Header { len, crc: word(8) })
    }

    /// Adds one chunk (checksum, order and bounds checked, D1); returns the message once the
    /// last chunk arrived.
    pub fn add(&mut self, h: Header, payload: &[u8]) -> Result<Option<Message>, FrameError> {
        if payload.len() != h.len {
            return Err(FrameError::Truncated);
        }
        if crc32c::crc32c(payload) != h.crc {
            return Err(FrameError::BadChecksum);
        }
        let total = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes")) as usize;
        let offset = u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes")) as usize;
        let piece = &payload[16..];
        if total > MAX_FRAME + HEADER_LEN || total <= CHUNK {
            return Err(FrameError::TooLong(total));
        }
        if offset == 0 {
            self.buf.clear();
            self.total = total;
        }
        if total != self.total || offset != self.buf.len() || offset + piece.len() > total {
            return Err(FrameError::Invalid("chunk out of order"));
        }
        self.buf.extend_from_slice(piece);
        if self.buf.len() < total {
            return Ok(None);
        }
        let whole = std::mem::take(&mut self.buf);
        let (mut msgs, used) = decode_frames(&whole)?;
        if msgs.len() != 1 || used != whole.len() {
            return Err(FrameError::Invalid("chunks do not hold one frame"));
        }
        Ok(msgs.pop())
    }
}

/// Decodes every whole frame in `buf`, returning the messages and the bytes consumed (a partial
/// frame at the end is left for later). Used by the unit tests and by readers of a buffer.
pub fn decode_frames(buf: &[u8]) -> Result<(Vec<Message>, usize), FrameError> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= HEADER_LEN {
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(&buf[at..at + HEADER_LEN]);
        let h = decode_header(&hb)?;
        if buf.len() - at - HEADER_LEN < h.len {
            break;
        }
        let p = &buf[at + HEADER_LEN..at + HEADER_LEN + h.len];
        out.push(decode_payload(h, p)?);
        at += HEADER_LEN + h.len;
    }
    Ok((out, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_snapshot_travels_in_checked_chunks() {
        let mut m = Message::new(MessageKind::InstallSnapshot, 1, 2, 3);
        m.snapshot = Some(Snapshot {
            meta: SnapshotMeta {
                index: 9,
                term: 3,
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![],
                },
            },
            data: (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect(),
        });
        let mut wire = Vec::new();
        encode_chunked(&mut wire, &m);
        let read = |wire: &[u8]| -> Result<Option<Message>, FrameError> {
            let mut r = Reassembly::default();
            let mut at = 0;
            let mut got = None;
            while at < wire.len() {
                let hb: [u8; HEADER_LEN] = wire[at..at + HEADER_LEN].try_into().unwrap();
                assert_eq!(u32::from_le_bytes(hb[..4].try_into().unwrap()), CHUNK_MAGIC);
                let h = Reassembly::chunk_len(&hb)?;
                let p = &wire[at + HEADER_LEN..at + HEADER_LEN + h.len];
                got = r.add(h, p)?;
                at += HEADER_LEN + h.len;
            }
            Ok(got)
        };
        assert_eq!(read(&wire).unwrap().unwrap(), m);
        // A flipped byte in any chunk is refused.
        for at in [20, CHUNK + 40, wire.len() - 1] {
            let mut bad = wire.clone();
            bad[at] ^= 1;
            assert!(read(&bad).is_err(), "flip at {at}");
        }
    }

    fn sample() -> Vec<Message> {
        let mut a = Message::new(MessageKind::Append, 1, 2, 7);
        a.log_term = 6;
        a.index = 41;
        a.commit = 40;
        a.entries = (42..45)
            .map(|i| Entry {
                index: i,
                term: 7,
                kind: if i == 43 {
                    EntryKind::ConfChange
                } else {
                    EntryKind::Normal
                },
                data: vec![i as u8; i as usize % 5],
            })
            .collect();
        let mut r = Message::new(MessageKind::AppendResp, 2, 1, 7);
        r.reject = true;
        r.reject_hint = 9;
        r.context = b"ctx".to_vec();
        let mut s = Message::new(MessageKind::InstallSnapshot, 1, 3, 8);
        s.snapshot = Some(Snapshot {
            meta: SnapshotMeta {
                index: 100,
                term: 8,
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![4],
                },
            },
            data: vec![5; 1000],
        });
        vec![a, r, s]
    }

    #[test]
    fn frames_round_trip_in_one_buffer() {
        let msgs = sample();
        let mut buf = Vec::new();
        msgs.iter().for_each(|m| encode_frame(&mut buf, m));
        let (got, used) = decode_frames(&buf).unwrap();
        assert_eq!(got, msgs);
        assert_eq!(used, buf.len());
        // A partial trailing frame is left for later, not an error.
        let (got, used) = decode_frames(&buf[..buf.len() - 1]).unwrap();
        assert_eq!(got.len(), 2);
        assert!(used < buf.len());
    }

    #[test]
    fn every_single_byte_flip_is_an_error_or_a_partial_read_never_a_panic() {
        let mut buf = Vec::new();
        sample().iter().for_each(|m| encode_frame(&mut buf, m));
        for at in 0..buf.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = buf.clone();
                b[at] ^= bit;
                match decode_frames(&b) {
                    Err(_) => {}
                    // A flip in a length field can only make the frame look longer (partial)
                    // — it must never decode to different messages.
                    Ok((got, _)) => assert!(got.len() < 3, "flip at {at} decoded all frames"),
                }
            }
        }
    }

    #[test]
    fn garbage_gives_errors_not_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..2000 {
            let len = (next() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && b.len() >= HEADER_LEN {
                // A valid header over garbage: reaches the payload decoder.
                let plen = b.len() - HEADER_LEN;
                let crc = crc32c::crc32c(&b[HEADER_LEN..]);
                b[..4].copy_from_slice(&MAGIC.to_le_bytes());
                b[4..8].copy_from_slice(&(plen as u32).to_le_bytes());
                b[8..12].copy_from_slice(&crc.to_le_bytes());
                if let Ok((m, _)) = decode_frames(&b) {
                    assert!(m.len() <= 1);
                }
            } else {
                let _ = decode_frames(&b);
            }
        }
        // Specific refusals.
        let mut h = [0u8; HEADER_LEN];
        assert!(matches!(decode_header(&h), Err(FrameError::BadMagic(0))));
        h[..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_header(&h), Err(FrameError::TooLong(_))));
        let hd = Header { len: 3, crc: 0 };
        assert_eq!(decode_payload(hd, &[1, 2, 3]), Err(FrameError::BadChecksum));
    }
}
