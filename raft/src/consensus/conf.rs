//! Membership changes: the [`ConfChange`] a `ConfChange` entry carries, its byte encoding, and
//! the rules for applying one to a [`ConfState`]. Changes are single-step (one member at a
//! time, one change in flight), which keeps every old and new majority overlapping.

use super::message::{ConfState, NodeId, NO_NODE};

/// What a membership change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeKind {
    /// Make `node_id` a voter: adds a new member, or promotes a learner.
    AddVoter,
    /// Add `node_id` as a learner (receives the log, does not vote). Not allowed for a voter.
    AddLearner,
    /// Remove `node_id`, voter or learner.
    RemoveNode,
}

/// One membership change, the payload of a `ConfChange` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfChange {
    /// The change.
    pub kind: ConfChangeKind,
    /// The member it concerns.
    pub node_id: NodeId,
}

/// Why a change was refused or bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChangeError {
    /// The bytes are not an encoded [`ConfChange`].
    Malformed,
    /// The change makes no sense for the current membership (e.g. removing the last voter).
    Invalid(&'static str),
}

impl std::fmt::Display for ConfChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfChangeError::Malformed => write!(f, "malformed conf change"),
            ConfChangeError::Invalid(why) => write!(f, "invalid conf change: {why}"),
        }
    }
}

impl std::error::Error for ConfChangeError {}

const ENCODED_LEN: usize = 9;

impl ConfChange {
    /// Fixed 9-byte encoding: kind (1 byte: 1 add voter, 2 add learner, 3 remove), then the node
    /// id as u64 little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(match self.kind {
            ConfChangeKind::AddVoter => 1,
            ConfChangeKind::AddLearner => 2,
            ConfChangeKind::RemoveNode => 3,
        });
        out.extend_from_slice(&self.node_id.to_le_bytes());
        out
    }

    /// Decodes [`ConfChange::encode`]'s output; anything else is `Malformed` (log data is
    /// checked before use, D1).
    pub fn decode(bytes: &[u8]) -> Result<Self, ConfChangeError> {
        if bytes.len() != ENCODED_LEN {
            return Err(ConfChangeError::Malformed);
        }
        let kind = match bytes[0] {
            1 => ConfChangeKind::AddVoter,
            2 => ConfChangeKind::AddLearner,
            3 => ConfChangeKind::RemoveNode,
            _ => return Err(ConfChangeError::Malformed),
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[1..]);
        let node_id = u64::from_le_bytes(id);
        if node_id == NO_NODE {
            return Err(ConfChangeError::Malformed);
        }
        Ok(ConfChange { kind, node_id })
    }

    /// Checks the change against the membership it will apply to.
    pub fn validate(&self, cs: &ConfState) -> Result<(), ConfChangeError> {
        let is_voter = cs.voters.contains(&self.node_id);
        match self.kind {
            ConfChangeKind::AddVoter => Ok(()),
            ConfChangeKind::AddLearner if is_voter => {
                Err(ConfChangeError::Invalid("cannot demote a voter to learner"))
            }
            ConfChangeKind::AddLearner => Ok(()),
            ConfChangeKind::RemoveNode if is_voter && cs.voters.len() == 1 => {
                Err(ConfChangeError::Invalid("cannot remove the last voter"))
            }
            ConfChangeKind::RemoveNode => Ok(()),
        }
    }

    /// The membership after this change. Invalid changes leave it unchanged, so applying a
    /// committed entry is deterministic on every member (and idempotent on replay).
    pub fn apply(&self, cs: &ConfState) -> ConfState {
        let mut next = cs.clone();
        if self.validate(cs).is_err() {
            return next;
        }
        let id = self.node_id;
        next.voters.retain(|&v| v != id);
        next.learners.retain(|&v| v != id);
        match self.kind {
            ConfChangeKind::AddVoter => next.voters.push(id),
            ConfChangeKind::AddLearner => next.learners.push(id),
            ConfChangeKind::RemoveNode => {}
        }
        next.voters.sort_unstable();
        next.learners.sort_unstable();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_and_rejects_garbage() {
        for kind in [
            ConfChangeKind::AddVoter,
            ConfChangeKind::AddLearner,
            ConfChangeKind::RemoveNode,
        ] {
            let cc = ConfChange { kind, node_id: 42 };
            assert_eq!(ConfChange::decode(&cc.encode()), Ok(cc));
        }
        assert_eq!(ConfChange::decode(&[]), Err(ConfChangeError::Malformed));
        assert_eq!(ConfChange::decode(&[9; 9]), Err(ConfChangeError::Malformed));
        assert_eq!(
            ConfChange::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ConfChangeError::Malformed)
        );
    }

    #[test]
    fn apply_promotes_learners_and_refuses_removing_the_last_voter() {
        let cs = ConfState {
            voters: vec![1],
            learners: vec![2],
        };
        let promoted = ConfChange {
            kind: ConfChangeKind::AddVoter,
            node_id: 2,
        }
        .apply(&cs);
        assert_eq!(
            promoted,
            ConfState {
                voters: vec![1, 2],
                learners: vec![]
            }
        );
        let last = ConfChange {
            kind: ConfChangeKind::RemoveNode,
            node_id: 1,
        };
        assert!(last.validate(&cs).is_err());
        assert_eq!(last.apply(&cs), cs);
        let demote = ConfChange {
            kind: ConfChangeKind::AddLearner,
            node_id: 1,
        };
        assert_eq!(demote.apply(&cs), cs);
    }
}
