//! Torn and corrupt data on disk (DESIGN.md §6, D1): damage confined to the last group written is a
//! torn tail and is dropped; damage followed by valid data is corruption and the WAL refuses to
//! open, naming the segment file and byte offset. Also the dump tool on both kinds of directory.

mod wal_common;

use keel_raft::wal::{
    prime_iopoll_probe, scan_dir, segment_path, Wal, WalError, WalOptions, BLOCK,
};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use wal_common::{append_in_overlapping_pairs, entry, groups_on_disk, run, small};

/// Writes entries `1..=n` to a fresh WAL, one group each; returns (seq, group offset, group
/// length) for every group in the directory, in order.
fn build(dir: &Path, n: u64, opts: WalOptions, data_len: Option<usize>) -> Vec<(u64, u64, usize)> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let wal = Wal::open(&dir, opts).await.unwrap();
        for i in 1..=n {
            let mut e = entry(i, 1);
            if let Some(len) = data_len {
                e.data = vec![i as u8; len];
            }
            wal.append(vec![e], None).await.unwrap();
        }
        drop(wal);
        prime_iopoll_probe(&dir).await.unwrap();
        let segs = scan_dir(&dir).await.unwrap();
        segs.iter()
            .flat_map(|s| {
                s.scan
                    .groups
                    .iter()
                    .map(|(off, g)| (s.scan.header.seq, *off, g.padded_len))
            })
            .collect()
    })
}

fn reopen(dir: &Path, opts: WalOptions) -> Result<(u64, u64), WalError> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let wal = Wal::open(&dir, opts).await?;
        let (first, last) = (wal.first_index(), wal.last_index());
        // Everything it claims to hold must read back intact.
        let got = wal.entries(first, last + 1).await?;
        for e in &got {
            assert_eq!(e.index, got[0].index + (e.index - got[0].index));
            assert_eq!(e.term, 1);
        }
        Ok((first, last))
    })
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn expect_corrupt(r: Result<(u64, u64), WalError>, segment: &Path, offset: u64) {
    match r {
        Err(WalError::Corrupt {
            segment: s,
            offset: o,
            reason,
        }) => {
            assert_eq!((s.as_path(), o), (segment, offset), "reason: {reason}");
            let msg = WalError::Corrupt {
                segment: s,
                offset: o,
                reason,
            }
            .to_string();
            assert!(
                msg.contains(&segment.display().to_string()) && msg.contains(&offset.to_string()),
                "{msg}"
            );
        }
        other => panic!(
            "expected corruption at {} offset {offset}, got {other:?}",
            segment.display()
        ),
    }
}

/// Writes entries `1..=40` as 20 pairs of groups, each pair's second an overlap group; returns
/// every group as [`groups_on_disk`] lists it.
fn build_overlapped(dir: &Path) -> Vec<(u64, u64, usize, bool, u64)> {
    let dir = dir.to_path_buf();
    run(move || async move {
        let wal = Wal::open(&dir, WalOptions::default()).await.unwrap();
        append_in_overlapping_pairs(&wal, 1, 20).await;
        wal.close().await;
        groups_on_disk(&dir).await
    })
}

/// The last overlap group with at least two groups before it and one after it.
fn overlap_group_in_the_middle(groups: &[(u64, u64, usize, bool, u64)]) -> usize {
    (2..groups.len() - 1)
        .rev()
        .find(|&k| groups[k].3)
        .expect("an overlap group in the middle")
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = vec![0; len];
    f.read_exact(&mut b).unwrap();
    b
}

#[test]
fn a_torn_group_then_a_whole_overlap_group_is_a_torn_tail_and_the_overlap_group_never_returns() {
    // A crash with two groups in flight: the first torn, the second (its overlap) whole.
    let dir = tempfile::tempdir().unwrap();
    let groups = build_overlapped(dir.path());
    let k = overlap_group_in_the_middle(&groups);
    let (seq, torn_off, torn_len, _, _) = groups[k - 1];
    let seg = segment_path(dir.path(), seq);
    overwrite(&seg, torn_off, &vec![0; torn_len]);
    for g in &groups[k + 1..] {
        overwrite(&segment_path(dir.path(), g.0), g.1, &vec![0; g.2]);
    }
    let kept = groups[k - 2].4;
    // The dump tool, read-only, says what open will do.
    let (code, text) = dump(dir.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(" overlap\n"),
        "overlap groups are marked: {text}"
    );
    let torn = format!("torn tail: overlap group at {}", groups[k].1);
    assert!(text.contains(&torn), "{text}");
    assert!(
        text.contains(&format!("recovered: entries [1, {kept}]")),
        "{text}"
    );
    assert_eq!(
        reopen(dir.path(), WalOptions::default()).unwrap(),
        (1, kept)
    );
    // Open zeroed the dropped overlap group's frame ...
    assert!(
        read_at(&seg, groups[k].1, BLOCK).iter().all(|&b| b == 0),
        "the overlap group's frame is still on disk"
    );
    // ... so a new group ending exactly where it starts does not bring its entry back.
    let d = dir.path().to_path_buf();
    run(move || async move {
        let wal = Wal::open(&d, WalOptions::default()).await.unwrap();
        wal.append(vec![entry(kept + 1, 1), entry(kept + 2, 1)], None)
            .await
            .unwrap();
        wal.close().await;
        let after = groups_on_disk(&d).await;
        assert_eq!(
            after.last().map(|g| g.1 + g.2 as u64),
            Some(groups[k].1),
            "the new group ends where the dropped overlap group started"
        );
    });
    assert_eq!(
        reopen(dir.path(), WalOptions::default()).unwrap(),
        (1, kept + 2)
    );
}

