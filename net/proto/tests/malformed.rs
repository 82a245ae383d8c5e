//! Malformed input: truncation at every byte gives `NeedMore`, corrupting any byte gives an error
//! or `NeedMore` (never a panic, never a frame), oversized lengths are refused from the header
//! alone, unknown opcodes/flags/versions are refused, payloads that fail validation (garbage,
//! wrong message for the opcode, txns nested too deep) give typed errors.

mod common;

use common::*;
use keel_proto::frame::{FRAME_ALIGN, MAGIC, VERSION};
use keel_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

const MAX: u32 = limits::DEFAULT_MAX_REQUEST_PAYLOAD;

/// A handful of frames of different shapes (empty-ish, nested txn, stream item, error).
fn sample_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let reqs = [
        Request::Status(StatusRequest {}),
        Request::Put(PutRequest {
            key: b"key".to_vec(),
            value: b"value".to_vec(),
            lease: 7,
            prev_kv: true,
            ..Default::default()
        }),
        Request::Txn(nested_txn(3)),
        Request::LeaseKeepAlive(LeaseKeepAliveRequest { id: 77 }),
        Request::Watch(WatchRequest::Create(WatchCreateRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            filters: vec![FilterType::NoDelete],
            ..Default::default()
        })),
    ];
    for (i, r) in reqs.iter().enumerate() {
        let mut w = Vec::new();
        encode_request(&mut w, 1000 + i as u64, i == 3, r).unwrap(); // 3: keepalive, MORE
        frames.push(w);
    }
    let mut w = Vec::new();
    encode_error(&mut w, 5, ErrorResponse::new(ErrorCode::LeaseNotFound)).unwrap();
    frames.push(w);
    frames
}

/// Raw header with a correct CRC over `payload`, for crafting frames the encoder refuses to make.
fn raw_frame(version: u8, flags: u8, opcode: u16, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = version;
    h[5] = flags;
    h[6..8].copy_from_slice(&opcode.to_le_bytes());
    h[8..16].copy_from_slice(&id.to_le_bytes());
    h[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..28]), payload);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(payload);
    h.resize(h.len().next_multiple_of(FRAME_ALIGN), 0);
    h
}

#[test]
fn truncation_at_every_byte_needs_more() {
    for frame in sample_frames() {
        for cut in 0..frame.len() {
            match decode_frame(&frame[..cut], MAX) {
                Ok(Decoded::NeedMore(n)) => assert!(n > 0 && n <= frame.len() - cut),
                other => panic!("prefix of {cut}/{} bytes gave {other:?}", frame.len()),
            }
        }
        // Byte by byte through the incremental decoder: NeedMore until the last byte.
        let mut dec = FrameDecoder::new(MAX);
        for (i, b) in frame.iter().enumerate() {
            dec.feed(std::slice::from_ref(b));
            let last = i + 1 == frame.len();
            match dec.decode() {
                Ok(Decoded::NeedMore(_)) if !last => {}
                Ok(Decoded::Frame(f)) if last => {
                    f.decode_request()
                        .map(drop)
                        .or_else(|_| f.decode_response().map(drop))
                        .unwrap();
                }
                other => panic!("after byte {i}: {other:?}"),
            }
        }
    }
}

#[test]
fn corrupting_any_byte_is_never_accepted() {
    let mut checked = 0;
    for frame in sample_frames() {
        for at in 0..frame.len() {
            for mask in [0x01u8, 0x80, 0xFF, 0x5A] {
                let mut bad = frame.clone();
                bad[at] ^= mask;
                match decode_frame(&bad, MAX) {
                    Err(_) | Ok(Decoded::NeedMore(_)) => {}
                    Ok(Decoded::Frame(f)) => {
                        panic!("byte {at} ^ {mask:#04x} accepted as {:?}", f.header)
                    }
                }
                let mut dec = FrameDecoder::new(MAX);
                dec.feed(&bad);
                assert!(!matches!(dec.decode(), Ok(Decoded::Frame(_))));
                checked += 1;
            }
        }
    }
    assert!(checked > 1000);
}

