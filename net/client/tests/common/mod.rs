//! Helpers for keel-client's integration tests: real `keel` (and reference `etcd`) processes on
//! free loopback ports, stopped by PID; a 3-member keel cluster; running `keelctl`/`etcdctl`.
//!
//! The `keel` binary is the server crate's: build it first (`cargo build -p keel-server --bin
//! keel`); it is looked up beside this test's executable (target/<profile>/keel) or in `$KEEL_BIN`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Replaces the number after `"field":` with `N`; with `strings`, a quoted string value too
/// (and then every occurrence gets its `N`, whatever follows).
pub fn blank_json(s: &str, field: &str, strings: bool) -> String {
    let pat = format!("\"{field}\":");
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(&pat) {
        out.push_str(&rest[..i + pat.len()]);
        rest = &rest[i + pat.len()..];
        let end = match rest.strip_prefix('"') {
            Some(q) if strings => q.find('"').map_or(rest.len(), |e| e + 2),
            _ => rest
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .unwrap_or(rest.len()),
        };
        if strings || end > 0 {
            out.push('N');
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Free loopback ports below the ephemeral range (shared with `tests/src/ports.rs`).
#[path = "../../../../tests/src/ports.rs"]
mod ports;
pub use ports::free_ports;

/// Path of the `keel` server binary.
pub fn keel_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KEEL_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> → target/<profile>/keel
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("keel");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p keel-server --bin keel` first (or set KEEL_BIN)",
        bin.display()
    );
    bin
}

/// One server process (keel or etcd), killed when dropped.
pub struct Proc {
    pub name: String,
    pub client: SocketAddr,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn start(
        name: &str,
        program: PathBuf,
        client: SocketAddr,
        dir: &Path,
        args: Vec<String>,
    ) -> Proc {
        let mut p = Proc {
            name: name.into(),
            client,
            program,
            args,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.program.display()));
        self.child = Some(child);
    }

    pub fn endpoint(&self) -> String {
        self.client.to_string()
    }

    /// SIGKILL (by PID, through the child handle) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A single keel member with its data under `dir`.
pub fn keel_single(dir: &Path) -> Proc {
    let ports = free_ports(2);
    let client: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let args = vec![
        "--data-dir".into(),
        dir.join("keel-data").display().to_string(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{}", ports[0]),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{}", ports[1]),
    ];
    Proc::start("keel", keel_bin(), client, dir, args)
}

/// A 3-member keel cluster (members a, b, c) with data under `dir`.
pub fn keel_cluster(dir: &Path) -> Vec<Proc> {
    let ports = free_ports(6);
    let names = ["a", "b", "c"];
    let initial: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}=http://127.0.0.1:{}", ports[3 + i]))
        .collect();
    let initial = initial.join(",");
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let client: SocketAddr = format!("127.0.0.1:{}", ports[i]).parse().unwrap();
            let peer = format!("http://127.0.0.1:{}", ports[3 + i]);
            let args = vec![
                "--name".into(),
                n.to_string(),
                "--data-dir".into(),
                dir.join(format!("data-{n}")).display().to_string(),
                "--listen-client-urls".into(),
                format!("http://127.0.0.1:{}", ports[i]),
                "--listen-peer-urls".into(),
                peer.clone(),
                "--initial-advertise-peer-urls".into(),
                peer,
                "--initial-cluster".into(),
                initial.clone(),
                "--initial-cluster-token".into(),
                "keel-client-test".into(),
                "--heartbeat-interval".into(),
                "50".into(),
                "--election-timeout".into(),
                "500".into(),
            ];
            Proc::start(n, keel_bin(), client, dir, args)
        })
        .collect()
}

/// A single reference etcd member (etcd 3.4 on PATH).
pub fn etcd_single(dir: &Path) -> Proc {
    let ports = free_ports(2);
    let client: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    let url = format!("http://127.0.0.1:{}", ports[0]);
    let peer = format!("http://127.0.0.1:{}", ports[1]);
    let args = vec![
        "--data-dir".into(),
        dir.join("etcd-data").display().to_string(),
        "--listen-client-urls".into(),
        url.clone(),
        "--advertise-client-urls".into(),
        url,
        "--listen-peer-urls".into(),
        peer.clone(),
        "--initial-advertise-peer-urls".into(),
        peer.clone(),
        "--initial-cluster".into(),
        format!("default={peer}"),
    ];
    Proc::start("etcd", PathBuf::from("etcd"), client, dir, args)
}

/// Polls `f` until it returns Some or `limit` passes (a bounded wait on an observable condition,
/// e.g. a server answering).
pub fn wait_for<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_for_or(what, limit, f, String::new)
}

/// [`wait_for`], whose timeout panic adds `context()` (e.g. the end of a server's log).
pub fn wait_for_or<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = f() {
            return t;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}{}", context());
        }
        std::thread::park_timeout(Duration::from_millis(25));
    }
}

/// Output of one CLI run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    /// stderr lines starting with `Error:` (etcdctl also logs client retries there).
    pub errors: Vec<String>,
}

/// Runs `program` with `args` against `endpoint`, `stdin` fed in.
pub fn run_ctl(program: &Path, endpoint: &str, args: &[&str], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = Command::new(program)
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        errors: String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("Error:"))
            .map(str::to_string)
            .collect(),
    }
}

pub fn keelctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelctl"))
}

/// Waits until a keel or etcd member at `endpoint` serves a linearizable read (a leader exists).
/// On timeout the panic shows the last probe's errors and the end of the member's log.
pub fn wait_ready(ctl: &Path, endpoint: &str, p: &Proc) {
    let last_errors = std::cell::RefCell::new(Vec::new());
    wait_for_or(
        &format!("{} ready at {endpoint}", p.name),
        Duration::from_secs(30),
        || {
            let r = run_ctl(
                ctl,
                endpoint,
                &["get", "--command-timeout=1s", "readiness-probe"],
                "",
            );
            *last_errors.borrow_mut() = r.errors;
            (r.code == 0).then_some(())
        },
        || {
            let log = p.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            format!(
                " (last probe: {:?}); its log ends:\n{tail}",
                last_errors.borrow()
            )
        },
    );
}
