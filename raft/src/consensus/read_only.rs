//! [`ReadOnly`]: the leader's queue of ReadIndex requests and its heartbeat confirmation rounds.
//!
//! A read may be served at the leader's commit index once the leader has proven it was still
//! leader after the request arrived: a majority answered a heartbeat sent after it. Requests
//! that arrive while a round is in flight wait for the next round, so one round confirms every
//! request queued meanwhile (batching). Rounds are numbered; an answer to round `r` confirms
//! every round `<= r`, so lost heartbeats are covered by the next one.

use std::collections::BTreeMap;

use super::message::NodeId;

/// One read request: who asked (the leader itself or a follower) and its opaque context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// The member to answer.
    pub from: NodeId,
    /// The requester's id for the read.
    pub context: Vec<u8>,
    /// The leader's commit index when the request arrived: the index the read must wait for.
    pub index: u64,
}

/// ReadIndex state of a leader (reset whenever leadership changes).
#[derive(Debug, Default)]
pub struct ReadOnly {
    waiting: Vec<ReadRequest>,
    in_flight: Option<(u64, Vec<ReadRequest>)>,
    last_round: u64,
    acked: BTreeMap<NodeId, u64>,
}

impl ReadOnly {
    /// Drops every request (leadership changed; their requesters retry) but keeps round
    /// numbers increasing.
    pub fn reset(&mut self) {
        self.waiting.clear();
        self.in_flight = None;
        self.acked.clear();
    }

    /// Queues a request for the next round.
    pub fn add(&mut self, req: ReadRequest) {
        self.waiting.push(req);
    }

    /// Starts a round if none is in flight and requests wait; returns its number.
    pub fn start_round(&mut self) -> Option<u64> {
        if self.in_flight.is_some() || self.waiting.is_empty() {
            return None;
        }
        self.last_round += 1;
        self.in_flight = Some((self.last_round, std::mem::take(&mut self.waiting)));
        Some(self.last_round)
    }

    /// The round in flight, 0 if none (heartbeats carry it).
    pub fn current_round(&self) -> u64 {
        self.in_flight.as_ref().map_or(0, |(r, _)| *r)
    }

    /// `id` answered a heartbeat of round `round`.
    pub fn ack(&mut self, id: NodeId, round: u64) {
        let a = self.acked.entry(id).or_insert(0);
        *a = (*a).max(round);
    }

    /// If `is_quorum` holds for the members that acknowledged the round in flight, ends the
    /// round and returns its requests, now safe to answer.
    pub fn take_confirmed(
        &mut self,
        is_quorum: impl FnOnce(&dyn Fn(NodeId) -> bool) -> bool,
    ) -> Vec<ReadRequest> {
        let Some((round, _)) = &self.in_flight else {
            return Vec::new();
        };
        let round = *round;
        let acked = &self.acked;
        let confirmed = is_quorum(&|id| acked.get(&id).is_some_and(|&r| r >= round));
        if !confirmed {
            return Vec::new();
        }
        self.in_flight
            .take()
            .map(|(_, reqs)| reqs)
            .unwrap_or_default()
    }

    /// Number of requests queued or in flight.
    pub fn pending(&self) -> usize {
        self.waiting.len() + self.in_flight.as_ref().map_or(0, |(_, r)| r.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(n: u8) -> ReadRequest {
        ReadRequest {
            from: 1,
            context: vec![n],
            index: 5,
        }
    }

    #[test]
    fn one_round_confirms_every_request_queued_before_it_started() {
        let mut ro = ReadOnly::default();
        ro.add(req(1));
        ro.add(req(2));
        assert_eq!(ro.start_round(), Some(1));
        ro.add(req(3));
        assert_eq!(ro.start_round(), None, "one round in flight at a time");
        ro.ack(1, 1);
        let majority = |acked: &dyn Fn(NodeId) -> bool| (1..=3).filter(|&i| acked(i)).count() >= 2;
        assert!(ro.take_confirmed(majority).is_empty());
        ro.ack(2, 1);
        assert_eq!(ro.take_confirmed(majority).len(), 2);
        assert_eq!(ro.start_round(), Some(2));
        assert_eq!(ro.pending(), 1);
    }
}
