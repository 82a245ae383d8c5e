//! Failover on a 3-member keel cluster: writers keep many writes in flight through one client
//! while the member it talks to is SIGKILLed. Writes in flight on the dead connection report an
//! unknown outcome and are not retried (every key is written at most once: version ≤ 1); every
//! acknowledged write is there afterwards; reads and new writes continue through the survivors;
//! a watch started before the kill resumes on another member with no gap and no duplicate.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use keel_client::{proto as p, Client, ConnectOptions, Error};

async fn wait_leader(c: &Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = c.status().await {
            if s.leader != 0 && c.put("/probe", "x").await.is_ok() {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every endpoint's member id, and the index of the endpoint that is the leader (if one says so).
async fn ids_and_leader(c: &Client, n: usize) -> (Vec<u64>, Option<usize>) {
    let mut ids = Vec::new();
    let mut leader = None;
    for i in 0..n {
        let s = c.status_on(i).await.unwrap();
        ids.push(s.header.member_id);
        if s.leader == s.header.member_id {
            leader = Some(i);
        }
    }
    (ids, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_member_the_client_talks_to() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = keel_cluster(dir.path());
    let endpoints: Vec<String> = members.iter().map(Proc::endpoint).collect();
    let opts = ConnectOptions::default()
        .with_request_timeout(Duration::from_secs(10))
        .with_dial_timeout(Duration::from_secs(20));
    let client = Client::connect(endpoints.clone(), opts).await.unwrap();
    wait_leader(&client).await;
    // The member the client sends writes to is the one it believes is the leader. Right after
    // the cluster starts that belief may be stale (the client connected before an election and a
    // follower forwards its writes), so make it true: move leadership to that member if it does
    // not hold it. Then the kill below takes down both the client's connection and the leader.
    let talk_to = client.leader_endpoint();
    let (ids, leader) = ids_and_leader(&client, endpoints.len()).await;
    if leader != Some(talk_to) {
        client.move_leader(ids[talk_to]).await.unwrap();
    }
    assert_eq!(client.leader_endpoint(), talk_to);
    assert_eq!(
        client.status_on(talk_to).await.unwrap().leader,
        ids[talk_to]
    );

    let start = client.get("/f/").prefix().await.unwrap().header.revision;
    let mut watch = client.watch("/f/").prefix().rev(start + 1).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
    let unknown = Arc::new(Mutex::new(Vec::<String>::new()));
    let seq = Arc::new(AtomicUsize::new(0));
    // How many writes are acknowledged so far: the test waits on it instead of polling.
    let (acked_tx, mut acked_rx) = tokio::sync::watch::channel(0usize);
    let acked_tx = Arc::new(acked_tx);
    let mut writers = Vec::new();
    for _ in 0..16 {
        let (c, stop, acked, unknown, seq, acked_tx) = (
            client.clone(),
            stop.clone(),
            acked.clone(),
            unknown.clone(),
            seq.clone(),
            acked_tx.clone(),
        );
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let k = format!("/f/{:06}", seq.fetch_add(1, Ordering::Relaxed));
                match c.put(k.clone(), "v").await {
                    Ok(r) => {
                        acked.lock().unwrap().push((k, r.header.revision));
                        acked_tx.send_modify(|n| *n += 1);
                    }
                    Err(Error::Unknown(_)) => unknown.lock().unwrap().push(k),
                    Err(Error::Unavailable(_)) => {} // never sent
                    Err(e) => panic!("write {k}: unexpected error {e:?}"),
                }
            }
        }));
    }
    let waited_ok = tokio::time::timeout(Duration::from_secs(30), acked_rx.wait_for(|&n| n >= 200))
        .await
        .is_ok();
    assert!(waited_ok, "writes do not go through");
    // Kill the member the client talks to, with writes in flight.
    members[talk_to].kill();
    let at_kill = *acked_rx.borrow();
    let waited_ok = tokio::time::timeout(
        Duration::from_secs(60),
        acked_rx.wait_for(|&n| n >= at_kill + 200),
    )
    .await
    .is_ok();
    assert!(
        waited_ok,
        "writes do not continue after the kill ({} acked since)\n{}",
        *acked_rx.borrow() - at_kill,
        members
            .iter()
            .map(|m| m.log())
            .collect::<Vec<_>>()
            .join("\n")
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let unknown = unknown.lock().unwrap().clone();
    eprintln!(
        "acked {} writes ({} after the kill), {} with an unknown outcome",
        acked.len(),
        acked.len() - at_kill,
        unknown.len()
    );
    assert!(
        !unknown.is_empty(),
        "writes in flight on the killed connection must report an unknown outcome"
    );

    // Reads continue through the survivors; every acknowledged write is there, nothing twice.
    let all = client.get("/f/").prefix().await.unwrap();
    let state: BTreeMap<Vec<u8>, p::KeyValue> =
        all.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    for (k, rev) in &acked {
        let kv = state
            .get(k.as_bytes())
            .unwrap_or_else(|| panic!("acknowledged {k} lost"));
        assert_eq!(kv.mod_revision, *rev, "{k}");
    }
    for kv in state.values() {
        assert_eq!(kv.version, 1, "{:?} applied more than once", kv.key);
    }
    let serializable = client.get("/f/").prefix().serializable().count_only().await;
    assert!(serializable.is_ok());

    // The watch resumed on a survivor: every write under /f/ exactly once, in order.
    let last = state.values().map(|kv| kv.mod_revision).max().unwrap();
    let mut events: Vec<(Vec<u8>, i64)> = Vec::new();
    while events.last().map(|e| e.1) != Some(last) {
        let b = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .expect("watch delivers")
            .expect("watch open")
            .expect("watch ok");
        for e in b.events {
            events.push((e.kv.key, e.kv.mod_revision));
        }
    }
    assert!(
        events.windows(2).all(|w| w[0].1 < w[1].1),
        "watch revisions strictly increase (no duplicate)"
    );
    let watched: BTreeMap<Vec<u8>, i64> = events.into_iter().collect();
    let expected: BTreeMap<Vec<u8>, i64> = state
        .values()
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    assert_eq!(watched, expected, "the watch saw every write (no gap)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let members = keel_cluster(dir.path());
    let endpoints: Vec<String> = members.iter().map(Proc::endpoint).collect();
    let opts = ConnectOptions::default()
        .with_request_timeout(Duration::from_secs(10))
        .with_dial_timeout(Duration::from_secs(20));
    let client = Client::connect(endpoints.clone(), opts).await.unwrap();
    wait_leader(&client).await;
    let (ids, leader) = ids_and_leader(&client, endpoints.len()).await;
    let leader = leader.expect("a leader");
    let target = (leader + 1) % endpoints.len();
    client.move_leader(ids[target]).await.unwrap();
    assert_eq!(
        client.leader_endpoint(),
        target,
        "the client prefers the new leader"
    );
    let s = client.status_on(target).await.unwrap();
    assert_eq!(s.leader, ids[target]);
    // Writes and linearizable reads go on.
    client.put("/after-move", "x").await.unwrap();
    assert_eq!(client.get("/after-move").await.unwrap().kvs[0].value, b"x");
}
