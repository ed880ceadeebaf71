//! The store as an etcd backend database (etcd's schema in a bbolt file): what
//! `Maintenance.Snapshot` sends, so that `etcdctl snapshot status` reads it and a real etcd
//! restores it.
//!
//! etcd's buckets, in the order bbolt keeps them: `alarm` (an `AlarmMember` per active alarm),
//! `auth` (enabled flag, auth revision), `authRoles`, `authUsers`, `cluster` (the cluster
//! version), `key` (revision → `mvccpb.KeyValue`; the revision as 8 bytes main, `_`, 8 bytes
//! sub, plus `t` for a deletion), `lease` (id → `leasepb.Lease`), `members` (hex id → raft
//! attributes as JSON), `members_removed` and `meta` (consistent index, compaction revisions).

use super::bolt::Writer;
use crate::alarms;
use crate::engine::{EngineError, ReadView, Table};
use crate::mvcc::{self, META_APPLIED_INDEX, META_COMPACT_REV, MvccError, Revision, Store};
use metastore_proto::mvccpb::KeyValue;
use prost::Message;
use std::io::{Seek, Write};

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdLease {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// A member as the snapshot records it.
pub struct MemberRecord {
    pub id: u64,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
}

/// Whether a scan goes on after `r`; the first failure is kept in `failure`.
fn keep(failure: &mut Option<std::io::Error>, r: std::io::Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            failure.get_or_insert(e);
            false
        }
    }
}

fn io_error(e: std::io::Error) -> EngineError {
    EngineError::Backend(e.to_string())
}

/// Writes the store, as of one consistent view, as an etcd database into `out`; returns the
/// output and the database's length.
pub fn write<W: Write + Seek>(
    store: &Store,
    members: &[MemberRecord],
    cluster_version: &str,
    out: W,
) -> Result<(W, u64), MvccError> {
    let mut out = Some(out);
    let mut done = None;
    store.engine().with_snapshot(&mut |view| {
        let w = out
            .take()
            .ok_or_else(|| EngineError::Backend("written twice".into()))?;
        done = Some(
            write_view(view, members, cluster_version, w).map_err(|e| match e {
                MvccError::Engine(e) => e,
                other => EngineError::Backend(other.to_string()),
            })?,
        );
        Ok(())
    })?;
    done.ok_or_else(|| MvccError::Corrupt("no snapshot view".into()))
}

