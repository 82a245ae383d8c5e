//! Helpers for the server's integration tests: start real `keel` processes on free loopback
//! ports (stopped by PID when dropped), and a minimal blocking client speaking keel's protocol
//! (the real client library is issue 8's).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_proto as p;

/// Free loopback ports below the ephemeral range (shared with `tests/src/ports.rs`).
#[path = "../../../../tests/src/ports.rs"]
mod ports;
pub use ports::free_ports;

/// One `keel` process.
pub struct Server {
    pub name: String,
    pub client: SocketAddr,
    pub args: Vec<String>,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Starts `keel` with `args` (data dir and log file under `dir`).
    pub fn start(name: &str, client: SocketAddr, dir: &Path, args: Vec<String>) -> Server {
        let mut s = Server {
            name: name.to_string(),
            client,
            args,
            dir: dir.to_path_buf(),
            child: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(&self.args)
            .env(
                "KEEL_LOG_LEVEL",
                std::env::var("KEEL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("keel starts");
        self.child = Some(child);
    }

    /// Restarts a stopped or killed server with the same arguments.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) with a PID this test spawned and still owns (not yet waited for).
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        c.wait().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking, one-request-at-a-time client (plus raw access for streams).
pub struct Client {
    s: TcpStream,
    dec: p::FrameDecoder,
    next: u64,
}

#[derive(Debug)]
pub enum CallError {
    Io(std::io::Error),
    Server(p::ErrorResponse),
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client {
            s,
            dec: p::FrameDecoder::new(p::limits::DEFAULT_MAX_RESPONSE_PAYLOAD),
            next: 1,
        })
    }

    /// Connects, retrying until `limit` (the server is starting).
    pub fn connect_wait(addr: SocketAddr, limit: Duration) -> Client {
        let deadline = Instant::now() + limit;
        loop {
            match Client::connect(addr) {
                Ok(c) => return c,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot connect to {addr}: {e}");
                    std::thread::park_timeout(Duration::from_millis(20));
                }
            }
        }
    }

    pub fn send(&mut self, req: &p::Request, more: bool) -> std::io::Result<u64> {
        let id = self.next;
        self.next += 1;
        let mut out = Vec::new();
        p::encode_request(&mut out, id, more, req).unwrap();
        self.s.write_all(&out)?;
        Ok(id)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    /// The next frame: (request id, more, response).
    pub fn recv(&mut self) -> std::io::Result<(u64, bool, p::Response)> {
        loop {
            match self.dec.decode() {
                Ok(p::Decoded::Frame(f)) => {
                    let r = f.decode_response().map_err(std::io::Error::other)?;
                    return Ok((f.header.request_id, f.header.more(), r));
                }
                Ok(p::Decoded::NeedMore(_)) => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
            let buf = self.dec.read_buf(64 << 10);
            let n = self.s.read(buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.dec.filled(n);
        }
    }

    pub fn call(&mut self, req: p::Request) -> Result<p::Response, CallError> {
        let id = self.send(&req, false).map_err(CallError::Io)?;
        loop {
            let (rid, _, r) = self.recv().map_err(CallError::Io)?;
            if rid != id {
                continue;
            }
            return match r {
                p::Response::Error(e) => Err(CallError::Server(e)),
                r => Ok(r),
            };
        }
    }

    pub fn put(&mut self, k: &str, v: &str) -> Result<p::PutResponse, CallError> {
        match self.call(p::Request::Put(p::PutRequest {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
            ..Default::default()
        }))? {
            p::Response::Put(r) => Ok(r),
            r => panic!("unexpected {r:?}"),
        }
    }

    pub fn get(&mut self, k: &str, serializable: bool) -> Result<p::RangeResponse, CallError> {
        match self.call(p::Request::Range(p::RangeRequest {
            key: k.as_bytes().to_vec(),
            serializable,
            ..Default::default()
        }))? {
            p::Response::Range(r) => Ok(r),
            r => panic!("unexpected {r:?}"),
        }
    }

    pub fn status(&mut self) -> Result<p::StatusResponse, CallError> {
        match self.call(p::Request::Status(p::StatusRequest {}))? {
            p::Response::Status(r) => Ok(r),
            r => panic!("unexpected {r:?}"),
        }
    }
}

/// Polls `f` until it returns Some or `limit` passes (a bounded wait on an observable
/// condition, e.g. a leader being elected).
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// Arguments for a single member with its data in `dir`.
pub fn single_args(dir: &Path, client: u16, peer: u16) -> Vec<String> {
    vec![
        "--data-dir".into(),
        dir.join("data").display().to_string(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{client}"),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{peer}"),
    ]
}
