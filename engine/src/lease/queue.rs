//! A min-queue of lease deadlines (etcd's lease_queue, as a binary heap with lazy deletion):
//! each lease has at most one current deadline, kept in a map; the heap may also hold stale
//! entries from earlier deadlines, skipped when they surface and dropped wholesale when they
//! outnumber the live ones (so keepalives cannot grow it without bound).

use super::LeaseId;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

#[derive(Default, Debug)]
pub(crate) struct DeadlineQueue {
    current: HashMap<LeaseId, Duration>,
    heap: BinaryHeap<Reverse<(Duration, LeaseId)>>,
}

impl DeadlineQueue {
    /// Sets (or moves) `id`'s deadline.
    pub(crate) fn set(&mut self, id: LeaseId, at: Duration) {
        if self.current.insert(id, at) == Some(at) {
            return;
        }
        self.heap.push(Reverse((at, id)));
        if self.heap.len() > 2 * self.current.len() + 64 {
            self.rebuild();
        }
    }

    pub(crate) fn remove(&mut self, id: LeaseId) {
        self.current.remove(&id);
    }

    pub(crate) fn clear(&mut self) {
        self.current.clear();
        self.heap.clear();
    }

    /// The earliest current deadline.
    pub(crate) fn peek(&mut self) -> Option<(Duration, LeaseId)> {
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if self.current.get(&id) == Some(&at) {
                return Some((at, id));
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the earliest lease whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Duration) -> Option<(Duration, LeaseId)> {
        let (at, id) = self.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.current.remove(&id);
        Some((at, id))
    }

    fn rebuild(&mut self) {
        self.heap = self
            .current
            .iter()
            .map(|(&id, &at)| Reverse((at, id)))
            .collect();
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn pops_in_deadline_order_and_skips_moved_entries() {
        let mut q = DeadlineQueue::default();
        q.set(1, s(5));
        q.set(2, s(3));
        q.set(3, s(9));
        q.set(1, s(10)); // moved later: the s(5) entry is stale
        q.remove(3);
        assert_eq!(q.pop_due(s(4)), Some((s(3), 2)));
        assert_eq!(q.pop_due(s(9)), None);
        assert_eq!(q.peek(), Some((s(10), 1)));
        assert_eq!(q.pop_due(s(10)), Some((s(10), 1)));
        assert_eq!(q.pop_due(s(100)), None);
    }

    #[test]
    fn repeated_moves_do_not_grow_the_heap_without_bound() {
        let mut q = DeadlineQueue::default();
        for t in 0..10_000 {
            q.set(7, s(t));
        }
        assert!(q.heap_len() <= 2 + 64, "heap holds {}", q.heap_len());
        assert_eq!(q.peek(), Some((s(9_999), 7)));
    }
}
