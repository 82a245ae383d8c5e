//! Fuzz target: arbitrary bytes into keel-proto's frame decoder, and every accepted frame's payload
//! through validation (zero-copy access and owned decode, both directions) and the Raft-entry
//! decoder. Never a panic, a stack overflow or a hang; an accepted payload re-encodes to a frame
//! that decodes to the same message.
//!
//! Input byte 0 picks the mode: bit 0 clear = raw (bytes 1.. are the stream, fed to the decoder in
//! chunks of `(byte0 >> 1) + 1` bytes: exercises framing); bit 0 set = fixed-up (bytes 1..3 pick
//! the opcode, the rest is a payload wrapped in a header with a correct CRC: exercises payload
//! validation, which the CRC would otherwise hide from the fuzzer). Seeds for both modes:
//! `cargo run -p keel-proto --example fuzz_seeds -- net/proto/fuzz/corpus/decode_frame`.
#![no_main]

use keel_proto::frame::FRAME_ALIGN;
use keel_proto::*;
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 1 << 20;

fn check_frame(frame: &Frame<'_>) {
    let _ = frame.access_request().map(|a| a.method());
    let _ = frame.access_response().map(|a| a.opcode());
    if let Ok(req) = frame.decode_request() {
        assert_eq!(req.method(), frame.header.opcode_method());
        let mut wire = Vec::new();
        encode_request(
            &mut wire,
            frame.header.request_id,
            frame.header.more(),
            &req,
        )
        .unwrap();
        let Ok(Decoded::Frame(again)) = decode_frame(&wire, u32::MAX) else {
            panic!("re-encoded request does not decode");
        };
        assert_eq!(again.decode_request().unwrap(), req);
    }
    if let Ok(resp) = frame.decode_response() {
        assert_eq!(resp.opcode(), frame.header.opcode);
        let mut wire = Vec::new();
        let more = frame.header.more() && !matches!(resp, Response::Error(_));
        encode_response(&mut wire, frame.header.request_id, more, &resp).unwrap();
        let Ok(Decoded::Frame(again)) = decode_frame(&wire, u32::MAX) else {
            panic!("re-encoded response does not decode");
        };
        assert_eq!(again.decode_response().unwrap(), resp);
    }
    if let Ok(internal) = InternalRequest::decode(frame.payload) {
        let bytes = internal.encode().unwrap();
        assert_eq!(InternalRequest::decode(&bytes).unwrap(), internal);
    }
}

trait OpcodeMethod {
    fn opcode_method(&self) -> Method;
}

impl OpcodeMethod for FrameHeader {
    fn opcode_method(&self) -> Method {
        match self.opcode {
            Opcode::Request(m) | Opcode::Response(m) => m,
            Opcode::Error => panic!("request decoded from an error frame"),
        }
    }
}

fn raw(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(mode >> 1) + 1;
    let mut dec = FrameDecoder::new(MAX);
    for piece in stream.chunks(chunk) {
        dec.feed(piece);
        loop {
            match dec.decode() {
                Ok(Decoded::Frame(f)) => {
                    assert_eq!(f.payload.as_ptr() as usize & (FRAME_ALIGN - 1), 0);
                    check_frame(&f);
                }
                Ok(Decoded::NeedMore(n)) => {
                    assert!(n > 0);
                    break;
                }
                Err(_) => return,
            }
        }
    }
    let _ = InternalRequest::decode(stream);
}

fn fixed_up(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let opcode = u16::from_le_bytes([data[1], data[2]]);
    let payload = &data[3..];
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&frame::MAGIC);
    h[4] = frame::VERSION;
    h[6..8].copy_from_slice(&opcode.to_le_bytes());
    h[8..16].copy_from_slice(&7u64.to_le_bytes());
    h[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..28]), payload);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    let mut wire = h.to_vec();
    wire.extend_from_slice(payload);
    wire.resize(frame::wire_len(payload.len()), 0);
    let mut dec = FrameDecoder::new(MAX);
    dec.feed(&wire);
    match dec.decode() {
        Ok(Decoded::Frame(f)) => check_frame(&f),
        Ok(Decoded::NeedMore(_)) => panic!("a complete frame needs more"),
        Err(ProtoError::UnknownOpcode(_)) | Err(ProtoError::PayloadTooLarge { .. }) => {}
        Err(e) => panic!("a well-formed frame was refused: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    match data.first() {
        Some(b) if b & 1 == 1 => fixed_up(data),
        _ => raw(data),
    }
});
