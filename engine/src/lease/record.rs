//! The byte layout of the lease bucket: key = lease ID as 8 bytes big-endian (of its `u64`
//! bit pattern), value = granted TTL and checkpointed remaining TTL, each an `i64`
//! little-endian, 16 bytes in all. Decoding checks the lengths (D1).

use super::LeaseId;
use crate::btree;

/// The auxiliary bucket that holds the leases.
pub const LEASE_BUCKET: &[u8] = b"lease";

const VALUE_LEN: usize = 16;

pub(crate) fn key(id: LeaseId) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

pub(crate) fn value(ttl: i64, remaining: i64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    v[..8].copy_from_slice(&ttl.to_le_bytes());
    v[8..].copy_from_slice(&remaining.to_le_bytes());
    v
}

fn corrupted(reason: String) -> btree::Error {
    btree::Error::Corrupted { page: 0, reason }
}

/// Decodes one entry into (id, granted TTL, remaining TTL).
pub(crate) fn decode(k: &[u8], v: &[u8]) -> Result<(LeaseId, i64, i64), btree::Error> {
    let k: [u8; 8] = k
        .try_into()
        .map_err(|_| corrupted(format!("lease key of {} bytes", k.len())))?;
    if v.len() != VALUE_LEN {
        return Err(corrupted(format!("lease record of {} bytes", v.len())));
    }
    let id = u64::from_be_bytes(k) as i64;
    let ttl = i64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
    let remaining = i64::from_le_bytes(v[8..].try_into().expect("8 bytes"));
    if id == 0 || ttl <= 0 || remaining < 0 {
        return Err(corrupted(format!(
            "lease record {id}: ttl {ttl}, remaining {remaining}"
        )));
    }
    Ok((id, ttl, remaining))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        for id in [1, -5, i64::MAX, i64::MIN] {
            let (i, t, r) = decode(&key(id), &value(30, 7)).unwrap();
            assert_eq!((i, t, r), (id, 30, 7));
        }
        assert!(decode(&key(1)[..7], &value(30, 7)).is_err());
        assert!(decode(&key(1), &value(30, 7)[..15]).is_err());
        assert!(decode(&key(1), &value(0, 0)).is_err());
        assert!(decode(&key(0), &value(5, 0)).is_err());
    }
}
