//! A real single-member `keel` process: writes, reads (linearizable and serializable), txn,
//! watch, lease, restart with nothing acknowledged lost, clean SIGTERM shutdown, and garbage
//! frames from one client not affecting another.

mod server_common;

use std::time::Duration;

use keel_proto as p;
use server_common::*;

fn start(dir: &std::path::Path) -> Server {
    start_with(dir, &[])
}

fn start_with(dir: &std::path::Path, extra: &[&str]) -> Server {
    let ports = free_ports(2);
    let client = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let mut args = single_args(dir, ports[0], ports[1]);
    args.extend(extra.iter().map(|a| a.to_string()));
    Server::start("single", client, dir, args)
}

/// Parks every batch it may: no publish-as-you-apply window after a read, so each read below
/// finds the writes before it parked and must wait for them to be published.
const PARK_ALWAYS: &[&str] = &["--experimental-park-after-read-ms", "0"];

/// A connection to `s` once it has a leader. Reconnects on errors: right after a SIGKILL the
/// killed process's listening socket can outlive it briefly (io_uring tears down asynchronously)
/// and accept a connection that is then reset.
fn leader(s: &Server) -> Client {
    let mut c = Client::connect_wait(s.client, Duration::from_secs(20));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut errors = Vec::new();
    loop {
        match c.status() {
            Ok(st) if st.leader != 0 => return c,
            Ok(_) => {}
            Err(e) => {
                errors.push(format!("{e:?}"));
                c = Client::connect_wait(s.client, Duration::from_secs(20));
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader; errors: {:?}\n{}",
            &errors[..errors.len().min(5)],
            s.log()
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

#[test]
fn put_get_and_restart_keep_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path());
    let mut c = leader(&s);
    let mut last = 0;
    for i in 0..200 {
        let r = c.put(&format!("k{i:03}"), &format!("v{i}")).unwrap();
        assert!(r.header.revision > last, "revisions increase");
        last = r.header.revision;
    }
    let g = c.get("k007", false).unwrap();
    assert_eq!(g.kvs.len(), 1);
    assert_eq!(g.kvs[0].value, b"v7");
    assert_eq!(g.header.revision, last);
    let g = c.get("k199", true).unwrap();
    assert_eq!(g.kvs[0].value, b"v199");
    // SIGKILL, restart: every acknowledged write is there (WAL replay after the durable index).
    drop(c);
    s.kill();
    s.restart();
    let mut c = leader(&s);
    let all = match c
        .call(p::Request::Range(p::RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        }))
        .unwrap()
    {
        p::Response::Range(r) => r,
        r => panic!("{r:?}"),
    };
    assert_eq!(all.count, 200, "{}", s.log());
    assert_eq!(all.header.revision, last);
    // SIGTERM: a clean exit.
    drop(c);
    let st = s.terminate();
    assert!(st.success(), "exit status {st:?}\n{}", s.log());
}

/// The apply core parks batches (answered, not yet in the published read view) until a read
/// needs them: a read that starts after a write was answered must see it, whichever
/// connection it comes on and whatever reads the store (ranges, status, hash).
#[test]
fn a_read_sees_every_write_answered_before_it_on_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), PARK_ALWAYS);
    let mut a = leader(&s);
    let mut b = leader(&s);
    for i in 0..300 {
        let v = format!("v{i}");
        let put = a.put("k", &v).unwrap();
        let rev = put.header.revision;
        match i % 5 {
            0 | 1 => {
                let g = b.get("k", i % 4 == 0).unwrap();
                assert_eq!(g.kvs.len(), 1, "round {i}");
                assert_eq!(g.kvs[0].value, v.as_bytes(), "round {i}");
                assert_eq!(g.kvs[0].mod_revision, rev, "round {i}");
                assert!(g.header.revision >= rev, "round {i}");
            }
            2 => {
                let st = b.status().unwrap();
                assert!(
                    st.header.revision >= rev,
                    "round {i}: status at {}",
                    st.header.revision
                );
            }
            3 => {
                // A read-only txn is a read (no log entry): it must see the write all the same.
                let t = read_only_txn(b"k", i % 2 == 0);
                let p::Response::Txn(t) = b.call(p::Request::Txn(t)).unwrap() else {
                    panic!("round {i}: not a txn answer")
                };
                let p::ResponseOp::Range(g) = &t.responses[0] else {
                    panic!("round {i}: {t:?}")
                };
                assert_eq!(g.kvs.len(), 1, "round {i}");
                assert_eq!(g.kvs[0].mod_revision, rev, "round {i}");
                assert!(t.header.revision >= rev, "round {i}");
            }
            _ => {
                let h = match b
                    .call(p::Request::HashKv(p::HashKvRequest { revision: 0 }))
                    .unwrap()
                {
                    p::Response::HashKv(h) => h,
                    r => panic!("unexpected {r:?}"),
                };
                assert!(
                    h.header.revision >= rev,
                    "round {i}: hashkv at {}",
                    h.header.revision
                );
            }
        }
    }
}

