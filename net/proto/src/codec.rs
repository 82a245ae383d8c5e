//! Payload encoding and validated access: requests and responses as rkyv archives inside frames.
//!
//! Server side: [`Frame::access_request`] validates the payload (rkyv `access` with bytecheck,
//! depth limit) and returns `&ArchivedRequest` in place, zero-copy. Client side:
//! [`Frame::decode_response`] deserializes into an owned [`Response`]. Alignment: rkyv 0.8 needs
//! the archive at an aligned address; frames from a [`crate::FrameDecoder`] always are. For bytes
//! from elsewhere, the `access_*` functions return [`ProtoError::Misaligned`] rather than copy
//! (a zero-copy path must not silently copy); wrap such bytes in [`AlignedBytes`] first. The
//! owned `decode_*` functions copy into an aligned buffer themselves when needed.

use std::ops::Deref;

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;
use rkyv::Portable;

use crate::error::{ErrorResponse, ProtoError};
use crate::frame::{begin_frame, finish_frame, Frame, FLAG_MORE, FRAME_ALIGN};
use crate::messages::{ArchivedRequest, ArchivedResponse, Request, Response};
use crate::opcode::Opcode;

/// Alignment the archived payloads need (rkyv's `AlignedVec` default; ≥ any archived field's).
pub const PAYLOAD_ALIGN: usize = FRAME_ALIGN;

/// Bytes guaranteed to sit at a [`PAYLOAD_ALIGN`]-aligned address: borrowed when the input
/// already is, otherwise copied once into an aligned buffer.
#[derive(Debug)]
pub enum AlignedBytes<'a> {
    /// The input was aligned.
    Borrowed(&'a [u8]),
    /// A copy of misaligned input.
    Owned(AlignedVec<PAYLOAD_ALIGN>),
}

impl<'a> AlignedBytes<'a> {
    /// Borrows `bytes` if aligned, else copies them.
    pub fn new(bytes: &'a [u8]) -> AlignedBytes<'a> {
        if is_aligned(bytes) {
            AlignedBytes::Borrowed(bytes)
        } else {
            let mut v = AlignedVec::with_capacity(bytes.len());
            v.extend_from_slice(bytes);
            AlignedBytes::Owned(v)
        }
    }
}

impl Deref for AlignedBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            AlignedBytes::Borrowed(b) => b,
            AlignedBytes::Owned(v) => v.as_slice(),
        }
    }
}

fn is_aligned(bytes: &[u8]) -> bool {
    (bytes.as_ptr() as usize) & (PAYLOAD_ALIGN - 1) == 0
}

/// Validates `bytes` as an archived `T` in place (D1: bounds, pointers, tags, UTF-8, depth).
pub(crate) fn access_archive<T>(bytes: &[u8]) -> Result<&T, ProtoError>
where
    T: Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
{
    if !is_aligned(bytes) {
        return Err(ProtoError::Misaligned(PAYLOAD_ALIGN));
    }
    crate::nested::take_too_deep();
    rkyv::access::<T, rancor::Error>(bytes).map_err(|e| {
        // Release builds lose rancor's message; the nesting refusal is still named.
        if crate::nested::take_too_deep() {
            ProtoError::InvalidPayload(crate::nested::NestingTooDeep.to_string())
        } else {
            ProtoError::InvalidPayload(e.to_string())
        }
    })
}

#[cfg(test)]
pub(crate) fn to_archive<T>(value: &T) -> Result<AlignedVec, ProtoError>
where
    T: for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    rkyv::to_bytes::<rancor::Error>(value).map_err(|e| ProtoError::Encode(e.to_string()))
}

/// rkyv writer appending to a frame under construction; positions count from the payload's start
/// (which is 16-byte aligned in the stream), so the archive is laid out exactly as `to_bytes`
/// would lay it out in an aligned buffer, without the intermediate buffer and copy.
struct PayloadWriter<'a> {
    out: &'a mut Vec<u8>,
    base: usize,
}

impl Positional for PayloadWriter<'_> {
    fn pos(&self) -> usize {
        self.out.len() - self.base
    }
}

impl<E> Writer<E> for PayloadWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Serializes `value` straight into a new frame at the end of `out`.
fn encode_archived<T>(
    out: &mut Vec<u8>,
    opcode: Opcode,
    flags: u8,
    request_id: u64,
    value: &T,
) -> Result<(), ProtoError>
where
    T: for<'a, 'b> rkyv::Serialize<
        HighSerializer<PayloadWriter<'b>, ArenaHandle<'a>, rancor::Error>,
    >,
{
    let start = begin_frame(out, 0);
    let writer = PayloadWriter {
        base: out.len(),
        out,
    };
    if let Err(e) = rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, writer) {
        out.truncate(start);
        return Err(ProtoError::Encode(e.to_string()));
    }
    finish_frame(out, start, opcode, flags, request_id)
}

