//! The encoded form of a snapshot, written and read as a stream so that no snapshot is ever
//! held whole in memory.
//!
//! Layout: magic, meta length (u32), meta (postcard), then one record per engine record —
//! table number (u8), key length (u32), key, value length (u32), value — then the end mark
//! (table number 255) and a CRC-32 of everything before it. All integers big-endian.

use super::{SnapshotMeta, codec};
use std::io::{self, Read, Write};

pub const MAGIC: &[u8; 8] = b"MSSNAP02";
/// The first format: meta, then the whole dump as one postcard value (read only to upgrade).
pub const MAGIC_V1: &[u8; 8] = b"MSSNAP01";
const END: u8 = 0xFF;
/// A meta (log id and membership) is far below this.
const MAX_META: u32 = 1 << 20;
/// No key or value of a store comes near this; a larger length means a corrupt file.
const MAX_FIELD: u32 = 256 << 20;

/// One engine record: `(table number, key, value)`.
pub type Record = (u8, Vec<u8>, Vec<u8>);

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Encodes a snapshot into `out` record by record.
pub struct Writer<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Writer<W> {
    /// Starts a snapshot of `meta`.
    pub fn new(out: W, meta: &SnapshotMeta) -> io::Result<Self> {
        let meta = codec::encode(meta)?;
        let mut w = Self {
            out,
            crc: crc32fast::Hasher::new(),
        };
        w.put(MAGIC)?;
        w.put(&(meta.len() as u32).to_be_bytes())?;
        w.put(&meta)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }

    pub fn record(&mut self, table: u8, key: &[u8], value: &[u8]) -> io::Result<()> {
        if table == END {
            return Err(invalid("snapshot: table number 255 is the end mark"));
        }
        self.put(&[table])?;
        self.put(&(field_len(key)?).to_be_bytes())?;
        self.put(key)?;
        self.put(&(field_len(value)?).to_be_bytes())?;
        self.put(value)
    }

    /// Writes the end mark and the checksum; returns the output, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[END])?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_be_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn field_len(bytes: &[u8]) -> io::Result<u32> {
    u32::try_from(bytes.len())
        .ok()
        .filter(|n| *n <= MAX_FIELD)
        .ok_or_else(|| invalid("snapshot: record field too large"))
}

/// Checks the checksum of the `len` encoded bytes `r` yields.
pub fn verify(mut r: impl Read, len: u64) -> io::Result<()> {
    let body = len
        .checked_sub(4)
        .ok_or_else(|| invalid("snapshot: too short"))?;
    let mut crc = crc32fast::Hasher::new();
    let mut left = body;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        r.read_exact(&mut buf[..n])?;
        crc.update(&buf[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; 4];
    r.read_exact(&mut stored)?;
    if crc.finalize() != u32::from_be_bytes(stored) {
        return Err(invalid("snapshot: checksum mismatch"));
    }
    Ok(())
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_field(r: &mut impl Read, max: u32) -> io::Result<Vec<u8>> {
    let len = read_u32(r)?;
    if len > max {
        return Err(invalid("snapshot: length beyond the limit"));
    }
    let mut out = vec![0u8; len as usize];
    r.read_exact(&mut out)?;
    Ok(out)
}

/// The meta at the head of an encoded snapshot (no checksum check).
pub fn read_meta(r: &mut impl Read) -> io::Result<SnapshotMeta> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid(
            "snapshot: not a snapshot of this format (bad magic)",
        ));
    }
    codec::decode(&read_field(r, MAX_META)?)
}

/// A snapshot of the first format (magic, meta length, meta, data length, the dump as one
/// postcard value, CRC-32), checksum verified, as its meta and records. It is read whole,
/// once, when a member that wrote it starts with this version.
pub fn read_v1(bytes: &[u8]) -> io::Result<(SnapshotMeta, Vec<Record>)> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| invalid("snapshot: too short"))?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return Err(invalid("snapshot: checksum mismatch"));
    }
    let mut r = body
        .strip_prefix(MAGIC_V1.as_slice())
        .ok_or_else(|| invalid("snapshot: not of the first format"))?;
    let meta = codec::decode(&read_field(&mut r, MAX_META)?)?;
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    if u64::from_be_bytes(len) != r.len() as u64 {
        return Err(invalid("snapshot: wrong data length"));
    }
    Ok((meta, codec::decode(r)?))
}

