//! The snapshot file in the data dir (`snapshot.bin`): the latest raft snapshot this member
//! built or installed, which the memory engine starts from and lagging members are sent.
//!
//! Layout: magic, meta length, meta (postcard), data length, data, then a CRC-32 of all of it.
//! Reading verifies the checksum, so a torn or corrupt file is refused rather than installed.
//! Writers (the snapshot builder and snapshot installs) go through one lock, each writes its
//! own temporary file, and a file never replaces one holding a newer snapshot.

use super::{SnapshotMeta, codec};
use parking_lot::Mutex;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"MSSNAP01";
const NAME: &str = "snapshot.bin";

/// One member's snapshot file, shared by the builder and the state machine.
#[derive(Clone)]
pub struct SnapshotFile {
    dir: PathBuf,
    lock: Arc<Mutex<()>>,
    next_tmp: Arc<AtomicU64>,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn index_of(meta: &SnapshotMeta) -> u64 {
    meta.last_log_id.as_ref().map_or(0, |id| id.index)
}

impl SnapshotFile {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            lock: Arc::new(Mutex::new(())),
            next_tmp: Arc::new(AtomicU64::new(0)),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(NAME)
    }

    /// The stored snapshot, checksum verified; `None` when there is none.
    pub fn read(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let bytes = match std::fs::read(self.path()) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        decode(&bytes).map(Some)
    }

    /// The meta of the stored snapshot, reading only the file's head (no checksum check).
    pub fn meta(&self) -> io::Result<Option<SnapshotMeta>> {
        let mut f = match std::fs::File::open(self.path()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut head = [0u8; 12];
        f.read_exact(&mut head)?;
        if &head[..8] != MAGIC {
            return Err(invalid("snapshot file: bad magic"));
        }
        let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
        let mut meta = vec![0u8; len];
        f.read_exact(&mut meta)?;
        codec::decode(&meta).map(Some)
    }

    /// Stores a snapshot unless the file already holds one at least as new; returns whether
    /// it was written. Written to a temporary file of its own, fsynced, renamed into place,
    /// and the directory fsynced.
    pub fn write(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<bool> {
        let _writer = self.lock.lock();
        if let Ok(Some(current)) = self.meta()
            && index_of(&current) >= index_of(meta)
            && current.last_log_id.is_some()
        {
            return Ok(false);
        }
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("{NAME}.{}.{n}.tmp", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&encode(meta, data)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path())?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| true)
    }
}

fn encode(meta: &SnapshotMeta, data: &[u8]) -> io::Result<Vec<u8>> {
    let meta = codec::encode(meta)?;
    let mut out = Vec::with_capacity(32 + meta.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn decode(bytes: &[u8]) -> io::Result<(SnapshotMeta, Vec<u8>)> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| invalid("snapshot file: truncated"))?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(invalid("snapshot file: checksum mismatch"));
    }
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| invalid("snapshot file: bad magic"))?;
    let take = |rest: &[u8], n: usize| -> io::Result<(Vec<u8>, usize)> {
        rest.get(..n)
            .map(|b| (b.to_vec(), n))
            .ok_or_else(|| invalid("snapshot file: truncated"))
    };
    let (len, _) = take(rest, 4)?;
    let meta_len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let rest = &rest[4..];
    let (meta, _) = take(rest, meta_len)?;
    let rest = &rest[meta_len..];
    let (len, _) = take(rest, 8)?;
    let data_len = u64::from_be_bytes(len.try_into().map_err(|_| invalid("length"))?) as usize;
    let rest = &rest[8..];
    if rest.len() != data_len {
        return Err(invalid("snapshot file: wrong data length"));
    }
    Ok((codec::decode(&meta)?, rest.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::log_id;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(log_id::<crate::raft::TypeConfig>(1, 1, index)),
            ..Default::default()
        }
    }

    #[test]
    fn never_replaced_by_an_older_snapshot_and_checked_on_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = SnapshotFile::new(dir.path());
        assert!(f.read().expect("read").is_none());
        assert!(f.write(&meta(10), b"ten").expect("write"));
        assert!(!f.write(&meta(5), b"five").expect("write"), "older refused");
        assert!(
            !f.write(&meta(10), b"again").expect("write"),
            "same refused"
        );
        let (m, data) = f.read().expect("read").expect("some");
        assert_eq!((index_of(&m), data.as_slice()), (10, &b"ten"[..]));
        assert!(f.write(&meta(20), b"twenty").expect("write"));
        assert_eq!(f.meta().expect("meta").map(|m| index_of(&m)), Some(20));
        // A flipped byte is found.
        let path = dir.path().join(NAME);
        let mut bytes = std::fs::read(&path).expect("bytes");
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert!(f.read().is_err());
        // No temporary files are left behind.
        let leftovers = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }
}