#[test]
fn an_invalid_group_then_an_overlap_group_and_more_data_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let groups = build_overlapped(dir.path());
    let k = overlap_group_in_the_middle(&groups);
    let (seq, off, len, _, _) = groups[k - 1];
    let seg = segment_path(dir.path(), seq);
    overwrite(&seg, off, &vec![0; len]);
    expect_corrupt(reopen(dir.path(), WalOptions::default()), &seg, off);
}

#[test]
fn zeroed_last_group_is_a_torn_tail_and_appends_continue_there() {
    let dir = tempfile::tempdir().unwrap();
    let groups = build(dir.path(), 20, WalOptions::default(), None);
    let (seq, off, len) = *groups.last().unwrap();
    overwrite(&segment_path(dir.path(), seq), off, &vec![0; len]);
    assert_eq!(reopen(dir.path(), WalOptions::default()).unwrap(), (1, 19));
    let d = dir.path().to_path_buf();
    run(move || async move {
        let wal = Wal::open(&d, WalOptions::default()).await.unwrap();
        wal.append(vec![entry(20, 1), entry(21, 1)], None)
            .await
            .unwrap();
    });
    assert_eq!(reopen(dir.path(), WalOptions::default()).unwrap(), (1, 21));
}

#[test]
fn scribbled_blocks_of_a_multi_block_last_group_are_a_torn_tail() {
    // Entries of 10 000 bytes: every group spans 3 blocks; damage each block of the last in turn.
    for block in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let groups = build(dir.path(), 8, WalOptions::default(), Some(10_000));
        let (seq, off, len) = *groups.last().unwrap();
        assert_eq!(len, 3 * BLOCK);
        overwrite(
            &segment_path(dir.path(), seq),
            off + block * BLOCK as u64,
            &garbage(BLOCK, block + 1),
        );
        assert_eq!(
            reopen(dir.path(), WalOptions::default()).unwrap(),
            (1, 7),
            "damaged block {block}"
        );
    }
}

#[test]
fn scribble_in_the_middle_of_a_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let groups = build(dir.path(), 20, WalOptions::default(), None);
    let (seq, off, _) = groups[4];
    let path = segment_path(dir.path(), seq);
    overwrite(&path, off + 30, &garbage(16, 9));
    expect_corrupt(reopen(dir.path(), WalOptions::default()), &path, off);
}

#[test]
fn one_flipped_bit_in_an_old_entry_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let groups = build(dir.path(), 20, WalOptions::default(), Some(200));
    let (seq, off, _) = groups[10];
    let path = segment_path(dir.path(), seq);
    let mut b = std::fs::read(&path).unwrap()[off as usize + 150..off as usize + 151].to_vec();
    b[0] ^= 0x10;
    overwrite(&path, off + 150, &b);
    expect_corrupt(reopen(dir.path(), WalOptions::default()), &path, off);
}

#[test]
fn damaged_last_group_of_a_full_segment_is_corruption_not_a_tail() {
    let dir = tempfile::tempdir().unwrap();
    let groups = build(dir.path(), 120, small(64 << 10), Some(1000));
    let last_of_first = groups.iter().rfind(|g| g.0 == 1).copied().unwrap();
    assert!(groups.iter().any(|g| g.0 >= 3), "needs several segments");
    let path = segment_path(dir.path(), 1);
    overwrite(&path, last_of_first.1, &vec![0; last_of_first.2]);
    expect_corrupt(reopen(dir.path(), small(64 << 10)), &path, last_of_first.1);
}

#[test]
fn a_valid_group_of_another_segment_never_passes_in_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let groups = build(dir.path(), 60, small(64 << 10), Some(1000));
    let last_seq = groups.last().unwrap().0;
    let (_, src_off, src_len) = groups[0];
    let (_, end_off, end_len) = *groups.last().unwrap();
    let stale =
        std::fs::read(segment_path(dir.path(), 1)).unwrap()[src_off as usize..][..src_len].to_vec();
    // Past the data of the last segment, and over its last group (as if that write were torn).
    let tail = end_off + end_len as u64;
    let last = segment_path(dir.path(), last_seq);
    overwrite(&last, tail + BLOCK as u64, &stale);
    let before = reopen(dir.path(), small(64 << 10)).unwrap();
    assert_eq!(before.1, 60);
    overwrite(&last, end_off, &stale);
    assert_eq!(reopen(dir.path(), small(64 << 10)).unwrap().1, 59);
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let groups = build(dir.path(), 120, small(64 << 10), Some(1000));
    assert!(groups.iter().any(|g| g.0 >= 4));
    std::fs::remove_file(segment_path(dir.path(), 2)).unwrap();
    expect_corrupt(
        reopen(dir.path(), small(64 << 10)),
        &segment_path(dir.path(), 3),
        0,
    );
}

#[test]
fn a_shortened_segment_file_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 10, small(64 << 10), None);
    let path = segment_path(dir.path(), 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(40 << 10)
        .unwrap();
    expect_corrupt(reopen(dir.path(), small(64 << 10)), &path, 40 << 10);
}

fn dump(dir: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel-wal-dump"))
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn dump_tool_prints_records_and_flags_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let groups = build(dir.path(), 20, WalOptions::default(), None);
    let (code, text) = dump(dir.path());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("entry index=1 term=1"), "{text}");
    assert!(text.contains("entry index=20 term=1"), "{text}");
    assert!(text.contains("checkpoint prev_seq=0"), "{text}");
    assert!(text.contains("recovered: entries [1, 20]"), "{text}");
    let path: PathBuf = segment_path(dir.path(), groups[3].0);
    overwrite(&path, groups[3].1, &garbage(32, 3));
    let (code, text) = dump(dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("CORRUPT") && text.contains("refuses to open"),
        "{text}"
    );
}
