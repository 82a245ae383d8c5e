//! Mapping between the wire messages (`keel_proto`) and the engine's request/response types
//! (`keel_engine::mvcc`). The two mirror the same etcd messages field for field; the wire side
//! adds what belongs to the server (the full response header) and the engine side what belongs
//! to storage. Kept in one place so a field added to one side shows up here.

use keel_engine::mvcc as e;
use keel_proto as p;

/// The server's part of every response header.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderCtx {
    pub cluster_id: u64,
    pub member_id: u64,
    pub raft_term: u64,
}

impl HeaderCtx {
    pub fn header(&self, revision: i64) -> p::ResponseHeader {
        p::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft_term,
        }
    }
}

pub fn kv_out(kv: e::KeyValue) -> p::KeyValue {
    p::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event_out(ev: e::Event, with_prev: bool) -> p::Event {
    p::Event {
        event_type: match ev.kind {
            e::EventType::Put => p::EventType::Put,
            e::EventType::Delete => p::EventType::Delete,
        },
        kv: kv_out(ev.kv),
        prev_kv: if with_prev {
            ev.prev_kv.map(kv_out)
        } else {
            None
        },
    }
}

fn sort_order(o: p::SortOrder) -> e::SortOrder {
    match o {
        p::SortOrder::None => e::SortOrder::None,
        p::SortOrder::Ascend => e::SortOrder::Ascend,
        p::SortOrder::Descend => e::SortOrder::Descend,
    }
}

fn sort_target(t: p::SortTarget) -> e::SortTarget {
    match t {
        p::SortTarget::Key => e::SortTarget::Key,
        p::SortTarget::Version => e::SortTarget::Version,
        p::SortTarget::Create => e::SortTarget::Create,
        p::SortTarget::Mod => e::SortTarget::Mod,
        p::SortTarget::Value => e::SortTarget::Value,
    }
}

pub fn range_in(r: p::RangeRequest) -> e::RangeRequest {
    e::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order: sort_order(r.sort_order),
        sort_target: sort_target(r.sort_target),
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

/// The archived (in-frame, validated) form straight into the engine's request: the only copy
/// is of the key bounds (zero-copy decoding on the read path).
pub fn range_in_archived(r: &p::ArchivedRangeRequest) -> e::RangeRequest {
    e::RangeRequest {
        key: r.key.as_slice().to_vec(),
        range_end: r.range_end.as_slice().to_vec(),
        limit: r.limit.to_native(),
        revision: r.revision.to_native(),
        sort_order: match r.sort_order {
            p::ArchivedSortOrder::None => e::SortOrder::None,
            p::ArchivedSortOrder::Ascend => e::SortOrder::Ascend,
            p::ArchivedSortOrder::Descend => e::SortOrder::Descend,
        },
        sort_target: match r.sort_target {
            p::ArchivedSortTarget::Key => e::SortTarget::Key,
            p::ArchivedSortTarget::Version => e::SortTarget::Version,
            p::ArchivedSortTarget::Create => e::SortTarget::Create,
            p::ArchivedSortTarget::Mod => e::SortTarget::Mod,
            p::ArchivedSortTarget::Value => e::SortTarget::Value,
        },
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision.to_native(),
        max_mod_revision: r.max_mod_revision.to_native(),
        min_create_revision: r.min_create_revision.to_native(),
        max_create_revision: r.max_create_revision.to_native(),
    }
}

pub fn range_out(h: &HeaderCtx, r: e::RangeResponse) -> p::RangeResponse {
    p::RangeResponse {
        header: h.header(r.header.revision),
        kvs: r.kvs.into_iter().map(kv_out).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_in(r: p::PutRequest) -> e::PutRequest {
    e::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn put_out(h: &HeaderCtx, r: e::PutResponse) -> p::PutResponse {
    p::PutResponse {
        header: h.header(r.header.revision),
        prev_kv: r.prev_kv.map(kv_out),
    }
}

pub fn delete_in(r: p::DeleteRangeRequest) -> e::DeleteRangeRequest {
    e::DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

pub fn delete_out(h: &HeaderCtx, r: e::DeleteRangeResponse) -> p::DeleteRangeResponse {
    p::DeleteRangeResponse {
        header: h.header(r.header.revision),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv_out).collect(),
    }
}

fn compare_in(c: p::Compare) -> e::Compare {
    // The target field decides; a union of another kind compares against that kind's zero
    // value, as etcd's generated getters return it.
    let u = c.target_union;
    let num = |want: fn(&p::TargetUnion) -> Option<i64>| want(&u).unwrap_or(0);
    let target = match c.target {
        p::CompareTarget::Version => e::CompareTarget::Version(num(|u| match u {
            p::TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        p::CompareTarget::Create => e::CompareTarget::Create(num(|u| match u {
            p::TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        p::CompareTarget::Mod => e::CompareTarget::Mod(num(|u| match u {
            p::TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        p::CompareTarget::Lease => e::CompareTarget::Lease(num(|u| match u {
            p::TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        p::CompareTarget::Value => e::CompareTarget::Value(match &u {
            p::TargetUnion::Value(v) => v.clone(),
            _ => Vec::new(),
        }),
    };
    e::Compare {
        result: match c.result {
            p::CompareResult::Equal => e::CompareResult::Equal,
            p::CompareResult::Greater => e::CompareResult::Greater,
            p::CompareResult::Less => e::CompareResult::Less,
            p::CompareResult::NotEqual => e::CompareResult::NotEqual,
        },
        target,
        key: c.key,
        range_end: c.range_end,
    }
}

fn op_in(op: p::RequestOp) -> e::RequestOp {
    match op {
        p::RequestOp::Range(r) => e::RequestOp::Range(range_in(r)),
        p::RequestOp::Put(r) => e::RequestOp::Put(put_in(r)),
        p::RequestOp::DeleteRange(r) => e::RequestOp::DeleteRange(delete_in(r)),
        p::RequestOp::Txn(t) => e::RequestOp::Txn(txn_in(t)),
    }
}

/// Whether `t` only reads, on either branch at every level (etcd's isTxnReadonly): answered
/// from a read view like a range, never through the log.
pub fn txn_read_only(t: &p::TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match op {
        p::RequestOp::Range(_) => true,
        p::RequestOp::Txn(n) => txn_read_only(n),
        p::RequestOp::Put(_) | p::RequestOp::DeleteRange(_) => false,
    })
}

/// Whether every range of `t`, on either branch at every level, is serializable (etcd's
/// isTxnSerializable; true for a txn without ranges): a read-only such txn needs no ReadIndex.
pub fn txn_serializable(t: &p::TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match op {
        p::RequestOp::Range(r) => r.serializable,
        p::RequestOp::Txn(n) => txn_serializable(n),
        _ => true,
    })
}

pub fn txn_in(t: p::TxnRequest) -> e::TxnRequest {
    e::TxnRequest {
        compare: t.compare.into_iter().map(compare_in).collect(),
        success: t.success.into_iter().map(op_in).collect(),
        failure: t.failure.into_iter().map(op_in).collect(),
    }
}

fn op_out(h: &HeaderCtx, op: e::ResponseOp) -> p::ResponseOp {
    match op {
        e::ResponseOp::Range(r) => p::ResponseOp::Range(range_out(h, r)),
        e::ResponseOp::Put(r) => p::ResponseOp::Put(put_out(h, r)),
        e::ResponseOp::DeleteRange(r) => p::ResponseOp::DeleteRange(delete_out(h, r)),
        e::ResponseOp::Txn(t) => p::ResponseOp::Txn(txn_out(h, t)),
    }
}

pub fn txn_out(h: &HeaderCtx, t: e::TxnResponse) -> p::TxnResponse {
    p::TxnResponse {
        header: h.header(t.header.revision),
        succeeded: t.succeeded,
        responses: t.responses.into_iter().map(|o| op_out(h, o)).collect(),
    }
}

/// The engine's error as the wire's error code (etcd's message travels with the code).
pub fn kv_error(err: &e::KvError) -> p::ErrorResponse {
    let code = match err {
        e::KvError::Compacted => p::ErrorCode::Compacted,
        e::KvError::FutureRev => p::ErrorCode::FutureRev,
        e::KvError::EmptyKey => p::ErrorCode::EmptyKey,
        e::KvError::DuplicateKey => p::ErrorCode::DuplicateKey,
        e::KvError::TooManyOps => p::ErrorCode::TooManyOps,
        e::KvError::KeyNotFound => p::ErrorCode::KeyNotFound,
        e::KvError::ValueProvided => p::ErrorCode::ValueProvided,
        e::KvError::LeaseProvided => p::ErrorCode::LeaseProvided,
        e::KvError::LeaseNotFound => p::ErrorCode::LeaseNotFound,
        e::KvError::NoSpace => p::ErrorCode::NoSpace,
        // etcd answers an invalid sort option with InvalidArgument; keel keeps etcd's text.
        e::KvError::InvalidSortOption | e::KvError::Storage(_) => {
            return p::ErrorResponse {
                code: if matches!(err, e::KvError::Storage(_)) {
                    p::ErrorCode::Corrupt as u16
                } else {
                    p::ErrorCode::MalformedFrame as u16
                },
                message: err.message(),
            }
        }
    };
    p::ErrorResponse::new(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_error_keeps_etcds_message() {
        for err in [
            e::KvError::Compacted,
            e::KvError::FutureRev,
            e::KvError::EmptyKey,
            e::KvError::DuplicateKey,
            e::KvError::TooManyOps,
            e::KvError::KeyNotFound,
            e::KvError::ValueProvided,
            e::KvError::LeaseProvided,
            e::KvError::LeaseNotFound,
            e::KvError::NoSpace,
            e::KvError::InvalidSortOption,
        ] {
            assert_eq!(kv_error(&err).message, err.message(), "{err:?}");
        }
    }

    #[test]
    fn compares_take_the_union_of_their_target() {
        let c = compare_in(p::Compare {
            result: p::CompareResult::Greater,
            target: p::CompareTarget::Mod,
            key: b"k".to_vec(),
            target_union: p::TargetUnion::ModRevision(9),
            range_end: vec![],
        });
        assert_eq!(c.target, e::CompareTarget::Mod(9));
        assert_eq!(c.result, e::CompareResult::Greater);
        let c = compare_in(p::Compare {
            target: p::CompareTarget::Value,
            target_union: p::TargetUnion::Version(3),
            ..Default::default()
        });
        assert_eq!(c.target, e::CompareTarget::Value(vec![]));
    }
}
