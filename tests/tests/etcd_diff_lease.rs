//! Differential test of keel's lessor against a real etcd 3.4 (issue 6, lease part).
//!
//! etcd (Debian's `etcd-server`, started by the test on free loopback ports, default election
//! timeout) gets etcd's protobuf lease and KV requests over gRPC; keel runs a `KvStore` and a
//! promoted `Lessor` in process, applying one entry per write batch as the apply core does.
//! Answers are normalized and compared:
//!
//! - grant: client-chosen IDs (same on both), server-chosen IDs (etcd's are random, keel's come
//!   from the seed: the test keeps a map etcd ID → keel ID and checks both are positive and
//!   distinct from every live lease), duplicate IDs, TTLs below the minimum and above the
//!   maximum, by granted TTL, error code and message;
//! - put with a lease (known, unknown) and delete: the whole response, revisions included;
//! - revoke: header revision (one revision for all attached keys), the keys left, unknown IDs;
//! - TimeToLive with keys: ID, granted TTL and keys exactly; remaining TTL within
//!   [`TTL_TOLERANCE`] seconds, since etcd's clock is real. keel's clock is injected: the test
//!   sets it to the real time elapsed since the start, so the two are comparable;
//! - keepalive: the TTL answered (an unknown lease answers TTL 0 in etcd's gRPC layer; keel's
//!   lessor answers NotFound, which the gateway maps the same way);
//! - the lease list (as sets, through the ID map);
//! - expiry: a lease of etcd's minimum TTL with keys attached; etcd revokes it on its own (the
//!   test polls etcd's TimeToLive with a deadline); keel's clock is advanced to the lease's
//!   deadline, its lessor reports the lease, the test applies the revoke it asks for, and the
//!   key states and revisions must then agree.
//!
//! The first part runs fixed scenarios; the second a random sequence from one seed.
//! Environment: `KEEL_DIFF_SEED=<u64>` replays a run (a failure prints its seed),
//! `KEEL_DIFF_LEASE_OPS=<n>` sets the random sequence's length (default 300), `KEEL_ETCD_BIN`
//! names the etcd binary. Without etcd the test fails; it never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use etcd_client::proto as pb;
use keel_engine::lease::*;
use keel_engine::mvcc::*;
use keel_tests::etcd::Etcd;
use keel_tests::support::{env_u64, Grpc, Rng};

/// etcd's clock is real: remaining TTLs may differ by this many seconds (grant and query are
/// not at the same instant on both sides, and both truncate).
const TTL_TOLERANCE: i64 = 1;
/// How long etcd may take to revoke an expired lease on its own.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between polls of etcd's state (a bounded poll, not a synchronisation by sleeping).
const POLL: Duration = Duration::from_millis(50);
const DEFAULT_OPS: u64 = 300;
/// Key prefix of everything this test writes.
const PREFIX: &str = "lease/";

// ---------------------------------------------------------------------------------------------
// Deterministic randomness (SplitMix64).

/// An error as (gRPC code, message).
type Err2 = (i32, String);

// ---------------------------------------------------------------------------------------------
// etcd side: protobuf requests over gRPC (keepalive on its stream).

struct EtcdSide {
    g: Grpc,
}

impl EtcdSide {
    fn connect(url: &str) -> EtcdSide {
        EtcdSide {
            g: Grpc::connect(url),
        }
    }

    fn call<Q, R>(&self, method: &'static str, q: Q) -> Result<R, Err2>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.g
            .unary(method, q)
            .map_err(|s| (s.code() as i32, s.message().to_string()))
    }

    fn grant(&self, id: i64, ttl: i64) -> Result<(i64, i64), Err2> {
        let r: pb::PbLeaseGrantResponse = self.call(
            "/etcdserverpb.Lease/LeaseGrant",
            pb::PbLeaseGrantRequest { ttl, id },
        )?;
        assert_eq!(r.error, "", "etcd's grant answered an error string");
        Ok((r.id, r.ttl))
    }

    fn revoke(&self, id: i64) -> Result<i64, Err2> {
        let r: pb::PbLeaseRevokeResponse = self.call(
            "/etcdserverpb.Lease/LeaseRevoke",
            pb::PbLeaseRevokeRequest { id },
        )?;
        Ok(r.header.expect("header").revision)
    }

