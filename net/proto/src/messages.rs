//! The messages: etcd v3 API (`etcdserverpb/rpc.proto`, `mvccpb/kv.proto`) mirrored field for
//! field, plus the [`Request`] and [`Response`] enums that a frame's payload archives.
//!
//! Naming: protobuf's `ID`/`TTL`/`peerURLs`/`isLearner` become `id`/`ttl`/`peer_urls`/`is_learner`;
//! a protobuf `oneof` becomes a Rust enum; an optional sub-message that etcd leaves unset becomes an
//! `Option`. Every type derives rkyv's `Archive`: the server reads `Archived*` forms in place
//! (zero-copy, validated), the client deserializes into the owned forms. The mapping to rpc.proto is
//! tabulated in net/PROTOCOL.md.

use rkyv::{Archive, Deserialize, Serialize};

use crate::error::ErrorResponse;
use crate::nested::DepthLimited;

/// Declares a protocol struct with the derives every message has.
macro_rules! message {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
        #[rkyv(derive(Debug))]
        pub struct $name { $($body)* }
    };
}

/// Declares a protocol enum without payloads (a protobuf enum), its first variant the default.
macro_rules! plain_enum {
    ($(#[$m:meta])* pub enum $name:ident { $(#[$fm:meta])* $first:ident, $($(#[$vm:meta])* $v:ident,)* }) => {
        $(#[$m])*
        #[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
        pub enum $name { $(#[$fm])* #[default] $first, $($(#[$vm])* $v,)* }
    };
}

// ---------------------------------------------------------------------------------------------
// mvccpb (kv.proto)

message! {
    /// `mvccpb.KeyValue`.
    pub struct KeyValue {
        /// The key (bytes).
        pub key: Vec<u8>,
        /// Revision of the last creation of this key.
        pub create_revision: i64,
        /// Revision of the last modification of this key.
        pub mod_revision: i64,
        /// Number of modifications since creation (a delete resets it to 0).
        pub version: i64,
        /// The value (bytes).
        pub value: Vec<u8>,
        /// Lease id attached to the key, 0 for none.
        pub lease: i64,
    }
}

plain_enum! {
    /// `mvccpb.Event.EventType`.
    pub enum EventType {
        /// PUT = 0.
        Put,
        /// DELETE = 1.
        Delete,
    }
}

message! {
    /// `mvccpb.Event`.
    pub struct Event {
        /// `type`: PUT or DELETE.
        pub event_type: EventType,
        /// The key-value after the event (for DELETE: key and mod_revision only).
        pub kv: KeyValue,
        /// The key-value before the event, when the watcher asked for `prev_kv`.
        pub prev_kv: Option<KeyValue>,
    }
}

// ---------------------------------------------------------------------------------------------
// etcdserverpb: common

message! {
    /// `etcdserverpb.ResponseHeader`.
    pub struct ResponseHeader {
        /// ID of the cluster that sent the response.
        pub cluster_id: u64,
        /// ID of the member that sent the response.
        pub member_id: u64,
        /// Key-value store revision when the request was applied.
        pub revision: i64,
        /// Raft term when the request was applied.
        pub raft_term: u64,
    }
}

// ---------------------------------------------------------------------------------------------
// KV service

plain_enum! {
    /// `RangeRequest.SortOrder`.
    pub enum SortOrder {
        /// NONE = 0.
        None,
        /// ASCEND = 1.
        Ascend,
        /// DESCEND = 2.
        Descend,
    }
}

plain_enum! {
    /// `RangeRequest.SortTarget`.
    pub enum SortTarget {
        /// KEY = 0.
        Key,
        /// VERSION = 1.
        Version,
        /// CREATE = 2.
        Create,
        /// MOD = 3.
        Mod,
        /// VALUE = 4.
        Value,
    }
}

message! {
    /// `etcdserverpb.RangeRequest`.
    pub struct RangeRequest {
        /// First key of the range.
        pub key: Vec<u8>,
        /// End of the range `[key, range_end)`; empty: only `key`; `\0`: all keys ≥ key.
        pub range_end: Vec<u8>,
        /// Maximum number of keys returned; 0 = no limit.
        pub limit: i64,
        /// Point-in-time revision; ≤ 0 = newest.
        pub revision: i64,
        /// Sort order.
        pub sort_order: SortOrder,
        /// Sort target.
        pub sort_target: SortTarget,
        /// Serve from the local member without consensus (may be stale).
        pub serializable: bool,
        /// Return keys only, no values.
        pub keys_only: bool,
        /// Return only the count.
        pub count_only: bool,
        /// Lower bound on mod_revision (0 = none).
        pub min_mod_revision: i64,
        /// Upper bound on mod_revision (0 = none).
        pub max_mod_revision: i64,
        /// Lower bound on create_revision (0 = none).
        pub min_create_revision: i64,
        /// Upper bound on create_revision (0 = none).
        pub max_create_revision: i64,
    }
}

message! {
    /// `etcdserverpb.RangeResponse`.
    pub struct RangeResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// Matching key-values (empty with count_only).
        pub kvs: Vec<KeyValue>,
        /// More keys are in the range than `limit` returned.
        pub more: bool,
        /// Number of keys in the range.
        pub count: i64,
    }
}

message! {
    /// `etcdserverpb.PutRequest`.
    pub struct PutRequest {
        /// Key to put.
        pub key: Vec<u8>,
        /// Value to put.
        pub value: Vec<u8>,
        /// Lease to attach (0 = none).
        pub lease: i64,
        /// Return the previous key-value.
        pub prev_kv: bool,
        /// Keep the current value (error if the key does not exist).
        pub ignore_value: bool,
        /// Keep the current lease (error if the key does not exist).
        pub ignore_lease: bool,
    }
}

message! {
    /// `etcdserverpb.PutResponse`.
    pub struct PutResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// Previous key-value, if `prev_kv` was asked and the key existed.
        pub prev_kv: Option<KeyValue>,
    }
}

message! {
    /// `etcdserverpb.DeleteRangeRequest`.
    pub struct DeleteRangeRequest {
        /// First key of the range.
        pub key: Vec<u8>,
        /// End of the range (same conventions as `RangeRequest`).
        pub range_end: Vec<u8>,
        /// Return the deleted key-values.
        pub prev_kv: bool,
    }
}

message! {
    /// `etcdserverpb.DeleteRangeResponse`.
    pub struct DeleteRangeResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// Number of keys deleted.
        pub deleted: i64,
        /// Deleted key-values, if `prev_kv` was asked.
        pub prev_kvs: Vec<KeyValue>,
    }
}

/// `etcdserverpb.RequestOp` (the `request` oneof).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum RequestOp {
    /// `request_range`.
    Range(RangeRequest),
    /// `request_put`.
    Put(PutRequest),
    /// `request_delete_range`.
    DeleteRange(DeleteRangeRequest),
    /// `request_txn` (nested txn; depth bounded by [`crate::limits::MAX_TXN_DEPTH`]).
    Txn(TxnRequest),
}

