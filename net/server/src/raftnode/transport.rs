//! The TCP peer transport: one outbound connection per peer, fed by a bounded queue and a
//! sender task; one listener whose accepted connections feed the loop's inbox.
//!
//! Owns the sockets and the per-peer queues. A stalled or dead peer never blocks the loop:
//! [`Transport::send`] only queues (dropping the message when the peer's queue is full — Raft
//! tolerates loss), the sender task batches everything queued into one write, reconnects with
//! exponential backoff, and reports failures to the loop (`report_unreachable`,
//! `report_snapshot`). Bad bytes from a peer drop that connection (D1), never panic.
//!
//! Tasks are held as glommio `Task`s and cancelled when the [`Transport`] drops, which closes
//! the listener and every connection.

use super::core::Ev;
use super::frame::{self, HEADER_LEN};
use super::inbox::Inbox;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::task::JoinHandle;
use glommio::timer::Timer;
use glommio::Task;
use keel_raft::consensus::{Message, MessageKind, NodeId};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queue {
    q: VecDeque<Message>,
    waker: Option<Waker>,
    dropped: u64,
}

struct Peer {
    queue: Rc<RefCell<Queue>>,
    _task: Task<()>,
}

/// The peer transport of one member. See the module documentation.
pub struct Transport {
    cap: usize,
    peers: RefCell<BTreeMap<NodeId, Peer>>,
    book: super::PeerBook,
    inbox: Inbox<Ev>,
    _listener: Task<()>,
}

impl Transport {
    /// Binds `listen` and starts one sender task per peer in `peers` (this member excluded).
    /// Received messages addressed to `self_id` go to `inbox`.
    pub fn start(
        self_id: NodeId,
        listen: SocketAddr,
        peers: &BTreeMap<NodeId, SocketAddr>,
        book: super::PeerBook,
        cap: usize,
        inbox: Inbox<Ev>,
    ) -> std::io::Result<Transport> {
        let listener = TcpListener::bind(listen)?;
        let lt = glommio::spawn_local(accept_loop(listener, self_id, inbox.clone()));
        let mut out = BTreeMap::new();
        for (&id, &addr) in peers.iter().filter(|(&id, _)| id != self_id) {
            let queue = Rc::new(RefCell::new(Queue::default()));
            let task = glommio::spawn_local(send_loop(id, addr, queue.clone(), inbox.clone()));
            out.insert(id, Peer { queue, _task: task });
        }
        Ok(Transport {
            cap: cap.max(1),
            peers: RefCell::new(out),
            book,
            inbox,
            _listener: lt,
        })
    }

    /// Starts a sender for a member added at runtime, if the peer book knows its address.
    fn learn(&self, id: NodeId) -> bool {
        let addr = match self.book.read() {
            Ok(b) => b.get(&id).copied(),
            Err(p) => p.into_inner().get(&id).copied(),
        };
        let Some(addr) = addr else {
            return false;
        };
        let queue = Rc::new(RefCell::new(Queue::default()));
        let task = glommio::spawn_local(send_loop(id, addr, queue.clone(), self.inbox.clone()));
        self.peers
            .borrow_mut()
            .insert(id, Peer { queue, _task: task });
        true
    }

    /// Queues `m` for its receiver; drops it when the receiver is unknown or its queue is full
    /// (snapshots are never dropped here: the loop prepares at most one per peer).
    pub fn send(&self, m: Message) {
        if !self.peers.borrow().contains_key(&m.to) && !self.learn(m.to) {
            return;
        }
        let peers = self.peers.borrow();
        let Some(p) = peers.get(&m.to) else {
            return;
        };
        let mut q = p.queue.borrow_mut();
        if q.q.len() >= self.cap && m.kind != MessageKind::InstallSnapshot {
            q.dropped += 1;
            return;
        }
        q.q.push_back(m);
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }

    /// Messages dropped so far because a peer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.peers
            .borrow()
            .values()
            .map(|p| p.queue.borrow().dropped)
            .sum()
    }
}

