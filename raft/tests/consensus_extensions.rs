//! Tests of what keel adds to the paper's Figure 2, following etcd-io/raft: pre-vote,
//! check-quorum, ReadIndex, proposal forwarding, leader transfer, learners and membership
//! changes, snapshots, the persistence ordering of Ready, gateway validation and determinism.

mod consensus_harness;

use consensus_harness::*;
use keel_raft::consensus::{
    ConfChange, ConfChangeKind, ConfState, Config, MemStorage, MessageKind, RaftError, RawNode,
    Role, Storage,
};

fn defaults(c: Config) -> Config {
    c
}

#[test]
fn pre_vote_keeps_a_partitioned_member_from_raising_its_term() {
    let mut net = cluster_with(3, defaults);
    net.elect(1);
    let term = net.get(1).raft().term();
    net.isolate(3);
    for _ in 0..100 {
        net.tick_all();
    }
    assert_eq!(
        net.get(3).raft().term(),
        term,
        "pre-votes fail, the term stays"
    );
    net.heal();
    for _ in 0..30 {
        net.tick_all();
    }
    assert_eq!(
        net.get(1).raft().role(),
        Role::Leader,
        "the healthy leader is not deposed"
    );
    assert_eq!(net.get(1).raft().term(), term);
}

#[test]
fn without_pre_vote_a_rejoining_member_disrupts_the_leader() {
    // The contrast that shows why pre-vote is on by default.
    let mut net = cluster_with(3, |mut c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c
    });
    net.elect(1);
    let term = net.get(1).raft().term();
    net.isolate(3);
    for _ in 0..100 {
        net.tick_all();
    }
    assert!(net.get(3).raft().term() > term);
}

#[test]
fn check_quorum_leader_steps_down_when_it_cannot_hear_a_majority() {
    let mut net = cluster_with(3, defaults);
    net.elect(1);
    net.isolate(1);
    for _ in 0..20 {
        net.get_mut(1).tick();
        flush(net.get_mut(1));
    }
    assert_eq!(net.get(1).raft().role(), Role::Follower);
}

#[test]
fn read_index_is_confirmed_by_one_heartbeat_round_for_every_read_queued_meanwhile() {
    let mut net = cluster(3);
    net.elect(1);
    let commit = net.get(1).raft().committed();
    let l = net.get_mut(1);
    l.read_index(b"r1".to_vec()).unwrap();
    let first_round = flush(l);
    assert_eq!(
        kinds(&first_round),
        vec![(MessageKind::Heartbeat, 2), (MessageKind::Heartbeat, 3)]
    );
    l.read_index(b"r2".to_vec()).unwrap();
    l.read_index(b"r3".to_vec()).unwrap();
    let rd = l.ready();
    assert!(
        rd.read_states.is_empty(),
        "nothing is confirmed before a quorum answers"
    );
    assert!(rd.messages.is_empty(), "r2, r3 wait for the next round");
    l.advance(&rd);
    // Deliver round 1: r1 is confirmed and one round starts for r2 and r3 together.
    for m in first_round {
        net.get_mut(m.to).step(m).unwrap();
    }
    let mut answers = Vec::new();
    for id in [2, 3] {
        answers.extend(flush(net.get_mut(id)));
    }
    let l = net.get_mut(1);
    l.step(answers.remove(0)).unwrap();
    let rd = l.ready();
    let ctxs: Vec<&[u8]> = rd
        .read_states
        .iter()
        .map(|r| r.context.as_slice())
        .collect();
    assert_eq!(ctxs, vec![b"r1".as_slice()]);
    assert_eq!(rd.read_states[0].index, commit);
    let second_round = rd.messages.clone();
    assert_eq!(
        kinds(&second_round),
        vec![(MessageKind::Heartbeat, 2), (MessageKind::Heartbeat, 3)]
    );
    l.advance(&rd);
    for m in second_round {
        net.get_mut(m.to).step(m).unwrap();
    }
    let answer = flush(net.get_mut(3)).remove(0);
    let l = net.get_mut(1);
    l.step(answer).unwrap();
    let rd = l.ready();
    let ctxs: Vec<&[u8]> = rd
        .read_states
        .iter()
        .map(|r| r.context.as_slice())
        .collect();
    assert_eq!(
        ctxs,
        vec![b"r2".as_slice(), b"r3".as_slice()],
        "one round served both"
    );
    l.advance(&rd);
}

