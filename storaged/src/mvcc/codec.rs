//! Encoding of MVCC records and metadata in the engine.

use super::error::MvccError;
use super::key_index::IndexEntry;
use super::revision::Revision;
use crate::engine::{ReadView, Table};
use metastore_proto::mvccpb::KeyValue;
use prost::Message;

pub const META_CURRENT_REV: &[u8] = b"current_revision";
pub const META_COMPACT_REV: &[u8] = b"compact_revision";
pub const META_APPLIED_INDEX: &[u8] = b"applied_index";
/// The raft layer's applied state (log id and membership), opaque to the store.
pub const META_RAFT_APPLIED: &[u8] = b"raft_applied";

pub fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    kv.encode_to_vec()
}

pub fn decode_kv(bytes: &[u8]) -> Result<KeyValue, MvccError> {
    KeyValue::decode(bytes).map_err(|e| MvccError::Corrupt(e.to_string()))
}

pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_u64(bytes: &[u8]) -> Result<u64, MvccError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| MvccError::Corrupt(format!("bad u64 of {} bytes", bytes.len())))
}

/// The index entry that a stored record stands for.
pub fn index_entry(rev: Revision, tombstone: bool, kv: &KeyValue) -> IndexEntry {
    if tombstone {
        IndexEntry {
            rev,
            create: 0,
            version: 0,
            lease: 0,
        }
    } else {
        IndexEntry {
            rev,
            create: kv.create_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// A stored revision record: its revision, whether it is a tombstone, the record, and its
/// encoded size.
pub struct Record {
    pub rev: Revision,
    pub tombstone: bool,
    pub kv: KeyValue,
    pub size: usize,
}

/// Visits the revision records in `[start, end)` in revision order until `visit` returns
/// false; a record that does not decode stops the scan with `Corrupt`.
pub fn scan_records(
    view: &dyn ReadView,
    start: &[u8],
    end: Option<&[u8]>,
    mut visit: impl FnMut(Record) -> bool,
) -> Result<(), MvccError> {
    let mut failure = None;
    view.scan(Table::Key, start, end, &mut |k, v| {
        let Some((rev, tombstone)) = Revision::from_key(k) else {
            failure = Some(MvccError::Corrupt("bad revision key".into()));
            return false;
        };
        match decode_kv(v) {
            Ok(kv) => visit(Record {
                rev,
                tombstone,
                kv,
                size: v.len(),
            }),
            Err(e) => {
                failure = Some(e);
                false
            }
        }
    })?;
    failure.map_or(Ok(()), Err)
}
