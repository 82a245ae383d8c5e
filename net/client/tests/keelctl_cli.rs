//! keelctl's commands whose output carries per-server values (versions, sizes, URLs, ids), so
//! the differential test cannot compare them byte for byte: their layouts are checked here
//! against a keel server (endpoint status/health/hashkv, member list, defrag, snapshot save,
//! alarm list, lock with a command, elect, lease keep-alive --once, move-leader to itself).

mod common;

use common::*;

#[test]
fn keelctl_maintenance_and_recipe_commands() {
    let dir = tempfile::tempdir().unwrap();
    let srv = keel_single(dir.path());
    let ctl = keelctl_bin();
    let ep = srv.endpoint();
    wait_ready(&ctl, &ep, &srv);
    let run = |args: &[&str]| {
        let r = run_ctl(&ctl, &ep, args, "");
        assert_eq!(r.code, 0, "keelctl {args:?}: {r:?}");
        r.stdout
    };

    // endpoint status, simple: endpoint, id, version, size, is leader, is learner, term,
    // index, applied index, errors.
    let st = run(&["endpoint", "status"]);
    let cols: Vec<&str> = st.trim_end_matches('\n').split(", ").collect();
    assert_eq!(cols.len(), 10, "{st:?}");
    assert_eq!(cols[0], ep);
    assert_eq!(cols[4], "true", "a single member leads");
    let id = cols[1].to_string();
    assert!(u64::from_str_radix(&id, 16).is_ok());
    let table = run(&["endpoint", "status", "-w", "table"]);
    assert!(table.starts_with("+---"));
    assert!(table.contains("| RAFT APPLIED INDEX |"));
    assert!(run(&["endpoint", "status", "-w", "json"]).starts_with("[{\"Endpoint\":"));

    let json = run(&["endpoint", "health", "-w", "json"]);
    assert!(json.starts_with(&format!(
        "[{{\"endpoint\":\"{ep}\",\"health\":true,\"took\":\""
    )));

    let ml = run(&["member", "list"]);
    assert!(ml.starts_with(&format!("{id}, started, ")), "{ml:?}");
    assert!(ml.trim_end().ends_with(", false"));

    assert_eq!(
        run(&["defrag"]),
        format!("Finished defragmenting etcd member[{ep}]\n")
    );
    let snap = dir.path().join("snap.db");
    let snap_s = snap.display().to_string();
    assert_eq!(
        run(&["snapshot", "save", &snap_s]),
        format!("Snapshot saved at {snap_s}\n")
    );
    assert!(std::fs::metadata(&snap).unwrap().len() > 0);
    assert_eq!(run(&["alarm", "list"]), "");
    let hk = run(&["endpoint", "hashkv"]);
    assert!(hk.starts_with(&format!("{ep}, ")));

    // lock with a command: the command runs holding the lock, with the key and revision.
    let out = run(&[
        "lock",
        "mylock",
        "sh",
        "-c",
        "echo $ETCD_LOCK_KEY $ETCD_LOCK_REV",
    ]);
    let parts: Vec<&str> = out.split_whitespace().collect();
    assert!(parts[0].starts_with("mylock/"), "{out:?}");
    assert!(parts[1].parse::<i64>().unwrap() > 0);
    // The lock was released: the queue is empty.
    assert_eq!(run(&["get", "mylock/", "--prefix", "--count-only"]), "0\n");

    // lease keep-alive --once
    let g = run(&["lease", "grant", "30"]);
    let lease = g.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(
        run(&["lease", "keep-alive", "--once", &lease]),
        format!("lease {lease} keepalived with TTL(30)\n")
    );

    // move-leader to the leader itself is refused or a no-op, never a crash of keelctl.
    let r = run_ctl(&ctl, &ep, &["move-leader", &id], "");
    assert!(r.code == 0 || !r.errors.is_empty(), "{r:?}");
}

