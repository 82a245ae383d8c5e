//! A TCP stream whose writes are coalesced by a writer task, for the etcd target's connections.
//!
//! Owns [`connect`] and [`CoalescedStream`]. Why: tonic/hyper's HTTP/2 client flushes every
//! frame batch with its own `writev` (about two per unary request: HEADERS, then DATA), where
//! etcd's Go tool hands frames to one writer goroutine per connection that writes whatever has
//! accumulated. On a CPU-starved host each extra write is an extra wakeup of the server, and
//! keel-bench measured etcd slower than etcd's own tool did (strace: 20.8k writev for 10k puts
//! at 10 conns/100 clients, against 2.3k writes for etcd's tool). Here `poll_write` appends to a
//! buffer and returns; a task per connection writes everything buffered with one call, so
//! frames of requests issued meanwhile share a syscall, as in the Go client.
//!
//! `poll_flush` completes once the bytes are in the buffer (the writer task is already woken
//! and writes them as soon as it runs); the buffer is bounded, so a slow socket pushes back.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Bytes buffered before `poll_write` pushes back.
const MAX_BUFFERED: usize = 1 << 20;

#[derive(Default)]
struct Shared {
    /// Bytes written by the connection and not yet taken by the writer task.
    buf: Vec<u8>,
    /// The writer task's write failed: the connection is dead.
    error: Option<io::ErrorKind>,
    /// The connection shut its write side down.
    closed: bool,
    /// A `poll_write` that found the buffer full.
    blocked: Option<Waker>,
}

/// A TCP connection: reads go straight to the socket, writes through the writer task.
pub struct CoalescedStream {
    read: OwnedReadHalf,
    shared: Arc<Mutex<Shared>>,
    wake_writer: Arc<Notify>,
}

/// Connects to `addr` (`host:port`) with TCP_NODELAY and starts the connection's writer task.
pub async fn connect(addr: &str) -> io::Result<CoalescedStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (read, mut write) = tcp.into_split();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let wake_writer = Arc::new(Notify::new());
    let (s, n) = (shared.clone(), wake_writer.clone());
    tokio::spawn(async move {
        let mut out = Vec::new();
        loop {
            // Let the tasks that are ready now (other requests' frames) run first, so that
            // their bytes join this write: one yield, not a timer.
            tokio::task::yield_now().await;
            let closed = {
                let mut sh = s.lock().expect("writer state lock poisoned");
                std::mem::swap(&mut sh.buf, &mut out);
                if let Some(w) = sh.blocked.take() {
                    w.wake();
                }
                sh.closed
            };
            if out.is_empty() {
                if closed {
                    let _ = write.shutdown().await;
                    return;
                }
                n.notified().await;
                continue;
            }
            if let Err(e) = write.write_all(&out).await {
                s.lock().expect("writer state lock poisoned").error = Some(e.kind());
                return;
            }
            out.clear();
        }
    });
    Ok(CoalescedStream {
        read,
        shared,
        wake_writer,
    })
}

impl AsyncRead for CoalescedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for CoalescedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut sh = self.shared.lock().expect("writer state lock poisoned");
        if let Some(kind) = sh.error {
            return Poll::Ready(Err(io::Error::new(kind, "connection writer failed")));
        }
        if sh.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if sh.buf.len() >= MAX_BUFFERED {
            sh.blocked = Some(cx.waker().clone());
            drop(sh);
            // The writer may have drained the buffer before the waker was stored: make sure it
            // runs (and wakes us) again.
            self.wake_writer.notify_one();
            return Poll::Pending;
        }
        let n = data.len().min(MAX_BUFFERED - sh.buf.len());
        sh.buf.extend_from_slice(&data[..n]);
        drop(sh);
        self.wake_writer.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self
            .shared
            .lock()
            .expect("writer state lock poisoned")
            .error
        {
            Some(kind) => Poll::Ready(Err(io::Error::new(kind, "connection writer failed"))),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared
            .lock()
            .expect("writer state lock poisoned")
            .closed = true;
        self.wake_writer.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for CoalescedStream {
    fn drop(&mut self) {
        if let Ok(mut sh) = self.shared.lock() {
            sh.closed = true;
        }
        self.wake_writer.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    #[test]
    fn bytes_arrive_in_order_and_shutdown_ends_the_stream() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let reader = tokio::spawn(async move {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut got = Vec::new();
                sock.read_to_end(&mut got).await.unwrap();
                got
            });
            let mut stream = connect(&addr).await.unwrap();
            // More than the buffer bound in many small and a few large writes: the writer must
            // push back (poll_write pending) and still deliver every byte in order.
            let mut sent = Vec::new();
            for i in 0..3000u32 {
                let chunk: Vec<u8> = if i % 1000 == 999 {
                    vec![(i % 251) as u8; MAX_BUFFERED + 17]
                } else {
                    i.to_le_bytes().repeat(1 + (i as usize % 7))
                };
                stream.write_all(&chunk).await.unwrap();
                stream.flush().await.unwrap();
                sent.extend_from_slice(&chunk);
            }
            stream.shutdown().await.unwrap();
            let got = reader.await.unwrap();
            assert_eq!(got.len(), sent.len());
            assert!(got == sent, "bytes arrived out of order");
        });
    }
}
