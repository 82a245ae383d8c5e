//! Frames: the fixed 32-byte header, the payload and its zero padding; [`encode_frame`],
//! the stateless [`decode_frame`] and the incremental [`FrameDecoder`]. Layout in net/PROTOCOL.md.
//!
//! Every frame is padded to a multiple of [`FRAME_ALIGN`] bytes, so in a stream of frames each
//! frame, and each payload (after the 32-byte header), starts at a 16-byte-aligned offset. The
//! [`FrameDecoder`] keeps its bytes in a 16-byte-aligned buffer and only ever moves them by whole
//! frames, so the payloads it hands out are aligned for rkyv's zero-copy `access` without a copy.

use rkyv::util::AlignedVec;

use crate::error::ProtoError;
use crate::limits::MAX_PAYLOAD_HARD;
use crate::opcode::Opcode;

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"KEEL";
/// The protocol version this build speaks (header byte 4).
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 32;
/// Frames (header + payload + padding) are padded to a multiple of this; payloads are aligned to it.
pub const FRAME_ALIGN: usize = 16;
/// Flag bit 0: more frames follow on this request id (an open stream).
pub const FLAG_MORE: u8 = 0x01;
/// The flag bits version 1 defines; any other bit set is an error.
pub const KNOWN_FLAGS: u8 = FLAG_MORE;

/// A decoded, checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub opcode: Opcode,
    /// Flag bits ([`FLAG_MORE`]).
    pub flags: u8,
    /// The request id; responses and stream items carry their request's id.
    pub request_id: u64,
    /// Exact payload length in bytes (padding excluded).
    pub payload_len: u32,
}

impl FrameHeader {
    /// Whether more frames follow on this request id.
    pub fn more(&self) -> bool {
        self.flags & FLAG_MORE != 0
    }
}

/// A complete, checksummed frame borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The payload (an archived `Request`/`Response`; validated on access, not here).
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Bytes this frame occupies on the wire (header + payload + padding).
    pub fn wire_len(&self) -> usize {
        wire_len(self.header.payload_len as usize)
    }
}

/// The result of a decode attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete frame.
    Frame(Frame<'a>),
    /// The input ends inside a frame: at least this many more bytes are needed.
    NeedMore(usize),
}

/// Total wire length of a frame with a payload of `payload_len` bytes.
pub fn wire_len(payload_len: usize) -> usize {
    (HEADER_LEN + payload_len).next_multiple_of(FRAME_ALIGN)
}

fn crc(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..28]), payload)
}

/// Appends one frame (header, payload, zero padding) to `out`.
///
/// Fails only if the payload exceeds [`MAX_PAYLOAD_HARD`], `flags` has undefined bits, or sets
/// [`FLAG_MORE`] on an opcode that does not stream ([`Opcode::may_stream`]); `out` is then left
/// as it was.
pub fn encode_frame(
    out: &mut Vec<u8>,
    opcode: Opcode,
    flags: u8,
    request_id: u64,
    payload: &[u8],
) -> Result<(), ProtoError> {
    let start = begin_frame(out, payload.len());
    out.extend_from_slice(payload);
    finish_frame(out, start, opcode, flags, request_id)
}

/// Reserves the header of a frame at the end of `out` (room for `payload_hint` payload bytes);
/// the payload is then appended and [`finish_frame`] called with the returned start.
pub(crate) fn begin_frame(out: &mut Vec<u8>, payload_hint: usize) -> usize {
    let start = out.len();
    out.reserve(wire_len(payload_hint));
    out.resize(start + HEADER_LEN, 0);
    start
}

