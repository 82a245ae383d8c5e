//! Differential tests for the maintenance commands and the interactive watch: keelctl against a
//! single keel member and etcdctl 3.4 against a single etcd member print the same bytes once the
//! values that legitimately differ between two servers are normalised (ids, terms, revisions
//! and raft indexes, versions, db sizes, hashes, timings, the servers' own URLs and names).

mod common;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// What a server is known by in the output: its member id (hex), URLs and name.
struct Ids {
    member_hex: String,
    client: String,
    peer: String,
}

impl Ids {
    /// Asks the server (through `ctl`) for its member id and URLs, once its client URL is in the
    /// member list (both servers now answer only after that; the wait is a guard).
    fn of(ctl: &Path, ep: &str) -> Ids {
        let r = wait_for("client URL published", Duration::from_secs(30), || {
            let r = run_ctl(ctl, ep, &["member", "list"], "");
            assert_eq!(r.code, 0, "{r:?}");
            (!r.stdout.contains(", , ")).then_some(r)
        });
        let cols: Vec<&str> = r.stdout.trim_end().split(", ").collect();
        assert_eq!(cols.len(), 6, "one member: {r:?}");
        Ids {
            member_hex: cols[0].to_string(),
            client: cols[4].to_string(),
            peer: cols[3].to_string(),
        }
    }
}

/// Blanks ids, terms, revisions, raft indexes, versions, sizes, hashes and timings, and names
/// the server's URLs and id.
fn normalise(s: &str, ids: &Ids) -> String {
    let mut s = s.replace(&ids.client, "CLIENT_URL");
    s = s.replace(&ids.peer, "PEER_URL");
    let dec = u64::from_str_radix(&ids.member_hex, 16)
        .unwrap()
        .to_string();
    s = s.replace(&ids.member_hex, "MEMBER");
    for f in [
        "cluster_id",
        "member_id",
        "raft_term",
        "revision",
        "version",
        "dbSize",
        "dbSizeInUse",
        "raftIndex",
        "raftTerm",
        "raftAppliedIndex",
        "hash",
        "took",
        "name",
    ] {
        s = blank_json(&s, f, true);
    }
    s = s.replace(&format!("\"ID\":{dec}"), "\"ID\":MEMBER");
    s = s.replace(&format!("\"leader\":{dec}"), "\"leader\":MEMBER");
    s
}

/// Blanks the columns of `endpoint status` (simple) that differ between servers: version, db
/// size, raft term, raft index, raft applied index.
fn blank_status_columns(s: &str) -> String {
    s.lines()
        .map(|l| {
            let mut c: Vec<String> = l.split(", ").map(str::to_string).collect();
            if c.len() == 10 {
                for i in [2, 3, 6, 7, 8] {
                    c[i] = "N".into();
                }
            }
            c.join(", ") + "\n"
        })
        .collect()
}

