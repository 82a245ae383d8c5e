//! The retry policy and pipelining against scripted fake members (keel's protocol over loopback
//! TCP, no Raft): a write whose connection dies after it was sent is reported as an unknown
//! outcome and sent nowhere else; a read in the same situation is retried on another member; a
//! write refused before proposal (NoLeader, TooManyRequests) or never sent is retried; responses
//! answered out of order reach their own callers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_client::{proto as p, Client, ConnectOptions, Error};

/// What a fake member does with one request.
enum Act {
    Reply(p::Response),
    /// Close the connection without answering.
    Close,
    /// Hold the request; answer every held one, newest first, when `n` are held.
    HoldReverse(usize, p::Response),
    /// Answer with a stream: every response but the last with MORE.
    Stream(Vec<p::Response>),
    /// Never answer (the connection stays open).
    Silent,
}

type Script = Arc<dyn Fn(&p::Request, usize) -> Act + Send + Sync>;

struct Fake {
    addr: String,
    seen: Arc<Mutex<Vec<p::Request>>>,
    /// How many requests `seen` holds, for tests that wait for one to arrive.
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
}

fn header(member: u64) -> p::ResponseHeader {
    p::ResponseHeader {
        cluster_id: 7,
        member_id: member,
        revision: 1,
        raft_term: 1,
    }
}

/// A fake member `member` (the leader is member 1). `script` sees every non-Status request with
/// its index among them.
fn fake(member: u64, script: Script) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let arrived = Arc::new(tokio::sync::watch::Sender::new(0));
    let (seen2, arrived2) = (seen.clone(), arrived.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let (seen, arrived) = (seen2.clone(), arrived2.clone());
            let script = script.clone();
            std::thread::spawn(move || serve(member, s, seen, arrived, script));
        }
    });
    Fake {
        addr,
        seen,
        arrived,
    }
}

fn serve(
    member: u64,
    mut s: TcpStream,
    seen: Arc<Mutex<Vec<p::Request>>>,
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
    script: Script,
) {
    let mut dec = p::FrameDecoder::new(p::limits::DEFAULT_MAX_REQUEST_PAYLOAD);
    let mut held: Vec<(u64, p::Response)> = Vec::new();
    loop {
        loop {
            let (id, req) = match dec.decode() {
                Ok(p::Decoded::Frame(f)) => (f.header.request_id, f.decode_request().unwrap()),
                Ok(p::Decoded::NeedMore(_)) => break,
                Err(e) => panic!("client sent a bad frame: {e}"),
            };
            let act = if let p::Request::Status(_) = req {
                Act::Reply(p::Response::Status(p::StatusResponse {
                    header: header(member),
                    leader: 1,
                    ..Default::default()
                }))
            } else {
                let n = {
                    let mut v = seen.lock().unwrap();
                    v.push(req.clone());
                    arrived.send_replace(v.len());
                    v.len() - 1
                };
                script(&req, n)
            };
            let mut out = Vec::new();
            match act {
                Act::Reply(r) => p::encode_response(&mut out, id, false, &r).unwrap(),
                Act::Close => return,
                Act::Silent => {}
                Act::Stream(rs) => {
                    // Keep the stream open: every frame with MORE.
                    for r in rs {
                        p::encode_response(&mut out, id, true, &r).unwrap();
                    }
                }
                Act::HoldReverse(n, r) => {
                    held.push((id, r));
                    if held.len() == n {
                        for (id, r) in held.drain(..).rev() {
                            p::encode_response(&mut out, id, false, &r).unwrap();
                        }
                    }
                }
            }
            if s.write_all(&out).is_err() {
                return;
            }
        }
        let buf = dec.read_buf(64 << 10);
        match s.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => dec.filled(n),
        }
    }
}

fn put_ok() -> p::Response {
    p::Response::Put(p::PutResponse {
        header: header(1),
        prev_kv: None,
    })
}

fn range_of(key: &[u8]) -> p::Response {
    p::Response::Range(p::RangeResponse {
        header: header(1),
        kvs: vec![p::KeyValue {
            key: key.to_vec(),
            value: key.to_vec(),
            ..Default::default()
        }],
        count: 1,
        more: false,
    })
}

fn err(code: p::ErrorCode) -> p::Response {
    p::Response::Error(p::ErrorResponse::new(code))
}

fn puts(f: &Fake) -> usize {
    f.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| matches!(r, p::Request::Put(_)))
        .count()
}

