//! A single-member log core: proposals commit without peers, ReadIndex answers at once with an
//! index covering every acknowledged write, and a restart re-delivers the committed entries the
//! state machine had not made durable.

mod raftnode_common;

use raftnode_common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn payload(k: u64) -> Vec<u8> {
    format!("single-{k}").into_bytes()
}

#[test]
fn proposals_commit_alone_and_restart_replays_what_was_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(1);
    let cfg = config(1, &addrs, dir.path().to_path_buf());
    let rec = Arc::new(Mutex::new(Recorder {
        durable_cap: Some(0),
        ..Recorder::default()
    }));
    let mut m = Member::start(cfg.clone(), rec.clone());
    wait_for("the single member to lead", LIMIT, || {
        m.status.leader() == 1
    });

    // Garbage on the peer port drops that connection (D1); the member carries on.
    let junks: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff; 64],
        b"KLRP\x05\0\0\0\0\0\0\0abcde",
    ];
    for junk in junks {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addrs[0]).unwrap();
        s.write_all(junk).unwrap();
        // The member closes the connection: the read sees the end (or a reset), not a hang.
        let mut buf = [0u8; 16];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }

    let r = rec.clone();
    let (missing, read) = m
        .client(move |c| async move {
            let missing = propose_all(&c, &r, (0..100).map(payload).collect(), LIMIT).await;
            // Every write above is acknowledged (applied locally); a read now must cover them.
            c.read_index(7).unwrap();
            let answers = c.next_reads().await.expect("an answer");
            (missing, answers)
        })
        .join()
        .unwrap();
    assert_eq!(missing, 0, "every proposal committed");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].ctx, 7);
    let last_write = rec.lock().unwrap().index_of(&payload(99)).unwrap();
    let ri = read[0].result.clone().expect("read confirmed");
    assert!(
        ri >= last_write,
        "read index {ri} < acknowledged write at {last_write}"
    );

    let before = rec.lock().unwrap().datas();
    assert_eq!(before, (0..100).map(payload).collect::<Vec<_>>());
    assert!(rec.lock().unwrap().violations.is_empty());

    // The state machine made only the first half durable, then everything stopped.
    let half = rec.lock().unwrap().index_of(&payload(49)).unwrap();
    m.stop().expect("clean stop");
    drop(m);
    {
        let mut r = rec.lock().unwrap();
        r.durable_cap = Some(half);
        r.crash();
        assert_eq!(r.log.len(), 50);
    }
    let m = Member::start(cfg, rec.clone());
    wait_for("the replay", LIMIT, || rec.lock().unwrap().log.len() >= 100);
    let r = rec.lock().unwrap();
    assert_eq!(
        r.datas(),
        before,
        "replayed in the same order, nothing twice"
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    drop(r);
    drop(m);
}

/// The commit index moves without a WAL sync (it is volatile state, Raft Figure 2), so the WAL's
/// stored commit can lag what the state machine made durable. A restart must resume from the
/// state machine's index without replaying or refusing, and keep committing.
#[test]
fn restart_resumes_from_a_durable_applied_index_past_the_stored_commit() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(1);
    let cfg = config(1, &addrs, dir.path().to_path_buf());
    let rec = Arc::new(Mutex::new(Recorder::default())); // everything applied is durable
    let mut m = Member::start(cfg.clone(), rec.clone());
    wait_for("the single member to lead", LIMIT, || {
        m.status.leader() == 1
    });
    let r = rec.clone();
    let missing =
        m.client(move |c| async move {
            propose_all(&c, &r, (0..20).map(payload).collect(), LIMIT).await
        })
        .join()
        .unwrap();
    assert_eq!(missing, 0);
    m.stop().expect("clean stop");
    drop(m);
    let applied = rec.lock().unwrap().applied;
    assert_eq!(rec.lock().unwrap().durable(), applied);

    // The WAL's last hard state was written with the last entry, before that entry committed.
    let (wal_dir, opts) = (dir.path().join("wal"), cfg.wal.clone());
    let stored_commit = run(move || async move {
        let wal = keel_raft::wal::Wal::open(wal_dir, opts).await.unwrap();
        let c = wal.hard_state().commit;
        wal.close().await;
        c
    });
    assert!(
        stored_commit < applied,
        "the commit-only hard state of the last entry was not synced (stored {stored_commit}, \
         applied {applied})"
    );

    let mut m = Member::start(cfg, rec.clone());
    wait_for("the single member to lead again", LIMIT, || {
        m.status.leader() == 1
    });
    let r = rec.clone();
    let missing = m
        .client(move |c| async move {
            propose_all(&c, &r, (20..30).map(payload).collect(), LIMIT).await
        })
        .join()
        .unwrap();
    assert_eq!(missing, 0);
    let r = rec.lock().unwrap();
    assert_eq!(
        r.datas(),
        (0..30).map(payload).collect::<Vec<_>>(),
        "nothing replayed twice"
    );
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}
