//! A real etcd (3.4, Debian's `etcd-server`) for differential tests: one single-member cluster on
//! free loopback ports with its own temporary data directory, started as a child process and
//! stopped by its PID when the handle drops.
//!
//! The binary is `$KEEL_ETCD_BIN`, else `etcd` on `PATH`, else `/usr/bin/etcd`. A missing binary
//! is a test failure, never a silent skip: `scripts/test.sh` installs it.

use crate::ports::free_port;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer its first Status call.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between readiness probes (a bounded poll, not a synchronisation by sleeping).
const READY_POLL: Duration = Duration::from_millis(50);
/// Attempts to start when a picked port was taken by someone else in the meantime.
const START_ATTEMPTS: usize = 5;

/// A running etcd; killed (by PID) and its data directory removed on drop.
pub struct Etcd {
    child: Child,
    client_url: String,
    log_path: PathBuf,
    // Dropped after the child is killed (field order).
    _dir: tempfile::TempDir,
}

/// Finds the etcd binary or panics with what to install.
pub fn etcd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KEEL_ETCD_BIN") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("etcd");
            if p.is_file() {
                return p;
            }
        }
    }
    let p = PathBuf::from("/usr/bin/etcd");
    if p.is_file() {
        return p;
    }
    panic!(
        "etcd not found (set KEEL_ETCD_BIN or install Debian's etcd-server: \
         apt-get install etcd-server; scripts/test.sh does this)"
    );
}

impl Etcd {
    /// Starts etcd and returns once it answers a Status call.
    pub fn start() -> Etcd {
        let bin = etcd_binary();
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&bin) {
                Ok(e) => return e,
                Err(e) => last_err = e,
            }
        }
        panic!("etcd ({}) did not start: {last_err}", bin.display());
    }

    fn try_start(bin: &Path) -> Result<Etcd, String> {
        // tmpfs where there is one: etcd fsyncs every write, and the test is about semantics.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new().prefix("keel-etcd").tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("keel-etcd").tempdir()
        }
        .map_err(|e| format!("temp dir: {e}"))?;
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_path = dir.path().join("etcd.log");
        let log = File::create(&log_path).map_err(|e| format!("log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(bin)
            .arg("--name=keel-diff")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=keel-diff={peer_url}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut etcd = Etcd {
            child,
            client_url,
            log_path,
            _dir: dir,
        };
        etcd.wait_ready()?;
        Ok(etcd)
    }

    /// Polls Status until etcd answers, the process exits, or the deadline passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no probe yet");
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("etcd exited ({status}); log:\n{}", self.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer within {READY_TIMEOUT:?} ({last}); log:\n{}",
                    self.log_tail()
                ));
            }
            let url = self.client_url.clone();
            let probe = rt.block_on(async move {
                let opts = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_timeout(Duration::from_secs(2));
                let mut c = etcd_client::Client::connect([url], Some(opts)).await?;
                c.status().await
            });
            match probe {
                Ok(s) if s.leader() != 0 => return Ok(()),
                Ok(_) => last = "no leader yet".into(),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The PID of the etcd process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines etcd logged (for failure messages).
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
