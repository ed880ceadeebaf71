//! The store: shared state behind one lock, recovery from the engine, and the two kinds of
//! transactions. Writes are serialized (one [`WriteTxn`] at a time, as the state machine
//! applies entries in log order); reads run concurrently with each other.

use super::codec::{
    self, META_APPLIED_INDEX, META_COMPACT_REV, META_CURRENT_REV, META_RAFT_APPLIED,
};
use super::error::MvccError;
use super::key_index::KeyIndex;
use super::lease::{LeaseUndo, Leases, decode_lease};
use super::revision::Revision;
use crate::engine::{Engine, Table, WriteBatch};
use metastore_proto::mvccpb::{Event, KeyValue};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct State {
    pub index: KeyIndex,
    /// Revision of the last write; 1 for an empty store, as in etcd.
    pub current: i64,
    /// Highest compacted revision (0 = never compacted).
    pub compacted: i64,
    /// Index of the last applied log entry, persisted with the data it produced.
    pub applied: u64,
    pub leases: Leases,
}

/// Told about every committed change, in revision order, while the store's write lock is
/// still held: nothing can be read or registered between the commit and the notification.
pub trait CommitObserver: Send + Sync {
    fn committed(&self, revision: i64, events: &[Event]);

    /// The whole content was replaced (a raft snapshot was installed); every revision up to
    /// `delivered_upto` had been announced through [`CommitObserver::committed`] before.
    fn restored(&self, delivered_upto: i64) {
        let _ = delivered_upto;
    }
}

pub struct Store {
    pub(super) engine: Arc<dyn Engine>,
    pub(super) state: RwLock<State>,
    observer: Option<Arc<dyn CommitObserver>>,
}

impl Store {
    /// Opens the store on `engine`, rebuilding the key index from what the engine holds.
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, MvccError> {
        Self::open_observed(engine, None)
    }

