//! [`Raft`]: one member's consensus state machine — roles, terms, elections, replication,
//! commitment, ReadIndex, snapshots, membership and leader transfer. It consumes ticks and
//! messages and produces messages and log changes; the caller (through
//! [`crate::consensus::RawNode`]) persists, sends and applies. Paper references are to
//! Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm", Figure 2.

use super::conf::ConfChange;
pub use super::config::Config;
pub use super::error::RaftError;
use super::log::RaftLog;
use super::message::{
    ConfState, Entry, EntryKind, HardState, Message, MessageKind, NodeId, Snapshot,
    CAMPAIGN_TRANSFER, NO_NODE,
};
use super::progress::{Progress, ProgressState};
use super::read_only::{ReadOnly, ReadRequest};
use super::rng::SplitMix64;
use super::storage::{Storage, StorageError};
use super::tracker::{ProgressTracker, VoteResult};

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win an election, without changing its term (pre-vote).
    PreCandidate,
    /// Campaigns for votes in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}

/// Volatile state the application may want to observe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this member knows of, or [`NO_NODE`].
    pub leader_id: NodeId,
    /// This member's role.
    pub role: Role,
}

/// A confirmed ReadIndex request: serve the read identified by `context` once the applied
/// index reaches `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The index the state machine must have applied before the read is served.
    pub index: u64,
    /// The context passed to `read_index`.
    pub context: Vec<u8>,
}

/// One member's Raft state machine.
pub struct Raft<S: Storage> {
    id: NodeId,
    term: u64,
    vote: NodeId,
    role: Role,
    leader_id: NodeId,
    pub(crate) log: RaftLog<S>,
    tracker: ProgressTracker,
    /// Messages that may be sent at once.
    pub(crate) msgs: Vec<Message>,
    /// Messages that may be sent only once the current hard state and log are persisted.
    pub(crate) msgs_after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    read_only: ReadOnly,
    /// Reads received before this leader committed an entry of its term.
    reads_before_commit: Vec<ReadRequest>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_timeout: u32,
    election_timeout: u32,
    heartbeat_timeout: u32,
    lead_transferee: NodeId,
    /// Index of the latest membership change proposed by this leader (no new one until applied).
    pending_conf_index: u64,
    /// Payload bytes this leader appended that are not yet committed.
    uncommitted_size: u64,
    ticks: u64,
    rng: SplitMix64,
    cfg: Config,
}

impl<S: Storage> Raft<S> {
    /// A member restarting from `storage` (a new member starts from empty storage).
    pub fn new(cfg: &Config, storage: S) -> Result<Self, RaftError> {
        cfg.validate()?;
        let (hs, cs) = storage
            .initial_state()
            .unwrap_or_else(|e| panic!("reading initial raft state: {e}"));
        let mut log = RaftLog::new(storage, hs.commit);
        if cfg.applied > 0 {
            log.applied_to(cfg.applied);
        }
        let tracker = ProgressTracker::new(&cs, log.last_index() + 1, cfg.max_inflight_msgs);
        let mut r = Raft {
            id: cfg.id,
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader_id: NO_NODE,
            log,
            tracker,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            read_states: Vec::new(),
            read_only: ReadOnly::default(),
            reads_before_commit: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            election_timeout: cfg.election_tick,
            heartbeat_timeout: cfg.heartbeat_tick,
            lead_transferee: NO_NODE,
            pending_conf_index: 0,
            uncommitted_size: 0,
            ticks: 0,
            rng: SplitMix64::new(cfg.seed ^ cfg.id.rotate_left(32)),
            cfg: cfg.clone(),
        };
        r.become_follower(r.term, NO_NODE);
        Ok(r)
    }

