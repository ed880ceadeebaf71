//! Compaction: drop history below a revision from the index and the engine.

use super::codec::{self, META_COMPACT_REV};
use super::error::MvccError;
use super::store::WriteTxn;
use crate::engine::Table;

impl WriteTxn<'_> {
    /// Compacts at `rev`. etcd's rules: `rev` must be above the last compaction and at most the
    /// current revision. Backend cleanup happens in the same batch, so `physical` and
    /// non-physical compactions both return after the space is released.
    ///
    /// The index is compacted in place and is not undone if the engine write then fails; reads
    /// at or above `rev` stay correct either way.
    pub fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.state.compacted {
            return Err(MvccError::Compacted);
        }
        if rev > self.state.current {
            return Err(MvccError::FutureRev);
        }
        for (r, tombstone) in self.state.index.compact(rev) {
            self.batch.delete(Table::Key, r.to_key(tombstone));
        }
        self.batch
            .put(Table::Meta, META_COMPACT_REV, codec::encode_u64(rev as u64));
        self.state.compacted = rev;
        Ok(())
    }
}