/// A txn that only reads `key` (serializable or not) when `key` exists, else reads nothing.
fn read_only_txn(key: &[u8], serializable: bool) -> p::TxnRequest {
    p::TxnRequest {
        compare: vec![p::Compare {
            result: p::CompareResult::Greater,
            target: p::CompareTarget::Version,
            key: key.to_vec(),
            target_union: p::TargetUnion::Version(0),
            range_end: vec![],
        }],
        success: vec![p::RequestOp::Range(p::RangeRequest {
            key: key.to_vec(),
            serializable,
            ..Default::default()
        })],
        failure: vec![],
    }
}

#[test]
fn a_read_only_txn_is_answered_without_a_log_entry_and_a_writing_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let mut c = leader(&s);
    c.put("k", "v").unwrap();
    let index = |c: &mut Client| c.status().unwrap().raft_index;
    let before = index(&mut c);
    for serializable in [false, true, false, true] {
        let p::Response::Txn(t) = c
            .call(p::Request::Txn(read_only_txn(b"k", serializable)))
            .unwrap()
        else {
            panic!("not a txn answer")
        };
        assert!(t.succeeded);
    }
    assert_eq!(index(&mut c), before, "read-only txns went through the log");
    let mut w = read_only_txn(b"k", false);
    w.failure.push(p::RequestOp::Put(p::PutRequest {
        key: b"k2".to_vec(),
        value: b"x".to_vec(),
        ..Default::default()
    }));
    c.call(p::Request::Txn(w)).unwrap();
    assert_eq!(
        index(&mut c),
        before + 1,
        "a txn that may write is proposed"
    );
}

/// A watch event is an acknowledgement too: a read that starts after a watcher saw a change
/// sees it, even before the writer has its answer.
#[test]
fn a_read_sees_what_a_watcher_was_told() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), PARK_ALWAYS);
    let mut a = leader(&s);
    let mut r = leader(&s);
    let mut w = leader(&s);
    let create = w
        .send(
            &p::Request::Watch(p::WatchRequest::Create(p::WatchCreateRequest {
                key: b"w".to_vec(),
                ..Default::default()
            })),
            false,
        )
        .unwrap();
    let (id, _, created) = w.recv().unwrap();
    assert_eq!(id, create);
    assert!(matches!(created, p::Response::Watch(c) if c.created));
    for i in 0..100 {
        let v = format!("v{i}");
        let put = a
            .send(
                &p::Request::Put(p::PutRequest {
                    key: b"w".to_vec(),
                    value: v.clone().into_bytes(),
                    ..Default::default()
                }),
                false,
            )
            .unwrap();
        let (_, _, ev) = w.recv().unwrap();
        let p::Response::Watch(ev) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(ev.events.len(), 1, "round {i}");
        let rev = ev.events[0].kv.mod_revision;
        let g = r.get("w", true).unwrap();
        assert_eq!(g.kvs[0].value, v.as_bytes(), "round {i}");
        assert_eq!(g.kvs[0].mod_revision, rev, "round {i}");
        let (id, _, _) = a.recv().unwrap();
        assert_eq!(id, put);
    }
}

