//! Durable storage for the raft log: an ordered map `index -> entry` plus a few metadata
//! values (vote, last purged id, committed id). The `rocksdb` engine keeps it in its own
//! instance; the `memory` engine keeps it in a redb file beside its snapshots.

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::io;
use std::path::Path;

/// Raw log storage; entries are opaque bytes keyed by log index.
pub trait LogBackend: Send + Sync + 'static {
    /// Entries with index in `[from, to)`, in index order.
    fn read(&self, from: u64, to: u64) -> io::Result<Vec<Vec<u8>>>;
    /// The entry with the highest index.
    fn last(&self) -> io::Result<Option<Vec<u8>>>;
    /// Stores `entries`: readable when this returns, durable after the next [`Self::sync`].
    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> io::Result<()>;
    /// Makes everything appended so far durable. Concurrent calls share one fsync.
    fn sync(&self) -> io::Result<()>;
    /// Removes entries with index in `[from, to)`.
    fn remove(&self, from: u64, to: u64) -> io::Result<()>;
    fn get_meta(&self, key: &str) -> io::Result<Option<Vec<u8>>>;
    /// Stores a metadata value; when `durable`, it is on disk before this returns.
    fn put_meta(&self, key: &str, value: &[u8], durable: bool) -> io::Result<()>;
}

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// A redb file holding the log.
pub struct RedbLog {
    db: Database,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RedbLog {
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = Database::create(path).map_err(io_err)?;
        let txn = db.begin_write().map_err(io_err)?;
        txn.open_table(LOG).map_err(io_err)?;
        txn.open_table(META).map_err(io_err)?;
        txn.commit().map_err(io_err)?;
        Ok(Self { db })
    }

    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> io::Result<()> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(durability).map_err(io_err)?;
        f(&txn).map_err(io_err)?;
        txn.commit().map_err(io_err)
    }
}

impl LogBackend for RedbLog {
    fn read(&self, from: u64, to: u64) -> io::Result<Vec<Vec<u8>>> {
        if to <= from {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        table
            .range(from..to)
            .map_err(io_err)?
            .map(|item| item.map(|(_, v)| v.value().to_vec()).map_err(io_err))
            .collect()
    }

    fn last(&self) -> io::Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(LOG).map_err(io_err)?;
        Ok(table
            .last()
            .map_err(io_err)?
            .map(|(_, v)| v.value().to_vec()))
    }

    fn append(&self, entries: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        self.write(Durability::None, |txn| {
            let mut table = txn.open_table(LOG)?;
            for (index, bytes) in &entries {
                table.insert(index, bytes.as_slice())?;
            }
            Ok(())
        })
    }

    fn sync(&self) -> io::Result<()> {
        // An immediate commit persists every earlier non-durable commit with it.
        self.write(Durability::Immediate, |_| Ok(()))
    }

    fn remove(&self, from: u64, to: u64) -> io::Result<()> {
        if to <= from {
            return Ok(());
        }
        self.write(Durability::None, |txn| {
            let mut table = txn.open_table(LOG)?;
            table.retain_in(from..to, |_, _| false)?;
            Ok(())
        })
    }

    fn get_meta(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(META).map_err(io_err)?;
        Ok(table.get(key).map_err(io_err)?.map(|v| v.value().to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8], durable: bool) -> io::Result<()> {
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.write(durability, |txn| {
            txn.open_table(META)?.insert(key, value)?;
            Ok(())
        })
    }
}
