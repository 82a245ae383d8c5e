//! Crash test: a child process (this test binary, re-executed) appends with group commit from
//! several concurrent appenders, truncates conflicting suffixes, saves hard states and snapshots,
//! compacts, and prints every result the WAL acknowledged as durable; the parent SIGKILLs it at a
//! random moment, reopens the WAL and checks that every acknowledged entry is present, intact and
//! in order, and that the hard state is at least the last acknowledged one. Repeated on the same
//! directory, so each child also recovers from its predecessor's crash.
//!
//! 200 iterations by default; `KEEL_WAL_SOAK=N` runs N. `KEEL_WAL_CRASH_SEED` replays a run (the
//! seed is printed on failure).

mod wal_common;

use keel_raft::wal::{HardState, SnapshotMarker, SyncMode, Wal, WalOptions};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc::{self, RecvTimeoutError};
use wal_common::{entry, run, small};

const CHILD_DIR: &str = "KEEL_WAL_CRASH_CHILD";
const CHILD_TERM: &str = "KEEL_WAL_CRASH_TERM";
const CHILD_SEED: &str = "KEEL_WAL_CRASH_SEED_CHILD";
const SEGMENT: u64 = 128 << 10;
const APPENDERS: usize = 8;
/// A child that is never killed stops after this many appends.
const CHILD_MAX_APPENDS: u64 = 3000;
/// A child that prints nothing for this long is hung, not slow (a child's whole run takes well
/// under a second here): it is killed and the test fails with its seed, instead of the test
/// waiting forever on its pipe.
const CHILD_STALL: std::time::Duration = std::time::Duration::from_secs(60);

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// The child's body; a no-op unless the parent set `KEEL_WAL_CRASH_CHILD`.
#[test]
fn crash_child_entry_point() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let term: u64 = std::env::var(CHILD_TERM).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    run(move || child(PathBuf::from(dir), term, seed));
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

