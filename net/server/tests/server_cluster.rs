//! A real 3-member `keel` cluster on loopback (issue 7, point 1): writes through every member
//! (followers forward to the leader), SIGKILL of the leader under write load, a new leader,
//! no acknowledged write lost, every member converging to the same HashKV, and the killed
//! member restarting and catching up.

mod server_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_proto as p;
use server_common::*;

struct Cluster {
    servers: Vec<Server>,
    /// Peer URL of each server (same order).
    peers: Vec<String>,
    /// The --initial-cluster of the founding members.
    initial: String,
    dir: tempfile::TempDir,
}

fn member_args(
    dir: &std::path::Path,
    name: &str,
    client: SocketAddr,
    peer: &str,
    initial: &str,
) -> Vec<String> {
    vec![
        "--name".into(),
        name.to_string(),
        "--data-dir".into(),
        dir.join(name).display().to_string(),
        "--listen-client-urls".into(),
        format!("http://{client}"),
        "--listen-peer-urls".into(),
        peer.to_string(),
        "--initial-advertise-peer-urls".into(),
        peer.to_string(),
        "--initial-cluster".into(),
        initial.to_string(),
        "--heartbeat-interval".into(),
        "50".into(),
        "--election-timeout".into(),
        "500".into(),
        // Small, so a restarted member needs a snapshot when it was down long enough.
        "--snapshot-count".into(),
        "300".into(),
        "--experimental-snapshot-catchup-entries".into(),
        "100".into(),
    ]
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(6);
    let names = ["a", "b", "c"];
    let peers: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{}", ports[3 + i]))
        .collect();
    let initial: Vec<String> = names
        .iter()
        .zip(&peers)
        .map(|(n, p)| format!("{n}={p}"))
        .collect();
    let initial = initial.join(",");
    let servers = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let client: SocketAddr = format!("127.0.0.1:{}", ports[i]).parse().unwrap();
            let args = member_args(dir.path(), n, client, &peers[i], &initial);
            Server::start(n, client, dir.path(), args)
        })
        .collect();
    Cluster {
        servers,
        peers,
        initial,
        dir,
    }
}

/// Status of every running member (None where it does not answer).
fn statuses(c: &Cluster) -> Vec<Option<p::StatusResponse>> {
    c.servers
        .iter()
        .map(|s| {
            s.pid()?;
            Client::connect(s.client).ok()?.status().ok()
        })
        .collect()
}

/// The index of the member every answering member agrees leads.
fn agreed_leader(c: &Cluster) -> Option<usize> {
    let st = statuses(c);
    let ids: Vec<u64> = st.iter().flatten().map(|s| s.header.member_id).collect();
    let leader = st.iter().flatten().next()?.leader;
    if leader == 0 || !st.iter().flatten().all(|s| s.leader == leader) {
        return None;
    }
    let at = ids.iter().position(|&id| id == leader)?;
    // `ids` skips members that did not answer: map back to the server index.
    st.iter()
        .enumerate()
        .filter(|(_, s)| s.is_some())
        .nth(at)
        .map(|(i, _)| i)
}

fn logs(c: &Cluster) -> String {
    c.servers
        .iter()
        .map(|s| format!("--- {} ---\n{}", s.name, s.log()))
        .collect()
}

/// Acknowledged writes: key → revision.
type Acked = Arc<Mutex<BTreeMap<String, i64>>>;

/// Writes distinct keys through every member from several threads until `stop`, recording
/// every acknowledged (key, revision). Errors (including unknown outcomes) are not recorded.
fn writers(
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
) -> (Acked, Vec<std::thread::JoinHandle<()>>) {
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let threads = (0..6)
        .map(|t| {
            let (addrs, stop, acked) = (addrs.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut conn: Option<Client> = None;
                while !stop.load(Ordering::Relaxed) {
                    let addr = addrs[(t + n as usize) % addrs.len()];
                    if conn.is_none() {
                        conn = Client::connect(addr).ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        n += 1;
                        continue;
                    };
                    let key = format!("w{t}/{n:06}");
                    match c.put(&key, "v") {
                        Ok(r) => {
                            acked.lock().unwrap().insert(key, r.header.revision);
                        }
                        Err(_) => conn = None,
                    }
                    n += 1;
                }
            })
        })
        .collect();
    (acked, threads)
}