#[test]
fn txn_watch_and_lease_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let mut c = leader(&s);
    let mut w = Client::connect_wait(s.client, Duration::from_secs(5));
    let create = w
        .send(
            &p::Request::Watch(p::WatchRequest::Create(p::WatchCreateRequest {
                key: b"w/".to_vec(),
                range_end: b"w0".to_vec(),
                prev_kv: true,
                ..Default::default()
            })),
            false,
        )
        .unwrap();
    let (id, more, r) = w.recv().unwrap();
    assert_eq!(id, create);
    assert!(more);
    let p::Response::Watch(created) = r else {
        panic!("{r:?}")
    };
    assert!(created.created);
    // A txn that puts two keys in one revision.
    let t = c
        .call(p::Request::Txn(p::TxnRequest {
            compare: vec![p::Compare {
                result: p::CompareResult::Equal,
                target: p::CompareTarget::Version,
                key: b"w/a".to_vec(),
                target_union: p::TargetUnion::Version(0),
                range_end: vec![],
            }],
            success: vec![
                p::RequestOp::Put(p::PutRequest {
                    key: b"w/a".to_vec(),
                    value: b"1".to_vec(),
                    ..Default::default()
                }),
                p::RequestOp::Put(p::PutRequest {
                    key: b"w/b".to_vec(),
                    value: b"2".to_vec(),
                    ..Default::default()
                }),
            ],
            failure: vec![],
        }))
        .unwrap();
    let p::Response::Txn(t) = t else { panic!() };
    assert!(t.succeeded);
    let (id, more, r) = w.recv().unwrap();
    assert_eq!((id, more), (create, true));
    let p::Response::Watch(ev) = r else { panic!() };
    assert_eq!(ev.events.len(), 2, "one response per revision (W4)");
    assert!(ev
        .events
        .iter()
        .all(|e| e.kv.mod_revision == t.header.revision));
    // Lease: grant, attach, revoke deletes the key and the watcher sees it.
    let g = c
        .call(p::Request::LeaseGrant(p::LeaseGrantRequest {
            ttl: 60,
            id: 0,
        }))
        .unwrap();
    let p::Response::LeaseGrant(g) = g else {
        panic!()
    };
    assert!(g.id > 0 && g.ttl >= 60);
    c.call(p::Request::Put(p::PutRequest {
        key: b"w/l".to_vec(),
        value: b"x".to_vec(),
        lease: g.id,
        ..Default::default()
    }))
    .unwrap();
    let ka = c
        .call(p::Request::LeaseKeepAlive(p::LeaseKeepAliveRequest {
            id: g.id,
        }))
        .unwrap();
    let p::Response::LeaseKeepAlive(ka) = ka else {
        panic!()
    };
    assert_eq!(ka.ttl, g.ttl);
    let ttl = c
        .call(p::Request::LeaseTimeToLive(p::LeaseTimeToLiveRequest {
            id: g.id,
            keys: true,
        }))
        .unwrap();
    let p::Response::LeaseTimeToLive(ttl) = ttl else {
        panic!()
    };
    assert_eq!(ttl.keys, vec![b"w/l".to_vec()]);
    c.call(p::Request::LeaseRevoke(p::LeaseRevokeRequest { id: g.id }))
        .unwrap();
    assert!(c.get("w/l", false).unwrap().kvs.is_empty());
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let (_, _, r) = w.recv().unwrap();
        let p::Response::Watch(ev) = r else { panic!() };
        kinds.extend(ev.events.iter().map(|e| (e.event_type, e.kv.key.clone())));
    }
    assert_eq!(
        kinds,
        vec![
            (p::EventType::Put, b"w/l".to_vec()),
            (p::EventType::Delete, b"w/l".to_vec())
        ]
    );
}

