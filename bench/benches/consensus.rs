//! Throughput of the consensus core alone: proposals per second through a 3-member in-memory
//! cluster (MemStorage, messages handed over directly, no I/O, no encoding), with proposals
//! batched into one `propose_batch` call the way the log core batches a round of client writes.
//! Each iteration proposes a batch at the leader and runs the cluster until the leader has
//! applied it (one full replication round trip plus the commit notification).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keel_raft::consensus::{ConfState, Config, Entry, MemStorage, Message, RawNode, Role};

struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
}

impl Cluster {
    fn new() -> Self {
        let voters = vec![1, 2, 3];
        let nodes = voters
            .iter()
            .map(|&id| {
                let storage = MemStorage::new_with_conf_state(ConfState {
                    voters: voters.clone(),
                    learners: vec![],
                });
                RawNode::new(&Config::new(id), storage).unwrap()
            })
            .collect();
        let mut c = Cluster { nodes };
        c.nodes[0].campaign();
        c.run();
        assert_eq!(c.nodes[0].raft().role(), Role::Leader);
        c
    }

    /// Runs Ready cycles and deliveries until quiet; returns entries the leader applied.
    fn run(&mut self) -> u64 {
        let mut applied = 0;
        loop {
            let mut msgs: Vec<Message> = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                while n.has_ready() {
                    let mut rd = n.ready();
                    msgs.append(&mut rd.messages);
                    if let Some(s) = &rd.snapshot {
                        n.storage().apply_snapshot(s.clone());
                    }
                    n.storage().append(&rd.entries);
                    if let Some(hs) = rd.hard_state {
                        n.storage().set_hard_state(hs);
                    }
                    msgs.append(&mut rd.persisted_messages);
                    if i == 0 {
                        applied += rd.committed_entries.len() as u64;
                    }
                    n.advance(&rd);
                }
            }
            if msgs.is_empty() {
                return applied;
            }
            for m in msgs {
                let to = (m.to - 1) as usize;
                self.nodes[to].step(m).unwrap();
            }
        }
    }

    /// Keeps memory flat across millions of iterations: snapshot and compact applied entries.
    fn compact(&mut self) {
        for n in &self.nodes {
            let applied = n.raft().applied();
            if applied > n.raft().first_index() + 4096 {
                n.storage()
                    .create_snapshot(applied, n.raft().conf_state(), Vec::new());
                n.storage().compact(applied);
            }
        }
    }
}

fn proposals(c: &mut Criterion) {
    let mut group = c.benchmark_group("propose_commit_3_members");
    for batch in [1u64, 16, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            let mut cluster = Cluster::new();
            b.iter(|| {
                let entries: Vec<Entry> = (0..batch)
                    .map(|_| Entry {
                        data: vec![7; 128],
                        ..Entry::default()
                    })
                    .collect();
                cluster.nodes[0].propose_batch(entries).unwrap();
                let applied = cluster.run();
                assert!(applied >= batch);
                cluster.compact();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, proposals);
criterion_main!(benches);
