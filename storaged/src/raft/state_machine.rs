//! The raft state machine: committed entries applied to the MVCC store, and snapshots of it.
//!
//! The applied log id and membership are stored in the store's own batches (opaque bytes in
//! its metadata), so data and applied position never disagree after a crash. Snapshots are
//! a dump of every table, kept in one file (`snapshot.bin`) in the data dir; the memory engine
//! starts from that file and replays the log after it.

use super::snapshot_file::SnapshotFile;
use super::{LogId, Reply, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, codec};
use crate::mvcc::{self, MvccError, Store, TableDump};
use crate::state_machine::StateMachine;
use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use std::io::{self, Cursor};
use std::path::Path;
use std::sync::Arc;

/// Applied position as stored with the data.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

pub struct StateMachineStore {
    store: Arc<Store>,
    machine: StateMachine,
    applied: AppliedState,
    file: SnapshotFile,
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
        let file = SnapshotFile::new(dir);
        if let Some((meta, data)) = file.read()? {
            let ahead = match (&meta.last_log_id, &applied.last_applied) {
                (Some(snap), Some(have)) => snap.index() > have.index(),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if ahead {
                install_records(&store, &meta, &data)?;
                applied = read_applied(&store)?;
            }
        }
        Ok(Self {
            machine: StateMachine::new(store.clone()).map_err(io_err)?,
            store,
            applied,
            file,
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
                .apply_entry(log_id.index(), state, |_| Ok(()))
                .map(|r| r.and(Err(MvccError::InvalidRequest("not a command".into())))),
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
    file: SnapshotFile,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let store = self.store.clone();
        let file = self.file.clone();
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
            // A snapshot installed meanwhile may be newer; the file then keeps that one.
            file.write(&meta, &data)?;
            Ok(Snapshot {
                meta,
                snapshot: Cursor::new(data),
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
            file: self.file.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let data_len = data.len();
        // The file first: once the store holds the snapshot, the log before it may be purged,
        // and a restarted memory engine must find the snapshot on disk.
        self.file.write(meta, &data)?;
        install_records(&self.store, meta, &data)?;
        self.machine.reload().map_err(io_err)?;
        self.applied = read_applied(&self.store)?;
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            bytes = data_len,
            revision = self.store.current_revision(),
            "installed raft snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self.file.read()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Cursor::new(data),
        }))
    }
}
