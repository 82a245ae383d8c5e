//! The deterministic cluster simulator: members running `RawNode` over `MemStorage`, a simulated
//! network (per-link loss, delay, duplication, reordering, symmetric and asymmetric partitions),
//! crashes that lose unpersisted state and restarts from persisted state, clients that write and
//! read (ReadIndex), membership changes, leader transfers and snapshots. Everything is drawn from
//! one seed: the same seed replays exactly.
//!
//! Half the seeds persist Readies pipelined, as the server does (`RawNode::advance_handed`):
//! a member queues each Ready's write and goes on; queued writes complete later, in order, at
//! random steps (sending the Ready's `persisted_messages` and reporting `on_persisted` only
//! then), and a crash loses every write still queued.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use keel_raft::consensus::{
    ConfChange, ConfChangeKind, ConfState, Config, Entry, EntryKind, HardState, MemStorage,
    Message, NodeId, RawNode, Ready, Role, SplitMix64, Storage,
};

use crate::checker::{digest, CheckResult, Checker};

/// Simulator steps per Raft tick (so message delays can be shorter than a tick).
pub const TICK_STEPS: u64 = 4;
const ELECTION_TICK: u32 = 10;
const MAX_MEMBERS: usize = 7;
const MAX_IN_FLIGHT_MESSAGES: usize = 20_000;

/// A deliberately broken Raft the checkers must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canary {
    None,
    CommitOldTerms,
    VoteIgnoringLog,
}

/// The fault and workload parameters of one run, all drawn from its seed ("swarm testing":
/// each seed stresses a different mix).
#[derive(Clone, Debug)]
pub struct Swarm {
    pub seed: u64,
    pub members: usize,
    pub fault_steps: u64,
    pub liveness_steps: u64,
    pub loss_pct_max: u64,
    pub dup_pct: u64,
    pub delay_max: u64,
    pub partition_permille: u64,
    pub crash_permille: u64,
    pub crash_in_ready_pct: u64,
    pub write_pct: u64,
    pub read_pct: u64,
    pub conf_permille: u64,
    pub transfer_permille: u64,
    pub snapshot_threshold: u64,
    pub max_size_per_msg: u64,
    pub max_inflight: usize,
    pub pre_vote: bool,
    /// Readies persisted pipelined (queued writes completing later) instead of in place.
    pub pipelined: bool,
    /// Per step, the chance in 100 that a member's oldest queued write completes.
    pub write_done_pct: u64,
    pub canary: Canary,
}

fn pick<T: Copy>(rng: &mut SplitMix64, xs: &[T]) -> T {
    xs[rng.range(0, xs.len() as u64) as usize]
}

impl Swarm {
    pub fn from_seed(seed: u64, members: usize, canary: Canary) -> Self {
        let mut r = SplitMix64::new(seed ^ 0x5EED_0F5E_ED5E_ED00);
        Swarm {
            seed,
            members,
            fault_steps: 3000,
            liveness_steps: 2000,
            loss_pct_max: pick(&mut r, &[0, 1, 5, 10, 25]),
            dup_pct: pick(&mut r, &[0, 1, 5, 10]),
            delay_max: r.range(1, 12),
            partition_permille: pick(&mut r, &[0, 3, 8, 15]),
            crash_permille: pick(&mut r, &[0, 2, 5, 10]),
            crash_in_ready_pct: pick(&mut r, &[0, 1, 3]),
            write_pct: r.range(5, 40),
            read_pct: r.range(2, 20),
            conf_permille: pick(&mut r, &[0, 3, 8, 15]),
            transfer_permille: pick(&mut r, &[0, 3, 8]),
            snapshot_threshold: r.range(3, 40),
            max_size_per_msg: pick(&mut r, &[1, 64, 256, 1 << 20]),
            max_inflight: r.range(1, 8) as usize,
            pre_vote: r.chance(3, 4),
            pipelined: r.chance(1, 2),
            write_done_pct: pick(&mut r, &[20, 50, 100]),
            canary,
        }
    }
}

/// Counts that show a run exercised what it should.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub partitions: u64,
    pub leaders: u64,
    pub writes_acked: u64,
    pub reads_served: u64,
    pub conf_changes_applied: u64,
    pub transfers: u64,
    pub snapshots_installed: u64,
    pub max_commit: u64,
    /// Digest of every delivery, to prove replays are exact.
    pub trace: u64,
}

