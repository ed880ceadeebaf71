//! The file `Maintenance.Snapshot` sends: the store as an etcd database ([`super::etcd_db`]),
//! written to a scratch file beside the data (never held whole in memory), then streamed in
//! etcd's chunks followed by the SHA-256 of everything before it, which `etcdctl snapshot
//! save` and restore check.

use super::etcd_db::{self, MemberRecord};
use crate::mvcc::{MvccError, Store};
use metastore_proto::etcdserverpb::SnapshotResponse;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// etcd's chunk size.
pub const CHUNK: usize = 32 * 1024;

/// A database file made for one snapshot request; removed when dropped.
pub struct SnapshotFile {
    path: PathBuf,
    len: u64,
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes scratch files a killed process left in `dir`.
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with("snapshot-send-")
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl SnapshotFile {
    /// Writes the store's current content as an etcd database in `dir`.
    pub fn make(
        store: &Store,
        members: &[MemberRecord],
        cluster_version: &str,
        dir: &Path,
    ) -> Result<Self, MvccError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("snapshot-send-{}-{n}.db", std::process::id()));
        let io = |e: std::io::Error| MvccError::Corrupt(format!("snapshot file: {e}"));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        // From here on the file is removed whatever happens.
        let mut made = SnapshotFile { path, len: 0 };
        let (_, len) = etcd_db::write(store, members, cluster_version, BufWriter::new(file))?;
        made.len = len;
        Ok(made)
    }

    /// The database's length (without the hash).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Passes the file to `send` in chunks of [`CHUNK`] bytes with the bytes remaining after
    /// each, then the SHA-256 of the whole file with 0 remaining; stops early when `send`
    /// answers false.
    pub fn stream(&self, send: &mut dyn FnMut(SnapshotResponse) -> bool) -> std::io::Result<()> {
        let mut file = File::open(&self.path)?;
        let mut hash = Sha256::new();
        let mut sent = 0u64;
        let mut buf = vec![0u8; CHUNK];
        while sent < self.len {
            let want = CHUNK.min((self.len - sent) as usize);
            file.read_exact(&mut buf[..want])?;
            hash.update(&buf[..want]);
            sent += want as u64;
            let chunk = SnapshotResponse {
                remaining_bytes: self.len - sent,
                blob: buf[..want].to_vec(),
                ..Default::default()
            };
            if !send(chunk) {
                return Ok(());
            }
        }
        send(SnapshotResponse {
            remaining_bytes: 0,
            blob: hash.finalize().to_vec(),
            ..Default::default()
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::bolt::{PAGE_SIZE, Reader};
    use crate::engine::{EngineKind, open};
    use metastore_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};

    #[test]
    fn the_stream_is_the_database_then_its_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opened = open(EngineKind::Memory, &dir.path().join("data")).expect("engine");
        let store = Store::open(opened.engine).expect("store");
        for i in 0..3000u32 {
            let put = PutRequest {
                key: format!("k{:05}", i % 2000).into_bytes(),
                value: vec![b'v'; (i % 700) as usize],
                ..Default::default()
            };
            store
                .write(i as u64 + 1, |w| w.apply_put(&put))
                .expect("put");
        }
        let del = DeleteRangeRequest {
            key: b"k00000".to_vec(),
            ..Default::default()
        };
        store
            .write(3001, |w| w.apply_delete_range(&del))
            .expect("delete");
        let members = [MemberRecord {
            id: 0x1234,
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            is_learner: false,
        }];
        let file = SnapshotFile::make(&store, &members, "3.4.0", dir.path()).expect("make");
        let mut bytes = Vec::new();
        let mut chunks = Vec::new();
        file.stream(&mut |r| {
            chunks.push((r.remaining_bytes, r.blob.len()));
            bytes.extend_from_slice(&r.blob);
            true
        })
        .expect("stream");
        let len = file.len() as usize;
        assert_eq!(bytes.len(), len + 32);
        assert_eq!(bytes.len() % 512, 32, "what etcdctl checks");
        assert_eq!(len % PAGE_SIZE, 0);
        assert!(chunks.iter().all(|(_, n)| *n <= CHUNK));
        assert_eq!(chunks.last(), Some(&(0, 32)));
        assert_eq!(chunks[chunks.len() - 2].0, 0);
        assert_eq!(&bytes[len..], Sha256::digest(&bytes[..len]).as_slice());

        // The database holds etcd's buckets, every revision and the consistent index.
        let db = dir.path().join("copy.db");
        std::fs::write(&db, &bytes[..len]).expect("write");
        let r = Reader::open(&db).expect("open");
        let names: Vec<String> = r
            .bucket_names()
            .expect("names")
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "alarm",
                "auth",
                "authRoles",
                "authUsers",
                "cluster",
                "key",
                "lease",
                "members",
                "members_removed",
                "meta"
            ]
        );
        let mut revisions = Vec::new();
        r.for_each(b"key", &mut |k, _| {
            revisions.push(crate::mvcc::Revision::from_etcd_key(k).expect("revision key"));
            Ok(())
        })
        .expect("key bucket");
        assert_eq!(revisions.len(), 3001);
        assert_eq!(
            revisions.last().map(|(r, t)| (r.main, *t)),
            Some((3002, true))
        );
        let mut meta = Vec::new();
        r.for_each(b"meta", &mut |k, v| {
            meta.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .expect("meta bucket");
        assert_eq!(
            meta,
            [(b"consistent_index".to_vec(), 3001u64.to_be_bytes().to_vec())]
        );
        drop(file);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot-send"))
            .collect();
        assert!(left.is_empty(), "the scratch file is removed");
    }
}
