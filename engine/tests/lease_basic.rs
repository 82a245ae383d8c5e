//! The lessor through the apply path (issue 6, lease part): grant, revoke, keepalive,
//! TimeToLive and the lease list; keys attaching through puts and moving between leases; a
//! revoke deleting every attached key in one revision; expiry from the leader's deadline heap
//! under an injected clock, rate limited; remaining TTL checkpoints surviving a leader change
//! and a restart; leases surviving a restart; a follower never reporting expiries (L1).
//!
//! Time is a `Duration` the test advances by hand; nothing sleeps.

use std::path::PathBuf;
use std::time::Duration;

use keel_engine::lease::*;
use keel_engine::mvcc::*;

fn t(secs: u64) -> Duration {
    Duration::from_secs(secs)
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

/// One member: a store and its lessor, applying one entry per batch (as the apply core does,
/// with the lease check installed and each request's events observed).
struct Member {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: KvStore,
    lessor: Lessor,
    cfg: LessorConfig,
    applied: u64,
}

impl Member {
    fn new(cfg: LessorConfig) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv");
        let store = KvStore::open(&path, opts()).unwrap();
        let lessor = Lessor::open(&store, cfg.clone()).unwrap();
        Member {
            _dir: dir,
            path,
            store,
            lessor,
            cfg,
            applied: 0,
        }
    }

    /// Applies one entry; returns its result and its events.
    fn apply<R>(&mut self, f: impl FnOnce(&mut Lessor, &mut KvWrite<'_>) -> R) -> (R, Vec<Event>) {
        let lessor = &mut self.lessor;
        let mut w = self.store.write().unwrap();
        w.set_lease_check(lessor.lease_check());
        let r = f(lessor, &mut w);
        let events = w.take_events();
        lessor.observe(&events);
        self.applied += 1;
        w.commit(self.applied).unwrap();
        (r, events)
    }

    fn grant(&mut self, id: LeaseId, ttl: i64, now: Duration) -> LeaseResult<(LeaseId, i64)> {
        let seed = 1000 + self.applied;
        self.apply(|l, w| l.grant(w, id, ttl, seed, now)).0
    }

    fn revoke(&mut self, id: LeaseId) -> LeaseResult<DeleteRangeResponse> {
        self.apply(|l, w| l.revoke(w, id)).0
    }

    fn checkpoint(&mut self, id: LeaseId, remaining: i64) {
        self.apply(|l, w| l.checkpoint(w, id, remaining)).0.unwrap();
    }

    fn put(&mut self, key: &str, lease: LeaseId) -> Result<PutResponse, KvError> {
        self.apply(|_, w| {
            w.put(&PutRequest {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                lease,
                ..Default::default()
            })
        })
        .0
    }

    fn delete(&mut self, key: &str) {
        self.apply(|_, w| {
            w.delete_range(&DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
        })
        .0
        .unwrap();
    }

    /// Restart: make everything durable, close, reopen the store and the lessor.
    fn restart(&mut self) {
        self.store.sync().unwrap();
        let store = KvStore::open(&self.path, opts()).unwrap();
        self.store = store;
        self.lessor = Lessor::open(&self.store, self.cfg.clone()).unwrap();
        assert_eq!(self.store.applied_index().unwrap(), self.applied);
    }

    fn keys(&self, id: LeaseId) -> Vec<String> {
        self.lessor
            .time_to_live(id, true, t(0))
            .keys
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect()
    }

    /// Live keys and their lease, from the store.
    fn store_keys(&self) -> Vec<(String, LeaseId)> {
        let r = self.store.read().unwrap();
        let resp = r
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap();
        resp.kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), kv.lease))
            .collect()
    }

    fn revision(&self) -> i64 {
        self.store.read().unwrap().revision()
    }
}

fn cfg() -> LessorConfig {
    LessorConfig::default()
}