/// Waits until every member in `members` answers HashKV at `target` with the same hash and
/// returns the hashes.
fn converge(c: &Cluster, members: &[usize], target: i64) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hs: Vec<Option<u32>> = members
            .iter()
            .map(|&i| {
                let mut cl = Client::connect(c.servers[i].client).ok()?;
                match cl.call(p::Request::HashKv(p::HashKvRequest { revision: target })) {
                    Ok(p::Response::HashKv(h)) if h.header.revision >= target => Some(h.hash),
                    _ => None,
                }
            })
            .collect();
        if hs.iter().all(|h| h.is_some() && *h == hs[0]) {
            return hs.into_iter().flatten().collect();
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge: {hs:?}\n{}",
            logs(c)
        );
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// Checks that every acknowledged write at or below `target` is in member `i`'s own state
/// (a serializable read at `target`).
fn check_acked(c: &Cluster, i: usize, acked: &BTreeMap<String, i64>, target: i64) {
    let mut cl = Client::connect_wait(c.servers[i].client, Duration::from_secs(10));
    let r = match cl
        .call(p::Request::Range(p::RangeRequest {
            key: b"w".to_vec(),
            range_end: b"x".to_vec(),
            serializable: true,
            revision: target,
            keys_only: true,
            ..Default::default()
        }))
        .unwrap()
    {
        p::Response::Range(r) => r,
        r => panic!("{r:?}"),
    };
    let have: BTreeMap<String, i64> = r
        .kvs
        .iter()
        .map(|kv| (String::from_utf8(kv.key.clone()).unwrap(), kv.mod_revision))
        .collect();
    for (k, rev) in acked {
        if *rev <= target {
            assert_eq!(
                have.get(k),
                Some(rev),
                "acknowledged {k}@{rev} missing on {}",
                c.servers[i].name
            );
        }
    }
}

#[test]
fn killing_the_leader_under_load_loses_nothing_and_members_converge() {
    let mut c = start_cluster();
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&c));
    let addrs: Vec<SocketAddr> = c.servers.iter().map(|s| s.client).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, threads) = writers(addrs.clone(), stop.clone());
    wait_for("writes before the kill", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    });
    c.servers[leader].kill();
    let before_kill = acked.lock().unwrap().len();
    // A new leader among the survivors, and writes continue through them.
    let new_leader = wait_for("a new leader", Duration::from_secs(30), || {
        agreed_leader(&c).filter(|&l| l != leader)
    });
    wait_for("writes after the kill", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= before_kill + 300).then_some(())
    });
    // Restart the killed member: 300+ entries behind with only 100 kept after a compaction,
    // it catches up through a snapshot of the store.
    c.servers[leader].restart();
    wait_for("writes after the restart", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= before_kill + 600).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // Every member reaches the same revision and HashKV.
    let mut cl = Client::connect_wait(c.servers[new_leader].client, Duration::from_secs(10));
    let target = cl.status().unwrap().header.revision;
    let hashes = converge(&c, &[0, 1, 2], target);
    assert!(
        c.servers[leader].log().contains("installed snapshot"),
        "the restarted member caught up through a snapshot\n{}",
        c.servers[leader].log()
    );
    eprintln!(
        "{} acknowledged writes; leader {leader} killed, new leader {new_leader}; HashKV at {target}: {hashes:?}",
        acked.len()
    );
    // No acknowledged write lost, on any member (serializable reads: each member's own state).
    for i in 0..3 {
        check_acked(&c, i, &acked, target);
    }
}

fn member_call(c: &Cluster, at: usize, req: p::Request) -> p::Response {
    let mut cl = Client::connect_wait(c.servers[at].client, Duration::from_secs(10));
    match cl.call(req) {
        Ok(r) => r,
        Err(e) => panic!("membership call failed: {e:?}\n{}", logs(c)),
    }
}

fn member_list(c: &Cluster, at: usize) -> Vec<p::Member> {
    match member_call(
        c,
        at,
        p::Request::MemberList(p::MemberListRequest::default()),
    ) {
        p::Response::MemberList(l) => l.members,
        r => panic!("{r:?}"),
    }
}

