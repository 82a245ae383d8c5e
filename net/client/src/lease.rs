//! Leases: grant, revoke, TimeToLive, list, one keepalive, and [`KeepAlive`], a background task
//! that renews a lease every third of its TTL (across failovers: a keepalive is idempotent) and
//! tells when the lease is lost.
//!
//! ```no_run
//! # async fn demo(client: keel_client::Client) -> keel_client::Result<()> {
//! let lease = client.lease_grant(10).await?;
//! client.put("/svc/me", "10.0.0.7:80").lease(lease.id).await?;
//! let mut ka = client.keep_alive(lease.id);
//! // ... serve; if the lease is lost, stop serving:
//! ka.lost().await;
//! # Ok(()) }
//! ```

use std::time::Duration;

use keel_proto as p;
use tokio::sync::watch;

use crate::client::{expect_response, Client, Kind};
use crate::error::{Error, Result};

impl Client {
    /// Grants a lease of `ttl` seconds (the server picks the id).
    pub async fn lease_grant(&self, ttl: i64) -> Result<p::LeaseGrantResponse> {
        self.lease_grant_with_id(ttl, 0).await
    }

    /// Grants a lease of `ttl` seconds with the given id (0: the server picks).
    pub async fn lease_grant_with_id(&self, ttl: i64, id: i64) -> Result<p::LeaseGrantResponse> {
        let r = self
            .call(
                p::Request::LeaseGrant(p::LeaseGrantRequest { ttl, id }),
                Kind::Write,
            )
            .await?;
        expect_response!(r, LeaseGrant)
    }

    /// Revokes lease `id`, deleting its keys.
    pub async fn lease_revoke(&self, id: i64) -> Result<p::LeaseRevokeResponse> {
        let r = self
            .call(
                p::Request::LeaseRevoke(p::LeaseRevokeRequest { id }),
                Kind::Write,
            )
            .await?;
        expect_response!(r, LeaseRevoke)
    }

    /// The remaining and granted TTL of lease `id` (`ttl == -1` when it no longer exists), and
    /// its keys when `keys`.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<p::LeaseTimeToLiveResponse> {
        let r = self
            .call(
                p::Request::LeaseTimeToLive(p::LeaseTimeToLiveRequest { id, keys }),
                Kind::Idempotent,
            )
            .await?;
        expect_response!(r, LeaseTimeToLive)
    }

    /// Every live lease.
    pub async fn lease_leases(&self) -> Result<p::LeaseLeasesResponse> {
        let r = self
            .call(
                p::Request::LeaseLeases(p::LeaseLeasesRequest {}),
                Kind::Idempotent,
            )
            .await?;
        expect_response!(r, LeaseLeases)
    }

    /// Renews lease `id` once; the answer's `ttl` is ≤ 0 when the lease no longer exists.
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<p::LeaseKeepAliveResponse> {
        let r = self
            .call(
                p::Request::LeaseKeepAlive(p::LeaseKeepAliveRequest { id }),
                Kind::Idempotent,
            )
            .await?;
        expect_response!(r, LeaseKeepAlive)
    }

    /// Keeps lease `id` alive in a background task until the returned handle is dropped or the
    /// lease is lost.
    pub fn keep_alive(&self, id: i64) -> KeepAlive {
        let (tx, rx) = watch::channel(LeaseState::Alive(0));
        let client = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let period = match client.lease_keep_alive_once(id).await {
                    Ok(r) if r.ttl > 0 => {
                        if tx.send(LeaseState::Alive(r.ttl)).is_err() {
                            return;
                        }
                        Duration::from_millis((r.ttl as u64 * 1000 / 3).max(100))
                    }
                    Ok(_) => {
                        let _ = tx.send(LeaseState::Lost(Error::Server(p::ErrorResponse::new(
                            p::ErrorCode::LeaseNotFound,
                        ))));
                        return;
                    }
                    Err(Error::Server(e))
                        if e.error_code() == Some(p::ErrorCode::LeaseNotFound) =>
                    {
                        let _ = tx.send(LeaseState::Lost(Error::Server(e)));
                        return;
                    }
                    Err(_) => {
                        // Unreachable for now: try again sooner (the lease may still be alive).
                        Duration::from_millis(200)
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        KeepAlive { id, rx, task }
    }
}

/// The state a [`KeepAlive`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed; the TTL the server last granted (0 before the first renewal).
    Alive(i64),
    /// The lease is gone (expired or revoked).
    Lost(Error),
}

/// A running keepalive (see [`Client::keep_alive`]). Dropping it stops renewing.
#[derive(Debug)]
pub struct KeepAlive {
    id: i64,
    rx: watch::Receiver<LeaseState>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// The lease id.
    pub fn id(&self) -> i64 {
        self.id
    }
    /// The latest state.
    pub fn state(&self) -> LeaseState {
        self.rx.borrow().clone()
    }
    /// Waits for the next renewal or loss and returns the state then.
    pub async fn changed(&mut self) -> LeaseState {
        let _ = self.rx.changed().await;
        self.rx.borrow_and_update().clone()
    }
    /// Waits until the lease is lost.
    pub async fn lost(&mut self) -> Error {
        loop {
            if let LeaseState::Lost(e) = self.rx.borrow_and_update().clone() {
                return e;
            }
            if self.rx.changed().await.is_err() {
                return Error::Closed;
            }
        }
    }
    /// A receiver of state changes (for `select!` loops).
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.rx.clone()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}
