//! Shared test harness for the consensus tests: members over `MemStorage`, a `flush` that
//! persists Readies as a caller would, and `Net`, a fully connected in-memory cluster.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::{BTreeMap, BTreeSet};

use keel_raft::consensus::{
    ConfChange, ConfState, Config, Entry, EntryKind, HardState, MemStorage, Message, MessageKind,
    NodeId, RawNode, Role,
};

/// The paper's algorithm, without the extensions (pre-vote and check-quorum off).
pub fn paper_cfg(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.pre_vote = false;
    c.check_quorum = false;
    c
}

pub fn storage_with_log(voters: &[NodeId], terms: &[u64], term: u64) -> MemStorage {
    let s = MemStorage::new_with_conf_state(ConfState {
        voters: voters.to_vec(),
        learners: vec![],
    });
    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry {
            index: i as u64 + 1,
            term: t,
            kind: EntryKind::Normal,
            data: vec![i as u8],
        })
        .collect();
    s.append(&entries);
    s.set_hard_state(HardState {
        term,
        vote: 0,
        commit: 0,
    });
    s
}

pub fn node_cfg(cfg: Config, voters: &[NodeId], terms: &[u64], term: u64) -> RawNode<MemStorage> {
    RawNode::new(&cfg, storage_with_log(voters, terms, term)).unwrap()
}

pub fn node(id: NodeId, voters: &[NodeId]) -> RawNode<MemStorage> {
    node_cfg(paper_cfg(id), voters, &[], 0)
}

/// Persists every Ready like a caller would and returns the messages in send order.
pub fn flush(n: &mut RawNode<MemStorage>) -> Vec<Message> {
    let mut out = Vec::new();
    while n.has_ready() {
        let rd = n.ready();
        if let Some(s) = &rd.snapshot {
            n.storage().apply_snapshot(s.clone());
        }
        n.storage().append(&rd.entries);
        if let Some(hs) = rd.hard_state {
            n.storage().set_hard_state(hs);
        }
        out.extend(rd.messages.iter().cloned());
        out.extend(rd.persisted_messages.iter().cloned());
        for e in &rd.committed_entries {
            if e.kind == EntryKind::ConfChange {
                n.apply_conf_change(&ConfChange::decode(&e.data).unwrap());
            }
        }
        n.advance(&rd);
    }
    out
}

pub fn kinds(msgs: &[Message]) -> Vec<(MessageKind, NodeId)> {
    msgs.iter().map(|m| (m.kind, m.to)).collect()
}

pub fn msg(kind: MessageKind, from: NodeId, to: NodeId, term: u64) -> Message {
    Message::new(kind, from, to, term)
}

pub fn log_terms(n: &RawNode<MemStorage>) -> Vec<u64> {
    let r = n.raft();
    (1..=r.last_index())
        .map(|i| r.term_at(i).unwrap())
        .collect()
}

/// A fully connected cluster with optional dropped links.
pub struct Net {
    pub nodes: BTreeMap<NodeId, RawNode<MemStorage>>,
    pub cut: BTreeSet<(NodeId, NodeId)>,
}

impl Net {
    pub fn new(nodes: Vec<RawNode<MemStorage>>) -> Self {
        Net {
            nodes: nodes.into_iter().map(|n| (n.raft().id(), n)).collect(),
            cut: BTreeSet::new(),
        }
    }

    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for o in ids {
            self.cut.insert((id, o));
            self.cut.insert((o, id));
        }
    }

    /// Delivers messages until no member has anything to send.
    pub fn stabilize(&mut self) {
        loop {
            let mut msgs = Vec::new();
            for n in self.nodes.values_mut() {
                msgs.extend(flush(n));
            }
            if msgs.is_empty() {
                return;
            }
            for m in msgs {
                if self.cut.contains(&(m.from, m.to)) {
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(&m.to) {
                    let _ = n.step(m);
                }
            }
        }
    }

    pub fn tick_all(&mut self) {
        for n in self.nodes.values_mut() {
            n.tick();
        }
        self.stabilize();
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn elect(&mut self, id: NodeId) {
        self.nodes.get_mut(&id).unwrap().campaign();
        self.stabilize();
        assert_eq!(self.nodes[&id].raft().role(), Role::Leader);
    }

    pub fn get(&self, id: NodeId) -> &RawNode<MemStorage> {
        &self.nodes[&id]
    }

    pub fn get_mut(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }
}

pub fn cluster(n: u64) -> Net {
    let ids: Vec<NodeId> = (1..=n).collect();
    Net::new(ids.iter().map(|&i| node(i, &ids)).collect())
}

/// A cluster of `n` voters whose configurations `f` adjusts.
pub fn cluster_with(n: u64, f: impl Fn(Config) -> Config) -> Net {
    let ids: Vec<NodeId> = (1..=n).collect();
    Net::new(
        ids.iter()
            .map(|&i| node_cfg(f(Config::new(i)), &ids, &[], 0))
            .collect(),
    )
}