#[test]
fn min_ttl_follows_etcds_formula() {
    // etcd: ceil(((3 * electionTicks) / 2) * heartbeat) seconds.
    assert_eq!(
        LessorConfig::min_ttl_secs_for(10, Duration::from_millis(100)),
        2
    );
    assert_eq!(
        LessorConfig::min_ttl_secs_for(5, Duration::from_millis(100)),
        1
    );
    assert_eq!(
        LessorConfig::min_ttl_secs_for(50, Duration::from_millis(100)),
        8
    );
    assert_eq!(
        LessorConfig::min_ttl_secs_for(10, Duration::from_millis(500)),
        8
    );
    assert_eq!(LessorConfig::default().min_ttl_secs, 2);
}

#[test]
fn grant_list_time_to_live_and_revoke() {
    let mut m = Member::new(cfg());
    // Client-chosen ID.
    assert_eq!(m.grant(7, 60, t(0)).unwrap(), (7, 60));
    // Same ID again.
    let e = m.grant(7, 60, t(0)).unwrap_err();
    assert!(matches!(e, LeaseError::AlreadyExists), "{e:?}");
    assert_eq!(e.message(), "etcdserver: lease already exists");
    // Below the minimum: raised (0 and negative too).
    assert_eq!(m.grant(8, 1, t(0)).unwrap(), (8, 2));
    assert_eq!(m.grant(9, 0, t(0)).unwrap(), (9, 2));
    assert_eq!(m.grant(10, -5, t(0)).unwrap(), (10, 2));
    // Too large.
    let e = m.grant(11, MAX_LEASE_TTL + 1, t(0)).unwrap_err();
    assert!(matches!(e, LeaseError::TtlTooLarge), "{e:?}");
    assert_eq!(
        m.grant(11, MAX_LEASE_TTL, t(0)).unwrap(),
        (11, MAX_LEASE_TTL)
    );
    // Server-chosen: from the seed, skipping taken IDs.
    let (a, _) = m.apply(|l, w| l.grant(w, 0, 30, 7, t(0))).0.unwrap();
    assert_eq!(a, 12, "7..=11 are taken, so the first free ID after seed 7");
    let (b, _) = m.apply(|l, w| l.grant(w, 0, 30, u64::MAX, t(0))).0.unwrap();
    assert_eq!(b, i64::MAX, "the seed is masked to a positive ID");
    let (c, _) = m.apply(|l, w| l.grant(w, 0, 30, u64::MAX, t(0))).0.unwrap();
    assert_eq!(c, 1, "wraps past i64::MAX and skips 0");

    assert_eq!(m.lessor.leases(), vec![1, 7, 8, 9, 10, 11, 12, i64::MAX]);
    let ttl = m.lessor.time_to_live(7, false, t(0));
    assert_eq!(
        ttl,
        TimeToLive {
            id: 7,
            ttl: 60,
            granted_ttl: 60,
            keys: vec![]
        }
    );
    assert_eq!(
        m.lessor.time_to_live(99, true, t(0)),
        TimeToLive {
            id: 99,
            ttl: -1,
            granted_ttl: 0,
            keys: vec![]
        }
    );

    let rev = m.revision();
    let r = m.revoke(7).unwrap();
    assert_eq!(r.deleted, 0);
    assert_eq!(
        m.revision(),
        rev,
        "revoking a lease without keys makes no revision"
    );
    let e = m.revoke(7).unwrap_err();
    assert!(matches!(e, LeaseError::NotFound), "{e:?}");
    assert_eq!(e.message(), "etcdserver: requested lease not found");
    assert_eq!(e.code(), Code::NotFound);
    assert!(m.lessor.lookup(7).is_none());
    assert_eq!(m.lessor.time_to_live(7, false, t(0)).ttl, -1);
    assert_eq!(m.lessor.leases(), vec![1, 8, 9, 10, 11, 12, i64::MAX]);
}

