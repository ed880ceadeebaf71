//! `snapshot restore`: a snapshot file in etcd's format — made by MetaStore or by a real etcd
//! 3.4/3.5 — into the data dir of a member of a new cluster, on either engine, as etcd's
//! `etcdutl snapshot restore` does. Every revision of every key (values, create and mod
//! revisions, versions, leases), the compaction point, leases and alarms come across; the
//! members are the ones given (`--initial-cluster`), not the snapshot's. Every member of the
//! new cluster restores the same file.

use super::bolt::Reader;
use super::etcd_db::EtcdLease;
use crate::engine::{self, EngineKind, Table};
use crate::identity::Identity;
use crate::mvcc::{self, DumpRecord, MvccError, Revision, Store};
use crate::raft::Member;
use metastore_proto::etcdserverpb::AlarmMember;
use metastore_proto::mvccpb::KeyValue;
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct RestoreOptions {
    pub file: PathBuf,
    pub data_dir: PathBuf,
    pub name: String,
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: String,
    pub engine: EngineKind,
    pub skip_hash_check: bool,
}

/// What a restore brought across.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub revision: i64,
    pub compacted: i64,
    pub records: u64,
    pub leases: u64,
    pub alarms: u64,
    /// Users, roles, the auth flag and revision.
    pub auth_records: u64,
}

fn table_index(t: Table) -> u8 {
    Table::ALL.iter().position(|x| *x == t).unwrap_or(0) as u8
}

