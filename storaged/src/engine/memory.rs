//! The `memory` engine: one ordered map per table, guarded by a lock.
//!
//! Data lives only in RAM. Durability for this engine comes from the raft log and snapshot
//! files once replication lands; until then a restart starts empty (docs/limitations.md).

use super::{BatchOp, Engine, EngineError, EngineKind, ReadView, ScanVisitor, Table, WriteBatch};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
pub struct MemoryEngine {
    tables: RwLock<[Map; Table::ALL.len()]>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

fn scan_map(map: &Map, start: &[u8], end: Option<&[u8]>, visit: &mut ScanVisitor<'_>) {
    let upper = match end {
        Some(end) if end <= start => return,
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    for (k, v) in map.range::<[u8], _>((Bound::Included(start), upper)) {
        if !visit(k, v) {
            break;
        }
    }
}

struct Tables<'a>(&'a [Map; Table::ALL.len()]);

impl ReadView for Tables<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.0[table.index()].get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), EngineError> {
        scan_map(&self.0[table.index()], start, end, visit);
        Ok(())
    }
}

impl ReadView for MemoryEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Tables(&self.tables.read()).get(table, key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<(), EngineError> {
        Tables(&self.tables.read()).scan(table, start, end, visit)
    }
}

impl Engine for MemoryEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Memory
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let mut tables = self.tables.write();
        for op in batch.into_ops() {
            match op {
                BatchOp::Put(t, k, v) => {
                    tables[t.index()].insert(k, v);
                }
                BatchOp::Delete(t, k) => {
                    tables[t.index()].remove(&k);
                }
            }
        }
        Ok(())
    }

    fn with_snapshot(
        &self,
        f: &mut dyn FnMut(&dyn ReadView) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        // Holding the read lock for the duration keeps the view fixed.
        let guard = self.tables.read();
        f(&Tables(&guard))
    }

    fn size_bytes(&self) -> u64 {
        let tables = self.tables.read();
        tables
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}
