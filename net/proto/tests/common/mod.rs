//! proptest strategies generating every protocol message (shared by the integration tests).
#![allow(dead_code)]

use keel_proto::internal::{LeaseCheckpoint, LeaseCheckpointRequest};
use keel_proto::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..12)
}

pub fn text() -> impl Strategy<Value = String> {
    "[a-z0-9:/.é]{0,10}"
}

pub fn header() -> impl Strategy<Value = ResponseHeader> {
    (any::<u64>(), any::<u64>(), any::<i64>(), any::<u64>()).prop_map(|(c, m, r, t)| {
        ResponseHeader {
            cluster_id: c,
            member_id: m,
            revision: r,
            raft_term: t,
        }
    })
}

pub fn kv() -> impl Strategy<Value = KeyValue> {
    (
        bytes(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        bytes(),
        any::<i64>(),
    )
        .prop_map(
            |(key, create_revision, mod_revision, version, value, lease)| KeyValue {
                key,
                create_revision,
                mod_revision,
                version,
                value,
                lease,
            },
        )
}

pub fn kvs() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(kv(), 0..3)
}

fn event_type() -> impl Strategy<Value = EventType> {
    prop_oneof![Just(EventType::Put), Just(EventType::Delete)]
}

pub fn event() -> impl Strategy<Value = Event> {
    (event_type(), kv(), option::of(kv())).prop_map(|(event_type, kv, prev_kv)| Event {
        event_type,
        kv,
        prev_kv,
    })
}

fn sort_order() -> impl Strategy<Value = SortOrder> {
    prop_oneof![
        Just(SortOrder::None),
        Just(SortOrder::Ascend),
        Just(SortOrder::Descend)
    ]
}

fn sort_target() -> impl Strategy<Value = SortTarget> {
    prop_oneof![
        Just(SortTarget::Key),
        Just(SortTarget::Version),
        Just(SortTarget::Create),
        Just(SortTarget::Mod),
        Just(SortTarget::Value)
    ]
}

pub fn range_request() -> impl Strategy<Value = RangeRequest> {
    (
        (
            bytes(),
            bytes(),
            any::<i64>(),
            any::<i64>(),
            sort_order(),
            sort_target(),
        ),
        (any::<[bool; 3]>(), any::<[i64; 4]>()),
    )
        .prop_map(
            |((key, range_end, limit, revision, sort_order, sort_target), (b, r))| RangeRequest {
                key,
                range_end,
                limit,
                revision,
                sort_order,
                sort_target,
                serializable: b[0],
                keys_only: b[1],
                count_only: b[2],
                min_mod_revision: r[0],
                max_mod_revision: r[1],
                min_create_revision: r[2],
                max_create_revision: r[3],
            },
        )
}

pub fn range_response() -> impl Strategy<Value = RangeResponse> {
    (header(), kvs(), any::<bool>(), any::<i64>()).prop_map(|(header, kvs, more, count)| {
        RangeResponse {
            header,
            kvs,
            more,
            count,
        }
    })
}

pub fn put_request() -> impl Strategy<Value = PutRequest> {
    (bytes(), bytes(), any::<i64>(), any::<[bool; 3]>()).prop_map(|(key, value, lease, b)| {
        PutRequest {
            key,
            value,
            lease,
            prev_kv: b[0],
            ignore_value: b[1],
            ignore_lease: b[2],
        }
    })
}

pub fn put_response() -> impl Strategy<Value = PutResponse> {
    (header(), option::of(kv())).prop_map(|(header, prev_kv)| PutResponse { header, prev_kv })
}