/// `etcdserverpb.ResponseOp` (the `response` oneof).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum ResponseOp {
    /// `response_range`.
    Range(RangeResponse),
    /// `response_put`.
    Put(PutResponse),
    /// `response_delete_range`.
    DeleteRange(DeleteRangeResponse),
    /// `response_txn`.
    Txn(TxnResponse),
}

plain_enum! {
    /// `Compare.CompareResult`.
    pub enum CompareResult {
        /// EQUAL = 0.
        Equal,
        /// GREATER = 1.
        Greater,
        /// LESS = 2.
        Less,
        /// NOT_EQUAL = 3.
        NotEqual,
    }
}

plain_enum! {
    /// `Compare.CompareTarget`.
    pub enum CompareTarget {
        /// VERSION = 0.
        Version,
        /// CREATE = 1.
        Create,
        /// MOD = 2.
        Mod,
        /// VALUE = 3.
        Value,
        /// LEASE = 4.
        Lease,
    }
}

/// `Compare.target_union` (the oneof).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum TargetUnion {
    /// `version`.
    Version(i64),
    /// `create_revision`.
    CreateRevision(i64),
    /// `mod_revision`.
    ModRevision(i64),
    /// `value`.
    Value(Vec<u8>),
    /// `lease`.
    Lease(i64),
}

impl Default for TargetUnion {
    fn default() -> Self {
        TargetUnion::Version(0)
    }
}

message! {
    /// `etcdserverpb.Compare`.
    pub struct Compare {
        /// The comparison operator.
        pub result: CompareResult,
        /// Which field is compared.
        pub target: CompareTarget,
        /// Key (or first key of the range) compared.
        pub key: Vec<u8>,
        /// The value compared against (variant should agree with `target`).
        pub target_union: TargetUnion,
        /// End of the compared range (empty: only `key`).
        pub range_end: Vec<u8>,
    }
}

