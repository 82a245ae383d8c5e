//! [`Client`]: the endpoint set, one lazily dialled pipelined connection per endpoint, leader
//! discovery, and the retry policy that every call goes through.
//!
//! Retry policy (the one rule that matters: a write is never applied twice by the client's doing):
//! - a request that never left (dial failed, connection already closed) is sent elsewhere;
//! - a server refusal made before proposing (NoLeader, NotLeader, TooManyRequests) is retried;
//! - an idempotent request (reads, status, TimeToLive, keepalive, …) is retried after a lost
//!   connection or a transient server error, on the next endpoint, until the deadline;
//! - a non-idempotent request (put, delete, write txn, compact, lease grant/revoke, …) whose
//!   connection broke after it was handed over, or whose deadline passed, fails with
//!   [`Error::Unknown`]: the caller decides.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_proto as p;
use tokio::time::Instant;

use crate::conn::{Conn, ConnError};
use crate::error::{proposed_maybe, refused_before_proposal, transient, Error, Result};

/// Options for [`Client::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long one dial may take (etcdctl's `--dial-timeout`, default 2 s).
    pub dial_timeout: Duration,
    /// Deadline of one call, retries included (etcdctl's `--command-timeout`, default 5 s).
    pub request_timeout: Duration,
    /// How long a watch stream may stay silent before the client checks the connection with a
    /// progress request (etcdctl's `--keepalive-time`); a check unanswered within
    /// `keepalive_timeout` moves the watch to another member.
    pub keepalive_time: Duration,
    /// See [`ConnectOptions::keepalive_time`] (etcdctl's `--keepalive-timeout`).
    pub keepalive_timeout: Duration,
    /// Send linearizable reads and writes to the leader (found through Status) rather than to
    /// the first endpoint (a follower forwards writes, so this is an optimisation).
    pub prefer_leader: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            keepalive_time: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(6),
            prefer_leader: true,
        }
    }
}

impl ConnectOptions {
    /// Sets [`ConnectOptions::dial_timeout`].
    pub fn with_dial_timeout(mut self, t: Duration) -> Self {
        self.dial_timeout = t;
        self
    }
    /// Sets [`ConnectOptions::keepalive_time`] and [`ConnectOptions::keepalive_timeout`].
    pub fn with_keepalive(mut self, time: Duration, timeout: Duration) -> Self {
        self.keepalive_time = time;
        self.keepalive_timeout = timeout;
        self
    }
    /// Sets [`ConnectOptions::request_timeout`].
    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }
}

/// How a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Changes nothing or changes it the same way twice: retried freely. Goes to the leader.
    Idempotent,
    /// A serializable read: any member may answer; spread round-robin.
    Serializable,
    /// Non-idempotent: never re-sent once it may have reached a server.
    Write,
}

struct Inner {
    endpoints: Vec<String>,
    conns: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    /// Index of the endpoint believed to be the leader.
    leader: AtomicUsize,
    rr: AtomicUsize,
    opts: ConnectOptions,
    sent: Arc<AtomicU64>,
}

/// A keel client: cheap to clone (all clones share connections), safe to use from many tasks at
/// once; requests from all tasks are pipelined on one connection per member.
///
/// # Example
///
/// ```no_run
/// # async fn demo() -> keel_client::Result<()> {
/// use keel_client::{Client, ConnectOptions};
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::default()).await?;
/// client.put("greeting", "hello").await?;
/// let got = client.get("greeting").await?;
/// assert_eq!(got.kvs[0].value, b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .finish()
    }
}

