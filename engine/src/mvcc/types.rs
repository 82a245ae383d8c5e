//! Requests, responses and errors of the key-value API, field for field as etcd's v3 API
//! (`etcdserverpb/rpc.proto`, `mvccpb/kv.proto`), so that the wire protocol and an etcd gRPC front
//! end are pure mappings. Revisions are `i64` as in etcd.

use std::fmt;

/// mvccpb.KeyValue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub value: Vec<u8>,
    pub lease: i64,
}

/// The store's part of etcdserverpb.ResponseHeader (cluster, member and term are the server's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    pub revision: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    None = 0,
    Ascend = 1,
    Descend = 2,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortTarget {
    #[default]
    Key = 0,
    Version = 1,
    Create = 2,
    Mod = 3,
    Value = 4,
}

/// etcdserverpb.RangeRequest. `range_end` empty: the single `key`; `[0]`: every key >= `key`;
/// otherwise [key, range_end).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub limit: i64,
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub header: ResponseHeader,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    pub count: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    pub ignore_value: bool,
    pub ignore_lease: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    pub header: ResponseHeader,
    pub prev_kv: Option<KeyValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    pub header: ResponseHeader,
    pub deleted: i64,
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareResult {
    Equal = 0,
    Greater = 1,
    Less = 2,
    NotEqual = 3,
}

/// etcdserverpb.Compare's target and target_union together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(Vec<u8>),
    Lease(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    pub header: ResponseHeader,
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionRequest {
    pub revision: i64,
    pub physical: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionResponse {
    pub header: ResponseHeader,
}

/// mvccpb.Event's type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EventType {
    #[default]
    Put = 0,
    Delete = 1,
}

/// mvccpb.Event: one change. A delete's `kv` holds the key and the deleting revision in
/// `mod_revision` (other fields zero), as etcd's does. `prev_kv` is the key's previous live
/// version, if any (watchers that did not ask for prev_kv drop it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// gRPC status codes used by etcd's errors (a wire front end maps them 1:1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    InvalidArgument = 3,
    NotFound = 5,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    OutOfRange = 11,
    Internal = 13,
}

/// Errors a client can get from the key-value API, with etcd's exact messages and codes.
#[derive(Debug)]
pub enum KvError {
    Compacted,
    FutureRev,
    EmptyKey,
    DuplicateKey,
    TooManyOps,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    LeaseNotFound,
    InvalidSortOption,
    NoSpace,
    /// The storage engine failed (I/O, corruption): fatal for this member, not the request's
    /// fault.
    Storage(crate::btree::Error),
}

impl KvError {
    /// etcd's error message (the gRPC status message its clients match on).
    pub fn message(&self) -> String {
        match self {
            KvError::Compacted => "etcdserver: mvcc: required revision has been compacted".into(),
            KvError::FutureRev => "etcdserver: mvcc: required revision is a future revision".into(),
            KvError::EmptyKey => "etcdserver: key is not provided".into(),
            KvError::DuplicateKey => "etcdserver: duplicate key given in txn request".into(),
            KvError::TooManyOps => "etcdserver: too many operations in txn request".into(),
            KvError::KeyNotFound => "etcdserver: key not found".into(),
            KvError::ValueProvided => "etcdserver: value is provided".into(),
            KvError::LeaseProvided => "etcdserver: lease is provided".into(),
            KvError::LeaseNotFound => "etcdserver: requested lease not found".into(),
            KvError::InvalidSortOption => "etcdserver: invalid sort option".into(),
            KvError::NoSpace => "etcdserver: mvcc: database space exceeded".into(),
            KvError::Storage(e) => format!("keel: storage failure: {e}"),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            KvError::Compacted | KvError::FutureRev => Code::OutOfRange,
            KvError::EmptyKey
            | KvError::DuplicateKey
            | KvError::TooManyOps
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::InvalidSortOption => Code::InvalidArgument,
            KvError::LeaseNotFound => Code::NotFound,
            KvError::NoSpace => Code::ResourceExhausted,
            KvError::Storage(_) => Code::Internal,
        }
    }

    /// True when the member itself is broken (D2), as opposed to the request being refused.
    pub fn is_fatal(&self) -> bool {
        matches!(self, KvError::Storage(_))
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for KvError {}

impl From<crate::btree::Error> for KvError {
    fn from(e: crate::btree::Error) -> Self {
        KvError::Storage(e)
    }
}

impl PartialEq for KvError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && !matches!(self, KvError::Storage(_))
    }
}