#[test]
fn read_index_waits_until_the_leader_committed_an_entry_of_its_term() {
    let mut net = cluster(3);
    let n2 = net.get_mut(2);
    n2.campaign();
    flush(n2);
    n2.step(msg(MessageKind::RequestVoteResp, 3, 2, 1)).unwrap();
    assert_eq!(n2.raft().role(), Role::Leader);
    let appends = flush(n2); // held back: the empty entry of term 1 is not committed yet
    n2.read_index(b"early".to_vec()).unwrap();
    let out = flush(n2);
    assert!(
        out.iter().all(|m| m.kind != MessageKind::Heartbeat),
        "no confirmation round before the commit"
    );
    assert_eq!(n2.raft().pending_read_count(), 1);
    for m in appends {
        net.get_mut(m.to).step(m).unwrap();
    }
    net.stabilize();
    assert_eq!(net.get(2).raft().committed(), 1);
    assert_eq!(
        net.get(2).raft().pending_read_count(),
        0,
        "served once an entry of the term is committed"
    );
}

#[test]
fn followers_obtain_a_read_index_from_the_leader() {
    let mut net = cluster(3);
    net.elect(1);
    net.get_mut(2).read_index(b"f".to_vec()).unwrap();
    let rd = net.get_mut(2).ready();
    assert_eq!(kinds(&rd.messages), vec![(MessageKind::ReadIndex, 1)]);
    net.get_mut(2).advance(&rd);
    for m in rd.messages {
        net.get_mut(1).step(m).unwrap();
    }
    // Run until node 2 has the answer, capturing its Ready.
    let mut got = Vec::new();
    for _ in 0..5 {
        for id in [1, 3] {
            let out = flush(net.get_mut(id));
            for m in out {
                let n = net.get_mut(m.to);
                n.step(m).unwrap();
                if n.raft().id() == 2 && n.has_ready() {
                    let rd = n.ready();
                    got.extend(rd.read_states.clone());
                    n.advance(&rd);
                }
            }
        }
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].context, b"f");
    assert_eq!(got[0].index, net.get(1).raft().committed());
}

#[test]
fn followers_forward_proposals_to_the_leader_unless_forwarding_is_off() {
    let mut net = cluster(3);
    net.elect(1);
    net.get_mut(2).propose(b"via-2".to_vec()).unwrap();
    net.stabilize();
    let l = net.get(1).raft();
    assert_eq!(
        l.entries(l.last_index(), l.last_index() + 1)[0].data,
        b"via-2"
    );
    let mut net = cluster_with(3, |mut c| {
        c.disable_proposal_forwarding = true;
        c
    });
    net.elect(1);
    assert!(matches!(
        net.get_mut(2).propose(b"x".to_vec()),
        Err(RaftError::ProposalDropped(_))
    ));
}

#[test]
fn leader_transfer_hands_leadership_to_a_caught_up_follower() {
    let mut net = cluster_with(3, defaults);
    net.elect(1);
    net.isolate(3);
    net.get_mut(1).propose(b"x".to_vec()).unwrap();
    net.stabilize();
    net.heal();
    net.get_mut(1).transfer_leader(3).unwrap();
    let out = flush(net.get_mut(1));
    assert_eq!(
        kinds(&out),
        vec![(MessageKind::Append, 3)],
        "catch the transferee up first"
    );
    assert!(matches!(
        net.get_mut(1).propose(b"y".to_vec()),
        Err(RaftError::ProposalDropped(_))
    ));
    for m in out {
        net.get_mut(3).step(m).unwrap();
    }
    net.stabilize();
    assert_eq!(net.get(3).raft().role(), Role::Leader);
    assert_eq!(net.get(1).raft().role(), Role::Follower);
}

