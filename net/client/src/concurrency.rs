//! Concurrency recipes built on leases, transactions and watches (the algorithms of etcd's
//! `concurrency` package, rewritten):
//!
//! - [`Session`]: a lease kept alive in the background; everything a recipe writes is attached
//!   to it, so a crashed holder's keys vanish when its lease expires.
//! - [`Mutex`]: a fair distributed lock. Each contender creates `prefix/<lease>`; contenders are
//!   ordered by the create revision of their key; each waits (on a watch, never by polling) for
//!   the deletion of the key just before its own. The holder's create revision is a fencing
//!   token. After the wait, the contender checks its own key still exists — if its session's
//!   lease expired meanwhile, the key is gone and the lock is **not** acquired (etcd#11456).
//! - [`Election`]: the same queue; the first key is the leader and its value the proclamation.
//!
//! ```no_run
//! # async fn demo(client: keel_client::Client) -> keel_client::Result<()> {
//! use keel_client::{Mutex, Session};
//! let session = Session::new(&client, 10).await?;
//! let mutex = Mutex::new(&session, "/locks/job");
//! let guard = mutex.lock().await?;
//! // Make writes conditional on still holding the lock (fencing):
//! client.txn().when([guard.still_held()]).and_then([keel_client::Op::put("/job/out", "x")]).await?;
//! guard.unlock().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use keel_proto as p;
use tokio::sync::{mpsc, watch};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::{Compare, Op, SortOrder, SortTarget};
use crate::lease::{KeepAlive, LeaseState};

struct SessionInner {
    client: Client,
    lease: i64,
    ttl: i64,
    state: watch::Receiver<LeaseState>,
    _keep_alive: KeepAlive,
}

/// A lease kept alive in the background for as long as the session (any clone) lives.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("lease", &format_args!("{:016x}", self.inner.lease))
            .finish()
    }
}

impl Session {
    /// Grants a lease of `ttl` seconds and keeps it alive.
    pub async fn new(client: &Client, ttl: i64) -> Result<Session> {
        let g = client.lease_grant(ttl).await?;
        Ok(Session::from_lease(client, g.id, ttl))
    }

    /// A session on an existing lease.
    pub fn from_lease(client: &Client, lease: i64, ttl: i64) -> Session {
        let ka = client.keep_alive(lease);
        Session {
            inner: Arc::new(SessionInner {
                client: client.clone(),
                lease,
                ttl,
                state: ka.subscribe(),
                _keep_alive: ka,
            }),
        }
    }

