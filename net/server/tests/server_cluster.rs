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
    _dir: tempfile::TempDir,
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(6);
    let names = ["a", "b", "c"];
    let initial: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}=http://127.0.0.1:{}", ports[3 + i]))
        .collect();
    let initial = initial.join(",");
    let servers = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let client: SocketAddr = format!("127.0.0.1:{}", ports[i]).parse().unwrap();
            let peer = format!("http://127.0.0.1:{}", ports[3 + i]);
            let args = vec![
                "--name".into(),
                n.to_string(),
                "--data-dir".into(),
                dir.path().join(n).display().to_string(),
                "--listen-client-urls".into(),
                format!("http://{client}"),
                "--listen-peer-urls".into(),
                peer.clone(),
                "--initial-advertise-peer-urls".into(),
                peer,
                "--initial-cluster".into(),
                initial.clone(),
                "--heartbeat-interval".into(),
                "50".into(),
                "--election-timeout".into(),
                "500".into(),
                // Small, so the restarted member needs a snapshot when it was down long enough.
                "--snapshot-count".into(),
                "300".into(),
                "--experimental-snapshot-catchup-entries".into(),
                "100".into(),
            ];
            Server::start(n, client, dir.path(), args)
        })
        .collect();
    Cluster { servers, _dir: dir }
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
    let deadline = Instant::now() + Duration::from_secs(60);
    let hashes = loop {
        let hs: Vec<Option<(u32, i64)>> = addrs
            .iter()
            .map(|a| {
                let mut cl = Client::connect(*a).ok()?;
                match cl.call(p::Request::HashKv(p::HashKvRequest { revision: target })) {
                    Ok(p::Response::HashKv(h)) => Some((h.hash, h.header.revision)),
                    _ => None,
                }
            })
            .collect();
        if hs.iter().all(|h| h.is_some_and(|(_, rev)| rev >= target))
            && hs.iter().all(|h| h.map(|x| x.0) == hs[0].map(|x| x.0))
        {
            break hs;
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge: {hs:?}\n{}",
            logs(&c)
        );
        std::thread::park_timeout(Duration::from_millis(50));
    };
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
    for a in &addrs {
        let mut cl = Client::connect_wait(*a, Duration::from_secs(10));
        let all = match cl
            .call(p::Request::Range(p::RangeRequest {
                key: b"w".to_vec(),
                range_end: b"x".to_vec(),
                serializable: true,
                revision: target,
                ..Default::default()
            }))
            .unwrap()
        {
            p::Response::Range(r) => r,
            r => panic!("{r:?}"),
        };
        let have: BTreeMap<String, i64> = all
            .kvs
            .iter()
            .map(|kv| (String::from_utf8(kv.key.clone()).unwrap(), kv.mod_revision))
            .collect();
        for (k, rev) in &acked {
            if *rev <= target {
                assert_eq!(
                    have.get(k),
                    Some(rev),
                    "acknowledged {k}@{rev} missing on {a}"
                );
            }
        }
    }
}