/// `etcdserverpb.TxnRequest`. `success`/`failure` are archived as depth-limited vectors
/// ([`crate::nested::NestedVec`], derefs to `ArchivedVec`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub struct TxnRequest {
    /// Conditions, all of which must hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Ops run when every compare holds.
    #[rkyv(with = DepthLimited, omit_bounds)]
    pub success: Vec<RequestOp>,
    /// Ops run otherwise.
    #[rkyv(with = DepthLimited, omit_bounds)]
    pub failure: Vec<RequestOp>,
}

/// `etcdserverpb.TxnResponse`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
pub struct TxnResponse {
    /// Response header.
    pub header: ResponseHeader,
    /// Whether the compares all held (success branch ran).
    pub succeeded: bool,
    /// One response per op of the branch that ran, in order.
    #[rkyv(with = DepthLimited, omit_bounds)]
    pub responses: Vec<ResponseOp>,
}

message! {
    /// `etcdserverpb.CompactionRequest`.
    pub struct CompactionRequest {
        /// Compact the history before this revision.
        pub revision: i64,
        /// Answer only once the compaction is physically applied to the backend.
        pub physical: bool,
    }
}

message! {
    /// `etcdserverpb.CompactionResponse`.
    pub struct CompactionResponse {
        /// Response header.
        pub header: ResponseHeader,
    }
}

// ---------------------------------------------------------------------------------------------
// Watch service

plain_enum! {
    /// `WatchCreateRequest.FilterType`.
    pub enum FilterType {
        /// NOPUT = 0: drop put events.
        NoPut,
        /// NODELETE = 1: drop delete events.
        NoDelete,
    }
}

message! {
    /// `etcdserverpb.WatchCreateRequest`.
    pub struct WatchCreateRequest {
        /// First key watched.
        pub key: Vec<u8>,
        /// End of the watched range (same conventions as `RangeRequest`).
        pub range_end: Vec<u8>,
        /// Revision to start from (inclusive); ≤ 0 = from now.
        pub start_revision: i64,
        /// Ask for periodic progress notifications when idle.
        pub progress_notify: bool,
        /// Event filters.
        pub filters: Vec<FilterType>,
        /// Include the previous key-value in events.
        pub prev_kv: bool,
        /// Client-chosen watch id; 0 = let the server choose.
        pub watch_id: i64,
        /// Allow splitting large revisions over several responses.
        pub fragment: bool,
    }
}

message! {
    /// `etcdserverpb.WatchCancelRequest`.
    pub struct WatchCancelRequest {
        /// The watcher to cancel.
        pub watch_id: i64,
    }
}

message! {
    /// `etcdserverpb.WatchProgressRequest` (no fields).
    pub struct WatchProgressRequest {}
}

/// `etcdserverpb.WatchRequest` (its `request_union` oneof).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum WatchRequest {
    /// `create_request`: opens a watch stream on this frame's request id.
    Create(WatchCreateRequest),
    /// `cancel_request`.
    Cancel(WatchCancelRequest),
    /// `progress_request`.
    Progress(WatchProgressRequest),
}

message! {
    /// `etcdserverpb.WatchResponse`.
    pub struct WatchResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// The watcher this response is about.
        pub watch_id: i64,
        /// Answer to a create request.
        pub created: bool,
        /// The watcher is canceled (last response of its stream).
        pub canceled: bool,
        /// Set when the start revision was compacted: the oldest available revision.
        pub compact_revision: i64,
        /// Why the watcher was canceled.
        pub cancel_reason: String,
        /// More fragments of this revision follow.
        pub fragment: bool,
        /// Events.
        pub events: Vec<Event>,
    }
}

// ---------------------------------------------------------------------------------------------
// Lease service

message! {
    /// `etcdserverpb.LeaseGrantRequest`.
    pub struct LeaseGrantRequest {
        /// `TTL` in seconds.
        pub ttl: i64,
        /// `ID` requested; 0 = let the server choose.
        pub id: i64,
    }
}

message! {
    /// `etcdserverpb.LeaseGrantResponse`.
    pub struct LeaseGrantResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// `ID` granted.
        pub id: i64,
        /// `TTL` granted, in seconds.
        pub ttl: i64,
        /// Error text (etcd sets it on failure).
        pub error: String,
    }
}

