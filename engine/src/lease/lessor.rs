//! The [`Lessor`]: the lease table, key attachments, and the leader's deadlines and checkpoint
//! schedule (see the module above for who calls what).

use super::queue::DeadlineQueue;
use super::record;
use super::{LeaseError, LeaseId, LeaseResult, LessorConfig, LEASE_BUCKET, MAX_LEASE_TTL};
use crate::mvcc::{DeleteRangeResponse, Event, EventType, KvStore, KvWrite};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;
use std::time::Duration;

/// One lease as the lessor knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    id: LeaseId,
    ttl: i64,
    remaining_ttl: i64,
    keys: BTreeSet<Vec<u8>>,
    /// When it expires by the leader's clock; None on a member that is not the leader (L1).
    deadline: Option<Duration>,
}

impl Lease {
    /// The lease ID.
    pub fn id(&self) -> LeaseId {
        self.id
    }

    /// The granted TTL in seconds (after raising to the minimum).
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// The remaining TTL of the last applied checkpoint, in seconds; 0 when none is in force
    /// (a new leader then starts the lease at its granted TTL).
    pub fn checkpointed_ttl(&self) -> i64 {
        self.remaining_ttl
    }

    /// The attached keys, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(Vec::as_slice)
    }

    /// How many keys are attached.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The leader's deadline for it (None when this member is not the leader).
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }
}

/// etcdserverpb.LeaseTimeToLiveResponse without the header. An unknown lease answers `ttl`
/// -1, `granted_ttl` 0 and no keys, as etcd's gRPC layer does (not an error).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeToLive {
    pub id: LeaseId,
    /// Remaining seconds (truncated); 0 while an expired lease waits for its revoke.
    pub ttl: i64,
    pub granted_ttl: i64,
    /// Attached keys in key order (empty unless asked for).
    pub keys: Vec<Vec<u8>>,
}

/// The lease table of one member. Owned by the apply core; not `Send` (the lease check it
/// lends to each [`KvWrite`] shares its ID set through an `Rc`): create it on the apply thread.
pub struct Lessor {
    cfg: LessorConfig,
    leases: BTreeMap<LeaseId, Lease>,
    /// The IDs of `leases`, shared with the put check installed in write batches.
    ids: Rc<RefCell<HashSet<LeaseId>>>,
    leader: bool,
    /// Leader only: when each lease is next reported by [`Lessor::expired`] — its deadline,
    /// then, once reported, the retry time.
    expiry: DeadlineQueue,
    /// Leader only: when each lease is next checkpointed.
    checkpoints: DeadlineQueue,
    /// Leader only: leases renewed while a checkpoint was in force; the next round proposes
    /// clearing it (remaining TTL 0), as etcd does on renew.
    clears: BTreeSet<LeaseId>,
    /// Live keys found at open naming a lease that does not exist (0 in a healthy store).
    orphans: u64,
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(0) as u64)
}

