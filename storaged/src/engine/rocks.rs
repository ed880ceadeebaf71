//! The `rocksdb` engine: one column family per table, plus two for the raft log and its
//! metadata, all in one RocksDB instance sharing one write-ahead log.
//!
//! Table batches are written without their own fsync: the raft log is the durability point.
//! Log appends are synced (grouped: one WAL fsync covers every append before it), and because
//! the WAL is sequential that fsync also covers every table write made before it. A table write
//! lost to a power failure is re-applied from the log on restart.

use super::log::LogBackend;
use super::{BatchOp, Engine, EngineError, EngineKind, ReadView, ScanVisitor, Table, WriteBatch};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    Direction, IteratorMode, Options, ReadOptions,
};
use std::io;
use std::path::Path;

pub struct RocksEngine {
    db: DB,
}

const LOG_CF: &str = "raft_log";
const LOG_META_CF: &str = "raft_meta";

fn backend(e: rocksdb::Error) -> EngineError {
    EngineError::Backend(e.into_string())
}

/// RocksDB settings, applied to every column family (tables and raft log alike).
#[derive(Clone, Debug, PartialEq)]
pub struct RocksTuning {
    /// Block compression: `lz4`, `zstd` or `none`.
    pub compression: String,
    /// One LRU block cache shared by every column family.
    pub block_cache_bytes: usize,
    /// Bloom filter bits per key on the tables (point reads skip files); 0 turns it off.
    pub bloom_bits_per_key: f64,
    /// Memtable size of each column family.
    pub write_buffer_bytes: usize,
}

impl Default for RocksTuning {
    fn default() -> Self {
        RocksTuning {
            compression: "lz4".into(),
            block_cache_bytes: 64 << 20,
            bloom_bits_per_key: 10.0,
            write_buffer_bytes: 64 << 20,
        }
    }
}

impl RocksTuning {
    /// The compression named by `name`.
    pub fn compression_type(name: &str) -> Result<DBCompressionType, String> {
        match name {
            "lz4" => Ok(DBCompressionType::Lz4),
            "zstd" => Ok(DBCompressionType::Zstd),
            "none" => Ok(DBCompressionType::None),
            other => Err(format!(
                "--rocksdb-compression {other:?}: expected lz4, zstd or none"
            )),
        }
    }

    fn cf_options(&self, cache: &Cache, bloom: bool) -> Result<Options, EngineError> {
        let mut o = Options::default();
        o.set_compression_type(
            Self::compression_type(&self.compression).map_err(EngineError::Backend)?,
        );
        o.set_write_buffer_size(self.write_buffer_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(cache);
        if bloom && self.bloom_bits_per_key > 0.0 {
            table.set_bloom_filter(self.bloom_bits_per_key, false);
        }
        o.set_block_based_table_factory(&table);
        Ok(o)
    }
}

impl RocksEngine {
    pub fn open(dir: &Path, tuning: &RocksTuning) -> Result<Self, EngineError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // One memtable budget for all column families together (twice one family's buffer):
        // without it each of the five families may hold two full buffers, and the raft log's
        // family, written on every entry, always does.
        opts.set_db_write_buffer_size(tuning.write_buffer_bytes.saturating_mul(2));
        let cache = Cache::new_lru_cache(tuning.block_cache_bytes);
        // Every column family gets the settings: the tables (bloom filters for point reads)
        // and the raft log (read in order, no filter).
        let mut cfs = Vec::new();
        for t in Table::ALL {
            cfs.push(ColumnFamilyDescriptor::new(
                t.name(),
                tuning.cf_options(&cache, true)?,
            ));
        }
        for name in [LOG_CF, LOG_META_CF] {
            cfs.push(ColumnFamilyDescriptor::new(
                name,
                tuning.cf_options(&cache, false)?,
            ));
        }
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(backend)?;
        Ok(Self { db })
    }

    fn cf(&self, table: Table) -> Result<&ColumnFamily, EngineError> {
        self.db
            .cf_handle(table.name())
            .ok_or_else(|| EngineError::Backend(format!("missing column family {}", table.name())))
    }

    fn scan_with(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
        snapshot: Option<&rocksdb::Snapshot<'_>>,
    ) -> Result<(), EngineError> {
        if matches!(end, Some(end) if end <= start) {
            return Ok(());
        }
        let mut ro = ReadOptions::default();
        if let Some(end) = end {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        if let Some(s) = snapshot {
            ro.set_snapshot(s);
        }
        let iter = self.db.iterator_cf_opt(
            self.cf(table)?,
            ro,
            IteratorMode::From(start, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(backend)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }
}

impl ReadView for RocksEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.db.get_cf(self.cf(table)?, key).map_err(backend)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), EngineError> {
        self.scan_with(table, start, end, visit, None)
    }
}

struct SnapshotView<'a> {
    engine: &'a RocksEngine,
    snapshot: rocksdb::Snapshot<'a>,
}

