//! The raft state machine: committed entries applied to the MVCC store, and snapshots of it.
//!
//! The applied log id and membership are stored in the store's own batches (opaque bytes in
//! its metadata), so data and applied position never disagree after a crash. Snapshots are
//! a dump of every table, streamed from one engine view into one file (`snapshot.bin`) in the
//! data dir and streamed back into the store when installed; the memory engine starts from
//! that file and replays the log after it.

use super::failpoints::{CorruptPuts, EntryDelay};
use super::snapshot_blob::SnapshotBlob;
use super::snapshot_file::{NewSnapshot, SnapshotFile};
use super::{LogId, Reply, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, codec};
use crate::mvcc::{DumpSink, MvccError, Store};
use crate::state_machine::StateMachine;
use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use std::io;
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
    slow_follower_apply: Option<EntryDelay>,
    corrupt_puts: Option<CorruptPuts>,
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

/// Replaces the store's content with the snapshot in `blob` (checksum verified first) at
/// `meta`'s applied position.
fn install_records(store: &Store, meta: &SnapshotMeta, blob: &SnapshotBlob) -> io::Result<()> {
    let (inside, records) = blob.records()?;
    if inside != *meta {
        return Err(io_err(
            "snapshot file holds another snapshot than announced",
        ));
    }
    let applied = AppliedState {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
    };
    store.replace_from(records, codec::encode(&applied)?)
}

impl From<MvccError> for io::Error {
    fn from(e: MvccError) -> Self {
        io_err(e)
    }
}

/// Writes a dump of the store into a new snapshot file as the records are read.
struct SnapshotSink<'a> {
    file: &'a SnapshotFile,
    out: Option<(SnapshotMeta, NewSnapshot)>,
    error: Option<io::Error>,
}

impl SnapshotSink<'_> {
    fn keep(&mut self, result: io::Result<()>) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }
}

impl DumpSink for SnapshotSink<'_> {
    fn begin(&mut self, raft_state: Option<&[u8]>) -> bool {
        let started = (|| {
            let applied: AppliedState = raft_state
                .map(codec::decode)
                .transpose()?
                .unwrap_or_default();
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership,
            };
            let writer = self.file.writer(&meta)?;
            self.out = Some((meta, writer));
            Ok(())
        })();
        self.keep(started)
    }

    fn record(&mut self, table: u8, key: &[u8], value: &[u8]) -> bool {
        let written = match &mut self.out {
            Some((_, w)) => w.record(table, key, value),
            None => Err(io_err("snapshot record before its head")),
        };
        self.keep(written)
    }
}

impl StateMachineStore {
    /// Opens the state machine on `store`. If the snapshot file is ahead of the store (always
    /// so for the memory engine after a restart), the store is loaded from it first.
    pub fn open(store: Arc<Store>, dir: &Path, auth: Arc<crate::auth::Auth>) -> io::Result<Self> {
        let mut applied = read_applied(&store)?;
        let file = SnapshotFile::new(dir);
        file.remove_leftovers()?;
        file.upgrade()?;
        if let Some((meta, blob)) = file.open()? {
            let ahead = match (&meta.last_log_id, &applied.last_applied) {
                (Some(snap), Some(have)) => snap.index() > have.index(),
                (Some(_), None) => true,
                (None, _) => false,
            };
            if ahead {
                install_records(&store, &meta, &blob)?;
                applied = read_applied(&store)?;
            }
        }
        Ok(Self {
            machine: StateMachine::new(store.clone(), auth).map_err(io_err)?,
            store,
            applied,
            file,
            slow_follower_apply: None,
            corrupt_puts: None,
        })
    }