/// The application state machine: a hash chain over applied entries (so two members that
/// applied different histories disagree) and the applied index (a read's "value").
#[derive(Clone, Copy, Debug, Default)]
struct Sm {
    applied: u64,
    hash: u64,
}

impl Sm {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.applied.to_le_bytes().to_vec();
        v.extend_from_slice(&self.hash.to_le_bytes());
        v
    }
    fn decode(b: &[u8]) -> Self {
        if b.len() != 16 {
            return Sm::default();
        }
        Sm {
            applied: u64::from_le_bytes(b[..8].try_into().unwrap()),
            hash: u64::from_le_bytes(b[8..].try_into().unwrap()),
        }
    }
}

struct Node {
    storage: MemStorage,
    raw: Option<RawNode<MemStorage>>,
    sm: Sm,
    conf: ConfState,
    down_until: u64,
    removed: bool,
    incarnation: u64,
    tick_offset: u64,
    writes: BTreeSet<u64>,
    /// Pending reads: context → (lower bound at start, read index once known).
    reads: BTreeMap<u64, (u64, Option<u64>)>,
    /// Pipelined mode: writes queued and not yet durable, oldest first.
    queued: VecDeque<QueuedWrite>,
}

/// A Ready's write in pipelined mode: what it makes durable and what waits for it.
struct QueuedWrite {
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    persisted_messages: Vec<Message>,
}

struct Flight {
    at: u64,
    seq: u64,
    msg: Message,
}

pub struct Sim {
    trace: bool,
    sw: Swarm,
    rng: SplitMix64,
    now: u64,
    faults: bool,
    nodes: BTreeMap<NodeId, Node>,
    net: Vec<Flight>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    partition_until: u64,
    link_loss: BTreeMap<(NodeId, NodeId), u64>,
    checker: Checker,
    /// Per member, the commit index up to which `check` recorded its committed entries.
    commit_seen: BTreeMap<NodeId, u64>,
    next_write: u64,
    next_read: u64,
    next_node: NodeId,
    liveness_first_write: u64,
    liveness_acked: bool,
    pub stats: Stats,
}

impl Sim {
    pub fn new(sw: Swarm) -> Self {
        let rng = SplitMix64::new(sw.seed);
        let voters: Vec<NodeId> = (1..=sw.members as u64).collect();
        let mut sim = Sim {
            trace: std::env::var("KEEL_SIM_TRACE").is_ok(),
            rng,
            now: 0,
            faults: true,
            nodes: BTreeMap::new(),
            net: Vec::new(),
            blocked: BTreeSet::new(),
            partition_until: 0,
            link_loss: BTreeMap::new(),
            checker: Checker::default(),
            commit_seen: BTreeMap::new(),
            next_write: 1,
            next_read: 1,
            next_node: sw.members as u64 + 1,
            liveness_first_write: u64::MAX,
            liveness_acked: false,
            stats: Stats::default(),
            sw,
        };
        for &id in &voters {
            sim.add_node(id, MemStorage::bootstrap(&voters));
        }
        sim
    }

    fn config(&self, id: NodeId, incarnation: u64) -> Config {
        let mut c = Config::new(id);
        c.election_tick = ELECTION_TICK;
        c.heartbeat_tick = 1;
        c.max_size_per_msg = self.sw.max_size_per_msg;
        c.max_inflight_msgs = self.sw.max_inflight;
        // Back-pressure keeps a leader's backlog (and so the time to commit a new write after
        // the faults) bounded.
        c.max_uncommitted_size = 4096;
        c.pre_vote = self.sw.pre_vote;
        c.seed = self.sw.seed.wrapping_mul(0x9E37_79B9) ^ (incarnation << 20) ^ id;
        c.unsafe_commit_old_terms_for_canary = self.sw.canary == Canary::CommitOldTerms;
        c.unsafe_vote_ignoring_log_for_canary = self.sw.canary == Canary::VoteIgnoringLog;
        c
    }

