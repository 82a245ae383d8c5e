//! Property test: the lessor (with its store) against a simple model — a map of leases (granted
//! TTL, checkpointed remaining TTL, leader deadline, next report time) and a map of keys to
//! leases — under random grants, revokes, puts, deletes, keepalives, clock advances, expiry
//! rounds (revokes applied or lost), checkpoint rounds, leader changes and restarts.
//! After every step the lease list, every lease's keys and remaining TTL, and the store's keys
//! must match the model. `PROPTEST_CASES` sets the number of cases (default 200).

use std::collections::BTreeMap;
use std::time::Duration;

use keel_engine::lease::*;
use keel_engine::mvcc::*;
use proptest::prelude::*;

const RETRY: Duration = Duration::from_secs(3);
const INTERVAL: Duration = Duration::from_secs(5);
const MIN_TTL: i64 = 2;

#[derive(Clone, Debug)]
enum Op {
    Grant(i64, i64),
    Revoke(i64),
    Put(u8, i64),
    Delete(u8),
    Renew(i64),
    Advance(u64),
    /// Report expired leases (at most n) and apply the revokes, unless `lost`.
    Expire(usize, bool),
    Checkpoint,
    LeaderChange,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..7, 0i64..12).prop_map(|(i, t)| Op::Grant(i, t)),
        2 => (0i64..8).prop_map(Op::Revoke),
        6 => (0u8..6, 0i64..8).prop_map(|(k, l)| Op::Put(k, l)),
        2 => (0u8..6).prop_map(Op::Delete),
        3 => (0i64..8).prop_map(Op::Renew),
        4 => (0u64..4000).prop_map(Op::Advance),
        3 => (1usize..4, any::<bool>()).prop_map(|(n, lost)| Op::Expire(n, lost)),
        2 => Just(Op::Checkpoint),
        1 => Just(Op::LeaderChange),
        1 => Just(Op::Restart),
    ]
}

#[derive(Clone, Debug)]
struct ModelLease {
    ttl: i64,
    remaining: i64,
    deadline: Duration,
    report_at: Duration,
}

#[derive(Default)]
struct Model {
    leases: BTreeMap<i64, ModelLease>,
    keys: BTreeMap<Vec<u8>, i64>,
}

impl Model {
    fn promote(&mut self, now: Duration) {
        for l in self.leases.values_mut() {
            let left = if l.remaining > 0 { l.remaining } else { l.ttl };
            l.deadline = now + Duration::from_secs(left as u64);
            l.report_at = l.deadline;
        }
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        btree: keel_engine::btree::Options {
            map_size: 1 << 30,
            grow_step: 1 << 20,
            ..Default::default()
        },
        ..StoreOptions::default()
    }
}

fn cfg() -> LessorConfig {
    LessorConfig {
        min_ttl_secs: MIN_TTL,
        checkpoint_interval: INTERVAL,
        revoke_retry: RETRY,
        ..LessorConfig::default()
    }
}