    fn time_to_live(&self, id: i64, keys: bool) -> Result<TimeToLive, Err2> {
        let r: pb::PbLeaseTimeToLiveResponse = self.call(
            "/etcdserverpb.Lease/LeaseTimeToLive",
            pb::PbLeaseTimeToLiveRequest { id, keys },
        )?;
        let mut keys = r.keys;
        keys.sort();
        Ok(TimeToLive {
            id: r.id,
            ttl: r.ttl,
            granted_ttl: r.granted_ttl,
            keys,
        })
    }

    fn leases(&self) -> Result<BTreeSet<i64>, Err2> {
        let r: pb::PbLeaseLeasesResponse = self.call(
            "/etcdserverpb.Lease/LeaseLeases",
            pb::PbLeaseLeasesRequest {},
        )?;
        Ok(r.leases.iter().map(|l| l.id).collect())
    }

    /// One keepalive on etcd's bidirectional stream (one request, then the client half-closes);
    /// the TTL it answers.
    fn keep_alive(&mut self, id: i64) -> Result<i64, Err2> {
        self.g
            .rt
            .block_on(async {
                let mut g = tonic::client::Grpc::new(self.g.channel.clone());
                g.ready()
                    .await
                    .map_err(|e| tonic::Status::unknown(format!("channel not ready: {e}")))?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                    "/etcdserverpb.Lease/LeaseKeepAlive",
                );
                let codec = tonic_prost::ProstCodec::<
                    pb::PbLeaseKeepAliveRequest,
                    pb::PbLeaseKeepAliveResponse,
                >::default();
                let reqs =
                    tonic::codegen::tokio_stream::iter(vec![pb::PbLeaseKeepAliveRequest { id }]);
                let mut stream = g
                    .streaming(tonic::Request::new(reqs), path, codec)
                    .await?
                    .into_inner();
                let r = stream.message().await?.expect("a keepalive answer");
                assert_eq!(r.id, id);
                Ok(r.ttl)
            })
            .map_err(|s: tonic::Status| (s.code() as i32, s.message().to_string()))
    }

    fn put(&self, key: &str, lease: i64) -> Result<PutResponse, Err2> {
        let r: pb::PbPutResponse = self.call(
            "/etcdserverpb.KV/Put",
            pb::PbPutRequest {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                lease,
                prev_kv: true,
                ..Default::default()
            },
        )?;
        Ok(PutResponse {
            header: ResponseHeader {
                revision: r.header.expect("header").revision,
            },
            prev_kv: r.prev_kv.map(from_pb_kv),
        })
    }

    fn delete(&self, key: &str) -> Result<i64, Err2> {
        let r: pb::PbDeleteResponse = self.call(
            "/etcdserverpb.KV/DeleteRange",
            pb::PbDeleteRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            },
        )?;
        Ok(r.deleted)
    }

    /// Every key under the prefix, and the revision.
    fn state(&self) -> (i64, Vec<KeyValue>) {
        let r: pb::PbRangeResponse = self
            .call(
                "/etcdserverpb.KV/Range",
                pb::PbRangeRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: prefix_end(),
                    ..Default::default()
                },
            )
            .expect("etcd range");
        (
            r.header.expect("header").revision,
            r.kvs.into_iter().map(from_pb_kv).collect(),
        )
    }
}

fn prefix_end() -> Vec<u8> {
    let mut e = PREFIX.as_bytes().to_vec();
    *e.last_mut().unwrap() += 1;
    e
}

