//! The `memory` engine: one ordered map per table, guarded by a lock.
//!
//! Data lives only in RAM; durability comes from the raft log (redb) and the snapshot file,
//! from which a restarted member rebuilds it. The byte count is kept as a counter, so asking
//! for the size costs nothing.
//!
//! The maps are persistent (copy-on-write) B-trees of shared byte strings: a snapshot view is
//! a copy of the three roots, taken in constant time whatever the store's size, and a write
//! made while a view is held copies only the tree nodes on its path (their keys and values are
//! reference-counted, not copied). A raft snapshot of a large store therefore neither stops
//! writes nor doubles the memory.

use super::{BatchOp, Engine, EngineError, EngineKind, ReadView, ScanVisitor, Table, WriteBatch};
use bytes::Bytes;
use parking_lot::RwLock;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

type Map = imbl::OrdMap<Bytes, Bytes>;

#[derive(Default)]
pub struct MemoryEngine {
    tables: RwLock<[Map; Table::ALL.len()]>,
    /// Sum of key and value lengths over every table, kept by `write`.
    bytes: AtomicU64,
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
    for (k, v) in map.range::<_, [u8]>((Bound::Included(start), upper)) {
        if !visit(k, v) {
            break;
        }
    }
}

struct Tables<'a>(&'a [Map; Table::ALL.len()]);

impl ReadView for Tables<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.0[table.index()].get(key).map(|v| v.to_vec()))
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
        let (mut added, mut removed) = (0u64, 0u64);
        for op in batch.into_ops() {
            match op {
                BatchOp::Put(t, k, v) => {
                    added += (k.len() + v.len()) as u64;
                    let klen = k.len() as u64;
                    if let Some(old) = tables[t.index()].insert(k.into(), v.into()) {
                        removed += klen + old.len() as u64;
                    }
                }
                BatchOp::Delete(t, k) => {
                    if let Some(old) = tables[t.index()].remove(k.as_slice()) {
                        removed += (k.len() + old.len()) as u64;
                    }
                }
            }
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(removed, Ordering::Relaxed);
        Ok(())
    }

    fn with_snapshot(
        &self,
        f: &mut dyn FnMut(&dyn ReadView) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        // The roots, shared under the read lock (constant time): writes never wait for
        // whatever `f` does with the view (a snapshot dump, a hash).
        let copy = self.tables.read().clone();
        f(&Tables(&copy))
    }

    fn size_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Nothing to give back: the maps hold live records only, and a removed record's memory
    /// is freed when it goes. (The engine's files, the snapshot and the raft log, are
    /// rewritten and purged by raft as it goes.)
    fn defragment(&self) -> Result<(), EngineError> {
        Ok(())
    }
}
