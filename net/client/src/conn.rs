//! One pipelined connection to one member: a writer task that batches request frames onto the
//! socket, a reader task that decodes response frames and routes each by its request id to the
//! caller waiting for it (responses arrive in any order; streams are every frame on one id up to
//! the first without `MORE`, PROTOCOL.md §4).
//!
//! The connection knows whether a request may have reached the server: a request registered
//! after the connection closed fails with [`ConnError::NotSent`]; one registered before fails with
//! [`ConnError::Lost`] (it may have been written and applied). The client's retry policy rests on
//! that distinction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_proto as p;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Why a request on a connection got no response.
#[derive(Debug, Clone)]
pub(crate) enum ConnError {
    /// The connection was closed before the request was handed to it: it never left.
    NotSent(String),
    /// The connection broke after the request was handed to it: it may have been applied.
    Lost(String),
}

/// One frame of a stream: the response and whether more follow on its id.
pub(crate) type StreamItem = Result<(p::Response, bool), ConnError>;

enum Sink {
    Unary(oneshot::Sender<Result<p::Response, ConnError>>),
    Stream(mpsc::UnboundedSender<StreamItem>),
}

struct Shared {
    /// `None` once the connection is closed: nothing more can be registered.
    pending: Mutex<Option<HashMap<u64, Sink>>>,
    closed: AtomicBool,
    /// Several requests are in flight at once (see the writer task): set by the reader from
    /// the responses one read routed, and by the writer when it drained several frames.
    busy: AtomicBool,
}

impl Shared {
    fn close(&self, why: &str) {
        self.closed.store(true, Ordering::Release);
        let pending = self.pending.lock().expect("pending lock").take();
        for (_, sink) in pending.into_iter().flatten() {
            let e = ConnError::Lost(why.to_string());
            match sink {
                Sink::Unary(tx) => {
                    let _ = tx.send(Err(e));
                }
                Sink::Stream(tx) => {
                    let _ = tx.send(Err(e));
                }
            }
        }
    }
}

/// A live connection (cheap to share through `Arc`). Dropping the last handle closes it.
pub(crate) struct Conn {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    sent: Arc<AtomicU64>,
    reader: tokio::task::AbortHandle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        self.shared.close("connection dropped");
    }
}

/// `host:port` from an endpoint given as `host:port`, `http://host:port` or `https://host:port`.
pub(crate) fn endpoint_addr(ep: &str) -> &str {
    let ep = ep
        .strip_prefix("http://")
        .or_else(|| ep.strip_prefix("https://"))
        .unwrap_or(ep);
    ep.trim_end_matches('/')
}

impl Conn {
    /// Dials `endpoint` within `dial_timeout`. `sent` counts request frames (shared by a client).
    pub(crate) async fn connect(
        endpoint: &str,
        dial_timeout: Duration,
        sent: Arc<AtomicU64>,
    ) -> Result<Conn, String> {
        let addr = endpoint_addr(endpoint);
        let stream = match tokio::time::timeout(dial_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("dial {addr}: {e}")),
            Err(_) => return Err(format!("dial {addr}: timed out")),
        };
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            closed: AtomicBool::new(false),
            busy: AtomicBool::new(false),
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();

