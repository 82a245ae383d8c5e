//! Back-pressure (DESIGN.md §3): when committed − applied exceeds `max_apply_lag`, proposals
//! are refused with "too many requests" (reported to the apply side as `Dropped`), and accepted
//! again once the apply side reports progress.

mod raftnode_common;

use keel_raft::consensus::EntryKind;
use keel_server::raftnode::{LogCore, LogEvent, Refusal};
use raftnode_common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Seen {
    applied: u64,
    normal: Vec<Vec<u8>>,
    refused: Vec<(Vec<Vec<u8>>, Refusal)>,
}

#[test]
fn proposals_are_refused_while_the_apply_side_lags_and_accepted_after() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(1);
    let mut cfg = config(1, &addrs, dir.path().to_path_buf());
    cfg.max_apply_lag = 10;
    let mut b = LogCore::builder(cfg);
    let apply = b.apply_port();
    let client = b.client_port();
    let stop = b.stop_handle();
    let status = b.status();
    let core = b.build();
    let log = executor("log", 512 << 10, move || async move { core.run().await });

    let seen = Arc::new(Mutex::new(Seen::default()));
    let report = Arc::new(AtomicBool::new(false));
    let (s, r) = (seen.clone(), report.clone());
    let apply_thread = executor("apply", 64 << 10, move || async move {
        let a = apply.connect().await;
        loop {
            let ev = futures_lite::future::or(async { Some(a.next().await) }, async {
                glommio::timer::sleep(Duration::from_millis(5)).await;
                None
            })
            .await;
            let mut st = s.lock().unwrap();
            match ev {
                Some(None) => return,
                Some(Some(LogEvent::Committed(es))) => {
                    st.applied = es.last().unwrap().index;
                    let normal = es.into_iter().filter(|e| e.kind == EntryKind::Normal);
                    st.normal
                        .extend(normal.filter(|e| !e.data.is_empty()).map(|e| e.data));
                }
                Some(Some(LogEvent::Dropped {
                    proposals, reason, ..
                })) => st.refused.push((proposals, reason)),
                Some(Some(other)) => panic!("unexpected {other:?}"),
                None => {}
            }
            // The state machine "applies" nothing until told to catch up.
            if r.load(Ordering::Acquire) {
                a.report_applied(st.applied, st.applied);
            }
        }
    });

    wait_for("the member to lead", LIMIT, || status.leader() == 1);
    let (s, r, st2) = (seen.clone(), report.clone(), status.clone());
    let client_thread = executor("client", 64 << 10, move || async move {
        let c = client.connect().await;
        // One proposal at a time, each waiting for its outcome (committed or refused).
        let outcome = |k: u64| {
            let st = s.lock().unwrap();
            let d = format!("p{k}").into_bytes();
            st.normal.contains(&d) || st.refused.iter().any(|(ps, _)| ps.contains(&d))
        };
        let mut k = 0;
        let deadline = Instant::now() + LIMIT;
        while s.lock().unwrap().refused.is_empty() {
            assert!(Instant::now() < deadline, "never refused");
            c.propose(format!("p{k}").into_bytes()).unwrap();
            while !outcome(k) {
                assert!(Instant::now() < deadline, "no outcome for p{k}");
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            k += 1;
        }
        {
            let st = s.lock().unwrap();
            let (ps, why) = &st.refused[0];
            assert_eq!(why, &Refusal::TooManyRequests);
            assert_eq!(ps.len(), 1);
            // Committed beyond the applied index 0: at most the lag bound (+1 in flight).
            assert!(
                st.applied <= 12,
                "{} committed with nothing applied",
                st.applied
            );
            assert!(!st.normal.is_empty());
        }
        // The state machine catches up: proposals are accepted again.
        r.store(true, Ordering::Release);
        while st2.applied() == 0 {
            assert!(Instant::now() < deadline, "the apply side never reported");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let d = b"after".to_vec();
        c.propose(d.clone()).unwrap();
        while !s.lock().unwrap().normal.contains(&d) {
            assert!(Instant::now() < deadline, "not committed after catching up");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    });
    client_thread.join().unwrap();
    stop.stop();
    log.join().unwrap().expect("clean stop");
    apply_thread.join().unwrap();
}
