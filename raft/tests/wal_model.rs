//! The WAL against a model: random sequences of appends (with Raft conflicts), suffix
//! truncations, hard states, snapshots, compactions and reopens, each checked against a plain
//! in-memory log after every step. Seeded; a failure prints its seed (`KEEL_WAL_MODEL_SEED`
//! replays one).

mod wal_common;

use keel_raft::wal::{HardState, SnapshotMarker, Wal, WalEntry};
use std::collections::BTreeMap;
use std::path::Path;
use wal_common::{run, small};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn ent(index: u64, term: u64) -> WalEntry {
    let len = ((index * 7 + term * 13) % 500) as usize;
    WalEntry {
        index,
        term,
        kind: (term % 4) as u8,
        data: vec![(index ^ term) as u8; len],
    }
}

#[derive(Default)]
struct Model {
    terms: BTreeMap<u64, u64>,
    snapshot: SnapshotMarker,
    hard_state: HardState,
}

impl Model {
    fn last(&self) -> u64 {
        self.terms
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.snapshot.index)
    }
    fn truncate(&mut self, from: u64) {
        self.terms.split_off(&from);
    }
}

async fn check(wal: &Wal, m: &Model, step: usize) {
    let ctx = format!("step {step}");
    assert_eq!(wal.last_index(), m.last(), "{ctx}: last index");
    assert_eq!(wal.hard_state(), m.hard_state, "{ctx}: hard state");
    assert_eq!(wal.snapshot(), m.snapshot, "{ctx}: snapshot");
    let first = wal.first_index();
    let model_first = m
        .terms
        .keys()
        .next()
        .copied()
        .unwrap_or(m.snapshot.index + 1);
    assert!(
        first >= model_first,
        "{ctx}: first {first} before the model's {model_first}"
    );
    assert!(
        first == model_first || first <= m.snapshot.index + 1,
        "{ctx}: first {first} released entries the snapshot at {} does not cover",
        m.snapshot.index
    );
    let got = wal.entries(first, m.last() + 1).await.unwrap();
    for e in got {
        assert_eq!(
            e,
            ent(e.index, m.terms[&e.index]),
            "{ctx}: entry {}",
            e.index
        );
    }
}

fn scenario(dir: &Path, seed: u64, steps: usize) {
    let dir = dir.to_path_buf();
    run(move || async move {
        let mut rng = Rng(seed);
        let mut m = Model::default();
        let mut term = 1;
        let mut wal = Wal::open(&dir, small(64 << 10)).await.unwrap();
        for step in 0..steps {
            match rng.below(20) {
                0..=10 => {
                    // Append 1..8 entries, sometimes overwriting a suffix in a new term.
                    let lo = if rng.below(4) == 0 {
                        term += 1;
                        let floor = m.snapshot.index + 1;
                        floor + rng.below(m.last() + 2 - floor)
                    } else {
                        m.last() + 1
                    };
                    let n = 1 + rng.below(8);
                    let es: Vec<WalEntry> = (lo..lo + n).map(|i| ent(i, term)).collect();
                    let hs = (rng.below(3) == 0).then(|| HardState {
                        term,
                        vote: rng.below(5),
                        commit: lo,
                    });
                    let last = wal.append(es, hs).await.unwrap();
                    assert_eq!(last, lo + n - 1);
                    m.truncate(lo);
                    for i in lo..lo + n {
                        m.terms.insert(i, term);
                    }
                    if let Some(hs) = hs {
                        m.hard_state = hs;
                    }
                }
                11 | 12 if m.last() > m.snapshot.index => {
                    let from = m.snapshot.index + 1 + rng.below(m.last() - m.snapshot.index);
                    wal.truncate_suffix(from).await.unwrap();
                    m.truncate(from);
                }
                13 => {
                    let hs = HardState {
                        term,
                        vote: rng.below(5),
                        commit: m.last(),
                    };
                    wal.save_hard_state(hs).await.unwrap();
                    m.hard_state = hs;
                }
                14 | 15 => {
                    // A snapshot inside the log (compaction) or, rarely, past it (a follower
                    // receiving one), then release what it covers.
                    let s = if rng.below(6) == 0 {
                        m.last() + 1 + rng.below(20)
                    } else {
                        m.last().saturating_sub(rng.below(30))
                    };
                    if s >= m.snapshot.index {
                        let t = m.terms.get(&s).copied().unwrap_or(term);
                        let mark = SnapshotMarker { index: s, term: t };
                        wal.save_snapshot(mark).await.unwrap();
                        m.snapshot = mark;
                        if s > m.last() {
                            m.terms.clear();
                        }
                        wal.compact(s).await.unwrap();
                    }
                }
                16 => {
                    drop(wal);
                    wal = Wal::open(&dir, small(64 << 10)).await.unwrap();
                }
                _ => {}
            }
            check(&wal, &m, step).await;
        }
    });
}

#[test]
fn random_operations_match_the_model_across_reopens() {
    let seeds: Vec<u64> = match std::env::var("KEEL_WAL_MODEL_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => vec![
            0x9E37_79B9_7F4A_7C15,
            0xD1B5_4A32_D192_ED03,
            0x2545_F491_4F6C_DD1D,
        ],
    };
    for seed in seeds {
        let dir = tempfile::tempdir().unwrap();
        let r = std::panic::catch_unwind(|| scenario(dir.path(), seed, 400));
        if let Err(e) = r {
            eprintln!("failing seed: KEEL_WAL_MODEL_SEED={seed}");
            std::panic::resume_unwind(e);
        }
    }
}
