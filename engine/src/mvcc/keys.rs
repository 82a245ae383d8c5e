//! Byte encodings of the MVCC layer's B+tree keys and records. Big-endian where the B+tree's byte
//! order must follow numeric order; everything fixed-width and spelled out.
//!
//! - `key` bucket: revision (main u64 BE ‖ sub u64 BE) → rkyv [`Record`] (puts and tombstones).
//!   The full history in revision order: watch replay, hashing, compaction.
//! - `index` bucket: escape(user key) ‖ 00 01 ‖ main BE ‖ sub BE → [tombstone flag]. The persisted
//!   key index: every revision of a key, in key then revision order; historical reads seek here,
//!   and nothing has to be rebuilt in memory at restart. escape() turns each 00 into 00 FF, so
//!   the encoding keeps user-key order ("a" < "a\0" < "ab").
//! - `current` bucket: user key → rkyv [`Record`] of its live version (deleted keys absent).
//!   Reads at the current revision scan it directly, values borrowed from the map.

use rkyv::rancor;

use crate::mvcc::types::KeyValue;

/// One revision of a key as stored (rkyv-archived; read in place).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Vec<u8>,
    pub tombstone: bool,
}

impl Record {
    pub fn to_bytes(&self) -> rkyv::util::AlignedVec {
        // Sized up front: the archive is the two byte strings plus ~60 bytes of fixed fields,
        // and growing from empty cost several reallocations per put.
        let buf = rkyv::util::AlignedVec::with_capacity(self.key.len() + self.value.len() + 96);
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(self, buf)
            .expect("serializing a record into memory cannot fail")
    }
}

impl ArchivedRecord {
    pub fn to_kv(&self, keys_only: bool) -> KeyValue {
        KeyValue {
            key: self.key.as_slice().to_vec(),
            create_revision: self.create_revision.to_native(),
            mod_revision: self.mod_revision.to_native(),
            version: self.version.to_native(),
            value: if keys_only {
                Vec::new()
            } else {
                self.value.as_slice().to_vec()
            },
            lease: self.lease.to_native(),
        }
    }
}

/// Views stored bytes as a record, validating them (D1: the bytes come from disk).
pub fn archived(bytes: &[u8]) -> Result<&ArchivedRecord, crate::btree::Error> {
    rkyv::access::<ArchivedRecord, rancor::Error>(bytes).map_err(|e| {
        crate::btree::Error::Corrupted {
            page: 0,
            reason: format!("bad MVCC record: {e}"),
        }
    })
}

pub fn rev_key(main: i64, sub: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(main as u64).to_be_bytes());
    k[8..].copy_from_slice(&(sub as u64).to_be_bytes());
    k
}

pub fn parse_rev(k: &[u8]) -> Option<(i64, i64)> {
    if k.len() != 16 {
        return None;
    }
    let main = u64::from_be_bytes(k[..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(k[8..].try_into().ok()?) as i64;
    Some((main, sub))
}

/// escape(key) ‖ 00 01: the prefix every index entry of `key` starts with, and the lower bound
/// (inclusive) of keys >= `key` in index order.
pub fn index_prefix(key: &[u8]) -> Vec<u8> {
    // Every zero byte takes two: sized exactly, so `index_key`'s revision fits without growing.
    let zeros = key.iter().filter(|&&b| b == 0).count();
    let mut v = Vec::with_capacity(key.len() + zeros + 18);
    for &b in key {
        v.push(b);
        if b == 0 {
            v.push(0xFF);
        }
    }
    v.extend_from_slice(&[0, 1]);
    v
}

pub fn index_key(key: &[u8], main: i64, sub: i64) -> Vec<u8> {
    let mut v = index_prefix(key);
    v.extend_from_slice(&rev_key(main, sub));
    v
}

/// Splits an index key into (user key, main, sub).
pub fn parse_index_key(k: &[u8]) -> Option<(Vec<u8>, i64, i64)> {
    if k.len() < 18 {
        return None;
    }
    let (enc, rev) = k.split_at(k.len() - 16);
    let (main, sub) = parse_rev(rev)?;
    let body = enc.strip_suffix(&[0, 1])?;
    let mut key = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        key.push(body[i]);
        if body[i] == 0 {
            if body.get(i + 1) != Some(&0xFF) {
                return None;
            }
            i += 1;
        }
        i += 1;
    }
    Some((key, main, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_order_follows_user_key_then_revision() {
        let keys: [&[u8]; 6] = [b"\0", b"\0\0", b"a", b"a\0", b"a\0b", b"ab"];
        let mut enc = Vec::new();
        for k in keys {
            for rev in [1, 2, 300] {
                enc.push(index_key(k, rev, 0));
            }
        }
        let mut sorted = enc.clone();
        sorted.sort();
        assert_eq!(enc, sorted);
        for k in keys {
            assert_eq!(
                parse_index_key(&index_key(k, 7, 3)),
                Some((k.to_vec(), 7, 3))
            );
        }
    }

    #[test]
    fn records_roundtrip_in_place() {
        let r = Record {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 9,
            version: 4,
            lease: 5,
            value: vec![1; 300],
            tombstone: false,
        };
        let bytes = r.to_bytes();
        let a = archived(&bytes).unwrap();
        assert_eq!(
            a.to_kv(false),
            KeyValue {
                key: b"k".to_vec(),
                create_revision: 2,
                mod_revision: 9,
                version: 4,
                value: vec![1; 300],
                lease: 5
            }
        );
        assert!(archived(&bytes[1..]).is_err());
    }
}