    /// The lease id.
    pub fn lease(&self) -> i64 {
        self.inner.lease
    }
    /// The TTL asked for.
    pub fn ttl(&self) -> i64 {
        self.inner.ttl
    }
    /// The client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }
    /// False once the keepalive found the lease gone.
    pub fn is_alive(&self) -> bool {
        !matches!(*self.inner.state.borrow(), LeaseState::Lost(_))
    }
    /// Waits until the lease is lost.
    pub async fn done(&self) {
        let mut rx = self.inner.state.clone();
        loop {
            if matches!(*rx.borrow_and_update(), LeaseState::Lost(_)) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
    /// Revokes the lease (every key written under the session is deleted).
    pub async fn close(self) -> Result<()> {
        self.inner.client.lease_revoke(self.inner.lease).await?;
        Ok(())
    }
}

/// Waits for the deletion of `key` after revision `rev`.
async fn wait_delete(client: &Client, key: &[u8], rev: i64) -> Result<()> {
    let mut w = client.watch(key.to_vec()).rev(rev + 1).await?;
    while let Some(batch) = w.next().await {
        match batch {
            Ok(b) => {
                if b.events
                    .iter()
                    .any(|e| e.event_type == p::EventType::Delete)
                {
                    return Ok(());
                }
            }
            // History gone: the caller re-reads the queue anyway.
            Err(Error::Compacted { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(Error::Closed)
}

/// Waits until no key under `prefix` has a create revision ≤ `max_rev`: each round waits for the
/// deletion of the newest such key (the one just before ours), then reads the queue again.
async fn wait_deletes(client: &Client, prefix: &[u8], max_rev: i64) -> Result<()> {
    loop {
        let r = client
            .get(prefix.to_vec())
            .prefix()
            .max_create_revision(max_rev)
            .sort(SortTarget::Create, SortOrder::Descend)
            .limit(1)
            .await?;
        let Some(kv) = r.kvs.first() else {
            return Ok(());
        };
        wait_delete(client, &kv.key, r.header.revision).await?;
    }
}

/// Joins the queue under `prefix` with `key` = `value`: returns (create revision, current
/// value, header revision).
async fn enqueue(session: &Session, prefix: &[u8], key: &[u8], value: &[u8]) -> Result<i64> {
    let c = session.client();
    let t = c
        .txn()
        .when([Compare::create_revision(key.to_vec()).eq(0)])
        .and_then([Op::put(key.to_vec(), value.to_vec()).lease(session.lease())])
        .or_else([Op::get(key.to_vec())])
        .await?;
    if t.succeeded {
        Ok(t.header.revision)
    } else {
        match t.responses.first() {
            Some(p::ResponseOp::Range(r)) if !r.kvs.is_empty() => {
                let _ = prefix;
                Ok(r.kvs[0].create_revision)
            }
            _ => Err(Error::Protocol("lock: txn answer without the key".into())),
        }
    }
}

/// Checks that `key` still exists with create revision `rev` (our session did not expire while
/// we waited — etcd#11456) and that the session's lease is alive.
async fn still_ours(session: &Session, key: &[u8], rev: i64) -> Result<()> {
    let r = session.client().get(key.to_vec()).await?;
    match r.kvs.first() {
        Some(kv) if kv.create_revision == rev && kv.lease == session.lease() => Ok(()),
        _ => Err(Error::SessionExpired),
    }
}

fn queue_key(prefix: &str, lease: i64) -> (Vec<u8>, Vec<u8>) {
    let pfx = format!("{}/", prefix.trim_end_matches('/'));
    let key = format!("{pfx}{lease:x}");
    (pfx.into_bytes(), key.into_bytes())
}

/// A fair distributed lock (see the module docs).
#[derive(Debug, Clone)]
pub struct Mutex {
    session: Session,
    prefix: String,
}

/// A held lock. Unlock with [`LockGuard::unlock`]; dropping it unlocks in the background.
#[derive(Debug)]
pub struct LockGuard {
    session: Session,
    key: Vec<u8>,
    revision: i64,
    unlocked: bool,
}

impl Mutex {
    /// A lock named `prefix` for contenders of `session`.
    pub fn new(session: &Session, prefix: impl Into<String>) -> Mutex {
        Mutex {
            session: session.clone(),
            prefix: prefix.into(),
        }
    }

    /// Waits for the lock (in arrival order). Fails with [`Error::SessionExpired`] if the
    /// session's lease expired while waiting.
    pub async fn lock(&self) -> Result<LockGuard> {
        let (pfx, key) = queue_key(&self.prefix, self.session.lease());
        // If this future is dropped while waiting, the queue is left in the background.
        let (rev, mut leave) = enqueue_armed(&self.session, &pfx, &key, b"").await?;
        let c = self.session.client();
        let waited = async {
            wait_deletes(c, &pfx, rev - 1).await?;
            still_ours(&self.session, &key, rev).await
        }
        .await;
        leave.armed = false;
        match waited {
            Ok(()) => Ok(LockGuard {
                session: self.session.clone(),
                key,
                revision: rev,
                unlocked: false,
            }),
            Err(e) => {
                // Leave the queue so nobody waits for us.
                let _ = c
                    .txn()
                    .when([Compare::create_revision(key.clone()).eq(rev)])
                    .and_then([Op::delete(key)])
                    .await;
                Err(e)
            }
        }
    }
}

/// Deletes a queued lock key (if it is still ours) when dropped armed: a `lock()` future
/// cancelled while waiting must not leave a key that every later contender waits behind.
struct LeaveQueue {
    client: Client,
    key: Vec<u8>,
    rev: i64,
    armed: bool,
}

impl Drop for LeaveQueue {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            let c = self.client.clone();
            let key = std::mem::take(&mut self.key);
            h.spawn(leave_queue(c, key, self.rev));
        }
    }
}

/// Deletes a queued key if it is still the one created at `rev`.
async fn leave_queue(c: Client, key: Vec<u8>, rev: i64) {
    let _ = c
        .txn()
        .when([Compare::create_revision(key.clone()).eq(rev)])
        .and_then([Op::delete(key)])
        .await;
}

/// Enqueues `key` (see [`enqueue`]) and returns its create revision with an armed
/// [`LeaveQueue`]. The put runs in a task of its own: if the caller is dropped while the put is
/// in flight (the key may already exist on the server), the key is deleted once the put
/// completes, so a lock or campaign cancelled at any point leaves no key behind.
async fn enqueue_armed(
    session: &Session,
    pfx: &[u8],
    key: &[u8],
    value: &[u8],
) -> Result<(i64, LeaveQueue)> {
    let task = {
        let (s, p, k, v) = (session.clone(), pfx.to_vec(), key.to_vec(), value.to_vec());
        tokio::spawn(async move { enqueue(&s, &p, &k, &v).await })
    };
    let mut pending = PendingEnqueue {
        client: session.client().clone(),
        key: key.to_vec(),
        task: Some(task),
    };
    let joined = pending.task.as_mut().expect("set above").await;
    // Completed: from here on the LeaveQueue (built in this same poll) owns the cleanup.
    pending.task = None;
    let rev = joined.map_err(|e| Error::Protocol(format!("enqueue task: {e}")))??;
    Ok((
        rev,
        LeaveQueue {
            client: session.client().clone(),
            key: key.to_vec(),
            rev,
            armed: true,
        },
    ))
}

/// An enqueue put in flight; dropped before it completes, it deletes what the put created.
struct PendingEnqueue {
    client: Client,
    key: Vec<u8>,
    task: Option<tokio::task::JoinHandle<Result<i64>>>,
}

impl Drop for PendingEnqueue {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            let c = self.client.clone();
            let key = std::mem::take(&mut self.key);
            h.spawn(async move {
                if let Ok(Ok(rev)) = task.await {
                    leave_queue(c, key, rev).await;
                }
            });
        }
    }
}

impl LockGuard {
    /// The lock key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    /// The fencing token: the create revision of the lock key. Later holders have larger ones.
    pub fn fencing_token(&self) -> i64 {
        self.revision
    }
    /// A comparison that holds while this guard still owns the lock (for guarded writes).
    pub fn still_held(&self) -> Compare {
        Compare::create_revision(self.key.clone()).eq(self.revision)
    }
    /// Releases the lock.
    pub async fn unlock(mut self) -> Result<()> {
        self.unlocked = true;
        self.session
            .client()
            .delete(self.key.clone())
            .await
            .map(|_| ())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.unlocked {
            return;
        }
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            let c = self.session.client().clone();
            let key = self.key.clone();
            let rev = self.revision;
            h.spawn(async move {
                let _ = c
                    .txn()
                    .when([Compare::create_revision(key.clone()).eq(rev)])
                    .and_then([Op::delete(key)])
                    .await;
            });
        }
    }
}

/// Leader election under a prefix (see the module docs).
#[derive(Debug, Clone)]
pub struct Election {
    session: Session,
    prefix: String,
}

/// This contender's leadership, returned by [`Election::campaign`].
#[derive(Debug)]
pub struct Leadership {
    session: Session,
    key: Vec<u8>,
    revision: i64,
}

impl Election {
    /// An election named `prefix` for contenders of `session`.
    pub fn new(session: &Session, prefix: impl Into<String>) -> Election {
        Election {
            session: session.clone(),
            prefix: prefix.into(),
        }
    }