#[test]
fn a_client_sending_garbage_does_not_affect_another() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let mut good = leader(&s);
    let mut bad = Client::connect_wait(s.client, Duration::from_secs(5));
    bad.send_raw(&[0xde; 100]).unwrap();
    // The bad connection gets an error frame, then is closed.
    match bad.recv() {
        Ok((0, false, p::Response::Error(e))) => {
            assert_eq!(e.code, p::ErrorCode::MalformedFrame as u16)
        }
        other => panic!("{other:?}"),
    }
    assert!(bad.recv().is_err(), "closed after the error frame");
    // A valid frame whose payload is garbage: same.
    let mut bad2 = Client::connect_wait(s.client, Duration::from_secs(5));
    let mut frame = Vec::new();
    p::encode_request(
        &mut frame,
        5,
        false,
        &p::Request::Status(p::StatusRequest {}),
    )
    .unwrap();
    let n = frame.len();
    frame[n - 1] ^= 0xff;
    bad2.send_raw(&frame).unwrap();
    assert!(matches!(bad2.recv(), Ok((_, false, p::Response::Error(_)))));
    good.put("still", "fine").unwrap();
    assert_eq!(good.get("still", false).unwrap().kvs[0].value, b"fine");
}

/// Maintenance end to end: status, hash and HashKV, defragment, a snapshot streamed in chunks
/// that opens as a store holding the data, and the NOSPACE alarm (raised by the quota, listed,
/// refusing puts until space is freed and it is disarmed).
#[test]
fn maintenance_snapshot_defragment_and_the_nospace_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let client = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let mut args = single_args(dir.path(), ports[0], ports[1]);
    args.extend(["--quota-backend-bytes".into(), (4 << 20).to_string()]);
    let s = Server::start("maint", client, dir.path(), args);
    let mut c = leader(&s);
    for i in 0..50 {
        c.put(&format!("m{i:02}"), &"x".repeat(100)).unwrap();
    }
    let st = c.status().unwrap();
    assert!(st.db_size > 0 && st.db_size_in_use > 0 && st.db_size_in_use <= st.db_size);
    assert_eq!(st.raft_applied_index, st.raft_index);
    let p::Response::HashKv(h1) = c
        .call(p::Request::HashKv(p::HashKvRequest { revision: 0 }))
        .unwrap()
    else {
        panic!()
    };
    assert!(matches!(
        c.call(p::Request::Defragment(p::DefragmentRequest {}))
            .unwrap(),
        p::Response::Defragment(_)
    ));
    let p::Response::HashKv(h2) = c
        .call(p::Request::HashKv(p::HashKvRequest { revision: 0 }))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(h1.hash, h2.hash, "defragment keeps the data");
    // Snapshot: chunks until remaining_bytes is 0; the bytes open as a store.
    let id = c
        .send(&p::Request::Snapshot(p::SnapshotRequest {}), false)
        .unwrap();
    let mut bytes = Vec::new();
    loop {
        let (rid, more, r) = c.recv().unwrap();
        assert_eq!(rid, id);
        let p::Response::Snapshot(chunk) = r else {
            panic!("{r:?}")
        };
        bytes.extend_from_slice(&chunk.blob);
        assert_eq!(more, chunk.remaining_bytes > 0);
        if !more {
            break;
        }
    }
    let snap = dir.path().join("backup.db");
    std::fs::write(&snap, &bytes).unwrap();
    let restored = keel_engine::mvcc::KvStore::open(&snap, Default::default()).unwrap();
    let r = restored
        .read()
        .unwrap()
        .range(&keel_engine::mvcc::RangeRequest {
            key: b"m".to_vec(),
            range_end: b"n".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.count, 50);
    // Fill past the 4 MiB quota: NOSPACE is raised and listed, and puts are refused.
    let big = "y".repeat(64 << 10);
    let mut refused = None;
    for i in 0..200 {
        match c.put(&format!("big{i}"), &big) {
            Ok(_) => {}
            Err(CallError::Server(e)) => {
                refused = Some(e);
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    let e = refused.expect("the quota was reached");
    assert_eq!(e.message, "etcdserver: mvcc: database space exceeded");
    let p::Response::Alarm(a) = c
        .call(p::Request::Alarm(p::AlarmRequest {
            action: p::AlarmAction::Get,
            ..Default::default()
        }))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(a.alarms.len(), 1);
    assert_eq!(a.alarms[0].alarm, p::AlarmType::NoSpace);
    assert!(matches!(c.put("more", "z"), Err(CallError::Server(_))));
    // Free space (delete, compact, defragment), disarm: puts work again.
    c.call(p::Request::DeleteRange(p::DeleteRangeRequest {
        key: b"big".to_vec(),
        range_end: b"bih".to_vec(),
        prev_kv: false,
    }))
    .unwrap();
    let rev = c.status().unwrap().header.revision;
    c.call(p::Request::Compact(p::CompactionRequest {
        revision: rev,
        physical: true,
    }))
    .unwrap();
    c.call(p::Request::Defragment(p::DefragmentRequest {}))
        .unwrap();
    c.call(p::Request::Alarm(p::AlarmRequest {
        action: p::AlarmAction::Deactivate,
        member_id: a.alarms[0].member_id,
        alarm: p::AlarmType::NoSpace,
    }))
    .unwrap();
    c.put("more", "z").unwrap();
}

/// etcd serves clients only once its name and client URLs are in the member list; so does
/// keel: the first answer a fresh member gives (to a client that connected while it was still
/// starting) already lists its own client URL, and so does the first answer after a restart.
#[test]
fn the_first_answer_lists_the_member_s_own_client_url() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path());
    let want = format!("http://{}", s.client);
    for round in 0..2 {
        // A reset connection is retried: right after a restart the old process's listening
        // socket can outlive it briefly (see `leader`); no answer is lost that way.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let first = loop {
            let mut c = Client::connect_wait(s.client, Duration::from_secs(20));
            match c.call(p::Request::MemberList(p::MemberListRequest::default())) {
                Ok(r) => break r,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: {e:?}\n{}",
                    s.log()
                ),
            }
        };
        let p::Response::MemberList(ml) = first else {
            panic!("round {round}: not a member list: {first:?}");
        };
        assert_eq!(ml.members.len(), 1, "round {round}: {ml:?}");
        assert_eq!(
            ml.members[0].client_urls,
            vec![want.clone()],
            "round {round}: the first answer came before the member was published"
        );
        if round == 0 {
            assert!(s.terminate().success());
            s.restart();
        }
    }
}

