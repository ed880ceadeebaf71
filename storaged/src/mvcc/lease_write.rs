//! Lease changes inside one write transaction: grants, checkpoints and revocations (which
//! delete the attached keys at the transaction's revision), each undone with the
//! transaction when it fails part way.

use super::error::MvccError;
use super::key_range::KeyRange;
use super::lease::{LeaseRecord, LeaseUndo, MAX_LEASE_TTL, encode_lease, lease_key};
use super::store::WriteTxn;
use crate::engine::Table;
use std::collections::BTreeSet;

impl WriteTxn<'_> {
    /// Moves `key` from lease `old` to lease `new` (0 = none).
    pub(super) fn reattach(&mut self, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        if old != 0 && self.state.leases.detach(old, key) {
            self.lease_undo.push(LeaseUndo::Detached(old, key.to_vec()));
        }
        if new != 0 && self.state.leases.attach(new, key) {
            self.lease_undo.push(LeaseUndo::Attached(new, key.to_vec()));
        }
    }

    /// Creates lease `id` with `ttl` seconds (already adjusted to the minimum).
    pub fn grant_lease(&mut self, id: i64, ttl: i64) -> Result<(), MvccError> {
        if ttl > MAX_LEASE_TTL {
            return Err(MvccError::LeaseTtlTooLarge);
        }
        if self.state.leases.contains(id) {
            return Err(MvccError::LeaseExists);
        }
        self.state.leases.map.insert(
            id,
            LeaseRecord {
                ttl,
                remaining: 0,
                keys: BTreeSet::new(),
            },
        );
        self.lease_undo.push(LeaseUndo::Granted(id));
        self.batch
            .put(Table::Lease, lease_key(id), encode_lease(ttl, 0));
        Ok(())
    }

    /// Records the remaining TTL of lease `id` (0 clears it); takes no revision. A lease that
    /// no longer exists is skipped, as etcd does.
    pub fn checkpoint_lease(&mut self, id: i64, remaining: i64) {
        let Some(r) = self.state.leases.map.get_mut(&id) else {
            return;
        };
        if r.remaining == remaining {
            return;
        }
        self.lease_undo
            .push(LeaseUndo::Checkpointed(id, r.remaining));
        r.remaining = remaining;
        let value = encode_lease(r.ttl, remaining);
        self.batch.put(Table::Lease, lease_key(id), value);
    }

    /// Removes lease `id` and deletes every attached key, all in this write's one revision.
    pub fn revoke_lease(&mut self, id: i64) -> Result<(), MvccError> {
        let keys: Vec<Vec<u8>> = match self.state.leases.get(id) {
            Some(r) => r.keys.iter().cloned().collect(),
            None => return Err(MvccError::LeaseNotFound),
        };
        for key in keys {
            self.delete_range(&KeyRange::Single(key))?;
        }
        if let Some(record) = self.state.leases.map.remove(&id) {
            self.lease_undo.push(LeaseUndo::Revoked(id, record));
        }
        self.batch.delete(Table::Lease, lease_key(id));
        Ok(())
    }
}