    /// Waits until this contender is the leader, proclaiming `value`.
    pub async fn campaign(&self, value: impl Into<Vec<u8>>) -> Result<Leadership> {
        let value = value.into();
        let (pfx, key) = queue_key(&self.prefix, self.session.lease());
        // If this future is dropped while campaigning, the queue is left in the background.
        let (rev, mut leave) = enqueue_armed(&self.session, &pfx, &key, &value).await?;
        let c = self.session.client();
        let lead = Leadership {
            session: self.session.clone(),
            key: key.clone(),
            revision: rev,
        };
        let waited = async {
            // Re-campaigning with the same session: make sure the value is ours.
            lead.proclaim(value).await?;
            wait_deletes(c, &pfx, rev - 1).await?;
            still_ours(&self.session, &key, rev).await
        }
        .await;
        leave.armed = false;
        match waited {
            Ok(()) => Ok(lead),
            Err(e) => {
                let _ = lead.resign().await;
                Err(e)
            }
        }
    }

    /// The current leader's key-value (value = its proclamation).
    pub async fn leader(&self) -> Result<p::KeyValue> {
        let (pfx, _) = queue_key(&self.prefix, 0);
        let r = self
            .session
            .client()
            .get(pfx)
            .prefix()
            .sort(SortTarget::Create, SortOrder::Ascend)
            .limit(1)
            .await?;
        r.kvs.into_iter().next().ok_or(Error::NoLeader)
    }

