//! keel-wal-dump: prints every segment, group and record of a WAL directory, read-only (like
//! etcd-dump-logs), then what recovery would make of it.
//!
//! Usage: `keel-wal-dump [--entries-data] <wal-dir>`. Exit status 0 when the WAL would open, 1 when
//! it is corrupt (D1), 2 on usage or I/O errors.

use glommio::{LocalExecutorBuilder, Placement};
use keel_raft::wal::{prime_iopoll_probe, replay, scan_dir, Record, BLOCK};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut data = false;
    let mut dir = None;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--entries-data" => data = true,
            "-h" | "--help" => {
                println!("usage: keel-wal-dump [--entries-data] <wal-dir>");
                return ExitCode::SUCCESS;
            }
            _ if dir.is_none() => dir = Some(PathBuf::from(a)),
            _ => {
                eprintln!("usage: keel-wal-dump [--entries-data] <wal-dir>");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: keel-wal-dump [--entries-data] <wal-dir>");
        return ExitCode::from(2);
    };
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 << 10)
        .make();
    let ex = match ex {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("keel-wal-dump: cannot start an executor: {e}");
            return ExitCode::from(2);
        }
    };
    ex.run(dump(dir, data))
}

async fn dump(dir: PathBuf, data: bool) -> ExitCode {
    if let Err(e) = prime_iopoll_probe(&dir).await {
        eprintln!("keel-wal-dump: warning: {e}; reads may fail if glommio misdetects io polling");
    }
    let segs = match scan_dir(&dir).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keel-wal-dump: {e}");
            return ExitCode::from(
                if e.is_fatal() && matches!(e, keel_raft::wal::WalError::Corrupt { .. }) {
                    1
                } else {
                    2
                },
            );
        }
    };
    for s in &segs {
        let h = &s.scan.header;
        println!(
            "segment {} seq={} salt={:#018x} size={}",
            s.path.display(),
            h.seq,
            h.salt,
            h.segment_size
        );
        for (off, g) in &s.scan.groups {
            println!(
                "  group offset={off} records={} bytes={}{}",
                g.records.len(),
                g.padded_len,
                if g.overlap { " overlap" } else { "" }
            );
            for (roff, len, rec) in &g.records {
                let at = off + *roff as u64;
                match rec {
                    Record::Entry(e) => {
                        print!("    {at:>10} entry index={} term={} type={} len={}", e.index, e.term, e.kind, e.data.len());
                        if data {
                            print!(" data={}", hex(&e.data));
                        }
                        println!();
                    }
                    Record::HardState(hs) => {
                        println!("    {at:>10} hardstate term={} vote={} commit={}", hs.term, hs.vote, hs.commit)
                    }
                    Record::Snapshot(m) => println!("    {at:>10} snapshot index={} term={}", m.index, m.term),
                    Record::Truncate(i) => println!("    {at:>10} truncate from={i}"),
                    Record::Checkpoint(c) => println!(
                        "    {at:>10} checkpoint prev_seq={} prev_end={} hardstate=({},{},{}) snapshot=({},{}) len={len}",
                        c.prev_seq,
                        c.prev_end,
                        c.hard_state.term,
                        c.hard_state.vote,
                        c.hard_state.commit,
                        c.snapshot.index,
                        c.snapshot.term
                    ),
                }
            }
        }
        let free = h.segment_size - s.scan.valid_end;
        match &s.scan.stop_reason {
            Some(why) if s.scan.valid_end > BLOCK as u64 || !s.scan.groups.is_empty() => {
                println!(
                    "  data ends at {} ({free} bytes unused; next block: {why})",
                    s.scan.valid_end
                )
            }
            _ => println!("  data ends at {} ({free} bytes unused)", s.scan.valid_end),
        }
        if let Some(at) = s.scan.valid_after_invalid {
            println!(
                "  CORRUPT: valid group at {at} after invalid data at {}",
                s.scan.valid_end
            );
        }
        if let Some(at) = s.scan.overlap_tail {
            println!(
                "  torn tail: overlap group at {at} after invalid data at {} (both in flight at a crash; dropped on open)",
                s.scan.valid_end
            );
        }
    }
    match replay(&segs, 0) {
        Ok(r) => {
            let (first, last) = (r.index.first(), r.index.last());
            let hs = r.index.hard_state();
            let snap = r.index.snapshot();
            println!(
                "recovered: entries [{first}, {last}] hardstate term={} vote={} commit={} snapshot index={} term={}",
                hs.term, hs.vote, hs.commit, snap.index, snap.term
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("recovery refuses to open: {e}");
            ExitCode::from(1)
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
