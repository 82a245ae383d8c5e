//! Protocol limits enforced at the gateway (D1). Key/value sizes and ops per txn are the server's
//! business (etcd's `--max-request-bytes`, `--max-txn-ops`); here only what protects the decoder.

/// Default maximum request payload the server's decoder accepts: etcd's default
/// `--max-request-bytes` (1.5 MiB) plus room for the message's own overhead.
pub const DEFAULT_MAX_REQUEST_PAYLOAD: u32 = 2 * 1024 * 1024;

/// Default maximum response payload the client's decoder accepts (large range results).
pub const DEFAULT_MAX_RESPONSE_PAYLOAD: u32 = 64 * 1024 * 1024;

/// Hard cap on any payload length, whatever the decoder is configured with (1 GiB).
pub const MAX_PAYLOAD_HARD: u32 = 1 << 30;

/// Maximum nesting of txns (`RequestOp::Txn` inside a `TxnRequest`, and the same for responses):
/// a top-level txn is depth 1. Validation fails beyond it, before recursing, so a malicious payload
/// cannot exhaust the stack. etcd has no such limit, but its `--max-txn-ops` (128 by default)
/// bounds real use far below this.
pub const MAX_TXN_DEPTH: usize = 64;
