//! `snapshot status`: what etcd reports about a snapshot file (MetaStore's or etcd's own) —
//! the CRC-32C (Castagnoli) of every bucket name, key and value in order, the revision of the
//! last record in the `key` bucket, the number of records and the database's size.

use super::bolt::Reader;
use crate::mvcc::{Crc32c, Revision};
use std::io;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// Reads the snapshot database at `path` (without the SHA-256 trailer, as `etcdctl snapshot
/// save` leaves it: bbolt ignores what follows its last page).
pub fn status(path: &Path) -> io::Result<SnapshotStatus> {
    let db = Reader::open(path)?;
    let mut crc = Crc32c::default();
    let mut revision = 0;
    let mut total_keys = 0;
    for name in db.bucket_names()? {
        crc.update(&name);
        let is_key = name == b"key";
        db.for_each(&name, &mut |k, v| {
            crc.update(k);
            crc.update(v);
            if is_key && let Some((rev, _)) = Revision::from_etcd_key(k) {
                revision = rev.main;
            }
            total_keys += 1;
            Ok(())
        })?;
    }
    Ok(SnapshotStatus {
        hash: crc.finish(),
        revision,
        total_keys,
        total_size: db.size(),
    })
}

/// A byte count as etcdctl prints it (go-humanize's SI form: `2.1 MB`, `20 kB`, `7 B`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

impl SnapshotStatus {
    /// etcdctl's output formats: `simple` (default), `table`, `json`, `fields`.
    pub fn render(&self, format: &str) -> Result<String, String> {
        let size = human_bytes(self.total_size);
        let hash = format!("{:x}", self.hash);
        Ok(match format {
            "simple" => format!("{hash}, {}, {}, {size}\n", self.revision, self.total_keys),
            "json" => format!(
                "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
                self.hash, self.revision, self.total_keys, self.total_size
            ),
            "fields" => format!(
                "\"Hash\" : {}\n\"Revision\" : {}\n\"Keys\" : {}\n\"Size\" : {}\n",
                self.hash, self.revision, self.total_keys, self.total_size
            ),
            "table" => {
                let cells = [
                    hash,
                    self.revision.to_string(),
                    self.total_keys.to_string(),
                    size,
                ];
                let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
                let widths: Vec<usize> = heads
                    .iter()
                    .zip(&cells)
                    .map(|(h, c)| h.len().max(c.len()) + 2)
                    .collect();
                let line: String = widths
                    .iter()
                    .map(|w| format!("+{}", "-".repeat(*w)))
                    .collect();
                let center = |s: &str, w: usize| {
                    let pad = w - s.len();
                    format!("{}{s}{}", " ".repeat(pad / 2), " ".repeat(pad - pad / 2))
                };
                let head: String = heads
                    .iter()
                    .zip(&widths)
                    .map(|(h, w)| format!("|{}", center(h, *w)))
                    .collect();
                // Every cell right-aligned, as etcdctl sets its table writer.
                let row: String = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("|{c:>width$} ", width = w - 1))
                    .collect();
                format!("{line}+\n{head}|\n{line}+\n{row}|\n{line}+\n")
            }
            other => return Err(format!("unknown output format {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_etcdctl_prints_them() {
        assert_eq!(human_bytes(7), "7 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(2_105_344), "2.1 MB");
        assert_eq!(human_bytes(16384), "16 kB");
        assert_eq!(human_bytes(1_000_000_000), "1.0 GB");
    }
}