/// A second `keel` on a running member's data dir refuses to start (the data dir is locked),
/// and the first member keeps serving.
#[test]
fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let mut c = leader(&s);
    c.put("k", "1").unwrap();
    // A second server on the same data dir (its own ports) exits with an error.
    let ports = free_ports(2);
    let (status, err) = run_to_exit(single_args(dir.path(), ports[0], ports[1]));
    assert!(!status.success(), "started on a data dir in use");
    assert!(err.contains("in use by another keel process"), "{err}");

    assert_eq!(c.get("k", false).unwrap().kvs[0].value, b"1");
    c.put("k", "2").unwrap();
}

/// Runs `keel` with `args` until it exits by itself (one still running after 30 s is killed
/// and fails the test); returns its exit status and stderr.
fn run_to_exit(args: Vec<String>) -> (std::process::ExitStatus, String) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().unwrap());
    });
    let out = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: kill(2) on the PID of a child this test spawned and that the waiter
            // thread has not reaped yet (it is still waiting for the child to exit).
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            let out = rx.recv().unwrap();
            panic!(
                "keel is still running: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    waiter.join().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .count()
    })
}

/// `--wal-dir` (etcd's flag): the WAL lives there and nowhere under the data dir, restarts
/// keep every acknowledged write, the WAL dir is locked like the data dir, and a member is
/// refused a WAL dir other than the one its log is in (either way round).
#[test]
fn a_wal_dir_of_its_own_holds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("elsewhere").join("wal");
    let ports = free_ports(2);
    let client = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let mut args = single_args(dir.path(), ports[0], ports[1]);
    args.extend(["--wal-dir".to_string(), wal.display().to_string()]);
    let mut s = Server::start("waldir", client, dir.path(), args.clone());
    let mut c = leader(&s);
    for i in 0..50 {
        c.put(&format!("k{i:02}"), &format!("v{i}")).unwrap();
    }
    let member = dir.path().join("data").join("member");
    assert!(
        wal_files(&wal) > 0,
        "no segment in the WAL dir\n{}",
        s.log()
    );
    assert_eq!(
        wal_files(&member.join("wal")),
        0,
        "a segment under the data dir"
    );

    // Another member (its own data dir and ports) on the same WAL dir is refused.
    let other = tempfile::tempdir().unwrap();
    let p2 = free_ports(2);
    let mut a2 = single_args(other.path(), p2[0], p2[1]);
    a2.extend(["--wal-dir".to_string(), wal.display().to_string()]);
    let (st, err) = run_to_exit(a2);
    assert!(!st.success(), "started on a WAL dir in use");
    assert!(err.contains("WAL dir") && err.contains("in use"), "{err}");

    // SIGKILL and restart with the same flags: nothing acknowledged is lost.
    drop(c);
    s.kill();
    s.restart();
    let mut c = leader(&s);
    for i in [0, 25, 49] {
        let g = c.get(&format!("k{i:02}"), false).unwrap();
        assert_eq!(g.kvs[0].value, format!("v{i}").as_bytes(), "{}", s.log());
    }
    drop(c);
    assert!(s.terminate().success(), "{}", s.log());

    // Without --wal-dir the member finds no log beside its applied state: refused, and the
    // message names the flag.
    let (st, err) = run_to_exit(single_args(dir.path(), ports[0], ports[1]));
    assert!(!st.success(), "started without its WAL");
    assert!(err.contains("--wal-dir"), "{err}");
    // The refused start left nothing behind: with the flag again the member starts as before.
    assert_eq!(
        wal_files(&member.join("wal")),
        0,
        "the refused start created a WAL"
    );
    s.restart();
    let mut c = leader(&s);
    assert_eq!(c.get("k49", false).unwrap().kvs[0].value, b"v49");
    drop(c);
    assert!(s.terminate().success(), "{}", s.log());

    // A member whose log is in member/wal (started without the flag) refuses a WAL dir
    // elsewhere.
    let plain = tempfile::tempdir().unwrap();
    let p3 = free_ports(2);
    let c3 = format!("127.0.0.1:{}", p3[0]).parse().unwrap();
    let mut s3 = Server::start(
        "plain",
        c3,
        plain.path(),
        single_args(plain.path(), p3[0], p3[1]),
    );
    leader(&s3).put("k", "1").unwrap();
    assert!(s3.terminate().success(), "{}", s3.log());
    let mut a3 = single_args(plain.path(), p3[0], p3[1]);
    let moved = plain.path().join("wal-elsewhere");
    a3.extend(["--wal-dir".to_string(), moved.display().to_string()]);
    let (st, err) = run_to_exit(a3);
    assert!(!st.success(), "started a second log beside member/wal");
    assert!(err.contains("move its files there"), "{err}");
    assert_eq!(wal_files(&moved), 0);
}

/// A WAL that fails to open (here: a segment's header block overwritten with garbage) stops
/// the process with an error naming the WAL; the log core's failure at startup used to leave
/// the other roles waiting for it forever (no exit, SIGTERM ignored).
#[test]
fn a_damaged_wal_stops_the_start_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start(dir.path());
    let mut c = leader(&s);
    c.put("k", "v").unwrap();
    drop(c);
    assert!(s.terminate().success(), "{}", s.log());
    let wal = dir.path().join("data").join("member").join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    let first = segs.first().expect("a segment");
    let f = std::fs::OpenOptions::new().write(true).open(first).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xA5u8; 4096], 0).unwrap();
    f.sync_all().unwrap();
    let (st, err) = run_to_exit(s.args.clone());
    assert!(!st.success(), "started on a damaged WAL");
    assert!(err.to_lowercase().contains("wal"), "{err}");
}
