//! keel's binary protocol (see net/PROTOCOL.md): length-prefixed frames with request ids and
//! messages that mirror etcd's v3 API field for field. Runtime-agnostic: no I/O here, only
//! encoding, decoding and validation of untrusted bytes (D1).
//!
//! - [`frame`]: the 32-byte header, [`encode_frame`], [`decode_frame`], [`FrameDecoder`].
//! - [`messages`]: etcd's messages and the [`Request`]/[`Response`] enums a payload archives.
//! - [`codec`]: [`encode_request`]/[`encode_response`]/[`encode_error`], zero-copy validated
//!   access ([`Frame::access_request`]) and owned decoding ([`Frame::decode_response`]).
//! - [`error`]: [`ProtoError`] (protocol violation) and [`ErrorCode`] (etcd's errors, exact
//!   messages, gRPC codes).
//! - [`internal`]: [`InternalRequest`], the Raft entry payload for client writes.
//!
//! # Example
//!
//! A client encodes a request; the server decodes the frame and matches on the archived request
//! in place; the client decodes the owned response.
//!
//! ```
//! use keel_proto::*;
//!
//! // Client: one request frame.
//! let mut wire = Vec::new();
//! let req = Request::Range(RangeRequest { key: b"foo".to_vec(), ..Default::default() });
//! encode_request(&mut wire, 7, false, &req).unwrap();
//!
//! // Server: decode, validate, dispatch (zero-copy), answer.
//! let mut dec = FrameDecoder::new(limits::DEFAULT_MAX_REQUEST_PAYLOAD);
//! dec.feed(&wire);
//! let mut out = Vec::new();
//! loop {
//!     let frame = match dec.decode() {
//!         Ok(Decoded::Frame(f)) => f,
//!         Ok(Decoded::NeedMore(_)) => break, // read more from the socket
//!         Err(e) => {
//!             // protocol violation: error frame, then close the connection
//!             encode_error(&mut out, 0, e.to_error_response()).unwrap();
//!             break;
//!         }
//!     };
//!     let id = frame.header.request_id;
//!     match frame.access_request() {
//!         Ok(ArchivedRequest::Range(r)) => {
//!             assert_eq!(r.key.as_slice(), b"foo");
//!             let resp = Response::Range(RangeResponse { count: 0, ..Default::default() });
//!             encode_response(&mut out, id, false, &resp).unwrap();
//!         }
//!         Ok(_) => encode_error(&mut out, id, ErrorResponse::new(ErrorCode::NotCapable)).unwrap(),
//!         Err(e) => encode_error(&mut out, id, e.to_error_response()).unwrap(),
//!     }
//! }
//!
//! // Client: owned response.
//! let mut dec = FrameDecoder::new(limits::DEFAULT_MAX_RESPONSE_PAYLOAD);
//! dec.feed(&out);
//! let Ok(Decoded::Frame(frame)) = dec.decode() else { panic!() };
//! assert_eq!(frame.header.request_id, 7);
//! assert!(matches!(frame.decode_response().unwrap(), Response::Range(_)));
//! ```

pub mod codec;
pub mod error;
pub mod frame;
pub mod internal;
pub mod limits;
pub mod messages;
pub mod nested;
pub mod opcode;

pub use codec::{
    access_request, access_response, decode_request, decode_response, encode_error, encode_request,
    encode_response, AlignedBytes, PAYLOAD_ALIGN,
};
pub use error::{ErrorCode, ErrorResponse, GrpcCode, ProtoError};
pub use frame::{
    decode_frame, encode_frame, Decoded, Frame, FrameDecoder, FrameHeader, FLAG_MORE, HEADER_LEN,
};
pub use internal::{
    ArchivedInternalRequest, InternalBody, InternalHeader, InternalRequest, MemberAddEntry,
    MemberAttrsEntry,
};
pub use messages::*;
pub use opcode::{Method, Opcode};
