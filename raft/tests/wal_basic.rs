//! WAL behaviour through its public API: round trips across reopen, group commit, conflict
//! truncation, snapshots and compaction, reads from disk, gateway validation and fail-stop (D2).

mod wal_common;

use keel_raft::wal::{
    HardState, IoHook, IoOp, SnapshotMarker, SyncMode, Wal, WalError, WalOptions, MIN_SEGMENT_SIZE,
};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wal_common::{append_in_overlapping_pairs, entry, groups_on_disk, run, small};

async fn append_range(wal: &Wal, lo: u64, hi: u64, term: u64) {
    for i in lo..hi {
        let last = wal.append(vec![entry(i, term)], None).await.unwrap();
        assert_eq!(last, i);
    }
}

async fn check_range(wal: &Wal, lo: u64, hi: u64, term: u64) {
    let got = wal.entries(lo, hi).await.unwrap();
    assert_eq!(got.len() as u64, hi - lo);
    for (k, e) in got.iter().enumerate() {
        assert_eq!(*e, entry(lo + k as u64, term), "entry {}", lo + k as u64);
    }
}

#[test]
fn entries_and_hard_state_survive_reopen_in_both_sync_modes() {
    for sync in [SyncMode::Dsync, SyncMode::Fdatasync] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let opts = WalOptions {
                sync,
                ..small(64 << 10)
            };
            let wal = Wal::open(&path, opts.clone()).await.unwrap();
            assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
            append_range(&wal, 1, 300, 1).await;
            let hs = HardState {
                term: 1,
                vote: 2,
                commit: 250,
            };
            assert_eq!(
                wal.append(vec![entry(300, 1)], Some(hs)).await.unwrap(),
                300
            );
            assert!(wal.stats().rollovers > 0, "64 KiB segments must roll over");
            drop(wal);
            let wal = Wal::open(&path, opts).await.unwrap();
            assert_eq!((wal.first_index(), wal.last_index()), (1, 300));
            assert_eq!(wal.hard_state(), hs);
            assert_eq!(wal.term(300), Some(1));
            check_range(&wal, 1, 301, 1).await;
            append_range(&wal, 301, 310, 2).await;
            check_range(&wal, 301, 310, 2).await;
        });
    }
}

#[test]
fn concurrent_appenders_share_groups() {
    for coalesce in [true, false] {
        concurrent_appenders_share_groups_with(coalesce);
    }
}

fn concurrent_appenders_share_groups_with(coalesce: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = WalOptions {
            coalesce,
            ..WalOptions::default()
        };
        let wal = Wal::open(&path, opts).await.unwrap();
        wal.ready_next_segment().await.unwrap();
        let next = Rc::new(Cell::new(1u64));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (wal, next) = (wal.clone(), next.clone());
                glommio::spawn_local(async move {
                    let i = next.get();
                    next.set(i + 1);
                    let durable = wal.append(vec![entry(i, 1)], None).await.unwrap();
                    assert!(durable >= i);
                    assert!(wal.last_index() >= i, "resolved before it was durable");
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let s = wal.stats();
        assert_eq!(wal.last_index(), 200);
        assert!(
            s.groups <= 20,
            "200 concurrent appends took {} groups",
            s.groups
        );
        drop(wal);
        let wal = Wal::open(&path, WalOptions::default()).await.unwrap();
        check_range(&wal, 1, 201, 1).await;
    });
}

#[test]
fn a_group_goes_out_while_the_one_before_is_in_flight_and_both_resolve_in_order() {
    for overlap_groups in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let groups = run(move || async move {
            // Small segments: the pairs cross rollovers, which wait for the group in flight.
            let opts = WalOptions {
                overlap_groups,
                ..small(MIN_SEGMENT_SIZE)
            };
            let wal = Wal::open(&path, opts.clone()).await.unwrap();
            append_in_overlapping_pairs(&wal, 1, 20).await;
            assert_eq!(wal.last_index(), 40);
            assert_eq!(wal.stats().groups, 40, "one group per append");
            wal.close().await;
            let groups = groups_on_disk(&path).await;
            let wal = Wal::open(&path, opts).await.unwrap();
            check_range(&wal, 1, 41, 1).await;
            groups
        });
        assert!(
            groups.last().unwrap().0 >= 3,
            "crossed at least two rollovers"
        );
        let overlapped = groups.iter().filter(|g| g.3).count();
        if overlap_groups {
            // Each pair's second group is cut while the first is unpublished.
            assert!(overlapped >= 10, "{overlapped} of 40 groups overlapped");
            for (k, g) in groups.iter().enumerate() {
                if k == 0 || groups[k - 1].0 != g.0 {
                    assert!(!g.3, "a segment's first group follows nothing in flight");
                }
            }
        } else {
            assert_eq!(overlapped, 0, "one group at a time never overlaps");
        }
    }
}