async fn connect(eps: &[&Fake]) -> Client {
    let opts = ConnectOptions::default().with_request_timeout(Duration::from_secs(3));
    Client::connect(eps.iter().map(|f| f.addr.clone()), opts)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_write_lost_after_sending_is_unknown_and_not_resent() {
    let a = fake(1, Arc::new(|_, _| Act::Close));
    let b = fake(2, Arc::new(|_, _| Act::Reply(put_ok())));
    let c = connect(&[&a, &b]).await;
    assert_eq!(c.leader_endpoint(), 0);
    match c.put("k", "v").await {
        Err(Error::Unknown(_)) => {}
        r => panic!("expected an unknown outcome, got {r:?}"),
    }
    assert_eq!(puts(&a), 1, "sent once");
    assert_eq!(puts(&b), 0, "never re-sent elsewhere");
}

#[tokio::test]
async fn a_write_the_server_timed_out_is_unknown() {
    let a = fake(1, Arc::new(|_, _| Act::Reply(err(p::ErrorCode::Timeout))));
    let c = connect(&[&a]).await;
    assert!(matches!(c.put("k", "v").await, Err(Error::Unknown(_))));
    assert_eq!(puts(&a), 1);
}

#[tokio::test]
async fn a_read_lost_after_sending_is_retried_elsewhere() {
    let a = fake(1, Arc::new(|_, _| Act::Close));
    let b = fake(
        2,
        Arc::new(|r, _| match r {
            p::Request::Range(g) => Act::Reply(range_of(&g.key)),
            _ => Act::Close,
        }),
    );
    let c = connect(&[&a, &b]).await;
    let r = c.get("k").await.unwrap();
    assert_eq!(r.kvs[0].key, b"k");
    assert_eq!(a.seen.lock().unwrap().len(), 1);
    assert_eq!(b.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_write_refused_before_proposal_is_retried() {
    let a = fake(
        1,
        Arc::new(|_, n| match n {
            0 => Act::Reply(err(p::ErrorCode::NoLeader)),
            1 => Act::Reply(err(p::ErrorCode::TooManyRequests)),
            _ => Act::Reply(put_ok()),
        }),
    );
    let c = connect(&[&a]).await;
    c.put("k", "v").await.unwrap();
    assert_eq!(puts(&a), 3);
}

#[tokio::test]
async fn a_definite_server_error_is_returned_as_is() {
    let a = fake(1, Arc::new(|_, _| Act::Reply(err(p::ErrorCode::EmptyKey))));
    let c = connect(&[&a]).await;
    match c.put("", "v").await {
        Err(e) => assert_eq!(e.code(), Some(p::ErrorCode::EmptyKey)),
        Ok(r) => panic!("{r:?}"),
    }
    assert_eq!(puts(&a), 1);
}

#[tokio::test]
async fn a_write_to_an_unreachable_member_goes_to_the_next() {
    // A port nothing listens on (bound, then released).
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let b = fake(1, Arc::new(|_, _| Act::Reply(put_ok())));
    let opts = ConnectOptions::default().with_request_timeout(Duration::from_secs(3));
    let c = Client::connect([dead, b.addr.clone()], opts).await.unwrap();
    c.put("k", "v").await.unwrap();
    assert_eq!(puts(&b), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_answered_out_of_order_reach_their_callers() {
    const N: usize = 32;
    let a = fake(
        1,
        Arc::new(|r, _| match r {
            p::Request::Range(g) => Act::HoldReverse(N, range_of(&g.key)),
            _ => Act::Close,
        }),
    );
    let c = connect(&[&a]).await;
    let before = c.requests_sent();
    let calls = (0..N).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            let k = format!("key-{i}");
            let r = c.get(k.clone()).await.unwrap();
            assert_eq!(r.kvs[0].key, k.as_bytes());
        })
    });
    // All N are in flight at once on one connection (the fake answers only when it holds N).
    for t in calls.collect::<Vec<_>>() {
        t.await.unwrap();
    }
    assert_eq!(c.requests_sent() - before, N as u64);
}

#[tokio::test]
async fn serializable_reads_are_spread_over_the_members() {
    let script: Script = Arc::new(|r, _| match r {
        p::Request::Range(g) => Act::Reply(range_of(&g.key)),
        _ => Act::Close,
    });
    let fakes: Vec<Fake> = (1..=3).map(|m| fake(m, script.clone())).collect();
    let c = connect(&fakes.iter().collect::<Vec<_>>()).await;
    for i in 0..9 {
        c.get(format!("k{i}")).serializable().await.unwrap();
    }
    for f in &fakes {
        assert_eq!(
            f.seen.lock().unwrap().len(),
            3,
            "each member serves a third"
        );
    }
    // Linearizable reads all go to the leader (member 1).
    for i in 0..3 {
        c.get(format!("l{i}")).await.unwrap();
    }
    assert_eq!(fakes[0].seen.lock().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_silent_member_moves_to_another_and_resumes() {
    // Member 1 creates the watch at revision 10, delivers revision 11, then goes silent (no
    // answers, no reset). Member 2 serves the watch from wherever the client resumes.
    let watch_created = |member: u64, rev: i64| {
        p::Response::Watch(p::WatchResponse {
            header: p::ResponseHeader {
                revision: rev,
                ..header(member)
            },
            watch_id: 1,
            created: true,
            ..Default::default()
        })
    };
    let a = fake(
        1,
        Arc::new(move |r, n| match (r, n) {
            (p::Request::Watch(p::WatchRequest::Create(_)), 0) => Act::Stream(vec![
                watch_created(1, 10),
                p::Response::Watch(p::WatchResponse {
                    header: p::ResponseHeader {
                        revision: 11,
                        ..header(1)
                    },
                    watch_id: 1,
                    events: vec![p::Event {
                        event_type: p::EventType::Put,
                        kv: p::KeyValue {
                            key: b"w".to_vec(),
                            mod_revision: 11,
                            ..Default::default()
                        },
                        prev_kv: None,
                    }],
                    ..Default::default()
                }),
            ]),
            _ => Act::Silent,
        }),
    );
    let b = fake(
        2,
        Arc::new(move |r, _| match r {
            p::Request::Watch(p::WatchRequest::Create(c)) => {
                Act::Stream(vec![watch_created(2, c.start_revision - 1)])
            }
            _ => Act::Silent,
        }),
    );
    let opts = ConnectOptions::default()
        .with_request_timeout(Duration::from_secs(3))
        .with_keepalive(Duration::from_millis(200), Duration::from_millis(300));
    let c = Client::connect([a.addr.clone(), b.addr.clone()], opts)
        .await
        .unwrap();
    let mut w = c.watch("w").await.unwrap();
    let first = w.next().await.unwrap().unwrap();
    assert_eq!(first.events[0].kv.mod_revision, 11);
    // The watch moves to member 2 and asks for revision 12 onwards: no gap, no duplicate.
    // Waits on the fake's request count and re-checks on every new request.
    let mut arrived = b.arrived.subscribe();
    let resumed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let first_create = b.seen.lock().unwrap().iter().find_map(|r| match r {
                p::Request::Watch(p::WatchRequest::Create(c)) => Some(c.start_revision),
                _ => None,
            });
            if let Some(rev) = first_create {
                break rev;
            }
            arrived.changed().await.expect("the fake server is alive");
        }
    })
    .await
    .expect("the watch never moved");
    assert_eq!(resumed, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_cannot_resume_past_a_compaction_reports_it() {
    let ev = |rev: i64| p::WatchResponse {
        header: p::ResponseHeader {
            revision: rev,
            ..header(1)
        },
        watch_id: 1,
        events: vec![p::Event {
            event_type: p::EventType::Put,
            kv: p::KeyValue {
                key: b"w".to_vec(),
                mod_revision: rev,
                ..Default::default()
            },
            prev_kv: None,
        }],
        ..Default::default()
    };
    let created = p::WatchResponse {
        header: p::ResponseHeader {
            revision: 10,
            ..header(1)
        },
        watch_id: 1,
        created: true,
        ..Default::default()
    };
    // Member 1: created, revision 11, then its connection drops.
    let a = fake(
        1,
        Arc::new(move |r, n| match (r, n) {
            (p::Request::Watch(p::WatchRequest::Create(_)), 0) => Act::Stream(vec![
                p::Response::Watch(created.clone()),
                p::Response::Watch(ev(11)),
            ]),
            _ => Act::Close,
        }),
    );
    // Member 2: revision 12 onwards was compacted away (compaction at 15).
    let b = fake(
        2,
        Arc::new(|r, _| match r {
            p::Request::Watch(p::WatchRequest::Create(c)) => {
                assert_eq!(c.start_revision, 12);
                Act::Reply(p::Response::Watch(p::WatchResponse {
                    header: header(2),
                    watch_id: 1,
                    created: true,
                    canceled: true,
                    compact_revision: 15,
                    ..Default::default()
                }))
            }
            _ => Act::Silent,
        }),
    );
    let opts = ConnectOptions::default()
        .with_request_timeout(Duration::from_secs(3))
        .with_keepalive(Duration::from_millis(200), Duration::from_millis(300));
    let c = Client::connect([a.addr.clone(), b.addr.clone()], opts)
        .await
        .unwrap();
    let mut w = c.watch("w").await.unwrap();
    assert_eq!(
        w.next().await.unwrap().unwrap().events[0].kv.mod_revision,
        11
    );
    // Member 1 closes on the liveness probe; the watch resumes on member 2, which cannot serve
    // revision 12: the watcher says so and ends.
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Err(Error::Compacted { compact_revision }))) => assert_eq!(compact_revision, 15),
        other => panic!("expected a compaction error, got {other:?}"),
    }
    assert!(w.next().await.is_none(), "the watch ended");
}
