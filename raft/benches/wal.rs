//! WAL benchmark (placeholder until the measurement harness lands).
fn main() {}
