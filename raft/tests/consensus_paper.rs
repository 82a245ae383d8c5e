//! Unit tests named after the Raft paper (Ongaro & Ousterhout 2014): each rule of Figure 2,
//! the cases of Figure 7 (followers a–f reconcile with a new leader) and Figure 8 (a leader does
//! not commit entries of earlier terms by counting replicas), plus the extensions keel relies on
//! (pre-vote, check-quorum, ReadIndex, forwarding, transfer, snapshots, membership, persistence
//! ordering). Each test drives `RawNode`s by hand and asserts exact outputs.

mod consensus_harness;

use std::collections::BTreeSet;

use consensus_harness::*;
use keel_raft::consensus::{Entry, HardState, Message, MessageKind, NodeId, Role, Storage};

// ---- Figure 2, rules for all servers ---------------------------------------------------------

#[test]
fn all_servers_convert_to_follower_when_a_message_carries_a_higher_term() {
    for role in [Role::Follower, Role::Candidate, Role::Leader] {
        let mut n = node(1, &[1, 2, 3]);
        match role {
            Role::Follower => {}
            Role::Candidate => n.campaign(),
            _ => {
                n.campaign();
                flush(&mut n);
                let mut v = msg(MessageKind::RequestVoteResp, 2, 1, 1);
                v.reject = false;
                n.step(v).unwrap();
            }
        }
        assert_eq!(n.raft().role(), role);
        flush(&mut n);
        n.step(msg(MessageKind::Heartbeat, 3, 1, 7)).unwrap();
        assert_eq!(n.raft().role(), Role::Follower, "from {role:?}");
        assert_eq!(n.raft().term(), 7);
        assert_eq!(n.raft().leader_id(), 3);
    }
}

#[test]
fn all_servers_reject_requests_with_a_stale_term() {
    let mut n = node_cfg(paper_cfg(1), &[1, 2, 3], &[1, 1], 3);
    let mut app = msg(MessageKind::Append, 2, 1, 2);
    app.index = 2;
    app.log_term = 1;
    app.entries = vec![Entry {
        index: 3,
        term: 2,
        ..Entry::default()
    }];
    n.step(app).unwrap();
    assert_eq!(
        n.raft().last_index(),
        2,
        "stale leader's entries are not appended"
    );
    let mut vote = msg(MessageKind::RequestVote, 2, 1, 2);
    vote.index = 9;
    vote.log_term = 2;
    n.step(vote).unwrap();
    assert_eq!(n.raft().vote(), 0, "no vote for a stale candidate");
    assert!(flush(&mut n)
        .iter()
        .all(|m| m.kind != MessageKind::RequestVoteResp || m.reject));
}

#[test]
fn all_servers_apply_committed_entries_in_log_order() {
    let mut net = cluster(3);
    net.elect(1);
    for i in 0..5u8 {
        net.get_mut(1).propose(vec![i]).unwrap();
    }
    let mut applied = Vec::new();
    let leader = net.get_mut(1);
    // Drive the leader alone to collect its Readies, delivering to followers in between.
    loop {
        if !leader.has_ready() {
            break;
        }
        let rd = leader.ready();
        leader.storage().append(&rd.entries);
        applied.extend(rd.committed_entries.iter().map(|e| e.index));
        leader.advance(&rd);
    }
    net.stabilize();
    let mut more = Vec::new();
    let leader = net.get_mut(1);
    while leader.has_ready() {
        let rd = leader.ready();
        more.extend(rd.committed_entries.iter().map(|e| e.index));
        leader.advance(&rd);
    }
    applied.extend(more);
    assert!(applied.windows(2).all(|w| w[1] == w[0] + 1), "{applied:?}");
}

// ---- Figure 2, followers ----------------------------------------------------------------------