#[test]
fn conflicting_suffix_is_replaced_and_truncation_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = small(64 << 10);
        let wal = Wal::open(&path, opts.clone()).await.unwrap();
        append_range(&wal, 1, 11, 1).await;
        assert_eq!(
            wal.append(vec![entry(5, 2), entry(6, 2)], None)
                .await
                .unwrap(),
            6
        );
        assert_eq!(wal.last_index(), 6);
        check_range(&wal, 5, 7, 2).await;
        drop(wal);
        let wal = Wal::open(&path, opts.clone()).await.unwrap();
        assert_eq!(wal.last_index(), 6);
        check_range(&wal, 1, 5, 1).await;
        check_range(&wal, 5, 7, 2).await;
        assert_eq!(wal.truncate_suffix(4).await.unwrap(), 3);
        drop(wal);
        let wal = Wal::open(&path, opts).await.unwrap();
        assert_eq!(wal.last_index(), 3);
        assert!(matches!(
            wal.entries(3, 5).await,
            Err(WalError::Unavailable { .. })
        ));
    });
}

#[test]
fn compaction_releases_whole_segments_before_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = uncached(IoHook::none());
        let wal = Wal::open(&path, opts.clone()).await.unwrap();
        append_range(&wal, 1, 400, 1).await;
        let before = wal.segments();
        assert!(before.len() >= 5, "segments: {before:?}");
        assert!(
            matches!(wal.compact(300).await, Err(WalError::InvalidArgument(_))),
            "no snapshot yet"
        );
        wal.save_snapshot(SnapshotMarker {
            index: 300,
            term: 1,
        })
        .await
        .unwrap();
        let released = wal.compact(300).await.unwrap();
        assert!(released >= 2, "released {released} of {before:?}");
        let first = wal.first_index();
        assert!(first > 1 && first <= 301, "first index {first}");
        check_range(&wal, first, 400, 1).await;
        assert!(matches!(
            wal.entries(first - 1, first).await,
            Err(WalError::Unavailable { .. })
        ));
        let names = dir_names(&path);
        let segs = names.iter().filter(|n| n.ends_with(".wal")).count();
        assert_eq!(
            segs,
            wal.segments().len() + 1,
            "segments in use plus the spare"
        );
        let pooled = names
            .iter()
            .filter(|n| n.ends_with(".recycled.wal.tmp"))
            .count();
        assert_eq!(
            pooled, 2,
            "two released segments kept for recycling: {names:?}"
        );
        assert_eq!(names.len(), segs + pooled, "nothing else: {names:?}");
        drop(wal);
        let wal = Wal::open(&path, opts).await.unwrap();
        assert_eq!(wal.first_index(), first);
        assert_eq!(
            wal.snapshot(),
            SnapshotMarker {
                index: 300,
                term: 1
            }
        );
        check_range(&wal, first, 400, 1).await;
        append_range(&wal, 400, 410, 1).await;
    });
}

/// What `compact` saw at each segment's unlink: the thread it ran on and whether the process
/// still had the segment open.
#[derive(Debug)]
struct Unlink {
    seq: u64,
    thread: std::thread::ThreadId,
    still_open: bool,
}

/// Whether any descriptor of this process refers to `path`.
fn open_in_this_process(path: &std::path::Path) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
}

/// 64 KiB segments and no entry cache (reads go to the files), with `hook`.
fn uncached(hook: IoHook) -> WalOptions {
    WalOptions {
        cache_bytes: 0,
        io_hook: hook,
        ..small(64 << 10)
    }
}

/// Opens the WAL in `path`, appends entries `1..last` (term 1) and records a snapshot at `snap`;
/// returns it with its segments as they were before the snapshot.
async fn snapshotted(
    path: &std::path::Path,
    opts: WalOptions,
    last: u64,
    snap: u64,
) -> (Wal, Vec<u64>) {
    let wal = Wal::open(path, opts).await.unwrap();
    append_range(&wal, 1, last, 1).await;
    let before = wal.segments();
    wal.save_snapshot(SnapshotMarker {
        index: snap,
        term: 1,
    })
    .await
    .unwrap();
    (wal, before)
}

fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn compacted_segments_are_closed_first_and_unlinked_off_the_executor() {
    // Whoever drops the last reference to an unlinked segment frees its blocks (on a filesystem
    // mounted with `discard`, a synchronous discard: 14-51 ms measured here on the executor
    // before, stalling every role on it). The two oldest released segments go to the recycle
    // pool (closed, renamed); every later one must be unlinked after the WAL's own close, on
    // another thread.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Unlink>::new()));
    let hook = {
        let (seen, path) = (seen.clone(), path.clone());
        IoHook::new(move |op| {
            if let IoOp::Remove { seq } = op {
                let file = keel_raft::wal::segment_path(&path, seq);
                seen.lock().unwrap().push(Unlink {
                    seq,
                    thread: std::thread::current().id(),
                    still_open: open_in_this_process(&file),
                });
            }
            None
        })
    };
    let dir_path = path.clone();
    let (executor, removed) = run(move || async move {
        let opts = uncached(hook);
        let (wal, before) = snapshotted(&dir_path, opts, 700, 600).await;
        let released = wal.compact(600).await.unwrap();
        let after = wal.segments();
        let removed: Vec<u64> = before.into_iter().filter(|s| !after.contains(s)).collect();
        assert_eq!(released, removed.len());
        assert!(released >= 4, "released {released}");
        for (k, seq) in removed.iter().enumerate() {
            let file = keel_raft::wal::segment_path(&dir_path, *seq);
            assert!(!file.exists(), "segment {seq} still on disk");
            let pooled = keel_raft::wal::recycle_path(&dir_path, *seq);
            assert_eq!(pooled.exists(), k < 2, "segment {seq} pooled?");
            assert!(
                !open_in_this_process(&pooled),
                "pooled segment {seq} left open"
            );
        }
        check_range(&wal, wal.first_index(), 700, 1).await;
        (std::thread::current().id(), removed)
    });
    let seen = seen.lock().unwrap();
    let seqs: Vec<u64> = seen.iter().map(|u| u.seq).collect();
    assert_eq!(
        seqs,
        removed[2..],
        "one unlink per released segment past the pool, oldest first"
    );
    for u in seen.iter() {
        assert!(
            !u.still_open,
            "segment {} unlinked while still open: {u:?}",
            u.seq
        );
        assert_ne!(
            u.thread, executor,
            "segment {} unlinked on the executor",
            u.seq
        );
    }
}

#[test]
fn a_failed_segment_removal_fails_the_compaction_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let before = compaction_failing_at(&path, |op| matches!(op, IoOp::Remove { .. }), 1).await;
        // The first two victims went to the recycle pool; the third, whose unlink failed, and
        // every later segment remain.
        for seq in &before[..2] {
            assert!(!keel_raft::wal::segment_path(&path, *seq).exists());
            assert!(keel_raft::wal::recycle_path(&path, *seq).exists());
        }
        assert_segments_remain(&path, &before[2..]);
    });
}

/// Compacts a WAL (entries 1..700, snapshot at 600) whose `n`th I/O operation matching `pred`
/// fails; checks that the compaction reports that fault and returns the segments before it.
async fn compaction_failing_at(path: &std::path::Path, pred: OpFilter, n: usize) -> Vec<u64> {
    let (wal, before) = snapshotted(path, uncached(fail_nth(pred, n)), 700, 600).await;
    let err = wal.compact(600).await.unwrap_err();
    assert!(
        matches!(
            &err,
            WalError::Io {
                op: "injected fault",
                ..
            }
        ),
        "{err:?}"
    );
    before
}

fn assert_segments_remain(path: &std::path::Path, seqs: &[u64]) {
    for seq in seqs {
        assert!(
            keel_raft::wal::segment_path(path, *seq).exists(),
            "segment {seq} removed"
        );
    }
}

#[test]
fn each_released_segment_is_gone_durably_before_the_next_is_touched() {
    // What survives a crash in the middle of a compaction must be a suffix of the segment chain
    // (open refuses a gap). On a filesystem that does not order directory updates (ext4 without
    // a journal) only a directory sync between two removals guarantees that: one sync per
    // released segment, after its move to the recycle pool or its unlink, before the next.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<IoOp>::new()));
    let hook = {
        let seen = seen.clone();
        IoHook::new(move |op| {
            if matches!(op, IoOp::Remove { .. } | IoOp::SyncDir { .. }) {
                seen.lock().unwrap().push(op);
            }
            None
        })
    };
    let removed = run(move || async move {
        let (wal, before) = snapshotted(&path, uncached(hook), 700, 600).await;
        let released = wal.compact(600).await.unwrap();
        let after = wal.segments();
        let removed: Vec<u64> = before.into_iter().filter(|s| !after.contains(s)).collect();
        assert_eq!(released, removed.len());
        assert!(released >= 4, "released {released}");
        removed
    });
    // The first two go to the recycle pool (a rename the hook does not see), the rest are
    // unlinked; each is followed by its directory sync.
    let mut want = Vec::new();
    for (k, &seq) in removed.iter().enumerate() {
        if k >= 2 {
            want.push(IoOp::Remove { seq });
        }
        want.push(IoOp::SyncDir { seq });
    }
    assert_eq!(*seen.lock().unwrap(), want);
}