#[test]
fn keys_attach_through_puts_and_move_between_leases() {
    let mut m = Member::new(cfg());
    m.grant(1, 60, t(0)).unwrap();
    m.grant(2, 60, t(0)).unwrap();
    m.put("a", 1).unwrap();
    m.put("b", 1).unwrap();
    m.put("c", 2).unwrap();
    m.put("plain", 0).unwrap();
    assert_eq!(m.keys(1), ["a", "b"]);
    assert_eq!(m.keys(2), ["c"]);

    // Unknown lease: refused, nothing applied.
    let rev = m.revision();
    assert_eq!(m.put("x", 3).unwrap_err(), KvError::LeaseNotFound);
    assert_eq!(m.revision(), rev);
    let txn = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"y".to_vec(),
                lease: 2,
                ..Default::default()
            }),
            RequestOp::Put(PutRequest {
                key: b"z".to_vec(),
                lease: 3,
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    let (r, _) = m.apply(|_, w| w.txn(&txn));
    assert_eq!(r.unwrap_err(), KvError::LeaseNotFound);
    assert_eq!(m.revision(), rev);
    assert_eq!(m.keys(2), ["c"]);

    // Move a to lease 2, detach b by a put without lease, delete c, attach in a txn.
    m.put("a", 2).unwrap();
    m.put("b", 0).unwrap();
    m.delete("c");
    let txn = TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            key: b"t".to_vec(),
            lease: 1,
            ..Default::default()
        })],
        ..Default::default()
    };
    m.apply(|_, w| w.txn(&txn)).0.unwrap();
    // ignore_lease keeps the attachment.
    m.apply(|_, w| {
        w.put(&PutRequest {
            key: b"a".to_vec(),
            value: b"new".to_vec(),
            ignore_lease: true,
            ..Default::default()
        })
    })
    .0
    .unwrap();
    assert_eq!(m.keys(1), ["t"]);
    assert_eq!(m.keys(2), ["a"]);
    assert_eq!(
        m.store_keys(),
        [
            ("a".into(), 2),
            ("b".into(), 0),
            ("plain".into(), 0),
            ("t".into(), 1)
        ]
    );

    // Grant and use in one batch, then revoke in the same batch (events observed between).
    let ((), _) = m.apply(|l, w| {
        l.grant(w, 5, 10, 0, t(0)).unwrap();
        w.put(&PutRequest {
            key: b"q".to_vec(),
            lease: 5,
            ..Default::default()
        })
        .unwrap();
        let ev = w.take_events();
        l.observe(&ev);
        assert_eq!(l.lookup(5).unwrap().key_count(), 1);
        let r = l.revoke(w, 5).unwrap();
        assert_eq!(r.deleted, 1);
        assert_eq!(
            w.put(&PutRequest {
                key: b"q".to_vec(),
                lease: 5,
                ..Default::default()
            })
            .unwrap_err(),
            KvError::LeaseNotFound,
            "the check sees the revoke at once"
        );
    });
    assert!(m.lessor.lookup(5).is_none());
    assert!(!m.store_keys().iter().any(|(k, _)| k == "q"));
}

#[test]
fn revoke_deletes_every_attached_key_in_one_revision() {
    let mut m = Member::new(cfg());
    m.grant(1, 60, t(0)).unwrap();
    m.grant(2, 60, t(0)).unwrap();
    let mut want = Vec::new();
    for i in 0..300 {
        // More keys than etcd's txn op limit: a revoke is not bound by it.
        let k = format!("k{i:03}");
        m.put(&k, 1).unwrap();
        want.push(k);
    }
    m.put("other", 2).unwrap();
    m.put("free", 0).unwrap();
    let rev = m.revision();
    let (r, events) = m.apply(|l, w| l.revoke(w, 1));
    let r = r.unwrap();
    assert_eq!(r.deleted, 300);
    assert_eq!(r.header.revision, rev + 1);
    assert_eq!(m.revision(), rev + 1);
    assert_eq!(events.len(), 300);
    let got: Vec<String> = events
        .iter()
        .map(|e| {
            assert_eq!(e.kind, EventType::Delete);
            assert_eq!(
                e.kv.mod_revision,
                rev + 1,
                "one revision for the whole revoke"
            );
            assert_eq!(e.prev_kv.as_ref().unwrap().lease, 1);
            String::from_utf8(e.kv.key.clone()).unwrap()
        })
        .collect();
    assert_eq!(got, want, "deleted in key order");
    assert_eq!(m.store_keys(), [("free".into(), 0), ("other".into(), 2)]);
    assert_eq!(m.lessor.leases(), vec![2]);
    // The revoke is durable with the batch: a restart agrees.
    m.restart();
    assert_eq!(m.lessor.leases(), vec![2]);
    assert_eq!(m.keys(2), ["other"]);
}