impl Lessor {
    /// Rebuilds the lessor from the store: leases (ID, granted TTL, checkpointed remaining TTL)
    /// from [`LEASE_BUCKET`], and their keys from the live records' `lease` fields (one pass
    /// over the current records). It starts as a follower: call [`Lessor::promote`] when this
    /// member leads.
    pub fn open(store: &KvStore, cfg: LessorConfig) -> LeaseResult<Lessor> {
        let r = store.read()?;
        let mut leases = BTreeMap::new();
        let mut bad = None;
        r.aux_scan(LEASE_BUCKET, |k, v| match record::decode(k, v) {
            Ok((id, ttl, remaining_ttl)) => {
                leases.insert(
                    id,
                    Lease {
                        id,
                        ttl,
                        remaining_ttl,
                        keys: BTreeSet::new(),
                        deadline: None,
                    },
                );
                true
            }
            Err(e) => {
                bad = Some(e);
                false
            }
        })?;
        if let Some(e) = bad {
            return Err(e.into());
        }
        let mut orphans = 0;
        r.for_each_current(&[0], &[0], |rec| {
            let id = rec.lease.to_native();
            if id != 0 {
                match leases.get_mut(&id) {
                    Some(l) => {
                        l.keys.insert(rec.key.as_slice().to_vec());
                    }
                    None => orphans += 1,
                }
            }
            true
        })?;
        let ids = Rc::new(RefCell::new(leases.keys().copied().collect()));
        Ok(Lessor {
            cfg,
            leases,
            ids,
            leader: false,
            expiry: DeadlineQueue::default(),
            checkpoints: DeadlineQueue::default(),
            clears: BTreeSet::new(),
            orphans,
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &LessorConfig {
        &self.cfg
    }

    /// The put check to install in every write batch before applying requests:
    /// `w.set_lease_check(lessor.lease_check())`. It sees grants and revokes applied later in
    /// the same batch.
    pub fn lease_check(&self) -> impl Fn(LeaseId) -> bool + 'static {
        let ids = Rc::clone(&self.ids);
        move |id| ids.borrow().contains(&id)
    }

    // -----------------------------------------------------------------------------------------
    // Apply side: every member, in log order.

    /// Applies a LeaseGrant entry. `id` 0 lets the lessor choose: the first free ID at or after
    /// `id_seed` (masked to a positive i64), so every member picks the same one — pass
    /// something replicated, such as the entry's request ID. A TTL below the minimum is raised
    /// to it. Returns the ID and the granted TTL (etcd's LeaseGrantResponse). `now` is used only
    /// on the leader (the new lease's deadline).
    pub fn grant(
        &mut self,
        w: &mut KvWrite<'_>,
        id: LeaseId,
        ttl: i64,
        id_seed: u64,
        now: Duration,
    ) -> LeaseResult<(LeaseId, i64)> {
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        let id = if id == 0 {
            let mut c = (id_seed & i64::MAX as u64) as i64;
            while c == 0 || self.leases.contains_key(&c) {
                c = c.wrapping_add(1) & i64::MAX;
            }
            c
        } else {
            id
        };
        if self.leases.contains_key(&id) {
            return Err(LeaseError::AlreadyExists);
        }
        let ttl = ttl.max(self.cfg.min_ttl_secs).max(1);
        w.aux_put(LEASE_BUCKET, &record::key(id), &record::value(ttl, 0))?;
        let deadline = self.leader.then(|| now + secs(ttl));
        self.leases.insert(
            id,
            Lease {
                id,
                ttl,
                remaining_ttl: 0,
                keys: BTreeSet::new(),
                deadline,
            },
        );
        self.ids.borrow_mut().insert(id);
        if let Some(d) = deadline {
            self.expiry.set(id, d);
            self.schedule_checkpoint(id, now);
        }
        Ok((id, ttl))
    }

    /// Applies a LeaseRevoke entry (also how an expired lease goes: L1): deletes every
    /// attached key in one revision (in key order) and the lease, in the batch's transaction.
    /// Returns the deletion (its header revision is the store's after it; no keys, no new
    /// revision).
    ///
    /// Attachments must be current: pass each request's events to [`Lessor::observe`] before
    /// applying the next lease request of the batch.
    pub fn revoke(&mut self, w: &mut KvWrite<'_>, id: LeaseId) -> LeaseResult<DeleteRangeResponse> {
        let Some(lease) = self.leases.get(&id) else {
            return Err(LeaseError::NotFound);
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        let resp = w.delete_keys(&keys)?;
        w.aux_delete(LEASE_BUCKET, &record::key(id))?;
        self.leases.remove(&id);
        self.ids.borrow_mut().remove(&id);
        self.expiry.remove(id);
        self.checkpoints.remove(id);
        self.clears.remove(&id);
        Ok(resp)
    }

    /// Applies one checkpoint of a LeaseCheckpoint entry: the lease's remaining TTL (0 clears
    /// it) is stored with the batch (S4), so a new leader or a restarted member continues from
    /// it instead of the granted TTL. A lease revoked meanwhile is skipped.
    pub fn checkpoint(
        &mut self,
        w: &mut KvWrite<'_>,
        id: LeaseId,
        remaining_ttl: i64,
    ) -> LeaseResult<()> {
        let Some(lease) = self.leases.get_mut(&id) else {
            return Ok(());
        };
        let remaining_ttl = remaining_ttl.max(0);
        w.aux_put(
            LEASE_BUCKET,
            &record::key(id),
            &record::value(lease.ttl, remaining_ttl),
        )?;
        lease.remaining_ttl = remaining_ttl;
        Ok(())
    }

    /// Updates key attachments from applied changes (a put's `kv.lease` attaches, its
    /// `prev_kv.lease` detaches; a delete detaches). Call it with each request's events
    /// ([`KvWrite::take_events`]) before the next lease request in the batch and before the
    /// batch's commit; events of a revoke are harmless (the lease is gone already).
    pub fn observe(&mut self, events: &[Event]) {
        for ev in events {
            let prev = ev.prev_kv.as_ref().map_or(0, |p| p.lease);
            let next = match ev.kind {
                EventType::Put => ev.kv.lease,
                EventType::Delete => 0,
            };
            if prev == next {
                continue;
            }
            if prev != 0 {
                if let Some(l) = self.leases.get_mut(&prev) {
                    l.keys.remove(&ev.kv.key);
                }
            }
            if next != 0 {
                if let Some(l) = self.leases.get_mut(&next) {
                    l.keys.insert(ev.kv.key.clone());
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Leader side: the local clock; nothing here changes replicated state (L1).

    /// This member became leader: every lease's deadline is `now` plus its checkpointed
    /// remaining TTL, or its granted TTL when none is in force (etcd's refresh on promotion).
    pub fn promote(&mut self, now: Duration) {
        self.leader = true;
        self.expiry.clear();
        self.checkpoints.clear();
        self.clears.clear();
        let ids: Vec<LeaseId> = self.leases.keys().copied().collect();
        for id in ids {
            let l = self.leases.get_mut(&id).expect("listed");
            let left = if l.remaining_ttl > 0 {
                l.remaining_ttl
            } else {
                l.ttl
            };
            let d = now + secs(left);
            l.deadline = Some(d);
            self.expiry.set(id, d);
            self.schedule_checkpoint(id, now);
        }
    }

    /// This member stopped leading: it forgets every deadline and schedule (a follower never
    /// expires a lease, L1).
    pub fn demote(&mut self) {
        self.leader = false;
        self.expiry.clear();
        self.checkpoints.clear();
        self.clears.clear();
        for l in self.leases.values_mut() {
            l.deadline = None;
        }
    }

    /// Whether [`Lessor::promote`] was called more recently than [`Lessor::demote`].
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// A keepalive (LeaseKeepAlive), leader only: the deadline moves to `now` + granted TTL.
    /// Returns the granted TTL. A lease past its deadline is not renewed (its revoke is under
    /// way): [`LeaseError::Expired`].
    pub fn renew(&mut self, id: LeaseId, now: Duration) -> LeaseResult<i64> {
        if !self.leader {
            return Err(LeaseError::NotLeader);
        }
        let Some(l) = self.leases.get_mut(&id) else {
            return Err(LeaseError::NotFound);
        };
        let d = l
            .deadline
            .expect("the leader has a deadline for every lease");
        if d <= now {
            return Err(LeaseError::Expired);
        }
        let d = now + secs(l.ttl);
        l.deadline = Some(d);
        let ttl = l.ttl;
        if l.remaining_ttl > 0 && self.cfg.checkpointing {
            self.clears.insert(id);
        }
        self.expiry.set(id, d);
        self.schedule_checkpoint(id, now);
        Ok(ttl)
    }

    /// Leases past their deadline, earliest first, at most `max`: the server proposes a revoke
    /// entry for each (L1: nothing is removed here). A reported lease is not reported again
    /// until [`LessorConfig::revoke_retry`] has passed without its revoke being applied (the
    /// proposal was lost) or [`Lessor::retry_revoke`] is called. Empty on a follower.
    pub fn expired(&mut self, now: Duration, max: usize) -> Vec<LeaseId> {
        let mut out = Vec::new();
        if !self.leader {
            return out;
        }
        while out.len() < max {
            let Some((_, id)) = self.expiry.pop_due(now) else {
                break;
            };
            debug_assert!(self.leases.contains_key(&id));
            out.push(id);
            self.expiry.set(id, now + self.cfg.revoke_retry);
        }
        out
    }

    /// The server gave up on the revoke proposal of `id` (dropped, or refused): report it again
    /// at the next [`Lessor::expired`] call if it is still past its deadline.
    pub fn retry_revoke(&mut self, id: LeaseId, now: Duration) {
        if let Some(d) = self.leases.get(&id).and_then(|l| l.deadline) {
            if d <= now {
                self.expiry.set(id, now);
            }
        }
    }

    /// Checkpoints to propose, at most `max`: (lease, remaining TTL in whole seconds, rounded
    /// up) for leases whose checkpoint interval has passed, and (lease, 0) for leases renewed
    /// while a checkpoint was in force. Empty on a follower or with checkpointing off.
    pub fn checkpoints_due(&mut self, now: Duration, max: usize) -> Vec<(LeaseId, i64)> {
        let mut out = Vec::new();
        if !self.leader || !self.cfg.checkpointing {
            return out;
        }
        while out.len() < max {
            let Some(id) = self.clears.pop_first() else {
                break;
            };
            if self.leases.contains_key(&id) {
                out.push((id, 0));
            }
        }
        while out.len() < max {
            let Some((_, id)) = self.checkpoints.pop_due(now) else {
                break;
            };
            let d = self.leases[&id].deadline.expect("leader");
            if d <= now {
                continue; // expiring: its revoke comes instead
            }
            let left = (d - now).as_nanos().div_ceil(1_000_000_000) as i64;
            out.push((id, left));
            self.schedule_checkpoint(id, now);
        }
        out
    }

    /// The earliest time at which [`Lessor::expired`] or [`Lessor::checkpoints_due`] may have
    /// something (for the server's timer); `Duration::ZERO` when a checkpoint is due at once.
    /// May be early, never late. None on a follower.
    pub fn next_wakeup(&mut self) -> Option<Duration> {
        if !self.leader {
            return None;
        }
        if !self.clears.is_empty() {
            return Some(Duration::ZERO);
        }
        let a = self.expiry.peek().map(|(t, _)| t);
        let b = self.checkpoints.peek().map(|(t, _)| t);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn schedule_checkpoint(&mut self, id: LeaseId, now: Duration) {
        let d = self.leases[&id].deadline;
        match d {
            Some(d) if self.cfg.checkpointing && d > now + self.cfg.checkpoint_interval => {
                self.checkpoints.set(id, now + self.cfg.checkpoint_interval)
            }
            _ => self.checkpoints.remove(id),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Queries.

    /// LeaseTimeToLive. On the leader the remaining TTL comes from its deadline; on a follower
    /// it is the last checkpoint or the granted TTL (etcd forwards this request to the leader;
    /// the server should too).
    pub fn time_to_live(&self, id: LeaseId, keys: bool, now: Duration) -> TimeToLive {
        let Some(l) = self.leases.get(&id) else {
            return TimeToLive {
                id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            };
        };
        let ttl = match l.deadline {
            Some(d) => d.saturating_sub(now).as_secs() as i64,
            None if l.remaining_ttl > 0 => l.remaining_ttl,
            None => l.ttl,
        };
        TimeToLive {
            id,
            ttl,
            granted_ttl: l.ttl,
            keys: if keys {
                l.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Every lease ID, ascending (LeaseLeases).
    pub fn leases(&self) -> Vec<LeaseId> {
        self.leases.keys().copied().collect()
    }

    /// One lease.
    pub fn lookup(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease exists.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Live keys found at open that name a lease that does not exist (0 in a healthy store;
    /// such keys are left alone, as etcd does).
    pub fn orphan_keys(&self) -> u64 {
        self.orphans
    }
}
