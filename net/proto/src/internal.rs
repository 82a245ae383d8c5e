//! Internal Raft request encoding: what the server proposes into a Raft entry for a client write
//! (etcd's `InternalRaftRequest`). Entry bytes come back from disk and from peers, so decoding
//! validates them like any untrusted input (D1).
//!
//! Encoding: a 16-byte envelope (`"KIRQ"`, format version, 11 zero bytes) followed by the rkyv
//! archive of [`InternalRequest`]. The envelope keeps the archive 16-byte aligned inside an
//! aligned buffer and lets a later format be told apart.

use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::codec::{access_archive, AlignedBytes};
use crate::error::ProtoError;
use crate::messages::{
    AlarmRequest, CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, PutRequest, TxnRequest,
};

/// Envelope magic.
pub const INTERNAL_MAGIC: [u8; 4] = *b"KIRQ";
/// Envelope format version.
pub const INTERNAL_VERSION: u8 = 1;
/// Envelope length (keeps the archive aligned).
pub const INTERNAL_ENVELOPE_LEN: usize = 16;
/// First capacity of an encoded request: a put of a 256-byte value fits without growing.
const ENCODE_CAPACITY: usize = 512;

/// `etcdserverpb.RequestHeader` as keel needs it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct InternalHeader {
    /// The proposal id (client core + sequence): the proposing member's waiter key.
    pub id: u64,
    /// The member that proposed it: only that member has a waiter for `id`.
    pub member_id: u64,
}

/// `etcdserverpb.LeaseCheckpoint`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct LeaseCheckpoint {
    /// `ID` of the lease.
    pub id: i64,
    /// `remaining_TTL` in seconds.
    pub remaining_ttl: i64,
}

/// `etcdserverpb.LeaseCheckpointRequest`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct LeaseCheckpointRequest {
    /// The checkpoints (the leader batches them).
    pub checkpoints: Vec<LeaseCheckpoint>,
}

/// Cluster.MemberAdd as an entry: the new member's id (chosen by the proposing member) and
/// metadata. Applying it records the member; the proposer then proposes the Raft membership
/// change itself.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct MemberAddEntry {
    /// The new member's id.
    pub id: u64,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Added as a learner (non-voting) member.
    pub is_learner: bool,
}

/// A member's name and client URLs, published by the member itself after it starts (etcd's
/// publish), so every member can list them.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct MemberAttrsEntry {
    /// The member.
    pub id: u64,
    /// Its `--name`.
    pub name: String,
    /// Its advertised client URLs.
    pub client_urls: Vec<String>,
}

/// What the entry asks the apply core to do.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum InternalBody {
    /// KV.Put.
    Put(PutRequest),
    /// KV.DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// KV.Txn.
    Txn(TxnRequest),
    /// KV.Compact.
    Compaction(CompactionRequest),
    /// Lease.LeaseGrant.
    LeaseGrant(LeaseGrantRequest),
    /// Lease.LeaseRevoke (also how a lease expires, proposed by the leader: L1).
    LeaseRevoke(LeaseRevokeRequest),
    /// Lease checkpoints (remaining TTLs persisted across leader changes).
    LeaseCheckpoint(LeaseCheckpointRequest),
    /// Maintenance.Alarm (activate/deactivate go through consensus).
    Alarm(AlarmRequest),
    /// Cluster.MemberAdd.
    MemberAdd(MemberAddEntry),
    /// Cluster.MemberRemove (the Raft membership change follows).
    MemberRemove(MemberRemoveRequest),
    /// Cluster.MemberUpdate (peer URLs).
    MemberUpdate(MemberUpdateRequest),
    /// Cluster.MemberPromote (the Raft membership change follows).
    MemberPromote(MemberPromoteRequest),
    /// A member's name and client URLs.
    MemberAttrs(MemberAttrsEntry),
}

/// etcd's `InternalRaftRequest`: one client write as it travels through the Raft log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct InternalRequest {
    /// The header.
    pub header: InternalHeader,
    /// The request.
    pub body: InternalBody,
}

