//! The data Raft exchanges and persists: log entries, hard state, membership, snapshots and
//! messages. Plain owned data, no encoding: the wire and the WAL own their own formats.

/// A member's id. `0` is reserved for "none" (no vote, no known leader).
pub type NodeId = u64;

/// The id that means "nobody".
pub const NO_NODE: NodeId = 0;

/// What an entry's payload means to the application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EntryKind {
    /// Application data (may be empty: a new leader's no-op entry).
    #[default]
    Normal,
    /// A membership change, `data` is a [`crate::consensus::ConfChange`] encoded with `encode`.
    ConfChange,
}

/// One log entry. Entries are identified by `(index, term)` (Log Matching, R3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, starting at 1.
    pub index: u64,
    /// The term of the leader that created the entry.
    pub term: u64,
    /// How the application interprets `data`.
    pub kind: EntryKind,
    /// Opaque payload.
    pub data: Vec<u8>,
}

impl Entry {
    /// Bytes this entry counts for in message and Ready size limits: the payload plus a fixed
    /// header allowance, so that empty entries are not free.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// The state that must be durable before a member answers anyone (Figure 2, "persistent state").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this member has seen.
    pub term: u64,
    /// The candidate voted for in `term`, or [`NO_NODE`].
    pub vote: NodeId,
    /// The highest index known committed. Persisting it is an optimisation (faster restart),
    /// not a safety requirement.
    pub commit: u64,
}

/// Membership: who votes and who only receives the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    /// Voting members, sorted ascending.
    pub voters: Vec<NodeId>,
    /// Non-voting members that receive the log, sorted ascending; disjoint from `voters`.
    pub learners: Vec<NodeId>,
}

/// What a snapshot covers: every entry up to and including `index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot replaces.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Membership as of `index`.
    pub conf_state: ConfState,
}

/// A snapshot: the state machine at `meta.index`, replacing the log prefix up to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Position and membership.
    pub meta: SnapshotMeta,
    /// The application's state, opaque to Raft.
    pub data: Vec<u8>,
}

/// The kinds of message members exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// AppendEntries: `index`/`log_term` name the entry preceding `entries`, `commit` the
    /// leader's commit index.
    Append,
    /// Answer to `Append` or `InstallSnapshot`. Accepted: `index` is the last index now known
    /// to match. Rejected: `index` is the rejected `Append.index`, and `reject_hint`/`log_term`
    /// give the follower's best guess of where the logs diverge (fast backtracking).
    AppendResp,
    /// RequestVote: `index`/`log_term` describe the candidate's last entry.
    RequestVote,
    /// Answer to `RequestVote`; `reject` says whether the vote was refused.
    RequestVoteResp,
    /// Pre-vote request: "would you vote for me at `term`?" — changes no state at the receiver.
    RequestPreVote,
    /// Answer to `RequestPreVote`.
    RequestPreVoteResp,
    /// Leader heartbeat: `commit` is what the follower may commit, `index` the ReadIndex round
    /// the leader wants confirmed (0 if none).
    Heartbeat,
    /// Answer to `Heartbeat`; echoes the round in `index`.
    HeartbeatResp,
    /// InstallSnapshot: `snapshot` holds the snapshot.
    InstallSnapshot,
    /// A proposal forwarded from a follower to the leader; `entries` hold the proposed data.
    Propose,
    /// A follower asks the leader for a read index; `context` identifies the request.
    ReadIndex,
    /// The leader answers `ReadIndex`: the read may be served once applied ≥ `index`.
    ReadIndexResp,
    /// Leader transfer: the receiver should start an election at once, ignoring leases.
    TimeoutNow,
    /// A follower forwards a leader-transfer request; `index` holds the transferee's id.
    TransferLeader,
}

/// One message between two members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// What the message is.
    pub kind: MessageKind,
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The sender's term; 0 for forwarded requests (`Propose`, `ReadIndex`, `TransferLeader`)
    /// which are term-less.
    pub term: u64,
    /// Kind-specific log term (see [`MessageKind`]).
    pub log_term: u64,
    /// Kind-specific index (see [`MessageKind`]).
    pub index: u64,
    /// Entries carried by `Append` and `Propose`.
    pub entries: Vec<Entry>,
    /// The sender's commit index (`Append`, `Heartbeat`).
    pub commit: u64,
    /// Whether a response refuses the request.
    pub reject: bool,
    /// The rejecting follower's hint of the last index that may match (`AppendResp`).
    pub reject_hint: u64,
    /// The snapshot of an `InstallSnapshot`.
    pub snapshot: Option<Snapshot>,
    /// Opaque request context: the read request id of `ReadIndex`/`ReadIndexResp`, or
    /// [`CAMPAIGN_TRANSFER`] on votes of an election started by `TimeoutNow`.
    pub context: Vec<u8>,
}

/// `context` of vote requests sent by an election that a leader transfer started: voters grant
/// such votes even while they believe a leader is alive (its lease would otherwise block it).
pub const CAMPAIGN_TRANSFER: &[u8] = b"keel-transfer";

impl Message {
    /// A message with every optional field empty.
    pub fn new(kind: MessageKind, from: NodeId, to: NodeId, term: u64) -> Self {
        Message {
            kind,
            from,
            to,
            term,
            log_term: 0,
            index: 0,
            entries: Vec::new(),
            commit: 0,
            reject: false,
            reject_hint: 0,
            snapshot: None,
            context: Vec::new(),
        }
    }

    /// Whether this message asks for or answers a vote or pre-vote.
    pub fn is_vote(&self) -> bool {
        matches!(
            self.kind,
            MessageKind::RequestVote
                | MessageKind::RequestPreVote
                | MessageKind::RequestVoteResp
                | MessageKind::RequestPreVoteResp
        )
    }
}
