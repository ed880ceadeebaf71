//! HashKV: a checksum of the stored revisions up to a revision, equal on members that
//! applied the same log (used to compare members, as etcd's HashKV is).

use super::error::MvccError;
use super::revision::Revision;
use super::store::Store;
use crate::engine::Table;
use metastore_proto::etcdserverpb::{HashKvResponse, ResponseHeader};

/// Hashes every stored revision record with main revision `<= revision` (0 = current).
pub fn hash_kv(store: &Store, revision: i64) -> Result<HashKvResponse, MvccError> {
    let (current, compacted) = store.with_revisions(|c, k| (c, k));
    let upto = if revision <= 0 { current } else { revision };
    if upto > current {
        return Err(MvccError::FutureRev);
    }
    if revision > 0 && revision < compacted {
        return Err(MvccError::Compacted);
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut failure = None;
    store.engine().with_snapshot(&mut |view| {
        view.scan(
            Table::Key,
            &[],
            None,
            &mut |k, v| match Revision::from_key(k) {
                Some((rev, _)) if rev.main <= upto => {
                    hasher.update(k);
                    hasher.update(v);
                    true
                }
                Some(_) => false,
                None => {
                    failure = Some(MvccError::Corrupt("bad revision key".into()));
                    false
                }
            },
        )
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(HashKvResponse {
        header: Some(ResponseHeader {
            revision: current,
            ..Default::default()
        }),
        hash: hasher.finalize(),
        compact_revision: compacted,
        ..Default::default()
    })
}
