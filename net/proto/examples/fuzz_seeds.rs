//! Writes seed inputs for the `decode_frame` fuzz target (net/proto/fuzz) into the directory given
//! as the first argument: generated messages of every kind, as raw frame streams and as fixed-up
//! payloads (see the target's mode byte). Deterministic (fixed proptest seed).
//!
//! `cargo run -p keel-proto --example fuzz_seeds -- net/proto/fuzz/corpus/decode_frame`

#[path = "../tests/common/mod.rs"]
mod common;

use keel_proto::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: fuzz_seeds <corpus dir>");
    std::fs::create_dir_all(&dir).expect("create corpus dir");
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let mut n = 0;
    let mut write = |bytes: &[u8]| {
        std::fs::write(format!("{dir}/seed-{n:04}"), bytes).expect("write seed");
        n += 1;
    };
    for i in 0..150u64 {
        let req = common::request().new_tree(&mut runner).unwrap().current();
        let resp = common::response().new_tree(&mut runner).unwrap().current();
        let internal = common::internal_request()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        // Raw mode: mode byte (even; chunk size varies), then a stream of two frames.
        let mut raw = vec![((i % 8) as u8) << 1];
        encode_request(&mut raw, i, false, &req).unwrap();
        encode_response(&mut raw, i, false, &resp).unwrap();
        write(&raw);
        // Fixed-up mode: 1, opcode, payload.
        for (opcode, payload) in [
            (
                Opcode::Request(req.method()),
                rkyv::to_bytes::<rkyv::rancor::Error>(&req).unwrap(),
            ),
            (
                resp.opcode(),
                rkyv::to_bytes::<rkyv::rancor::Error>(&resp).unwrap(),
            ),
        ] {
            let mut seed = vec![1];
            seed.extend_from_slice(&opcode.to_u16().to_le_bytes());
            seed.extend_from_slice(&payload);
            write(&seed);
        }
        // An internal request as a request payload (the target tries the Raft-entry decoder too).
        let mut seed = vec![1];
        seed.extend_from_slice(&Opcode::Request(Method::Put).to_u16().to_le_bytes());
        seed.extend_from_slice(&internal.encode().unwrap());
        write(&seed);
    }
    println!("wrote {n} seeds to {dir}");
}
