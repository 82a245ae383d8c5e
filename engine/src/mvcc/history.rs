//! Reading the store's history as watch events (the watch hub's catch-up source, W3/W5):
//! the `key` bucket holds every revision in revision order, so replaying from a revision is one
//! forward scan of it; a change's previous version is found through the `index` bucket.
//!
//! Events are built as etcd builds them from its backend: a put carries the stored key-value, a
//! delete (tombstone) carries only the key and the deleting revision in `mod_revision`.

use std::ops::Bound;

use crate::btree;
use crate::mvcc::keys::{archived, index_key, index_prefix, parse_index_key, parse_rev, rev_key};
use crate::mvcc::store::{KvRead, INDEX, KEY};
use crate::mvcc::types::{Event, EventType, KeyValue, KvError};

/// Events read from the history by [`KvRead::events`].
#[derive(Debug, Default)]
pub struct HistoryBatch {
    /// The events that passed the key filter, in revision order (`prev_kv` left empty; ask
    /// [`KvRead::prev_kv`] for it).
    pub events: Vec<Event>,
    /// The first revision not read: every revision below it (from the requested start on) was
    /// read completely. `to_rev + 1` when the whole requested span was read.
    pub next_rev: i64,
}

fn bucket<'r>(txn: &'r btree::ReadTxn, name: &[u8]) -> Result<btree::Bucket<'r>, KvError> {
    txn.bucket(name)?
        .ok_or_else(|| KvError::Storage(btree::Error::BucketNotFound(name.to_vec())))
}

fn corrupt(reason: &str) -> KvError {
    KvError::Storage(btree::Error::Corrupted {
        page: 0,
        reason: reason.to_string(),
    })
}

impl KvRead {
    /// The changes with main revision in `[from_rev, to_rev]` (`to_rev` capped at this snapshot's
    /// revision) whose key passes `want`, in revision order.
    ///
    /// Reads at least `max_records` stored revisions (of any key) when that many are left, and
    /// never stops inside a main revision (W4): the batch covers whole revisions only, and
    /// [`HistoryBatch::next_rev`] says where to resume.
    ///
    /// A start below the compaction revision fails with [`KvError::Compacted`] (etcd's rule for
    /// watchers: `start < compact revision`; at the compaction revision itself, puts are all
    /// kept but a deletion made at exactly that revision may already be physically gone — as in
    /// etcd).
    pub fn events(
        &self,
        from_rev: i64,
        to_rev: i64,
        max_records: usize,
        mut want: impl FnMut(&[u8]) -> bool,
    ) -> Result<HistoryBatch, KvError> {
        if from_rev < self.compacted {
            return Err(KvError::Compacted);
        }
        let to_rev = to_rev.min(self.rev);
        let mut batch = HistoryBatch {
            events: Vec::new(),
            next_rev: to_rev + 1,
        };
        if from_rev > to_rev {
            batch.next_rev = from_rev;
            return Ok(batch);
        }
        let start = rev_key(from_rev.max(0), 0);
        let end = rev_key(to_rev + 1, 0);
        let keys = bucket(&self.txn, KEY)?;
        let mut last_main = None;
        let records = keys.range(Bound::Included(&start), Bound::Excluded(&end), false);
        for (read, kv) in records.enumerate() {
            let (k, v) = kv?;
            let (main, _) = parse_rev(k).ok_or_else(|| corrupt("bad revision key"))?;
            if read >= max_records && last_main != Some(main) {
                batch.next_rev = main;
                break;
            }
            last_main = Some(main);
            let rec = archived(v)?;
            if !want(rec.key.as_slice()) {
                continue;
            }
            let kind = if rec.tombstone {
                EventType::Delete
            } else {
                EventType::Put
            };
            batch.events.push(Event {
                kind,
                kv: rec.to_kv(false),
                prev_kv: None,
            });
        }
        Ok(batch)
    }

    /// The live version of `key` just before main revision `rev` (an event's previous
    /// key-value), as etcd's watch finds it: a read of `key` at `rev - 1`. `None` when the key
    /// did not exist then, or when `rev - 1` is below the compaction revision (etcd's read
    /// fails there, and its watch then sends no previous key-value).
    pub fn prev_kv(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>, KvError> {
        if rev - 1 < self.compacted || rev <= 1 {
            return Ok(None);
        }
        let lo = index_prefix(key);
        let hi = index_key(key, rev, 0);
        let index = bucket(&self.txn, INDEX)?;
        let newest = index
            .range(Bound::Included(&lo), Bound::Excluded(&hi), true)
            .next();
        let Some(entry) = newest else {
            return Ok(None);
        };
        let (ik, flag) = entry?;
        if flag.first() == Some(&1) {
            return Ok(None);
        }
        let (_, main, sub) = parse_index_key(ik).ok_or_else(|| corrupt("bad index key"))?;
        let bytes = bucket(&self.txn, KEY)?
            .get(&rev_key(main, sub))?
            .ok_or_else(|| corrupt("index names a revision absent from the key bucket"))?;
        Ok(Some(archived(bytes)?.to_kv(false)))
    }
}

#[cfg(test)]
mod tests {
    use crate::mvcc::*;

    fn put(w: &mut KvWrite<'_>, k: &str, v: &str) {
        w.put(&PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })
        .unwrap();
    }

    #[test]
    fn history_matches_the_written_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::open(dir.path().join("db"), StoreOptions::default()).unwrap();
        let mut w = store.write().unwrap();
        put(&mut w, "a", "1");
        put(&mut w, "b", "1");
        put(&mut w, "a", "2");
        w.delete_range(&DeleteRangeRequest {
            key: "a".into(),
            range_end: "c".into(),
            prev_kv: false,
        })
        .unwrap();
        let written = w.take_events();
        w.commit(1).unwrap();
        let r = store.read().unwrap();
        let all = r.events(2, i64::MAX, usize::MAX, |_| true).unwrap();
        assert_eq!(all.next_rev, r.revision() + 1);
        let stripped: Vec<Event> = written
            .iter()
            .map(|e| Event {
                prev_kv: None,
                ..e.clone()
            })
            .collect();
        assert_eq!(all.events, stripped);
        for e in &written {
            assert_eq!(
                r.prev_kv(&e.kv.key, e.kv.mod_revision).unwrap(),
                e.prev_kv,
                "{e:?}"
            );
        }
        // Bounded batches end on revision boundaries: revision 5 has two changes.
        let b = r.events(2, i64::MAX, 3, |_| true).unwrap();
        assert_eq!(b.events.len(), 3);
        assert_eq!(b.next_rev, 5);
        let b = r.events(5, i64::MAX, 1, |_| true).unwrap();
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.next_rev, 6);
        let only_b = r.events(0, 4, 100, |k| k == b"b").unwrap();
        assert_eq!(only_b.events.len(), 1);
        assert_eq!(only_b.next_rev, 5);
    }
}
