//! Recovery: turns the scans of a directory's segments into the durable log, deciding what is a
//! torn tail (truncated) and what is corruption (refused, D1). Also the read-only directory scan
//! the dump tool prints.
//!
//! Rules, in order:
//! - segment seqs are consecutive (compaction removes a prefix, never a middle one);
//! - in every segment, no valid group follows an invalid one (a torn write only ever damages the
//!   groups in flight), except one overlap group with nothing valid after it: at most two groups
//!   are in flight and the second is framed as an overlap group, so a crash may leave the first
//!   torn and the second whole; neither was acknowledged, both are the torn tail (dropped, the
//!   overlap frame zeroed by `Wal::open` before appends continue);
//! - the first record of a segment's first group is a checkpoint naming the previous segment and
//!   the offset where its data ends; that segment's scan must end exactly there;
//! - entries are contiguous apart from conflict truncations.

use super::error::WalError;
use super::index::{Loc, LogIndex};
use super::record::{Record, BLOCK};
use super::segment::{self, SegmentScan};
use std::path::{Path, PathBuf};

/// One scanned segment.
#[derive(Debug)]
pub struct ScannedSegment {
    /// Its file.
    pub path: PathBuf,
    /// What the scan found.
    pub scan: SegmentScan,
}

/// Reads and scans every segment in `dir` (read-only). Call [`segment::prime_iopoll_probe`] first
/// on this thread.
pub async fn scan_dir(dir: &Path) -> Result<Vec<ScannedSegment>, WalError> {
    let mut out = Vec::new();
    for seq in segment::list_segments(dir, false)? {
        let path = segment::segment_path(dir, seq);
        let file = glommio::io::DmaFile::open(&path)
            .await
            .map_err(|e| WalError::io("open", &path, e.into()))?;
        let bytes = segment::read_all(&file, &path).await?;
        file.close()
            .await
            .map_err(|e| WalError::io("close", &path, e.into()))?;
        let scan = segment::scan_segment(&bytes).map_err(|(offset, reason)| WalError::Corrupt {
            segment: path.clone(),
            offset,
            reason,
        })?;
        if scan.header.seq != seq {
            let reason = format!(
                "header names seq {} but the file name seq {seq}",
                scan.header.seq
            );
            return Err(WalError::Corrupt {
                segment: path,
                offset: 0,
                reason,
            });
        }
        out.push(ScannedSegment { path, scan });
    }
    Ok(out)
}

/// The durable log rebuilt from scans.
#[derive(Debug)]
pub struct Replayed {
    /// Entries, hard state, snapshot.
    pub index: LogIndex,
    /// Per scanned segment (same order): the highest entry index it holds (0: none).
    pub max_index: Vec<u64>,
    /// Position in the scans of the segment appends continue in.
    pub current: usize,
}

/// Applies the recovery rules above to `segs` (ascending seq).
pub fn replay(segs: &[ScannedSegment], cache_limit: usize) -> Result<Replayed, WalError> {
    let mut index = LogIndex::new(cache_limit);
    let mut max_index = vec![0u64; segs.len()];
    let mut current = 0;
    let corrupt = |s: &ScannedSegment, offset: u64, reason: String| WalError::Corrupt {
        segment: s.path.clone(),
        offset,
        reason,
    };
    for (k, s) in segs.iter().enumerate() {
        let seq = s.scan.header.seq;
        if k > 0 && segs[k - 1].scan.header.seq + 1 != seq {
            let reason = format!("segment {} is missing", segs[k - 1].scan.header.seq + 1);
            return Err(corrupt(s, 0, reason));
        }
        if let Some(at) = s.scan.valid_after_invalid {
            let why = s
                .scan
                .stop_reason
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let reason = format!("invalid group ({why}) followed by a valid group at offset {at}");
            return Err(corrupt(s, s.scan.valid_end, reason));
        }
        let Some((first_off, first_group)) = s.scan.groups.first() else {
            continue;
        };
        current = k;
        let Some((_, _, Record::Checkpoint(cp))) = first_group.records.first() else {
            return Err(corrupt(
                s,
                *first_off,
                "segment does not start with a checkpoint".into(),
            ));
        };
        if k > 0 {
            let prev = &segs[k - 1];
            if cp.prev_seq != prev.scan.header.seq {
                let reason = format!(
                    "checkpoint names previous segment {} not {}",
                    cp.prev_seq, prev.scan.header.seq
                );
                return Err(corrupt(s, *first_off, reason));
            }
            if cp.prev_end != prev.scan.valid_end {
                let why = prev
                    .scan
                    .stop_reason
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                let reason = format!(
                    "data ends at {} ({why}) but the next segment's checkpoint says it ends at {}",
                    prev.scan.valid_end, cp.prev_end
                );
                return Err(corrupt(prev, prev.scan.valid_end.min(cp.prev_end), reason));
            }
        }
        for (goff, g) in &s.scan.groups {
            for (roff, len, rec) in &g.records {
                let offset = goff + *roff as u64;
                match rec {
                    Record::Entry(e) => {
                        let loc = Loc {
                            seq,
                            offset,
                            len: *len as u32,
                            term: e.term,
                        };
                        max_index[k] = max_index[k].max(e.index);
                        if k == 0 && index.is_empty() && e.index > index.first() {
                            // The first segment left after compaction: the log starts here.
                            index.reset(e.index);
                        }
                        index
                            .push_entry(e.clone(), loc)
                            .map_err(|why| corrupt(s, offset, why))?;
                    }
                    Record::HardState(hs) => index.set_hard_state(*hs),
                    Record::Snapshot(m) => index.set_snapshot(*m),
                    Record::Truncate(i) => index.truncate(*i),
                    Record::Checkpoint(c) => {
                        if offset != (BLOCK + super::record::GROUP_FRAME_LEN) as u64 {
                            return Err(corrupt(s, offset, "checkpoint inside a segment".into()));
                        }
                        index.set_hard_state(c.hard_state);
                        index.set_snapshot(c.snapshot);
                    }
                }
            }
        }
    }
    Ok(Replayed {
        index,
        max_index,
        current,
    })
}
