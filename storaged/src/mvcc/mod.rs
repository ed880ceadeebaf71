//! etcd's multi-version store, independent of the engine underneath.
//!
//! - `store`: the [`Store`] (state, recovery) and its read and write transactions.
//! - `key_index`: per-key revision history kept in memory; `key_range`: etcd's key-range
//!   convention; `revision`: revisions and their key encoding; `codec`: records in the engine.
//! - `read`: Range with every etcd option.
//! - `write`: puts and deletes inside one write transaction (one main revision).
//! - `ops`: etcd request semantics (Put, DeleteRange, Txn, Compact) on top of the two.
//! - `compact`: compaction of the index and the engine.
//! - `history`: past changes as watch events, for watchers catching up.
//! - `lease`: leases and the keys attached to them; `lease_write`: lease changes inside a
//!   write transaction.
//! - `hash`: HashKV, the digest members compare; `error`: [`MvccError`].
//! - `model_test`: the store checked against a simple model (tests only).

mod codec;
mod compact;
mod error;
mod hash;
mod history;
mod key_index;
mod key_range;
mod lease;
mod lease_write;
mod ops;
mod read;
mod revision;
mod store;
mod write;

#[cfg(test)]
mod model_test;

pub use codec::{META_APPLIED_INDEX, META_COMPACT_REV, META_CURRENT_REV, decode_u64};
pub use error::MvccError;
pub use hash::{Crc32c, hash_kv};
pub use history::History;
pub use key_range::KeyRange;
pub use lease::{LeaseRecord, Leases, MAX_LEASE_TTL, decode_lease, encode_lease};
pub use ops::{is_read_only_txn, txn_read_only};
pub use revision::Revision;
pub use store::{CommitObserver, DumpRecord, DumpSink, KvView, ReadTxn, Store, WriteTxn};
