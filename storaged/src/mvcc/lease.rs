//! Leases as replicated state: which leases exist, their granted TTL, the remaining TTL of
//! the last checkpoint (when checkpointing is on), and which keys are attached. Deadlines are
//! not state: the lessor keeps them in memory on the member that expires leases.

use super::codec;
use super::error::MvccError;
use std::collections::{BTreeMap, BTreeSet};

/// etcd's upper bound on a lease TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseRecord {
    pub ttl: i64,
    /// Remaining TTL recorded by the last checkpoint; 0 = none (the full TTL applies).
    pub remaining: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct Leases {
    pub(super) map: BTreeMap<i64, LeaseRecord>,
}

/// How to undo one lease change of a failed write.
#[derive(Debug)]
pub(super) enum LeaseUndo {
    Granted(i64),
    Revoked(i64, LeaseRecord),
    Attached(i64, Vec<u8>),
    Detached(i64, Vec<u8>),
    Checkpointed(i64, i64),
}

impl Leases {
    pub fn get(&self, id: i64) -> Option<&LeaseRecord> {
        self.map.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.map.contains_key(&id)
    }

    /// Every lease as (id, granted TTL, checkpointed remaining TTL).
    pub fn clocks(&self) -> impl Iterator<Item = (i64, i64, i64)> + '_ {
        self.map.iter().map(|(id, r)| (*id, r.ttl, r.remaining))
    }

    pub(super) fn restore(&mut self, id: i64, ttl: i64, remaining: i64) {
        let r = self.map.entry(id).or_default();
        r.ttl = ttl;
        r.remaining = remaining;
    }

    pub(super) fn attach_restored(&mut self, id: i64, key: &[u8]) {
        if let Some(r) = self.map.get_mut(&id) {
            r.keys.insert(key.to_vec());
        }
    }

    pub(super) fn attach(&mut self, id: i64, key: &[u8]) -> bool {
        match self.map.get_mut(&id) {
            Some(r) => r.keys.insert(key.to_vec()),
            None => false,
        }
    }

    pub(super) fn detach(&mut self, id: i64, key: &[u8]) -> bool {
        self.map.get_mut(&id).is_some_and(|r| r.keys.remove(key))
    }

    pub(super) fn undo(&mut self, u: LeaseUndo) {
        match u {
            LeaseUndo::Granted(id) => {
                self.map.remove(&id);
            }
            LeaseUndo::Revoked(id, record) => {
                self.map.insert(id, record);
            }
            LeaseUndo::Attached(id, key) => {
                self.detach(id, &key);
            }
            LeaseUndo::Detached(id, key) => {
                self.attach(id, &key);
            }
            LeaseUndo::Checkpointed(id, remaining) => {
                if let Some(r) = self.map.get_mut(&id) {
                    r.remaining = remaining;
                }
            }
        }
    }
}

pub(super) fn lease_key(id: i64) -> Vec<u8> {
    (id as u64).to_be_bytes().to_vec()
}

/// A lease row's value: the granted TTL, then the checkpointed remaining TTL when set.
pub fn encode_lease(ttl: i64, remaining: i64) -> Vec<u8> {
    let mut v = codec::encode_u64(ttl as u64);
    if remaining != 0 {
        v.extend_from_slice(&codec::encode_u64(remaining as u64));
    }
    v
}

/// (id, granted TTL, remaining TTL) of a stored lease row.
pub fn decode_lease(k: &[u8], v: &[u8]) -> Result<(i64, i64, i64), MvccError> {
    let id = codec::decode_u64(k)? as i64;
    let (ttl, remaining) = match v.len() {
        16 => (codec::decode_u64(&v[..8])?, codec::decode_u64(&v[8..])?),
        _ => (codec::decode_u64(v)?, 0),
    };
    Ok((id, ttl as i64, remaining as i64))
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use crate::engine::{EngineKind, open};

    /// Checkpointed remaining TTLs are stored with the lease, take no revision, survive a
    /// reopen, and can be cleared; checkpoints of unknown leases are skipped.
    #[test]
    fn checkpoints_are_stored() {
        for kind in [EngineKind::Memory, EngineKind::Rocksdb] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(open(kind, dir.path()).expect("open").engine).expect("store");
            store.write(1, |w| w.grant_lease(7, 600)).expect("grant");
            store.write(2, |w| w.grant_lease(8, 600)).expect("grant");
            store
                .write(3, |w| {
                    w.checkpoint_lease(7, 250);
                    w.checkpoint_lease(99, 10);
                    Ok(())
                })
                .expect("checkpoint");
            assert_eq!(store.current_revision(), 1, "{kind:?}: no revision taken");
            let engine = store.engine.clone();
            drop(store);
            let store = Store::open(engine).expect("reopen");
            assert_eq!(store.leases(), vec![(7, 600, 250), (8, 600, 0)], "{kind:?}");
            store
                .write(4, |w| {
                    w.checkpoint_lease(7, 0);
                    Ok(())
                })
                .expect("clear");
            let engine = store.engine.clone();
            drop(store);
            let store = Store::open(engine).expect("reopen");
            assert_eq!(store.leases(), vec![(7, 600, 0), (8, 600, 0)], "{kind:?}");
        }
    }
}