impl Client {
    /// Connects to a cluster through `endpoints` (`host:port` or `http://host:port`): dials them,
    /// finds the leader, and fails if no endpoint answers within the dial timeout.
    pub async fn connect<I, S>(endpoints: I, opts: ConnectOptions) -> Result<Client>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let endpoints: Vec<String> = endpoints.into_iter().map(Into::into).collect();
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no endpoints given".into()));
        }
        let conns = endpoints
            .iter()
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        let client = Client {
            inner: Arc::new(Inner {
                endpoints,
                conns,
                leader: AtomicUsize::new(0),
                rr: AtomicUsize::new(0),
                opts,
                sent: Arc::new(AtomicU64::new(0)),
            }),
        };
        // Like a blocking dial: keep trying every endpoint until one answers or the dial
        // timeout passes (members may still be starting).
        let deadline = Instant::now() + client.inner.opts.dial_timeout;
        let mut last = String::new();
        let mut any = false;
        while !any {
            for i in 0..client.inner.endpoints.len() {
                match tokio::time::timeout_at(deadline, client.conn(i)).await {
                    Ok(Ok(_)) => any = true,
                    Ok(Err(e)) => last = e,
                    Err(_) => last = "dial timed out".into(),
                }
            }
            if !any {
                if Instant::now() >= deadline {
                    return Err(Error::Unavailable(last));
                }
                tokio::time::sleep_until(
                    (Instant::now() + Duration::from_millis(50)).min(deadline),
                )
                .await;
            }
        }
        if client.inner.opts.prefer_leader {
            client.find_leader().await;
        }
        Ok(client)
    }

    /// The endpoints this client was given.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The options in force.
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.opts
    }

    /// How many request frames this client (all clones) has sent so far — for tests and metrics
    /// (e.g. to show a lock waiter does not poll).
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// The endpoint index currently preferred for writes and linearizable reads.
    pub fn leader_endpoint(&self) -> usize {
        self.inner.leader.load(Ordering::Relaxed)
    }

    /// The live connection to endpoint `i`, dialling it if needed.
    pub(crate) async fn conn(&self, i: usize) -> std::result::Result<Arc<Conn>, String> {
        let mut slot = self.inner.conns[i].lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let c = Arc::new(
            Conn::connect(
                &self.inner.endpoints[i],
                self.inner.opts.dial_timeout,
                self.inner.sent.clone(),
            )
            .await?,
        );
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Asks every endpoint for its status; prefers the one that is the leader. Returns whether
    /// a leader was found.
    pub(crate) async fn find_leader(&self) -> bool {
        let n = self.inner.endpoints.len();
        let mut tasks = Vec::new();
        for i in 0..n {
            let c = self.clone();
            tasks.push(tokio::spawn(async move {
                let conn = c.conn(i).await.ok()?;
                let r = tokio::time::timeout(
                    c.inner.opts.dial_timeout,
                    conn.unary(&p::Request::Status(p::StatusRequest {})),
                )
                .await
                .ok()?
                .ok()?;
                match r {
                    p::Response::Status(s) if s.leader != 0 => {
                        Some((i, s.header.member_id == s.leader))
                    }
                    _ => None,
                }
            }));
        }
        let mut found = None;
        let mut has_leader = false;
        for t in tasks {
            if let Ok(Some((i, is_leader))) = t.await {
                has_leader = true;
                if is_leader && found.is_none() {
                    found = Some(i);
                }
            }
        }
        if let Some(i) = found {
            self.inner.leader.store(i, Ordering::Relaxed);
        }
        has_leader
    }

    /// Looks for the leader again in the background (after a sign that it changed).
    pub(crate) fn refresh_leader(&self) {
        if !self.inner.opts.prefer_leader {
            return;
        }
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            let c = self.clone();
            h.spawn(async move {
                c.find_leader().await;
            });
        }
    }

    fn pick(&self, kind: Kind) -> usize {
        let n = self.inner.endpoints.len();
        match kind {
            Kind::Serializable => self.inner.rr.fetch_add(1, Ordering::Relaxed) % n,
            _ => self.inner.leader.load(Ordering::Relaxed) % n,
        }
    }

    fn fail_over(&self, from: usize) {
        let n = self.inner.endpoints.len();
        let _ = self.inner.leader.compare_exchange(
            from,
            (from + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Sends `req` following the retry policy of `kind` (module docs), on endpoint `only` if
    /// given. Server errors come back as [`Error::Server`].
    pub(crate) async fn call_on(
        &self,
        req: p::Request,
        kind: Kind,
        only: Option<usize>,
    ) -> Result<p::Response> {
        let deadline = Instant::now() + self.inner.opts.request_timeout;
        let mut attempt: u32 = 0;
        let mut last = String::from("no attempt made");
        let mut failed = vec![false; self.inner.endpoints.len()];
        loop {
            if Instant::now() >= deadline {
                return Err(if attempt == 0 {
                    Error::Timeout
                } else {
                    Error::Unavailable(last)
                });
            }
            if attempt > 0 {
                // Back off a little between rounds (bounded), then look for the leader again.
                let pause = Duration::from_millis((20 * u64::from(attempt)).min(300));
                tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
                if only.is_none() && self.inner.opts.prefer_leader && kind != Kind::Serializable {
                    let _ = tokio::time::timeout_at(deadline, self.find_leader()).await;
                }
            }
            attempt += 1;
            // Prefer the leader (or the round-robin pick), but not a member that already failed
            // this call, until every member has.
            let n = self.inner.endpoints.len();
            if failed.iter().all(|f| *f) {
                failed.iter_mut().for_each(|f| *f = false);
            }
            let first = self.pick(kind);
            let i = only.unwrap_or_else(|| {
                (0..n)
                    .map(|k| (first + k) % n)
                    .find(|&j| !failed[j])
                    .unwrap_or(first)
            });
            let conn = match tokio::time::timeout_at(deadline, self.conn(i)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    last = e;
                    failed[i] = true;
                    self.fail_over(i);
                    continue;
                }
                Err(_) => return Err(Error::Unavailable(format!("dial timed out: {last}"))),
            };
            match tokio::time::timeout_at(deadline, conn.unary(&req)).await {
                Ok(Ok(p::Response::Error(e))) => {
                    let code = e.error_code();
                    let retry = match kind {
                        Kind::Write => refused_before_proposal(code),
                        _ => transient(code),
                    };
                    if retry {
                        last = e.message.clone();
                        failed[i] = true;
                        continue;
                    }
                    if kind == Kind::Write && proposed_maybe(code) {
                        // The leader may have changed: look for it again, in the background.
                        self.refresh_leader();
                        return Err(Error::Unknown(e.message));
                    }
                    return Err(Error::Server(e));
                }
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(ConnError::NotSent(why))) => {
                    last = why;
                    failed[i] = true;
                    self.fail_over(i);
                }
                Ok(Err(ConnError::Lost(why))) => {
                    if kind == Kind::Write {
                        self.fail_over(i);
                        return Err(Error::Unknown(format!(
                            "connection to {} lost after the request was sent: {why}",
                            self.inner.endpoints[i]
                        )));
                    }
                    last = why;
                    failed[i] = true;
                    self.fail_over(i);
                }
                Err(_) => {
                    return Err(if kind == Kind::Write {
                        Error::Unknown("deadline passed before the server answered".into())
                    } else {
                        Error::Timeout
                    });
                }
            }
        }
    }

    pub(crate) async fn call(&self, req: p::Request, kind: Kind) -> Result<p::Response> {
        self.call_on(req, kind, None).await
    }

    /// Picks an endpoint for a new stream (the preferred one, or the next after a failure).
    pub(crate) async fn stream_conn(
        &self,
        attempt: usize,
    ) -> std::result::Result<Arc<Conn>, String> {
        let n = self.inner.endpoints.len();
        let start = self.inner.leader.load(Ordering::Relaxed);
        let mut last = String::new();
        for k in 0..n {
            let i = (start + attempt + k) % n;
            match self.conn(i).await {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// Unwraps the expected response variant or reports a protocol error.
macro_rules! expect_response {
    ($resp:expr, $variant:ident) => {
        match $resp {
            keel_proto::Response::$variant(r) => Ok(r),
            other => Err($crate::error::Error::Protocol(format!(
                "expected {} response, got {:?}",
                stringify!($variant),
                keel_proto::Opcode::to_u16(other.opcode())
            ))),
        }
    };
}
pub(crate) use expect_response;
