//! Watch benchmarks (issue 6, watch half, point 2): the apply core's write path with the watch
//! hub — one put, its visible commit, and `WatchHub::notify` — with no watchers, with 1,000
//! watchers (one key each; every put hits one of them), with 1,000 watchers of one prefix
//! (every put fans out to all 1,000), and with one stalled watcher (a sink that is always full,
//! watching every key) beside the 1,000 key watchers: the stalled one must not slow puts.
//! `cargo bench -p keel-bench --bench watch`.

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_engine::mvcc::*;
use keel_engine::watch::*;

const KEYS: u64 = 1_000;

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

/// A client that keeps up: counts what it is sent and drops it.
#[derive(Clone, Default)]
struct Counting(Rc<Cell<u64>>);

impl WatchSink for Counting {
    fn try_send(&mut self, resp: WatchResponse) -> Result<(), WatchResponse> {
        black_box(&resp);
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

/// Either a counting sink or one that is always full.
#[derive(Clone)]
enum Sink {
    Counting(Counting),
    Stalled,
}

impl WatchSink for Sink {
    fn try_send(&mut self, resp: WatchResponse) -> Result<(), WatchResponse> {
        match self {
            Sink::Counting(c) => c.try_send(resp),
            Sink::Stalled => Err(resp),
        }
    }
    fn has_room(&self) -> bool {
        !matches!(self, Sink::Stalled)
    }
}

fn store() -> (tempfile::TempDir, KvStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = KvStore::open(dir.path().join("kv"), StoreOptions::default()).unwrap();
    let mut w = store.write().unwrap();
    for i in 0..KEYS {
        w.put(&PutRequest {
            key: key(i),
            value: vec![7; 256],
            ..Default::default()
        })
        .unwrap();
    }
    w.commit(0).unwrap();
    (dir, store)
}

#[derive(Clone, Copy)]
enum Setup {
    None,
    KeyWatchers,
    PrefixFanOut,
    KeyWatchersAndStalled,
}

fn hub(store: &KvStore, setup: Setup) -> WatchHub<Sink> {
    let mut hub = WatchHub::new(store.read().unwrap().revision(), WatchOptions::default());
    let streams: Vec<StreamId> = (0..10)
        .map(|_| hub.open_stream(Sink::Counting(Counting::default())))
        .collect();
    match setup {
        Setup::None => {}
        Setup::KeyWatchers | Setup::KeyWatchersAndStalled => {
            for i in 0..KEYS {
                hub.create(
                    streams[(i % 10) as usize],
                    WatchCreate {
                        key: key(i),
                        ..Default::default()
                    },
                )
                .unwrap();
            }
        }
        Setup::PrefixFanOut => {
            for i in 0..1000 {
                hub.create(
                    streams[i % 10],
                    WatchCreate {
                        key: b"key".to_vec(),
                        range_end: b"kez".to_vec(),
                        ..Default::default()
                    },
                )
                .unwrap();
            }
        }
    }
    if let Setup::KeyWatchersAndStalled = setup {
        let s = hub.open_stream(Sink::Stalled);
        let _ = hub.create(
            s,
            WatchCreate {
                key: vec![0],
                range_end: vec![0],
                prev_kv: true,
                ..Default::default()
            },
        );
    }
    hub
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("watch");
    g.throughput(Throughput::Elements(1));
    for (name, setup) in [
        ("put_commit_notify/no_watchers", Setup::None),
        ("put_commit_notify/1000_key_watchers", Setup::KeyWatchers),
        (
            "put_commit_notify/1000_watchers_one_prefix",
            Setup::PrefixFanOut,
        ),
        (
            "put_commit_notify/1000_key_watchers_and_1_stalled",
            Setup::KeyWatchersAndStalled,
        ),
    ] {
        let (_dir, store) = store();
        let mut hub = hub(&store, setup);
        let mut rng = Rng(0x2545f4914f6cdd1d);
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut w = store.write().unwrap();
                w.put(&PutRequest {
                    key: key(rng.next() % KEYS),
                    value: vec![1; 256],
                    ..Default::default()
                })
                .unwrap();
                let events = w.take_events();
                let rev = w.revision();
                w.commit(0).unwrap();
                hub.notify(rev, &events);
                n += 1;
                // The server's catch-up timer (etcd: every 100 ms), here every 100 puts.
                if n.is_multiple_of(100) && hub.needs_sync() {
                    hub.sync_unsynced(&store.read().unwrap(), 1000).unwrap();
                }
            })
        });
        if let Setup::KeyWatchersAndStalled = setup {
            assert_eq!(hub.unsynced_count(), 1, "the stalled watcher is a victim");
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