/// Blanks what follows `took = ` and the hash column of `endpoint hashkv` (simple).
fn blank_simple(s: &str) -> String {
    s.lines()
        .map(|l| {
            if let Some(i) = l.find("took = ") {
                format!("{}took = N\n", &l[..i])
            } else if l.starts_with("CLIENT_URL, ") || l.starts_with("http://CLIENT_URL, ") {
                let mut c: Vec<&str> = l.split(", ").collect();
                if c.len() == 2 {
                    c[1] = "N";
                }
                c.join(", ") + "\n"
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// Runs a command and returns (exit code, stdout, whole stderr minus client log lines).
fn run_full(ctl: &Path, ep: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ctl)
        .arg(format!("--endpoints={ep}"))
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err: String = String::from_utf8_lossy(&out.stderr)
        .lines()
        // etcd's client library logs its own retries as JSON or `{"level"…` lines.
        .filter(|l| !l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

struct Pair {
    _dir: tempfile::TempDir,
    keel: Proc,
    etcd: Proc,
    keelctl: PathBuf,
    etcdctl: PathBuf,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let keel = keel_single(dir.path());
    let etcd = etcd_single(dir.path());
    let keelctl = keelctl_bin();
    let etcdctl = PathBuf::from("etcdctl");
    wait_ready(&keelctl, &keel.endpoint(), &keel);
    wait_ready(&etcdctl, &etcd.endpoint(), &etcd);
    Pair {
        _dir: dir,
        keel,
        etcd,
        keelctl,
        etcdctl,
    }
}

#[test]
fn maintenance_commands_print_what_etcdctl_prints() {
    let p = pair();
    let (kep, eep) = (p.keel.endpoint(), p.etcd.endpoint());
    let kids = Ids::of(&p.keelctl, &kep);
    let eids = Ids::of(&p.etcdctl, &eep);
    assert!(
        kids.client.starts_with("http://127.0.0.1:"),
        "keel lists its client URL: {}",
        kids.client
    );
    // The same small history on both, so that revision-dependent answers line up.
    for (ctl, ep) in [(&p.keelctl, &kep), (&p.etcdctl, &eep)] {
        assert_eq!(run_ctl(ctl, ep, &["put", "a", "1"], "").code, 0);
        assert_eq!(run_ctl(ctl, ep, &["put", "b", "2"], "").code, 0);
    }
    let mut compared = 0;
    let mut diffs = Vec::new();
    for line in [
        "member list",
        "member list -w json",
        "endpoint status",
        "endpoint status -w json",
        "endpoint status --cluster",
        "endpoint --cluster status -w json",
        "endpoint health",
        "endpoint health -w json",
        "endpoint health --cluster",
        "endpoint health --cluster -w json",
        "endpoint hashkv",
        "endpoint hashkv -w json",
        "endpoint hashkv --cluster",
        "endpoint hashkv --cluster -w json",
        "endpoint hashkv --rev=2",
        "alarm list",
        "alarm list -w json",
    ] {
        let args: Vec<&str> = line.split(' ').collect();
        let one = |ctl: &Path, ep: &str, ids: &Ids| {
            let (code, out, err) = run_full(ctl, ep, &args);
            // Without --cluster the endpoint is printed as given (host:port).
            let out = out.replace(ep, "CLIENT_URL");
            let err = err.replace(ep, "CLIENT_URL");
            let (out, err) = (normalise(&out, ids), normalise(&err, ids));
            (
                code,
                blank_simple(&blank_status_columns(&out)),
                blank_simple(&err),
            )
        };
        let k = one(&p.keelctl, &kep, &kids);
        let e = one(&p.etcdctl, &eep, &eids);
        compared += 1;
        assert_eq!(e.0, 0, "etcdctl {line}: {e:?}");
        if k != e {
            diffs.push(format!("`{line}`\n  keel: {k:?}\n  etcd: {e:?}"));
        }
    }
    assert_eq!(compared, 17);
    assert!(
        diffs.is_empty(),
        "{} of {compared} command lines differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn normaliser_blanks_only_what_it_should() {
    let ids = Ids {
        member_hex: "ff".into(),
        client: "http://127.0.0.1:1".into(),
        peer: "http://127.0.0.1:2".into(),
    };
    assert_eq!(
        normalise(
            r#"{"header":{"cluster_id":1,"member_id":255,"revision":3,"raft_term":2},"members":[{"ID":255,"name":"x","peerURLs":["http://127.0.0.1:2"],"clientURLs":["http://127.0.0.1:1"]}],"count":7}"#,
            &ids
        ),
        r#"{"header":{"cluster_id":N,"member_id":N,"revision":N,"raft_term":N},"members":[{"ID":MEMBER,"name":N,"peerURLs":["PEER_URL"],"clientURLs":["CLIENT_URL"]}],"count":7}"#
    );
    assert_eq!(
        blank_status_columns("e, ff, 3.4.23, 20 kB, true, false, 2, 9, 9, \n"),
        "e, ff, N, N, true, false, N, N, N, \n"
    );
    assert_eq!(
        blank_simple("http://CLIENT_URL, 7\n127.0.0.1:5, 7\n"),
        "http://CLIENT_URL, N\n127.0.0.1:5, 7\n"
    );
    assert_eq!(
        blank_simple("CLIENT_URL is healthy: successfully committed proposal: took = 1.2ms\nCLIENT_URL, 12345\n"),
        "CLIENT_URL is healthy: successfully committed proposal: took = N\nCLIENT_URL, N\n"
    );
}

/// An interactive `watch -i` session: stdin kept open, stdout lines read as they come.
struct Session {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Session {
    fn start(ctl: &Path, ep: &str, extra: &[&str]) -> Session {
        let mut child = Command::new(ctl)
            .arg(format!("--endpoints={ep}"))
            .args(["watch", "-i"])
            .args(extra)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout).lines() {
                if tx.send(l.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        Session {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            stderr,
        }
    }

    fn send(&mut self, line: &str) {
        let w = self.stdin.as_mut().unwrap();
        writeln!(w, "{line}").unwrap();
        w.flush().unwrap();
    }

    /// The next `n` stdout lines (fewer if none comes for 20 s).
    fn read(&self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => out.push(l),
                Err(_) => break,
            }
        }
        out
    }

    /// Closes stdin; returns the exit code and the stderr lines that are not client logs.
    fn end(mut self) -> (i32, Vec<String>) {
        drop(self.stdin.take());
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        let err = self.stderr.join().unwrap();
        let lines = err
            .lines()
            .filter(|l| !l.starts_with('{'))
            .map(str::to_string)
            .collect();
        (code, lines)
    }
}

/// The store's current revision (from a read's header).
fn current_revision(ctl: &Path, ep: &str) -> i64 {
    let r = run_ctl(ctl, ep, &["get", "x", "-w", "json"], "");
    let i = r.stdout.find("\"revision\":").expect("a header") + 11;
    let end = r.stdout[i..].find([',', '}']).unwrap();
    r.stdout[i..i + end].parse().unwrap()
}

/// Runs the same interactive session on one side; returns (stdout lines, exit code, stderr).
fn interactive(ctl: &Path, ep: &str, json: bool) -> (Vec<String>, i32, Vec<String>) {
    let extra: &[&str] = if json { &["-w", "json"] } else { &[] };
    let mut s = Session::start(ctl, ep, extra);
    let mut out = Vec::new();
    // History (revisions 2..=6 were written before): one prefix watch replayed from rev 2.
    s.send("watch w/ --prefix --rev 2");
    // Simple: PUT/key/value × 3 puts, DELETE/key/value × 2 deletes; json: one replayed batch.
    out.extend(s.read(if json { 1 } else { 15 }));
    for bad in ["", "get foo", "watch", "watch a b --prefix"] {
        s.send(bad);
    }
    // A second watch, on one key with its previous values, from the next revision: the events
    // written below come in that order whether or not the watch was set up first.
    let next = current_revision(ctl, ep) + 1;
    s.send(&format!("watch x --rev {next} --prev-kv"));
    for (args, lines) in [
        (&["put", "x", "v1"][..], 3),
        (&["put", "x", "v2"], 5),
        (&["put", "w/c", "3"], 3),
        (&["del", "x"], 5),
    ] {
        assert_eq!(run_ctl(ctl, ep, args, "").code, 0);
        out.extend(s.read(if json { 1 } else { lines }));
    }
    let (code, err) = s.end();
    (out, code, err)
}

#[test]
fn interactive_watch_prints_what_etcdctl_prints() {
    let p = pair();
    let (kep, eep) = (p.keel.endpoint(), p.etcd.endpoint());
    for (ctl, ep) in [(&p.keelctl, &kep), (&p.etcdctl, &eep)] {
        for line in [
            &["put", "w/a", "1"][..],
            &["put", "w/b", "2"],
            &["put", "w/a", "3"],
            &["put", "y", "4"],
            &["del", "w/", "--prefix"],
        ] {
            assert_eq!(run_ctl(ctl, ep, line, "").code, 0);
        }
    }
    for json in [false, true] {
        let k = interactive(&p.keelctl, &kep, json);
        let e = interactive(&p.etcdctl, &eep, json);
        let expected = if json { 5 } else { 31 };
        assert_eq!(e.0.len(), expected, "etcdctl printed {e:?}");
        let norm = |v: &[String]| {
            v.iter()
                .map(|l| {
                    let mut l = l.clone();
                    for f in ["cluster_id", "member_id", "raft_term"] {
                        l = blank_json(&l, f, true);
                    }
                    l
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(norm(&k.0), norm(&e.0), "stdout (json: {json})");
        assert_eq!(k.1, 3, "stdin's end ends the session (exit 3)");
        assert_eq!(
            (k.1, &k.2),
            (e.1, &e.2),
            "exit code and stderr (json: {json})"
        );
        assert_eq!(
            k.2.last().map(String::as_str),
            Some("Error: Error reading watch request line: EOF")
        );
    }
}
