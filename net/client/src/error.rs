//! The client's error type: what a caller can act on (a server's etcd error, an unknown write
//! outcome, no endpoint reachable, a compacted watch, a lost lock) kept apart.

use keel_proto::{ErrorCode, ErrorResponse};

/// Result alias of the client.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything a keel client call can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The server answered with an error (etcd's code and exact message).
    Server(ErrorResponse),
    /// A non-idempotent request was sent and then the connection was lost, the deadline passed
    /// before an answer came, or the server answered that it stopped waiting for the proposal
    /// (request timed out, leader changed): it may or may not have been applied. Never retried
    /// by the client.
    Unknown(String),
    /// No endpoint could be reached (or none answered) before the deadline; the request was
    /// either never sent or was idempotent and every attempt failed.
    Unavailable(String),
    /// The deadline passed (idempotent request; nothing was changed by a read).
    Timeout,
    /// A watch cannot resume: the revision it needs was compacted away.
    Compacted {
        /// The compaction revision the server reported.
        compact_revision: i64,
    },
    /// The server broke the protocol (bad frame, unexpected answer).
    Protocol(String),
    /// A bad argument given to the client (e.g. an empty endpoint list).
    InvalidArgument(String),
    /// A concurrency recipe's session lease is gone (expired or revoked).
    SessionExpired,
    /// Election: this campaign is not (or no longer) the leader.
    NotLeader,
    /// Election: no leader is elected.
    NoLeader,
    /// The client or the stream was closed.
    Closed,
}

impl Error {
    /// The etcd error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server(e) => e.error_code(),
            _ => None,
        }
    }

    /// True when the outcome of the request is unknown (see [`Error::Unknown`]).
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, Error::Unknown(_))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Server(e) => f.write_str(&e.message),
            Error::Unknown(why) => write!(f, "outcome unknown: {why}"),
            Error::Unavailable(why) => write!(f, "unavailable: {why}"),
            Error::Timeout => f.write_str("context deadline exceeded"),
            Error::Compacted { compact_revision } => write!(
                f,
                "etcdserver: mvcc: required revision has been compacted (compact revision {compact_revision})"
            ),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::InvalidArgument(e) => f.write_str(e),
            Error::SessionExpired => f.write_str("session: the session's lease has expired"),
            Error::NotLeader => f.write_str("election: not leader"),
            Error::NoLeader => f.write_str("election: no leader"),
            Error::Closed => f.write_str("client closed"),
        }
    }
}

impl std::error::Error for Error {}

/// Server error codes after which any request may be sent again: the server refused it before
/// proposing it (no leader known, back-pressure).
pub(crate) fn refused_before_proposal(code: Option<ErrorCode>) -> bool {
    matches!(
        code,
        Some(ErrorCode::NoLeader) | Some(ErrorCode::TooManyRequests) | Some(ErrorCode::NotLeader)
    )
}

/// Server error codes after which an idempotent request is retried (on another member).
pub(crate) fn transient(code: Option<ErrorCode>) -> bool {
    refused_before_proposal(code)
        || matches!(
            code,
            Some(ErrorCode::LeaderChanged)
                | Some(ErrorCode::Stopped)
                | Some(ErrorCode::Timeout)
                | Some(ErrorCode::TimeoutDueToLeaderFail)
                | Some(ErrorCode::TimeoutDueToConnectionLost)
                | Some(ErrorCode::Unhealthy)
                | Some(ErrorCode::NotSupportedForLearner)
        )
}

/// Server error codes that leave a write's outcome unknown: it may have been proposed and
/// committed before the server gave up waiting (etcd's timeouts, a leader change, a stop).
pub(crate) fn proposed_maybe(code: Option<ErrorCode>) -> bool {
    matches!(
        code,
        Some(ErrorCode::Timeout)
            | Some(ErrorCode::TimeoutDueToLeaderFail)
            | Some(ErrorCode::TimeoutDueToConnectionLost)
            | Some(ErrorCode::LeaderChanged)
            | Some(ErrorCode::Stopped)
    )
}
