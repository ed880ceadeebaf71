//! Changes inside one write transaction. Every change takes the next sub-revision of the
//! transaction's main revision; the index is updated at once (later ops in the same txn see
//! earlier ones) and the records go into the transaction's batch.

use super::codec;
use super::error::MvccError;
use super::key_range::KeyRange;
use super::revision::Revision;
use super::store::{KvView, WriteTxn};
use crate::engine::Table;
use metastore_proto::mvccpb::event::EventType;
use metastore_proto::mvccpb::{Event, KeyValue};

impl WriteTxn<'_> {
    fn next_revision(&mut self) -> Revision {
        let rev = Revision::new(self.write_revision(), self.next_sub);
        self.next_sub += 1;
        rev
    }

    /// The current value of `key`, including changes made earlier in this transaction.
    pub fn latest(&self, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
        match self.state.index.latest(key) {
            Some(e) => self.value(e.rev).map(Some),
            None => Ok(None),
        }
    }

    /// Writes `key = value` with `lease` and returns the new record. `prev` is the key's
    /// current record (the caller has read it already); it becomes the event's `prev_kv`.
    pub fn put(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        prev: Option<KeyValue>,
    ) -> KeyValue {
        let rev = self.next_revision();
        let old_lease = prev.as_ref().map_or(0, |p| p.lease);
        self.reattach(key, old_lease, lease);
        let entry = self.state.index.put(key, rev, lease);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: entry.create,
            mod_revision: rev.main,
            version: entry.version,
            value,
            lease,
        };
        self.batch
            .put(Table::Key, rev.to_key(false), codec::encode_kv(&kv));
        self.pending.insert(rev, kv.clone());
        self.touched.push(key.to_vec());
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv: prev,
        });
        kv
    }

    /// Deletes every live key in `range`; returns the deleted records (their last values).
    pub fn delete_range(&mut self, range: &KeyRange) -> Result<Vec<KeyValue>, MvccError> {
        let mut keys = Vec::new();
        self.state.index.range(range, i64::MAX, |k, e| {
            keys.push((k.to_vec(), e.rev));
            true
        });
        let mut deleted = Vec::with_capacity(keys.len());
        for (key, live_rev) in keys {
            let prev = self.value(live_rev)?;
            self.reattach(&key, prev.lease, 0);
            let rev = self.next_revision();
            self.state.index.tombstone(&key, rev);
            let tomb = KeyValue {
                key: key.clone(),
                mod_revision: rev.main,
                ..Default::default()
            };
            self.batch
                .put(Table::Key, rev.to_key(true), codec::encode_kv(&tomb));
            self.touched.push(key);
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(tomb),
                prev_kv: Some(prev.clone()),
            });
            deleted.push(prev);
        }
        Ok(deleted)
    }
}
