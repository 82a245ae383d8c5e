//! keel's cross-crate test support: the etcd process harness and shared helpers.
pub mod etcd;
pub mod support;
