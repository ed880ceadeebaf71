//! The one constructor that knows the concrete engines.

use super::log::{LogBackend, RedbLog};
use super::memory::MemoryEngine;
use super::rocks::RocksEngine;
pub use super::rocks::RocksTuning;
use super::{Engine, EngineError};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Memory,
    Rocksdb,
}

impl EngineKind {
    pub const NAMES: &'static str = "memory, rocksdb";

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Memory => "memory",
            EngineKind::Rocksdb => "rocksdb",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "memory" => Ok(EngineKind::Memory),
            "rocksdb" => Ok(EngineKind::Rocksdb),
            other => Err(format!(
                "unknown engine {other:?} (expected one of: {})",
                EngineKind::NAMES
            )),
        }
    }
}

/// An opened engine and the raft log that lives with it.
pub struct Opened {
    pub engine: Arc<dyn Engine>,
    pub log: Arc<dyn LogBackend>,
}

/// Opens (creating if needed) the engine of `kind` whose files live in `dir`, with its raft
/// log: inside the same RocksDB instance, or a redb file for the memory engine.
pub fn open(kind: EngineKind, dir: &Path) -> Result<Opened, EngineError> {
    open_tuned(kind, dir, &RocksTuning::default())
}

/// Like [`open`], with RocksDB settings (the memory engine has none).
pub fn open_tuned(
    kind: EngineKind,
    dir: &Path,
    tuning: &RocksTuning,
) -> Result<Opened, EngineError> {
    std::fs::create_dir_all(dir).map_err(|source| EngineError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    // Probe writability up front so a bad directory fails at start, not at the first write.
    let probe = dir.join(".metastore-probe");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|source| EngineError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
    Ok(match kind {
        EngineKind::Memory => {
            let log = RedbLog::open(&dir.join("raft-log.redb")).map_err(|source| {
                EngineError::DataDir {
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
            Opened {
                engine: Arc::new(MemoryEngine::new()),
                log: Arc::new(log),
            }
        }
        EngineKind::Rocksdb => {
            let rocks = Arc::new(RocksEngine::open(dir, tuning)?);
            Opened {
                engine: rocks.clone(),
                log: rocks,
            }
        }
    })
}