        // Writer: drain everything queued into one write (pipelining batches naturally). Tokio
        // runs a task woken by the running one next (its LIFO slot), so the writer, woken by the
        // first frame, used to write it alone while other callers woken by the same response
        // batch had not run yet (keel-bench, 10 conns / 100 clients: 47k sends for 50k puts).
        // While the connection is busy (the last read routed several responses, or the last
        // write carried several frames) the writer yields once first, so those callers queue
        // their frames and share the write; a lone caller (1 request in flight) is not delayed.
        let wshared = shared.clone();
        tokio::spawn(async move {
            while let Some(mut buf) = rx.recv().await {
                if wshared.busy.load(Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                }
                let mut frames = 1;
                while let Ok(more) = rx.try_recv() {
                    buf.extend_from_slice(&more);
                    frames += 1;
                }
                if frames > 1 {
                    wshared.busy.store(true, Ordering::Relaxed);
                }
                if let Err(e) = wr.write_all(&buf).await {
                    wshared.close(&format!("write: {e}"));
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });

        // Reader: decode frames, route by request id.
        let rshared = shared.clone();
        let reader = tokio::spawn(async move {
            let mut dec = p::FrameDecoder::new(p::limits::DEFAULT_MAX_RESPONSE_PAYLOAD);
            let why = loop {
                let mut broken = None;
                let mut routed = 0usize;
                loop {
                    match dec.decode() {
                        Ok(p::Decoded::Frame(f)) => {
                            let id = f.header.request_id;
                            let more = f.header.more();
                            match f.decode_response() {
                                Ok(resp) => {
                                    if id == 0 {
                                        if let p::Response::Error(e) = &resp {
                                            broken = Some(format!("server: {}", e.message));
                                            break;
                                        }
                                    }
                                    route(&rshared, id, resp, more);
                                    routed += 1;
                                }
                                Err(e) => {
                                    broken = Some(format!("bad response: {e}"));
                                    break;
                                }
                            }
                        }
                        Ok(p::Decoded::NeedMore(_)) => break,
                        Err(e) => {
                            broken = Some(format!("bad frame: {e}"));
                            break;
                        }
                    }
                }
                if let Some(why) = broken {
                    break why;
                }
                if routed > 0 {
                    rshared.busy.store(routed > 1, Ordering::Relaxed);
                }
                let buf = dec.read_buf(64 << 10);
                match rd.read(buf).await {
                    Ok(0) => break "connection closed by server".to_string(),
                    Ok(n) => dec.filled(n),
                    Err(e) => break format!("read: {e}"),
                }
            };
            rshared.close(&why);
        });

        Ok(Conn {
            tx,
            shared,
            next_id: AtomicU64::new(1),
            sent,
            reader: reader.abort_handle(),
        })
    }

    /// Declares the connection dead (e.g. a liveness probe went unanswered): pending requests
    /// fail as lost, and the client dials again on next use.
    pub(crate) fn abort(&self, why: &str) {
        self.reader.abort();
        self.shared.close(why);
    }

    /// True once the connection broke or was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    fn register(&self, sink: Sink) -> Result<u64, ConnError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.shared.pending.lock().expect("pending lock");
        match pending.as_mut() {
            Some(map) => {
                map.insert(id, sink);
                Ok(id)
            }
            None => Err(ConnError::NotSent("connection closed".into())),
        }
    }

    fn unregister(&self, id: u64) {
        if let Some(map) = self.shared.pending.lock().expect("pending lock").as_mut() {
            map.remove(&id);
        }
    }

    fn send_frame(&self, id: u64, more: bool, req: &p::Request) -> Result<(), ConnError> {
        let mut buf = Vec::new();
        p::encode_request(&mut buf, id, more, req)
            .map_err(|e| ConnError::NotSent(format!("encode: {e}")))?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(buf)
            .map_err(|_| ConnError::Lost("writer gone".into()))
    }

    /// Sends one request and waits for its response (an error frame comes back as
    /// `Ok(Response::Error)`). Cancel-safe: dropping the future forgets the request id.
    pub(crate) async fn unary(&self, req: &p::Request) -> Result<p::Response, ConnError> {
        let (tx, rx) = oneshot::channel();
        let id = self.register(Sink::Unary(tx))?;
        struct Forget<'a>(&'a Conn, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.unregister(self.1);
            }
        }
        let _forget = Forget(self, id);
        if let Err(e) = self.send_frame(id, false, req) {
            return Err(match e {
                ConnError::NotSent(w) => ConnError::NotSent(w),
                ConnError::Lost(w) => ConnError::NotSent(w),
            });
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(ConnError::Lost("connection closed".into())),
        }
    }

    /// Opens a stream: sends `req` and returns its id and every frame answered on it.
    pub(crate) fn stream(
        &self,
        req: &p::Request,
        more: bool,
    ) -> Result<(u64, mpsc::UnboundedReceiver<StreamItem>), ConnError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.register(Sink::Stream(tx))?;
        if let Err(e) = self.send_frame(id, more, req) {
            self.unregister(id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// Sends a request whose answer nobody waits for (e.g. a watch cancel); its response is
    /// dropped when it arrives.
    pub(crate) fn fire(&self, req: &p::Request) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.send_frame(id, false, req);
    }

    /// Stops routing frames for a stream id.
    pub(crate) fn forget(&self, id: u64) {
        self.unregister(id);
    }
}

fn route(shared: &Shared, id: u64, resp: p::Response, more: bool) {
    let mut guard = shared.pending.lock().expect("pending lock");
    let Some(map) = guard.as_mut() else { return };
    let is_stream = matches!(map.get(&id), Some(Sink::Stream(_)));
    if is_stream {
        let ends = !more || matches!(resp, p::Response::Error(_));
        if ends {
            if let Some(Sink::Stream(tx)) = map.remove(&id) {
                let _ = tx.send(Ok((resp, false)));
            }
        } else if let Some(Sink::Stream(tx)) = map.get(&id) {
            if tx.send(Ok((resp, true))).is_err() {
                map.remove(&id);
            }
        }
    } else if let Some(Sink::Unary(tx)) = map.remove(&id) {
        let _ = tx.send(Ok(resp));
    }
}