/// Issue 7, point 2: a learner added, caught up and promoted, then a founding member removed,
/// all under write load; nothing acknowledged is lost and the final members converge.
#[test]
fn adding_promoting_and_removing_members_under_load_loses_nothing() {
    let mut c = start_cluster();
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&c));
    let addrs: Vec<SocketAddr> = c.servers.iter().map(|s| s.client).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, threads) = writers(addrs.clone(), stop.clone());
    wait_for("writes", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= 200).then_some(())
    });
    assert_eq!(member_list(&c, leader).len(), 3);
    // Add "d" as a learner, then start it with --initial-cluster-state existing.
    let ports = free_ports(2);
    let d_client: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let d_peer = format!("http://127.0.0.1:{}", ports[1]);
    let added = match member_call(
        &c,
        leader,
        p::Request::MemberAdd(p::MemberAddRequest {
            peer_urls: vec![d_peer.clone()],
            is_learner: true,
        }),
    ) {
        p::Response::MemberAdd(r) => r,
        r => panic!("{r:?}"),
    };
    let d_id = added.member.as_ref().expect("the added member").id;
    assert!(added.member.as_ref().unwrap().is_learner);
    assert_eq!(added.members.len(), 4);
    let mut args = member_args(
        c.dir.path(),
        "d",
        d_client,
        &d_peer,
        &format!("{},d={d_peer}", c.initial),
    );
    args.extend(["--initial-cluster-state".into(), "existing".into()]);
    c.servers
        .push(Server::start("d", d_client, c.dir.path(), args));
    c.peers.push(d_peer);
    // The learner catches up: its own (serializable) view reaches what was acknowledged.
    let seen = acked.lock().unwrap().len();
    wait_for("the learner to catch up", Duration::from_secs(60), || {
        let mut cl = Client::connect(d_client).ok()?;
        let st = cl.status().ok()?;
        let r = cl
            .call(p::Request::Range(p::RangeRequest {
                key: b"w".to_vec(),
                range_end: b"x".to_vec(),
                serializable: true,
                count_only: true,
                ..Default::default()
            }))
            .ok()?;
        let p::Response::Range(r) = r else {
            return None;
        };
        (st.is_learner && st.header.member_id == d_id && r.count as usize >= seen).then_some(())
    });
    // Promote it.
    match member_call(
        &c,
        leader,
        p::Request::MemberPromote(p::MemberPromoteRequest { id: d_id }),
    ) {
        p::Response::MemberPromote(r) => {
            assert!(r.members.iter().any(|m| m.id == d_id && !m.is_learner))
        }
        r => panic!("{r:?}"),
    }
    // Remove a founding follower, then stop its process.
    let gone = (0..3).find(|&i| i != leader).unwrap();
    let gone_id = Client::connect_wait(c.servers[gone].client, Duration::from_secs(10))
        .status()
        .unwrap()
        .header
        .member_id;
    match member_call(
        &c,
        leader,
        p::Request::MemberRemove(p::MemberRemoveRequest { id: gone_id }),
    ) {
        p::Response::MemberRemove(r) => {
            assert_eq!(r.members.len(), 3);
            assert!(r.members.iter().all(|m| m.id != gone_id));
        }
        r => panic!("{r:?}"),
    }
    c.servers[gone].kill();
    let before = acked.lock().unwrap().len();
    wait_for("writes after the changes", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() >= before + 200).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let remaining: Vec<usize> = (0..c.servers.len()).filter(|&i| i != gone).collect();
    let target = Client::connect_wait(c.servers[leader].client, Duration::from_secs(10))
        .status()
        .unwrap()
        .header
        .revision;
    converge(&c, &remaining, target);
    for &i in &remaining {
        check_acked(&c, i, &acked, target);
    }
    let list = member_list(&c, leader);
    assert_eq!(list.len(), 3);
    assert!(list
        .iter()
        .any(|m| m.id == d_id && !m.is_learner && m.name == "d"));
    eprintln!(
        "{} acknowledged writes; learner {d_id:x} added, caught up and promoted; {gone_id:x} removed",
        acked.len()
    );
}