    /// Arms the failpoints named in the environment for member `member_id` named `name`.
    pub fn with_failpoints(mut self, member_id: u64, name: &str) -> Self {
        self.slow_follower_apply = EntryDelay::follower_apply(member_id);
        self.corrupt_puts = CorruptPuts::from_env(name);
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn apply_one(&mut self, entry: super::Entry) -> io::Result<Reply> {
        let log_id = entry.log_id();
        let mut next = self.applied.clone();
        next.last_applied = Some(log_id);
        let cmd = match entry.payload {
            EntryPayload::Normal(mut cmd) => {
                if let Some(c) = &self.corrupt_puts {
                    c.alter(&mut cmd);
                }
                Some(cmd)
            }
            EntryPayload::Membership(m) => {
                next.membership = StoredMembership::new(Some(log_id), m);
                None
            }
            EntryPayload::Blank => None,
        };
        let state = Some(codec::encode(&next)?);
        let started = std::time::Instant::now();
        let outcome = match cmd {
            Some(cmd) => {
                let _traced = crate::traces::apply(cmd.origin).entered();
                let outcome = self.machine.apply_marked(log_id.index(), state, &cmd);
                let ok = matches!(outcome, Ok(Ok(_)));
                crate::metrics::applied(&cmd.command, ok, started.elapsed());
                outcome
            }
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

/// Makes `store` the state of a member `me` of a new cluster of `members` that starts from
/// `records` (a restored backup): the records, and as applied raft state the first log entry
/// (the membership, as `Raft::initialize` writes it on `me`), so the member starts in that
/// cluster with no log to replay. The snapshot file is written too: the memory engine's data
/// lives only there until raft writes the next one.
pub fn seed(
    store: &Arc<Store>,
    dir: &Path,
    me: u64,
    members: std::collections::BTreeMap<u64, super::Member>,
    records: impl Iterator<Item = Result<crate::mvcc::DumpRecord, MvccError>>,
) -> io::Result<()> {
    use openraft::vote::RaftLeaderIdExt;
    let leader = openraft::alias::LeaderIdOf::<TypeConfig>::new_committed(Default::default(), me);
    let first = LogId::new(leader, 0);
    let applied = AppliedState {
        last_applied: Some(first),
        membership: StoredMembership::new(Some(first), openraft::Membership::from(members)),
    };
    store.replace_from(records, codec::encode(&applied)?)?;
    dump_to_file(store, &SnapshotFile::new(dir))
}

/// Dumps `store` into a new snapshot file and moves it into place, unless `file` holds one at
/// least as new already (installed meanwhile).
fn dump_to_file(store: &Store, file: &SnapshotFile) -> io::Result<()> {
    let mut sink = SnapshotSink {
        file,
        out: None,
        error: None,
    };
    let complete = store.dump_into(&mut sink).map_err(io_err)?;
    if let Some(e) = sink.error {
        return Err(e);
    }
    let (meta, writer) = sink
        .out
        .filter(|_| complete)
        .ok_or_else(|| io_err("snapshot dump stopped early"))?;
    let mut blob = writer.finish()?;
    file.adopt(&mut blob, &meta)?;
    Ok(())
}

pub struct Builder {
    store: Arc<Store>,
    file: SnapshotFile,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    type SnapshotData = SnapshotBlob;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let store = self.store.clone();
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            // A snapshot installed meanwhile may be newer; the file then keeps that one, and
            // that one is what there is to send.
            dump_to_file(&store, &file)?;
            let (meta, blob) = file
                .open()?
                .ok_or_else(|| io_err("snapshot file vanished after it was written"))?;
            Ok(Snapshot {
                meta,
                snapshot: blob,
            })
        })
        .await
        .map_err(io_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotBlob;
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            if let Some(f) = self.slow_follower_apply
                && f.applies(entry.log_id().committed_leader_id().node_id)
            {
                tokio::time::sleep(f.delay).await;
            }
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
        mut snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data_len = snapshot.len();
        if snapshot.pending().is_none() {
            // Another member's file handed over in-process (not received): copied first.
            snapshot = self.file.copy_in(&snapshot)?;
        }
        // The file first (its checksum was checked as it arrived): once the store holds the
        // snapshot, the log before it may be purged, and a restarted memory engine must find
        // the snapshot on disk. The open blob stays readable whether or not it moved.
        self.file.adopt(&mut snapshot, meta)?;
        install_records(&self.store, meta, &snapshot)?;
        drop(snapshot);
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
        Ok(self.file.open()?.map(|(meta, blob)| Snapshot {
            meta,
            snapshot: blob,
        }))
    }
}