#[test]
fn oversized_length_is_refused_from_the_header_alone() {
    for len in [MAX + 1, u32::MAX, limits::MAX_PAYLOAD_HARD + 1] {
        let mut h = raw_frame(VERSION, 0, Opcode::Request(Method::Put).to_u16(), 1, &[]);
        h.truncate(HEADER_LEN);
        h[16..20].copy_from_slice(&len.to_le_bytes());
        // Only the 32 header bytes: the decoder must not wait for (or buffer) the payload.
        assert!(matches!(
            decode_frame(&h, MAX),
            Err(ProtoError::PayloadTooLarge { .. })
        ));
        let mut dec = FrameDecoder::new(MAX);
        dec.feed(&h);
        assert!(matches!(
            dec.decode(),
            Err(ProtoError::PayloadTooLarge { .. })
        ));
        assert_eq!(dec.buffered(), HEADER_LEN);
        // Poisoned afterwards.
        assert_eq!(dec.decode().unwrap_err(), ProtoError::Poisoned);
    }
    // A decoder configured above the hard cap is capped.
    assert_eq!(
        FrameDecoder::new(u32::MAX).max_payload(),
        limits::MAX_PAYLOAD_HARD
    );
}

#[test]
fn header_fields_are_checked() {
    let payload = {
        let mut w = Vec::new();
        encode_request(&mut w, 1, false, &Request::Status(StatusRequest {})).unwrap();
        let len = u32::from_le_bytes(w[16..20].try_into().unwrap()) as usize;
        w[HEADER_LEN..HEADER_LEN + len].to_vec()
    };
    let status = Opcode::Request(Method::Status).to_u16();
    let ok = raw_frame(VERSION, 0, status, 1, &payload);
    assert!(matches!(decode_frame(&ok, MAX), Ok(Decoded::Frame(_))));

    let unknown_opcode = raw_frame(VERSION, 0, 0x0999, 1, &payload);
    assert_eq!(
        decode_frame(&unknown_opcode, MAX),
        Err(ProtoError::UnknownOpcode(0x0999))
    );
    let unknown_response_opcode = raw_frame(VERSION, 0, 0x8999, 1, &payload);
    assert_eq!(
        decode_frame(&unknown_response_opcode, MAX),
        Err(ProtoError::UnknownOpcode(0x8999))
    );
    assert_eq!(
        decode_frame(&raw_frame(2, 0, status, 1, &payload), MAX),
        Err(ProtoError::UnsupportedVersion(2))
    );
    assert_eq!(
        decode_frame(&raw_frame(VERSION, 0x02, status, 1, &payload), MAX),
        Err(ProtoError::UnknownFlags(0x02))
    );
    let mut magic = ok.clone();
    magic[0] = b'X';
    assert!(matches!(
        decode_frame(&magic, MAX),
        Err(ProtoError::BadMagic(_))
    ));
    let mut reserved = ok.clone();
    reserved[24] = 1;
    assert_eq!(
        decode_frame(&reserved, MAX),
        Err(ProtoError::ReservedNotZero)
    );
    let mut crc = ok.clone();
    crc[HEADER_LEN] ^= 1;
    assert!(matches!(
        decode_frame(&crc, MAX),
        Err(ProtoError::ChecksumMismatch { .. })
    ));
    if ok.len() > HEADER_LEN + payload.len() {
        let mut pad = ok.clone();
        *pad.last_mut().unwrap() = 1;
        assert_eq!(decode_frame(&pad, MAX), Err(ProtoError::BadPadding));
    }
}

#[test]
fn payload_must_match_the_opcode() {
    let mut w = Vec::new();
    encode_request(&mut w, 1, false, &Request::Status(StatusRequest {})).unwrap();
    let len = u32::from_le_bytes(w[16..20].try_into().unwrap()) as usize;
    let payload = &w[HEADER_LEN..HEADER_LEN + len];
    // Same payload under the Put opcode: a valid archive, but not a Put.
    let lying = raw_frame(
        VERSION,
        0,
        Opcode::Request(Method::Put).to_u16(),
        1,
        payload,
    );
    let mut dec = FrameDecoder::new(MAX);
    dec.feed(&lying);
    let Ok(Decoded::Frame(f)) = dec.decode() else {
        panic!()
    };
    assert!(matches!(
        f.access_request(),
        Err(ProtoError::OpcodeMismatch { .. })
    ));
    assert!(matches!(
        f.decode_request(),
        Err(ProtoError::OpcodeMismatch { .. })
    ));
}

#[test]
fn misaligned_payload_is_refused_for_zero_copy_and_copied_for_owned() {
    let req = Request::Put(PutRequest {
        key: b"k".to_vec(),
        ..Default::default()
    });
    let mut w = Vec::new();
    encode_request(&mut w, 1, false, &req).unwrap();
    let len = u32::from_le_bytes(w[16..20].try_into().unwrap()) as usize;
    let mut shifted = rkyv::util::AlignedVec::<16>::new();
    shifted.push(0);
    shifted.extend_from_slice(&w[HEADER_LEN..HEADER_LEN + len]);
    let off = &shifted[1..];
    let op = Opcode::Request(Method::Put);
    assert_eq!(
        access_request(op, off).unwrap_err(),
        ProtoError::Misaligned(PAYLOAD_ALIGN)
    );
    assert_eq!(decode_request(op, off).unwrap(), req);
    let aligned = AlignedBytes::new(off);
    assert!(matches!(aligned, AlignedBytes::Owned(_)));
    assert!(access_request(op, &aligned).is_ok());
}

