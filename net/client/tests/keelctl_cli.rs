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