async fn accept_loop(listener: TcpListener, self_id: NodeId, inbox: Inbox<Ev>) {
    /// Cancels the reader tasks when the accept loop is cancelled (the transport dropped).
    struct Readers(Vec<JoinHandle<()>>);
    impl Drop for Readers {
        fn drop(&mut self) {
            self.0.iter().for_each(JoinHandle::cancel);
        }
    }
    let mut readers = Readers(Vec::new());
    loop {
        match listener.accept().await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let t = glommio::spawn_local(read_loop(s, self_id, inbox.clone()));
                // Connections are few (one per peer, re-made on failure); cancelling a finished
                // reader is harmless, so the list is only trimmed when it grows.
                if readers.0.len() > 64 {
                    readers.0.drain(..32).for_each(|h| h.cancel());
                }
                readers.0.push(t.detach());
            }
            Err(e) => {
                tracing::warn!("peer accept failed: {e}");
                Timer::new(BACKOFF_MIN).await;
            }
        }
    }
}

/// Reads frames until the peer closes or sends bad bytes (D1: an error, the connection drops).
async fn read_loop(s: TcpStream, self_id: NodeId, inbox: Inbox<Ev>) {
    let mut s = s.buffered();
    let mut chunks = frame::Reassembly::default();
    loop {
        let mut hb = [0u8; HEADER_LEN];
        if s.read_exact(&mut hb).await.is_err() {
            return;
        }
        let chunk = u32::from_le_bytes([hb[0], hb[1], hb[2], hb[3]]) == frame::CHUNK_MAGIC;
        let h = if chunk {
            frame::Reassembly::chunk_len(&hb)
        } else {
            frame::decode_header(&hb)
        };
        let h = match h {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("peer frame refused, dropping the connection: {e}");
                return;
            }
        };
        let mut payload = vec![0u8; h.len];
        if s.read_exact(&mut payload).await.is_err() {
            return;
        }
        let decoded = if chunk {
            match chunks.add(h, &payload) {
                Ok(Some(m)) => Ok(m),
                Ok(None) => continue,
                Err(e) => Err(e),
            }
        } else {
            frame::decode_payload(h, &payload)
        };
        match decoded {
            Ok(m) if m.to == self_id => inbox.push(Ev::Peer(m)).await,
            Ok(m) => {
                tracing::warn!("peer message for member {} arrived at {self_id}", m.to);
                return;
            }
            Err(e) => {
                tracing::warn!("peer frame refused, dropping the connection: {e}");
                return;
            }
        }
    }
}

async fn next_batch(queue: &Rc<RefCell<Queue>>) -> Vec<Message> {
    poll_fn(|cx| {
        let mut q = queue.borrow_mut();
        if q.q.is_empty() {
            q.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(q.q.drain(..).collect())
        }
    })
    .await
}

fn report_failure(id: NodeId, batch: &[Message], inbox: &Inbox<Ev>) {
    inbox.push_now(Ev::Unreachable(id));
    if batch.iter().any(|m| m.kind == MessageKind::InstallSnapshot) {
        inbox.push_now(Ev::SnapshotDone(id, false));
    }
}

/// The sender task of one peer: batches everything queued into one write.
async fn send_loop(id: NodeId, addr: SocketAddr, queue: Rc<RefCell<Queue>>, inbox: Inbox<Ev>) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = BACKOFF_MIN;
    let mut buf = Vec::new();
    loop {
        let batch = next_batch(&queue).await;
        if conn.is_none() {
            match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(s);
                    backoff = BACKOFF_MIN;
                }
                Err(_) => {
                    // The batch is stale by the time we retry: drop it (Raft resends).
                    report_failure(id, &batch, &inbox);
                    Timer::new(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        buf.clear();
        batch
            .iter()
            .for_each(|m| frame::encode_chunked(&mut buf, m));
        let s = conn.as_mut().expect("connected above");
        let ok = s.write_all(&buf).await.is_ok() && s.flush().await.is_ok();
        if ok {
            for m in batch
                .iter()
                .filter(|m| m.kind == MessageKind::InstallSnapshot)
            {
                inbox.push_now(Ev::SnapshotDone(m.to, true));
            }
        } else {
            conn = None;
            report_failure(id, &batch, &inbox);
        }
        if buf.capacity() > 4 << 20 {
            buf = Vec::new();
        }
    }
}