    /// Like [`Store::open`], with `observer` told of every commit (the watch hub).
    pub fn open_observed(
        engine: Arc<dyn Engine>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> Result<Self, MvccError> {
        let state = recover(engine.as_ref())?;
        Ok(Self {
            engine,
            state: RwLock::new(state),
            observer,
        })
    }

    /// Runs `f` with the current and compacted revisions while holding the read lock, so no
    /// write commits (and no commit is observed) until `f` returns.
    pub fn with_revisions<T>(&self, f: impl FnOnce(i64, i64) -> T) -> T {
        let state = self.state.read();
        f(state.current, state.compacted)
    }

    /// A lease's record (granted TTL and attached keys), if it exists.
    pub fn lease(&self, id: i64) -> Option<super::LeaseRecord> {
        self.state.read().leases.get(id).cloned()
    }

    /// For each of `ids`, its granted and checkpointed remaining TTL (`None`: no such lease).
    pub fn lease_ttls(&self, ids: &[i64]) -> Vec<Option<(i64, i64)>> {
        let state = self.state.read();
        ids.iter()
            .map(|id| state.leases.get(*id).map(|r| (r.ttl, r.remaining)))
            .collect()
    }

    /// Whether any key is live as of revision `at`.
    pub fn any_live_at(&self, at: i64) -> bool {
        let mut any = false;
        let all = super::KeyRange::From(Vec::new());
        self.state.read().index.range(&all, at, |_, _| {
            any = true;
            false
        });
        any
    }

    /// The revision of `key`'s live record as of revision `at`, if it is live then.
    pub fn live_revision_at(&self, key: &[u8], at: i64) -> Option<Revision> {
        self.state.read().index.get(key, at).map(|e| e.rev)
    }

    pub fn lease_exists(&self, id: i64) -> bool {
        self.state.read().leases.contains(id)
    }

    /// Every lease as (id, granted TTL, checkpointed remaining TTL or 0).
    pub fn leases(&self) -> Vec<(i64, i64, i64)> {
        self.state.read().leases.clocks().collect()
    }

    pub fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// The engine, to open another store on it (tests of recovery).
    pub fn shared_engine(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    pub fn current_revision(&self) -> i64 {
        self.state.read().current
    }

    pub fn compacted_revision(&self) -> i64 {
        self.state.read().compacted
    }

    pub fn applied_index(&self) -> u64 {
        self.state.read().applied
    }

    /// Keys that exist now (not deleted).
    pub fn key_count(&self) -> usize {
        self.state.read().index.live_keys()
    }

    pub fn read(&self) -> ReadTxn<'_> {
        ReadTxn {
            state: self.state.read(),
            engine: self.engine.as_ref(),
        }
    }

    /// Runs `f` in one write transaction that records `applied` as the applied log index.
    /// Everything `f` changed is written in one engine batch together with that index; if `f`
    /// or the engine fails, nothing is kept (not even the index). For tests and tools; the
    /// apply path uses [`Store::apply_entry`].
    pub fn write<T>(
        &self,
        applied: u64,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T, MvccError>,
    ) -> Result<T, MvccError> {
        let mut txn = WriteTxn::begin(self.state.write(), self.engine.as_ref());
        match f(&mut txn) {
            Ok(v) => {
                txn.commit(applied, self.observer.as_deref())?;
                Ok(v)
            }
            Err(e) => {
                txn.rollback();
                Err(e)
            }
        }
    }

    /// Applies one raft entry: runs `f` in one write transaction and commits what it changed
    /// together with `applied` (and `raft_state`, the replication layer's applied log id and
    /// membership) in one engine batch.
    ///
    /// A domain error from `f` (anything but [`MvccError::is_fatal`]) is the entry's outcome:
    /// every change `f` made is undone, and the index and raft state are still committed, so
    /// the entry is consumed exactly as on every other member. Only an engine failure is
    /// returned as the outer error (nothing is kept then).
    pub fn apply_entry<T>(
        &self,
        applied: u64,
        raft_state: Option<Vec<u8>>,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T, MvccError>,
    ) -> Result<Result<T, MvccError>, MvccError> {
        let mut txn = WriteTxn::begin(self.state.write(), self.engine.as_ref());
        let outcome = match f(&mut txn) {
            Ok(v) => Ok(v),
            Err(e) if e.is_fatal() => {
                txn.rollback();
                return Err(e);
            }
            Err(e) => {
                txn.undo();
                Err(e)
            }
        };
        if let Some(raft_state) = raft_state {
            txn.batch.put(Table::Meta, META_RAFT_APPLIED, raft_state);
        }
        txn.commit(applied, self.observer.as_deref())?;
        Ok(outcome)
    }
}

/// A raw `(key, value)` engine record.
pub type KeyValuePair = (Vec<u8>, Vec<u8>);

/// Receives a store's records one by one (see [`Store::dump_into`]).
pub trait DumpSink {
    /// First, the replication layer's applied state in the dumped view. `false` stops.
    fn begin(&mut self, raft_state: Option<&[u8]>) -> bool;
    /// Then every record of every table (the applied state excepted). `false` stops.
    fn record(&mut self, table: u8, key: &[u8], value: &[u8]) -> bool;
}

/// One engine record as it comes out of a dump: `(table number, key, value)`.
pub type DumpRecord = (u8, Vec<u8>, Vec<u8>);

/// Bytes of records written per engine batch when a store is replaced.
const REPLACE_BATCH_BYTES: usize = 16 << 20;

fn is_raft_state(table: Table, key: &[u8]) -> bool {
    table == Table::Meta && key == META_RAFT_APPLIED
}

impl Store {
    /// The replication layer's applied state as last stored by [`Store::apply_entry`].
    pub fn raft_state(&self) -> Result<Option<Vec<u8>>, MvccError> {
        Ok(self.engine.get(Table::Meta, META_RAFT_APPLIED)?)
    }