pub fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (bytes(), bytes(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

pub fn delete_response() -> impl Strategy<Value = DeleteRangeResponse> {
    (header(), any::<i64>(), kvs()).prop_map(|(header, deleted, prev_kvs)| DeleteRangeResponse {
        header,
        deleted,
        prev_kvs,
    })
}

fn target_union() -> impl Strategy<Value = TargetUnion> {
    prop_oneof![
        any::<i64>().prop_map(TargetUnion::Version),
        any::<i64>().prop_map(TargetUnion::CreateRevision),
        any::<i64>().prop_map(TargetUnion::ModRevision),
        bytes().prop_map(TargetUnion::Value),
        any::<i64>().prop_map(TargetUnion::Lease),
    ]
}

pub fn compare() -> impl Strategy<Value = Compare> {
    let result = prop_oneof![
        Just(CompareResult::Equal),
        Just(CompareResult::Greater),
        Just(CompareResult::Less),
        Just(CompareResult::NotEqual)
    ];
    let target = prop_oneof![
        Just(CompareTarget::Version),
        Just(CompareTarget::Create),
        Just(CompareTarget::Mod),
        Just(CompareTarget::Value),
        Just(CompareTarget::Lease)
    ];
    (result, target, bytes(), target_union(), bytes()).prop_map(
        |(result, target, key, target_union, range_end)| Compare {
            result,
            target,
            key,
            target_union,
            range_end,
        },
    )
}

/// Txns nested up to 4 deep.
pub fn txn_request() -> impl Strategy<Value = TxnRequest> {
    let leaf = (vec(compare(), 0..3)).prop_map(|compare| TxnRequest {
        compare,
        success: vec![],
        failure: vec![],
    });
    leaf.prop_recursive(3, 12, 3, |inner| {
        let op = prop_oneof![
            range_request().prop_map(RequestOp::Range),
            put_request().prop_map(RequestOp::Put),
            delete_request().prop_map(RequestOp::DeleteRange),
            inner.prop_map(RequestOp::Txn),
        ];
        (vec(compare(), 0..3), vec(op.clone(), 0..3), vec(op, 0..3)).prop_map(
            |(compare, success, failure)| TxnRequest {
                compare,
                success,
                failure,
            },
        )
    })
}

pub fn txn_response() -> impl Strategy<Value = TxnResponse> {
    let leaf = (header(), any::<bool>()).prop_map(|(header, succeeded)| TxnResponse {
        header,
        succeeded,
        responses: vec![],
    });
    leaf.prop_recursive(3, 12, 3, |inner| {
        let op = prop_oneof![
            range_response().prop_map(ResponseOp::Range),
            put_response().prop_map(ResponseOp::Put),
            delete_response().prop_map(ResponseOp::DeleteRange),
            inner.prop_map(ResponseOp::Txn),
        ];
        (header(), any::<bool>(), vec(op, 0..3)).prop_map(|(header, succeeded, responses)| {
            TxnResponse {
                header,
                succeeded,
                responses,
            }
        })
    })
}

pub fn watch_request() -> impl Strategy<Value = WatchRequest> {
    let filter = prop_oneof![Just(FilterType::NoPut), Just(FilterType::NoDelete)];
    let create = (
        bytes(),
        bytes(),
        any::<i64>(),
        any::<[bool; 3]>(),
        vec(filter, 0..3),
        any::<i64>(),
    )
        .prop_map(|(key, range_end, start_revision, b, filters, watch_id)| {
            WatchCreateRequest {
                key,
                range_end,
                start_revision,
                progress_notify: b[0],
                filters,
                prev_kv: b[1],
                watch_id,
                fragment: b[2],
            }
        });
    prop_oneof![
        create.prop_map(WatchRequest::Create),
        any::<i64>().prop_map(|watch_id| WatchRequest::Cancel(WatchCancelRequest { watch_id })),
        Just(WatchRequest::Progress(WatchProgressRequest {})),
    ]
}

pub fn watch_response() -> impl Strategy<Value = WatchResponse> {
    (
        header(),
        any::<i64>(),
        any::<[bool; 3]>(),
        any::<i64>(),
        text(),
        vec(event(), 0..3),
    )
        .prop_map(
            |(header, watch_id, b, compact_revision, cancel_reason, events)| WatchResponse {
                header,
                watch_id,
                created: b[0],
                canceled: b[1],
                compact_revision,
                cancel_reason,
                fragment: b[2],
                events,
            },
        )
}

pub fn member() -> impl Strategy<Value = Member> {
    (
        any::<u64>(),
        text(),
        vec(text(), 0..3),
        vec(text(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(id, name, peer_urls, client_urls, is_learner)| Member {
            id,
            name,
            peer_urls,
            client_urls,
            is_learner,
        })
}

fn members() -> impl Strategy<Value = Vec<Member>> {
    vec(member(), 0..3)
}

fn alarm_type() -> impl Strategy<Value = AlarmType> {
    prop_oneof![
        Just(AlarmType::None),
        Just(AlarmType::NoSpace),
        Just(AlarmType::Corrupt)
    ]
}

pub fn alarm_request() -> impl Strategy<Value = AlarmRequest> {
    let action = prop_oneof![
        Just(AlarmAction::Get),
        Just(AlarmAction::Activate),
        Just(AlarmAction::Deactivate)
    ];
    (action, any::<u64>(), alarm_type()).prop_map(|(action, member_id, alarm)| AlarmRequest {
        action,
        member_id,
        alarm,
    })
}

pub fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        range_request().prop_map(Request::Range),
        put_request().prop_map(Request::Put),
        delete_request().prop_map(Request::DeleteRange),
        txn_request().prop_map(Request::Txn),
        (any::<i64>(), any::<bool>()).prop_map(|(revision, physical)| Request::Compact(
            CompactionRequest { revision, physical }
        )),
        watch_request().prop_map(Request::Watch),
        (any::<i64>(), any::<i64>())
            .prop_map(|(ttl, id)| Request::LeaseGrant(LeaseGrantRequest { ttl, id })),
        any::<i64>().prop_map(|id| Request::LeaseRevoke(LeaseRevokeRequest { id })),
        any::<i64>().prop_map(|id| Request::LeaseKeepAlive(LeaseKeepAliveRequest { id })),
        (any::<i64>(), any::<bool>())
            .prop_map(|(id, keys)| Request::LeaseTimeToLive(LeaseTimeToLiveRequest { id, keys })),
        Just(Request::LeaseLeases(LeaseLeasesRequest {})),
        (vec(text(), 0..3), any::<bool>()).prop_map(|(peer_urls, is_learner)| {
            Request::MemberAdd(MemberAddRequest {
                peer_urls,
                is_learner,
            })
        }),
        any::<u64>().prop_map(|id| Request::MemberRemove(MemberRemoveRequest { id })),
        (any::<u64>(), vec(text(), 0..3)).prop_map(|(id, peer_urls)| Request::MemberUpdate(
            MemberUpdateRequest { id, peer_urls }
        )),
        any::<bool>()
            .prop_map(|linearizable| Request::MemberList(MemberListRequest { linearizable })),
        any::<u64>().prop_map(|id| Request::MemberPromote(MemberPromoteRequest { id })),
        alarm_request().prop_map(Request::Alarm),
        Just(Request::Status(StatusRequest {})),
        Just(Request::Defragment(DefragmentRequest {})),
        Just(Request::Hash(HashRequest {})),
        any::<i64>().prop_map(|revision| Request::HashKv(HashKvRequest { revision })),
        Just(Request::Snapshot(SnapshotRequest {})),
        any::<u64>().prop_map(|target_id| Request::MoveLeader(MoveLeaderRequest { target_id })),
    ]
}

pub fn error_response() -> impl Strategy<Value = ErrorResponse> {
    (any::<u16>(), text()).prop_map(|(code, message)| ErrorResponse { code, message })
}

pub fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        range_response().prop_map(Response::Range),
        put_response().prop_map(Response::Put),
        delete_response().prop_map(Response::DeleteRange),
        txn_response().prop_map(Response::Txn),
        header().prop_map(|header| Response::Compact(CompactionResponse { header })),
        watch_response().prop_map(Response::Watch),
        (header(), any::<i64>(), any::<i64>(), text()).prop_map(|(header, id, ttl, error)| {
            Response::LeaseGrant(LeaseGrantResponse {
                header,
                id,
                ttl,
                error,
            })
        }),
        header().prop_map(|header| Response::LeaseRevoke(LeaseRevokeResponse { header })),
        (header(), any::<i64>(), any::<i64>()).prop_map(|(header, id, ttl)| {
            Response::LeaseKeepAlive(LeaseKeepAliveResponse { header, id, ttl })
        }),
        (header(), any::<[i64; 3]>(), vec(bytes(), 0..3)).prop_map(|(header, n, keys)| {
            Response::LeaseTimeToLive(LeaseTimeToLiveResponse {
                header,
                id: n[0],
                ttl: n[1],
                granted_ttl: n[2],
                keys,
            })
        }),
        (header(), vec(any::<i64>(), 0..4)).prop_map(|(header, ids)| {
            Response::LeaseLeases(LeaseLeasesResponse {
                header,
                leases: ids.into_iter().map(|id| LeaseStatus { id }).collect(),
            })
        }),
        (header(), option::of(member()), members()).prop_map(|(header, member, members)| {
            Response::MemberAdd(MemberAddResponse {
                header,
                member,
                members,
            })
        }),
        (header(), members()).prop_map(|(header, members)| Response::MemberRemove(
            MemberRemoveResponse { header, members }
        )),
        (header(), members()).prop_map(|(header, members)| Response::MemberUpdate(
            MemberUpdateResponse { header, members }
        )),
        (header(), members()).prop_map(|(header, members)| Response::MemberList(
            MemberListResponse { header, members }
        )),
        (header(), members()).prop_map(|(header, members)| Response::MemberPromote(
            MemberPromoteResponse { header, members }
        )),
        (header(), vec((any::<u64>(), alarm_type()), 0..3)).prop_map(|(header, alarms)| {
            Response::Alarm(AlarmResponse {
                header,
                alarms: alarms
                    .into_iter()
                    .map(|(member_id, alarm)| AlarmMember { member_id, alarm })
                    .collect(),
            })
        }),
        (
            header(),
            text(),
            any::<[i64; 2]>(),
            any::<[u64; 4]>(),
            vec(text(), 0..3),
            any::<bool>()
        )
            .prop_map(|(header, version, s, r, errors, is_learner)| {
                Response::Status(StatusResponse {
                    header,
                    version,
                    db_size: s[0],
                    leader: r[0],
                    raft_index: r[1],
                    raft_term: r[2],
                    raft_applied_index: r[3],
                    errors,
                    db_size_in_use: s[1],
                    is_learner,
                })
            }),
        header().prop_map(|header| Response::Defragment(DefragmentResponse { header })),
        (header(), any::<u32>())
            .prop_map(|(header, hash)| Response::Hash(HashResponse { header, hash })),
        (header(), any::<u32>(), any::<i64>()).prop_map(|(header, hash, compact_revision)| {
            Response::HashKv(HashKvResponse {
                header,
                hash,
                compact_revision,
            })
        }),
        (header(), any::<u64>(), bytes()).prop_map(|(header, remaining_bytes, blob)| {
            Response::Snapshot(SnapshotResponse {
                header,
                remaining_bytes,
                blob,
            })
        }),
        header().prop_map(|header| Response::MoveLeader(MoveLeaderResponse { header })),
        error_response().prop_map(Response::Error),
    ]
}