/// Validates a request payload in place and checks it matches `opcode` (which must be a request
/// opcode). `payload` must be [`PAYLOAD_ALIGN`]-aligned.
pub fn access_request(opcode: Opcode, payload: &[u8]) -> Result<&ArchivedRequest, ProtoError> {
    let Opcode::Request(method) = opcode else {
        return Err(ProtoError::UnexpectedOpcode(opcode.to_u16()));
    };
    let archived = access_archive::<ArchivedRequest>(payload)?;
    if archived.method() != method {
        return Err(ProtoError::OpcodeMismatch {
            opcode: opcode.to_u16(),
            payload: Opcode::Request(archived.method()).to_u16(),
        });
    }
    Ok(archived)
}

/// Validates a response (or error) payload in place and checks it matches `opcode` (a response or
/// the error opcode). `payload` must be [`PAYLOAD_ALIGN`]-aligned.
pub fn access_response(opcode: Opcode, payload: &[u8]) -> Result<&ArchivedResponse, ProtoError> {
    if !opcode.is_from_server() {
        return Err(ProtoError::UnexpectedOpcode(opcode.to_u16()));
    }
    let archived = access_archive::<ArchivedResponse>(payload)?;
    if archived.opcode() != opcode {
        return Err(ProtoError::OpcodeMismatch {
            opcode: opcode.to_u16(),
            payload: archived.opcode().to_u16(),
        });
    }
    Ok(archived)
}

/// Validates and deserializes a request into the owned form (copies if `payload` is misaligned).
pub fn decode_request(opcode: Opcode, payload: &[u8]) -> Result<Request, ProtoError> {
    let aligned = AlignedBytes::new(payload);
    let archived = access_request(opcode, &aligned)?;
    rkyv::deserialize::<Request, rancor::Error>(archived)
        .map_err(|e| ProtoError::InvalidPayload(e.to_string()))
}

/// Validates and deserializes a response into the owned form (copies if `payload` is misaligned).
pub fn decode_response(opcode: Opcode, payload: &[u8]) -> Result<Response, ProtoError> {
    let aligned = AlignedBytes::new(payload);
    let archived = access_response(opcode, &aligned)?;
    rkyv::deserialize::<Response, rancor::Error>(archived)
        .map_err(|e| ProtoError::InvalidPayload(e.to_string()))
}

fn flags(more: bool) -> u8 {
    if more {
        FLAG_MORE
    } else {
        0
    }
}

/// Appends a request frame to `out`. `more`: the client keeps the stream open on this id; only
/// LeaseKeepAlive may (an `Encode` error otherwise, `out` unchanged).
pub fn encode_request(
    out: &mut Vec<u8>,
    request_id: u64,
    more: bool,
    request: &Request,
) -> Result<(), ProtoError> {
    encode_archived(
        out,
        Opcode::Request(request.method()),
        flags(more),
        request_id,
        request,
    )
}

/// Appends a response frame to `out` (its opcode follows the variant; `Response::Error` gives an
/// error frame). `more`: more frames follow on this id; only Watch, LeaseKeepAlive and Snapshot
/// responses may (an `Encode` error otherwise, `out` unchanged).
pub fn encode_response(
    out: &mut Vec<u8>,
    request_id: u64,
    more: bool,
    response: &Response,
) -> Result<(), ProtoError> {
    encode_archived(out, response.opcode(), flags(more), request_id, response)
}

/// Appends an error frame for `request_id` (use request id 0 for a connection-level error, e.g.
/// `proto_error.to_error_response()` before closing).
pub fn encode_error(
    out: &mut Vec<u8>,
    request_id: u64,
    error: ErrorResponse,
) -> Result<(), ProtoError> {
    encode_response(out, request_id, false, &Response::Error(error))
}

impl<'a> Frame<'a> {
    /// Server side: the validated archived request, zero-copy (see [`access_request`]).
    pub fn access_request(&self) -> Result<&'a ArchivedRequest, ProtoError> {
        access_request(self.header.opcode, self.payload)
    }

    /// Client side: the validated archived response, zero-copy (see [`access_response`]).
    pub fn access_response(&self) -> Result<&'a ArchivedResponse, ProtoError> {
        access_response(self.header.opcode, self.payload)
    }

    /// The request, deserialized into the owned form.
    pub fn decode_request(&self) -> Result<Request, ProtoError> {
        decode_request(self.header.opcode, self.payload)
    }

    /// The response, deserialized into the owned form.
    pub fn decode_response(&self) -> Result<Response, ProtoError> {
        decode_response(self.header.opcode, self.payload)
    }
}