#[test]
fn followers_start_an_election_when_the_election_timeout_elapses() {
    let mut n = node(1, &[1, 2, 3]);
    let timeout = n.raft().randomized_election_timeout();
    for _ in 0..timeout - 1 {
        n.tick();
    }
    assert_eq!(n.raft().role(), Role::Follower);
    n.tick();
    assert_eq!(n.raft().role(), Role::Candidate);
    assert_eq!(
        (n.raft().term(), n.raft().vote()),
        (1, 1),
        "votes for itself in a new term"
    );
    let rd = n.ready();
    assert!(
        rd.messages.is_empty(),
        "vote requests wait until term and vote are durable"
    );
    assert_eq!(
        kinds(&rd.persisted_messages),
        vec![(MessageKind::RequestVote, 2), (MessageKind::RequestVote, 3)]
    );
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: 1,
            commit: 0
        })
    );
}

#[test]
fn election_timeouts_are_randomized_between_one_and_two_election_ticks() {
    let mut seen = BTreeSet::new();
    for seed in 0..200 {
        let mut c = paper_cfg(1);
        c.seed = seed;
        let n = node_cfg(c, &[1, 2, 3], &[], 0);
        let t = n.raft().randomized_election_timeout();
        assert!((10..20).contains(&t), "{t}");
        seen.insert(t);
    }
    assert!(seen.len() >= 8, "timeouts should spread: {seen:?}");
}

#[test]
fn followers_that_hear_from_the_leader_do_not_start_elections() {
    let mut n = node(1, &[1, 2, 3]);
    for _ in 0..100 {
        n.tick();
        n.step(msg(MessageKind::Heartbeat, 2, 1, 1)).unwrap();
    }
    assert_eq!(n.raft().role(), Role::Follower);
    assert_eq!(n.raft().term(), 1);
}

// ---- Figure 2, candidates ---------------------------------------------------------------------

#[test]
fn candidates_win_with_a_majority_and_append_an_empty_entry_of_their_term() {
    let mut n = node(1, &[1, 2, 3, 4, 5]);
    n.campaign();
    flush(&mut n);
    n.step(msg(MessageKind::RequestVoteResp, 2, 1, 1)).unwrap();
    assert_eq!(n.raft().role(), Role::Candidate, "2 of 5 is not a majority");
    n.step(msg(MessageKind::RequestVoteResp, 3, 1, 1)).unwrap();
    assert_eq!(n.raft().role(), Role::Leader);
    assert_eq!(log_terms(&n), vec![1]);
    let rd = n.ready();
    assert_eq!(rd.entries.len(), 1);
    assert!(rd.entries[0].data.is_empty());
    let appends: Vec<NodeId> = rd
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::Append)
        .map(|m| m.to)
        .collect();
    assert_eq!(
        appends,
        vec![2, 3, 4, 5],
        "leader replicates while persisting its own log"
    );
}

#[test]
fn candidates_lose_with_a_majority_of_rejections() {
    let mut n = node(1, &[1, 2, 3]);
    n.campaign();
    flush(&mut n);
    let mut r = msg(MessageKind::RequestVoteResp, 2, 1, 1);
    r.reject = true;
    n.step(r.clone()).unwrap();
    r.from = 3;
    n.step(r).unwrap();
    assert_eq!(n.raft().role(), Role::Follower);
}

#[test]
fn candidates_step_down_on_append_entries_from_a_leader_of_the_same_term() {
    let mut n = node(1, &[1, 2, 3]);
    n.campaign();
    n.step(msg(MessageKind::Heartbeat, 2, 1, 1)).unwrap();
    assert_eq!((n.raft().role(), n.raft().leader_id()), (Role::Follower, 2));
}

// ---- Figure 2, RequestVote receiver ------------------------------------------------------------

#[test]
fn voters_grant_at_most_one_vote_per_term() {
    let mut n = node(1, &[1, 2, 3]);
    for (cand, granted) in [(2, true), (3, false), (2, true)] {
        n.step(msg(MessageKind::RequestVote, cand, 1, 1)).unwrap();
        let out = flush(&mut n);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reject, !granted, "candidate {cand}");
    }
    assert_eq!(
        n.storage().hard_state().vote,
        2,
        "the vote is persisted before it is sent"
    );
}