/// The records of an encoded snapshot whose head was read with [`read_meta`].
pub struct Records<R: Read> {
    r: R,
    done: bool,
}

impl<R: Read> Records<R> {
    pub fn new(r: R) -> Self {
        Self { r, done: false }
    }

    fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut table = [0u8; 1];
        self.r.read_exact(&mut table)?;
        if table[0] == END {
            return Ok(None);
        }
        let key = read_field(&mut self.r, MAX_FIELD)?;
        let value = read_field(&mut self.r, MAX_FIELD)?;
        Ok(Some((table[0], key, value)))
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_record();
        self.done = !matches!(next, Ok(Some(_)));
        next.transpose()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openraft::testing::log_id;

    fn encoded(records: &[Record]) -> (SnapshotMeta, Vec<u8>) {
        let meta = SnapshotMeta {
            last_log_id: Some(log_id::<crate::raft::TypeConfig>(2, 1, 77)),
            ..Default::default()
        };
        let mut w = Writer::new(Vec::new(), &meta).expect("head");
        for (t, k, v) in records {
            w.record(*t, k, v).expect("record");
        }
        (meta, w.finish().expect("finish"))
    }

    #[test]
    fn first_format_is_read() {
        let meta = SnapshotMeta {
            last_log_id: Some(log_id::<crate::raft::TypeConfig>(2, 1, 9)),
            ..Default::default()
        };
        let records: Vec<Record> = vec![(0, b"k".to_vec(), b"v".to_vec()), (3, vec![], vec![1])];
        let file = v1_file(&meta, &records);
        assert_eq!(read_v1(&file).expect("v1"), (meta, records));
        let mut bad = file.clone();
        bad[14] ^= 1;
        assert!(read_v1(&bad).is_err());
    }

    /// A file of the first format, as the previous version wrote it.
    pub(crate) fn v1_file(meta: &SnapshotMeta, records: &[Record]) -> Vec<u8> {
        let meta = codec::encode(meta).expect("meta");
        let data = codec::encode(&records.to_vec()).expect("data");
        let mut out = MAGIC_V1.to_vec();
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&(data.len() as u64).to_be_bytes());
        out.extend_from_slice(&data);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn round_trip_and_corruption() {
        let records: Vec<Record> = (0..50u8)
            .map(|i| (i % 5, vec![i; i as usize], vec![i ^ 0x5a; 3 * i as usize]))
            .chain([(1, Vec::new(), Vec::new())])
            .collect();
        let (meta, bytes) = encoded(&records);
        verify(bytes.as_slice(), bytes.len() as u64).expect("checksum");
        let mut r = bytes.as_slice();
        assert_eq!(read_meta(&mut r).expect("meta"), meta);
        let back: Vec<Record> = Records::new(r).collect::<io::Result<_>>().expect("records");
        assert_eq!(back, records);
        // Any flipped byte is found by the checksum.
        for at in [0, 9, 20, bytes.len() / 2, bytes.len() - 5, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(
                verify(bad.as_slice(), bad.len() as u64).is_err(),
                "byte {at}"
            );
        }
        // A cut file is found too, and a record stream cut short is an error, not an end.
        assert!(verify(&bytes[..bytes.len() - 1], bytes.len() as u64 - 1).is_err());
        let mut cut = &bytes[..bytes.len() - 40];
        read_meta(&mut cut).expect("meta");
        assert!(Records::new(cut).any(|r| r.is_err()));
        // An empty snapshot has no records.
        let (_, empty) = encoded(&[]);
        let mut r = empty.as_slice();
        read_meta(&mut r).expect("meta");
        assert_eq!(Records::new(r).count(), 0);
    }
}
