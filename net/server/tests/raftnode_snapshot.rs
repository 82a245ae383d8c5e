//! Log compaction and snapshots: a member that was down while the others compacted their logs
//! catches up through a snapshot from the leader's state machine, and every member restarts
//! from a compacted (or snapshot-installed) data directory.

mod raftnode_common;

use raftnode_common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn write(m: &mut Member, tag: &str, n: u64) -> Vec<Vec<u8>> {
    let datas: Vec<Vec<u8>> = (0..n).map(|k| format!("{tag}-{k}").into_bytes()).collect();
    let rec = m.rec.clone();
    let d = datas.clone();
    let missing = m
        .client(move |c| async move { propose_all(&c, &rec, d, LIMIT).await })
        .join()
        .unwrap();
    assert_eq!(missing, 0, "every proposal committed");
    datas
}

fn settled(ms: &[&Member]) -> bool {
    let a: Vec<u64> = ms.iter().map(|m| m.rec.lock().unwrap().applied).collect();
    a.iter().all(|&x| x == a[0]) && ms.iter().all(|m| m.status.commit() == a[0])
}

fn check(ms: &[&Member], want: &[Vec<u8>]) {
    check_same_history(ms, want);
}

#[test]
fn a_member_behind_the_compacted_log_catches_up_by_snapshot_and_restarts_from_it() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs = free_addrs(3);
    let cfgs: Vec<_> = (1..=3u64)
        .map(|id| {
            let mut c = config(id, &addrs, dirs[id as usize - 1].path().to_path_buf());
            c.snapshot_count = 100;
            c.catch_up_entries = 20;
            c
        })
        .collect();
    let recs: Vec<_> = (0..3)
        .map(|_| Arc::new(Mutex::new(Recorder::default())))
        .collect();
    let mut ms: Vec<Member> = (0..3)
        .map(|k| Member::start(cfgs[k].clone(), recs[k].clone()))
        .collect();
    wait_for("a leader", LIMIT, || {
        agreed_leader(&ms.iter().collect::<Vec<_>>()).is_some()
    });
    let leader = agreed_leader(&ms.iter().collect::<Vec<_>>()).unwrap() as usize - 1;
    let mut want = write(&mut ms[leader], "a", 50);
    wait_for("everyone to apply", LIMIT, || {
        settled(&ms.iter().collect::<Vec<_>>())
    });

    // A follower goes down; the others write far past `snapshot_count` and compact.
    let f = (0..3).find(|&k| k != leader).unwrap();
    ms[f].stop().expect("clean stop");
    let down = ms.remove(f);
    let behind = down.rec.lock().unwrap().applied;
    let l = ms.iter().position(|m| m.id as usize - 1 == leader).unwrap();
    want.extend(write(&mut ms[l], "b", 400));
    wait_for("the two to apply", LIMIT, || {
        settled(&ms.iter().collect::<Vec<_>>())
    });

    // Back up: its next entry is compacted away on the leader, so it gets a snapshot.
    let (cfg, rec) = (down.cfg.clone(), down.rec.clone());
    drop(down);
    ms.insert(f, Member::start(cfg, rec));
    want.extend(write(&mut ms[if l >= f { l + 1 } else { l }], "c", 10));
    let t0 = std::time::Instant::now();
    while !settled(&ms.iter().collect::<Vec<_>>()) {
        assert!(
            t0.elapsed() < LIMIT,
            "the restarted member did not catch up: {}",
            describe(&ms.iter().collect::<Vec<_>>())
        );
        std::thread::park_timeout(Duration::from_millis(2));
    }
    check(&ms.iter().collect::<Vec<_>>(), &want);
    let installs = ms[f].rec.lock().unwrap().installs;
    assert!(
        installs >= 1,
        "member {} (behind at {behind}) caught up without a snapshot",
        ms[f].id
    );

    // Everyone restarts from a compacted or snapshot-installed directory and keeps going.
    let kept: Vec<_> = ms.iter().map(|m| (m.cfg.clone(), m.rec.clone())).collect();
    for m in &mut ms {
        m.stop().expect("clean stop");
    }
    // The member that installed the snapshot also loses its state machine (nothing of it was
    // durable): its log core must install the stored snapshot payload again, then replay.
    {
        let mut r = ms[f].rec.lock().unwrap();
        r.durable_cap = Some(0);
        r.crash();
        assert_eq!(r.applied, 0);
    }
    drop(ms);
    let mut ms: Vec<Member> = kept.into_iter().map(|(c, r)| Member::start(c, r)).collect();
    wait_for("a leader after the restart", LIMIT, || {
        agreed_leader(&ms.iter().collect::<Vec<_>>()).is_some()
    });
    want.extend(write(&mut ms[0], "d", 10));
    wait_for("everyone to apply after the restart", LIMIT, || {
        settled(&ms.iter().collect::<Vec<_>>())
    });
    check(&ms.iter().collect::<Vec<_>>(), &want);
    assert!(
        ms[f].rec.lock().unwrap().installs > installs,
        "the payload was installed again"
    );
    for m in &mut ms {
        m.stop().expect("clean stop");
    }
}