#[test]
fn voters_refuse_candidates_whose_log_is_less_up_to_date() {
    // Our log ends at (index 3, term 2).
    for (last_index, last_term, granted) in [
        (3, 1, false), // lower last term
        (2, 2, false), // same term, shorter
        (3, 2, true),  // identical
        (1, 3, true),  // higher last term wins regardless of length
        (4, 2, true),  // same term, longer
    ] {
        let mut n = node_cfg(paper_cfg(1), &[1, 2, 3], &[1, 2, 2], 2);
        let mut v = msg(MessageKind::RequestVote, 2, 1, 3);
        v.index = last_index;
        v.log_term = last_term;
        n.step(v).unwrap();
        let out = flush(&mut n);
        assert_eq!(out[0].reject, !granted, "({last_index}, {last_term})");
    }
}

// ---- Figure 2, AppendEntries receiver ----------------------------------------------------------

fn append(from: NodeId, term: u64, prev: (u64, u64), ents: &[(u64, u64)], commit: u64) -> Message {
    let mut m = msg(MessageKind::Append, from, 1, term);
    m.index = prev.0;
    m.log_term = prev.1;
    m.commit = commit;
    m.entries = ents
        .iter()
        .map(|&(index, term)| Entry {
            index,
            term,
            ..Entry::default()
        })
        .collect();
    m
}

#[test]
fn followers_reject_append_entries_whose_previous_entry_does_not_match() {
    let mut n = node_cfg(paper_cfg(1), &[1, 2, 3], &[1, 1, 2, 2, 2], 3);
    n.step(append(2, 3, (5, 3), &[(6, 3)], 0)).unwrap();
    let out = flush(&mut n);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert!(r.reject);
    assert_eq!(r.index, 5);
    // Fast backtracking: every entry of term 2 conflicts with a term-3 prefix, so the hint
    // skips back to the last entry with term <= 3... which is index 5 (term 2).
    assert_eq!((r.reject_hint, r.log_term), (5, 2));
    n.step(append(2, 3, (7, 3), &[], 0)).unwrap();
    let r = &flush(&mut n)[0];
    assert_eq!(
        (r.reject, r.reject_hint, r.log_term),
        (true, 5, 2),
        "beyond our log"
    );
}

#[test]
fn followers_delete_conflicting_entries_and_append_new_ones() {
    let mut n = node_cfg(paper_cfg(1), &[1, 2, 3], &[1, 1, 2, 2], 3);
    n.step(append(2, 3, (2, 1), &[(3, 3), (4, 3), (5, 3)], 0))
        .unwrap();
    assert_eq!(log_terms(&n), vec![1, 1, 3, 3, 3]);
    let r = &flush(&mut n)[0];
    assert_eq!((r.reject, r.index), (false, 5));
    assert_eq!(
        n.storage().term(3),
        Ok(3),
        "the conflicting suffix was overwritten on disk"
    );
    // An Append whose entries are all present changes nothing (duplicate delivery).
    n.step(append(2, 3, (2, 1), &[(3, 3)], 0)).unwrap();
    assert_eq!(log_terms(&n), vec![1, 1, 3, 3, 3]);
}

#[test]
fn followers_set_commit_to_the_minimum_of_leader_commit_and_last_new_entry() {
    let mut n = node_cfg(paper_cfg(1), &[1, 2, 3], &[1, 1, 1, 1], 1);
    n.step(append(2, 1, (1, 1), &[(2, 1)], 4)).unwrap();
    assert_eq!(
        n.raft().committed(),
        2,
        "entries after the new ones may not match the leader"
    );
    n.step(append(2, 1, (4, 1), &[], 3)).unwrap();
    assert_eq!(n.raft().committed(), 3);
}

// ---- Figure 2, leaders ---------------------------------------------------------------------------

#[test]
fn leaders_send_heartbeats_every_heartbeat_interval() {
    let mut net = cluster(3);
    net.elect(1);
    let n = net.get_mut(1);
    n.tick();
    let out = flush(n);
    assert_eq!(
        kinds(&out),
        vec![(MessageKind::Heartbeat, 2), (MessageKind::Heartbeat, 3)]
    );
}