impl InternalRequest {
    /// Encodes into an aligned buffer (envelope + archive), ready to be a Raft entry's data.
    ///
    /// The archive is serialized straight after the envelope: the envelope is as long as the
    /// buffer's alignment, so every position rkyv pads to is the same as in a buffer of its own
    /// and the bytes equal the envelope followed by `to_archive(self)` (a test checks), without
    /// the second buffer, its growth and the copy.
    pub fn encode(&self) -> Result<AlignedVec, ProtoError> {
        const _: () = assert!(INTERNAL_ENVELOPE_LEN.is_multiple_of(AlignedVec::<16>::ALIGNMENT));
        let mut out = AlignedVec::with_capacity(ENCODE_CAPACITY);
        out.extend_from_slice(&INTERNAL_MAGIC);
        out.push(INTERNAL_VERSION);
        out.extend_from_slice(&[0u8; INTERNAL_ENVELOPE_LEN - 5]);
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, out)
            .map_err(|e| ProtoError::Encode(e.to_string()))
    }

    /// Validates entry bytes in place and returns the archived request, zero-copy. `bytes` must be
    /// 16-byte aligned ([`ProtoError::Misaligned`] otherwise; see [`AlignedBytes`]).
    pub fn access(bytes: &[u8]) -> Result<&ArchivedInternalRequest, ProtoError> {
        check_envelope(bytes)?;
        access_archive::<ArchivedInternalRequest>(&bytes[INTERNAL_ENVELOPE_LEN..])
    }

    /// Validates and deserializes entry bytes (any alignment: copies when misaligned).
    pub fn decode(bytes: &[u8]) -> Result<InternalRequest, ProtoError> {
        let aligned = AlignedBytes::new(bytes);
        let archived = InternalRequest::access(&aligned)?;
        rkyv::deserialize::<InternalRequest, rkyv::rancor::Error>(archived)
            .map_err(|e| ProtoError::InvalidPayload(e.to_string()))
    }
}

fn check_envelope(bytes: &[u8]) -> Result<(), ProtoError> {
    if bytes.len() < INTERNAL_ENVELOPE_LEN || bytes[0..4] != INTERNAL_MAGIC {
        let mut m = [0u8; 4];
        let n = bytes.len().min(4);
        m[..n].copy_from_slice(&bytes[..n]);
        return Err(ProtoError::BadMagic(u32::from_be_bytes(m)));
    }
    if bytes[4] != INTERNAL_VERSION {
        return Err(ProtoError::UnsupportedVersion(bytes[4]));
    }
    if bytes[5..INTERNAL_ENVELOPE_LEN].iter().any(|&b| b != 0) {
        return Err(ProtoError::ReservedNotZero);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::to_archive;
    use crate::messages::RequestOp;

    /// `encode` writes the archive in place after the envelope; the bytes must be exactly the
    /// envelope followed by the archive serialized on its own (what decoding, and every entry
    /// already in a WAL, expects).
    #[test]
    fn encoding_in_place_equals_envelope_plus_separate_archive() {
        let put = PutRequest {
            key: b"key\0with zero".to_vec(),
            value: vec![7; 1000],
            lease: 5,
            prev_kv: true,
            ..Default::default()
        };
        let reqs = [
            InternalRequest {
                header: InternalHeader {
                    id: 9,
                    member_id: 3,
                },
                body: InternalBody::Put(put.clone()),
            },
            InternalRequest {
                header: InternalHeader::default(),
                body: InternalBody::Txn(TxnRequest {
                    success: vec![RequestOp::Put(put.clone()), RequestOp::Put(put)],
                    ..Default::default()
                }),
            },
        ];
        for req in reqs {
            let mut want = Vec::new();
            want.extend_from_slice(&INTERNAL_MAGIC);
            want.push(INTERNAL_VERSION);
            want.extend_from_slice(&[0u8; INTERNAL_ENVELOPE_LEN - 5]);
            want.extend_from_slice(&to_archive(&req).unwrap());
            let got = req.encode().unwrap();
            assert_eq!(&got[..], &want[..]);
            assert_eq!(InternalRequest::decode(&got).unwrap(), req);
        }
    }
}
