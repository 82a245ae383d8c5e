//! Leases (etcd's `lease` package, rebuilt): the [`Lessor`] owns every lease's granted TTL, its
//! checkpointed remaining TTL, the keys attached to it and — on the leader only — its deadline.
//!
//! The lessor is runtime-agnostic: no threads, timers, clock or Raft inside. The apply core owns
//! it and calls two kinds of methods:
//!
//! - **Apply side** (every member, in log order, with the batch's
//!   [`KvWrite`](crate::mvcc::KvWrite)): [`Lessor::grant`], [`Lessor::revoke`],
//!   [`Lessor::checkpoint`] write the lease bucket in the batch's
//!   transaction, so a lease change and the applied Raft index commit together (S4);
//!   [`Lessor::observe`] keeps key attachments current from the batch's events.
//! - **Leader side** (local clock, passed in as `now`): [`Lessor::promote`], [`Lessor::demote`],
//!   [`Lessor::renew`], [`Lessor::expired`], [`Lessor::checkpoints_due`]. These never change
//!   replicated state: an expired lease is only *reported*; the server proposes a revoke entry
//!   and the lease disappears when that entry is applied on every member (L1). A member that was
//!   never promoted has no deadlines at all, so it cannot report an expiry.
//!
//! Time is a `Duration` since an arbitrary epoch of the caller's monotonic clock; tests advance
//! it by hand.
//!
//! Persistence: bucket [`LEASE_BUCKET`] holds one entry per lease (ID → granted TTL, remaining
//! TTL of the last checkpoint). Key attachments are not stored twice: at open they are rebuilt
//! from the live records' `lease` field (one pass over the current-records bucket, zero copy),
//! which is the authoritative copy and cannot drift from a separately stored index.

mod lessor;
mod queue;
mod record;

pub use lessor::{Lease, Lessor, TimeToLive};
pub use record::LEASE_BUCKET;

use crate::mvcc::{Code, KvError};
use std::fmt;
use std::time::Duration;

/// A lease ID (etcd's `LeaseID`, an int64 on the wire). 0 is "no lease".
pub type LeaseId = i64;

/// etcd's MaxLeaseTTL: a grant asking for more seconds is refused.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's default lease checkpoint interval (5 minutes).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

/// etcd's expiredLeaseRetryInterval: a lease reported by [`Lessor::expired`] is reported again
/// after this long if no revoke for it was applied meanwhile (the proposal was lost).
pub const DEFAULT_REVOKE_RETRY: Duration = Duration::from_secs(3);

/// etcd revokes at most 1000 leases per second and checks every 500 ms: 500 per round.
pub const DEFAULT_MAX_REVOKES_PER_ROUND: usize = 500;

/// etcd's maxLeaseCheckpointBatchSize.
pub const DEFAULT_MAX_CHECKPOINTS_PER_ROUND: usize = 1000;

/// The lessor's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LessorConfig {
    /// Grants asking for fewer seconds get this many (see [`LessorConfig::min_ttl_secs_for`]).
    pub min_ttl_secs: i64,
    /// Whether the leader checkpoints remaining TTLs (etcd#9888; on by default in keel). Off, a
    /// leader change or a restart resets every lease to its granted TTL, as etcd 3.4 does by
    /// default.
    pub checkpointing: bool,
    /// How often the leader checkpoints a lease's remaining TTL; leases with less left than
    /// this are not checkpointed (they expire before the next one would matter much).
    pub checkpoint_interval: Duration,
    /// See [`DEFAULT_REVOKE_RETRY`].
    pub revoke_retry: Duration,
    /// Suggested `max` for [`Lessor::expired`] per round (the server's rate limit).
    pub max_revokes_per_round: usize,
    /// Suggested `max` for [`Lessor::checkpoints_due`] per round.
    pub max_checkpoints_per_round: usize,
}

impl LessorConfig {
    /// etcd's minimum lease TTL: 1.5 election timeouts — `(3 * election_ticks / 2)` heartbeats
    /// (integer division on ticks) — in whole seconds, rounded up. etcd's defaults (10 ticks of
    /// 100 ms) give 2 s. A lease shorter than an election could expire during the election that
    /// follows a leader loss before the new leader could have been renewed.
    pub fn min_ttl_secs_for(election_ticks: u64, heartbeat: Duration) -> i64 {
        let min = heartbeat.as_nanos() * u128::from(3 * election_ticks / 2);
        min.div_ceil(1_000_000_000) as i64
    }
}

impl Default for LessorConfig {
    fn default() -> Self {
        LessorConfig {
            min_ttl_secs: Self::min_ttl_secs_for(10, Duration::from_millis(100)),
            checkpointing: true,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            revoke_retry: DEFAULT_REVOKE_RETRY,
            max_revokes_per_round: DEFAULT_MAX_REVOKES_PER_ROUND,
            max_checkpoints_per_round: DEFAULT_MAX_CHECKPOINTS_PER_ROUND,
        }
    }
}

/// Errors of lease requests, with etcd's messages and gRPC codes.
#[derive(Debug)]
pub enum LeaseError {
    /// "etcdserver: requested lease not found" (NotFound).
    NotFound,
    /// "etcdserver: lease already exists" (FailedPrecondition).
    AlreadyExists,
    /// "etcdserver: too large lease TTL" (OutOfRange).
    TtlTooLarge,
    /// A keepalive reached a member that is not the leader: the server forwards it (etcd's
    /// ErrNotPrimary; on the wire "etcdserver: not leader" if it cannot).
    NotLeader,
    /// A keepalive for a lease whose deadline passed and whose revoke is under way: etcd waits
    /// for the revoke and answers NotFound; the server does the same (or answers at once).
    Expired,
    /// The store failed (fatal for the member, D2), or a lease record failed its check (D1).
    Kv(KvError),
}

impl LeaseError {
    /// etcd's message.
    pub fn message(&self) -> String {
        match self {
            LeaseError::NotFound | LeaseError::Expired => {
                "etcdserver: requested lease not found".into()
            }
            LeaseError::AlreadyExists => "etcdserver: lease already exists".into(),
            LeaseError::TtlTooLarge => "etcdserver: too large lease TTL".into(),
            LeaseError::NotLeader => "etcdserver: not leader".into(),
            LeaseError::Kv(e) => e.message(),
        }
    }

    /// etcd's gRPC code. [`Code`] has no Unavailable (14), which etcd's not-leader error uses;
    /// NotLeader maps to FailedPrecondition here and the server never sends it as such.
    pub fn code(&self) -> Code {
        match self {
            LeaseError::NotFound | LeaseError::Expired => Code::NotFound,
            LeaseError::AlreadyExists | LeaseError::NotLeader => Code::FailedPrecondition,
            LeaseError::TtlTooLarge => Code::OutOfRange,
            LeaseError::Kv(e) => e.code(),
        }
    }

    /// True when the member itself is broken (D2), not the request.
    pub fn is_fatal(&self) -> bool {
        matches!(self, LeaseError::Kv(e) if e.is_fatal())
    }
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for LeaseError {}

impl From<KvError> for LeaseError {
    fn from(e: KvError) -> Self {
        LeaseError::Kv(e)
    }
}

impl From<crate::btree::Error> for LeaseError {
    fn from(e: crate::btree::Error) -> Self {
        LeaseError::Kv(KvError::Storage(e))
    }
}

/// Result of lease operations.
pub type LeaseResult<T> = Result<T, LeaseError>;