    fn add_node(&mut self, id: NodeId, storage: MemStorage) {
        let tick_offset = self.rng.range(0, TICK_STEPS);
        self.nodes.insert(
            id,
            Node {
                storage,
                raw: None,
                sm: Sm::default(),
                conf: ConfState::default(),
                down_until: 0,
                removed: false,
                incarnation: 0,
                tick_offset,
                writes: BTreeSet::new(),
                reads: BTreeMap::new(),
                queued: VecDeque::new(),
            },
        );
        self.start(id);
    }

    /// Starts (or restarts) a member from what its storage holds.
    fn start(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let snap = node.storage.snapshot().expect("mem storage");
        let mut cfg = self.config(id, node.incarnation);
        cfg.applied = snap.meta.index;
        let raw = RawNode::new(&cfg, node.storage.clone()).expect("valid config");
        let node = self.nodes.get_mut(&id).unwrap();
        node.sm = Sm::decode(&snap.data);
        node.sm.applied = snap.meta.index;
        node.conf = snap.meta.conf_state;
        node.raw = Some(raw);
        node.down_until = 0;
    }

    fn crash(&mut self, id: NodeId) {
        let until = self.now + self.rng.range(TICK_STEPS, 60 * TICK_STEPS);
        let node = self.nodes.get_mut(&id).unwrap();
        // Everything not persisted (unstable entries, the state machine, pending requests) is
        // lost with the process.
        if self.trace {
            eprintln!("t={} n{id} CRASH until {until}", self.now);
        }
        node.raw = None;
        node.down_until = until;
        node.incarnation += 1;
        node.writes.clear();
        node.reads.clear();
        node.queued.clear();
        self.stats.crashes += 1;
    }