impl ReadView for SnapshotView<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snapshot);
        self.engine
            .db
            .get_cf_opt(self.engine.cf(table)?, key, &ro)
            .map_err(backend)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), EngineError> {
        self.engine
            .scan_with(table, start, end, visit, Some(&self.snapshot))
    }
}

impl Engine for RocksEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Rocksdb
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.into_ops() {
            match op {
                BatchOp::Put(t, k, v) => wb.put_cf(self.cf(t)?, k, v),
                BatchOp::Delete(t, k) => wb.delete_cf(self.cf(t)?, k),
            }
        }
        self.db.write(wb).map_err(backend)
    }

    fn with_snapshot(
        &self,
        f: &mut dyn FnMut(&dyn ReadView) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let view = SnapshotView {
            engine: self,
            snapshot: self.db.snapshot(),
        };
        f(&view)
    }

    /// Table files plus what is still in memtables (so a fresh store does not report 0).
    fn size_bytes(&self) -> u64 {
        let property = |cf: &ColumnFamily, name: &str| {
            self.db
                .property_int_value_cf(cf, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        Table::ALL
            .iter()
            .filter_map(|t| self.cf(*t).ok())
            .map(|cf| {
                property(cf, "rocksdb.total-sst-files-size")
                    + property(cf, "rocksdb.cur-size-all-mem-tables")
            })
            .sum()
    }

    /// Flushes and fully compacts every column family, the raft log's included: deleted and
    /// overwritten records are dropped and their space returned. RocksDB compacts in the
    /// background of reads and writes, which go on.
    fn defragment(&self) -> Result<(), EngineError> {
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        let names = Table::ALL
            .iter()
            .map(|t| t.name())
            .chain([LOG_CF, LOG_META_CF]);
        for name in names {
            let cf = self
                .db
                .cf_handle(name)
                .ok_or_else(|| EngineError::Backend(format!("missing column family {name}")))?;
            self.db.flush_cf(cf).map_err(backend)?;
            self.db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &options);
        }
        Ok(())
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RocksEngine {
    fn named_cf(&self, name: &str) -> io::Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| io_err(format!("missing column family {name}")))
    }
}

impl LogBackend for RocksEngine {
    fn read(&self, from: u64, to: u64) -> io::Result<Vec<Vec<u8>>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(to.to_be_bytes().to_vec());
        let start = from.to_be_bytes();
        let iter = self.db.iterator_cf_opt(
            self.named_cf(LOG_CF)?,
            ro,
            IteratorMode::From(&start, Direction::Forward),
        );
        iter.map(|item| item.map(|(_, v)| v.to_vec()).map_err(io_err))
            .collect()
    }

    fn last(&self) -> io::Result<Option<Vec<u8>>> {
        match self
            .db
            .iterator_cf(self.named_cf(LOG_CF)?, IteratorMode::End)
            .next()
        {
            Some(item) => Ok(Some(item.map_err(io_err)?.1.to_vec())),
            None => Ok(None),
        }
    }

    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        let cf = self.named_cf(LOG_CF)?;
        let mut wb = rocksdb::WriteBatch::default();
        for (index, bytes) in entries {
            wb.put_cf(cf, index.to_be_bytes(), bytes);
        }
        self.db.write(wb).map_err(io_err)
    }

    fn sync(&self) -> io::Result<()> {
        self.db.flush_wal(true).map_err(io_err)
    }

    fn remove(&self, from: u64, to: u64) -> io::Result<()> {
        self.db
            .delete_range_cf(self.named_cf(LOG_CF)?, from.to_be_bytes(), to.to_be_bytes())
            .map_err(io_err)
    }

    fn get_meta(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.named_cf(LOG_META_CF)?, key)
            .map_err(io_err)
    }

    fn put_meta(&self, key: &str, value: &[u8], durable: bool) -> io::Result<()> {
        self.db
            .put_cf(self.named_cf(LOG_META_CF)?, key, value)
            .map_err(io_err)?;
        if durable { self.sync() } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes on disk of 2,000 compressible 1 KiB values written with `compression`, after a
    /// full compaction.
    fn size_with(compression: &str) -> u64 {
        let dir = tempfile::tempdir().expect("dir");
        let tuning = RocksTuning {
            compression: compression.into(),
            ..RocksTuning::default()
        };
        let engine = RocksEngine::open(dir.path(), &tuning).expect("open");
        let value = "{\"kind\":\"Object\",\"spec\":{\"replicas\":3}} ".repeat(25);
        let mut batch = WriteBatch::default();
        for i in 0..2_000 {
            batch.put(Table::Key, format!("key/{i:06}"), value.clone());
        }
        engine.write(batch).expect("write");
        engine.defragment().expect("compact");
        engine.size_bytes()
    }

    #[test]
    fn the_compression_setting_reaches_the_data_column_families() {
        let (none, zstd) = (size_with("none"), size_with("zstd"));
        assert!(
            zstd * 4 < none,
            "zstd {zstd} bytes vs none {none}: the data column family was not compressed"
        );
    }
}
