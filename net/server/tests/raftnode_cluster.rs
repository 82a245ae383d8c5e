//! Three log cores in one process on loopback ports, each on its own executors, with a recording
//! state machine: election, 1,000 proposals from several client tasks committed in the same
//! order everywhere, leader loss and re-election, restart and catch-up from the data directory,
//! and ReadIndex covering every write acknowledged before the read.

mod raftnode_common;

use keel_raft::consensus::{ConfChange, ConfChangeKind, Role};
use raftnode_common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn payload(tag: &str, k: u64) -> Vec<u8> {
    format!("{tag}-{k}").into_bytes()
}

/// Proposes `per` payloads tagged `tag-<task>` from `tasks` client executors on each member.
fn write_from_all(ms: &mut [&mut Member], tag: &str, tasks: usize, per: u64) -> Vec<Vec<u8>> {
    let mut joins = Vec::new();
    let mut all = Vec::new();
    for m in ms.iter_mut() {
        for t in 0..tasks {
            let datas: Vec<Vec<u8>> = (0..per)
                .map(|k| payload(&format!("{tag}-{}-{t}", m.id), k))
                .collect();
            all.extend(datas.iter().cloned());
            let rec = m.rec.clone();
            joins.push(m.client(move |c| async move { propose_all(&c, &rec, datas, LIMIT).await }));
        }
    }
    for j in joins {
        assert_eq!(j.join().unwrap(), 0, "every proposal committed");
    }
    all
}

fn same_history(ms: &[&Member], want: &[Vec<u8>]) {
    check_same_history(ms, want);
}

fn caught_up(ms: &[&Member]) -> bool {
    let a: Vec<u64> = ms.iter().map(|m| m.rec.lock().unwrap().applied).collect();
    let c: Vec<u64> = ms.iter().map(|m| m.status.commit()).collect();
    a.iter().all(|&x| x == a[0]) && c.iter().all(|&x| x == a[0])
}

/// Asks `m` for a read index after every write in `acked` was acknowledged (applied on its
/// proposer) and checks it covers all of them.
fn read_covers(m: &mut Member, acked: &[(Arc<Mutex<Recorder>>, Vec<u8>)]) {
    let floor = acked
        .iter()
        .map(|(r, d)| r.lock().unwrap().index_of(d).expect("acknowledged"))
        .max()
        .unwrap();
    let answers = m
        .client(move |c| async move {
            let mut got = Vec::new();
            for ctx in 0..3 {
                c.read_index(ctx).unwrap();
            }
            while got.len() < 3 {
                got.extend(c.next_reads().await.expect("answers"));
            }
            got
        })
        .join()
        .unwrap();
    let mut ctxs: Vec<u64> = answers.iter().map(|a| a.ctx).collect();
    ctxs.sort_unstable();
    assert_eq!(ctxs, vec![0, 1, 2]);
    for a in answers {
        let i = a.result.expect("read confirmed");
        assert!(
            i >= floor,
            "member {}: read index {i} < acked write {floor}",
            m.id
        );
    }
}

#[test]
fn three_members_replicate_survive_leader_loss_and_catch_up_after_restart() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs = free_addrs(3);
    let cfgs: Vec<_> = (1..=3u64)
        .map(|id| config(id, &addrs, dirs[id as usize - 1].path().to_path_buf()))
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
    let leader = agreed_leader(&ms.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(ms[leader as usize - 1].status.role(), Role::Leader);

    // 1,000 proposals from 6 tasks (2 per member; followers forward to the leader).
    let first = write_from_all(&mut ms.iter_mut().collect::<Vec<_>>(), "a", 2, 167);
    assert_eq!(first.len(), 1002);
    wait_for("all three to apply everything", LIMIT, || {
        caught_up(&ms.iter().collect::<Vec<_>>())
    });
    same_history(&ms.iter().collect::<Vec<_>>(), &first);

    // ReadIndex on the leader and on a follower covers every acknowledged write.
    let acked: Vec<_> = first.iter().map(|d| (recs[0].clone(), d.clone())).collect();
    let follower = (1..=3u64).find(|&i| i != leader).unwrap();
    read_covers(&mut ms[leader as usize - 1], &acked);
    read_covers(&mut ms[follower as usize - 1], &acked);

    // Stop the leader: the other two elect a new one and keep committing.
    let old = leader as usize - 1;
    ms[old].stop().expect("clean stop");
    let stopped = ms.remove(old);
    wait_for("a new leader", LIMIT, || {
        agreed_leader(&ms.iter().collect::<Vec<_>>()).is_some_and(|l| l != leader)
    });
    let second = write_from_all(&mut ms.iter_mut().collect::<Vec<_>>(), "b", 1, 50);
    wait_for("the survivors to apply", LIMIT, || {
        caught_up(&ms.iter().collect::<Vec<_>>())
    });
    same_history(&ms.iter().collect::<Vec<_>>(), &second);

    // Restart the stopped member from its data directory: it catches up through the log.
    let cfg = stopped.cfg.clone();
    let rec = stopped.rec.clone();
    drop(stopped);
    ms.insert(old, Member::start(cfg, rec));
    let third = write_from_all(&mut ms.iter_mut().collect::<Vec<_>>(), "c", 1, 20);
    wait_for("the restarted member to catch up", LIMIT, || {
        caught_up(&ms.iter().collect::<Vec<_>>())
    });
    let all: Vec<Vec<u8>> = first.into_iter().chain(second).chain(third).collect();
    same_history(&ms.iter().collect::<Vec<_>>(), &all);

    // Leadership moves on request (asked through a follower, which forwards it).
    let now = agreed_leader(&ms.iter().collect::<Vec<_>>()).expect("a leader");
    let target = (1..=3u64).find(|&i| i != now).unwrap();
    let asker = (1..=3u64).find(|&i| i != now && i != target).unwrap();
    ms[asker as usize - 1]
        .client(move |c| async move { c.transfer_leader(target) })
        .join()
        .unwrap()
        .expect("queued");
    wait_for("the transfer", LIMIT, || {
        agreed_leader(&ms.iter().collect::<Vec<_>>()) == Some(target)
    });
    for m in &mut ms {
        m.stop().expect("clean stop");
    }
}