    fn up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.raw.is_some())
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if self.blocked.contains(&(m.from, m.to)) || self.net.len() >= MAX_IN_FLIGHT_MESSAGES {
                self.stats.dropped += 1;
                continue;
            }
            let loss = self.link_loss.get(&(m.from, m.to)).copied().unwrap_or(0);
            if self.faults && self.rng.chance(loss, 100) {
                self.stats.dropped += 1;
                continue;
            }
            let copies = if self.faults && self.rng.chance(self.sw.dup_pct, 100) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay_max = if self.faults { self.sw.delay_max } else { 2 };
                let at = self.now + self.rng.range(1, delay_max + 1);
                let seq = self.rng.next_u64();
                self.net.push(Flight {
                    at,
                    seq,
                    msg: m.clone(),
                });
            }
        }
    }

    /// Runs a member's Ready cycle until it has nothing more to do, checking and applying.
    fn process(&mut self, id: NodeId) -> CheckResult {
        loop {
            let node = self.nodes.get_mut(&id).unwrap();
            let Some(raw) = node.raw.as_mut() else {
                return Ok(());
            };
            if !raw.has_ready() {
                return Ok(());
            }
            let rd = raw.ready();
            for (k, e) in rd.entries.iter().enumerate() {
                let prev = if k == 0 {
                    raw.raft().term_at(e.index - 1)
                } else {
                    Some(rd.entries[k - 1].term)
                };
                self.checker.observe_entry(id, e, prev)?;
            }
            if self.trace {
                let r = raw.raft();
                eprintln!(
                    "t={} n{id} term={} role={:?} last={} commit={} ents={:?} hs={:?} snap={:?} msgs={:?} pmsgs={:?}",
                    self.now, r.term(), r.role(), r.last_index(), r.committed(),
                    rd.entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
                    rd.hard_state, rd.snapshot.as_ref().map(|s| (s.meta.index, s.meta.term)),
                    rd.messages.iter().map(|m| (m.kind, m.to, m.term, m.index, m.log_term, m.entries.len(), m.commit, m.reject)).collect::<Vec<_>>(),
                    rd.persisted_messages.iter().map(|m| (m.kind, m.to, m.term, m.index, m.log_term, m.entries.len(), m.commit, m.reject)).collect::<Vec<_>>(),
                );
            }
            if rd.soft_state.is_some_and(|s| s.role == Role::Leader) {
                self.stats.leaders += 1;
            }
            self.send(rd.messages.clone());
            if self.faults && self.rng.chance(self.sw.crash_in_ready_pct, 100) {
                // Crash after sending but before persisting: the leader's parallel write case.
                self.crash(id);
                return Ok(());
            }
            if self.sw.pipelined && rd.snapshot.is_none() {
                self.take_committed(id, &rd)?;
                let node = self.nodes.get_mut(&id).unwrap();
                let Some(raw) = node.raw.as_mut() else {
                    return Ok(());
                };
                raw.advance_handed(&rd);
                if rd.must_persist() || !rd.persisted_messages.is_empty() {
                    // Even with nothing of its own to write, its persisted messages wait for
                    // the writes queued before it.
                    node.queued.push_back(QueuedWrite {
                        entries: rd.entries,
                        hard_state: rd.hard_state,
                        persisted_messages: rd.persisted_messages,
                    });
                }
                if !self.after_advance(id)? {
                    return Ok(());
                }
                continue;
            }
            // A snapshot (or the in-place mode) is persisted before anything else goes on.
            while !self.nodes[&id].queued.is_empty() {
                self.complete_write(id);
            }
            let node = self.nodes.get_mut(&id).unwrap();
            if let Some(s) = &rd.snapshot {
                node.storage.apply_snapshot(s.clone());
                node.sm = Sm::decode(&s.data);
                node.sm.applied = s.meta.index;
                node.conf = s.meta.conf_state.clone();
                self.stats.snapshots_installed += 1;
            }
            node.storage.append(&rd.entries);
            if let Some(hs) = rd.hard_state {
                node.storage.set_hard_state(hs);
            }
            self.send(rd.persisted_messages.clone());
            self.take_committed(id, &rd)?;
            let node = self.nodes.get_mut(&id).unwrap();
            let Some(raw) = node.raw.as_mut() else {
                return Ok(());
            };
            raw.advance(&rd);
            if !self.after_advance(id)? {
                return Ok(());
            }
        }
    }

    /// Applies `rd`'s committed entries and records its confirmed reads.
    fn take_committed(&mut self, id: NodeId, rd: &Ready) -> CheckResult {
        for e in &rd.committed_entries {
            self.apply(id, e)?;
        }
        let node = self.nodes.get_mut(&id).unwrap();
        for rs in &rd.read_states {
            let ctx = u64::from_le_bytes(rs.context[..8].try_into().unwrap());
            if let Some(r) = node.reads.get_mut(&ctx) {
                r.1.get_or_insert(rs.index);
            }
        }
        Ok(())
    }

    /// After a Ready was advanced: serves reads and snapshots; a member that applied its own
    /// removal is shut down for good. Returns whether the member still runs.
    fn after_advance(&mut self, id: NodeId) -> Result<bool, String> {
        self.serve_reads(id)?;
        self.maybe_snapshot(id);
        if self.nodes[&id].removed {
            self.nodes.get_mut(&id).unwrap().raw = None;
            return Ok(false);
        }
        Ok(true)
    }

    /// Pipelined mode: the oldest queued write of `id` becomes durable.
    fn complete_write(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        let Some(w) = node.queued.pop_front() else {
            return;
        };
        node.storage.append(&w.entries);
        if let Some(hs) = w.hard_state {
            node.storage.set_hard_state(hs);
        }
        if let (Some(raw), Some(e)) = (node.raw.as_mut(), w.entries.last()) {
            raw.on_persisted(e.index, e.term);
            if self.trace {
                eprintln!(
                    "t={} n{id} PERSISTED ({}, {}) -> persisted {}",
                    self.now,
                    e.index,
                    e.term,
                    raw.raft().persisted()
                );
            }
        }
        self.send(w.persisted_messages);
    }

    fn apply(&mut self, id: NodeId, e: &Entry) -> CheckResult {
        self.checker.observe_apply(id, e)?;
        // The state machine may only hold what a restart can replay: the entry is durable here.
        if self.nodes[&id].storage.term(e.index) != Ok(e.term) {
            return Err(format!(
                "VIOLATION apply before persist: node {id} applied ({}, {}) not in its storage",
                e.index, e.term
            ));
        }
        if self.trace {
            eprintln!(
                "t={} n{id} APPLY ({}, {}) {:?}",
                self.now, e.index, e.term, e.kind
            );
        }
        let node = self.nodes.get_mut(&id).unwrap();
        if e.index != node.sm.applied + 1 {
            return Err(format!(
                "VIOLATION apply order: node {id} applied {} after {}",
                e.index, node.sm.applied
            ));
        }
        node.sm.applied = e.index;
        node.sm.hash =
            digest(&[node.sm.hash.to_le_bytes(), digest(&e.data).to_le_bytes()].concat());
        self.stats.max_commit = self.stats.max_commit.max(e.index);
        match e.kind {
            EntryKind::ConfChange => {
                let cc =
                    ConfChange::decode(&e.data).map_err(|err| format!("bad conf change: {err}"))?;
                let raw = node.raw.as_mut().expect("applying member is up");
                node.conf = raw.apply_conf_change(&cc);
                if self.trace {
                    eprintln!("t={} n{id} CONF {cc:?} -> {:?}", self.now, node.conf);
                }
                self.stats.conf_changes_applied += 1;
                if cc.kind == ConfChangeKind::RemoveNode && cc.node_id == id {
                    node.removed = true;
                }
            }
            EntryKind::Normal if e.data.len() >= 8 => {
                let w = u64::from_le_bytes(e.data[..8].try_into().unwrap());
                if node.writes.remove(&w) {
                    // Acknowledged to the client: every later read must observe it.
                    self.checker.max_acked_index = self.checker.max_acked_index.max(e.index);
                    self.stats.writes_acked += 1;
                    if w >= self.liveness_first_write {
                        self.liveness_acked = true;
                    }
                }
            }
            EntryKind::Normal => {}
        }
        Ok(())
    }

    fn serve_reads(&mut self, id: NodeId) -> CheckResult {
        let node = self.nodes.get_mut(&id).unwrap();
        let applied = node.sm.applied;
        let ready: Vec<u64> = node
            .reads
            .iter()
            .filter(|(_, (_, idx))| idx.is_some_and(|i| i <= applied))
            .map(|(c, _)| *c)
            .collect();
        for ctx in ready {
            let (lower, _) = self.nodes.get_mut(&id).unwrap().reads.remove(&ctx).unwrap();
            self.checker.observe_read(id, lower, applied)?;
            self.stats.reads_served += 1;
        }
        Ok(())
    }

    fn maybe_snapshot(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let first = node.storage.first_index().unwrap();
        if node.sm.applied + 1 >= first + self.sw.snapshot_threshold {
            let (applied, conf, data) = (node.sm.applied, node.conf.clone(), node.sm.encode());
            node.storage.create_snapshot(applied, conf, data);
            node.storage.compact(applied);
        }
    }

    fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raw.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| n.raw.as_ref().map(|r| (*id, r.raft())))
            .filter(|(_, r)| r.role() == Role::Leader)
            .max_by_key(|(_, r)| r.term())
            .map(|(id, _)| id)
    }

    fn step(&mut self) -> CheckResult {
        self.now += 1;
        self.stats.steps += 1;
        // Restarts.
        let due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| {
                n.raw.is_none() && !n.removed && n.down_until != 0 && n.down_until <= self.now
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.start(id);
            self.stats.restarts += 1;
            self.process(id)?;
        }
        // Pipelined mode: queued writes complete, in order, at random steps.
        if self.sw.pipelined {
            let busy: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|(_, n)| !n.queued.is_empty())
                .map(|(id, _)| *id)
                .collect();
            for id in busy {
                if self.rng.chance(self.sw.write_done_pct, 100) {
                    // Group commit: one flush makes every write queued before it durable;
                    // here a random prefix of the queue completes.
                    let n = self.rng.range(1, self.nodes[&id].queued.len() as u64 + 1);
                    for _ in 0..n {
                        self.complete_write(id);
                    }
                    self.process(id)?;
                }
            }
        }
        // Deliveries, in (time, random) order: random delays reorder messages.
        if self.partition_until != 0 && self.now >= self.partition_until {
            self.blocked.clear();
            self.partition_until = 0;
        }
        let mut due: Vec<Flight> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at <= self.now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|f| (f.at, f.seq));
        for f in due {
            let (from, to) = (f.msg.from, f.msg.to);
            if !self.up(to) || self.blocked.contains(&(from, to)) {
                self.stats.dropped += 1;
                continue;
            }
            self.stats.delivered += 1;
            self.stats.trace = digest(
                &[
                    self.stats.trace,
                    self.now,
                    from,
                    to,
                    f.msg.term,
                    f.msg.index,
                ]
                .map(u64::to_le_bytes)
                .concat(),
            );
            let raw = self.nodes.get_mut(&to).unwrap().raw.as_mut().unwrap();
            let _ = raw.step(f.msg);
            self.process(to)?;
        }
        // Ticks.
        for id in self.live_ids() {
            let n = &self.nodes[&id];
            if self.now % TICK_STEPS == n.tick_offset {
                self.nodes
                    .get_mut(&id)
                    .unwrap()
                    .raw
                    .as_mut()
                    .unwrap()
                    .tick();
                self.process(id)?;
            }
        }
        self.client_ops()?;
        if self.faults {
            self.inject_faults()?;
        }
        self.check()
    }

    fn random_live(&mut self) -> Option<NodeId> {
        let live = self.live_ids();
        if live.is_empty() {
            return None;
        }
        Some(pick(&mut self.rng, &live))
    }

    fn client_ops(&mut self) -> CheckResult {
        if self.rng.chance(self.sw.write_pct, 100) {
            if let Some(id) = self.random_live() {
                let w = self.next_write;
                self.next_write += 1;
                let mut data = w.to_le_bytes().to_vec();
                data.resize(8 + self.rng.range(0, 48) as usize, 0xAB);
                let raw = self.nodes.get_mut(&id).unwrap().raw.as_mut().unwrap();
                if raw.propose(data).is_ok() {
                    self.nodes.get_mut(&id).unwrap().writes.insert(w);
                }
                self.process(id)?;
            }
        }
        if self.rng.chance(self.sw.read_pct, 100) {
            if let Some(id) = self.random_live() {
                let ctx = self.next_read;
                self.next_read += 1;
                let lower = self.checker.read_lower_bound();
                let raw = self.nodes.get_mut(&id).unwrap().raw.as_mut().unwrap();
                if raw.read_index(ctx.to_le_bytes().to_vec()).is_ok() {
                    self.nodes
                        .get_mut(&id)
                        .unwrap()
                        .reads
                        .insert(ctx, (lower, None));
                }
                self.process(id)?;
            }
        }
        Ok(())
    }

    fn inject_faults(&mut self) -> CheckResult {
        let ids: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.removed)
            .map(|(id, _)| *id)
            .collect();
        // Crash a member.
        if self.rng.chance(self.sw.crash_permille, 1000) {
            let live = self.live_ids();
            if !live.is_empty() {
                let id = pick(&mut self.rng, &live);
                self.crash(id);
            }
        }
        // Partitions, symmetric or one-way.
        if self.partition_until == 0
            && self.rng.chance(self.sw.partition_permille, 1000)
            && ids.len() > 1
        {
            // Often isolate the leader alone: leadership changes with entries half-replicated
            // are where Figure 8 bugs live.
            let leader = self.leader();
            let side: Vec<NodeId> = match leader {
                Some(l) if self.rng.chance(1, 2) => vec![l],
                _ => ids
                    .iter()
                    .copied()
                    .filter(|_| self.rng.chance(1, 2))
                    .collect(),
            };
            let one_way = self.rng.chance(1, 3);
            for &a in &side {
                for &b in &ids {
                    if !side.contains(&b) {
                        self.blocked.insert((a, b));
                        if !one_way {
                            self.blocked.insert((b, a));
                        }
                    }
                }
            }
            self.partition_until = self.now + self.rng.range(10, 100 * TICK_STEPS);
            if self.trace {
                eprintln!(
                    "t={} PARTITION {:?} until {}",
                    self.now, self.blocked, self.partition_until
                );
            }
            self.stats.partitions += 1;
        }
        // Per-link loss changes.
        if self.rng.chance(1, 50) && ids.len() > 1 {
            let (a, b) = (pick(&mut self.rng, &ids), pick(&mut self.rng, &ids));
            let loss = self.rng.range(0, self.sw.loss_pct_max + 1);
            self.link_loss.insert((a, b), loss);
        }
        // Membership changes and leader transfers, through the leader (which a crash during
        // the first may have taken down: look it up again).
        if self.rng.chance(self.sw.conf_permille, 1000) {
            if let Some(leader) = self.leader() {
                self.change_membership(leader)?;
            }
        }
        if self.rng.chance(self.sw.transfer_permille, 1000) {
            if let Some(leader) = self.leader() {
                let raw = self.nodes.get_mut(&leader).unwrap().raw.as_mut().unwrap();
                let voters = raw.raft().conf_state().voters;
                let target = pick(&mut self.rng, &voters);
                if target != leader && raw.transfer_leader(target).is_ok() {
                    self.stats.transfers += 1;
                }
                self.process(leader)?;
            }
        }
        Ok(())
    }

    fn change_membership(&mut self, leader: NodeId) -> CheckResult {
        let cs = self.nodes[&leader]
            .raw
            .as_ref()
            .unwrap()
            .raft()
            .conf_state();
        let mut options = Vec::new();
        if cs.voters.len() + cs.learners.len() < MAX_MEMBERS {
            options.push(ConfChange {
                kind: ConfChangeKind::AddLearner,
                node_id: self.next_node,
            });
        }
        for &l in &cs.learners {
            options.push(ConfChange {
                kind: ConfChangeKind::AddVoter,
                node_id: l,
            });
            options.push(ConfChange {
                kind: ConfChangeKind::RemoveNode,
                node_id: l,
            });
        }
        if cs.voters.len() > 3 {
            for &v in &cs.voters {
                options.push(ConfChange {
                    kind: ConfChangeKind::RemoveNode,
                    node_id: v,
                });
            }
        }
        if options.is_empty() {
            return Ok(());
        }
        let cc = pick(&mut self.rng, &options);
        let raw = self.nodes.get_mut(&leader).unwrap().raw.as_mut().unwrap();
        if raw.propose_conf_change(cc).is_ok() && cc.node_id == self.next_node {
            self.next_node += 1;
            self.add_node(cc.node_id, MemStorage::new());
        }
        self.process(leader)
    }

    fn check(&mut self) -> CheckResult {
        let mut leaders = Vec::new();
        for (&id, n) in &self.nodes {
            let Some(raw) = &n.raw else { continue };
            let r = raw.raft();
            let seen = self.commit_seen.entry(id).or_insert(0);
            for i in (*seen + 1).max(r.first_index())..=r.committed() {
                let t = r.term_at(i).expect("committed entry in the log");
                self.checker.observe_commit(id, i, t)?;
            }
            *seen = (*seen).max(r.committed());
            if r.role() != Role::Leader {
                continue;
            }
            self.checker.observe_leader(id, r.term())?;
            let (first, last) = (r.first_index(), r.last_index());
            if !self.checker.knows_leader(id, r.term()) {
                self.checker
                    .check_new_leader(id, r.term(), first, last, |i| r.term_at(i))?;
            }
            let terms = (first..=last).map(|i| r.term_at(i).unwrap_or(0)).collect();
            self.checker
                .observe_leader_log(id, r.term(), first, terms)?;
            leaders.push((id, r.term()));
        }
        self.checker.retain_leaders(&leaders);
        Ok(())
    }

    /// Ends the faults: heals the network, restarts every crashed member, and keeps clients
    /// writing so that a leader must emerge and commit.
    fn heal(&mut self) -> CheckResult {
        self.faults = false;
        self.blocked.clear();
        self.partition_until = 0;
        self.link_loss.clear();
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.raw.is_none() && !n.removed)
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            self.start(id);
            self.stats.restarts += 1;
            self.process(id)?;
        }
        self.liveness_first_write = self.next_write;
        Ok(())
    }

    /// Runs the fault phase then the liveness phase.
    pub fn run(mut self) -> Result<Stats, String> {
        for _ in 0..self.sw.fault_steps {
            self.step()?;
        }
        self.heal()?;
        if self.sw.write_pct == 0 {
            self.sw.write_pct = 10;
        }
        for _ in 0..self.sw.liveness_steps {
            self.step()?;
            if self.liveness_acked && self.leader().is_some() {
                return Ok(self.stats);
            }
        }
        if self.trace {
            for (id, n) in &self.nodes {
                if let Some(r) = n.raw.as_ref().map(|r| r.raft()) {
                    eprintln!(
                        "n{id} {:?} persisted {} queued {} progress {:?}",
                        r.role(),
                        r.persisted(),
                        n.queued.len(),
                        (1..8)
                            .filter_map(|p| r.progress(p).map(|x| (p, x.clone())))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
        Err(format!(
            "LIVENESS: no leader and new acknowledged write within {} steps after healing (leader {:?}, commit {})",
            self.sw.liveness_steps,
            self.leader(),
            self.stats.max_commit
        ))
    }
}
