//! The snapshot file in the data dir (`snapshot.bin`): the latest raft snapshot this member
//! built or installed, which the memory engine starts from and lagging members are sent. Its
//! encoding is [`super::snapshot_format`].
//!
//! Every snapshot is first written to a temporary file of its own (built here, received from
//! the leader, or copied), then moved into place under one lock, and never over a file
//! holding a newer snapshot. The checksum is verified before a snapshot is installed.

use super::SnapshotMeta;
use super::snapshot_blob::{Receiver, SnapshotBlob};
use super::snapshot_format::{self, Writer};
use parking_lot::Mutex;
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const NAME: &str = "snapshot.bin";

/// One member's snapshot file, shared by the builder, the state machine and the peer service.
#[derive(Clone)]
pub struct SnapshotFile {
    dir: PathBuf,
    lock: Arc<Mutex<()>>,
    next_tmp: Arc<AtomicU64>,
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

    fn temp_path(&self, kind: &str) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{NAME}.{}.{n}.{kind}.tmp", std::process::id()))
    }

    /// The meta of the stored snapshot, reading only the file's head (no checksum check).
    pub fn meta(&self) -> io::Result<Option<SnapshotMeta>> {
        match File::open(self.path()) {
            Ok(f) => snapshot_format::read_meta(&mut io::BufReader::new(f)).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stored snapshot as an open file with its meta (read from that file's head), or
    /// `None`. Readers of the blob keep reading this snapshot even if a newer one replaces
    /// the file meanwhile.
    pub fn open(&self) -> io::Result<Option<(SnapshotMeta, SnapshotBlob)>> {
        let file = match File::open(self.path()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let blob = SnapshotBlob::in_place(file, len);
        let meta = snapshot_format::read_meta(&mut io::BufReader::new(blob.reader()?))?;
        Ok(Some((meta, blob)))
    }

    /// A new snapshot of `meta`, written record by record to a temporary file here.
    pub fn writer(&self, meta: &SnapshotMeta) -> io::Result<NewSnapshot> {
        let path = self.temp_path("build");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let guard = TempFile(Some(path));
        let writer = Writer::new(BufWriter::with_capacity(1 << 20, file), meta)?;
        Ok(NewSnapshot {
            writer: Some(writer),
            path: guard,
        })
    }

    /// A receiver for an incoming snapshot of `len` bytes, written to a temporary file here.
    pub fn receiver(&self, len: u64) -> io::Result<Receiver> {
        Receiver::create(self.temp_path("recv"), len)
    }

    /// A pending copy of `blob` (a snapshot handed over in-process rather than received).
    pub fn copy_in(&self, blob: &SnapshotBlob) -> io::Result<SnapshotBlob> {
        let mut receiver = self.receiver(blob.len())?;
        let mut reader = blob.reader()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            receiver.write(&buf[..n])?;
        }
        receiver.finish()
    }

    /// Moves a pending snapshot (`blob`, holding `meta`) into place, unless the file already
    /// holds one at least as new; returns whether it did. The blob stays readable either way.
    pub fn adopt(&self, blob: &mut SnapshotBlob, meta: &SnapshotMeta) -> io::Result<bool> {
        let Some(path) = blob.pending().cloned() else {
            return Ok(false);
        };
        let _writer = self.lock.lock();
        if self.holds_as_new(meta) {
            return Ok(false);
        }
        self.put_in_place(blob, &path)?;
        Ok(true)
    }

    fn put_in_place(&self, blob: &mut SnapshotBlob, path: &Path) -> io::Result<()> {
        std::fs::rename(path, self.path())?;
        File::open(&self.dir)?.sync_all()?;
        blob.adopted();
        Ok(())
    }

    /// Rewrites a snapshot file of the first format (written by an earlier version) in the
    /// current one; run once at start, before the file is read.
    pub fn upgrade(&self) -> io::Result<()> {
        let mut magic = [0u8; 8];
        match File::open(self.path()) {
            Ok(mut f) => {
                if f.read_exact(&mut magic).is_err() || &magic != snapshot_format::MAGIC_V1 {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let (meta, records) = snapshot_format::read_v1(&std::fs::read(self.path())?)?;
        let mut new = self.writer(&meta)?;
        for (table, key, value) in &records {
            new.record(*table, key, value)?;
        }
        drop(records);
        let mut blob = new.finish()?;
        let path = blob
            .pending()
            .cloned()
            .ok_or_else(|| io::Error::other("new snapshot not pending"))?;
        let _writer = self.lock.lock();
        self.put_in_place(&mut blob, &path)?;
        tracing::info!("snapshot file rewritten in the current format");
        Ok(())
    }

    /// Whether the file holds a snapshot at least as new as `meta`.
    fn holds_as_new(&self, meta: &SnapshotMeta) -> bool {
        matches!(self.meta(), Ok(Some(current))
            if index_of(&current) >= index_of(meta) && current.last_log_id.is_some())
    }

    /// Removes temporary files a crash left behind.
    pub fn remove_leftovers(&self) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(NAME) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(self.dir.join(name.as_ref()));
            }
        }
        Ok(())
    }
}

/// A temporary file removed when dropped, unless released.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A snapshot being written by this member (see [`SnapshotFile::writer`]).
pub struct NewSnapshot {
    writer: Option<Writer<BufWriter<File>>>,
    path: TempFile,
}

impl NewSnapshot {
    pub fn record(&mut self, table: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.record(table, key, value),
            None => Err(io::Error::other("snapshot already finished")),
        }
    }

    /// Ends the snapshot and syncs it; it waits to be adopted (see [`SnapshotFile::adopt`]).
    pub fn finish(mut self) -> io::Result<SnapshotBlob> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| io::Error::other("snapshot already finished"))?;
        let file = writer.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let len = file.metadata()?.len();
        let path = self
            .path
            .0
            .take()
            .ok_or_else(|| io::Error::other("no path"))?;
        Ok(SnapshotBlob::pending_file(file, len, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::log_id;
    use std::io::Write;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(log_id::<crate::raft::TypeConfig>(1, 1, index)),
            ..Default::default()
        }
    }

    fn build(f: &SnapshotFile, index: u64, value: &[u8]) -> bool {
        let mut w = f.writer(&meta(index)).expect("writer");
        w.record(0, b"k", value).expect("record");
        let mut blob = w.finish().expect("finish");
        blob.verify().expect("checksum");
        f.adopt(&mut blob, &meta(index)).expect("adopt")
    }

    fn stored(f: &SnapshotFile) -> (u64, Vec<u8>) {
        let (m, blob) = f.open().expect("open").expect("some");
        let (inside, mut records) = blob.records().expect("records");
        assert_eq!(inside, m);
        let (_, _, v) = records.next().expect("one").expect("ok");
        assert!(records.next().is_none());
        (index_of(&m), v)
    }

    fn temp_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    }

    #[test]
    fn never_replaced_by_an_older_snapshot_and_checked_before_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = SnapshotFile::new(dir.path());
        assert!(f.open().expect("open").is_none());
        assert!(build(&f, 10, b"ten"));
        assert!(!build(&f, 5, b"five"), "older refused");
        assert!(!build(&f, 10, b"again"), "same refused");
        assert_eq!(stored(&f), (10, b"ten".to_vec()));
        assert!(build(&f, 20, b"twenty"));
        assert_eq!(f.meta().expect("meta").map(|m| index_of(&m)), Some(20));
        // A copy handed over in-process is adopted like a received one.
        let (_, blob) = f.open().expect("open").expect("some");
        let mut copy = f.copy_in(&blob).expect("copy");
        assert!(!f.adopt(&mut copy, &meta(20)).expect("adopt"));
        drop((blob, copy));
        // An unfinished build leaves nothing behind.
        drop(f.writer(&meta(30)).expect("writer"));
        assert_eq!(temp_files(dir.path()), 0);
        // A flipped byte is found before the snapshot is used.
        let path = dir.path().join(NAME);
        let mut bytes = std::fs::read(&path).expect("bytes");
        let at = bytes.len() - 6;
        bytes[at] ^= 1;
        std::fs::File::create(&path)
            .and_then(|mut out| out.write_all(&bytes))
            .expect("write");
        let (_, blob) = f.open().expect("open").expect("some");
        assert!(blob.verify().is_err());
        assert!(blob.records().is_err());
        // A file of the first format is rewritten in the current one.
        let records = vec![(2, b"old".to_vec(), b"format".to_vec())];
        std::fs::write(&path, snapshot_format::tests::v1_file(&meta(40), &records)).expect("v1");
        assert!(f.open().is_err(), "not readable before the upgrade");
        f.upgrade().expect("upgrade");
        f.upgrade().expect("a second upgrade does nothing");
        let (m, blob) = f.open().expect("open").expect("some");
        let (_, back) = blob.records().expect("records");
        assert_eq!(index_of(&m), 40);
        assert_eq!(back.collect::<io::Result<Vec<_>>>().expect("read"), records);
        // Leftovers of a crash are removed at start.
        std::fs::write(dir.path().join("snapshot.bin.1.2.recv.tmp"), b"x").expect("write");
        f.remove_leftovers().expect("remove");
        assert_eq!(temp_files(dir.path()), 0);
    }
}
