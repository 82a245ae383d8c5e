//! The client's API against a real single-member keel server: KV builders and transactions,
//! compaction, watches (ordered delivery, a compacted start revision reported as such), leases
//! and the keepalive helper, maintenance and cluster calls, snapshot, the blocking wrapper.

mod common;

use std::time::Duration;

use common::*;
use keel_client::{
    blocking, proto as p, Client, Compare, ConnectOptions, Error, LeaseState, Op, SortOrder,
    SortTarget,
};

fn server() -> (tempfile::TempDir, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let p = keel_single(dir.path());
    wait_ready(&keelctl_bin(), &p.endpoint(), &p);
    (dir, p)
}

async fn client(p: &Proc) -> Client {
    Client::connect([p.endpoint()], ConnectOptions::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_builders_txn_and_compaction() {
    let (_d, srv) = server();
    let c = client(&srv).await;
    let mut revs = Vec::new();
    for (k, v) in [("/a/1", "z"), ("/a/2", "y"), ("/a/3", "x"), ("/b/1", "w")] {
        revs.push(c.put(k, v).await.unwrap().header.revision);
    }
    let r = c.put("/a/1", "z2").prev_kv().await.unwrap();
    assert_eq!(r.prev_kv.unwrap().value, b"z");

    let r = c.get("/a/").prefix().await.unwrap();
    assert_eq!(r.count, 3);
    let keys: Vec<&[u8]> = r.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, [&b"/a/1"[..], b"/a/2", b"/a/3"]);
    let r = c
        .get("/a/")
        .prefix()
        .sort(SortTarget::Value, SortOrder::Ascend)
        .limit(2)
        .await
        .unwrap();
    assert!(r.more);
    assert_eq!(r.kvs[0].value, b"x");
    assert_eq!(r.kvs[1].value, b"y");
    let r = c.get("/a/1").rev(revs[0]).await.unwrap();
    assert_eq!(r.kvs[0].value, b"z", "read at an old revision");
    let r = c.get("/").prefix().count_only().await.unwrap();
    assert_eq!((r.count, r.kvs.len()), (4, 0));
    let r = c
        .get("/a/")
        .prefix()
        .keys_only()
        .serializable()
        .await
        .unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()) && r.kvs.len() == 3);

    // Txn: compare and swap, both branches.
    let t = c
        .txn()
        .when([Compare::value("/a/2").eq("y")])
        .and_then([Op::from(Op::put("/a/2", "y2")), Op::from(Op::get("/a/2"))])
        .or_else([Op::get("/a/2")])
        .await
        .unwrap();
    assert!(t.succeeded);
    match &t.responses[1] {
        p::ResponseOp::Range(r) => assert_eq!(r.kvs[0].value, b"y2"),
        o => panic!("{o:?}"),
    }
    let t = c
        .txn()
        .when([Compare::version("/a/2").lt(2)])
        .and_then([Op::delete("/a/2")])
        .or_else([Op::get("/a/2")])
        .await
        .unwrap();
    assert!(!t.succeeded);

    let d = c.delete("/a/").prefix().prev_kv().await.unwrap();
    assert_eq!(d.deleted, 3);
    assert_eq!(d.prev_kvs.len(), 3);

    let head = c.get("/").prefix().await.unwrap().header.revision;
    c.compact(head - 1, true).await.unwrap();
    match c.get("/a/1").rev(revs[0]).await {
        Err(e) => assert_eq!(e.code(), Some(p::ErrorCode::Compacted)),
        Ok(r) => panic!("read below the compaction: {r:?}"),
    }
    // A builder without a client says so.
    assert!(matches!(Op::get("x").await, Err(Error::InvalidArgument(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_in_order_and_reports_compaction() {
    let (_d, srv) = server();
    let c = client(&srv).await;
    let mut w = c.watch("/w/").prefix().prev_kv().await.unwrap();
    let first = c.put("/w/a", "1").await.unwrap().header.revision;
    c.put("/w/a", "2").await.unwrap();
    c.put("/x", "not watched").await.unwrap();
    c.delete("/w/a").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let b = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.extend(b.events);
    }
    assert_eq!(got[0].kv.mod_revision, first);
    assert_eq!(got[1].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(got[2].event_type, p::EventType::Delete);
    assert!(got.iter().all(|e| e.kv.key.starts_with(b"/w/")));

    // Starting below the compaction revision is reported, not silently skipped.
    let head = c.put("/w/b", "x").await.unwrap().header.revision;
    c.compact(head, true).await.unwrap();
    match c.watch("/w/").prefix().rev(first).await {
        Err(Error::Compacted { compact_revision }) => assert_eq!(compact_revision, head),
        Ok(mut w) => match w.next().await {
            Some(Err(Error::Compacted { compact_revision })) => {
                assert_eq!(compact_revision, head)
            }
            other => panic!("expected a compaction error, got {other:?}"),
        },
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_keepalive() {
    let (_d, srv) = server();
    let c = client(&srv).await;
    let g = c.lease_grant(5).await.unwrap();
    assert_eq!(g.ttl, 5);
    c.put("/l/k", "v").lease(g.id).await.unwrap();
    let t = c.lease_time_to_live(g.id, true).await.unwrap();
    assert_eq!(t.granted_ttl, 5);
    assert_eq!(t.keys, vec![b"/l/k".to_vec()]);
    let ls = c.lease_leases().await.unwrap();
    assert!(ls.leases.iter().any(|l| l.id == g.id));

    let mut ka = c.keep_alive(g.id);
    match ka.changed().await {
        LeaseState::Alive(ttl) => assert!(ttl > 0),
        s => panic!("{s:?}"),
    }
    c.lease_revoke(g.id).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(20), ka.lost())
        .await
        .expect("the keepalive notices the revoked lease");
    assert_eq!(lost.code(), Some(p::ErrorCode::LeaseNotFound));
    assert!(c.get("/l/k").await.unwrap().kvs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_cluster_and_snapshot() {
    let (_d, srv) = server();
    let c = client(&srv).await;
    c.put("k", "v").await.unwrap();
    let s = c.status_on(0).await.unwrap();
    assert_eq!(s.leader, s.header.member_id);
    let m = c.member_list().await.unwrap();
    assert_eq!(m.members.len(), 1);
    assert_eq!(m.members[0].id, s.header.member_id);
    let h1 = c.hash_kv_on(0, 0).await.unwrap();
    let h2 = c.hash_kv_on(0, 0).await.unwrap();
    assert_eq!(h1.hash, h2.hash);
    c.defragment_on(0).await.unwrap();
    assert!(c.alarm_list().await.unwrap().alarms.is_empty());
    let mut buf = Vec::new();
    let n = c.snapshot_on(0, &mut buf).await.unwrap();
    assert!(n > 0);
    assert_eq!(n as usize, buf.len());
}

#[test]
fn blocking_client() {
    let (_d, srv) = server();
    let c = blocking::Client::connect([srv.endpoint()], ConnectOptions::default()).unwrap();
    c.put("bk", "bv").unwrap();
    assert_eq!(c.get("bk").unwrap().kvs[0].value, b"bv");
    let r = c
        .block_on(c.inner().get("b").prefix().count_only())
        .unwrap();
    assert_eq!(r.count, 1);
    assert_eq!(c.delete("bk").unwrap().deleted, 1);
}
