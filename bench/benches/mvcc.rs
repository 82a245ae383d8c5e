//! Engine-level MVCC benchmarks (issue 5, point 3): put, range of 1 and of 100 keys, txn, on a
//! store of 100k keys with 256-byte values. `cargo bench -p keel-bench --bench mvcc`.
//! Each write is its own apply batch with a visible commit (the server batches many; this is
//! the per-request worst case); durability is the WAL's job, not measured here.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_engine::mvcc::*;

const KEYS: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn loaded() -> (tempfile::TempDir, KvStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(dir.path().join("kv"), StoreOptions::default()).unwrap();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(10_000) {
        let mut w = store.write().unwrap();
        for &i in chunk {
            w.put(&PutRequest {
                key: key(i),
                value: vec![7; 256],
                ..Default::default()
            })
            .unwrap();
        }
        w.commit(0).unwrap();
    }
    store.sync().unwrap();
    (dir, store)
}

fn bench(c: &mut Criterion) {
    let (_dir, store) = loaded();
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let mut g = c.benchmark_group("mvcc");
    g.throughput(Throughput::Elements(1));
    g.bench_function("put_256B_one_request_per_commit", |b| {
        b.iter(|| {
            let mut w = store.write().unwrap();
            w.put(&PutRequest {
                key: key(rng.next() % KEYS),
                value: vec![1; 256],
                ..Default::default()
            })
            .unwrap();
            w.commit(0).unwrap();
        })
    });
    g.bench_function("put_256B_batch_of_100", |b| {
        b.iter(|| {
            let mut w = store.write().unwrap();
            for _ in 0..100 {
                w.put(&PutRequest {
                    key: key(rng.next() % KEYS),
                    value: vec![1; 256],
                    ..Default::default()
                })
                .unwrap();
            }
            w.commit(0).unwrap();
        })
    });
    // What keel-bench's put does by default (--key-space-size 1, like etcd's tool): every put
    // rewrites the same key, so each commit appends to the revision tree.
    g.bench_function("put_256B_one_key_batch_of_100", |b| {
        let k = key(KEYS / 2);
        b.iter(|| {
            let mut w = store.write().unwrap();
            for _ in 0..100 {
                w.put(&PutRequest {
                    key: k.clone(),
                    value: vec![1; 256],
                    ..Default::default()
                })
                .unwrap();
            }
            w.commit(0).unwrap();
        })
    });
    g.bench_function("range_1_key", |b| {
        b.iter(|| {
            let r = store.read().unwrap();
            black_box(
                r.range(&RangeRequest {
                    key: key(rng.next() % KEYS),
                    ..Default::default()
                })
                .unwrap(),
            );
        })
    });
    g.bench_function("range_100_keys", |b| {
        b.iter(|| {
            let r = store.read().unwrap();
            let start = rng.next() % (KEYS - 100);
            black_box(
                r.range(&RangeRequest {
                    key: key(start),
                    range_end: key(start + 100),
                    ..Default::default()
                })
                .unwrap(),
            );
        })
    });
    g.bench_function("txn_compare_put", |b| {
        b.iter(|| {
            let k = key(rng.next() % KEYS);
            let mut w = store.write().unwrap();
            let t = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Greater,
                    target: CompareTarget::Version(0),
                    key: k.clone(),
                    range_end: vec![],
                }],
                success: vec![RequestOp::Put(PutRequest {
                    key: k,
                    value: vec![2; 256],
                    ..Default::default()
                })],
                failure: vec![],
            };
            black_box(w.txn(&t).unwrap());
            w.commit(0).unwrap();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