#[test]
fn expiry_is_reported_by_the_leader_in_deadline_order_and_rate_limited() {
    let mut m = Member::new(cfg());
    m.lessor.promote(t(100));
    // IDs 1..=10 with TTLs 10..=100 (id i expires at 100 + 10 i).
    for i in 1..=10 {
        m.grant(i, 10 * i, t(100)).unwrap();
        m.put(&format!("key{i}"), i).unwrap();
    }
    assert!(m.lessor.expired(t(109), 100).is_empty());
    assert_eq!(m.lessor.next_wakeup(), Some(t(110)));
    // Keepalive for 2: now expires at 115 + 20 = 135.
    assert_eq!(m.lessor.renew(2, t(115)).unwrap(), 20);
    assert_eq!(m.lessor.time_to_live(2, false, t(115)).ttl, 20);
    assert_eq!(m.lessor.time_to_live(2, false, t(116)).ttl, 19);
    // 3 is past its deadline (130) but not revoked: 0 left, still listed.
    assert_eq!(m.lessor.time_to_live(3, false, t(135)).ttl, 0);
    // At 160: 1 (110), 3 (130), 2 (135), 4 (140), 5 (150), 6 (160) are due; at most 4 a round.
    let first = m.lessor.expired(t(160), 4);
    assert_eq!(first, vec![1, 3, 2, 4]);
    // Renewing an expired lease fails: its revoke is under way.
    assert!(matches!(
        m.lessor.renew(3, t(160)),
        Err(LeaseError::Expired)
    ));
    let second = m.lessor.expired(t(160), 4);
    assert_eq!(second, vec![5, 6], "no lease is reported twice");
    assert!(m.lessor.expired(t(160), 4).is_empty());
    // The server applies revokes for all but 4 (its proposal was lost).
    for id in [1, 3, 5, 2, 6] {
        assert_eq!(m.revoke(id).unwrap().deleted, 1);
    }
    assert_eq!(m.lessor.leases(), vec![4, 7, 8, 9, 10]);
    // 4 comes back after the retry interval (3 s), not before.
    assert!(m.lessor.expired(t(162), 10).is_empty());
    assert_eq!(m.lessor.expired(t(163), 10), vec![4]);
    // Or at once when the server says it abandoned the proposal.
    m.lessor.retry_revoke(4, t(164));
    assert_eq!(m.lessor.expired(t(164), 10), vec![4]);
    m.revoke(4).unwrap();
    assert_eq!(
        m.store_keys(),
        ["key10", "key7", "key8", "key9"]
            .iter()
            .map(|k| (k.to_string(), k[3..].parse().unwrap()))
            .collect::<Vec<(String, i64)>>()
    );
    assert_eq!(m.lessor.expired(t(1000), 10), vec![7, 8, 9, 10]);
}

#[test]
fn a_follower_never_reports_expiry_l1() {
    let mut m = Member::new(cfg());
    m.grant(1, 5, t(0)).unwrap();
    m.put("k", 1).unwrap();
    // Never promoted: no deadlines, whatever the clock says.
    assert!(m.lessor.expired(t(1_000_000), 100).is_empty());
    assert!(m.lessor.checkpoints_due(t(1_000_000), 100).is_empty());
    assert_eq!(m.lessor.next_wakeup(), None);
    assert!(matches!(
        m.lessor.renew(1, t(1)),
        Err(LeaseError::NotLeader)
    ));
    assert_eq!(m.lessor.lookup(1).unwrap().deadline(), None);
    // Lead for a while, then lose leadership: deadlines are forgotten.
    m.lessor.promote(t(10));
    assert_eq!(m.lessor.lookup(1).unwrap().deadline(), Some(t(15)));
    m.lessor.demote();
    assert!(!m.lessor.is_leader());
    assert!(m.lessor.expired(t(1_000_000), 100).is_empty());
    // The lease and its key are still there: only a revoke entry removes them.
    assert_eq!(m.keys(1), ["k"]);
    assert_eq!(m.store_keys(), [("k".into(), 1)]);
    // A new term: the deadline restarts from the granted TTL.
    m.lessor.promote(t(2_000_000));
    assert!(m.lessor.expired(t(2_000_004), 100).is_empty());
    assert_eq!(m.lessor.expired(t(2_000_005), 100), vec![1]);
}