#[test]
fn nesting_is_limited() {
    let op = Opcode::Request(Method::Txn);
    for depth in [1, limits::MAX_TXN_DEPTH] {
        let mut w = Vec::new();
        let req = Request::Txn(nested_txn(depth));
        encode_request(&mut w, 1, false, &req).unwrap();
        let (_, payload) = split(&w);
        assert_eq!(decode_request(op, &payload).unwrap(), req, "depth {depth}");
    }
    for depth in [limits::MAX_TXN_DEPTH + 1, 300] {
        let mut w = Vec::new();
        encode_request(&mut w, 1, false, &Request::Txn(nested_txn(depth))).unwrap();
        let (_, payload) = split(&w);
        let err = decode_request(op, &payload).unwrap_err();
        assert!(
            matches!(&err, ProtoError::InvalidPayload(m) if m.contains("nesting")),
            "depth {depth}: {err:?}"
        );
        // The per-thread depth count is released after a failure: a legal txn still passes.
        let mut w = Vec::new();
        encode_request(&mut w, 1, false, &Request::Txn(nested_txn(2))).unwrap();
        let (_, payload) = split(&w);
        assert!(decode_request(op, &payload).is_ok());
    }
    // The same limit guards Raft entries (D1).
    let deep = InternalRequest {
        header: InternalHeader {
            id: 1,
            member_id: 2,
        },
        body: InternalBody::Txn(nested_txn(limits::MAX_TXN_DEPTH + 1)),
    };
    assert!(InternalRequest::decode(&deep.encode().unwrap()).is_err());
}

fn split(frame: &[u8]) -> (FrameHeader, Vec<u8>) {
    let Ok(Decoded::Frame(f)) = decode_frame(frame, MAX) else {
        panic!()
    };
    (f.header, f.payload.to_vec())
}

#[test]
fn internal_envelope_is_checked() {
    let req = InternalRequest {
        header: InternalHeader {
            id: 9,
            member_id: 3,
        },
        body: InternalBody::LeaseRevoke(LeaseRevokeRequest { id: 3 }),
    };
    let good = req.encode().unwrap();
    assert_eq!(InternalRequest::decode(&good).unwrap(), req);
    for at in 0..16 {
        let mut bad = good.to_vec();
        bad[at] ^= 0x40;
        assert!(InternalRequest::decode(&bad).is_err(), "envelope byte {at}");
    }
    assert!(InternalRequest::decode(&good[..10]).is_err());
    assert!(InternalRequest::decode(&[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// A well-formed frame (valid CRC) around arbitrary payload bytes: validation gives a typed
    /// result, never a panic.
    #[test]
    fn garbage_payload_under_a_valid_header(
        payload in vec(any::<u8>(), 0..256),
        method in proptest::sample::select(Method::ALL),
        response in any::<bool>(),
    ) {
        let op = if response { Opcode::Response(method) } else { Opcode::Request(method) };
        let frame = raw_frame(VERSION, 0, op.to_u16(), 1, &payload);
        let mut dec = FrameDecoder::new(MAX);
        dec.feed(&frame);
        let Ok(Decoded::Frame(f)) = dec.decode() else { panic!("frame refused") };
        let _ = f.access_request();
        let _ = f.access_response();
        let _ = f.decode_request();
        let _ = f.decode_response();
        let _ = InternalRequest::decode(&payload);
    }

    /// Arbitrary bytes into the decoder: errors or frames or NeedMore, never a panic.
    #[test]
    fn arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
        let mut dec = FrameDecoder::new(MAX);
        dec.feed(&bytes);
        while let Ok(Decoded::Frame(f)) = dec.decode() {
            let _ = f.decode_request();
        }
    }

    /// Flipping one random bit of a random valid request frame is never accepted as a frame.
    #[test]
    fn random_bit_flip_of_generated_frames(req in request(), pos in any::<prop::sample::Index>(),
                                           bit in 0u8..8) {
        let mut w = Vec::new();
        encode_request(&mut w, 3, false, &req).unwrap();
        let at = pos.index(w.len());
        w[at] ^= 1 << bit;
        prop_assert!(!matches!(decode_frame(&w, MAX), Ok(Decoded::Frame(_))));
    }
}
