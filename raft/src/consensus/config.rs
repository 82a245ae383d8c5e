//! [`Config`]: how a member behaves — timing, flow-control limits, the pre-vote, check-quorum
//! and forwarding switches, the restart point and the RNG seed.

use super::error::RaftError;
use super::message::{NodeId, NO_NODE};

/// How a member behaves; `Config::new(id)` gives etcd's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// This member's id (non-zero).
    pub id: NodeId,
    /// Ticks without hearing from a leader before campaigning; the actual timeout is drawn from
    /// `[election_tick, 2 * election_tick)` after every term change.
    pub election_tick: u32,
    /// Ticks between leader heartbeats; must be below `election_tick`.
    pub heartbeat_tick: u32,
    /// Upper bound on the entry bytes of one Append (at least one entry is always sent).
    pub max_size_per_msg: u64,
    /// Appends a leader keeps in flight to one follower in replicate state.
    pub max_inflight_msgs: usize,
    /// Payload bytes a leader accepts beyond its commit index before refusing proposals
    /// (back-pressure: a leader that cannot commit must not grow its log without bound).
    pub max_uncommitted_size: u64,
    /// Run a pre-vote round before incrementing the term (Raft thesis §9.6), so a partitioned
    /// member rejoining cannot depose a healthy leader.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a majority for an election timeout, and
    /// followers ignore vote requests while they hear from a leader (leader lease).
    pub check_quorum: bool,
    /// Followers drop proposals instead of forwarding them to the leader.
    pub disable_proposal_forwarding: bool,
    /// The last index the application has applied (restart point); 0 means "as of the snapshot".
    pub applied: u64,
    /// Seed of the RNG that draws election timeouts.
    pub seed: u64,
    /// Test-only: a leader commits entries of earlier terms by counting replicas — the bug of
    /// the paper's Figure 8. The simulator's canary turns it on and must find a violation.
    #[doc(hidden)]
    pub unsafe_commit_old_terms_for_canary: bool,
    /// Test-only: voters ignore the "candidate's log is at least as up-to-date" check.
    #[doc(hidden)]
    pub unsafe_vote_ignoring_log_for_canary: bool,
}

impl Config {
    /// Defaults: election 10 ticks, heartbeat 1, 1 MiB per Append, 256 in flight, pre-vote and
    /// check-quorum on, forwarding on.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_uncommitted_size: 64 << 20,
            pre_vote: true,
            check_quorum: true,
            disable_proposal_forwarding: false,
            applied: 0,
            seed: id,
            unsafe_commit_old_terms_for_canary: false,
            unsafe_vote_ignoring_log_for_canary: false,
        }
    }

    /// Checks the configuration (done once, when a member starts).
    pub fn validate(&self) -> Result<(), RaftError> {
        if self.id == NO_NODE {
            return Err(RaftError::Config("id must not be 0"));
        }
        if self.heartbeat_tick == 0 {
            return Err(RaftError::Config("heartbeat_tick must be positive"));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(RaftError::Config(
                "election_tick must exceed heartbeat_tick",
            ));
        }
        if self.max_inflight_msgs == 0 {
            return Err(RaftError::Config("max_inflight_msgs must be positive"));
        }
        Ok(())
    }
}
