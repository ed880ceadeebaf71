//! The `rocksdb` engine: one column family per table, every batch written with a synced WAL.

use super::{BatchOp, Engine, EngineError, EngineKind, ReadView, ScanVisitor, Table, WriteBatch};
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, Options, ReadOptions, WriteOptions};
use std::path::Path;

pub struct RocksEngine {
    db: DB,
}

fn backend(e: rocksdb::Error) -> EngineError {
    EngineError::Backend(e.into_string())
}

impl RocksEngine {
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = Table::ALL.iter().map(|t| t.name());
        let db = DB::open_cf(&opts, dir, cfs).map_err(backend)?;
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
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(backend)
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

    fn size_bytes(&self) -> u64 {
        Table::ALL
            .iter()
            .filter_map(|t| self.cf(*t).ok())
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }
}