    /// Metadata values whose keys start with `prefix`, in key order.
    pub fn meta_with_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValuePair>, MvccError> {
        let mut out = Vec::new();
        self.engine.scan(Table::Meta, prefix, None, &mut |k, v| {
            if !k.starts_with(prefix) {
                return false;
            }
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Every record of every table, read from one consistent engine view and passed to
    /// `sink` as it is read (a snapshot's content). Writes go on meanwhile: the view holds the
    /// raft applied state written in the same batches as the data, so the dump is exactly the
    /// store at that applied index. Returns `false` when the sink stopped it.
    pub fn dump_into(&self, sink: &mut dyn DumpSink) -> Result<bool, MvccError> {
        let mut complete = true;
        self.engine.with_snapshot(&mut |view| {
            let state = view.get(Table::Meta, META_RAFT_APPLIED)?;
            if !sink.begin(state.as_deref()) {
                complete = false;
                return Ok(());
            }
            for (n, table) in Table::ALL.iter().enumerate() {
                view.scan(*table, &[], None, &mut |k, v| {
                    complete = is_raft_state(*table, k) || sink.record(n as u8, k, v);
                    complete
                })?;
                if !complete {
                    break;
                }
            }
            Ok(())
        })?;
        Ok(complete)
    }

    /// Replaces the whole content with `records` (as [`Store::dump_into`] gives them, read
    /// as they are written, in batches of bounded size) and the raft applied state with
    /// `raft_state`, then rebuilds the in-memory state. The applied state is cleared first and
    /// written last: a crash part way leaves a store that says it is behind, and is loaded
    /// again from the snapshot at start.
    pub fn replace_from<E: From<MvccError>>(
        &self,
        records: impl Iterator<Item = Result<DumpRecord, E>>,
        raft_state: Vec<u8>,
    ) -> Result<(), E> {
        let mut state = self.state.write();
        let mut batch = WriteBatch::default();
        batch.delete(Table::Meta, META_RAFT_APPLIED.to_vec());
        self.engine
            .write(std::mem::take(&mut batch))
            .map_err(MvccError::from)?;
        for table in Table::ALL {
            self.clear(table)?;
        }
        let mut bytes = 0;
        for record in records {
            let (n, k, v) = record?;
            let table = *Table::ALL
                .get(n as usize)
                .ok_or_else(|| MvccError::Corrupt(format!("snapshot names table {n}")))?;
            if is_raft_state(table, &k) {
                continue;
            }
            bytes += k.len() + v.len() + 16;
            batch.put(table, k, v);
            if bytes >= REPLACE_BATCH_BYTES {
                self.engine
                    .write(std::mem::take(&mut batch))
                    .map_err(MvccError::from)?;
                bytes = 0;
            }
        }
        batch.put(Table::Meta, META_RAFT_APPLIED, raft_state);
        self.engine.write(batch).map_err(MvccError::from)?;
        let delivered_upto = state.current;
        *state = recover(self.engine.as_ref())?;
        if let Some(observer) = &self.observer {
            observer.restored(delivered_upto);
        }
        Ok(())
    }

    /// Deletes every record of `table`, in batches of bounded size.
    fn clear(&self, table: Table) -> Result<(), MvccError> {
        let mut from = Vec::new();
        loop {
            let mut batch = WriteBatch::default();
            let mut bytes = 0;
            let mut last = None;
            self.engine.scan(table, &from, None, &mut |k, _| {
                bytes += k.len() + 16;
                batch.delete(table, k.to_vec());
                last = Some(k.to_vec());
                bytes < REPLACE_BATCH_BYTES
            })?;
            let Some(mut last) = last else {
                return Ok(());
            };
            self.engine.write(batch)?;
            last.push(0);
            from = last;
        }
    }
}

fn recover(engine: &dyn Engine) -> Result<State, MvccError> {
    let meta = |k: &[u8]| -> Result<u64, MvccError> {
        engine
            .get(Table::Meta, k)?
            .map(|v| codec::decode_u64(&v))
            .transpose()
            .map(|v| v.unwrap_or(0))
    };
    let mut state = State {
        index: KeyIndex::default(),
        current: (meta(META_CURRENT_REV)? as i64).max(1),
        compacted: meta(META_COMPACT_REV)? as i64,
        applied: meta(META_APPLIED_INDEX)?,
        leases: Leases::default(),
    };
    codec::scan_records(engine, &[], None, |r| {
        state.current = state.current.max(r.rev.main);
        state
            .index
            .restore(&r.kv.key, codec::index_entry(r.rev, r.tombstone, &r.kv));
        true
    })?;
    state.current = state.current.max(state.compacted);
    let mut leases = Vec::new();
    engine.scan(Table::Lease, &[], None, &mut |k, v| {
        leases.push(decode_lease(k, v));
        true
    })?;
    for lease in leases {
        let (id, ttl, remaining) = lease?;
        state.leases.restore(id, ttl, remaining);
    }
    let mut attached = Vec::new();
    state
        .index
        .range(&super::KeyRange::From(Vec::new()), i64::MAX, |k, e| {
            if e.lease != 0 {
                attached.push((e.lease, k.to_vec()));
            }
            true
        });
    for (lease, key) in attached {
        state.leases.attach_restored(lease, &key);
    }
    Ok(state)
}

/// Read access to the store: the KV view the Range and compare logic works on.
pub trait KvView {
    fn index(&self) -> &KeyIndex;
    /// The newest revision this view can see.
    fn visible_revision(&self) -> i64;
    fn compacted_revision(&self) -> i64;
    fn lease_exists(&self, id: i64) -> bool;
    /// The stored record of `rev` (a live revision, never a tombstone).
    fn value(&self, rev: Revision) -> Result<KeyValue, MvccError>;
}

fn load(engine: &dyn Engine, rev: Revision) -> Result<KeyValue, MvccError> {
    engine
        .get(Table::Key, &rev.to_key(false))?
        .map(|v| codec::decode_kv(&v))
        .transpose()?
        .ok_or_else(|| MvccError::Corrupt(format!("missing record for revision {rev:?}")))
}

pub struct ReadTxn<'a> {
    state: RwLockReadGuard<'a, State>,
    engine: &'a dyn Engine,
}

impl KvView for ReadTxn<'_> {
    fn index(&self) -> &KeyIndex {
        &self.state.index
    }
    fn visible_revision(&self) -> i64 {
        self.state.current
    }
    fn compacted_revision(&self) -> i64 {
        self.state.compacted
    }
    fn lease_exists(&self, id: i64) -> bool {
        self.state.leases.contains(id)
    }
    fn value(&self, rev: Revision) -> Result<KeyValue, MvccError> {
        load(self.engine, rev)
    }
}

/// One write request: every change gets main revision `begin + 1`.
pub struct WriteTxn<'a> {
    pub(super) state: RwLockWriteGuard<'a, State>,
    pub(super) engine: &'a dyn Engine,
    pub(super) begin: i64,
    pub(super) next_sub: i64,
    pub(super) pending: HashMap<Revision, KeyValue>,
    pub(super) batch: WriteBatch,
    pub(super) touched: Vec<Vec<u8>>,
    pub(super) events: Vec<Event>,
    pub(super) lease_undo: Vec<LeaseUndo>,
}

impl<'a> WriteTxn<'a> {
    fn begin(state: RwLockWriteGuard<'a, State>, engine: &'a dyn Engine) -> Self {
        let begin = state.current;
        Self {
            state,
            engine,
            begin,
            next_sub: 0,
            pending: HashMap::new(),
            batch: WriteBatch::default(),
            touched: Vec::new(),
            events: Vec::new(),
            lease_undo: Vec::new(),
        }
    }