/// Completes the frame begun at `start` whose payload is everything after its header: fills the
/// header in (CRC last) and appends the padding. On error, truncates `out` back to `start`.
pub(crate) fn finish_frame(
    out: &mut Vec<u8>,
    start: usize,
    opcode: Opcode,
    flags: u8,
    request_id: u64,
) -> Result<(), ProtoError> {
    let payload_len = out.len() - start - HEADER_LEN;
    let streams_ok = flags & FLAG_MORE == 0 || opcode.may_stream();
    let len = match u32::try_from(payload_len) {
        Ok(l) if l <= MAX_PAYLOAD_HARD && flags & !KNOWN_FLAGS == 0 && streams_ok => l,
        _ => {
            out.truncate(start);
            return Err(ProtoError::Encode(format!(
                "payload of {payload_len} bytes, flags {flags:#04x} on opcode {:#06x}",
                opcode.to_u16()
            )));
        }
    };
    let frame = &mut out[start..];
    frame[0..4].copy_from_slice(&MAGIC);
    frame[4] = VERSION;
    frame[5] = flags;
    frame[6..8].copy_from_slice(&opcode.to_u16().to_le_bytes());
    frame[8..16].copy_from_slice(&request_id.to_le_bytes());
    frame[16..20].copy_from_slice(&len.to_le_bytes());
    frame[20..28].fill(0);
    let sum = crc(frame, &frame[HEADER_LEN..]);
    frame[28..32].copy_from_slice(&sum.to_le_bytes());
    out.resize(start + wire_len(payload_len), 0);
    Ok(())
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks a header's fields (not yet the CRC). `bytes` holds at least [`HEADER_LEN`] bytes.
fn parse_header(bytes: &[u8], max_payload: u32) -> Result<FrameHeader, ProtoError> {
    if bytes[0..4] != MAGIC {
        let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        return Err(ProtoError::BadMagic(magic));
    }
    if bytes[4] != VERSION {
        return Err(ProtoError::UnsupportedVersion(bytes[4]));
    }
    let flags = bytes[5];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(ProtoError::UnknownFlags(flags));
    }
    let raw_opcode = read_u16(bytes, 6);
    let opcode = Opcode::from_u16(raw_opcode).ok_or(ProtoError::UnknownOpcode(raw_opcode))?;
    if flags & FLAG_MORE != 0 && !opcode.may_stream() {
        return Err(ProtoError::UnexpectedMore(raw_opcode));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..16]);
    let request_id = u64::from_le_bytes(id);
    let payload_len = read_u32(bytes, 16);
    let max = max_payload.min(MAX_PAYLOAD_HARD);
    if payload_len > max {
        return Err(ProtoError::PayloadTooLarge {
            len: payload_len,
            max,
        });
    }
    if bytes[20..28].iter().any(|&b| b != 0) {
        return Err(ProtoError::ReservedNotZero);
    }
    Ok(FrameHeader {
        opcode,
        flags,
        request_id,
        payload_len,
    })
}

/// Decodes the frame at the start of `buf` (stateless form of [`FrameDecoder`]).
///
/// Returns `NeedMore` while `buf` ends inside a frame, including inside the header: a prefix of
/// a valid frame never gives an error. The header is checked as soon as it is complete, so a
/// length over `max_payload` (or [`MAX_PAYLOAD_HARD`]) is rejected before any byte of the payload
/// is awaited or buffered. The CRC32C and the zero padding are checked once the frame is complete.
/// The payload is **not** validated here (see `Frame::access_request` and friends) and is only
/// 16-byte aligned if `buf` is; wrap it in [`crate::AlignedBytes`] otherwise.
pub fn decode_frame(buf: &[u8], max_payload: u32) -> Result<Decoded<'_>, ProtoError> {
    if buf.len() < HEADER_LEN {
        return Ok(Decoded::NeedMore(HEADER_LEN - buf.len()));
    }
    let header = parse_header(buf, max_payload)?;
    let len = header.payload_len as usize;
    let total = wire_len(len);
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total - buf.len()));
    }
    let payload = &buf[HEADER_LEN..HEADER_LEN + len];
    let stored = read_u32(buf, 28);
    let computed = crc(buf, payload);
    if stored != computed {
        return Err(ProtoError::ChecksumMismatch { stored, computed });
    }
    if buf[HEADER_LEN + len..total].iter().any(|&b| b != 0) {
        return Err(ProtoError::BadPadding);
    }
    Ok(Decoded::Frame(Frame { header, payload }))
}

/// Incremental frame decoder for one connection: feed it bytes (or read into
/// [`FrameDecoder::read_buf`]), then call [`FrameDecoder::decode`] until it returns `NeedMore`.
///
/// The bytes live in a 16-byte-aligned buffer and frames are consumed whole, so every payload it
/// returns is aligned for zero-copy rkyv access. After an error it is poisoned (every later call
/// returns [`ProtoError::Poisoned`]): send the error frame and close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: AlignedVec<FRAME_ALIGN>,
    /// Start of the first unconsumed frame (always a multiple of `FRAME_ALIGN`).
    start: usize,
    /// End of the received bytes.
    end: usize,
    max_payload: u32,
    poisoned: bool,
}

impl FrameDecoder {
    /// A decoder accepting payloads up to `max_payload` bytes (capped at [`MAX_PAYLOAD_HARD`];
    /// see [`crate::limits`] for the defaults).
    pub fn new(max_payload: u32) -> FrameDecoder {
        FrameDecoder {
            buf: AlignedVec::new(),
            start: 0,
            end: 0,
            max_payload: max_payload.min(MAX_PAYLOAD_HARD),
            poisoned: false,
        }
    }