#[test]
fn learners_receive_the_log_but_neither_vote_nor_campaign_until_promoted() {
    let conf = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
    };
    let mk = |id| {
        RawNode::new(
            &paper_cfg(id),
            MemStorage::new_with_conf_state(conf.clone()),
        )
        .unwrap()
    };
    let mut net = Net::new(vec![mk(1), mk(2), mk(3), mk(4)]);
    net.elect(1);
    net.get_mut(1).propose(b"x".to_vec()).unwrap();
    net.stabilize();
    assert_eq!(log_terms(net.get(4)), log_terms(net.get(1)));
    net.isolate(4);
    for _ in 0..50 {
        net.get_mut(4).tick();
        flush(net.get_mut(4));
    }
    assert_eq!(
        net.get(4).raft().role(),
        Role::Follower,
        "learners never campaign"
    );
    net.heal();
    let promote = ConfChange {
        kind: ConfChangeKind::AddVoter,
        node_id: 4,
    };
    net.get_mut(1).propose_conf_change(promote).unwrap();
    assert_eq!(
        net.get_mut(1).propose_conf_change(promote),
        Err(RaftError::ConfChangePending),
        "one change at a time"
    );
    net.stabilize();
    assert_eq!(net.get(1).raft().conf_state().voters, vec![1, 2, 3, 4]);
    assert_eq!(net.get(4).raft().conf_state().voters, vec![1, 2, 3, 4]);
}

#[test]
fn a_removed_leader_steps_down() {
    let mut net = cluster(3);
    net.elect(1);
    net.get_mut(1)
        .propose_conf_change(ConfChange {
            kind: ConfChangeKind::RemoveNode,
            node_id: 1,
        })
        .unwrap();
    net.stabilize();
    assert_eq!(net.get(1).raft().role(), Role::Follower);
    assert_eq!(net.get(2).raft().conf_state().voters, vec![2, 3]);
    net.elect(2);
}

#[test]
fn leaders_send_a_snapshot_to_a_follower_whose_next_entry_was_compacted() {
    let mut net = cluster(3);
    net.elect(1);
    net.isolate(3);
    for i in 0..10u8 {
        net.get_mut(1).propose(vec![i]).unwrap();
        net.stabilize();
    }
    let l = net.get(1);
    let applied = l.raft().applied();
    let st = l.storage().clone();
    st.create_snapshot(applied, l.raft().conf_state(), b"state".to_vec());
    st.compact(applied);
    net.heal();
    net.get_mut(1).tick();
    let mut sent_snapshot = false;
    for _ in 0..10 {
        let out = flush(net.get_mut(1));
        for m in out {
            sent_snapshot |= m.kind == MessageKind::InstallSnapshot;
            let n = net.get_mut(m.to);
            n.step(m).unwrap();
            let back = flush(n);
            for b in back {
                net.get_mut(b.to).step(b).unwrap();
            }
        }
    }
    assert!(sent_snapshot);
    let f = net.get(3);
    assert_eq!(
        f.raft().first_index(),
        applied + 1,
        "the snapshot replaced the log prefix"
    );
    assert_eq!(f.storage().snapshot().unwrap().data, b"state");
    assert_eq!(f.raft().committed(), net.get(1).raft().committed());
}

#[test]
fn leaders_replicate_before_persisting_and_followers_answer_only_after_persisting() {
    let mut net = cluster(3);
    net.elect(1);
    net.get_mut(1).propose(b"x".to_vec()).unwrap();
    let rd = net.get_mut(1).ready();
    assert_eq!(rd.entries.len(), 1, "to persist");
    let appends: Vec<_> = rd
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::Append)
        .cloned()
        .collect();
    assert_eq!(appends.len(), 2, "sent while the leader persists");
    net.get_mut(1).storage().append(&rd.entries);
    net.get_mut(1).advance(&rd);
    let f = net.get_mut(2);
    f.step(appends[0].clone()).unwrap();
    let rd = f.ready();
    assert!(rd.messages.is_empty());
    assert_eq!(
        kinds(&rd.persisted_messages),
        vec![(MessageKind::AppendResp, 1)]
    );
    f.storage().append(&rd.entries);
    f.advance(&rd);
}