message! {
    /// `etcdserverpb.LeaseRevokeRequest`.
    pub struct LeaseRevokeRequest {
        /// `ID` of the lease to revoke.
        pub id: i64,
    }
}

message! {
    /// `etcdserverpb.LeaseRevokeResponse`.
    pub struct LeaseRevokeResponse {
        /// Response header.
        pub header: ResponseHeader,
    }
}

message! {
    /// `etcdserverpb.LeaseKeepAliveRequest`.
    pub struct LeaseKeepAliveRequest {
        /// `ID` of the lease to keep alive.
        pub id: i64,
    }
}

message! {
    /// `etcdserverpb.LeaseKeepAliveResponse`.
    pub struct LeaseKeepAliveResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// `ID` of the lease.
        pub id: i64,
        /// New `TTL`; ≤ 0 means the lease is gone.
        pub ttl: i64,
    }
}

message! {
    /// `etcdserverpb.LeaseTimeToLiveRequest`.
    pub struct LeaseTimeToLiveRequest {
        /// `ID` of the lease.
        pub id: i64,
        /// Also list the keys attached to the lease.
        pub keys: bool,
    }
}

message! {
    /// `etcdserverpb.LeaseTimeToLiveResponse`.
    pub struct LeaseTimeToLiveResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// `ID` of the lease.
        pub id: i64,
        /// Remaining `TTL` in seconds; -1 if the lease does not exist.
        pub ttl: i64,
        /// `grantedTTL`: the TTL at grant time.
        pub granted_ttl: i64,
        /// Attached keys (when asked).
        pub keys: Vec<Vec<u8>>,
    }
}

message! {
    /// `etcdserverpb.LeaseLeasesRequest` (no fields).
    pub struct LeaseLeasesRequest {}
}

message! {
    /// `etcdserverpb.LeaseStatus`.
    pub struct LeaseStatus {
        /// `ID` of the lease.
        pub id: i64,
    }
}

message! {
    /// `etcdserverpb.LeaseLeasesResponse`.
    pub struct LeaseLeasesResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// All leases.
        pub leases: Vec<LeaseStatus>,
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster service

message! {
    /// `etcdserverpb.Member`.
    pub struct Member {
        /// `ID`.
        pub id: u64,
        /// Human-readable name (empty until the member has started).
        pub name: String,
        /// `peerURLs`.
        pub peer_urls: Vec<String>,
        /// `clientURLs` (empty until the member has started).
        pub client_urls: Vec<String>,
        /// `isLearner`.
        pub is_learner: bool,
    }
}

message! {
    /// `etcdserverpb.MemberAddRequest`.
    pub struct MemberAddRequest {
        /// `peerURLs` of the new member.
        pub peer_urls: Vec<String>,
        /// `isLearner`: add as a learner.
        pub is_learner: bool,
    }
}

message! {
    /// `etcdserverpb.MemberAddResponse`.
    pub struct MemberAddResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// The added member.
        pub member: Option<Member>,
        /// The members after the change.
        pub members: Vec<Member>,
    }
}

message! {
    /// `etcdserverpb.MemberRemoveRequest`.
    pub struct MemberRemoveRequest {
        /// `ID` of the member to remove.
        pub id: u64,
    }
}

message! {
    /// `etcdserverpb.MemberRemoveResponse`.
    pub struct MemberRemoveResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// The members after the change.
        pub members: Vec<Member>,
    }
}

message! {
    /// `etcdserverpb.MemberUpdateRequest`.
    pub struct MemberUpdateRequest {
        /// `ID` of the member to update.
        pub id: u64,
        /// New `peerURLs`.
        pub peer_urls: Vec<String>,
    }
}

message! {
    /// `etcdserverpb.MemberUpdateResponse`.
    pub struct MemberUpdateResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// The members after the change.
        pub members: Vec<Member>,
    }
}

message! {
    /// `etcdserverpb.MemberListRequest` (`linearizable` is etcd 3.5's; 3.4 has no field).
    pub struct MemberListRequest {
        /// Answer with a linearizable member list.
        pub linearizable: bool,
    }
}

message! {
    /// `etcdserverpb.MemberListResponse`.
    pub struct MemberListResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// All members.
        pub members: Vec<Member>,
    }
}