    /// Every change of leader or of its proclamation, starting with the current one.
    pub fn observe(&self) -> mpsc::UnboundedReceiver<Result<p::KeyValue>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = self.session.client().clone();
        let (pfx, _) = queue_key(&self.prefix, 0);
        tokio::spawn(async move {
            let res: Result<()> = async {
                let mut last: Option<(Vec<u8>, i64)> = None;
                loop {
                    let r = client
                        .get(pfx.clone())
                        .prefix()
                        .sort(SortTarget::Create, SortOrder::Ascend)
                        .limit(1)
                        .await?;
                    let rev = r.header.revision;
                    match r.kvs.into_iter().next() {
                        None => {
                            // Wait for anyone to campaign.
                            let mut w = client.watch(pfx.clone()).prefix().rev(rev + 1).await?;
                            loop {
                                let b = w.next().await.ok_or(Error::Closed)??;
                                if b.events.iter().any(|e| e.event_type == p::EventType::Put) {
                                    break;
                                }
                            }
                        }
                        Some(kv) => {
                            let id = (kv.key.clone(), kv.mod_revision);
                            if last.as_ref() != Some(&id) {
                                last = Some(id);
                                if tx.send(Ok(kv.clone())).is_err() {
                                    return Ok(());
                                }
                            }
                            let mut w = client.watch(kv.key.clone()).rev(rev + 1).await?;
                            loop {
                                tokio::select! {
                                    b = w.next() => {
                                        let b = b.ok_or(Error::Closed)??;
                                        let mut gone = false;
                                        for e in b.events {
                                            if e.event_type == p::EventType::Delete {
                                                gone = true;
                                            } else {
                                                last = Some((e.kv.key.clone(), e.kv.mod_revision));
                                                if tx.send(Ok(e.kv)).is_err() {
                                                    return Ok(());
                                                }
                                            }
                                        }
                                        if gone {
                                            break;
                                        }
                                    }
                                    _ = tx.closed() => return Ok(()),
                                }
                            }
                        }
                    }
                }
            }
            .await;
            if let Err(e) = res {
                let _ = tx.send(Err(e));
            }
        });
        rx
    }
}

impl Leadership {
    /// The leader key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    /// The create revision of the leader key (a fencing token, like a lock's).
    pub fn revision(&self) -> i64 {
        self.revision
    }
    /// Publishes a new value while still the leader ([`Error::NotLeader`] otherwise).
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let t = self
            .session
            .client()
            .txn()
            .when([Compare::create_revision(self.key.clone()).eq(self.revision)])
            .and_then([Op::put(self.key.clone(), value.into()).lease(self.session.lease())])
            .await?;
        if t.succeeded {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }
    /// Gives up leadership (deletes the leader key if still ours).
    pub async fn resign(self) -> Result<()> {
        self.session
            .client()
            .txn()
            .when([Compare::create_revision(self.key.clone()).eq(self.revision)])
            .and_then([Op::delete(self.key.clone())])
            .await
            .map(|_| ())
    }
}
