#!/usr/bin/env bash
# Runs every check a change must pass: formatting, clippy (warnings are errors), the test suites.
# Installs what the tests need on a fresh machine (only the Rust toolchain is assumed).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The differential tests start a real etcd 3.4 (Debian's etcd-server) and compare keelctl with
# etcdctl (etcd-client); etcd-client's crate build needs protoc; jemalloc's (keel, keel-bench)
# needs make and a C compiler. Installed only where missing (CI runs as root).
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null || ! command -v protoc >/dev/null \
    || ! command -v make >/dev/null || ! command -v cc >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y etcd-server etcd-client protobuf-compiler make gcc
fi
for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" || true
done
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The client library's tests start real `keel` processes from target/debug/keel (another
# package's binary, which `cargo test` does not build for them).
cargo build --locked -p keel-server --bin keel
cargo test --workspace --locked
