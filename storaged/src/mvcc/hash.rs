//! HashKV, computed exactly as etcd computes it, so members compare equal to each other and a
//! MetaStore answers the same hash as an etcd that applied the same requests: CRC-32C over
//! `key` (etcd's bucket name), then every stored revision up to the asked one in revision
//! order, keys in etcd's form and deletions as etcd records them. Revisions at or below the
//! compaction are counted only when the key's newest live revision as of the asked one is
//! that revision (what a compaction at it would keep), unless no key is live then.

use super::error::MvccError;
use super::revision::Revision;
use super::store::Store;
use crate::engine::Table;
use metastore_proto::etcdserverpb::{HashKvResponse, ResponseHeader};
use metastore_proto::mvccpb::KeyValue;
use prost::Message;

/// CRC-32C (Castagnoli), reflected: Go's `crc32.MakeTable(crc32.Castagnoli)`.
pub struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Default for Crc32c {
    fn default() -> Self {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Self { table, crc: !0 }
    }
}

impl Crc32c {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.crc = self.table[((self.crc ^ u32::from(*b)) & 0xff) as usize] ^ (self.crc >> 8);
        }
    }

    pub fn finish(&self) -> u32 {
        !self.crc
    }
}

/// etcd's HashKV at `revision` (0 = current).
pub fn hash_kv(store: &Store, revision: i64) -> Result<HashKvResponse, MvccError> {
    let (current, compacted) = store.with_revisions(|c, k| (c, k));
    if revision > 0 && revision <= compacted {
        return Err(MvccError::Compacted);
    }
    if revision > current {
        return Err(MvccError::FutureRev);
    }
    let upto = if revision <= 0 { current } else { revision };
    let any_live = store.any_live_at(upto);
    let mut hasher = Crc32c::default();
    hasher.update(b"key");
    let mut failure = None;
    store.engine().with_snapshot(&mut |view| {
        view.scan(Table::Key, &[], None, &mut |k, v| {
            let Some((rev, tombstone)) = Revision::from_key(k) else {
                failure = Some(MvccError::Corrupt("bad revision key".into()));
                return false;
            };
            if rev.main > upto {
                return false;
            }
            let kv = if tombstone || (rev.main <= compacted && any_live) {
                match KeyValue::decode(v) {
                    Ok(kv) => Some(kv),
                    Err(e) => {
                        failure = Some(MvccError::Corrupt(e.to_string()));
                        return false;
                    }
                }
            } else {
                None
            };
            if rev.main <= compacted && any_live {
                let key = kv.as_ref().map_or(&[][..], |kv| kv.key.as_slice());
                if tombstone || store.live_revision_at(key, upto) != Some(rev) {
                    return true;
                }
            }
            hasher.update(&rev.to_etcd_key(tombstone));
            match kv {
                // etcd records a deletion as the key alone.
                Some(kv) if tombstone => hasher.update(
                    &KeyValue {
                        key: kv.key,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                ),
                _ => hasher.update(v),
            }
            true
        })
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(HashKvResponse {
        header: Some(ResponseHeader {
            revision: current,
            ..Default::default()
        }),
        hash: hasher.finish(),
        // etcd's compaction revision starts at -1 (never compacted).
        compact_revision: if compacted == 0 { -1 } else { compacted },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        let mut c = Crc32c::default();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xE306_9283);
    }
}
