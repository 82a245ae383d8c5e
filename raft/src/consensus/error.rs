//! [`RaftError`]: why a request to a member failed. These are "your request failed" errors;
//! broken invariants inside Raft are programmer errors and panic (DESIGN.md §10).

use super::conf::ConfChangeError;

/// Why a request to this member failed. None of these mean the member is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaftError {
    /// The proposal or read could not be accepted now (no leader, forwarding off, a leader
    /// transfer in progress, not a member); the caller may retry later, elsewhere.
    ProposalDropped(&'static str),
    /// A membership change is already in flight (one at a time).
    ConfChangePending,
    /// The membership change is malformed or invalid.
    ConfChange(ConfChangeError),
    /// A message failed the gateway checks.
    InvalidMessage(&'static str),
    /// The configuration is invalid.
    Config(&'static str),
}

impl std::fmt::Display for RaftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RaftError::ProposalDropped(why) => write!(f, "proposal dropped: {why}"),
            RaftError::ConfChangePending => write!(f, "a membership change is in flight"),
            RaftError::ConfChange(e) => write!(f, "{e}"),
            RaftError::InvalidMessage(why) => write!(f, "invalid message: {why}"),
            RaftError::Config(why) => write!(f, "invalid config: {why}"),
        }
    }
}

impl std::error::Error for RaftError {}