    // ---- observers -------------------------------------------------------------------------

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// Current term.
    pub fn term(&self) -> u64 {
        self.term
    }
    /// Vote in the current term.
    pub fn vote(&self) -> NodeId {
        self.vote
    }
    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// Known leader, or [`NO_NODE`].
    pub fn leader_id(&self) -> NodeId {
        self.leader_id
    }
    /// Commit index.
    pub fn committed(&self) -> u64 {
        self.log.committed
    }
    /// Highest index handed out for application.
    pub fn applied(&self) -> u64 {
        self.log.applied
    }
    /// Highest index persisted (as acknowledged through `advance`).
    pub fn persisted(&self) -> u64 {
        self.log.persisted
    }
    /// First index held as an entry.
    pub fn first_index(&self) -> u64 {
        self.log.first_index()
    }
    /// Last index of the log.
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    /// Term of entry `index`, `None` if compacted or past the end.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index > self.log.last_index() {
            return None;
        }
        self.log.term(index).ok()
    }
    /// Entries `[lo, hi)` (must be in the log, not compacted).
    pub fn entries(&self, lo: u64, hi: u64) -> Vec<Entry> {
        self.log
            .entries(lo, hi, u64::MAX)
            .expect("entries compacted")
    }
    /// Current membership as this member knows it.
    pub fn conf_state(&self) -> ConfState {
        self.tracker.conf_state()
    }
    /// The leader's view of member `id`.
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        self.tracker.get(id)
    }
    /// The persistent state.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }
    /// The volatile state.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.leader_id,
            role: self.role,
        }
    }
    /// The current randomized election timeout, in ticks.
    pub fn randomized_election_timeout(&self) -> u32 {
        self.randomized_election_timeout
    }
    /// The member a leader transfer is in progress to, or [`NO_NODE`].
    pub fn lead_transferee(&self) -> NodeId {
        self.lead_transferee
    }
    /// ReadIndex requests a leader holds, queued or awaiting confirmation.
    pub fn pending_read_count(&self) -> usize {
        self.read_only.pending() + self.reads_before_commit.len()
    }
    pub(crate) fn storage(&self) -> &S {
        self.log.storage()
    }

    /// Whether this member may campaign: a voter not installing a snapshot.
    fn promotable(&self) -> bool {
        self.tracker.is_voter(self.id)
    }

    // ---- role transitions ------------------------------------------------------------------

    fn reset(&mut self, term: u64) {
        if self.term != term {
            assert!(
                term > self.term,
                "term goes back from {} to {term}",
                self.term
            );
            self.term = term;
            self.vote = NO_NODE;
        }
        self.leader_id = NO_NODE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_election_timeout =
            self.election_timeout + self.rng.range(0, u64::from(self.election_timeout)) as u32;
        self.lead_transferee = NO_NODE;
        self.tracker.reset_votes();
        let (last, persisted, id) = (self.log.last_index(), self.log.persisted, self.id);
        let max_inflight = self.cfg.max_inflight_msgs;
        for (&pid, p) in self.tracker.iter_mut() {
            *p = Progress::new(last + 1, max_inflight);
            if pid == id {
                p.matched = persisted;
            }
        }
        self.pending_conf_index = 0;
        self.uncommitted_size = 0;
        self.read_only.reset();
        self.reads_before_commit.clear();
    }

    fn become_follower(&mut self, term: u64, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader_id = leader;
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader cannot pre-campaign");
        // Pre-vote changes neither term nor vote: it only asks.
        self.tracker.reset_votes();
        self.role = Role::PreCandidate;
        self.leader_id = NO_NODE;
    }

    fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader cannot campaign");
        self.reset(self.term + 1);
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        self.reset(self.term);
        self.role = Role::Leader;
        self.leader_id = self.id;
        let last = self.log.last_index();
        let persisted = self.log.persisted;
        if let Some(p) = self.tracker.get_mut(self.id) {
            p.become_replicate();
            p.matched = persisted;
            p.next = last + 1;
            p.recent_active = true;
        }
        // No membership change until every change possibly still in the log is applied.
        self.pending_conf_index = last;
        // An entry of the new term, so that entries of earlier terms get committed (Figure 8)
        // and ReadIndex can start serving.
        self.append_entries(vec![Entry::default()]);
    }

    // ---- time ------------------------------------------------------------------------------

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.role == Role::Leader {
            self.tick_heartbeat();
        } else {
            self.tick_election();
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            self.hup(false);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                let id = self.id;
                let tracker = &self.tracker;
                let active = tracker
                    .quorum_of(|p| p == id || tracker.get(p).is_some_and(|pr| pr.recent_active));
                if !active {
                    self.become_follower(self.term, NO_NODE);
                    return;
                }
                for (&pid, p) in self.tracker.iter_mut() {
                    p.recent_active = pid == id;
                }
            }
            // A transfer that did not finish within an election timeout is abandoned.
            self.lead_transferee = NO_NODE;
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    // ---- elections -------------------------------------------------------------------------

    /// Starts an election now (as if the election timeout had passed).
    pub fn campaign(&mut self) {
        self.hup(false);
    }

    fn hup(&mut self, transfer: bool) {
        if self.role == Role::Leader || !self.promotable() {
            return;
        }
        // Membership as of the committed log must be known before campaigning with it.
        if self.has_unapplied_conf_change() {
            return;
        }
        if self.cfg.pre_vote && !transfer {
            self.campaign_round(true, false);
        } else {
            self.campaign_round(false, transfer);
        }
    }

    fn has_unapplied_conf_change(&self) -> bool {
        let lo = (self.log.applied + 1).max(self.log.first_index());
        if lo > self.log.committed {
            return false;
        }
        self.log
            .entries(lo, self.log.committed + 1, u64::MAX)
            .map(|es| es.iter().any(|e| e.kind == EntryKind::ConfChange))
            .unwrap_or(false)
    }

    fn campaign_round(&mut self, pre: bool, transfer: bool) {
        let (term, kind) = if pre {
            self.become_pre_candidate();
            (self.term + 1, MessageKind::RequestPreVote)
        } else {
            self.become_candidate();
            (self.term, MessageKind::RequestVote)
        };
        self.tracker.record_vote(self.id, true);
        if self.tracker.vote_result() == VoteResult::Won {
            // A single voter wins at once.
            if pre {
                self.campaign_round(false, transfer);
            } else {
                self.become_leader();
            }
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self.tracker.voters().filter(|&v| v != self.id).collect();
        for to in voters {
            let mut m = Message::new(kind, self.id, to, term);
            m.index = last_index;
            m.log_term = last_term;
            if transfer {
                m.context = CAMPAIGN_TRANSFER.to_vec();
            }
            // A real vote request goes only once our own term and vote are durable; a pre-vote
            // changed nothing and goes at once.
            if pre {
                self.msgs.push(m);
            } else {
                self.msgs_after_persist.push(m);
            }
        }
    }

    // ---- the message gateway ---------------------------------------------------------------

    /// Processes one message from another member.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        if m.to != self.id {
            return Err(RaftError::InvalidMessage("addressed to another member"));
        }
        if m.from == NO_NODE || m.from == self.id {
            return Err(RaftError::InvalidMessage("bad sender"));
        }
        if m.kind == MessageKind::InstallSnapshot && m.snapshot.is_none() {
            return Err(RaftError::InvalidMessage(
                "InstallSnapshot without snapshot",
            ));
        }
        let term_less = matches!(
            m.kind,
            MessageKind::Propose | MessageKind::ReadIndex | MessageKind::TransferLeader
        );
        if term_less != (m.term == 0) {
            return Err(RaftError::InvalidMessage(
                "term presence does not match kind",
            ));
        }
        if m.term > self.term {
            if matches!(
                m.kind,
                MessageKind::RequestVote | MessageKind::RequestPreVote
            ) {
                let force = m.context == CAMPAIGN_TRANSFER;
                let in_lease = self.cfg.check_quorum
                    && self.leader_id != NO_NODE
                    && self.election_elapsed < self.election_timeout;
                if in_lease && !force {
                    // Leader stickiness: we heard from a live leader recently; a disruptive
                    // candidate (e.g. one rejoining after a partition) must not depose it.
                    return Ok(());
                }
            }
            match m.kind {
                // A pre-vote asks about a future term; it does not move ours.
                MessageKind::RequestPreVote => {}
                // A granted pre-vote carries the future term; the real election will move it.
                MessageKind::RequestPreVoteResp if !m.reject => {}
                MessageKind::Append | MessageKind::Heartbeat | MessageKind::InstallSnapshot => {
                    self.become_follower(m.term, m.from)
                }
                // Figure 2, all servers: "If RPC request or response contains term T >
                // currentTerm: set currentTerm = T, convert to follower".
                _ => self.become_follower(m.term, NO_NODE),
            }
        } else if m.term < self.term && !term_less {
            match m.kind {
                MessageKind::Append | MessageKind::Heartbeat
                    if self.cfg.check_quorum || self.cfg.pre_vote =>
                {
                    // A stale leader that cannot win (pre-vote) or cannot hear us would never
                    // learn our term otherwise: tell it, so it steps down.
                    let m2 = Message::new(MessageKind::AppendResp, self.id, m.from, self.term);
                    self.msgs.push(m2);
                }
                MessageKind::RequestPreVote => {
                    let mut m2 =
                        Message::new(MessageKind::RequestPreVoteResp, self.id, m.from, self.term);
                    m2.reject = true;
                    self.msgs.push(m2);
                }
                _ => {}
            }
            // Figure 2, AppendEntries/RequestVote: "Reply false if term < currentTerm".
            return Ok(());
        }

        match m.kind {
            MessageKind::RequestVote | MessageKind::RequestPreVote => {
                self.handle_vote_request(m);
                Ok(())
            }
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower => self.step_follower(m),
            },
        }
    }

    /// Figure 2, RequestVote receiver: grant if we have not voted for another candidate in this
    /// term and the candidate's log is at least as up-to-date as ours.
    fn handle_vote_request(&mut self, m: Message) {
        let pre = m.kind == MessageKind::RequestPreVote;
        let can_vote = self.vote == m.from
            || (self.vote == NO_NODE && self.leader_id == NO_NODE)
            || (pre && m.term > self.term);
        let up_to_date = self.cfg.unsafe_vote_ignoring_log_for_canary
            || self.log.is_up_to_date(m.index, m.log_term);
        let kind = if pre {
            MessageKind::RequestPreVoteResp
        } else {
            MessageKind::RequestVoteResp
        };
        let mut resp;
        if can_vote && up_to_date {
            // Answer with the request's term so the candidate counts it (for a pre-vote our
            // own term may be lower).
            resp = Message::new(kind, self.id, m.from, m.term);
            if !pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            resp = Message::new(kind, self.id, m.from, self.term);
            resp.reject = true;
        }
        if pre {
            self.msgs.push(resp);
        } else {
            // The vote must be durable before the candidate may count it.
            self.msgs_after_persist.push(resp);
        }
    }

    // ---- leader ----------------------------------------------------------------------------

    fn step_leader(&mut self, m: Message) -> Result<(), RaftError> {
        match m.kind {
            MessageKind::Propose => {
                // Forwarded proposals fail silently; their proposer times out and retries.
                let _ = self.leader_propose(m.entries);
            }
            MessageKind::AppendResp => self.handle_append_resp(m),
            MessageKind::HeartbeatResp => self.handle_heartbeat_resp(m),
            MessageKind::ReadIndex => self.leader_read_index(m.from, m.context),
            MessageKind::TransferLeader => {
                let _ = self.leader_transfer(m.index);
            }
            // Another leader of our term cannot exist (Election Safety); stale votes are moot.
            _ => {}
        }
        Ok(())
    }

    fn leader_propose(&mut self, mut entries: Vec<Entry>) -> Result<(), RaftError> {
        if entries.is_empty() {
            return Err(RaftError::ProposalDropped("empty proposal"));
        }
        if self.tracker.get(self.id).is_none() {
            return Err(RaftError::ProposalDropped("leader is no longer a member"));
        }
        if self.lead_transferee != NO_NODE {
            return Err(RaftError::ProposalDropped("leader transfer in progress"));
        }
        let size: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
        // Always accept into an empty window, so one oversized batch cannot block forever.
        if self.uncommitted_size > 0 && self.uncommitted_size + size > self.cfg.max_uncommitted_size
        {
            return Err(RaftError::ProposalDropped("too many uncommitted entries"));
        }
        self.uncommitted_size += size;
        let last = self.log.last_index();
        let mut result = Ok(());
        for (i, e) in entries.iter_mut().enumerate() {
            if e.kind != EntryKind::ConfChange {
                continue;
            }
            // One change at a time, and only once this leader committed an entry of its own
            // term: otherwise a change may be decided against a stale membership.
            let check = if self.pending_conf_index > self.log.applied || !self.committed_in_term() {
                Err(RaftError::ConfChangePending)
            } else {
                ConfChange::decode(&e.data)
                    .and_then(|cc| cc.validate(&self.tracker.conf_state()))
                    .map_err(RaftError::ConfChange)
            };
            match check {
                Ok(()) => self.pending_conf_index = last + 1 + i as u64,
                Err(err) => {
                    // Keep the batch's positions but neutralise the change.
                    *e = Entry::default();
                    result = Err(err);
                }
            }
        }
        self.append_entries(entries);
        result
    }

    fn append_entries(&mut self, mut entries: Vec<Entry>) {
        let last = self.log.last_index();
        for (i, e) in entries.iter_mut().enumerate() {
            e.term = self.term;
            e.index = last + 1 + i as u64;
        }
        self.log.append(&entries);
        // Our own progress moves only when the caller reports the entries persisted
        // (`on_persisted`), so we never count ourselves for entries we could still lose.
        self.bcast_append();
    }

    /// The caller persisted the log up to `(index, term)`. A leader now counts itself for it.
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        if !self.log.stable_to(index, term) {
            return;
        }
        if self.role == Role::Leader {
            let persisted = self.log.persisted;
            if let Some(p) = self.tracker.get_mut(self.id) {
                p.maybe_update(persisted);
            }
            if self.maybe_commit() {
                self.bcast_append();
            }
        }
    }

    /// The caller installed the snapshot at `index`.
    pub fn on_snapshot_persisted(&mut self, index: u64) {
        self.log.stable_snap_to(index);
    }

    /// The application was handed entries up to `index`.
    pub fn on_applied(&mut self, index: u64) {
        self.log.applied_to(index);
    }

    /// Figure 2, leaders: "If there exists an N such that N > commitIndex, a majority of
    /// matchIndex[i] >= N, and log[N].term == currentTerm: set commitIndex = N".
    fn maybe_commit(&mut self) -> bool {
        let before = self.log.committed;
        let n = self.tracker.committed();
        let moved = if self.cfg.unsafe_commit_old_terms_for_canary {
            let moved = n > self.log.committed;
            self.log.commit_to(n);
            moved
        } else {
            self.log.maybe_commit(n, self.term)
        };
        if moved {
            let freed: u64 = self
                .log
                .entries(before + 1, self.log.committed + 1, u64::MAX)
                .map_or(0, |es| es.iter().map(|e| e.data.len() as u64).sum());
            self.uncommitted_size = self.uncommitted_size.saturating_sub(freed);
        }
        if moved && self.committed_in_term() && !self.reads_before_commit.is_empty() {
            for r in std::mem::take(&mut self.reads_before_commit) {
                self.leader_read_index(r.from, r.context);
            }
        }
        moved
    }

    fn committed_in_term(&self) -> bool {
        self.log
            .term(self.log.committed)
            .is_ok_and(|t| t == self.term)
    }

    fn bcast_append(&mut self) {
        for id in self.tracker.ids() {
            if id != self.id {
                self.maybe_send_append(id, true);
            }
        }
    }

    fn bcast_heartbeat(&mut self) {
        let round = self.read_only.current_round();
        for id in self.tracker.ids() {
            if id == self.id {
                continue;
            }
            let matched = self.tracker.get(id).map_or(0, |p| p.matched);
            let mut m = Message::new(MessageKind::Heartbeat, self.id, id, self.term);
            // A follower may not have our entries up to our commit; it may commit what it has
            // proven to match.
            m.commit = matched.min(self.log.committed);
            m.index = round;
            self.msgs.push(m);
        }
    }

    /// Sends the next Append (or a snapshot) to `to` if its progress allows. Returns whether a
    /// message was sent.
    fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.tracker.get(to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let (next, recent_active) = (pr.next, pr.recent_active);
        let last = self.log.last_index();
        let prev_term = self.log.term(next - 1);
        let entries = match &prev_term {
            Ok(_) => self.log.entries(next, last + 1, self.cfg.max_size_per_msg),
            Err(e) => Err(e.clone()),
        };
        let (prev_term, entries) = match (prev_term, entries) {
            (Ok(t), Ok(es)) => (t, es),
            _ => return self.send_snapshot(to, recent_active),
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let pr = self.tracker.get_mut(to).expect("member checked above");
        match pr.state {
            ProgressState::Replicate => {
                if let Some(e) = entries.last() {
                    pr.next = e.index + 1;
                    pr.inflights.add(e.index);
                }
            }
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Snapshot => unreachable!("paused progress"),
        }
        let mut m = Message::new(MessageKind::Append, self.id, to, self.term);
        m.index = next - 1;
        m.log_term = prev_term;
        m.entries = entries;
        m.commit = self.log.committed;
        self.msgs.push(m);
        true
    }

    fn send_snapshot(&mut self, to: NodeId, recent_active: bool) -> bool {
        // Snapshots are large: only send to a member we know is alive.
        if !recent_active {
            return false;
        }
        let snapshot = match self.log.snapshot() {
            Ok(s) => s,
            Err(StorageError::SnapshotTemporarilyUnavailable) => return false,
            Err(e) => panic!("reading snapshot to send: {e}"),
        };
        assert!(snapshot.meta.index > 0, "log compacted without a snapshot");
        let ticks = self.ticks;
        let pr = self.tracker.get_mut(to).expect("member");
        pr.become_snapshot(snapshot.meta.index, ticks);
        let mut m = Message::new(MessageKind::InstallSnapshot, self.id, to, self.term);
        m.snapshot = Some(snapshot);
        self.msgs.push(m);
        true
    }

    fn handle_append_resp(&mut self, m: Message) {
        let first_index = self.log.first_index();
        let Some(pr) = self.tracker.get_mut(m.from) else {
            return;
        };
        pr.recent_active = true;
        if m.reject {
            // Fast backtracking: skip every entry of a term the follower cannot match.
            let hint = if m.log_term > 0 {
                self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            } else {
                m.reject_hint
            };
            let pr = self.tracker.get_mut(m.from).expect("member");
            if pr.maybe_decr_to(m.index, hint) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.maybe_send_append(m.from, true);
            }
            return;
        }
        let old_paused = pr.is_paused();
        let moved = pr.maybe_update(m.index);
        let reprobe = pr.state == ProgressState::Probe && pr.matched == m.index;
        if !moved && !reprobe {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot
                if pr.matched >= pr.pending_snapshot || pr.matched + 1 >= first_index =>
            {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Snapshot => {}
            ProgressState::Replicate => pr.inflights.free_le(m.index),
        }
        if self.maybe_commit() {
            self.bcast_append();
        } else if old_paused {
            self.maybe_send_append(m.from, true);
        }
        while self.maybe_send_append(m.from, false) {}
        if m.from == self.lead_transferee
            && self.tracker.get(m.from).map(|p| p.matched) == Some(self.log.last_index())
        {
            self.send_timeout_now(m.from);
        }
    }

    fn handle_heartbeat_resp(&mut self, m: Message) {
        let (last, ticks, election) = (
            self.log.last_index(),
            self.ticks,
            u64::from(self.election_timeout),
        );
        let Some(pr) = self.tracker.get_mut(m.from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.state == ProgressState::Replicate && pr.inflights.full() {
            pr.inflights.free_first_one();
        }
        if pr.state == ProgressState::Snapshot && ticks - pr.snapshot_sent_at >= election {
            // The snapshot (or its answer) was probably lost: probe again.
            pr.become_probe();
            pr.next = pr.matched + 1;
        }
        if pr.matched < last {
            self.maybe_send_append(m.from, true);
        }
        if m.index > 0 {
            self.read_only.ack(m.from, m.index);
            self.release_confirmed_reads();
        }
    }

    fn release_confirmed_reads(&mut self) {
        let tracker = &self.tracker;
        let confirmed = self
            .read_only
            .take_confirmed(|acked| tracker.quorum_of(acked));
        for r in confirmed {
            self.answer_read(r);
        }
        self.start_read_round();
    }

    fn start_read_round(&mut self) {
        if let Some(round) = self.read_only.start_round() {
            self.read_only.ack(self.id, round);
            self.bcast_heartbeat();
            // A single voter confirms alone.
            self.release_confirmed_reads();
        }
    }

    fn answer_read(&mut self, r: ReadRequest) {
        if r.from == self.id {
            self.read_states.push(ReadState {
                index: r.index,
                context: r.context,
            });
        } else {
            let mut m = Message::new(MessageKind::ReadIndexResp, self.id, r.from, self.term);
            m.index = r.index;
            m.context = r.context;
            self.msgs.push(m);
        }
    }

    fn leader_read_index(&mut self, from: NodeId, context: Vec<u8>) {
        let req = ReadRequest {
            from,
            context,
            index: self.log.committed,
        };
        // Until an entry of our term is committed, our commit index may lag the true one.
        if !self.committed_in_term() {
            self.reads_before_commit.push(req);
            return;
        }
        self.read_only.add(req);
        self.start_read_round();
    }

    fn leader_transfer(&mut self, target: NodeId) -> Result<(), RaftError> {
        if target == self.id || target == self.lead_transferee {
            return Ok(());
        }
        if !self.tracker.is_voter(target) {
            return Err(RaftError::ProposalDropped("transfer target is not a voter"));
        }
        self.lead_transferee = target;
        // The transfer must finish within one election timeout or is abandoned.
        self.election_elapsed = 0;
        if self.tracker.get(target).map(|p| p.matched) == Some(self.log.last_index()) {
            self.send_timeout_now(target);
        } else {
            self.maybe_send_append(target, true);
        }
        Ok(())
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        self.msgs.push(Message::new(
            MessageKind::TimeoutNow,
            self.id,
            to,
            self.term,
        ));
    }

    // ---- candidate -------------------------------------------------------------------------

    fn step_candidate(&mut self, m: Message) -> Result<(), RaftError> {
        match m.kind {
            MessageKind::Append => {
                self.become_follower(m.term, m.from);
                self.handle_append(m);
            }
            MessageKind::Heartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(m);
            }
            MessageKind::InstallSnapshot => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m);
            }
            MessageKind::RequestPreVoteResp if self.role == Role::PreCandidate => {
                self.tally(m.from, !m.reject)
            }
            MessageKind::RequestVoteResp if self.role == Role::Candidate => {
                self.tally(m.from, !m.reject)
            }
            // Proposals, reads and transfers need a leader; the requester retries.
            _ => {}
        }
        Ok(())
    }

    fn tally(&mut self, from: NodeId, granted: bool) {
        self.tracker.record_vote(from, granted);
        match self.tracker.vote_result() {
            VoteResult::Won if self.role == Role::PreCandidate => self.campaign_round(false, false),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, NO_NODE),
            VoteResult::Pending => {}
        }
    }

    // ---- follower --------------------------------------------------------------------------

    fn step_follower(&mut self, m: Message) -> Result<(), RaftError> {
        match m.kind {
            MessageKind::Append => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_append(m);
            }
            MessageKind::Heartbeat => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_heartbeat(m);
            }
            MessageKind::InstallSnapshot => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_snapshot(m);
            }
            MessageKind::Propose => {
                let _ = self.forward_proposal(m.entries);
            }
            MessageKind::ReadIndex if self.leader_id != NO_NODE => {
                self.forward(MessageKind::ReadIndex, m.context, 0);
            }
            MessageKind::TransferLeader if self.leader_id != NO_NODE => {
                self.forward(MessageKind::TransferLeader, Vec::new(), m.index);
            }
            MessageKind::ReadIndexResp => self.read_states.push(ReadState {
                index: m.index,
                context: m.context,
            }),
            MessageKind::TimeoutNow => self.hup(true),
            _ => {}
        }
        Ok(())
    }

    fn forward(&mut self, kind: MessageKind, context: Vec<u8>, index: u64) {
        let mut m = Message::new(kind, self.id, self.leader_id, 0);
        m.context = context;
        m.index = index;
        self.msgs.push(m);
    }

    fn forward_proposal(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        if self.leader_id == NO_NODE {
            return Err(RaftError::ProposalDropped("no leader"));
        }
        if self.cfg.disable_proposal_forwarding {
            return Err(RaftError::ProposalDropped(
                "proposal forwarding is disabled",
            ));
        }
        let mut m = Message::new(MessageKind::Propose, self.id, self.leader_id, 0);
        m.entries = entries;
        self.msgs.push(m);
        Ok(())
    }

    /// Figure 2, AppendEntries receiver, rules 2–5. Answers go once the log is persisted.
    fn handle_append(&mut self, m: Message) {
        let mut resp = Message::new(MessageKind::AppendResp, self.id, m.from, self.term);
        if m.index < self.log.committed {
            // Everything up to our commit index matches the leader already.
            resp.index = self.log.committed;
        } else if let Some(last_new) = self
            .log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            resp.index = last_new;
        } else {
            // Rule 2: reject when no entry at prevLogIndex has prevLogTerm — with a hint: the
            // last index whose term is <= the leader's prevLogTerm (fast backtracking).
            let hint = self
                .log
                .find_conflict_by_term(m.index.min(self.log.last_index()), m.log_term);
            resp.reject = true;
            resp.index = m.index;
            resp.reject_hint = hint;
            resp.log_term = self.log.term(hint).unwrap_or(0);
        }
        self.msgs_after_persist.push(resp);
    }

    fn handle_heartbeat(&mut self, m: Message) {
        self.log.commit_to(m.commit);
        let mut resp = Message::new(MessageKind::HeartbeatResp, self.id, m.from, self.term);
        resp.index = m.index;
        self.msgs.push(resp);
    }

    fn handle_snapshot(&mut self, m: Message) {
        let snapshot = m.snapshot.expect("checked at the gateway");
        let mut resp = Message::new(MessageKind::AppendResp, self.id, m.from, self.term);
        resp.index = if self.restore(snapshot) {
            self.log.last_index()
        } else {
            self.log.committed
        };
        self.msgs_after_persist.push(resp);
    }

    /// Installs `snapshot` unless our log already covers it. Returns whether it was installed.
    fn restore(&mut self, snapshot: Snapshot) -> bool {
        let meta = &snapshot.meta;
        if meta.index <= self.log.committed {
            return false;
        }
        if self.log.match_term(meta.index, meta.term) {
            // Our log already holds the snapshot's last entry: just fast-forward the commit.
            self.log.commit_to(meta.index);
            return false;
        }
        let conf = meta.conf_state.clone();
        self.log.restore(snapshot);
        self.tracker.set_conf(&conf, self.log.last_index() + 1);
        true
    }

    // ---- local requests --------------------------------------------------------------------

    /// Proposes application data. On a follower, forwards it to the leader.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), RaftError> {
        self.propose_entries(vec![Entry {
            data,
            ..Entry::default()
        }])
    }

    /// Proposes a membership change (accepted only by the leader).
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::ProposalDropped(
                "membership changes go to the leader",
            ));
        }
        self.propose_entries(vec![Entry {
            kind: EntryKind::ConfChange,
            data: cc.encode(),
            ..Entry::default()
        }])
    }

    /// Proposes several entries at once (a batch: one Append carries them all).
    pub fn propose_entries(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        match self.role {
            Role::Leader => self.leader_propose(entries),
            Role::Follower => self.forward_proposal(entries),
            Role::Candidate | Role::PreCandidate => {
                Err(RaftError::ProposalDropped("election in progress"))
            }
        }
    }

    /// Asks for a read index for the read identified by `context`; the answer comes as a
    /// [`ReadState`] in a later Ready.
    pub fn read_index(&mut self, context: Vec<u8>) -> Result<(), RaftError> {
        match self.role {
            Role::Leader => {
                self.leader_read_index(self.id, context);
                Ok(())
            }
            Role::Follower if self.leader_id != NO_NODE => {
                self.forward(MessageKind::ReadIndex, context, 0);
                Ok(())
            }
            _ => Err(RaftError::ProposalDropped("no leader")),
        }
    }

    /// Asks the leader to hand leadership to `target` (which must be a voter).
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), RaftError> {
        match self.role {
            Role::Leader => self.leader_transfer(target),
            Role::Follower if self.leader_id != NO_NODE => {
                self.forward(MessageKind::TransferLeader, Vec::new(), target);
                Ok(())
            }
            _ => Err(RaftError::ProposalDropped("no leader")),
        }
    }

    /// Applies a committed membership change; returns the new membership, which the
    /// application stores with its state. A leader removed (or not a voter any more) steps down.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        let conf = cc.apply(&self.tracker.conf_state());
        self.tracker.set_conf(&conf, self.log.last_index() + 1);
        if self.role == Role::Leader {
            if !self.tracker.is_voter(self.id) {
                self.become_follower(self.term, NO_NODE);
                return conf;
            }
            if !self.tracker.is_voter(self.lead_transferee) {
                self.lead_transferee = NO_NODE;
            }
            // A smaller majority may commit more, or confirm pending reads.
            if self.maybe_commit() {
                self.bcast_append();
            }
            self.release_confirmed_reads();
        }
        conf
    }

    /// The transport could not reach `id`: stop streaming to it and probe instead.
    pub fn report_unreachable(&mut self, id: NodeId) {
        if let Some(pr) = self.tracker.get_mut(id) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }

    /// The transport finished sending a snapshot to `id` (`ok`), or failed to. Either way the
    /// leader probes again; on success from after the snapshot.
    pub fn report_snapshot(&mut self, id: NodeId, ok: bool) {
        if let Some(pr) = self.tracker.get_mut(id) {
            if pr.state == ProgressState::Snapshot {
                if !ok {
                    pr.pending_snapshot = 0;
                }
                pr.become_probe();
                pr.probe_sent = true;
            }
        }
    }

    /// Debug-build consistency checks, run after every input (see `RawNode`).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub(crate) fn assert_invariants(&self, prev: &HardState) {
        assert!(
            self.term >= prev.term,
            "term decreased: {} -> {}",
            prev.term,
            self.term
        );
        assert!(
            self.log.committed >= prev.commit,
            "commit decreased: {} -> {}",
            prev.commit,
            self.log.committed
        );
        if self.term == prev.term && prev.vote != NO_NODE {
            assert_eq!(
                self.vote, prev.vote,
                "vote changed within term {}",
                self.term
            );
        }
        assert!(
            self.log.committed <= self.log.last_index(),
            "commit beyond the log"
        );
        assert!(
            self.log.applied <= self.log.committed,
            "applied beyond commit"
        );
        assert!(
            self.log.persisted <= self.log.last_index(),
            "persisted beyond the log"
        );
        if self.role == Role::Leader {
            assert_eq!(self.leader_id, self.id, "leader does not know itself");
            assert_eq!(self.vote, self.id, "leader did not vote for itself");
            if let Some(p) = self.tracker.get(self.id) {
                assert!(
                    p.matched <= self.log.persisted,
                    "leader counts unpersisted entries"
                );
            }
        }
    }
}