fn checkpoint_cfg() -> LessorConfig {
    LessorConfig {
        checkpoint_interval: t(10),
        ..LessorConfig::default()
    }
}

#[test]
fn remaining_ttl_survives_a_leader_change_through_checkpoints() {
    // Two members apply the same entries; member a leads first, then b.
    let mut a = Member::new(checkpoint_cfg());
    let mut b = Member::new(checkpoint_cfg());
    a.lessor.promote(t(0));
    for m in [&mut a, &mut b] {
        m.grant(1, 100, t(0)).unwrap();
        m.grant(2, 8, t(0)).unwrap(); // shorter than the interval: never checkpointed
        m.put("k", 1).unwrap();
    }
    assert!(a.lessor.checkpoints_due(t(9), 100).is_empty());
    assert_eq!(a.lessor.next_wakeup(), Some(t(8)));
    let due = a.lessor.checkpoints_due(Duration::from_millis(10_500), 100);
    assert_eq!(due, vec![(1, 90)], "ceil(89.5)");
    for (id, rem) in &due {
        a.checkpoint(*id, *rem);
        b.checkpoint(*id, *rem);
    }
    assert!(b.lessor.checkpoints_due(t(20), 100).is_empty(), "b follows");
    assert_eq!(b.lessor.lookup(1).unwrap().checkpointed_ttl(), 90);
    // The next checkpoint is an interval later.
    assert!(a
        .lessor
        .checkpoints_due(Duration::from_millis(20_400), 100)
        .is_empty());
    // a loses leadership at 20.4 s; b is promoted at 21 s.
    a.lessor.demote();
    b.lessor.promote(t(21));
    assert_eq!(
        b.lessor.time_to_live(1, false, t(21)).ttl,
        90,
        "from the checkpoint, not the granted 100"
    );
    assert_eq!(b.lessor.time_to_live(1, false, t(21)).granted_ttl, 100);
    assert!(b.lessor.expired(t(110), 10).contains(&2));
    assert!(!b.lessor.expired(t(110), 10).contains(&1));
    assert_eq!(b.lessor.expired(t(111), 10), vec![1]);

    // Without checkpointing the new leader starts from the granted TTL (etcd 3.4's default).
    let mut c = Member::new(LessorConfig {
        checkpointing: false,
        ..checkpoint_cfg()
    });
    c.lessor.promote(t(0));
    c.grant(1, 100, t(0)).unwrap();
    assert!(c.lessor.checkpoints_due(t(50), 100).is_empty());
    c.lessor.demote();
    c.lessor.promote(t(50));
    assert_eq!(c.lessor.time_to_live(1, false, t(50)).ttl, 100);
}

