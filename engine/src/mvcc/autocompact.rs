//! Auto-compaction policy in etcd's two modes (`--auto-compaction-mode`,
//! `--auto-compaction-retention`). Pure: the caller passes the time (milliseconds from any fixed
//! origin) and the store's revision; the policy answers which revision to compact to, if any.
//! The server turns an answer into a compaction request through Raft, like etcd's compactor.
//!
//! - `Revision(n)`: every 5 minutes, compact to `current - n` when that moved since last time.
//! - `Periodic(d)`: sample the revision every `d / 10` (at most every hour / 10 for long
//!   retentions, as etcd 3.4); compact to the newest sample that is at least `d` old, each time
//!   a new sample becomes that old.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this many revisions.
    Revision(i64),
    /// Keep this much history (milliseconds).
    Periodic(u64),
}

const REVISION_CHECK_MS: u64 = 5 * 60 * 1000;
const HOUR_MS: u64 = 60 * 60 * 1000;

pub struct AutoCompactor {
    mode: AutoCompaction,
    next_check_ms: Option<u64>,
    last_compacted: i64,
    /// (time, revision) samples, oldest first.
    samples: VecDeque<(u64, i64)>,
}

impl AutoCompactor {
    pub fn new(mode: AutoCompaction) -> AutoCompactor {
        AutoCompactor {
            mode,
            next_check_ms: None,
            last_compacted: 0,
            samples: VecDeque::new(),
        }
    }

    fn interval_ms(&self) -> u64 {
        match self.mode {
            AutoCompaction::Revision(_) => REVISION_CHECK_MS,
            AutoCompaction::Periodic(d) => (d.min(HOUR_MS) / 10).max(1),
        }
    }

    /// Called periodically (any rate); returns the revision to compact to when it is time.
    pub fn tick(&mut self, now_ms: u64, current_rev: i64) -> Option<i64> {
        let next = *self
            .next_check_ms
            .get_or_insert(now_ms + self.interval_ms());
        if now_ms < next {
            return None;
        }
        self.next_check_ms = Some(now_ms + self.interval_ms());
        let target = match self.mode {
            AutoCompaction::Revision(keep) => current_rev - keep,
            AutoCompaction::Periodic(retention) => {
                self.samples.push_back((now_ms, current_rev));
                // The newest sample at least `retention` old; older ones are no longer needed.
                let mut target = None;
                while let Some(&(t, rev)) = self.samples.front() {
                    if now_ms.saturating_sub(t) >= retention {
                        target = Some(rev);
                        self.samples.pop_front();
                    } else {
                        break;
                    }
                }
                target?
            }
        };
        if target <= 0 || target <= self.last_compacted {
            return None;
        }
        self.last_compacted = target;
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_mode_compacts_every_five_minutes_keeping_n() {
        let mut c = AutoCompactor::new(AutoCompaction::Revision(100));
        assert_eq!(c.tick(0, 50), None);
        assert_eq!(c.tick(REVISION_CHECK_MS - 1, 500), None);
        assert_eq!(c.tick(REVISION_CHECK_MS, 500), Some(400));
        // Nothing new written: no second compaction to the same revision.
        assert_eq!(c.tick(2 * REVISION_CHECK_MS, 500), None);
        assert_eq!(c.tick(3 * REVISION_CHECK_MS, 1000), Some(900));
    }

    #[test]
    fn periodic_mode_compacts_to_the_revision_of_one_retention_ago() {
        let hour = HOUR_MS;
        let mut c = AutoCompactor::new(AutoCompaction::Periodic(hour));
        let step = hour / 10;
        let mut got = Vec::new();
        // One revision per millisecond of "time".
        let mut t = 0;
        while t <= 2 * hour {
            if let Some(r) = c.tick(t, t as i64) {
                got.push((t, r));
            }
            t += step / 2;
        }
        assert!(!got.is_empty());
        for (t, r) in got {
            // Compacted history is at least one retention old, and not much older.
            assert!(t as i64 - r >= hour as i64, "at {t} compacted to {r}");
            assert!(
                t as i64 - r <= (hour + step) as i64,
                "at {t} compacted to {r}"
            );
        }
    }
}