/// `check perf`, shortened with keelctl's `--duration`: writes under its prefix, prints
/// etcdctl's verdict lines (exit code matching the final PASS/FAIL), compacts and defragments
/// when asked, and leaves no key behind; a prefix that already holds keys is refused.
#[test]
fn keelctl_check_perf_short_run() {
    let dir = tempfile::tempdir().unwrap();
    let srv = keel_single(dir.path());
    let ctl = keelctl_bin();
    let ep = srv.endpoint();
    wait_ready(&ctl, &ep, &srv);
    let revision = || {
        let r = run_ctl(&ctl, &ep, &["get", "nothing", "-w", "json"], "");
        let i = r.stdout.find("\"revision\":").unwrap() + 11;
        let end = r.stdout[i..].find([',', '}']).unwrap();
        r.stdout[i..i + end].parse::<i64>().unwrap()
    };
    let before = revision();
    let r = run_ctl(
        &ctl,
        &ep,
        &[
            "check",
            "perf",
            "--duration=2s",
            "--prefix=/perf/",
            "--auto-compact",
            "--auto-defrag",
        ],
        "",
    );
    let after = revision();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{r:?}");
    // The delete of the written keys is the last revision: compaction happens there.
    assert_eq!(lines[0], format!("Compacting with revision {after}"));
    assert_eq!(lines[1], format!("Compacted with revision {after}"));
    assert_eq!(lines[2], format!("Defragmenting \"{ep}\""));
    assert_eq!(lines[3], format!("Defragmented \"{ep}\""));
    let num = |l: &str, pre: &str, suf: &str| -> f64 {
        l.strip_prefix(pre)
            .and_then(|x| x.strip_suffix(suf))
            .unwrap_or_else(|| panic!("{l:?} is not {pre}…{suf}"))
            .parse()
            .unwrap_or_else(|e| panic!("{l:?}: {e}"))
    };
    let mut ok = true;
    let rps = if lines[4].starts_with("PASS") {
        num(lines[4], "PASS: Throughput is ", " writes/s")
    } else {
        ok = false;
        num(lines[4], "FAIL: Throughput too low: ", " writes/s")
    };
    // 150 writes/s for 2 s, one revision each, then one delete.
    let writes = after - before - 1;
    assert!(writes >= 30, "only {writes} writes in 2 s: {r:?}");
    assert!((2.0..=200.0).contains(&rps), "{r:?}");
    let slowest = if lines[5].starts_with("PASS") {
        num(lines[5], "PASS: Slowest request took ", "s")
    } else {
        ok = false;
        num(lines[5], "Slowest request took too long: ", "s")
    };
    assert!(slowest > 0.0, "{r:?}");
    if lines[6].starts_with("PASS") {
        num(lines[6], "PASS: Stddev is ", "s");
    } else {
        ok = false;
        num(lines[6], "Stddev too high: ", "s");
    }
    assert_eq!(lines[7], if ok { "PASS" } else { "FAIL" }, "{r:?}");
    assert_eq!(r.code, if ok { 0 } else { 1 }, "{r:?}");
    // Nothing left under the prefix (and the store was compacted at the delete).
    let left = run_ctl(
        &ctl,
        &ep,
        &["get", "/perf/", "--prefix", "--count-only"],
        "",
    );
    assert_eq!(left.stdout, "0\n", "{left:?}");
    let old = run_ctl(
        &ctl,
        &ep,
        &["get", "/perf/", "--prefix", &format!("--rev={before}")],
        "",
    );
    assert_eq!(
        old.code, 1,
        "revisions before {after} were compacted: {old:?}"
    );

    // A prefix holding keys is refused before anything is written.
    assert_eq!(run_ctl(&ctl, &ep, &["put", "/perf/x", "v"], "").code, 0);
    let r = run_ctl(
        &ctl,
        &ep,
        &["check", "perf", "--duration=1s", "--prefix=/perf/"],
        "",
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(
        r.errors,
        ["Error: prefix \"/perf/\" has keys. Delete with etcdctl del --prefix /perf/ first"]
    );
    assert_eq!(r.stdout, "");
}