    /// True once the transaction changed a key (and so takes a new revision).
    pub fn changed(&self) -> bool {
        self.next_sub > 0
    }

    /// The revision of this transaction's changes.
    pub fn write_revision(&self) -> i64 {
        self.begin + 1
    }

    fn commit(
        mut self,
        applied: u64,
        observer: Option<&dyn CommitObserver>,
    ) -> Result<(), MvccError> {
        if self.changed() {
            let rev = self.write_revision();
            self.batch
                .put(Table::Meta, META_CURRENT_REV, codec::encode_u64(rev as u64));
        }
        if applied > 0 {
            self.batch
                .put(Table::Meta, META_APPLIED_INDEX, codec::encode_u64(applied));
        }
        let batch = std::mem::take(&mut self.batch);
        if let Err(e) = self.engine.write(batch) {
            self.rollback();
            return Err(e.into());
        }
        if self.changed() {
            self.state.current = self.write_revision();
            if let Some(observer) = observer {
                observer.committed(self.state.current, &self.events);
            }
        }
        if applied > 0 {
            self.state.applied = applied;
        }
        Ok(())
    }

    fn rollback(mut self) {
        self.undo();
    }

    /// Undoes every change made so far: the in-memory index and leases go back to where they
    /// were at `begin`, and nothing is left to write. The transaction can still commit (an
    /// applied index alone).
    fn undo(&mut self) {
        let main = self.write_revision();
        for key in std::mem::take(&mut self.touched) {
            self.state.index.undo(&key, main);
        }
        while let Some(u) = self.lease_undo.pop() {
            self.state.leases.undo(u);
        }
        self.batch = WriteBatch::default();
        self.pending.clear();
        self.events.clear();
        self.next_sub = 0;
    }

    /// Stores an opaque metadata value in this transaction's batch (no revision is taken).
    pub fn put_meta(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.batch.put(Table::Meta, key, value);
    }

    /// Removes a metadata value in this transaction's batch (no revision is taken).
    pub fn delete_meta(&mut self, key: Vec<u8>) {
        self.batch.delete(Table::Meta, key);
    }

    /// Lease state as this transaction sees it.
    pub fn leases(&self) -> &Leases {
        &self.state.leases
    }
}

impl KvView for WriteTxn<'_> {
    fn index(&self) -> &KeyIndex {
        &self.state.index
    }
    fn visible_revision(&self) -> i64 {
        if self.changed() {
            self.begin + 1
        } else {
            self.begin
        }
    }
    fn compacted_revision(&self) -> i64 {
        self.state.compacted
    }
    fn lease_exists(&self, id: i64) -> bool {
        self.state.leases.contains(id)
    }
    fn value(&self, rev: Revision) -> Result<KeyValue, MvccError> {
        match self.pending.get(&rev) {
            Some(kv) => Ok(kv.clone()),
            None => load(self.engine, rev),
        }
    }
}