pub fn internal_request() -> impl Strategy<Value = InternalRequest> {
    let body = prop_oneof![
        put_request().prop_map(InternalBody::Put),
        delete_request().prop_map(InternalBody::DeleteRange),
        txn_request().prop_map(InternalBody::Txn),
        (any::<i64>(), any::<bool>()).prop_map(|(revision, physical)| InternalBody::Compaction(
            CompactionRequest { revision, physical }
        )),
        (any::<i64>(), any::<i64>())
            .prop_map(|(ttl, id)| InternalBody::LeaseGrant(LeaseGrantRequest { ttl, id })),
        any::<i64>().prop_map(|id| InternalBody::LeaseRevoke(LeaseRevokeRequest { id })),
        vec((any::<i64>(), any::<i64>()), 0..3).prop_map(|c| {
            InternalBody::LeaseCheckpoint(LeaseCheckpointRequest {
                checkpoints: c
                    .into_iter()
                    .map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
                    .collect(),
            })
        }),
        alarm_request().prop_map(InternalBody::Alarm),
    ];
    (any::<u64>(), body).prop_map(|(id, body)| InternalRequest {
        header: InternalHeader {
            id,
            member_id: id ^ 0x5a5a,
        },
        body,
    })
}

/// A txn nested `depth` levels deep (depth 1 = no nested txn).
pub fn nested_txn(depth: usize) -> TxnRequest {
    let mut txn = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })],
        failure: vec![],
    };
    for _ in 1..depth {
        txn = TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![RequestOp::Txn(txn)],
        };
    }
    txn
}
