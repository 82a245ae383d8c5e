//! [`ProgressTracker`]: the membership as the leader (or a candidate) uses it — who votes, who
//! learns, each member's [`Progress`], the votes of an election, and quorum arithmetic.

use std::collections::{BTreeMap, BTreeSet};

use super::message::{ConfState, NodeId};
use super::progress::Progress;

/// Outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority of voters granted.
    Won,
    /// A majority of voters refused.
    Lost,
    /// Neither yet.
    Pending,
}

/// Membership, progress and votes.
#[derive(Clone, Debug)]
pub struct ProgressTracker {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    max_inflight: usize,
}

impl ProgressTracker {
    /// A tracker for `conf`, every member probed from `next`.
    pub fn new(conf: &ConfState, next: u64, max_inflight: usize) -> Self {
        let mut t = ProgressTracker {
            voters: conf.voters.iter().copied().collect(),
            learners: conf.learners.iter().copied().collect(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            max_inflight,
        };
        assert!(
            t.voters.is_disjoint(&t.learners),
            "voters and learners overlap: {conf:?}"
        );
        for id in t.voters.iter().chain(&t.learners) {
            t.progress.insert(*id, Progress::new(next, max_inflight));
        }
        t
    }

    /// The membership.
    pub fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.iter().copied().collect(),
            learners: self.learners.iter().copied().collect(),
        }
    }

    /// Replaces the membership, keeping the progress of members that stay and probing new ones
    /// from `next`.
    pub fn set_conf(&mut self, conf: &ConfState, next: u64) {
        let new = ProgressTracker::new(conf, next, self.max_inflight);
        let mut progress = new.progress;
        for (id, p) in progress.iter_mut() {
            if let Some(old) = self.progress.remove(id) {
                *p = old;
            }
        }
        self.voters = new.voters;
        self.learners = new.learners;
        self.progress = progress;
        self.votes.retain(|id, _| self.voters.contains(id));
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Voting members, ascending.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied()
    }

    /// Ids of every member (voters and learners), ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// The progress of `id`, if a member.
    pub fn get(&self, id: NodeId) -> Option<&Progress> {
        self.progress.get(&id)
    }

    /// The progress of `id`, if a member.
    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.get_mut(&id)
    }

    /// Every member's progress.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&NodeId, &mut Progress)> {
        self.progress.iter_mut()
    }

    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The highest index a majority of voters has matched (0 with no voters).
    pub fn committed(&self) -> u64 {
        if self.voters.is_empty() {
            return 0;
        }
        let mut matched: Vec<u64> = self
            .voters
            .iter()
            .map(|id| self.progress.get(id).map_or(0, |p| p.matched))
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched[self.quorum() - 1]
    }

    /// Forgets the votes of the previous election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s answer (the first answer per voter counts).
    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        if self.voters.contains(&id) {
            self.votes.entry(id).or_insert(granted);
        }
    }

    /// Tally of the votes recorded.
    pub fn vote_result(&self) -> VoteResult {
        let granted = self.votes.values().filter(|&&g| g).count();
        let refused = self.votes.values().filter(|&&g| !g).count();
        if granted >= self.quorum() {
            VoteResult::Won
        } else if refused > self.voters.len() - self.quorum() {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    /// Whether a majority of voters satisfies `pred`.
    pub fn quorum_of(&self, mut pred: impl FnMut(NodeId) -> bool) -> bool {
        self.voters.iter().filter(|&&id| pred(id)).count() >= self.quorum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_is_the_majority_match_and_learners_do_not_count() {
        let conf = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
        };
        let mut t = ProgressTracker::new(&conf, 1, 4);
        for (id, m) in [(1, 5), (2, 3), (3, 1), (4, 9)] {
            t.get_mut(id).unwrap().matched = m;
        }
        assert_eq!(t.committed(), 3);
        t.record_vote(4, true);
        t.record_vote(1, true);
        assert_eq!(t.vote_result(), VoteResult::Pending);
        t.record_vote(2, false);
        t.record_vote(3, false);
        assert_eq!(t.vote_result(), VoteResult::Lost);
    }
}
