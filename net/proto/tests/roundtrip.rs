//! Round trips of every message type through frames (proptest over generated messages): the
//! owned form survives encode → decode, the zero-copy archived form is the same message, and a
//! stream of frames fed in arbitrary chunks comes out whole and in order.

mod common;

use common::*;
use keel_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// Decodes exactly one frame from `wire` through a fresh decoder, checking alignment.
fn one_frame(wire: &[u8], max: u32) -> (FrameHeader, Vec<u8>) {
    let mut dec = FrameDecoder::new(max);
    dec.feed(wire);
    let Ok(Decoded::Frame(frame)) = dec.decode() else {
        panic!("no frame decoded");
    };
    assert_eq!(frame.payload.as_ptr() as usize % PAYLOAD_ALIGN, 0);
    assert_eq!(frame.wire_len(), wire.len());
    (frame.header, frame.payload.to_vec())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn request_round_trip(req in request(), id in any::<u64>(), more in any::<bool>()) {
        let more = more && Opcode::Request(req.method()).may_stream();
        let mut wire = Vec::new();
        encode_request(&mut wire, id, more, &req).unwrap();
        prop_assert_eq!(wire.len() % 16, 0);
        let mut dec = FrameDecoder::new(limits::DEFAULT_MAX_REQUEST_PAYLOAD);
        dec.feed(&wire);
        let Ok(Decoded::Frame(frame)) = dec.decode() else { panic!("no frame") };
        prop_assert_eq!(frame.header.request_id, id);
        prop_assert_eq!(frame.header.more(), more);
        prop_assert_eq!(frame.header.opcode, Opcode::Request(req.method()));
        let archived = frame.access_request().unwrap();
        prop_assert_eq!(archived.method(), req.method());
        let from_archive: Request =
            rkyv::deserialize::<Request, rkyv::rancor::Error>(archived).unwrap();
        prop_assert_eq!(&from_archive, &req);
        prop_assert_eq!(frame.decode_request().unwrap(), req.clone());
        // Serialized in place, the payload is byte for byte what rkyv lays out in its own
        // aligned buffer.
        let reference = rkyv::to_bytes::<rkyv::rancor::Error>(&req).unwrap();
        prop_assert_eq!(frame.payload, reference.as_slice());
        // The wrong direction is refused.
        prop_assert!(matches!(frame.access_response(), Err(ProtoError::UnexpectedOpcode(_))));
        prop_assert!(matches!(dec.decode(), Ok(Decoded::NeedMore(HEADER_LEN))));
    }

    #[test]
    fn response_round_trip(resp in response(), id in any::<u64>(), more in any::<bool>(),
                           prefix in proptest::collection::vec(any::<u8>(), 0..3)) {
        let more = more && resp.opcode().may_stream();
        // Frames are appended after whatever `out` holds (here whole 16-byte blocks).
        let mut wire = vec![0u8; 16 * prefix.len()];
        encode_response(&mut wire, id, more, &resp).unwrap();
        let wire = wire.split_off(16 * prefix.len());
        let (header, payload) = one_frame(&wire, limits::DEFAULT_MAX_RESPONSE_PAYLOAD);
        prop_assert_eq!(header.request_id, id);
        prop_assert_eq!(header.more(), more);
        prop_assert_eq!(header.opcode, resp.opcode());
        // `payload` is a plain Vec: the owned decode copes with any alignment.
        prop_assert_eq!(decode_response(header.opcode, &payload).unwrap(), resp.clone());
        let aligned = AlignedBytes::new(&payload);
        let archived = access_response(header.opcode, &aligned).unwrap();
        prop_assert_eq!(archived.opcode(), resp.opcode());
        prop_assert!(matches!(
            access_request(header.opcode, &aligned),
            Err(ProtoError::UnexpectedOpcode(_))
        ));
    }

    #[test]
    fn internal_round_trip(req in internal_request()) {
        let bytes = req.encode().unwrap();
        let archived = InternalRequest::access(&bytes).unwrap();
        prop_assert_eq!(archived.header.id.to_native(), req.header.id);
        prop_assert_eq!(InternalRequest::decode(&bytes).unwrap(), req.clone());
        // Misaligned copy: `access` refuses, `decode` copies.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let off = &shifted[1..];
        if (off.as_ptr() as usize) & (PAYLOAD_ALIGN - 1) != 0 {
            prop_assert!(matches!(InternalRequest::access(off), Err(ProtoError::Misaligned(_))));
        }
        prop_assert_eq!(InternalRequest::decode(off).unwrap(), req);
    }

    /// Several frames, fed in arbitrary chunk sizes, come out whole, in order, aligned.
    #[test]
    fn stream_in_chunks(reqs in vec(request(), 1..6), cuts in vec(1usize..64, 1..40)) {
        let mut wire = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            encode_request(&mut wire, i as u64, false, r).unwrap();
        }
        let mut dec = FrameDecoder::new(limits::DEFAULT_MAX_REQUEST_PAYLOAD);
        let mut got = Vec::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < wire.len() {
            let n = (*cut.next().unwrap()).min(wire.len() - at);
            // Half the time through read_buf/filled, as a socket read would.
            if n % 2 == 0 {
                dec.read_buf(n)[..n].copy_from_slice(&wire[at..at + n]);
                dec.filled(n);
            } else {
                dec.feed(&wire[at..at + n]);
            }
            at += n;
            loop {
                match dec.decode().unwrap() {
                    Decoded::Frame(f) => {
                        prop_assert_eq!(f.payload.as_ptr() as usize % PAYLOAD_ALIGN, 0);
                        got.push((f.header.request_id, f.access_request().map(|a| a.method())
                            .unwrap(), f.decode_request().unwrap()));
                    }
                    Decoded::NeedMore(k) => {
                        prop_assert!(k > 0);
                        break;
                    }
                }
            }
        }
        prop_assert_eq!(got.len(), reqs.len());
        for (i, (id, method, req)) in got.into_iter().enumerate() {
            prop_assert_eq!(id, i as u64);
            prop_assert_eq!(method, reqs[i].method());
            prop_assert_eq!(&req, &reqs[i]);
        }
        prop_assert_eq!(dec.buffered(), 0);
    }
}