/// Issue 7 (maintenance): a member whose stored history differs from the leader's is found by
/// the leader's periodic HashKV comparison and gets the CORRUPT alarm; with it raised, the
/// cluster refuses reads and writes with etcd's "corrupt cluster" error.
#[test]
fn a_member_with_a_different_history_raises_the_corrupt_alarm() {
    let mut c = start_cluster();
    for s in &mut c.servers {
        s.terminate();
        s.args
            .extend(["--experimental-corrupt-check-time".into(), "1s".into()]);
        s.restart();
    }
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&c));
    let mut cl = Client::connect_wait(c.servers[leader].client, Duration::from_secs(10));
    for i in 0..50 {
        // Right after the restart an election may still be settling (a member that had not
        // answered yet when the leader was read): retry a refused put (seen once in a full
        // local run under load; the error is printed for the next look).
        wait_for("a put to be accepted", Duration::from_secs(30), || match cl
            .put(&format!("k{i}"), "v")
        {
            Ok(_) => Some(()),
            Err(e) => {
                eprintln!("put k{i} refused, retrying: {e:?}");
                None
            }
        });
    }
    let rev = cl.status().unwrap().header.revision;
    let victim = (0..3).find(|&i| i != leader).unwrap();
    let victim_id = wait_for("the victim to catch up", Duration::from_secs(30), || {
        let st = Client::connect(c.servers[victim].client)
            .ok()?
            .status()
            .ok()?;
        (st.header.revision >= rev).then_some(st.header.member_id)
    });
    // No alarm while the histories agree (the check runs every second).
    let alarms = |c: &Cluster, at: usize| -> Option<Vec<p::AlarmMember>> {
        let mut cl = Client::connect(c.servers[at].client).ok()?;
        match cl.call(p::Request::Alarm(p::AlarmRequest {
            action: p::AlarmAction::Get,
            ..Default::default()
        })) {
            Ok(p::Response::Alarm(a)) => Some(a.alarms),
            _ => None,
        }
    };
    assert_eq!(alarms(&c, leader), Some(vec![]));
    // Change one stored revision's value on the victim while it is stopped.
    assert!(c.servers[victim].terminate().success());
    let db_path = c.dir.path().join(&c.servers[victim].name).join("member/db");
    {
        let db = keel_engine::btree::Database::open(&db_path, Default::default()).unwrap();
        let (k, v) = {
            let r = db.begin_read();
            let b = r.bucket(b"key").unwrap().unwrap();
            let (k, v) = b.iter().nth(10).unwrap().unwrap();
            (k.to_vec(), v.to_vec())
        };
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&v);
        let mut rec =
            rkyv::from_bytes::<keel_engine::mvcc::Record, rkyv::rancor::Error>(&aligned).unwrap();
        rec.value = b"tampered".to_vec();
        let mut w = db.begin_write().unwrap();
        w.bucket(b"key").unwrap().put(&k, &rec.to_bytes()).unwrap();
        w.commit_durable().unwrap();
    }
    c.servers[victim].restart();
    let raised = wait_for("the CORRUPT alarm", Duration::from_secs(30), || {
        alarms(&c, leader).filter(|a| !a.is_empty())
    });
    assert_eq!(
        raised,
        vec![p::AlarmMember {
            member_id: victim_id,
            alarm: p::AlarmType::Corrupt
        }]
    );
    let mut cl = Client::connect_wait(c.servers[leader].client, Duration::from_secs(10));
    match cl.put("after", "x") {
        Err(CallError::Server(e)) => assert_eq!(e.message, "etcdserver: corrupt cluster"),
        r => panic!("a write with CORRUPT raised: {r:?}"),
    }
    match cl.get("k1", false) {
        Err(CallError::Server(e)) => assert_eq!(e.code, p::ErrorCode::Corrupt as u16),
        r => panic!("a read with CORRUPT raised: {r:?}"),
    }
}

fn call_ok(c: &mut Client, req: p::Request) -> p::Response {
    match c.call(req) {
        Ok(r) => r,
        Err(e) => panic!("{e:?}"),
    }
}

/// A call a follower forwards to the leader: until the leader has published its client URLs
/// (an entry it proposes once elected), the follower answers "no leader", which clients retry.
fn call_forwarded(c: &mut Client, req: p::Request) -> p::Response {
    wait_for(
        "the leader's client URLs",
        Duration::from_secs(10),
        || match c.call(req.clone()) {
            Ok(r) => Some(r),
            Err(CallError::Server(e)) if e.code == p::ErrorCode::NoLeader as u16 => None,
            Err(e) => panic!("{e:?}"),
        },
    )
}

