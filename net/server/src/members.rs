//! Cluster membership as replicated state: every member's name, peer URLs, client URLs and
//! learner flag, kept in the store's auxiliary bucket `members` (so it commits with the applied
//! index, S4, and travels in snapshots). Changed only by applying entries, in log order, on
//! every member alike: membership entries (`MemberAdd`, `MemberUpdate`, `MemberAttrs`) and the
//! Raft membership changes that follow them (`ConfChange` entries).
//!
//! The flow of `member add`: the client core proposes a `MemberAdd` entry (a new id and the
//! peer URLs); applying it records the member and puts its address in the peer book (so the
//! transport can reach it); the proposing member's apply core then proposes the Raft change
//! (`AddVoter` / `AddLearner`) and answers the client when that change is applied.

use std::collections::BTreeMap;

use keel_engine::mvcc::{KvRead, KvWrite};
use keel_proto as p;

/// The auxiliary bucket holding the member records.
pub const MEMBERS_BUCKET: &[u8] = b"members";

/// One member as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberRec {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl MemberRec {
    /// Encoding: learner flag (1 byte), then name, then the two URL lists, each string as a
    /// u32 little-endian length and its bytes, each list as a u32 count.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![u8::from(self.is_learner)];
        let put = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        put(&mut b, &self.name);
        for list in [&self.peer_urls, &self.client_urls] {
            b.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for u in list {
                put(&mut b, u);
            }
        }
        b
    }

    /// Decodes a record read from disk (D1: every length is checked).
    pub fn decode(b: &[u8]) -> Result<MemberRec, String> {
        struct R<'a>(&'a [u8]);
        impl R<'_> {
            fn u32(&mut self) -> Result<usize, String> {
                if self.0.len() < 4 {
                    return Err("truncated member record".into());
                }
                let (h, t) = self.0.split_at(4);
                self.0 = t;
                Ok(u32::from_le_bytes(h.try_into().expect("4 bytes")) as usize)
            }
            fn string(&mut self) -> Result<String, String> {
                let n = self.u32()?;
                if self.0.len() < n {
                    return Err("truncated member record".into());
                }
                let (h, t) = self.0.split_at(n);
                self.0 = t;
                String::from_utf8(h.to_vec()).map_err(|_| "member record: bad UTF-8".to_string())
            }
            fn list(&mut self) -> Result<Vec<String>, String> {
                let n = self.u32()?;
                if n > self.0.len() {
                    return Err("member record: bad list length".into());
                }
                (0..n).map(|_| self.string()).collect()
            }
        }
        let (&flag, rest) = b.split_first().ok_or("empty member record")?;
        if flag > 1 {
            return Err("member record: bad learner flag".into());
        }
        let mut r = R(rest);
        let rec = MemberRec {
            is_learner: flag == 1,
            name: r.string()?,
            peer_urls: r.list()?,
            client_urls: r.list()?,
        };
        if !r.0.is_empty() {
            return Err("member record: trailing bytes".into());
        }
        Ok(rec)
    }

    pub fn to_proto(&self, id: u64) -> p::Member {
        p::Member {
            id,
            name: self.name.clone(),
            peer_urls: self.peer_urls.clone(),
            client_urls: self.client_urls.clone(),
            is_learner: self.is_learner,
        }
    }
}

fn key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Every recorded member, in id order, from a read view.
pub fn load(read: &KvRead) -> Result<BTreeMap<u64, MemberRec>, String> {
    let mut out = BTreeMap::new();
    let mut err = None;
    read.aux_scan(MEMBERS_BUCKET, |k, v| {
        let id = match <[u8; 8]>::try_from(k) {
            Ok(b) => u64::from_be_bytes(b),
            Err(_) => {
                err = Some("member record: bad key".to_string());
                return false;
            }
        };
        match MemberRec::decode(v) {
            Ok(r) => {
                out.insert(id, r);
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })
    .map_err(|e| e.to_string())?;
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Writes (or replaces) a record in the batch.
pub fn store(w: &mut KvWrite<'_>, id: u64, rec: &MemberRec) -> Result<(), String> {
    w.aux_put(MEMBERS_BUCKET, &key(id), &rec.encode())
        .map_err(|e| e.to_string())
}

/// Deletes a record in the batch.
pub fn remove(w: &mut KvWrite<'_>, id: u64) -> Result<(), String> {
    w.aux_delete(MEMBERS_BUCKET, &key(id))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The wire list.
pub fn to_proto(members: &BTreeMap<u64, MemberRec>) -> Vec<p::Member> {
    members.iter().map(|(id, r)| r.to_proto(*id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let r = MemberRec {
            name: "a".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec!["http://127.0.0.1:2379".into(), "http://x:1".into()],
            is_learner: true,
        };
        let b = r.encode();
        assert_eq!(MemberRec::decode(&b).unwrap(), r);
        for cut in 0..b.len() {
            assert!(MemberRec::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(MemberRec::decode(&long).is_err());
        let mut bad = b;
        bad[0] = 7;
        assert!(MemberRec::decode(&bad).is_err());
    }
}
