//! Mutex and Election against a real keel server, with many competing tasks: mutual exclusion
//! (checked locally and with fencing-token-guarded writes), fairness by arrival order, no polling
//! (requests counted per waiter), a holder whose session dies loses the lock to the next waiter,
//! and a waiter whose session dies while waiting does not get the lock (etcd#11456).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel_client::{Client, ConnectOptions, Election, Error, Mutex, Op, Session};

async fn client(p: &Proc) -> Client {
    Client::connect([p.endpoint()], ConnectOptions::default())
        .await
        .expect("connect")
}

fn server() -> (tempfile::TempDir, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let p = keel_single(dir.path());
    wait_ready(&keelctl_bin(), &p.endpoint(), &p);
    (dir, p)
}

/// Waits, watching the queue (bounded), until the key of `lease` under `prefix` is there
/// (`present`) or gone. A queue key is `<prefix>/<lease in hex>`.
async fn lease_key(c: &Client, prefix: &str, lease: i64, present: bool) {
    let key = format!("{prefix}/{lease:x}").into_bytes();
    let r = c.get(key.clone()).await.unwrap();
    if r.kvs.is_empty() != present {
        return;
    }
    let mut w = c.watch(key).rev(r.header.revision + 1).await.unwrap();
    let want = if present {
        keel_client::proto::EventType::Put
    } else {
        keel_client::proto::EventType::Delete
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let b = w.next().await.expect("watch open").expect("watch ok");
            if b.events.iter().any(|e| e.event_type == want) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{prefix}: key of lease {lease:x} present={present} never"));
}

/// Three sessions with 60 s leases: a holder and two contenders.
async fn three_sessions(c: &Client) -> (Session, Session, Session) {
    (
        Session::new(c, 60).await.unwrap(),
        Session::new(c, 60).await.unwrap(),
        Session::new(c, 60).await.unwrap(),
    )
}

/// Waits until `n` contenders are queued under `prefix`: counts the queue, then re-counts on
/// every change a watch on it reports (bounded: 20 s).
async fn queued(c: &Client, prefix: &str, n: i64) {
    let queue = format!("{prefix}/");
    let count = || async { c.get(queue.clone()).prefix().count_only().await.unwrap() };
    let r = count().await;
    if r.count >= n {
        return;
    }
    let mut w = c
        .watch(queue.clone())
        .prefix()
        .rev(r.header.revision + 1)
        .await
        .unwrap();
    let mut last = r.count;
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while last < n {
            w.next().await.expect("watch open").expect("watch ok");
            last = count().await.count;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "only {last} queued under {prefix}, waiting for {n}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutex_is_exclusive_fair_fenced_and_does_not_poll() {
    let (_dir, srv) = server();
    let admin = client(&srv).await;
    const N: usize = 8;

    // The first contender takes the lock and holds it until every other one is queued.
    let c0 = client(&srv).await;
    let s0 = Session::new(&c0, 60).await.unwrap();
    let g0 = Mutex::new(&s0, "/lock/a").lock().await.unwrap();

    let holder = Arc::new(std::sync::Mutex::new(None::<usize>));
    let order = Arc::new(std::sync::Mutex::new(Vec::<(usize, i64)>::new()));
    let max_requests = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 1..N {
        let c = client(&srv).await;
        let holder = holder.clone();
        let order = order.clone();
        let max_requests = max_requests.clone();
        // Arrival order: contender i queues after contender i-1 (queue length observed).
        queued(&admin, "/lock/a", i as i64).await;
        let ready = Arc::new(tokio::sync::Notify::new());
        let r2 = ready.clone();
        tasks.push(tokio::spawn(async move {
            let s = Session::new(&c, 60).await.unwrap();
            let m = Mutex::new(&s, "/lock/a");
            r2.notify_one();
            let before = c.requests_sent();
            let g = m.lock().await.unwrap();
            let used = c.requests_sent() - before;
            max_requests.fetch_max(used as usize, Ordering::SeqCst);
            {
                let mut h = holder.lock().unwrap();
                assert!(
                    h.is_none(),
                    "contender {i} got the lock while {h:?} holds it"
                );
                *h = Some(i);
            }
            // A write fenced by the token succeeds while we hold the lock.
            let t = c
                .txn()
                .when([g.still_held()])
                .and_then([Op::put("/lock/a-owner", i.to_string())])
                .await
                .unwrap();
            assert!(t.succeeded, "fenced write of the holder {i}");
            order.lock().unwrap().push((i, g.fencing_token()));
            *holder.lock().unwrap() = None;
            g.unlock().await.unwrap();
            s.close().await.unwrap();
        }));
        ready.notified().await;
    }
    queued(&admin, "/lock/a", N as i64).await;
    g0.unlock().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    let who: Vec<usize> = order.iter().map(|o| o.0).collect();
    assert_eq!(who, (1..N).collect::<Vec<_>>(), "served in arrival order");
    assert!(
        order.windows(2).all(|w| w[0].1 < w[1].1),
        "fencing tokens increase: {order:?}"
    );
    // Each waiter: enqueue txn, one round (get + watch) per predecessor it waited for, the
    // final checks, and a keepalive or two — a constant, however long it waited.
    let used = max_requests.load(Ordering::SeqCst);
    eprintln!("most requests sent by one waiter while waiting: {used}");
    assert!(used <= 12, "a waiter sent {used} requests: it polls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_whose_session_dies_loses_the_lock_to_the_next_waiter() {
    let (_dir, srv) = server();
    let admin = client(&srv).await;
    let ca = client(&srv).await;
    let sa = Session::new(&ca, 60).await.unwrap();
    let ga = Mutex::new(&sa, "/lock/b").lock().await.unwrap();

    let cb = client(&srv).await;
    let sb = Session::new(&cb, 60).await.unwrap();
    let waiter = tokio::spawn(async move {
        let g = Mutex::new(&sb, "/lock/b").lock().await;
        (g, sb)
    });
    queued(&admin, "/lock/b", 2).await;
    // A's session dies: its lease ends through consensus (what expiry does).
    admin.lease_revoke(sa.lease()).await.unwrap();
    let (gb, _sb) = waiter.await.unwrap();
    let gb = gb.expect("B gets the lock");
    assert!(gb.fencing_token() > ga.fencing_token());
    // A's fenced writes now fail.
    let t = ca
        .txn()
        .when([ga.still_held()])
        .and_then([Op::put("/lock/b-owner", "a")])
        .await
        .unwrap();
    assert!(!t.succeeded, "the dead holder's fenced write must fail");
    let t = cb
        .txn()
        .when([gb.still_held()])
        .and_then([Op::put("/lock/b-owner", "b")])
        .await
        .unwrap();
    assert!(t.succeeded);
    std::mem::forget(ga); // its key is gone already; no background unlock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_whose_session_dies_while_waiting_does_not_get_the_lock() {
    let (_dir, srv) = server();
    let admin = client(&srv).await;
    let ch = client(&srv).await;
    let sh = Session::new(&ch, 60).await.unwrap();
    let gh = Mutex::new(&sh, "/lock/c").lock().await.unwrap();

    let cw = client(&srv).await;
    let sw = Session::new(&cw, 60).await.unwrap();
    let lease_w = sw.lease();
    let waiter = tokio::spawn(async move { Mutex::new(&sw, "/lock/c").lock().await });
    queued(&admin, "/lock/c", 2).await;
    admin.lease_revoke(lease_w).await.unwrap();
    gh.unlock().await.unwrap();
    match waiter.await.unwrap() {
        Err(Error::SessionExpired) => {}
        Ok(g) => panic!(
            "a waiter with a dead session acquired the lock (token {})",
            g.fencing_token()
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_one_leader_at_a_time_in_campaign_order_observed() {
    let (_dir, srv) = server();
    let admin = client(&srv).await;
    const N: usize = 5;
    let obs_session = Session::new(&admin, 60).await.unwrap();
    let observer = Election::new(&obs_session, "/elect/x");
    let mut seen = observer.observe();

    let leader_now = Arc::new(std::sync::Mutex::new(None::<usize>));
    let mut tasks = Vec::new();
    let (go_tx, _) = tokio::sync::broadcast::channel::<usize>(16);
    for i in 0..N {
        let c = client(&srv).await;
        let leader_now = leader_now.clone();
        let mut go = go_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            let s = Session::new(&c, 60).await.unwrap();
            let e = Election::new(&s, "/elect/x");
            let lead = e.campaign(format!("cand-{i}")).await.unwrap();
            {
                let mut l = leader_now.lock().unwrap();
                assert!(l.is_none(), "{i} leads while {l:?} does");
                *l = Some(i);
            }
            assert_eq!(
                e.leader().await.unwrap().value,
                format!("cand-{i}").into_bytes()
            );
            lead.proclaim(format!("cand-{i}-proclaimed")).await.unwrap();
            // Resign when the test says so.
            loop {
                if go.recv().await.unwrap() == i {
                    break;
                }
            }
            *leader_now.lock().unwrap() = None;
            lead.resign().await.unwrap();
        }));
        queued(&admin, "/elect/x", i as i64 + 1).await;
    }
    // Leaders come in campaign order; each proclamation is observed.
    for i in 0..N {
        let mut values = Vec::new();
        loop {
            let kv = seen.recv().await.unwrap().unwrap();
            values.push(String::from_utf8(kv.value).unwrap());
            if values.last().unwrap() == &format!("cand-{i}-proclaimed") {
                break;
            }
            assert!(
                values.iter().all(|v| v.starts_with(&format!("cand-{i}"))),
                "observed {values:?} while waiting for cand-{i}"
            );
        }
        go_tx.send(i).unwrap();
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(matches!(observer.leader().await, Err(Error::NoLeader)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lock_call_leaves_the_queue() {
    let (_dir, srv) = server();
    let admin = client(&srv).await;
    let c = client(&srv).await;
    let (s1, s2, s3) = three_sessions(&c).await;
    let g1 = Mutex::new(&s1, "/lock/d").lock().await.unwrap();
    // Contender 2 queues, then gives up (its future is dropped).
    let m2 = Mutex::new(&s2, "/lock/d");
    let waiting = tokio::spawn(async move { m2.lock().await.map(|g| g.fencing_token()) });
    queued(&admin, "/lock/d", 2).await;
    waiting.abort();
    let _ = waiting.await;
    // Contender 3 queues behind; when 1 unlocks, 3 gets the lock (2 left the queue).
    let m3 = Mutex::new(&s3, "/lock/d");
    let third = tokio::spawn(async move { m3.lock().await.map(|g| g.fencing_token()) });
    // Wait until 2's key is gone and 3's is there.
    lease_key(&admin, "/lock/d", s2.lease(), false).await;
    lease_key(&admin, "/lock/d", s3.lease(), true).await;
    g1.unlock().await.unwrap();
    let t3 = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("contender 3 is not stuck behind the cancelled one")
        .unwrap()
        .unwrap();
    assert!(t3 > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_campaign_leaves_the_queue() {
    let (_dir, srv) = server();
    let admin = client(&srv).await;
    let c = client(&srv).await;
    let (s1, s2, s3) = three_sessions(&c).await;
    let lead1 = Election::new(&s1, "/elect/c")
        .campaign("one")
        .await
        .unwrap();
    // Candidate 2 queues behind the leader, then gives up (its future is dropped).
    let e2 = Election::new(&s2, "/elect/c");
    let waiting = tokio::spawn(async move { e2.campaign("two").await.map(|l| l.revision()) });
    queued(&admin, "/elect/c", 2).await;
    waiting.abort();
    let _ = waiting.await;
    // Its key goes away; candidate 3 becomes leader when 1 resigns, not stuck behind 2.
    lease_key(&admin, "/elect/c", s2.lease(), false).await;
    let e3 = Election::new(&s3, "/elect/c");
    let third = tokio::spawn(async move { e3.campaign("three").await.map(|l| l.revision()) });
    queued(&admin, "/elect/c", 2).await;
    lead1.resign().await.unwrap();
    let r3 = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("candidate 3 is not stuck behind the cancelled one")
        .unwrap()
        .unwrap();
    assert!(r3 > 0);
}
