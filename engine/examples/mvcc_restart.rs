//! Builds an MVCC store of N keys x R revisions, or reopens one and times it: the keel half of
//! issue 5's restart comparison with etcd (perf/restart-compare.sh drives both).
//!
//!   mvcc_restart load <dir> <keys> <revisions> <value-bytes>
//!   mvcc_restart open <dir>

use std::time::Instant;

use keel_engine::mvcc::{KvStore, PutRequest, RangeRequest, StoreOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: mvcc_restart load <dir> <keys> <revisions> <value-bytes> | open <dir>";
    let path = std::path::Path::new(args.get(2).expect(usage)).join("keel.db");
    let opts = StoreOptions {
        quota_bytes: u64::MAX,
        ..StoreOptions::default()
    };
    match args.get(1).map(String::as_str) {
        Some("load") => {
            let keys: u64 = args[3].parse().expect(usage);
            let revs: u64 = args[4].parse().expect(usage);
            let vlen: usize = args[5].parse().expect(usage);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let store = KvStore::open(&path, opts).unwrap();
            let t = Instant::now();
            let mut applied = 0;
            let batch = 10_000;
            for r in 0..revs {
                for chunk in (0..keys).collect::<Vec<_>>().chunks(batch) {
                    let mut w = store.write().unwrap();
                    for &k in chunk {
                        let mut value = vec![b'v'; vlen];
                        value[..8.min(vlen)].copy_from_slice(&r.to_le_bytes()[..8.min(vlen)]);
                        w.put(&PutRequest {
                            key: k.to_be_bytes().to_vec(),
                            value,
                            ..Default::default()
                        })
                        .unwrap();
                    }
                    applied += 1;
                    w.commit(applied).unwrap();
                }
                store.sync().unwrap();
                eprintln!("round {}/{revs}: {:.1} s", r + 1, t.elapsed().as_secs_f64());
            }
            store.sync().unwrap();
            let secs = t.elapsed().as_secs_f64();
            let size = std::fs::metadata(&path).unwrap().len();
            println!(
                "loaded {} puts in {secs:.1} s ({:.0} puts/s), file {} MiB",
                keys * revs,
                (keys * revs) as f64 / secs,
                size >> 20
            );
        }
        Some("open") => {
            let t = Instant::now();
            let store = KvStore::open(&path, opts).unwrap();
            let r = store.read().unwrap();
            let resp = r
                .range(&RangeRequest {
                    key: 0u64.to_be_bytes().to_vec(),
                    ..Default::default()
                })
                .unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            println!(
                "reopened at revision {} and served a read in {ms:.2} ms (kvs {})",
                r.revision(),
                resp.kvs.len()
            );
        }
        _ => panic!("{usage}"),
    }
}