fn apply<R>(
    store: &KvStore,
    lessor: &mut Lessor,
    applied: &mut u64,
    f: impl FnOnce(&mut Lessor, &mut KvWrite<'_>) -> R,
) -> R {
    let mut w = store.write().unwrap();
    w.set_lease_check(lessor.lease_check());
    let r = f(lessor, &mut w);
    let ev = w.take_events();
    lessor.observe(&ev);
    *applied += 1;
    w.commit(*applied).unwrap();
    r
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv");
    let mut store = KvStore::open(&path, opts()).unwrap();
    let mut lessor = Lessor::open(&store, cfg()).unwrap();
    let mut applied = 0u64;
    let mut now = Duration::from_secs(1000);
    lessor.promote(now);
    let mut m = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Grant(id, ttl) => {
                let r = apply(&store, &mut lessor, &mut applied, |l, w| {
                    l.grant(w, id, ttl, 0, now)
                });
                match m.leases.entry(id) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        prop_assert!(matches!(r, Err(LeaseError::AlreadyExists)), "{:?}", r);
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        let ttl = ttl.max(MIN_TTL);
                        prop_assert_eq!(r.unwrap(), (id, ttl));
                        let d = now + Duration::from_secs(ttl as u64);
                        v.insert(ModelLease {
                            ttl,
                            remaining: 0,
                            deadline: d,
                            report_at: d,
                        });
                    }
                }
            }
            Op::Revoke(id) => {
                let rev = store.read().unwrap().revision();
                let r = apply(&store, &mut lessor, &mut applied, |l, w| l.revoke(w, id));
                if m.leases.remove(&id).is_some() {
                    let n = m.keys.values().filter(|l| **l == id).count() as i64;
                    m.keys.retain(|_, l| *l != id);
                    let r = r.unwrap();
                    prop_assert_eq!(r.deleted, n);
                    let want = if n > 0 { rev + 1 } else { rev };
                    prop_assert_eq!(store.read().unwrap().revision(), want);
                } else {
                    prop_assert!(matches!(r, Err(LeaseError::NotFound)), "{:?}", r);
                }
            }
            Op::Put(k, lease) => {
                let key = vec![b'k', k];
                let r = apply(&store, &mut lessor, &mut applied, |_, w| {
                    w.put(&PutRequest {
                        key: key.clone(),
                        lease,
                        ..Default::default()
                    })
                });
                if lease == 0 || m.leases.contains_key(&lease) {
                    r.unwrap();
                    m.keys.insert(key, lease);
                } else {
                    prop_assert_eq!(r.unwrap_err(), KvError::LeaseNotFound);
                }
            }
            Op::Delete(k) => {
                let key = vec![b'k', k];
                apply(&store, &mut lessor, &mut applied, |_, w| {
                    w.delete_range(&DeleteRangeRequest {
                        key: key.clone(),
                        ..Default::default()
                    })
                })
                .unwrap();
                m.keys.remove(&key);
            }
            Op::Renew(id) => {
                let r = lessor.renew(id, now);
                match m.leases.get_mut(&id) {
                    None => prop_assert!(matches!(r, Err(LeaseError::NotFound)), "{:?}", r),
                    Some(l) if l.deadline <= now => {
                        prop_assert!(matches!(r, Err(LeaseError::Expired)), "{:?}", r)
                    }
                    Some(l) => {
                        prop_assert_eq!(r.unwrap(), l.ttl);
                        l.deadline = now + Duration::from_secs(l.ttl as u64);
                        l.report_at = l.deadline;
                    }
                }
            }
            Op::Advance(ms) => now += Duration::from_millis(ms),
            Op::Expire(max, lost) => {
                let got = lessor.expired(now, max);
                let mut due: Vec<(Duration, i64)> = m
                    .leases
                    .iter()
                    .filter(|(_, l)| l.report_at <= now)
                    .map(|(id, l)| (l.report_at, *id))
                    .collect();
                due.sort();
                let want: Vec<i64> = due.iter().take(max).map(|(_, id)| *id).collect();
                prop_assert_eq!(&got, &want, "step {}", step);
                for id in got {
                    if lost {
                        m.leases.get_mut(&id).unwrap().report_at = now + RETRY;
                    } else {
                        apply(&store, &mut lessor, &mut applied, |l, w| l.revoke(w, id)).unwrap();
                        m.leases.remove(&id);
                        m.keys.retain(|_, l| *l != id);
                    }
                }
            }
            Op::Checkpoint => {
                let got = lessor.checkpoints_due(now, usize::MAX);
                for (id, rem) in got {
                    let l = m.leases.get_mut(&id).unwrap();
                    if rem != 0 {
                        prop_assert!(l.deadline > now);
                        let left = (l.deadline - now).as_nanos().div_ceil(1_000_000_000) as i64;
                        prop_assert_eq!(rem, left, "lease {}", id);
                    }
                    l.remaining = rem;
                    apply(&store, &mut lessor, &mut applied, |l, w| {
                        l.checkpoint(w, id, rem)
                    })
                    .unwrap();
                }
            }
            Op::LeaderChange => {
                lessor.demote();
                prop_assert!(lessor
                    .expired(now + Duration::from_secs(1 << 20), 100)
                    .is_empty());
                now += Duration::from_millis(1500);
                lessor.promote(now);
                m.promote(now);
            }
            Op::Restart => {
                store.sync().unwrap();
                drop(store);
                store = KvStore::open(&path, opts()).unwrap();
                lessor = Lessor::open(&store, cfg()).unwrap();
                prop_assert_eq!(lessor.orphan_keys(), 0);
                lessor.promote(now);
                m.promote(now);
            }
        }
        // Compare everything.
        prop_assert_eq!(
            lessor.leases(),
            m.leases.keys().copied().collect::<Vec<_>>(),
            "step {}",
            step
        );
        for (id, l) in &m.leases {
            let t = lessor.time_to_live(*id, true, now);
            let want_keys: Vec<Vec<u8>> = m
                .keys
                .iter()
                .filter(|(_, kl)| *kl == id)
                .map(|(k, _)| k.clone())
                .collect();
            prop_assert_eq!(&t.keys, &want_keys, "lease {} at step {}", id, step);
            prop_assert_eq!(t.granted_ttl, l.ttl);
            prop_assert_eq!(t.ttl, l.deadline.saturating_sub(now).as_secs() as i64);
        }
        let r = store.read().unwrap();
        let kvs = r
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap()
            .kvs;
        let got: BTreeMap<Vec<u8>, i64> = kvs.into_iter().map(|kv| (kv.key, kv.lease)).collect();
        prop_assert_eq!(&got, &m.keys, "store keys at step {}", step);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200), ..ProptestConfig::default() })]

    #[test]
    fn lessor_agrees_with_a_model(ops in prop::collection::vec(op(), 1..100)) {
        run(ops)?;
    }
}
