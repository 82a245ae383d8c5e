//! Watch streams that survive member failures: a background task owns the server stream, and when
//! the connection breaks it re-creates the watch on another member from the revision after the
//! last one it delivered — no gap, no duplicate (W3, W5). When that revision was compacted away
//! the watcher reports [`Error::Compacted`] and ends.
//!
//! ```no_run
//! # async fn demo(client: keel_client::Client) -> keel_client::Result<()> {
//! let mut w = client.watch("/config/").prefix().prev_kv().await?;
//! while let Some(batch) = w.next().await {
//!     for ev in batch?.events {
//!         println!("{:?} {:?}", ev.event_type, ev.kv.key);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use keel_proto as p;
use tokio::sync::{mpsc, oneshot};

use crate::client::Client;
use crate::error::{transient, Error, Result};
use crate::kv::prefix_end;

/// A watch being set up (made by [`Client::watch`]); `.await` it to get the [`Watcher`].
#[derive(Debug, Clone)]
#[must_use = "a watch does nothing until awaited"]
pub struct WatchBuilder {
    client: Client,
    req: p::WatchCreateRequest,
}

impl WatchBuilder {
    /// Watches every key with this prefix.
    pub fn prefix(mut self) -> Self {
        self.req.range_end = prefix_end(&self.req.key);
        self
    }
    /// Watches every key ≥ this key.
    pub fn from_key(mut self) -> Self {
        self.req.range_end = vec![0];
        self
    }
    /// Watches `[key, end)`.
    pub fn range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.req.range_end = end.into();
        self
    }
    /// Starts at revision `rev` (0: after the current revision).
    pub fn rev(mut self, rev: i64) -> Self {
        self.req.start_revision = rev;
        self
    }
    /// Events carry the previous key-value.
    pub fn prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }
    /// Asks for periodic progress notifications.
    pub fn progress_notify(mut self) -> Self {
        self.req.progress_notify = true;
        self
    }
    /// Leaves out put events.
    pub fn no_put(mut self) -> Self {
        self.req.filters.push(p::FilterType::NoPut);
        self
    }
    /// Leaves out delete events.
    pub fn no_delete(mut self) -> Self {
        self.req.filters.push(p::FilterType::NoDelete);
        self
    }
}

/// A live watch. Dropping it cancels the watch on the server.
#[derive(Debug)]
pub struct Watcher {
    rx: mpsc::UnboundedReceiver<Result<p::WatchResponse>>,
    start_revision: i64,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// The next batch of events (every event of one revision comes in one batch), a progress
    /// notification (no events), or the error that ended the watch. `None` once it ended.
    pub async fn next(&mut self) -> Option<Result<p::WatchResponse>> {
        self.rx.recv().await
    }

    /// The first revision this watch covers (known once it was created).
    pub fn start_revision(&self) -> i64 {
        self.start_revision
    }

    /// Cancels the watch.
    pub fn cancel(self) {
        drop(self)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // The task notices the closed channel and cancels on the server; abort as a backstop
        // only if it is not running (nothing to do then).
        if self.task.is_finished() {
            return;
        }
        self.rx.close();
    }
}

impl IntoFuture for WatchBuilder {
    type Output = Result<Watcher>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Watcher>> + Send>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            let (created_tx, created_rx) = oneshot::channel();
            let timeout = self.client.options().request_timeout;
            let task = tokio::spawn(run(self.client, self.req, tx, created_tx));
            match tokio::time::timeout(timeout, created_rx).await {
                Ok(Ok(Ok(start_revision))) => Ok(Watcher {
                    rx,
                    start_revision,
                    task,
                }),
                Ok(Ok(Err(e))) => Err(e),
                Ok(Err(_)) => Err(Error::Closed),
                Err(_) => {
                    task.abort();
                    Err(Error::Timeout)
                }
            }
        })
    }
}

impl Client {
    /// A watch on `key` (chain options, then `.await`).
    pub fn watch(&self, key: impl Into<Vec<u8>>) -> WatchBuilder {
        WatchBuilder {
            client: self.clone(),
            req: p::WatchCreateRequest {
                key: key.into(),
                ..Default::default()
            },
        }
    }
}