#[test]
fn a_failed_directory_sync_stops_the_compaction_before_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        // The third released segment's sync fails: it is unlinked, the ones after it are not.
        let before = compaction_failing_at(&path, |op| matches!(op, IoOp::SyncDir { .. }), 3).await;
        assert!(!keel_raft::wal::segment_path(&path, before[2]).exists());
        assert_segments_remain(&path, &before[3..]);
    });
}

/// A WAL (entries 1..400, snapshot at 300) after a compaction that filled the recycle pool;
/// returns it with the pooled files' paths and inodes (a recycled file keeps its inode).
async fn with_full_pool(
    path: &std::path::Path,
    opts: WalOptions,
) -> (Wal, Vec<std::path::PathBuf>, Vec<u64>) {
    let (wal, before) = snapshotted(path, opts, 400, 300).await;
    wal.compact(300).await.unwrap();
    let pooled: Vec<std::path::PathBuf> = before[..2]
        .iter()
        .map(|s| keel_raft::wal::recycle_path(path, *s))
        .collect();
    let inodes = pooled.iter().map(|p| inode(p)).collect();
    (wal, pooled, inodes)
}

/// Appends 20 entries at a time from `next`, each time waiting for the spare, until `want` of
/// the files with these `inodes` are segments; returns the next index.
async fn append_until_recycled(
    wal: &Wal,
    dir: &std::path::Path,
    mut next: u64,
    inodes: &[u64],
    want: usize,
) -> u64 {
    loop {
        append_range(wal, next, next + 20, 1).await;
        next += 20;
        wal.ready_next_segment().await.unwrap();
        let names = dir_names(dir);
        let reused = names
            .iter()
            .filter(|n| n.ends_with(".wal") && inodes.contains(&inode(&dir.join(n))))
            .count();
        if reused == want {
            return next;
        }
        assert!(next < 2000, "pooled files never reused: {names:?}");
    }
}

#[test]
fn released_segments_are_recycled_and_their_old_bytes_never_read_as_records() {
    // After a compaction the next spares are the released files with a new header; their old
    // groups (checksummed with the old segment's identity) must read as the end of data, both
    // while the WAL runs and on reopen, with the segment full or partly written.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = uncached(IoHook::none());
        let (wal, _, inodes) = with_full_pool(&path, opts.clone()).await;
        let mut next = append_until_recycled(&wal, &path, 400, &inodes, 2).await;
        let names = dir_names(&path);
        assert!(
            !names.iter().any(|n| n.ends_with(".recycled.wal.tmp")),
            "pool emptied: {names:?}"
        );
        let first = wal.first_index();
        check_range(&wal, first, next, 1).await;
        drop(wal);
        // Reopen with the recycled spare (or current segment) holding only old bytes past its
        // header, and again after writing into them.
        let wal = Wal::open(&path, opts.clone()).await.unwrap();
        check_range(&wal, first, next, 1).await;
        append_range(&wal, next, next + 150, 1).await;
        next += 150;
        drop(wal);
        let wal = Wal::open(&path, opts).await.unwrap();
        check_range(&wal, first, next, 1).await;
        append_range(&wal, next, next + 5, 1).await;
        check_range(&wal, first, next + 5, 1).await;
    });
}

#[test]
fn the_recycle_pool_survives_a_restart() {
    // A restart keeps the released segments waiting for recycling (freeing and later zero-filling
    // them again would cost a discard at open and a 64 MiB write), and recycles them next.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let opts = uncached(IoHook::none());
        let (wal, pooled, inodes) = with_full_pool(&path, opts.clone()).await;
        drop(wal);
        let wal = Wal::open(&path, opts).await.unwrap();
        for p in &pooled {
            assert!(p.exists(), "{} removed at open", p.display());
        }
        let next = append_until_recycled(&wal, &path, 400, &inodes, 1).await;
        check_range(&wal, wal.first_index(), next, 1).await;
    });
}