#[test]
fn leaders_commit_once_a_majority_persisted_counting_themselves_only_after_persisting() {
    let mut net = cluster(3);
    net.elect(1);
    let leader = net.get_mut(1);
    leader.propose(b"x".to_vec()).unwrap();
    let rd = leader.ready();
    let idx = rd.entries[0].index;
    assert!(rd.messages.iter().any(|m| m.kind == MessageKind::Append));
    // Follower 2 acknowledges before the leader's own write finished: 1 of 3 is no majority.
    let mut ack = msg(MessageKind::AppendResp, 2, 1, 1);
    ack.index = idx;
    leader.step(ack).unwrap();
    assert_eq!(
        leader.raft().committed(),
        idx - 1,
        "leader has not persisted the entry yet"
    );
    leader.storage().append(&rd.entries);
    leader.advance(&rd);
    assert_eq!(
        leader.raft().committed(),
        idx,
        "persisted on leader and follower 2"
    );
}

#[test]
fn leaders_back_up_next_index_a_term_at_a_time_on_rejection() {
    // Leader log terms [1,1,1,4,4,5,5,6,6,6]; follower has [1,1,1,2,2,2,3,3,3,3,3].
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let mut l = node_cfg(paper_cfg(1), &[1, 2], &leader_log, 7);
    let mut f = node_cfg(paper_cfg(2), &[1, 2], &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 7);
    l.campaign();
    let mut rounds = 0;
    let mut ms = flush(&mut l);
    // Run the exchange by hand and count Append rounds until the logs match.
    loop {
        let mut next = Vec::new();
        for m in ms {
            let target = if m.to == 1 { &mut l } else { &mut f };
            if m.kind == MessageKind::Append {
                rounds += 1;
            }
            target.step(m).unwrap();
            next.extend(flush(target));
        }
        if next.is_empty() {
            break;
        }
        next.extend(flush(&mut l));
        ms = next;
    }
    assert_eq!(l.raft().role(), Role::Leader);
    assert_eq!(log_terms(&f), log_terms(&l));
    assert!(
        rounds <= 4,
        "one round per conflicting term, not per entry: {rounds}"
    );
}

// ---- Figure 7 ------------------------------------------------------------------------------------

#[test]
fn figure_7_followers_a_to_f_reconcile_with_the_leader_of_term_8() {
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [(&str, &[u64]); 6] = [
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 1, 4]),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", &[1, 1, 1, 4, 4, 4, 4]),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, flog) in followers {
        // A 3-member cluster: the leader (which wins term 8), the follower of the figure, and a
        // third member with the leader's log that votes for it.
        let mut l = node_cfg(paper_cfg(1), &[1, 2, 3], &leader_log, 7);
        let f = node_cfg(paper_cfg(2), &[1, 2, 3], flog, 7);
        let v = node_cfg(paper_cfg(3), &[1, 2, 3], &leader_log, 7);
        l.campaign();
        let mut net = Net::new(vec![l, f, v]);
        net.stabilize();
        assert_eq!(net.get(1).raft().role(), Role::Leader, "case {name}");
        assert_eq!(net.get(1).raft().term(), 8);
        net.get_mut(1).propose(b"after".to_vec()).unwrap();
        net.stabilize();
        let mut want = leader_log.to_vec();
        want.extend([8, 8]);
        assert_eq!(
            log_terms(net.get(1)),
            want,
            "case {name}: leader log is append-only"
        );
        assert_eq!(
            log_terms(net.get(2)),
            want,
            "case {name}: follower reconciled"
        );
        assert_eq!(net.get(2).raft().committed(), 12, "case {name}");
    }
}

// ---- Figure 8 -------------------------------------------------------------------------------------

