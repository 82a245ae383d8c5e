//! Opens arbitrary bytes as a database file and walks it: every bucket iterated both ways, every
//! key read, counted, `check`ed, then a write transaction and a reopen. It must never panic (D1).
//!
//! The input is decoded by `tests/support/corrupt.rs` (shared with `tests/btree_corruption.rs`):
//! either the raw file, or XOR patches applied to a valid multi-bucket image, optionally with
//! every checksum recomputed afterwards so the structural validation behind the checksums is
//! reached. Patches on a real image find far more than random bytes, which rarely get past the
//! meta checksum.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/corrupt.rs"]
mod corrupt;

use corrupt::{build_image, decode_input, open_and_walk, Image, Mode, Scratch};

struct Ctx {
    image: Image,
    dir: Scratch,
}

static CTX: OnceLock<Ctx> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let ctx = CTX.get_or_init(|| Ctx {
        image: build_image(),
        dir: Scratch::new("fuzz"),
    });
    let (mode, file) = decode_input(&ctx.image.bytes, data);
    let path = ctx.dir.0.join("db");
    std::fs::write(&path, &file).expect("write the case");
    // Only untouched checksums let us say what the file must contain.
    let states = if mode == Mode::Patch {
        &ctx.image.states[..]
    } else {
        &[]
    };
    let out = open_and_walk(&path, states, true);
    if mode == Mode::Patch {
        assert!(out.wrong.is_empty(), "wrong data served: {:?}", out.wrong);
        assert!(
            !ctx.image.damaged_reachable(&file) || !out.detected.is_empty(),
            "damage to a meta or reachable page went unnoticed"
        );
    }
});
