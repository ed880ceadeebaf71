//! Storage engines: ordered key-value backends with atomic write batches and consistent
//! read snapshots.
//!
//! The MVCC layer sees only the small traits here ([`ReadView`], [`Engine`]); the concrete
//! engines live in `memory` and `rocks`, and [`open`] is the only place that names them.

mod log;
mod memory;
mod open;
mod rocks;

#[cfg(test)]
mod conformance;

use std::path::PathBuf;

pub use log::LogBackend;
pub use open::{EngineKind, Opened, RocksTuning, open, open_tuned};

/// Separate keyspaces inside one engine. Each engine maps them to its own structure
/// (a map per table in memory, a column family in RocksDB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// MVCC revisions: `revision key -> encoded KeyValue`.
    Key,
    /// Store metadata: applied index, current and compacted revisions.
    Meta,
    /// Leases: `id -> granted TTL`.
    Lease,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Key, Table::Meta, Table::Lease];

    pub fn name(self) -> &'static str {
        match self {
            Table::Key => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
        }
    }

    fn index(self) -> usize {
        match self {
            Table::Key => 0,
            Table::Meta => 1,
            Table::Lease => 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("engine failure: {0}")]
    Backend(String),
}

/// One change inside a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
}

/// Changes applied all together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put(table, key.into(), value.into()));
    }

    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete(table, key.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }
}

/// Visitor for [`ReadView::scan`]: return `false` to stop early.
pub type ScanVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// Point reads and ordered scans.
pub trait ReadView {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Visits `[start, end)` in ascending key order; `end = None` means to the end of the table.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), EngineError>;
}

/// A storage engine: reads, atomic durable batches, and point-in-time snapshots.
pub trait Engine: ReadView + Send + Sync + 'static {
    fn kind(&self) -> EngineKind;

    /// Applies every op of `batch` atomically. When it returns `Ok`, the batch survives a
    /// crash of the process (not necessarily of the machine: the raft log is the durability
    /// point, and entries whose effects are lost are applied again from it).
    fn write(&self, batch: WriteBatch) -> Result<(), EngineError>;

    /// Runs `f` against a consistent view that later writes do not change.
    fn with_snapshot(
        &self,
        f: &mut dyn FnMut(&dyn ReadView) -> Result<(), EngineError>,
    ) -> Result<(), EngineError>;

    /// Approximate bytes on disk (or in memory) used by the data.
    fn size_bytes(&self) -> u64;

    /// Gives back space that deleted and overwritten records still take (etcd's
    /// defragmentation). Reads and writes go on meanwhile.
    fn defragment(&self) -> Result<(), EngineError>;
}
