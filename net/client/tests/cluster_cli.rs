//! keelctl against a 3-member keel cluster: `--cluster` makes `endpoint status`, `endpoint
//! health`, `endpoint hashkv` and `defrag` use every member's client URL from the member list
//! (as etcdctl does), though keelctl was given one endpoint only.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

#[test]
fn cluster_flag_reaches_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = keel_cluster(dir.path());
    let ctl = keelctl_bin();
    let ep = members[0].endpoint();
    wait_ready(&ctl, &ep, &members[0]);
    let urls: BTreeSet<String> = members
        .iter()
        .map(|m| format!("http://{}", m.endpoint()))
        .collect();
    // Members publish their client URLs shortly after start.
    wait_for("client URLs published", Duration::from_secs(30), || {
        let r = run_ctl(&ctl, &ep, &["member", "list"], "");
        let listed: BTreeSet<String> = r
            .stdout
            .lines()
            .filter_map(|l| l.split(", ").nth(4).map(str::to_string))
            .collect();
        (listed == urls).then_some(())
    });
    let run = |args: &[&str]| {
        let r = run_ctl(&ctl, &ep, args, "");
        assert_eq!(r.code, 0, "keelctl {args:?}: {r:?}");
        r.stdout
    };
    let first_cols = |out: &str| -> BTreeSet<String> {
        out.lines()
            .map(|l| l.split(", ").next().unwrap().to_string())
            .collect()
    };

    // Without --cluster: the one endpoint given.
    assert_eq!(run(&["endpoint", "status"]).lines().count(), 1);
    let st = run(&["endpoint", "status", "--cluster"]);
    assert_eq!(first_cols(&st), urls, "{st}");
    let leaders = st.lines().filter(|l| l.contains(", true, false, ")).count();
    assert_eq!(leaders, 1, "exactly one member leads: {st}");
    // The flag also goes before the subcommand, as etcdctl's persistent flag does.
    let js = run(&["endpoint", "--cluster", "status", "-w", "json"]);
    assert_eq!(js.matches("{\"Endpoint\":\"http://").count(), 3, "{js}");

    let h = run_ctl(&ctl, &ep, &["endpoint", "health", "--cluster"], "");
    assert_eq!(h.code, 0, "{h:?}");
    let hj = run(&["endpoint", "health", "--cluster", "-w", "json"]);
    assert_eq!(hj.matches("\"health\":true").count(), 3, "{hj}");
    for u in &urls {
        assert!(hj.contains(&format!("\"endpoint\":\"{u}\"")), "{hj}");
    }

    run(&["put", "k", "v"]);
    // Followers apply the write a moment later: wait until the three hashes agree.
    let hk = wait_for("equal hashes", Duration::from_secs(30), || {
        let out = run(&["endpoint", "hashkv", "--cluster"]);
        let hashes: BTreeSet<&str> = out.lines().filter_map(|l| l.split(", ").nth(1)).collect();
        (out.lines().count() == 3 && hashes.len() == 1).then_some(out)
    });
    assert_eq!(first_cols(&hk), urls);

    let d = run(&["defrag", "--cluster"]);
    let done: BTreeSet<String> = d
        .lines()
        .map(|l| {
            l.strip_prefix("Finished defragmenting etcd member[")
                .and_then(|l| l.strip_suffix(']'))
                .unwrap_or_else(|| panic!("{d}"))
                .to_string()
        })
        .collect();
    assert_eq!(done, urls);

    // A member down: status still lists the others and exits 1; health reports it unhealthy.
    members[2].kill();
    let r = run_ctl(
        &ctl,
        &ep,
        &["endpoint", "status", "--cluster", "--command-timeout=1s"],
        "",
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout.lines().count(), 2, "{r:?}");
    let r = run_ctl(
        &ctl,
        &ep,
        &[
            "endpoint",
            "health",
            "--cluster",
            "--command-timeout=1s",
            "-w",
            "json",
        ],
        "",
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.errors, ["Error: unhealthy cluster"]);
    assert_eq!(r.stdout.matches("\"health\":false").count(), 1, "{r:?}");
}
