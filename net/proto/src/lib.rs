//! keel's binary protocol (see net/PROTOCOL.md): length-prefixed frames with request ids and
//! messages that mirror etcd's v3 API field for field. Runtime-agnostic: no I/O here, only
//! encoding, decoding and validation of untrusted bytes (D1).
