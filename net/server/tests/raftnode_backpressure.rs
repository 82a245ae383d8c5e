//! Back-pressure (DESIGN.md §3): when committed − applied exceeds `max_apply_lag`, proposals
//! are refused with "too many requests" (reported to the apply side as `Dropped`), and accepted
//! again once the apply side reports progress.

mod raftnode_common;

use glommio::channels::shared_channel;
use keel_raft::consensus::EntryKind;
use keel_server::raftnode::{LogCore, LogEvent, Refusal};
use raftnode_common::*;
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
    // apply → client: "an event was recorded in `seen`" (a full channel already holds a wake-up);
    // client → apply: "catch up now".
    let (event_tx, event_rx) = shared_channel::new_bounded::<()>(64);
    let (catch_up_tx, catch_up_rx) = shared_channel::new_bounded::<()>(1);
    let s = seen.clone();
    let apply_thread = executor("apply", 64 << 10, move || async move {
        let a = apply.connect().await;
        let events = event_tx.connect().await;
        let catch_up = catch_up_rx.connect().await;
        // The state machine "applies" nothing (reports no progress) until told to catch up.
        let mut reporting = false;
        loop {
            let ev = if reporting {
                a.next().await
            } else {
                match futures_lite::future::or(async { Some(a.next().await) }, async {
                    catch_up.recv().await;
                    None
                })
                .await
                {
                    Some(ev) => ev,
                    None => {
                        reporting = true;
                        let applied = s.lock().unwrap().applied;
                        a.report_applied(applied, applied);
                        continue;
                    }
                }
            };
            let Some(ev) = ev else { return };
            let mut st = s.lock().unwrap();
            match ev {
                LogEvent::Committed(es) => {
                    st.applied = es.last().unwrap().index;
                    let normal = es.into_iter().filter(|e| e.kind == EntryKind::Normal);
                    st.normal
                        .extend(normal.filter(|e| !e.data.is_empty()).map(|e| e.data));
                }
                LogEvent::Dropped {
                    proposals, reason, ..
                } => st.refused.push((proposals, reason)),
                other => panic!("unexpected {other:?}"),
            }
            if reporting {
                a.report_applied(st.applied, st.applied);
            }
            drop(st);
            let _ = events.try_send(());
        }
    });

    wait_for("the member to lead", LIMIT, || status.leader() == 1);
    let (s, st2) = (seen.clone(), status.clone());
    let client_thread = executor("client", 64 << 10, move || async move {
        let c = client.connect().await;
        let events = event_rx.connect().await;
        let catch_up = catch_up_tx.connect().await;
        let deadline = Instant::now() + LIMIT;
        // Waits for the apply side's next recorded event; panics with `what` at the deadline.
        let next_event = |what: String| {
            let events = &events;
            async move {
                let got =
                    futures_lite::future::or(async { events.recv().await.is_some() }, async {
                        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()))
                            .await;
                        false
                    })
                    .await;
                assert!(got, "{what}");
            }
        };
        let committed = |d: &[u8]| s.lock().unwrap().normal.iter().any(|n| n == d);
        let refusals = |d: &[u8]| {
            let st = s.lock().unwrap();
            st.refused
                .iter()
                .filter(|(ps, _)| ps.iter().any(|p| p == d))
                .count()
        };
        // One proposal at a time, each waiting for its outcome (committed or refused).
        let mut k = 0;
        while s.lock().unwrap().refused.is_empty() {
            assert!(Instant::now() < deadline, "never refused");
            let d = format!("p{k}").into_bytes();
            c.propose(d.clone()).unwrap();
            while !committed(&d) && refusals(&d) == 0 {
                next_event(format!("no outcome for p{k}")).await;
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
        // The state machine catches up: proposals are accepted again. A proposal that races
        // the log core's reading of the report may still be refused; it is proposed again.
        catch_up.send(()).await.unwrap();
        let d = b"after".to_vec();
        loop {
            let before = refusals(&d);
            c.propose(d.clone()).unwrap();
            while !committed(&d) && refusals(&d) == before {
                next_event("no outcome for the proposal after catching up".into()).await;
            }
            if committed(&d) {
                break;
            }
        }
        // Accepted, so the log core has the apply side's report.
        assert!(
            st2.applied() > 0,
            "accepted without the apply side's report"
        );
    });
    client_thread.join().unwrap();
    stop.stop();
    log.join().unwrap().expect("clean stop");
    apply_thread.join().unwrap();
}