#[test]
fn members_restart_from_persisted_term_vote_and_log() {
    let mut n = node(1, &[1, 2, 3]);
    n.step(msg(MessageKind::RequestVote, 2, 1, 5)).unwrap();
    flush(&mut n);
    let restarted = RawNode::new(&paper_cfg(1), n.storage().clone()).unwrap();
    assert_eq!((restarted.raft().term(), restarted.raft().vote()), (5, 2));
    // Unpersisted state is lost: a vote taken but not flushed does not survive.
    let mut m = node(1, &[1, 2, 3]);
    m.step(msg(MessageKind::RequestVote, 3, 1, 6)).unwrap();
    let again = RawNode::new(&paper_cfg(1), m.storage().clone()).unwrap();
    assert_eq!((again.raft().term(), again.raft().vote()), (0, 0));
}

#[test]
fn the_gateway_rejects_malformed_messages() {
    let mut n = node(1, &[1, 2, 3]);
    assert!(matches!(
        n.step(msg(MessageKind::Append, 2, 9, 1)),
        Err(RaftError::InvalidMessage(_))
    ));
    assert!(matches!(
        n.step(msg(MessageKind::InstallSnapshot, 2, 1, 1)),
        Err(RaftError::InvalidMessage(_))
    ));
    assert!(matches!(
        n.step(msg(MessageKind::Propose, 2, 1, 3)),
        Err(RaftError::InvalidMessage(_))
    ));
    assert!(Config {
        election_tick: 1,
        ..Config::new(1)
    }
    .validate()
    .is_err());
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut net = cluster_with(5, defaults);
        let mut trace = String::new();
        for step in 0..300 {
            for n in net.nodes.values_mut() {
                n.tick();
            }
            if step % 7 == 0 {
                for n in net.nodes.values_mut() {
                    let _ = n.propose(vec![step as u8]);
                }
            }
            for n in net.nodes.values_mut() {
                for m in flush(n) {
                    trace.push_str(&format!("{m:?}\n"));
                }
            }
            net.stabilize();
        }
        trace
    };
    let (a, b) = (run(), run());
    assert!(a.len() > 1000);
    assert_eq!(a, b);
}

#[test]
fn a_leader_that_cannot_commit_refuses_proposals_beyond_its_uncommitted_budget() {
    let mut net = cluster_with(3, |mut c| {
        c.max_uncommitted_size = 10;
        c
    });
    net.elect(1);
    net.isolate(1);
    let l = net.get_mut(1);
    l.propose(vec![0; 8]).unwrap();
    assert!(matches!(
        l.propose(vec![0; 8]),
        Err(RaftError::ProposalDropped(_))
    ));
    net.heal();
    net.get_mut(1).tick();
    net.stabilize();
    assert!(
        net.get_mut(1).propose(vec![0; 8]).is_ok(),
        "committing frees the budget"
    );
}

/// Committed entries are offered only once persisted on this member — a leader that learns of
/// a commit from its followers while its own write is queued, with pipelined persistence
/// (`advance_handed` / `on_persisted`), applies nothing until that write completes.
#[test]
fn committed_entries_wait_for_this_members_own_write() {
    let mut net = cluster(3);
    net.elect(1);
    let l = net.get_mut(1);
    l.propose(b"x".to_vec()).unwrap();
    let rd = l.ready();
    let (index, term) = {
        let e = rd.entries.last().expect("the proposal");
        (e.index, e.term)
    };
    let appends = rd.messages.clone();
    assert_eq!(
        kinds(&appends),
        vec![(MessageKind::Append, 2), (MessageKind::Append, 3)]
    );
    l.advance_handed(&rd); // the leader's own write is queued, not durable
    let mut answers = Vec::new();
    for m in appends {
        let f = net.get_mut(m.to);
        f.step(m).unwrap();
        answers.extend(flush(f));
    }
    let l = net.get_mut(1);
    for a in answers {
        l.step(a).unwrap();
    }
    assert_eq!(
        l.raft().committed(),
        index,
        "both followers hold it: committed"
    );
    while l.has_ready() {
        let rd = l.ready();
        assert!(
            rd.committed_entries.iter().all(|e| e.index < index),
            "offered {index} before this member persisted it"
        );
        l.advance_handed(&rd);
    }
    let s = l.storage().clone();
    s.append(&rd.entries);
    l.on_persisted(index, term);
    let rd = l.ready();
    assert_eq!(
        rd.committed_entries.last().map(|e| e.index),
        Some(index),
        "offered once durable here"
    );
    l.advance_handed(&rd);
}