#[test]
fn a_stalled_peer_never_blocks_the_others() {
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs = free_addrs(3);
    // Member 3 is a socket that accepts connections into its backlog and never reads: the
    // senders towards it fill the kernel buffers and stall.
    let _stalled = std::net::TcpListener::bind(addrs[2]).unwrap();
    let mut ms: Vec<Member> = (1..=2u64)
        .map(|id| {
            let cfg = config(id, &addrs, dirs[id as usize - 1].path().to_path_buf());
            Member::start(cfg, Arc::new(Mutex::new(Recorder::default())))
        })
        .collect();
    wait_for("a leader of two", LIMIT, || {
        agreed_leader(&ms.iter().collect::<Vec<_>>()).is_some()
    });
    let l = agreed_leader(&ms.iter().collect::<Vec<_>>()).unwrap() as usize - 1;
    // 2,000 payloads of 4 KiB: far more than the stalled socket's buffers hold.
    let datas: Vec<Vec<u8>> = (0..2000u64)
        .map(|k| {
            let mut d = format!("big-{k}-").into_bytes();
            d.resize(4096, b'x');
            d
        })
        .collect();
    let rec = ms[l].rec.clone();
    let d = datas.clone();
    let missing = ms[l]
        .client(move |c| async move { propose_all(&c, &rec, d, LIMIT).await })
        .join()
        .unwrap();
    assert_eq!(missing, 0, "every proposal committed");
    wait_for("both to apply", LIMIT, || {
        caught_up(&ms.iter().collect::<Vec<_>>())
    });
    same_history(&ms.iter().collect::<Vec<_>>(), &datas);
    for m in &mut ms {
        m.stop().expect("clean stop");
    }
}

#[test]
fn removing_two_members_lets_the_last_one_commit_alone() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs = free_addrs(3);
    let mut ms: Vec<Member> = (1..=3u64)
        .map(|id| {
            let cfg = config(id, &addrs, dirs[id as usize - 1].path().to_path_buf());
            Member::start(cfg, Arc::new(Mutex::new(Recorder::default())))
        })
        .collect();
    wait_for("a leader", LIMIT, || {
        agreed_leader(&ms.iter().collect::<Vec<_>>()).is_some()
    });
    let keep = agreed_leader(&ms.iter().collect::<Vec<_>>()).unwrap();
    let others: Vec<u64> = (1..=3u64).filter(|&i| i != keep).collect();
    // The bootstrap membership (3 entries) is delivered like any other membership entry.
    let r0 = ms[0].rec.clone();
    wait_for("the bootstrap membership entries", LIMIT, || {
        r0.lock().unwrap().confs.len() == 3
    });
    // Each removal goes through `keep`; when an election under load moved leadership (only
    // a leader accepts a membership change), `keep` first asks for it back.
    let m = &mut ms[keep as usize - 1];
    let (rec, status) = (m.rec.clone(), m.status.clone());
    m.client(move |c| async move {
        let deadline = std::time::Instant::now() + LIMIT;
        for gone in others {
            let cc = ConfChange {
                kind: ConfChangeKind::RemoveNode,
                node_id: gone,
            };
            let encoded = cc.encode();
            let applied = |r: &Recorder| r.confs.iter().any(|(_, d)| *d == encoded);
            while !applied(&rec.lock().unwrap()) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "removal of {gone} never applied"
                );
                if status.role() == Role::Leader {
                    c.propose_conf_change(cc).expect("queued");
                } else {
                    c.transfer_leader(keep).expect("queued");
                }
                let round = std::time::Instant::now() + Duration::from_millis(500);
                until(&rec, round, &applied).await;
            }
        }
    })
    .join()
    .unwrap();
    let others: Vec<u64> = (1..=3u64).filter(|&i| i != keep).collect();
    for &gone in &others {
        ms[gone as usize - 1].stop().expect("clean stop");
    }
    // Alone but the only voter: it commits without anyone (a 3-member quorum would need 2).
    let m = &mut ms[keep as usize - 1];
    let rec = m.rec.clone();
    let datas: Vec<Vec<u8>> = (0..20).map(|k| format!("solo-{k}").into_bytes()).collect();
    let d = datas.clone();
    let missing = m
        .client(move |c| async move { propose_all(&c, &rec, d, LIMIT).await })
        .join()
        .unwrap();
    assert_eq!(missing, 0, "the last voter commits alone");
    m.stop().expect("clean stop");
}