/// The auth store's buckets (`auth`, `authRoles`, `authUsers`): the same records as etcd's.
fn write_auth<W: Write + Seek>(view: &dyn ReadView, w: &mut Writer<W>) -> Result<(), MvccError> {
    use crate::auth::state::{self, ETCD_AUTH_BUCKET, ETCD_ROLES_BUCKET, ETCD_USERS_BUCKET};
    let mut records: Vec<(&'static [u8], Vec<u8>, Vec<u8>)> = Vec::new();
    view.scan(Table::Meta, state::META_PREFIX, None, &mut |k, v| {
        if !k.starts_with(state::META_PREFIX) {
            return false;
        }
        if let Some((bucket, key)) = state::etcd_record_of(k) {
            records.push((bucket, key, v.to_vec()));
        }
        true
    })?;
    // A store that never had auth: etcd's defaults (off, revision 1).
    let defaults = [
        (state::ETCD_ENABLED, vec![0]),
        (state::ETCD_REVISION, 1u64.to_be_bytes().to_vec()),
    ];
    for (key, value) in defaults {
        if !records
            .iter()
            .any(|r| r.0 == ETCD_AUTH_BUCKET && r.1 == key)
        {
            records.push((ETCD_AUTH_BUCKET, key.to_vec(), value));
        }
    }
    records.sort();
    for bucket in [ETCD_AUTH_BUCKET, ETCD_ROLES_BUCKET, ETCD_USERS_BUCKET] {
        w.bucket(bucket).map_err(io_error)?;
        for (_, k, v) in records.iter().filter(|r| r.0 == bucket) {
            w.put(k, v).map_err(io_error)?;
        }
    }
    Ok(())
}

fn write_view<W: Write + Seek>(
    view: &dyn ReadView,
    members: &[MemberRecord],
    cluster_version: &str,
    out: W,
) -> Result<(W, u64), MvccError> {
    let mut w = Writer::new(out).map_err(io_error)?;
    let mut failure: Option<std::io::Error> = None;

    w.bucket(b"alarm").map_err(io_error)?;
    let mut alarm_keys = Vec::new();
    view.scan(Table::Meta, alarms::PREFIX, None, &mut |k, _| {
        if !k.starts_with(alarms::PREFIX) {
            return false;
        }
        if let Some(m) = alarms::member_of(k) {
            alarm_keys.push(m.encode_to_vec());
        }
        true
    })?;
    alarm_keys.sort();
    for k in &alarm_keys {
        w.put(k, b"").map_err(io_error)?;
    }

    write_auth(view, &mut w)?;
    w.bucket(b"cluster").map_err(io_error)?;
    w.put(b"clusterVersion", cluster_version.as_bytes())
        .map_err(io_error)?;

    w.bucket(b"key").map_err(io_error)?;
    let mut bad = None;
    view.scan(Table::Key, &[], None, &mut |k, v| {
        let Some((rev, tombstone)) = Revision::from_key(k) else {
            bad = Some(format!("bad revision key {k:?}"));
            return false;
        };
        let key = rev.to_etcd_key(tombstone);
        if tombstone {
            // etcd records a deletion as the key alone.
            match KeyValue::decode(v) {
                Ok(kv) => {
                    let tomb = KeyValue {
                        key: kv.key,
                        ..Default::default()
                    };
                    keep(&mut failure, w.put(&key, &tomb.encode_to_vec()))
                }
                Err(e) => {
                    bad = Some(e.to_string());
                    false
                }
            }
        } else {
            keep(&mut failure, w.put(&key, v))
        }
    })?;
    if let Some(e) = failure.take() {
        return Err(io_error(e).into());
    }
    if let Some(e) = bad {
        return Err(MvccError::Corrupt(e));
    }

    w.bucket(b"lease").map_err(io_error)?;
    view.scan(
        Table::Lease,
        &[],
        None,
        &mut |k, v| match mvcc::decode_lease(k, v) {
            Ok((id, ttl, remaining)) => {
                let lease = EtcdLease {
                    id,
                    ttl,
                    remaining_ttl: remaining,
                };
                keep(&mut failure, w.put(k, &lease.encode_to_vec()))
            }
            Err(e) => {
                bad = Some(e.to_string());
                false
            }
        },
    )?;
    if let Some(e) = failure.take() {
        return Err(io_error(e).into());
    }
    if let Some(e) = bad {
        return Err(MvccError::Corrupt(e));
    }

    w.bucket(b"members").map_err(io_error)?;
    let mut listed: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            let urls: Vec<String> = m.peer_urls.iter().map(|u| format!("{u:?}")).collect();
            let learner = if m.is_learner {
                ",\"isLearner\":true"
            } else {
                ""
            };
            (
                format!("{:x}", m.id),
                format!(
                    "{{\"id\":{},\"peerURLs\":[{}]{learner}}}",
                    m.id,
                    urls.join(",")
                ),
            )
        })
        .collect();
    listed.sort();
    for (k, v) in &listed {
        w.put(k.as_bytes(), v.as_bytes()).map_err(io_error)?;
    }
    w.bucket(b"members_removed").map_err(io_error)?;

    w.bucket(b"meta").map_err(io_error)?;
    let applied = match view.get(Table::Meta, META_APPLIED_INDEX)? {
        Some(v) => mvcc::decode_u64(&v)?,
        None => 0,
    };
    let compacted = match view.get(Table::Meta, META_COMPACT_REV)? {
        Some(v) => mvcc::decode_u64(&v)? as i64,
        None => 0,
    };
    w.put(b"consistent_index", &applied.to_be_bytes())
        .map_err(io_error)?;
    if compacted > 0 {
        let rev = Revision::new(compacted, 0).to_etcd_key(false);
        w.put(b"finishedCompactRev", &rev).map_err(io_error)?;
        w.put(b"scheduledCompactRev", &rev).map_err(io_error)?;
    }
    Ok(w.finish().map_err(io_error)?)
}