/// Checks the SHA-256 trailer `etcdctl snapshot save` leaves (a file whose size is 32 past a
/// multiple of 512 has one); a file without one is refused unless `skip` is set.
fn check_hash(file: &Path, skip: bool) -> Result<(), String> {
    let len = std::fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    if len % 512 != 32 {
        return if skip {
            Ok(())
        } else {
            Err("snapshot missing hash but --skip-hash-check=false".into())
        };
    }
    let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut hash = Sha256::new();
    let mut left = len - 32;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (left as usize).min(buf.len());
        f.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    let mut want = [0u8; 32];
    f.read_exact(&mut want).map_err(|e| e.to_string())?;
    let got = hash.finalize();
    if got.as_slice() != want {
        return Err(format!(
            "expected sha256 {}, got {}",
            hex(&want),
            hex(got.as_slice())
        ));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store's records for the etcd database `db`, in the store's own encoding, given to
/// `send` as they are read; returns what was read.
fn convert(db: &Reader, send: &mut dyn FnMut(DumpRecord) -> bool) -> Result<Restored, String> {
    let mut r = Restored::default();
    let (key, lease, meta) = (
        table_index(Table::Key),
        table_index(Table::Lease),
        table_index(Table::Meta),
    );
    let io = |e: std::io::Error| e.to_string();
    db.for_each(b"key", &mut |k, v| {
        let Some((rev, tombstone)) = Revision::from_etcd_key(k) else {
            return Err(std::io::Error::other(format!("bad revision key {k:?}")));
        };
        let mut kv = KeyValue::decode(v).map_err(std::io::Error::other)?;
        if tombstone {
            kv = KeyValue {
                key: kv.key,
                mod_revision: rev.main,
                ..Default::default()
            };
        }
        r.revision = r.revision.max(rev.main);
        r.records += 1;
        if !send((key, rev.to_key(tombstone), kv.encode_to_vec())) {
            return Err(std::io::Error::other("restore stopped"));
        }
        Ok(())
    })
    .map_err(io)?;
    db.for_each(b"lease", &mut |k, v| {
        let l = EtcdLease::decode(v).map_err(std::io::Error::other)?;
        if k.len() != 8 {
            return Err(std::io::Error::other("bad lease key"));
        }
        r.leases += 1;
        let value = mvcc::encode_lease(l.ttl, l.remaining_ttl);
        if !send((lease, (l.id as u64).to_be_bytes().to_vec(), value)) {
            return Err(std::io::Error::other("restore stopped"));
        }
        Ok(())
    })
    .map_err(io)?;
    db.for_each(b"alarm", &mut |k, _| {
        let m = AlarmMember::decode(k).map_err(std::io::Error::other)?;
        r.alarms += 1;
        if !send((meta, crate::alarms::key(&m), Vec::new())) {
            return Err(std::io::Error::other("restore stopped"));
        }
        Ok(())
    })
    .map_err(io)?;
    for bucket in [
        crate::auth::state::ETCD_AUTH_BUCKET,
        crate::auth::state::ETCD_ROLES_BUCKET,
        crate::auth::state::ETCD_USERS_BUCKET,
    ] {
        db.for_each(bucket, &mut |k, v| {
            let Some(key) =
                crate::auth::state::meta_key_of(bucket, k, v).map_err(std::io::Error::other)?
            else {
                return Ok(());
            };
            r.auth_records += 1;
            if !send((meta, key, v.to_vec())) {
                return Err(std::io::Error::other("restore stopped"));
            }
            Ok(())
        })
        .map_err(io)?;
    }
    db.for_each(b"meta", &mut |k, v| {
        if k == b"finishedCompactRev"
            && let Some((rev, _)) = Revision::from_etcd_key(v)
        {
            r.compacted = rev.main;
        }
        Ok(())
    })
    .map_err(io)?;
    r.revision = r.revision.max(r.compacted).max(1);
    for (k, v) in [
        (mvcc::META_CURRENT_REV, r.revision as u64),
        (mvcc::META_COMPACT_REV, r.compacted as u64),
        (mvcc::META_APPLIED_INDEX, 0),
    ] {
        if !send((meta, k.to_vec(), v.to_be_bytes().to_vec())) {
            return Err("restore stopped".into());
        }
    }
    Ok(r)
}

/// Restores `o.file` into `o.data_dir`, which must not exist yet.
pub fn restore(o: &RestoreOptions) -> Result<Restored, String> {
    if o.data_dir.exists() {
        return Err(format!(
            "data-dir {:?} exists",
            o.data_dir.display().to_string()
        ));
    }
    let identity = Identity::new(&o.name, &o.initial_cluster, &o.initial_cluster_token)?;
    let mut advertised: Vec<String> = o
        .initial_advertise_peer_urls
        .split(',')
        .map(|u| u.trim().to_string())
        .collect();
    let mut listed = identity.members[&o.name].clone();
    advertised.sort();
    listed.sort();
    if advertised != listed {
        return Err(format!(
            "--initial-cluster has {} for {} but --initial-advertise-peer-urls is {}",
            listed.join(","),
            o.name,
            advertised.join(",")
        ));
    }
    check_hash(&o.file, o.skip_hash_check)?;
    let db = Reader::open(&o.file).map_err(|e| format!("{}: {e}", o.file.display()))?;
    // The database is read (and converted) before anything is written.
    convert(&db, &mut |_| true)?;

    let opened = engine::open(o.engine, &o.data_dir).map_err(|e| e.to_string())?;
    let store = Arc::new(Store::open(opened.engine).map_err(|e| e.to_string())?);
    let members: BTreeMap<u64, Member> = identity
        .members
        .iter()
        .map(|(name, urls)| {
            let id = crate::identity::member_id(urls, &identity.token);
            let member = Member {
                name: name.clone(),
                peer_urls: urls.clone(),
            };
            (id, member)
        })
        .collect();
    let me = identity.member_id;
    let restored = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<DumpRecord>(4096);
        let db = &db;
        let reader = scope.spawn(move || convert(db, &mut |rec| tx.send(rec).is_ok()));
        let records = rx.into_iter().map(Ok::<_, MvccError>);
        let seeded = crate::raft::state_machine::seed(&store, &o.data_dir, me, members, records);
        let converted = reader
            .join()
            .map_err(|_| "reading the snapshot failed".to_string())?;
        seeded.map_err(|e| format!("writing the store: {e}"))?;
        converted
    })?;
    identity.pinned(&o.data_dir)?;
    Ok(restored)
}
