//! The deterministic Raft simulator's tests (issue 4, "what it must show" 2–4).
//!
//! - `sim_3_members` / `sim_5_members`: seeds `0..KEEL_SIM_SEEDS` (default 500 each, so CI runs
//!   1000); each seed draws its own fault mix, runs a fault phase with every checker after every
//!   step, then a liveness phase. `KEEL_SIM_SEED=<n>` replays one seed; a failure prints it.
//! - `same_seed_replays_exactly`: two runs of one seed produce the same trace.
//! - `canary_*`: deliberately broken Raft variants that the checkers must catch.

mod checker;
mod cluster;

use std::panic::{catch_unwind, AssertUnwindSafe};

use cluster::{Canary, Sim, Stats, Swarm};

const CI_SEEDS_PER_SIZE: u64 = 500;

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("KEEL_SIM_SEED") {
        return vec![s.parse().expect("KEEL_SIM_SEED must be a number")];
    }
    let n = std::env::var("KEEL_SIM_SEEDS")
        .map(|s| s.parse().expect("KEEL_SIM_SEEDS must be a number"))
        .unwrap_or(CI_SEEDS_PER_SIZE);
    let base: u64 = std::env::var("KEEL_SIM_SEED_BASE").map_or(0, |s| s.parse().expect("number"));
    (base..base + n).collect()
}

/// Runs one seed; any failure (checker violation, liveness, or a panic inside Raft's own
/// assertions) becomes `Err` carrying the message.
fn run_seed(seed: u64, members: usize, canary: Canary) -> Result<Stats, String> {
    let sw = Swarm::from_seed(seed, members, canary);
    match catch_unwind(AssertUnwindSafe(|| Sim::new(sw).run())) {
        Ok(r) => r,
        Err(p) => Err(format!(
            "PANIC {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

fn run_seeds(members: usize) {
    let mut total = Stats::default();
    let seeds = seeds();
    let started = std::time::Instant::now();
    for (i, &seed) in seeds.iter().enumerate() {
        if i > 0 && i % 2_500 == 0 {
            eprintln!(
                "{members} members: {i} seeds passed in {:?}",
                started.elapsed()
            );
        }
        match run_seed(seed, members, Canary::None) {
            Ok(s) => {
                total.steps += s.steps;
                total.delivered += s.delivered;
                total.dropped += s.dropped;
                total.restarts += s.restarts;
                total.max_commit = total.max_commit.max(s.max_commit);
                total.crashes += s.crashes;
                total.partitions += s.partitions;
                total.leaders += s.leaders;
                total.writes_acked += s.writes_acked;
                total.reads_served += s.reads_served;
                total.conf_changes_applied += s.conf_changes_applied;
                total.transfers += s.transfers;
                total.snapshots_installed += s.snapshots_installed;
                if seeds.len() == 1 {
                    println!("{:?}\n{s:?}", Swarm::from_seed(seed, members, Canary::None));
                }
            }
            Err(e) => panic!(
                "{e}\nseed {seed} with {members} members failed; replay exactly with:\n  \
                 KEEL_SIM_SEED={seed} cargo test -p keel-raft --test sim sim_{members}_members -- --nocapture"
            ),
        }
    }
    println!(
        "{members} members, {} seeds passed in {:?}: {total:?}",
        seeds.len(),
        started.elapsed()
    );
    // The runs must exercise what they claim to (guards against a simulator that tests nothing).
    if seeds.len() >= 50 {
        assert!(total.crashes > 0 && total.partitions > 0 && total.leaders > seeds.len() as u64);
        assert!(total.writes_acked > 0 && total.reads_served > 0);
        assert!(total.conf_changes_applied > 0 && total.transfers > 0);
        assert!(total.snapshots_installed > 0);
    }
}

#[test]
fn sim_3_members() {
    run_seeds(3);
}

#[test]
fn sim_5_members() {
    run_seeds(5);
}

#[test]
fn same_seed_replays_exactly() {
    for seed in [1, 2, 3] {
        let a = run_seed(seed, 5, Canary::None).unwrap();
        let b = run_seed(seed, 5, Canary::None).unwrap();
        assert_eq!(a.trace, b.trace);
        assert_eq!(
            (a.steps, a.delivered, a.max_commit),
            (b.steps, b.delivered, b.max_commit)
        );
    }
    assert_ne!(
        run_seed(1, 5, Canary::None).unwrap().trace,
        run_seed(2, 5, Canary::None).unwrap().trace
    );
}

/// Runs canary seeds until a checker reports a violation; returns (seed, message) or panics
/// if none was found within the CI budget.
fn find_violation(canary: Canary) -> (u64, String) {
    let mut other_failures = 0;
    let budget = std::env::var("KEEL_SIM_CANARY_SEEDS")
        .map_or(CI_SEEDS_PER_SIZE, |s| s.parse().expect("number"));
    for seed in 0..budget {
        let members = if seed % 2 == 0 { 5 } else { 3 };
        if let Err(e) = run_seed(seed, members, canary) {
            if e.contains("VIOLATION") && std::env::var("KEEL_SIM_CANARY_COUNT").is_ok() {
                println!("{canary:?} seed {seed}: {e}");
                continue;
            }
            if e.contains("VIOLATION") {
                println!("{canary:?} caught at seed {seed} ({other_failures} seeds failed otherwise first): {e}");
                return (seed, e);
            }
            other_failures += 1;
        }
    }
    panic!(
        "{canary:?} not caught within {} seeds",
        2 * CI_SEEDS_PER_SIZE
    );
}

#[test]
fn canary_vote_ignoring_log_is_caught() {
    find_violation(Canary::VoteIgnoringLog);
}

#[test]
fn canary_commit_old_terms_is_caught() {
    find_violation(Canary::CommitOldTerms);
}