message! {
    /// `etcdserverpb.MemberPromoteRequest`.
    pub struct MemberPromoteRequest {
        /// `ID` of the learner to promote.
        pub id: u64,
    }
}

message! {
    /// `etcdserverpb.MemberPromoteResponse`.
    pub struct MemberPromoteResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// The members after the change.
        pub members: Vec<Member>,
    }
}

// ---------------------------------------------------------------------------------------------
// Maintenance service

plain_enum! {
    /// `AlarmRequest.AlarmAction`.
    pub enum AlarmAction {
        /// GET = 0.
        Get,
        /// ACTIVATE = 1.
        Activate,
        /// DEACTIVATE = 2.
        Deactivate,
    }
}

plain_enum! {
    /// `etcdserverpb.AlarmType`.
    pub enum AlarmType {
        /// NONE = 0 (with GET/DEACTIVATE: all alarms).
        None,
        /// NOSPACE = 1.
        NoSpace,
        /// CORRUPT = 2.
        Corrupt,
    }
}

message! {
    /// `etcdserverpb.AlarmRequest`.
    pub struct AlarmRequest {
        /// What to do.
        pub action: AlarmAction,
        /// `memberID`: member the alarm concerns (0 = all members).
        pub member_id: u64,
        /// Alarm type.
        pub alarm: AlarmType,
    }
}

message! {
    /// `etcdserverpb.AlarmMember`.
    pub struct AlarmMember {
        /// `memberID`.
        pub member_id: u64,
        /// The raised alarm.
        pub alarm: AlarmType,
    }
}

message! {
    /// `etcdserverpb.AlarmResponse`.
    pub struct AlarmResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// Alarms matching the request.
        pub alarms: Vec<AlarmMember>,
    }
}

message! {
    /// `etcdserverpb.StatusRequest` (no fields).
    pub struct StatusRequest {}
}

message! {
    /// `etcdserverpb.StatusResponse`.
    pub struct StatusResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// Server version.
        pub version: String,
        /// `dbSize`: size of the backend file in bytes.
        pub db_size: i64,
        /// Member id of the current leader.
        pub leader: u64,
        /// `raftIndex`: current Raft committed index.
        pub raft_index: u64,
        /// `raftTerm`.
        pub raft_term: u64,
        /// `raftAppliedIndex`.
        pub raft_applied_index: u64,
        /// Raised alarms / errors, as text.
        pub errors: Vec<String>,
        /// `dbSizeInUse`: bytes of the backend in use.
        pub db_size_in_use: i64,
        /// `isLearner`.
        pub is_learner: bool,
    }
}

message! {
    /// `etcdserverpb.DefragmentRequest` (no fields).
    pub struct DefragmentRequest {}
}

message! {
    /// `etcdserverpb.DefragmentResponse`.
    pub struct DefragmentResponse {
        /// Response header.
        pub header: ResponseHeader,
    }
}

message! {
    /// `etcdserverpb.HashRequest` (no fields).
    pub struct HashRequest {}
}

message! {
    /// `etcdserverpb.HashResponse`.
    pub struct HashResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// Hash of the whole backend.
        pub hash: u32,
    }
}

message! {
    /// `etcdserverpb.HashKVRequest`.
    pub struct HashKvRequest {
        /// Hash the keyspace up to this revision (0 = newest).
        pub revision: i64,
    }
}

message! {
    /// `etcdserverpb.HashKVResponse`.
    pub struct HashKvResponse {
        /// Response header.
        pub header: ResponseHeader,
        /// Hash of the keyspace up to the revision.
        pub hash: u32,
        /// The compaction revision at hashing time.
        pub compact_revision: i64,
    }
}

message! {
    /// `etcdserverpb.SnapshotRequest` (no fields).
    pub struct SnapshotRequest {}
}

message! {
    /// `etcdserverpb.SnapshotResponse`: one chunk of the snapshot stream.
    pub struct SnapshotResponse {
        /// Response header (etcd fills it in the first chunk).
        pub header: ResponseHeader,
        /// `remaining_bytes` after this chunk (0 on the last one).
        pub remaining_bytes: u64,
        /// The chunk.
        pub blob: Vec<u8>,
    }
}

message! {
    /// `etcdserverpb.MoveLeaderRequest`.
    pub struct MoveLeaderRequest {
        /// `targetID`: member to hand leadership to.
        pub target_id: u64,
    }
}