    /// The payload limit in force.
    pub fn max_payload(&self) -> u32 {
        self.max_payload
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Moves the unconsumed bytes to the front of the buffer (keeps alignment: `start` is a
    /// frame boundary, a multiple of `FRAME_ALIGN`).
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.as_mut_slice().copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        let spare = self.read_buf(bytes.len());
        spare[..bytes.len()].copy_from_slice(bytes);
        self.filled(bytes.len());
    }

    /// A writable area of at least `min` bytes after the received ones, for reading from a socket
    /// straight into the decoder; report how much was written with [`FrameDecoder::filled`].
    pub fn read_buf(&mut self, min: usize) -> &mut [u8] {
        self.compact();
        if self.buf.len() < self.end + min {
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf.as_mut_slice()[self.end..]
    }

    /// Marks `n` bytes of the area returned by [`FrameDecoder::read_buf`] as received.
    ///
    /// # Panics
    /// If `n` is larger than that area (a caller bug, not peer input).
    pub fn filled(&mut self, n: usize) {
        assert!(self.end + n <= self.buf.len(), "filled past read_buf");
        self.end += n;
    }

    /// Returns the next complete frame, or `NeedMore` with at least how many bytes are missing.
    pub fn decode(&mut self) -> Result<Decoded<'_>, ProtoError> {
        if self.poisoned {
            return Err(ProtoError::Poisoned);
        }
        let step = match decode_frame(&self.buf[self.start..self.end], self.max_payload) {
            Ok(Decoded::Frame(f)) => Ok((f.header, f.wire_len())),
            Ok(Decoded::NeedMore(n)) => return Ok(Decoded::NeedMore(n)),
            Err(e) => Err(e),
        };
        match step {
            Ok((header, wire)) => {
                let at = self.start + HEADER_LEN;
                self.start += wire;
                if self.start == self.end {
                    // Everything consumed: the next bytes go to the front. The frame's bytes stay
                    // in place until the next feed/read_buf, which the borrow below prevents.
                    self.start = 0;
                    self.end = 0;
                }
                let payload = &self.buf[at..at + header.payload_len as usize];
                Ok(Decoded::Frame(Frame { header, payload }))
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opcode::Method;

    #[test]
    fn wire_len_pads_to_16() {
        assert_eq!(wire_len(0), 32);
        assert_eq!(wire_len(1), 48);
        assert_eq!(wire_len(16), 48);
        assert_eq!(wire_len(17), 64);
    }

    /// The byte layout documented in net/PROTOCOL.md §1, checked field by field.
    #[test]
    fn header_layout_matches_the_document() {
        let mut out = Vec::new();
        let op = Opcode::Response(Method::Watch);
        encode_frame(&mut out, op, FLAG_MORE, 0x0102_0304_0506_0708, b"abc").unwrap();
        assert_eq!(out.len(), 48);
        assert_eq!(&out[0..4], b"KEEL");
        assert_eq!(out[4], 1);
        assert_eq!(out[5], 0x01);
        assert_eq!(&out[6..8], &[0x10, 0x80]);
        assert_eq!(&out[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&out[16..20], &[3, 0, 0, 0]);
        assert_eq!(&out[20..28], &[0; 8]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[..28]), b"abc");
        assert_eq!(&out[28..32], &crc.to_le_bytes());
        assert_eq!(&out[32..35], b"abc");
        assert_eq!(&out[35..48], &[0; 13]);
    }

    #[test]
    fn decoder_compacts_by_whole_frames() {
        let mut wire = Vec::new();
        for id in 0..3 {
            encode_frame(&mut wire, Opcode::Error, 0, id, &[id as u8; 5]).unwrap();
        }
        let mut dec = FrameDecoder::new(1024);
        dec.feed(&wire[..60]);
        let Ok(Decoded::Frame(f)) = dec.decode() else {
            panic!()
        };
        assert_eq!(f.header.request_id, 0);
        assert!(matches!(dec.decode(), Ok(Decoded::NeedMore(_))));
        dec.feed(&wire[60..]);
        assert_eq!(dec.start, 0, "compacted on feed");
        for id in 1..3 {
            let Ok(Decoded::Frame(f)) = dec.decode() else {
                panic!()
            };
            assert_eq!(f.header.request_id, id);
            assert_eq!(f.payload, &[id as u8; 5]);
            assert_eq!(f.payload.as_ptr() as usize & (FRAME_ALIGN - 1), 0);
        }
        assert_eq!(dec.buffered(), 0);
    }
}
