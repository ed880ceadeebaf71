//! The raft log on an engine's [`LogBackend`].
//!
//! Appends are written at once (so they can be read back) and made durable by a sync on a
//! blocking thread before openraft is told they are flushed. Appends that arrive while a sync
//! runs are covered by the next one, so many proposals share one fsync (group commit).

use super::failpoints::EntryDelay;
use super::{LogId, TypeConfig, codec};
use crate::engine::LogBackend;
use openraft::OptionalSend;
use openraft::alias::VoteOf;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use parking_lot::Mutex;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

#[derive(Clone)]
pub struct LogStore {
    backend: Arc<dyn LogBackend>,
    syncer: Arc<Syncer>,
    slow_leader_sync: Option<EntryDelay>,
}

/// Group commit: appends are numbered; a sync makes every append made before it durable, so
/// a waiter whose append is already covered by a finished sync returns without an fsync of
/// its own, and waiters that queue behind a running sync share the next one.
struct Syncer {
    appended: AtomicU64,
    synced: Mutex<u64>,
}

impl Syncer {
    fn sync_upto(&self, backend: &dyn LogBackend, seq: u64) -> io::Result<()> {
        let mut synced = self.synced.lock();
        if *synced >= seq {
            return Ok(());
        }
        let target = self.appended.load(Ordering::Acquire);
        let started = std::time::Instant::now();
        backend.sync()?;
        crate::metrics::wal_fsynced(started.elapsed());
        *synced = target;
        Ok(())
    }
}

impl LogStore {
    pub fn new(backend: Arc<dyn LogBackend>) -> Self {
        Self {
            backend,
            syncer: Arc::new(Syncer {
                appended: AtomicU64::new(0),
                synced: Mutex::new(0),
            }),
            slow_leader_sync: None,
        }
    }

    /// Arms the failpoints named in the environment for member `member_id`.
    pub fn with_failpoints(mut self, member_id: u64) -> Self {
        self.slow_leader_sync = EntryDelay::leader_sync(member_id);
        self
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        self.backend
            .get_meta(key)?
            .map(|b| codec::decode(&b))
            .transpose()
    }

    /// True when nothing was ever stored: no vote and no entry (a fresh member).
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.backend.get_meta(VOTE)?.is_none() && self.backend.last()?.is_none())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<super::Entry>, io::Error> {
        let from = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(x) => x.saturating_add(1),
            Bound::Excluded(x) => *x,
            Bound::Unbounded => u64::MAX,
        };
        // Reads hit the page cache (recent entries, for replication and apply): cheaper inline
        // than a hop to the blocking pool.
        let raw = self.backend.read(from, to)?;
        raw.iter().map(|b| codec::decode(b)).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.meta(LAST_PURGED)?;
        let last = match self.backend.last()? {
            Some(bytes) => Some(codec::decode::<super::Entry>(&bytes)?.log_id()),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let bytes = codec::encode(vote)?;
        let backend = self.backend.clone();
        blocking(move || backend.put_meta(VOTE, &bytes, true)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Only a hint for faster recovery: losing it is harmless, so no fsync of its own.
        self.backend
            .put_meta(COMMITTED, &codec::encode(&committed)?, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = super::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        let mut own = false;
        for entry in entries {
            let leader = entry.log_id().committed_leader_id().node_id;
            own |= self.slow_leader_sync.is_some_and(|f| f.applies(leader));
            batch.push((entry.index(), codec::encode(&entry)?));
        }
        self.backend.append(batch)?;
        let seq = self.syncer.appended.fetch_add(1, Ordering::AcqRel) + 1;
        let backend = self.backend.clone();
        let syncer = self.syncer.clone();
        let delay = self.slow_leader_sync.filter(|_| own).map(|f| f.delay);
        tokio::task::spawn_blocking(move || {
            if let Some(delay) = delay {
                std::thread::sleep(delay);
            }
            callback.io_completed(syncer.sync_upto(backend.as_ref(), seq))
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.backend.remove(from, u64::MAX)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.backend
            .put_meta(LAST_PURGED, &codec::encode(&log_id)?, true)?;
        self.backend.remove(0, log_id.index() + 1)
    }
}
