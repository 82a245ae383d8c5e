//! keel's cross-crate test support.
pub mod etcd;