async fn child(dir: PathBuf, term: u64, mut rng: u64) {
    // Alternate the durability mode between children: both write the same format.
    let sync = if term & 1 == 0 {
        SyncMode::Dsync
    } else {
        SyncMode::Fdatasync
    };
    let opts = WalOptions {
        sync,
        ..small(SEGMENT)
    };
    let wal = Wal::open(&dir, opts).await.expect("child opens the WAL");
    let (last, snap) = (wal.last_index(), wal.snapshot().index);
    if xorshift(&mut rng) % 3 == 1 && last > snap + 5 {
        // A Raft log conflict: drop a short suffix before appending in the new term.
        let from = last - xorshift(&mut rng) % 5;
        say(format!("@t {from}"));
        wal.truncate_suffix(from).await.unwrap();
    }
    let next = Rc::new(Cell::new(wal.last_index() + 1));
    let stop = wal.last_index() + CHILD_MAX_APPENDS;
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|_| {
            let (wal, next) = (wal.clone(), next.clone());
            glommio::spawn_local(async move {
                loop {
                    let i = next.get();
                    if i > stop {
                        return;
                    }
                    next.set(i + 1);
                    let hs = (i % 16 == 0).then_some(HardState {
                        term,
                        vote: 1,
                        commit: i,
                    });
                    wal.append(vec![entry(i, term)], hs).await.unwrap();
                    say(format!("@D {i} {term}"));
                    if let Some(hs) = hs {
                        say(format!("@H {} {}", hs.term, hs.commit));
                    }
                    if i % 256 == 0 {
                        let s = wal.last_index().saturating_sub(64);
                        if s > wal.snapshot().index {
                            let t = wal.term(s).unwrap();
                            wal.save_snapshot(SnapshotMarker { index: s, term: t })
                                .await
                                .unwrap();
                            wal.compact(s).await.unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
}

/// What the parent knows the WAL must hold.
#[derive(Default)]
struct Oracle {
    /// index → term of entries acknowledged durable and not since (possibly) truncated.
    durable: BTreeMap<u64, u64>,
    /// Highest acknowledged (term, commit).
    hard_state: (u64, u64),
    acks: u64,
}

impl Oracle {
    fn line(&mut self, l: &str) {
        // Only what the child wrote; the test harness prints its own text, and its
        // "test crash_child_entry_point ... " has no newline, so the child's first line follows it.
        let Some(at) = l.find('@') else { return };
        let l = &l[at + 1..];
        let f: Vec<u64> = l.split(' ').skip(1).map(|x| x.parse().unwrap()).collect();
        match l.as_bytes().first() {
            Some(b'D') => {
                self.durable.insert(f[0], f[1]);
                self.acks += 1;
            }
            // Entries ≥ from may vanish from now on: no longer required.
            Some(b't') => drop(self.durable.split_off(&f[0])),
            Some(b'H') => self.hard_state = self.hard_state.max((f[0], f[1])),
            _ => {}
        }
    }
}

fn verify(dir: &Path, oracle: &Oracle) -> Result<(), String> {
    let dir = dir.to_path_buf();
    let required: Vec<(u64, u64)> = oracle.durable.iter().map(|(i, t)| (*i, *t)).collect();
    let hs_min = oracle.hard_state;
    run(move || async move {
        let wal = Wal::open(&dir, small(SEGMENT))
            .await
            .map_err(|e| format!("reopen: {e}"))?;
        let (first, last) = (wal.first_index(), wal.last_index());
        let snap = wal.snapshot().index;
        let hs = wal.hard_state();
        if (hs.term, hs.commit) < hs_min {
            return Err(format!(
                "hard state {hs:?} older than acknowledged {hs_min:?}"
            ));
        }
        let got = wal
            .entries(first, last + 1)
            .await
            .map_err(|e| format!("read [{first}, {last}]: {e}"))?;
        for (k, e) in got.iter().enumerate() {
            if e.index != first + k as u64 || e.data != entry(e.index, e.term).data {
                return Err(format!(
                    "entry at position {k} of [{first}, {last}] is {e:?}"
                ));
            }
        }
        for (i, t) in required {
            if i < first {
                if i > snap {
                    return Err(format!(
                        "acknowledged entry {i} lost: log starts at {first}, snapshot {snap}"
                    ));
                }
                continue;
            }
            match got.get((i - first) as usize) {
                Some(e) if e.term == t => {}
                Some(e) => {
                    return Err(format!(
                        "entry {i}: term {} but acknowledged with term {t}",
                        e.term
                    ))
                }
                None => {
                    return Err(format!(
                        "acknowledged entry {i} (term {t}) lost: last index {last}"
                    ))
                }
            }
        }
        Ok(())
    })
}

#[test]
fn acknowledged_entries_survive_sigkill_at_random_moments() {
    let iterations: u64 = std::env::var("KEEL_WAL_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("KEEL_WAL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_nanos() as u64 | 1
        });
    let mut rng = seed;
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut oracle = Oracle::default();
    let mut kills = 0;
    for it in 0..iterations {
        // Mostly early kills (recovery, first groups, preparation), some long runs.
        let kill_after = match xorshift(&mut rng) % 8 {
            0 => 0,
            1..=5 => xorshift(&mut rng) % 100,
            _ => xorshift(&mut rng) % 1000,
        };
        let mut child = Command::new(&exe)
            .args([
                "crash_child_entry_point",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_TERM, (it + 1).to_string())
            .env(CHILD_SEED, (xorshift(&mut rng) | 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines come through a reader thread so that a hung child is noticed (CHILD_STALL).
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let start = oracle.acks;
        let mut killed = false;
        loop {
            let l = match rx.recv_timeout(CHILD_STALL) {
                Ok(l) => l,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    child.kill().ok();
                    child.wait().ok();
                    panic!(
                        "seed {seed} iteration {it}: the child printed nothing for {CHILD_STALL:?} \
                         (kill planned after {kill_after} acks, sent: {killed}): it hung and was killed"
                    );
                }
            };
            oracle.line(&l);
            if !killed && oracle.acks - start >= kill_after {
                child.kill().unwrap();
                killed = true;
            }
        }
        reader.join().unwrap();
        // Lines still in the pipe after the kill were acknowledged before it: they count too.
        let status = child.wait().unwrap();
        if !killed {
            child.kill().ok();
            assert!(
                status.success(),
                "seed {seed} iteration {it}: child failed on its own: {status}"
            );
        } else {
            kills += 1;
        }
        if let Err(e) = verify(dir.path(), &oracle) {
            let kept = dir.keep();
            panic!(
                "seed {seed} iteration {it} (killed after {kill_after} acks): {e}; WAL kept in {}",
                kept.display()
            );
        }
    }
    eprintln!(
        "{iterations} iterations, {kills} kills, {} acknowledged appends, seed {seed}",
        oracle.acks
    );
    assert!(
        oracle.acks > iterations,
        "children acknowledged too little to test anything"
    );
    // Canary: the checker must notice an acknowledged entry that is missing or has another term.
    let (&last, &term) = oracle
        .durable
        .last_key_value()
        .expect("something acknowledged");
    oracle.durable.insert(last, term + 1);
    assert!(
        verify(dir.path(), &oracle).is_err(),
        "checker missed a changed term"
    );
    oracle.durable.insert(last, term);
    oracle.durable.insert(last + 10_000, term);
    assert!(
        verify(dir.path(), &oracle).is_err(),
        "checker missed a lost entry"
    );
}