/// (c) of Figure 8: S1, leader again in term 4, has replicated the term-2 entry at index 2 to a
/// majority (S1, S2, S3). It must not commit it by counting: S5 (with a term-3 entry at index
/// 2) could still be elected and overwrite it, as in (d). Only once an entry of term 4 is on a
/// majority (e) are both committed. The canary flag `unsafe_commit_old_terms_for_canary` does
/// commit it — checked here to show the test can fail.
fn figure_8(canary: bool) -> u64 {
    let ids = [1, 2, 3, 4, 5];
    let mut c1 = paper_cfg(1);
    c1.unsafe_commit_old_terms_for_canary = canary;
    c1.max_size_per_msg = 1; // one entry per Append, as in the figure's step-by-step replication
    let s1 = node_cfg(c1, &ids, &[1, 2], 3);
    let s2 = node_cfg(paper_cfg(2), &ids, &[1, 2], 3);
    let s3 = node_cfg(paper_cfg(3), &ids, &[1], 3);
    let s4 = node_cfg(paper_cfg(4), &ids, &[1], 3);
    let s5 = node_cfg(paper_cfg(5), &ids, &[1, 3], 3);
    let mut net = Net::new(vec![s1, s2, s3, s4, s5]);
    net.isolate(5);
    net.get_mut(1).campaign();
    // Deliver everything except the term-4 entry to S3 (and nothing to S4, S5): S3 gets the
    // term-2 entry through S1's backtracking but not the new leader's own entry.
    loop {
        let mut msgs = Vec::new();
        for n in net.nodes.values_mut() {
            msgs.extend(flush(n));
        }
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            // (The first Append, which S3 rejects for lack of index 2, gets through.)
            let s3_has_2 = net.get(3).raft().term_at(2).is_some();
            let new_entry_to_s3 = m.to == 3 && s3_has_2 && m.entries.iter().any(|e| e.term == 4);
            if m.to >= 4 || m.from >= 4 || new_entry_to_s3 {
                continue;
            }
            let _ = net.get_mut(m.to).step(m);
        }
    }
    assert_eq!(net.get(1).raft().role(), Role::Leader);
    assert_eq!(net.get(1).raft().term(), 4);
    assert_eq!(
        net.get(3).raft().term_at(2),
        Some(2),
        "S3 holds the term-2 entry"
    );
    net.get(1).raft().committed()
}

#[test]
fn figure_8_leaders_do_not_commit_entries_of_earlier_terms_by_counting_replicas() {
    assert_eq!(
        figure_8(false),
        0,
        "index 2 (term 2) is on a majority but not committed"
    );
    assert_eq!(
        figure_8(true),
        2,
        "the canary variant commits it: the check can fail"
    );
}

#[test]
fn figure_8_entries_of_earlier_terms_commit_with_an_entry_of_the_current_term() {
    let ids = [1, 2, 3, 4, 5];
    let s1 = node_cfg(paper_cfg(1), &ids, &[1, 2], 3);
    let s2 = node_cfg(paper_cfg(2), &ids, &[1, 2], 3);
    let s3 = node_cfg(paper_cfg(3), &ids, &[1], 3);
    let s4 = node_cfg(paper_cfg(4), &ids, &[1], 3);
    let s5 = node_cfg(paper_cfg(5), &ids, &[1, 3], 3);
    let mut net = Net::new(vec![s1, s2, s3, s4, s5]);
    net.isolate(5);
    net.elect(1);
    assert_eq!(net.get(1).raft().committed(), 3);
    for id in 1..=4 {
        assert_eq!(log_terms(net.get(id)), vec![1, 2, 4], "member {id}");
    }
    // S5 can no longer win: a majority has a more up-to-date log. The next leader brings it in line.
    net.cut.clear();
    net.get_mut(5).campaign();
    net.stabilize();
    assert_ne!(net.get(5).raft().role(), Role::Leader);
    assert_eq!(net.get(1).raft().role(), Role::Leader);
    net.get_mut(1).tick(); // a heartbeat finds S5 behind
    net.stabilize();
    assert_eq!(log_terms(net.get(5)), log_terms(net.get(1)));
    assert_eq!(log_terms(net.get(5))[..3], [1, 2, 4]);
}
