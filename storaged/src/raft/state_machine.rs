//! The raft state machine: committed entries applied to the MVCC store, and snapshots of it.
//!
//! The applied log id and membership are stored in the store's own batches (opaque bytes in
//! its metadata), so data and applied position never disagree after a crash. Snapshots are
//! a dump of every table, kept in one file (`snapshot.bin`) in the data dir; the memory engine
//! starts from that file and replays the log after it.

use super::{LogId, Reply, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, codec};
use crate::mvcc::{self, MvccError, Store, TableDump};
use crate::state_machine::StateMachine;
use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Applied position as stored with the data.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// The snapshot file: its meta and the table dump.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

pub struct StateMachineStore {
    store: Arc<Store>,
    machine: StateMachine,
    applied: AppliedState,
    dir: PathBuf,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn read_applied(store: &Store) -> io::Result<AppliedState> {
    match store.raft_state().map_err(io_err)? {
        Some(bytes) => codec::decode(&bytes),
        None => Ok(AppliedState::default()),
    }
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.bin")
}

fn read_snapshot_file(dir: &Path) -> io::Result<Option<SnapshotFile>> {
    match std::fs::read(snapshot_path(dir)) {
        Ok(bytes) => Ok(Some(codec::decode(&bytes)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the snapshot file atomically: a temporary file, fsynced, renamed over the old one.
fn write_snapshot_file(dir: &Path, file: &SnapshotFile) -> io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("snapshot.bin.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&codec::encode(file)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, snapshot_path(dir))?;
    std::fs::File::open(dir)?.sync_all()
}

fn install_records(store: &Store, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
    let mut records: TableDump = codec::decode(data)?;
    let applied = AppliedState {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
    };
    // The dump carries the applied state it was taken at; make it exactly the meta's.
    mvcc::set_raft_state_in(&mut records, codec::encode(&applied)?);
    store.replace(records).map_err(io_err)
}

impl StateMachineStore {
    /// Opens the state machine on `store`. If the snapshot file is ahead of the store (always
    /// so for the memory engine after a restart), the store is loaded from it first.
    pub fn open(store: Arc<Store>, dir: &Path) -> io::Result<Self> {
        let mut applied = read_applied(&store)?;
        if let Some(file) = read_snapshot_file(dir)? {
            let ahead = match (&file.meta.last_log_id, &applied.last_applied) {
                (Some(snap), Some(have)) => snap.index() > have.index(),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if ahead {
                install_records(&store, &file.meta, &file.data)?;
                applied = read_applied(&store)?;
            }
        }
        Ok(Self {
            machine: StateMachine::new(store.clone()),
            store,
            applied,
            dir: dir.to_path_buf(),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn apply_one(&mut self, entry: super::Entry) -> io::Result<Reply> {
        let log_id = entry.log_id();
        let mut next = self.applied.clone();
        next.last_applied = Some(log_id);
        let cmd = match entry.payload {
            EntryPayload::Normal(cmd) => Some(cmd),
            EntryPayload::Membership(m) => {
                next.membership = StoredMembership::new(Some(log_id), m);
                None
            }
            EntryPayload::Blank => None,
        };
        let state = Some(codec::encode(&next)?);
        let outcome = match cmd {
            Some(cmd) => self.machine.apply_marked(log_id.index(), state, &cmd),
            None => self
                .store
                .write_marked(log_id.index(), state, |_| Ok(()))
                .map(|()| Err(MvccError::InvalidRequest("not a command".into()))),
        };
        match outcome {
            Ok(result) => {
                self.applied = next;
                Ok(Reply(result))
            }
            Err(e) => Err(io_err(format!("applying {log_id}: {e}"))),
        }
    }
}

pub struct Builder {
    store: Arc<Store>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let store = self.store.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let records = store.dump().map_err(io_err)?;
            let applied: AppliedState = mvcc::raft_state_in(&records)
                .map(codec::decode)
                .transpose()?
                .unwrap_or_default();
            let data = codec::encode(&records)?;
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership,
            };
            let file = SnapshotFile { meta, data };
            write_snapshot_file(&dir, &file)?;
            Ok(Snapshot {
                meta: file.meta,
                snapshot: Cursor::new(file.data),
            })
        })
        .await
        .map_err(io_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let reply = self.apply_one(entry)?;
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            store: self.store.clone(),
            dir: self.dir.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        install_records(&self.store, meta, &data)?;
        write_snapshot_file(
            &self.dir,
            &SnapshotFile {
                meta: meta.clone(),
                data,
            },
        )?;
        self.applied = read_applied(&self.store)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(read_snapshot_file(&self.dir)?.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Cursor::new(f.data),
        }))
    }
}
