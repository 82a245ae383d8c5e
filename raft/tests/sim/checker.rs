//! Safety checkers, run after every simulator step: R1–R5 (DESIGN.md §9) and linearizability of
//! ReadIndex reads. A violation is returned as `Err("VIOLATION ...")` so the canary can tell a
//! checker finding from any other failure.

use std::collections::BTreeMap;

use keel_raft::consensus::{Entry, NodeId};

/// FNV-1a: a deterministic digest of entry payloads (no `RandomState`, so runs replay).
pub fn digest(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub type CheckResult = Result<(), String>;

/// What the checker remembers about the cluster's history.
#[derive(Default)]
pub struct Checker {
    /// R1: the leader of each term.
    leaders: BTreeMap<u64, NodeId>,
    /// R2: for each (leader, term), the terms of its log from `first` on, as last observed.
    leader_logs: BTreeMap<(NodeId, u64), (u64, Vec<u64>)>,
    /// R3: every entry ever in any log, by (index, term): (payload digest, previous entry's term).
    entries: BTreeMap<(u64, u64), (u64, u64)>,
    /// R5: every entry applied anywhere, by index: (term, payload digest).
    applied: BTreeMap<u64, (u64, u64)>,
    /// Every entry any member has declared committed (index ≤ its commit index), by index: term.
    committed: BTreeMap<u64, u64>,
    /// Highest index acknowledged to a client as written.
    pub max_acked_index: u64,
    /// Highest state (applied index) any completed read returned.
    pub max_read_value: u64,
    pub reads_checked: u64,
}

impl Checker {
    /// R1 Election Safety: at most one leader per term.
    pub fn observe_leader(&mut self, id: NodeId, term: u64) -> CheckResult {
        match self.leaders.insert(term, id) {
            Some(other) if other != id => Err(format!(
                "VIOLATION election safety: {other} and {id} both lead term {term}"
            )),
            _ => Ok(()),
        }
    }

    /// R2 Leader Append-Only: a leader's log (terms from `first` to its end) only grows.
    pub fn observe_leader_log(
        &mut self,
        id: NodeId,
        term: u64,
        first: u64,
        terms: Vec<u64>,
    ) -> CheckResult {
        if let Some((pfirst, pterms)) = self.leader_logs.get(&(id, term)) {
            let plast = pfirst + pterms.len() as u64;
            let last = first + terms.len() as u64;
            if last < plast {
                return Err(format!(
                    "VIOLATION leader append-only: leader {id} term {term} log shrank {plast} -> {last}"
                ));
            }
            for i in first.max(*pfirst)..plast {
                let (a, b) = (pterms[(i - pfirst) as usize], terms[(i - first) as usize]);
                if a != b {
                    return Err(format!(
                        "VIOLATION leader append-only: leader {id} term {term} rewrote index {i} (term {a} -> {b})"
                    ));
                }
            }
        }
        self.leader_logs.insert((id, term), (first, terms));
        Ok(())
    }

    /// Whether (id, term) was already seen leading (R4 is checked once, when it is new).
    pub fn knows_leader(&self, id: NodeId, term: u64) -> bool {
        self.leader_logs.contains_key(&(id, term))
    }

    /// Forgets leaders that no longer lead (their logs may now legitimately change).
    pub fn retain_leaders(&mut self, current: &[(NodeId, u64)]) {
        self.leader_logs.retain(|k, _| current.contains(k));
    }

    /// R3 Log Matching: an entry is identified by (index, term) — same payload and same
    /// predecessor term everywhere, which by induction makes the logs identical up to it.
    pub fn observe_entry(
        &mut self,
        node: NodeId,
        e: &Entry,
        prev_term: Option<u64>,
    ) -> CheckResult {
        let d = digest(&e.data);
        let key = (e.index, e.term);
        match self.entries.get(&key) {
            Some(&(pd, pprev)) => {
                if pd != d {
                    return Err(format!(
                        "VIOLATION log matching: node {node} entry {key:?} payload differs"
                    ));
                }
                if let Some(pt) = prev_term {
                    if pt != pprev {
                        return Err(format!(
                            "VIOLATION log matching: node {node} entry {key:?} preceded by term {pt}, elsewhere {pprev}"
                        ));
                    }
                }
            }
            None => {
                if let Some(pt) = prev_term {
                    self.entries.insert(key, (d, pt));
                }
            }
        }
        Ok(())
    }

    /// R5 State Machine Safety: every member applies the same entry at an index.
    pub fn observe_apply(&mut self, node: NodeId, e: &Entry) -> CheckResult {
        let v = (e.term, digest(&e.data));
        match self.applied.insert(e.index, v) {
            Some(p) if p != v => Err(format!(
                "VIOLATION state machine safety: node {node} applied {v:?} at {}, another member {p:?}",
                e.index
            )),
            _ => Ok(()),
        }
    }

    /// A member declares entry (index, term) committed: no member may ever declare a different
    /// entry committed at that index (R5 at the log level, before anything is applied).
    pub fn observe_commit(&mut self, node: NodeId, index: u64, term: u64) -> CheckResult {
        match self.committed.insert(index, term) {
            Some(t) if t != term => Err(format!(
                "VIOLATION state machine safety: node {node} commits ({index}, {term}), another member committed ({index}, {t})"
            )),
            _ => Ok(()),
        }
    }

    /// Highest index known committed.
    pub fn max_committed(&self) -> u64 {
        let a = self.applied.keys().next_back().copied().unwrap_or(0);
        let c = self.committed.keys().next_back().copied().unwrap_or(0);
        a.max(c)
    }

    /// R4 Leader Completeness, checked when a leader is first seen: its log holds every entry
    /// known committed (those covered by its snapshot are committed in it too).
    pub fn check_new_leader(
        &self,
        id: NodeId,
        term: u64,
        first: u64,
        last: u64,
        term_at: impl Fn(u64) -> Option<u64>,
    ) -> CheckResult {
        let max = self.max_committed();
        if last < max {
            return Err(format!(
                "VIOLATION leader completeness: leader {id} of term {term} ends at {last}, committed {max}"
            ));
        }
        for (&i, &t) in self.committed.range(first..) {
            if term_at(i) != Some(t) {
                return Err(format!(
                    "VIOLATION leader completeness: leader {id} of term {term} lacks committed entry ({i}, {t})"
                ));
            }
        }
        Ok(())
    }

    /// Linearizability of a ReadIndex read: it must observe every write acknowledged and every
    /// state read before it started (`lower_bound`), and only committed state.
    pub fn observe_read(&mut self, node: NodeId, lower_bound: u64, value: u64) -> CheckResult {
        self.reads_checked += 1;
        if value < lower_bound {
            return Err(format!(
                "VIOLATION linearizability: read at node {node} saw state {value}, but {lower_bound} was acknowledged before it started"
            ));
        }
        if value > self.max_committed() {
            return Err(format!(
                "VIOLATION linearizability: read at node {node} saw uncommitted state {value}"
            ));
        }
        self.max_read_value = self.max_read_value.max(value);
        Ok(())
    }

    /// A read starting now must see at least this state.
    pub fn read_lower_bound(&self) -> u64 {
        self.max_acked_index.max(self.max_read_value)
    }
}