#[test]
fn encode_failure_leaves_the_buffer_alone() {
    let mut out = vec![1, 2, 3];
    assert!(encode_frame(&mut out, Opcode::Error, 0x80, 1, b"x").is_err());
    assert_eq!(out, [1, 2, 3]);
    let err = Response::Error(ErrorResponse::new(ErrorCode::NoLeader));
    assert!(encode_response(&mut out, 1, true, &err).is_err());
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn only_streams_carry_more() {
    let mut out = Vec::new();
    let put = Request::Put(PutRequest::default());
    assert!(encode_request(&mut out, 1, true, &put).is_err());
    assert!(out.is_empty());
    encode_request(&mut out, 1, false, &put).unwrap();
    let ka = Request::LeaseKeepAlive(LeaseKeepAliveRequest { id: 5 });
    encode_request(&mut out, 2, true, &ka).unwrap();
    for resp in [
        Response::Watch(WatchResponse::default()),
        Response::LeaseKeepAlive(LeaseKeepAliveResponse::default()),
        Response::Snapshot(SnapshotResponse::default()),
    ] {
        encode_response(&mut out, 3, true, &resp).unwrap();
    }
    let range = Response::Range(RangeResponse::default());
    assert!(encode_response(&mut out, 4, true, &range).is_err());
    // A frame that sets MORE where it may not is refused by the decoder, from the header.
    let mut bad = Vec::new();
    encode_request(&mut bad, 9, false, &put).unwrap();
    bad[5] |= FLAG_MORE;
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&bad[..28]),
        &bad[HEADER_LEN..HEADER_LEN + u32::from_le_bytes(bad[16..20].try_into().unwrap()) as usize],
    );
    bad[28..32].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode_frame(&bad, 1024).unwrap_err(),
        ProtoError::UnexpectedMore(Opcode::Request(Method::Put).to_u16())
    );
}

#[test]
fn every_method_round_trips_its_opcode() {
    for &m in Method::ALL {
        for op in [Opcode::Request(m), Opcode::Response(m)] {
            assert_eq!(Opcode::from_u16(op.to_u16()), Some(op));
        }
        assert!(!m.rpc_name().is_empty());
    }
    assert_eq!(Opcode::from_u16(0xFFFF), Some(Opcode::Error));
    assert_eq!(Opcode::from_u16(0), None);
    assert_eq!(Opcode::from_u16(0x8000), None);
}