message! {
    /// `etcdserverpb.MoveLeaderResponse`.
    pub struct MoveLeaderResponse {
        /// Response header.
        pub header: ResponseHeader,
    }
}

// ---------------------------------------------------------------------------------------------
// The payload enums

/// Every client request; a request frame's payload is one archived `Request` and its variant
/// agrees with the frame's opcode (checked on access). Match on `ArchivedRequest` on the server.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Request {
    /// KV.Range.
    Range(RangeRequest),
    /// KV.Put.
    Put(PutRequest),
    /// KV.DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// KV.Txn.
    Txn(TxnRequest),
    /// KV.Compact.
    Compact(CompactionRequest),
    /// Watch.Watch (one frame of the watch stream).
    Watch(WatchRequest),
    /// Lease.LeaseGrant.
    LeaseGrant(LeaseGrantRequest),
    /// Lease.LeaseRevoke.
    LeaseRevoke(LeaseRevokeRequest),
    /// Lease.LeaseKeepAlive (one frame of the keepalive stream).
    LeaseKeepAlive(LeaseKeepAliveRequest),
    /// Lease.LeaseTimeToLive.
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    /// Lease.LeaseLeases.
    LeaseLeases(LeaseLeasesRequest),
    /// Cluster.MemberAdd.
    MemberAdd(MemberAddRequest),
    /// Cluster.MemberRemove.
    MemberRemove(MemberRemoveRequest),
    /// Cluster.MemberUpdate.
    MemberUpdate(MemberUpdateRequest),
    /// Cluster.MemberList.
    MemberList(MemberListRequest),
    /// Cluster.MemberPromote.
    MemberPromote(MemberPromoteRequest),
    /// Maintenance.Alarm.
    Alarm(AlarmRequest),
    /// Maintenance.Status.
    Status(StatusRequest),
    /// Maintenance.Defragment.
    Defragment(DefragmentRequest),
    /// Maintenance.Hash.
    Hash(HashRequest),
    /// Maintenance.HashKV.
    HashKv(HashKvRequest),
    /// Maintenance.Snapshot (answered by a stream of chunks).
    Snapshot(SnapshotRequest),
    /// Maintenance.MoveLeader.
    MoveLeader(MoveLeaderRequest),
}

/// Every server response, plus [`Response::Error`] (the error frame). A response frame's payload is
/// one archived `Response` whose variant agrees with the frame's opcode.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Response {
    /// KV.Range.
    Range(RangeResponse),
    /// KV.Put.
    Put(PutResponse),
    /// KV.DeleteRange.
    DeleteRange(DeleteRangeResponse),
    /// KV.Txn.
    Txn(TxnResponse),
    /// KV.Compact.
    Compact(CompactionResponse),
    /// Watch.Watch (one frame of the watch stream).
    Watch(WatchResponse),
    /// Lease.LeaseGrant.
    LeaseGrant(LeaseGrantResponse),
    /// Lease.LeaseRevoke.
    LeaseRevoke(LeaseRevokeResponse),
    /// Lease.LeaseKeepAlive.
    LeaseKeepAlive(LeaseKeepAliveResponse),
    /// Lease.LeaseTimeToLive.
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    /// Lease.LeaseLeases.
    LeaseLeases(LeaseLeasesResponse),
    /// Cluster.MemberAdd.
    MemberAdd(MemberAddResponse),
    /// Cluster.MemberRemove.
    MemberRemove(MemberRemoveResponse),
    /// Cluster.MemberUpdate.
    MemberUpdate(MemberUpdateResponse),
    /// Cluster.MemberList.
    MemberList(MemberListResponse),
    /// Cluster.MemberPromote.
    MemberPromote(MemberPromoteResponse),
    /// Maintenance.Alarm.
    Alarm(AlarmResponse),
    /// Maintenance.Status.
    Status(StatusResponse),
    /// Maintenance.Defragment.
    Defragment(DefragmentResponse),
    /// Maintenance.Hash.
    Hash(HashResponse),
    /// Maintenance.HashKV.
    HashKv(HashKvResponse),
    /// Maintenance.Snapshot (one chunk).
    Snapshot(SnapshotResponse),
    /// Maintenance.MoveLeader.
    MoveLeader(MoveLeaderResponse),
    /// The request failed (opcode ERROR): etcd's error code and message.
    Error(ErrorResponse),
}
