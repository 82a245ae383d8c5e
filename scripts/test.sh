#!/usr/bin/env bash
# Runs every check a change must pass: formatting, clippy (warnings are errors), the test suites.
# Installs what the tests need on a fresh machine (only the Rust toolchain is assumed).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The differential tests start a real etcd 3.4 (Debian's etcd-server); etcd-client's build needs
# protoc. Installed only where missing (CI runs as root).
if ! command -v etcd >/dev/null || ! command -v protoc >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y etcd-server protobuf-compiler
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