#[test]
fn error_frame_round_trip() {
    let mut wire = Vec::new();
    encode_error(&mut wire, 42, ErrorResponse::new(ErrorCode::Compacted)).unwrap();
    let (header, payload) = one_frame(&wire, 1024);
    assert_eq!(header.opcode, Opcode::Error);
    assert!(!header.more());
    let Response::Error(e) = decode_response(header.opcode, &payload).unwrap() else {
        panic!("not an error response");
    };
    assert_eq!(e.error_code(), Some(ErrorCode::Compacted));
    assert_eq!(
        e.message,
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(e.grpc_code(), GrpcCode::OutOfRange);
    // An error frame always ends its stream.
    assert!(encode_response(
        &mut Vec::new(),
        1,
        true,
        &Response::Error(ErrorResponse::new(ErrorCode::NoLeader))
    )
    .is_err());
}

#[test]
fn error_codes_table() {
    let mut seen = std::collections::HashSet::new();
    for &c in ErrorCode::ALL {
        assert!(seen.insert(c as u16), "duplicate wire code {}", c as u16);
        assert_eq!(ErrorCode::from_u16(c as u16), Some(c));
        if c != ErrorCode::MalformedFrame {
            assert!(c.message().starts_with("etcdserver: "), "{c:?}");
        }
    }
    let expect = [
        (
            ErrorCode::FutureRev,
            "etcdserver: mvcc: required revision is a future revision",
            GrpcCode::OutOfRange,
        ),
        (
            ErrorCode::NoSpace,
            "etcdserver: mvcc: database space exceeded",
            GrpcCode::ResourceExhausted,
        ),
        (
            ErrorCode::NoLeader,
            "etcdserver: no leader",
            GrpcCode::Unavailable,
        ),
        (
            ErrorCode::LeaderChanged,
            "etcdserver: leader changed",
            GrpcCode::Unavailable,
        ),
        (
            ErrorCode::Timeout,
            "etcdserver: request timed out",
            GrpcCode::Unavailable,
        ),
        (
            ErrorCode::TooManyRequests,
            "etcdserver: too many requests",
            GrpcCode::ResourceExhausted,
        ),
        (
            ErrorCode::DuplicateKey,
            "etcdserver: duplicate key given in txn request",
            GrpcCode::InvalidArgument,
        ),
        (
            ErrorCode::TooManyOps,
            "etcdserver: too many operations in txn request",
            GrpcCode::InvalidArgument,
        ),
        (
            ErrorCode::RequestTooLarge,
            "etcdserver: request is too large",
            GrpcCode::InvalidArgument,
        ),
        (
            ErrorCode::MemberNotFound,
            "etcdserver: member not found",
            GrpcCode::NotFound,
        ),
        (
            ErrorCode::LeaseNotFound,
            "etcdserver: requested lease not found",
            GrpcCode::NotFound,
        ),
        (
            ErrorCode::LeaseExist,
            "etcdserver: lease already exists",
            GrpcCode::FailedPrecondition,
        ),
        (
            ErrorCode::KeyNotFound,
            "etcdserver: key not found",
            GrpcCode::InvalidArgument,
        ),
        (
            ErrorCode::MemberExist,
            "etcdserver: member ID already exist",
            GrpcCode::FailedPrecondition,
        ),
        (
            ErrorCode::PeerUrlExist,
            "etcdserver: Peer URLs already exists",
            GrpcCode::FailedPrecondition,
        ),
        (
            ErrorCode::Unhealthy,
            "etcdserver: unhealthy cluster",
            GrpcCode::Unavailable,
        ),
        (
            ErrorCode::Corrupt,
            "etcdserver: corrupt cluster",
            GrpcCode::DataLoss,
        ),
    ];
    for (code, msg, grpc) in expect {
        assert_eq!(code.message(), msg);
        assert_eq!(code.grpc_code(), grpc);
    }
    let unknown = ErrorResponse {
        code: 9999,
        message: "x".into(),
    };
    assert_eq!(unknown.error_code(), None);
    assert_eq!(unknown.grpc_code(), GrpcCode::Unknown);
}