fn from_pb_kv(kv: pb::PbKeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

// ---------------------------------------------------------------------------------------------
// keel side: a store and a promoted lessor; one entry per write batch. The clock is injected.

struct KeelSide {
    _dir: tempfile::TempDir,
    store: KvStore,
    lessor: Lessor,
    applied: u64,
    /// keel's clock (the test sets it).
    now: Duration,
    /// Seeds server-chosen IDs (stands for the entry's request ID).
    rng: Rng,
}

fn keel_err(e: impl Into<LeaseError>) -> Err2 {
    let e = e.into();
    assert!(!e.is_fatal(), "keel storage failure: {e}");
    (e.code() as i32, e.message())
}

impl KeelSide {
    fn new(seed: u64) -> KeelSide {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = KvStore::open(dir.path().join("kv"), StoreOptions::default()).expect("open");
        let mut lessor = Lessor::open(&store, LessorConfig::default()).expect("lessor");
        lessor.promote(Duration::ZERO);
        KeelSide {
            _dir: dir,
            store,
            lessor,
            applied: 0,
            now: Duration::ZERO,
            rng: Rng(seed),
        }
    }

    fn apply<R>(&mut self, f: impl FnOnce(&mut Lessor, &mut KvWrite<'_>, Duration) -> R) -> R {
        let now = self.now;
        let lessor = &mut self.lessor;
        let mut w = self.store.write().expect("write");
        w.set_lease_check(lessor.lease_check());
        let r = f(lessor, &mut w, now);
        let events = w.take_events();
        lessor.observe(&events);
        self.applied += 1;
        w.commit(self.applied).expect("commit");
        r
    }

    fn grant(&mut self, id: i64, ttl: i64) -> Result<(i64, i64), Err2> {
        let seed = self.rng.next_u64();
        self.apply(|l, w, now| l.grant(w, id, ttl, seed, now))
            .map_err(keel_err)
    }

    fn revoke(&mut self, id: i64) -> Result<i64, Err2> {
        self.apply(|l, w, _| l.revoke(w, id))
            .map(|r| r.header.revision)
            .map_err(keel_err)
    }

    fn put(&mut self, key: &str, lease: i64) -> Result<PutResponse, Err2> {
        self.apply(|_, w, _| {
            w.put(&PutRequest {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                lease,
                prev_kv: true,
                ..Default::default()
            })
        })
        .map_err(keel_err)
    }

    fn delete(&mut self, key: &str) -> Result<i64, Err2> {
        self.apply(|_, w, _| {
            w.delete_range(&DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
        })
        .map(|r| r.deleted)
        .map_err(keel_err)
    }

    /// etcd's keepalive answer: the TTL, or 0 for a lease that does not exist.
    fn keep_alive(&mut self, id: i64) -> Result<i64, Err2> {
        match self.lessor.renew(id, self.now) {
            Ok(ttl) => Ok(ttl),
            Err(LeaseError::NotFound) | Err(LeaseError::Expired) => Ok(0),
            Err(e) => Err(keel_err(e)),
        }
    }

    fn state(&self) -> (i64, Vec<KeyValue>) {
        let r = self.store.read().expect("read");
        let resp = r
            .range(&RangeRequest {
                key: PREFIX.as_bytes().to_vec(),
                range_end: prefix_end(),
                ..Default::default()
            })
            .expect("keel range");
        (r.revision(), resp.kvs)
    }
}

// ---------------------------------------------------------------------------------------------
// The comparison driver.

struct Diff {
    etcd: EtcdSide,
    keel: KeelSide,
    /// etcd lease ID → keel lease ID (equal for client-chosen IDs).
    ids: BTreeMap<i64, i64>,
    started: Instant,
    seed: u64,
    history: Vec<String>,
    etcd_log: Box<dyn Fn() -> String>,
}

impl Diff {
    /// keel's clock follows the real one (so remaining TTLs are comparable), never backwards.
    fn tick(&mut self) {
        let real = self.started.elapsed();
        if real > self.keel.now {
            self.keel.now = real;
        }
    }

    /// Records a step (printed as it happens with `KEEL_DIFF_TRACE=1`).
    fn step(&mut self, s: String) {
        if std::env::var_os("KEEL_DIFF_TRACE").is_some() {
            eprintln!("step {}: {s}", self.history.len());
        }
        self.history.push(s);
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "keel and etcd differ: {what}\nreplay with KEEL_DIFF_SEED={}\nsteps:\n{}\n\
             etcd's log (tail):\n{}",
            self.seed,
            self.history.join("\n"),
            (self.etcd_log)()
        );
    }

    fn check<T: PartialEq + std::fmt::Debug>(&self, what: &str, keel: &T, etcd: &T) {
        if keel != etcd {
            self.fail(&format!("{what}\nkeel: {keel:?}\netcd: {etcd:?}"));
        }
    }

    fn to_keel(&self, etcd_id: i64) -> i64 {
        *self.ids.get(&etcd_id).unwrap_or(&etcd_id)
    }

    fn to_etcd(&self, keel_id: i64) -> i64 {
        self.ids
            .iter()
            .find(|(_, k)| **k == keel_id)
            .map_or(keel_id, |(e, _)| *e)
    }

    /// Grants on both; `id` 0 lets each server choose. Returns the etcd ID.
    fn grant(&mut self, id: i64, ttl: i64) -> Option<i64> {
        self.step(format!("grant id {id} ttl {ttl}"));
        self.tick();
        let e = self.etcd.grant(id, ttl);
        let k = self.keel.grant(id, ttl);
        match (&e, &k) {
            (Ok((eid, ettl)), Ok((kid, kttl))) => {
                self.check("granted TTL", kttl, ettl);
                if id != 0 {
                    self.check("granted ID", kid, eid);
                } else {
                    if *eid <= 0 || *kid <= 0 {
                        self.fail(&format!("server-chosen IDs {kid} (keel), {eid} (etcd)"));
                    }
                    self.ids.insert(*eid, *kid);
                }
                Some(*eid)
            }
            _ => {
                self.check("grant", &k.map(|_| ()), &e.map(|_| ()));
                None
            }
        }
    }

    fn revoke(&mut self, etcd_id: i64) {
        self.step(format!("revoke {etcd_id}"));
        self.tick();
        let kid = self.to_keel(etcd_id);
        let e = self.etcd.revoke(etcd_id);
        let k = self.keel.revoke(kid);
        self.check("revoke (header revision)", &k, &e);
        if e.is_ok() {
            self.ids.remove(&etcd_id);
        }
        self.compare_state();
    }

    fn put(&mut self, key: &str, etcd_lease: i64) {
        self.step(format!("put {key} lease {etcd_lease}"));
        let e = self.etcd.put(key, etcd_lease);
        let k = self.keel.put(key, self.to_keel(etcd_lease));
        let k = k.map(|mut r| {
            if let Some(p) = &mut r.prev_kv {
                p.lease = self.to_etcd(p.lease);
            }
            r
        });
        self.check("put", &k, &e);
    }

    fn delete(&mut self, key: &str) {
        self.step(format!("delete {key}"));
        let e = self.etcd.delete(key);
        let k = self.keel.delete(key);
        self.check("delete", &k, &e);
    }

    fn time_to_live(&mut self, etcd_id: i64, keys: bool) {
        self.history
            .push(format!("timetolive {etcd_id} keys {keys}"));
        self.tick();
        let e = self.etcd.time_to_live(etcd_id, keys);
        self.tick();
        let mut k = Ok(self
            .keel
            .lessor
            .time_to_live(self.to_keel(etcd_id), keys, self.keel.now));
        if let Ok(k) = &mut k {
            k.id = etcd_id;
        }
        match (&k, &e) {
            (Ok(kt), Ok(et)) => {
                self.check(
                    "TimeToLive (granted TTL, keys)",
                    &(kt.id, kt.granted_ttl, &kt.keys),
                    &(et.id, et.granted_ttl, &et.keys),
                );
                let both_unknown = kt.ttl == -1 && et.ttl == -1;
                if !both_unknown
                    && (kt.ttl < 0 || et.ttl < 0 || (kt.ttl - et.ttl).abs() > TTL_TOLERANCE)
                {
                    self.fail(&format!("TimeToLive TTL: keel {kt:?}, etcd {et:?}"));
                }
            }
            _ => self.check("TimeToLive", &k, &e),
        }
    }

    fn keep_alive(&mut self, etcd_id: i64) {
        self.step(format!("keepalive {etcd_id}"));
        self.tick();
        let e = self.etcd.keep_alive(etcd_id);
        self.tick();
        let k = self.keel.keep_alive(self.to_keel(etcd_id));
        self.check("keepalive TTL", &k, &e);
    }

    fn leases(&mut self) {
        self.step("leases".into());
        let e = self.etcd.leases();
        let k: BTreeSet<i64> = self
            .keel
            .lessor
            .leases()
            .into_iter()
            .map(|id| self.to_etcd(id))
            .collect();
        self.check("leases", &Ok(k), &e);
    }

    /// Keys (with leases through the ID map) and revisions agree.
    fn compare_state(&mut self) {
        let (erev, ekvs) = self.etcd.state();
        let (krev, mut kkvs) = self.keel.state();
        for kv in &mut kkvs {
            kv.lease = self.to_etcd(kv.lease);
        }
        self.check("revision", &krev, &erev);
        self.check("keys", &kkvs, &ekvs);
    }

    /// Polls etcd until it has revoked `etcd_id` on its own (bounded).
    fn wait_etcd_revoked(&self, etcd_id: i64) {
        let until = Instant::now() + EXPIRY_DEADLINE;
        loop {
            let t = self.etcd.time_to_live(etcd_id, false).expect("etcd ttl");
            if t.ttl == -1 {
                return;
            }
            if Instant::now() > until {
                self.fail(&format!(
                    "etcd did not revoke lease {etcd_id} within {EXPIRY_DEADLINE:?}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// A lease expires on both: etcd on its own; keel when its clock passes the deadline and the
    /// revokes its lessor reports are applied (each once etcd has revoked the same lease, so
    /// the states are comparable after every step).
    fn expire(&mut self, etcd_id: i64) {
        self.step(format!("expire {etcd_id}"));
        let kid = self.to_keel(etcd_id);
        let Some(deadline) = self.keel.lessor.lookup(kid).map(|l| {
            l.deadline()
                .expect("keel's leader has a deadline for every lease")
        }) else {
            // Already expired on keel with an earlier lease of the same deadline.
            self.wait_etcd_revoked(etcd_id);
            return;
        };
        // Not before the deadline (L1: only the revoke the server applies removes anything).
        let before = deadline - Duration::from_millis(1);
        if before > self.keel.now {
            self.keel.now = before;
        }
        if self.keel.lessor.expired(self.keel.now, 100).contains(&kid) {
            self.fail("keel reported a lease before its deadline");
        }
        self.wait_etcd_revoked(etcd_id);
        self.keel.now = self.keel.now.max(deadline);
        self.tick();
        let due = self.keel.lessor.expired(self.keel.now, 100);
        if !due.contains(&kid) {
            self.fail(&format!(
                "keel's lessor did not report lease {kid} (reported {due:?})"
            ));
        }
        for id in due {
            let eid = self.to_etcd(id);
            self.wait_etcd_revoked(eid);
            self.keel.revoke(id).expect("revoke of an expired lease");
            self.ids.remove(&eid);
            self.compare_state();
        }
    }
}

fn scenarios(d: &mut Diff) {
    // Grants.
    let a = d.grant(1001, 600).unwrap();
    let b = d.grant(0, 600).unwrap();
    let c = d.grant(0, 300).unwrap();
    if b == c || d.to_keel(b) == d.to_keel(c) {
        d.fail("two server-chosen IDs are equal");
    }
    assert!(d.grant(1001, 30).is_none(), "duplicate ID");
    // Below the minimum: raised to it (then they expire, checked on both).
    d.grant(1002, 1);
    d.grant(1003, 0);
    d.grant(1004, -7);
    assert!(d.grant(1005, MAX_LEASE_TTL + 1).is_none(), "TTL too large");
    d.time_to_live(1002, false);
    for id in [1002, 1003, 1004] {
        d.expire(id);
    }
    d.leases();
    d.time_to_live(a, true);
    d.time_to_live(999_999, true); // unknown

    // Keys attach through puts, move between leases, detach.
    d.put("lease/a1", a);
    d.put("lease/a2", a);
    d.put("lease/b1", b);
    d.put("lease/free", 0);
    d.put("lease/x", 999_999); // unknown lease: refused
    d.time_to_live(a, true);
    d.time_to_live(b, true);
    d.put("lease/a2", b); // moves
    d.put("lease/b1", 0); // detaches
    d.put("lease/c1", c);
    d.delete("lease/c1");
    d.time_to_live(a, true);
    d.time_to_live(b, true);
    d.time_to_live(c, true);
    d.compare_state();

    // Keepalive.
    d.keep_alive(a);
    d.keep_alive(999_999);

    // Revoke: every attached key in one revision; then an unknown lease.
    for i in 0..20 {
        d.put(&format!("lease/r{i:02}"), c);
    }
    d.revoke(c);
    d.revoke(c);
    d.time_to_live(c, true);
    d.leases();

    // Expiry of a lease with keys, at etcd's minimum TTL.
    let e = d.grant(2001, 1).unwrap();
    d.put("lease/e1", e);
    d.put("lease/e2", e);
    d.put("lease/e3", e);
    d.expire(e);
    d.time_to_live(e, true);
    d.put("lease/e1", e); // gone: refused on both
    d.leases();
    // Clean up what the scenario granted so the random part starts from no leases.
    for id in d.etcd.leases().expect("etcd leases") {
        d.revoke(id);
    }
}

fn random(d: &mut Diff, rng: &mut Rng, ops: u64) {
    const KEYS: [&str; 8] = [
        "lease/k0", "lease/k1", "lease/k2", "lease/k3", "lease/k4", "lease/k5", "lease/k6",
        "lease/k7",
    ];
    let mut next_client_id = 5000i64;
    for _ in 0..ops {
        let live: Vec<i64> = d.ids.keys().copied().collect();
        let pick = |rng: &mut Rng| -> i64 {
            // A live lease mostly; sometimes an unknown one or none.
            match rng.below(10) {
                0 => 7_777_777 + rng.below(3) as i64,
                1 => 0,
                _ if live.is_empty() => 0,
                _ => live[rng.below(live.len() as u64) as usize],
            }
        };
        match rng.below(100) {
            0..=11 => {
                // Long TTLs only: nothing may expire on etcd's real clock during the sequence
                // (expiry has its own scenario).
                let ttl = [60, 300, 600, 3600][rng.below(4) as usize];
                let client_ids: Vec<i64> = d
                    .ids
                    .iter()
                    .filter(|(e, k)| e == k)
                    .map(|(e, _)| *e)
                    .collect();
                let id = if rng.below(2) == 0 {
                    0
                } else if rng.below(8) == 0 && !client_ids.is_empty() {
                    client_ids[rng.below(client_ids.len() as u64) as usize] // duplicate
                } else {
                    next_client_id += 1;
                    next_client_id
                };
                if let Some(eid) = d.grant(id, ttl) {
                    d.ids.entry(eid).or_insert(eid);
                }
            }
            12..=44 => {
                let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                let l = pick(rng);
                d.put(k, l);
            }
            45..=54 => {
                let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                d.delete(k);
            }
            55..=64 => {
                let l = pick(rng);
                d.revoke(l);
            }
            65..=79 => {
                let l = pick(rng);
                d.time_to_live(l, rng.below(2) == 0);
            }
            80..=89 => {
                let l = pick(rng);
                d.keep_alive(l);
            }
            _ => d.leases(),
        }
    }
    d.compare_state();
}

#[test]
fn keel_leases_answer_as_etcd_3_4() {
    let seed = env_u64("KEEL_DIFF_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    });
    let ops = env_u64("KEEL_DIFF_LEASE_OPS").unwrap_or(DEFAULT_OPS);
    eprintln!("etcd_diff_lease: seed {seed} (replay: KEEL_DIFF_SEED={seed}), {ops} random ops");
    let etcd = Etcd::start();
    let etcd_side = EtcdSide::connect(etcd.client_url());
    let etcd = std::rc::Rc::new(etcd);
    let log = std::rc::Rc::clone(&etcd);
    let mut rng = Rng(seed);
    let mut d = Diff {
        etcd: etcd_side,
        keel: KeelSide::new(rng.next_u64()),
        ids: BTreeMap::new(),
        started: Instant::now(),
        seed,
        history: Vec::new(),
        etcd_log: Box::new(move || log.log_tail()),
    };
    let started = Instant::now();
    scenarios(&mut d);
    random(&mut d, &mut rng, ops);
    eprintln!(
        "etcd_diff_lease: scenarios and {ops} random ops agree, {:.1}s (etcd pid {})",
        started.elapsed().as_secs_f64(),
        etcd.pid()
    );
}