#[test]
fn remaining_ttl_and_leases_survive_a_restart() {
    let mut m = Member::new(checkpoint_cfg());
    m.lessor.promote(t(0));
    m.grant(1, 100, t(0)).unwrap();
    m.grant(2, 50, t(0)).unwrap();
    m.grant(3, 30, t(0)).unwrap();
    m.put("a", 1).unwrap();
    m.put("b", 1).unwrap();
    m.put("c", 2).unwrap();
    m.put("d", 0).unwrap();
    let due = m.lessor.checkpoints_due(t(30), 100);
    assert_eq!(due, vec![(1, 70), (2, 20)]);
    for (id, rem) in due {
        m.checkpoint(id, rem);
    }
    let before: Vec<Lease> = m
        .lessor
        .leases()
        .iter()
        .map(|id| m.lessor.lookup(*id).unwrap().clone())
        .collect();
    m.restart();
    assert!(!m.lessor.is_leader());
    assert_eq!(m.lessor.leases(), vec![1, 2, 3]);
    assert_eq!(m.lessor.orphan_keys(), 0);
    for l in &before {
        let got = m.lessor.lookup(l.id()).unwrap();
        assert_eq!(got.ttl(), l.ttl());
        assert_eq!(got.checkpointed_ttl(), l.checkpointed_ttl());
        assert_eq!(got.keys().collect::<Vec<_>>(), l.keys().collect::<Vec<_>>());
        assert_eq!(got.deadline(), None);
    }
    assert_eq!(m.keys(1), ["a", "b"]);
    m.lessor.promote(t(1000));
    assert_eq!(m.lessor.time_to_live(1, true, t(1000)).ttl, 70);
    assert_eq!(m.lessor.time_to_live(2, true, t(1000)).ttl, 20);
    assert_eq!(m.lessor.time_to_live(3, true, t(1000)).ttl, 30);
    // The put check works after the restart too.
    assert_eq!(m.put("e", 9).unwrap_err(), KvError::LeaseNotFound);
    m.put("e", 3).unwrap();
    assert_eq!(m.keys(3), ["e"]);
}

#[test]
fn a_keepalive_clears_an_earlier_checkpoint() {
    let mut m = Member::new(checkpoint_cfg());
    m.lessor.promote(t(0));
    m.grant(1, 100, t(0)).unwrap();
    let due = m.lessor.checkpoints_due(t(40), 100);
    assert_eq!(due, vec![(1, 60)]);
    m.checkpoint(1, 60);
    // A keepalive resets to the granted TTL, so the checkpoint of 60 must not outlive it.
    assert_eq!(m.lessor.renew(1, t(45)).unwrap(), 100);
    assert_eq!(m.lessor.next_wakeup(), Some(Duration::ZERO));
    assert_eq!(m.lessor.checkpoints_due(t(45), 100), vec![(1, 0)]);
    m.checkpoint(1, 0);
    assert_eq!(m.lessor.lookup(1).unwrap().checkpointed_ttl(), 0);
    // A keepalive without a checkpoint in force proposes nothing.
    m.lessor.renew(1, t(46)).unwrap();
    assert!(m.lessor.checkpoints_due(t(46), 100).is_empty());
    // A restart now starts from the granted TTL (the keepalive's effect), not 60.
    m.restart();
    m.lessor.promote(t(0));
    assert_eq!(m.lessor.time_to_live(1, false, t(0)).ttl, 100);
}

#[test]
fn members_applying_the_same_entries_agree() {
    let mut a = Member::new(cfg());
    let mut b = Member::new(cfg());
    a.lessor.promote(t(0));
    for m in [&mut a, &mut b] {
        for seed in [5u64, 5, 5, 1 << 63] {
            m.apply(|l, w| l.grant(w, 0, 10, seed, t(0))).0.unwrap();
        }
        m.put("x", 6).unwrap();
    }
    assert_eq!(a.lessor.leases(), vec![1, 5, 6, 7]);
    assert_eq!(a.lessor.leases(), b.lessor.leases());
    assert_eq!(a.keys(6), b.keys(6));
    // Only the leader reports the expiry; the revoke entry is applied on both.
    assert!(b.lessor.expired(t(10), 10).is_empty());
    let ids = a.lessor.expired(t(10), 10);
    assert_eq!(ids.len(), 4);
    for id in ids {
        a.revoke(id).unwrap();
        b.revoke(id).unwrap();
    }
    assert_eq!(a.store_keys(), b.store_keys());
    assert!(a.store_keys().is_empty());
    assert!(b.lessor.is_empty());
}

#[test]
fn a_damaged_lease_record_is_an_error_at_open_d1() {
    let mut m = Member::new(cfg());
    m.grant(1, 60, t(0)).unwrap();
    // A record of the wrong length, written as if the file were damaged.
    m.apply(|_, w| w.aux_put(LEASE_BUCKET, &2u64.to_be_bytes(), b"short"))
        .0
        .unwrap();
    match Lessor::open(&m.store, cfg()) {
        Err(e) => assert!(e.is_fatal(), "{e:?}"),
        Ok(_) => panic!("a damaged lease record was accepted"),
    }
}