/// Issue 7, point 1 on a cluster: txn, watch and lease end to end through followers (writes
/// forwarded to the leader, keepalive and TimeToLive forwarded too, watches served by the
/// member they were opened on), and a lease expiring on the leader's clock deletes its key on
/// every member.
#[test]
fn txn_watch_and_lease_work_through_any_member() {
    let c = start_cluster();
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&c));
    let f1 = (0..3).find(|&i| i != leader).unwrap();
    let f2 = (0..3).rev().find(|&i| i != leader).unwrap();
    let mut w = Client::connect_wait(c.servers[f1].client, Duration::from_secs(10));
    let create = w
        .send(
            &p::Request::Watch(p::WatchRequest::Create(p::WatchCreateRequest {
                key: b"e/".to_vec(),
                range_end: b"e0".to_vec(),
                ..Default::default()
            })),
            false,
        )
        .unwrap();
    let (id, _, r) = w.recv().unwrap();
    assert!(id == create && matches!(r, p::Response::Watch(ref x) if x.created));
    // A txn through the other follower.
    let mut c2 = Client::connect_wait(c.servers[f2].client, Duration::from_secs(10));
    let t = call_ok(
        &mut c2,
        p::Request::Txn(p::TxnRequest {
            compare: vec![],
            success: vec![
                p::RequestOp::Put(p::PutRequest {
                    key: b"e/a".to_vec(),
                    value: b"1".to_vec(),
                    ..Default::default()
                }),
                p::RequestOp::Put(p::PutRequest {
                    key: b"e/b".to_vec(),
                    value: b"2".to_vec(),
                    ..Default::default()
                }),
            ],
            failure: vec![],
        }),
    );
    let p::Response::Txn(t) = t else { panic!() };
    let (_, _, r) = w.recv().unwrap();
    let p::Response::Watch(ev) = r else { panic!() };
    assert_eq!(ev.events.len(), 2);
    assert!(ev
        .events
        .iter()
        .all(|e| e.kv.mod_revision == t.header.revision));
    // Lease: granted through a follower, kept alive and inspected through it, revoked.
    let p::Response::LeaseGrant(g) = call_ok(
        &mut c2,
        p::Request::LeaseGrant(p::LeaseGrantRequest { ttl: 30, id: 0 }),
    ) else {
        panic!()
    };
    call_ok(
        &mut c2,
        p::Request::Put(p::PutRequest {
            key: b"e/l".to_vec(),
            value: b"x".to_vec(),
            lease: g.id,
            ..Default::default()
        }),
    );
    let p::Response::LeaseKeepAlive(ka) = call_forwarded(
        &mut c2,
        p::Request::LeaseKeepAlive(p::LeaseKeepAliveRequest { id: g.id }),
    ) else {
        panic!()
    };
    assert_eq!((ka.id, ka.ttl), (g.id, 30));
    let p::Response::LeaseTimeToLive(ttl) = call_forwarded(
        &mut c2,
        p::Request::LeaseTimeToLive(p::LeaseTimeToLiveRequest {
            id: g.id,
            keys: true,
        }),
    ) else {
        panic!()
    };
    assert_eq!(
        (ttl.granted_ttl, ttl.keys.clone()),
        (30, vec![b"e/l".to_vec()])
    );
    assert!(ttl.ttl > 0 && ttl.ttl <= 30);
    call_ok(
        &mut c2,
        p::Request::LeaseRevoke(p::LeaseRevokeRequest { id: g.id }),
    );
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (_, _, r) = w.recv().unwrap();
        let p::Response::Watch(ev) = r else { panic!() };
        seen.extend(ev.events.into_iter().map(|e| e.event_type));
    }
    assert_eq!(seen, vec![p::EventType::Put, p::EventType::Delete]);
    // Expiry: the shortest TTL etcd allows with these timings; nobody keeps it alive.
    let p::Response::LeaseGrant(g) = call_ok(
        &mut c2,
        p::Request::LeaseGrant(p::LeaseGrantRequest { ttl: 1, id: 0 }),
    ) else {
        panic!()
    };
    call_ok(
        &mut c2,
        p::Request::Put(p::PutRequest {
            key: b"e/short".to_vec(),
            value: b"x".to_vec(),
            lease: g.id,
            ..Default::default()
        }),
    );
    let (_, _, r) = w.recv().unwrap();
    let p::Response::Watch(put) = r else { panic!() };
    assert_eq!(put.events[0].kv.key, b"e/short");
    let (_, _, r) = w.recv().unwrap();
    let p::Response::Watch(del) = r else { panic!() };
    assert_eq!(
        (del.events[0].event_type, del.events[0].kv.key.clone()),
        (p::EventType::Delete, b"e/short".to_vec()),
        "the lease expired through a revoke entry"
    );
    for s in &c.servers {
        let mut cl = Client::connect_wait(s.client, Duration::from_secs(10));
        let r = wait_for("the expiry everywhere", Duration::from_secs(10), || {
            cl.get("e/short", true).ok().filter(|r| r.kvs.is_empty())
        });
        assert!(r.kvs.is_empty());
    }
}