/// The watch task: (re)creates the server watch from `next_rev` until the receiver goes away or
/// the watch ends for good.
async fn run(
    client: Client,
    mut req: p::WatchCreateRequest,
    tx: mpsc::UnboundedSender<Result<p::WatchResponse>>,
    created: oneshot::Sender<Result<i64>>,
) {
    let mut created = Some(created);
    // The next revision to deliver; 0 until the first creation tells the current revision.
    let mut next_rev = req.start_revision;
    let mut attempt = 0usize;
    loop {
        if tx.is_closed() {
            return;
        }
        if attempt > 0 {
            let pause = Duration::from_millis((20 * attempt as u64).min(500));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = tx.closed() => return,
            }
        }
        let conn = match client.stream_conn(attempt).await {
            Ok(c) => c,
            Err(_) => {
                attempt += 1;
                continue;
            }
        };
        req.start_revision = next_rev;
        let (id, mut frames) = match conn.stream(
            &p::Request::Watch(p::WatchRequest::Create(req.clone())),
            false,
        ) {
            Ok(s) => s,
            Err(_) => {
                attempt += 1;
                continue;
            }
        };
        let mut watch_id = None;
        // Liveness: after `keepalive_time` of silence, a progress request must be answered
        // within `keepalive_timeout`, or the watch moves elsewhere (a peer that vanished without
        // a reset would otherwise hold the watch forever).
        let (ka_time, ka_timeout) = (
            client.options().keepalive_time,
            client.options().keepalive_timeout,
        );
        let mut quiet = Box::pin(tokio::time::sleep(ka_time));
        let mut probe: Option<tokio::task::JoinHandle<bool>> = None;
        loop {
            let item = tokio::select! {
                item = frames.recv() => {
                    quiet.as_mut().reset(tokio::time::Instant::now() + ka_time);
                    item
                }
                _ = quiet.as_mut(), if probe.is_none() => {
                    let c = conn.clone();
                    probe = Some(tokio::spawn(async move {
                        let req = p::Request::Watch(p::WatchRequest::Progress(
                            p::WatchProgressRequest {},
                        ));
                        matches!(
                            tokio::time::timeout(ka_timeout, c.unary(&req)).await,
                            Ok(Ok(_))
                        )
                    }));
                    continue;
                }
                alive = async { probe.as_mut().expect("probe").await }, if probe.is_some() => {
                    probe = None;
                    if alive.unwrap_or(false) {
                        quiet.as_mut().reset(tokio::time::Instant::now() + ka_time);
                        continue;
                    }
                    // Dead connection: drop it for everyone, resume on another member.
                    conn.abort("no answer to a liveness probe");
                    attempt += 1;
                    break;
                }
                _ = tx.closed() => {
                    if let Some(wid) = watch_id {
                        conn.fire(&p::Request::Watch(p::WatchRequest::Cancel(
                            p::WatchCancelRequest { watch_id: wid },
                        )));
                    }
                    conn.forget(id);
                    return;
                }
            };
            match item {
                Some(Ok((p::Response::Watch(w), _more))) => {
                    if w.created {
                        watch_id = Some(w.watch_id);
                        if next_rev == 0 {
                            next_rev = w.header.revision + 1;
                        }
                        if let Some(c) = created.take() {
                            let _ = c.send(Ok(next_rev));
                        }
                        attempt = 0;
                    }
                    if w.canceled {
                        let err = if w.compact_revision > 0 {
                            Error::Compacted {
                                compact_revision: w.compact_revision,
                            }
                        } else if !w.cancel_reason.is_empty() {
                            Error::Protocol(format!("watch canceled: {}", w.cancel_reason))
                        } else {
                            Error::Closed
                        };
                        if let Some(c) = created.take() {
                            let _ = c.send(Err(err));
                        } else {
                            let _ = tx.send(Err(err));
                        }
                        return;
                    }
                    if w.created && w.events.is_empty() {
                        continue;
                    }
                    let mut w = w;
                    // Never deliver a revision twice, even if a server resent it.
                    w.events.retain(|e| e.kv.mod_revision >= next_rev);
                    if let Some(last) = w.events.last() {
                        if !w.fragment {
                            next_rev = last.kv.mod_revision + 1;
                        }
                    } else if w.header.revision + 1 > next_rev && !w.fragment {
                        // A progress notification: nothing is pending up to its revision.
                        next_rev = w.header.revision + 1;
                    }
                    if tx.send(Ok(w)).is_err() {
                        return;
                    }
                }
                Some(Ok((p::Response::Error(e), _))) => {
                    if transient(e.error_code()) {
                        attempt += 1;
                        break;
                    }
                    let err = Error::Server(e);
                    if let Some(c) = created.take() {
                        let _ = c.send(Err(err));
                    } else {
                        let _ = tx.send(Err(err));
                    }
                    return;
                }
                Some(Ok((_, _))) => {
                    let err = Error::Protocol("unexpected response on a watch stream".into());
                    let _ = tx.send(Err(err));
                    return;
                }
                Some(Err(_)) | None => {
                    // Connection lost: resume elsewhere from next_rev.
                    attempt += 1;
                    break;
                }
            }
        }
    }
}
