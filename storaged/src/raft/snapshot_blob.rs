//! A snapshot as openraft passes it around: an open file holding a snapshot's whole encoded
//! form (see [`super::snapshot_format`]), never a copy in memory. Senders stream it in
//! chunks from the open file (a newer snapshot renamed over it meanwhile does not disturb the
//! read); a receiver writes the chunks to a temporary file of its own, checks the checksum as
//! the bytes go by, and hands the file to the state machine, which adopts it in place.

use super::SnapshotMeta;
use super::snapshot_format::{self, Records};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// The largest chunk a sender puts in one message.
pub const CHUNK: usize = 4 << 20;

/// One snapshot's bytes on disk.
pub struct SnapshotBlob {
    file: File,
    len: u64,
    /// A received file not yet adopted as the member's snapshot: removed when dropped.
    pending: Option<PathBuf>,
}

impl SnapshotBlob {
    /// `file`, `len` bytes long, already in place (the member's own snapshot file).
    pub fn in_place(file: File, len: u64) -> Self {
        Self {
            file,
            len,
            pending: None,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The path of a received file that still waits to be adopted.
    pub(super) fn pending(&self) -> Option<&PathBuf> {
        self.pending.as_ref()
    }

    /// Marks a received file as moved into place (it is no longer removed on drop).
    pub(super) fn adopted(&mut self) {
        self.pending = None;
    }

    /// A received or newly built file not yet in place (removed when dropped, unless
    /// adopted).
    pub(super) fn pending_file(file: File, len: u64, path: PathBuf) -> Self {
        Self {
            file,
            len,
            pending: Some(path),
        }
    }

    /// Checks the checksum over every byte.
    pub fn verify(&self) -> io::Result<()> {
        snapshot_format::verify(BufReader::with_capacity(1 << 20, self.reader()?), self.len)
    }

    /// The meta and a reader of the records, after checking the checksum.
    pub fn records(&self) -> io::Result<(SnapshotMeta, Records<BufReader<io::Take<File>>>)> {
        self.verify()?;
        let mut r = BufReader::with_capacity(1 << 20, self.reader()?);
        let meta = snapshot_format::read_meta(&mut r)?;
        Ok((meta, Records::new(r)))
    }

    /// A reader of the bytes from the start, independent of other readers.
    pub fn reader(&self) -> io::Result<io::Take<File>> {
        let mut f = self.file.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        Ok(f.take(self.len))
    }
}

impl Drop for SnapshotBlob {
    fn drop(&mut self) {
        if let Some(path) = self.pending.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes a snapshot arriving in chunks to a temporary file and checks its checksum.
pub struct Receiver {
    file: File,
    path: PathBuf,
    expected: u64,
    written: u64,
    crc: crc32fast::Hasher,
    /// The last (up to) 4 bytes seen: the checksum once everything has arrived.
    tail: Vec<u8>,
    done: bool,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Receiver {
    /// A receiver for `expected` bytes written to `path` (created; must not exist).
    pub fn create(path: PathBuf, expected: u64) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self {
            file,
            path,
            expected,
            written: 0,
            crc: crc32fast::Hasher::new(),
            tail: Vec::with_capacity(8),
            done: false,
        })
    }

    /// Appends the next chunk; more bytes than announced are refused.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let after = self.written + chunk.len() as u64;
        if after > self.expected {
            return Err(invalid(format!(
                "snapshot longer than the announced {} bytes",
                self.expected
            )));
        }
        self.file.write_all(chunk)?;
        self.written = after;
        // Everything but the last 4 bytes goes into the checksum.
        if chunk.len() >= 4 {
            let (body, tail) = chunk.split_at(chunk.len() - 4);
            self.crc.update(&self.tail);
            self.crc.update(body);
            self.tail = tail.to_vec();
        } else {
            let mut seen = std::mem::take(&mut self.tail);
            seen.extend_from_slice(chunk);
            let keep = seen.len().saturating_sub(4);
            self.crc.update(&seen[..keep]);
            self.tail = seen[keep..].to_vec();
        }
        Ok(())
    }

    /// Checks length and checksum, syncs the file and returns it as a pending blob.
    pub fn finish(mut self) -> io::Result<SnapshotBlob> {
        if self.written != self.expected {
            return Err(invalid(format!(
                "snapshot ended after {} of {} bytes",
                self.written, self.expected
            )));
        }
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        if self.tail.as_slice() != crc.to_be_bytes() {
            return Err(invalid("snapshot checksum mismatch".to_string()));
        }
        self.file.sync_all()?;
        self.done = true;
        Ok(SnapshotBlob::pending_file(
            self.file.try_clone()?,
            self.written,
            self.path.clone(),
        ))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
        out
    }

    #[test]
    fn checks_the_checksum_over_any_chunking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = framed(&(0..1000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        for sizes in [
            vec![1],
            vec![3],
            vec![4],
            vec![5],
            vec![1003],
            vec![1004],
            vec![2, 999],
        ] {
            let path = dir.path().join(format!("ok-{sizes:?}"));
            let mut r = Receiver::create(path.clone(), bytes.len() as u64).expect("create");
            let mut at = 0;
            let mut i = 0;
            while at < bytes.len() {
                let n = sizes[i % sizes.len()].min(bytes.len() - at);
                r.write(&bytes[at..at + n]).expect("write");
                at += n;
                i += 1;
            }
            let blob = r.finish().expect("checksum holds");
            let mut back = Vec::new();
            blob.reader()
                .and_then(|mut r| r.read_to_end(&mut back))
                .expect("read");
            assert_eq!(back, bytes);
            drop(blob);
            assert!(!path.exists(), "a pending blob is removed when dropped");
        }
        // One flipped bit, a short and a long transfer are refused and leave nothing behind.
        let mut bad = bytes.clone();
        bad[500] ^= 1;
        let path = dir.path().join("bad");
        let mut r = Receiver::create(path.clone(), bad.len() as u64).expect("create");
        r.write(&bad).expect("write");
        assert!(r.finish().is_err());
        assert!(!path.exists());
        let mut r = Receiver::create(path.clone(), bytes.len() as u64).expect("create");
        r.write(&bytes[..10]).expect("write");
        assert!(r.finish().is_err());
        let mut r = Receiver::create(path.clone(), 10).expect("create");
        assert!(r.write(&bytes[..11]).is_err());
        drop(r);
        assert!(!path.exists());
    }
}
