//! An interval set over byte-string keys for range and prefix watchers: intervals
//! `[start, end)` (or `[start, ∞)`) tagged with a unique id, and the stabbing query "which
//! intervals contain this key" in O(log n + matches) expected time.
//!
//! A treap (a binary search tree on `(start, id)` with heap-ordered pseudo-random priorities)
//! augmented with the largest end in each subtree: a subtree whose largest end is <= the key
//! holds no match and is skipped, as is everything right of a node that starts after the key.

use std::cmp::Ordering;

/// An interval's exclusive end; `None` is unbounded (a from-key watch).
type End = Option<Vec<u8>>;

/// Whether `end` lies strictly after `key` (the interval reaches past `key`).
fn end_after(end: &End, key: &[u8]) -> bool {
    end.as_ref().is_none_or(|e| e.as_slice() > key)
}

/// The larger of two ends (unbounded is the largest).
fn max_end<'a>(a: &'a End, b: &'a End) -> &'a End {
    match (a, b) {
        (None, _) | (_, None) => &None,
        (Some(x), Some(y)) => {
            if x >= y {
                a
            } else {
                b
            }
        }
    }
}

struct Node {
    start: Vec<u8>,
    id: u64,
    end: End,
    prio: u64,
    /// The largest `end` in this subtree.
    max: End,
    left: Link,
    right: Link,
}

type Link = Option<Box<Node>>;

impl Node {
    fn cmp_key(&self, start: &[u8], id: u64) -> Ordering {
        (self.start.as_slice(), self.id).cmp(&(start, id))
    }

    fn update(&mut self) {
        let mut m = &self.end;
        if let Some(l) = &self.left {
            m = max_end(m, &l.max);
        }
        if let Some(r) = &self.right {
            m = max_end(m, &r.max);
        }
        self.max = m.clone();
    }
}

/// SplitMix64 of the id: priorities are a fixed function of the id (deterministic, no RNG).
fn priority(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Splits `t` into the nodes ordered before `(start, id)` and the rest.
fn split(t: Link, start: &[u8], id: u64) -> (Link, Link) {
    match t {
        None => (None, None),
        Some(mut n) => {
            if n.cmp_key(start, id) == Ordering::Less {
                let (l, r) = split(n.right.take(), start, id);
                n.right = l;
                n.update();
                (Some(n), r)
            } else {
                let (l, r) = split(n.left.take(), start, id);
                n.left = r;
                n.update();
                (l, Some(n))
            }
        }
    }
}

/// Joins two treaps where every node of `a` orders before every node of `b`.
fn merge(a: Link, b: Link) -> Link {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(mut x), Some(mut y)) => {
            if x.prio >= y.prio {
                x.right = merge(x.right.take(), Some(y));
                x.update();
                Some(x)
            } else {
                y.left = merge(Some(x), y.left.take());
                y.update();
                Some(y)
            }
        }
    }
}

/// A set of intervals with unique ids (see the module comment).
#[derive(Default)]
pub(crate) struct IntervalSet {
    root: Link,
    len: usize,
}

impl IntervalSet {
    /// Adds `[start, end)` (`end` None: unbounded) under `id`, which must not be present.
    pub(crate) fn insert(&mut self, start: Vec<u8>, end: Option<Vec<u8>>, id: u64) {
        let (l, r) = split(self.root.take(), &start, id);
        let node = Box::new(Node {
            max: end.clone(),
            start,
            id,
            end,
            prio: priority(id),
            left: None,
            right: None,
        });
        self.root = merge(merge(l, Some(node)), r);
        self.len += 1;
    }

    /// Removes the interval starting at `start` with `id`; returns whether it was there.
    pub(crate) fn remove(&mut self, start: &[u8], id: u64) -> bool {
        let (l, r) = split(self.root.take(), start, id);
        let (m, r) = match id.checked_add(1) {
            Some(next) => split(r, start, next),
            None => {
                // id u64::MAX: the node, if present, is the first of `r` with this start.
                let mut next_start = start.to_vec();
                next_start.push(0);
                split(r, &next_start, 0)
            }
        };
        let found = m.is_some();
        debug_assert!(m
            .as_ref()
            .is_none_or(|n| n.left.is_none() && n.right.is_none()));
        self.root = merge(l, r);
        if found {
            self.len -= 1;
        }
        found
    }

    /// Calls `f(id)` for every interval containing `key`.
    pub(crate) fn stab(&self, key: &[u8], mut f: impl FnMut(u64)) {
        fn visit(n: &Link, key: &[u8], f: &mut impl FnMut(u64)) {
            let Some(n) = n else { return };
            if !end_after(&n.max, key) {
                return;
            }
            visit(&n.left, key, f);
            if n.start.as_slice() <= key {
                if end_after(&n.end, key) {
                    f(n.id);
                }
                visit(&n.right, key, f);
            }
        }
        visit(&self.root, key, &mut f);
    }

    /// Whether any interval contains `key`.
    pub(crate) fn any(&self, key: &[u8]) -> bool {
        // Small sets are scanned through the same query; the cost is the query's.
        let mut hit = false;
        self.stab(key, |_| hit = true);
        hit
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The set against a plain list under random inserts, removes and queries.
    #[test]
    fn matches_a_list_model() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = priority(seed);
            seed
        };
        let mut set = IntervalSet::default();
        let mut model: Vec<(Vec<u8>, Option<Vec<u8>>, u64)> = Vec::new();
        let key = |x: u64| vec![b'a' + (x % 6) as u8, b'a' + (x / 6 % 6) as u8];
        for id in 0..3000u64 {
            match next() % 3 {
                0 | 1 => {
                    let s = key(next());
                    let e = match next() % 4 {
                        0 => None,
                        _ => Some(key(next())),
                    };
                    set.insert(s.clone(), e.clone(), id);
                    model.push((s, e, id));
                }
                _ if !model.is_empty() => {
                    let i = (next() % model.len() as u64) as usize;
                    let (s, _, id) = model.swap_remove(i);
                    assert!(set.remove(&s, id));
                    assert!(!set.remove(&s, id));
                }
                _ => {}
            }
            let q = key(next());
            let mut got = Vec::new();
            set.stab(&q, |id| got.push(id));
            got.sort();
            let mut want: Vec<u64> = model
                .iter()
                .filter(|(s, e, _)| s.as_slice() <= q.as_slice() && end_after(e, &q))
                .map(|m| m.2)
                .collect();
            want.sort();
            assert_eq!(got, want, "query {q:?}");
            assert_eq!(set.any(&q), !want.is_empty());
            assert_eq!(set.len(), model.len());
        }
    }
}