#[test]
fn close_waits_for_the_group_in_flight_and_stops_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let wal = Wal::open(&path, small(64 << 10)).await.unwrap();
        let w = wal.clone();
        let pending = glommio::spawn_local(async move { w.append(vec![entry(1, 1)], None).await });
        glommio::executor().yield_now().await;
        wal.close().await;
        assert_eq!(pending.await.unwrap(), 1, "the append in flight completes");
        assert!(matches!(
            wal.append(vec![entry(2, 1)], None).await,
            Err(WalError::Failed { .. })
        ));
        drop(wal);
        let wal = Wal::open(&path, small(64 << 10)).await.unwrap();
        assert_eq!(wal.last_index(), 1);
    });
}

#[test]
fn snapshot_past_the_log_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let wal = Wal::open(&path, small(64 << 10)).await.unwrap();
        append_range(&wal, 1, 5, 1).await;
        wal.save_snapshot(SnapshotMarker {
            index: 100,
            term: 3,
        })
        .await
        .unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (101, 100));
        assert!(matches!(
            wal.append(vec![entry(50, 3)], None).await,
            Err(WalError::InvalidArgument(_))
        ));
        append_range(&wal, 101, 103, 3).await;
        drop(wal);
        let wal = Wal::open(&path, small(64 << 10)).await.unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (101, 102));
        assert_eq!(wal.term(100), Some(3));
    });
}

#[test]
fn gateway_rejects_gaps_and_oversized_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let wal = Wal::open(&path, small(64 << 10)).await.unwrap();
        assert!(matches!(
            wal.append(vec![entry(2, 1)], None).await,
            Err(WalError::InvalidArgument(_))
        ));
        assert!(matches!(
            wal.append(vec![entry(0, 1)], None).await,
            Err(WalError::InvalidArgument(_))
        ));
        let mut big = entry(1, 1);
        big.data = vec![7; 70 << 10];
        assert!(matches!(
            wal.append(vec![big], None).await,
            Err(WalError::TooLarge { .. })
        ));
        assert!(!wal.is_failed(), "request errors do not fail the WAL");
        append_range(&wal, 1, 3, 1).await;
    });
}

type OpFilter = fn(&IoOp) -> bool;

fn fail_nth(pred: OpFilter, n: usize) -> IoHook {
    let seen = AtomicUsize::new(0);
    IoHook::new(move |op| {
        if !pred(&op) {
            return None;
        }
        let k = seen.fetch_add(1, Ordering::Relaxed) + 1;
        (k == n).then(|| std::io::Error::other("injected EIO"))
    })
}

#[test]
fn failed_write_or_sync_stops_the_wal_until_reopened() {
    let cases: [(SyncMode, OpFilter); 2] = [
        (SyncMode::Dsync, |op| matches!(op, IoOp::Write { .. })),
        // Only syncs of segment 1: the background preparation of the spare (segment 2) also
        // syncs, at a moment that depends on scheduling, and must not take the injected error.
        (SyncMode::Fdatasync, |op| {
            matches!(op, IoOp::Sync { seq: 1 })
        }),
    ];
    for (sync, pred) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(move || async move {
            // The first Sync op of segment 1 is its preparation; fail the 4th op of the kind.
            let opts = WalOptions {
                sync,
                io_hook: fail_nth(pred, 4),
                ..small(64 << 10)
            };
            let wal = Wal::open(&path, opts).await.unwrap();
            let mut ok = 0;
            let mut first_err = None;
            for i in 1..=10 {
                match wal.append(vec![entry(i, 1)], None).await {
                    Ok(_) if first_err.is_none() => ok = i,
                    Ok(_) => panic!("append {i} succeeded after a failure"),
                    Err(e) => {
                        assert!(e.is_fatal());
                        first_err.get_or_insert(e);
                    }
                }
            }
            assert!(
                matches!(first_err, Some(WalError::Io { .. })),
                "{first_err:?}"
            );
            assert!(wal.is_failed());
            assert!(matches!(
                wal.append(vec![entry(ok + 1, 1)], None).await,
                Err(WalError::Failed { .. })
            ));
            assert!(matches!(
                wal.save_hard_state(HardState::default()).await,
                Err(WalError::Failed { .. })
            ));
            drop(wal);
            let wal = Wal::open(&path, small(64 << 10)).await.unwrap();
            assert!(
                wal.last_index() >= ok,
                "acknowledged entries lost: {} < {ok}",
                wal.last_index()
            );
            check_range(&wal, 1, ok + 1, 1).await;
        });
    }
}
