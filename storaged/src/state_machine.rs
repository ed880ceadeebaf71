//! The state machine: applies log entries in order to the MVCC store.
//!
//! Each entry is applied in one engine batch together with its log index, so after a crash
//! the store knows exactly which entries it holds: no entry is applied twice or lost.
//!
//! Nothing a client sends can stop it: every command is checked again here (the proposer
//! checked it too, but entries are only as good as the member that proposed them), and a
//! command that fails part way (a txn whose third op finds no key) is undone as a whole and
//! still consumes its index, identically on every member. Only an engine failure is fatal.
//! A client request applied once is never applied again ([`crate::dedup`]).

use crate::alarms::{self, Alarms};
use crate::auth::{self, Auth, AuthApplied};
use crate::command::{Command, Origin, Proposal};
use crate::dedup::Dedup;
use crate::mvcc::KvView as _;
use crate::mvcc::{MvccError, Store, WriteTxn};
use metastore_proto::etcdserverpb::{
    AlarmMember, CompactionResponse, DeleteRangeResponse, PutResponse, TxnResponse,
};
use metastore_request::{Limits, validate};
use parking_lot::Mutex;
use std::sync::Arc;

/// The outcome of applying one command, handed to the proposer.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    /// Lease changes report the store revision after them.
    Lease {
        revision: i64,
    },
    /// Cluster metadata was recorded (no revision is taken).
    Recorded,
    /// An alarm was raised or cleared: the alarms the answer lists.
    Alarm(Vec<AlarmMember>),
    /// The auth store changed (or a token was made).
    Auth(AuthApplied),
}

pub struct StateMachine {
    store: Arc<Store>,
    dedup: Mutex<Dedup>,
    alarms: Mutex<Alarms>,
    auth: Arc<Auth>,
}

impl StateMachine {
    pub fn new(store: Arc<Store>, auth: Arc<Auth>) -> Result<Self, MvccError> {
        let dedup = Mutex::new(load_dedup(&store)?);
        let alarms = Mutex::new(Alarms::load(&store)?);
        auth.load(&store)?;
        Ok(Self {
            store,
            dedup,
            alarms,
            auth,
        })
    }

    /// Reloads what the state machine keeps beside the store after the store's whole content
    /// was replaced (a snapshot was installed).
    pub fn reload(&self) -> Result<(), MvccError> {
        *self.dedup.lock() = load_dedup(&self.store)?;
        *self.alarms.lock() = Alarms::load(&self.store)?;
        self.auth.load(&self.store)?;
        Ok(())
    }

    /// Index of the last applied entry (0 when none).
    pub fn applied_index(&self) -> u64 {
        self.store.applied_index()
    }

    /// Applies entry `index`. Returns the domain outcome of the command; an `Err` from the
    /// outer result means the engine failed and nothing was applied (the member must stop).
    pub fn apply(
        &self,
        index: u64,
        proposal: &Proposal,
    ) -> Result<Result<Applied, MvccError>, MvccError> {
        self.apply_marked(index, None, proposal)
    }

    /// Like [`StateMachine::apply`], storing the raft layer's applied state in the same batch.
    pub fn apply_marked(
        &self,
        index: u64,
        raft_state: Option<Vec<u8>>,
        proposal: &Proposal,
    ) -> Result<Result<Applied, MvccError>, MvccError> {
        let mut dedup = self.dedup.lock();
        let mut alarms = self.alarms.lock();
        let mut entry = Entry {
            index,
            alarms: &mut alarms,
            auth: &self.auth,
        };
        self.store.apply_entry(index, raft_state, |w| {
            if let Some(origin) = proposal.origin {
                if dedup.seen(origin) {
                    return Err(MvccError::Duplicate);
                }
                let applied = entry.execute(w, proposal)?;
                remember(w, &mut dedup, origin, index);
                return Ok(applied);
            }
            entry.execute(w, proposal)
        })
    }
}

fn load_dedup(store: &Store) -> Result<Dedup, MvccError> {
    Ok(Dedup::restore(&store.meta_with_prefix(Dedup::prefix())?))
}

fn remember(w: &mut WriteTxn<'_>, dedup: &mut Dedup, origin: Origin, index: u64) {
    let changes = dedup.record(origin, index);
    if let Some((k, v)) = changes.put {
        w.put_meta(k, v);
    }
    for k in changes.delete {
        w.delete_meta(k);
    }
}

/// etcd's request checks, again, with limits every member shares.
fn check(cmd: &Command) -> Result<(), MvccError> {
    match cmd {
        Command::Put(r) => validate::put(r)?,
        Command::DeleteRange(r) => validate::delete_range(r)?,
        Command::Txn(r) => validate::txn(r, &Limits::APPLY)?,
        Command::Downgrade(Some(v)) if crate::downgrade::Version::parse(v).is_none() => {
            return Err(MvccError::InvalidRequest(format!("downgrade target {v:?}")));
        }
        _ => {}
    }
    Ok(())
}

/// What applying one entry works with beside its write transaction.
struct Entry<'a> {
    index: u64,
    alarms: &'a mut Alarms,
    auth: &'a Auth,
}

impl Entry<'_> {
    /// Runs one command inside the entry's write transaction.
    fn execute(&mut self, w: &mut WriteTxn<'_>, proposal: &Proposal) -> Result<Applied, MvccError> {
        let cmd = &proposal.command;
        check(cmd)?;
        if let Some(refused) = self.alarms.refusal(cmd) {
            return Err(refused);
        }
        auth::check::command(&self.auth.state(), proposal.auth.as_ref(), cmd, w.leases())?;
        let alarms = &mut *self.alarms;
        match cmd {
            Command::Put(r) => w.apply_put(r).map(Applied::Put),
            Command::DeleteRange(r) => w.apply_delete_range(r).map(Applied::DeleteRange),
            Command::Txn(r) => w.apply_txn(r).map(Applied::Txn),
            Command::Compact(r) => w.apply_compact(r).map(Applied::Compact),
            Command::LeaseGrant { id, ttl } => w.grant_lease(*id, *ttl).map(|()| Applied::Lease {
                revision: w.visible_revision(),
            }),
            Command::LeaseRevoke { id } => w.revoke_lease(*id).map(|()| Applied::Lease {
                revision: w.visible_revision(),
            }),
            Command::LeaseCheckpoint(c) => {
                for &(id, remaining) in c {
                    w.checkpoint_lease(id, remaining);
                }
                Ok(Applied::Lease {
                    revision: w.visible_revision(),
                })
            }
            Command::PublishGateway {
                member_id,
                client_urls,
            } => {
                let (key, value) = crate::publication::record(*member_id, client_urls);
                w.put_meta(key, value);
                Ok(Applied::Recorded)
            }
            Command::WithdrawGateway { client_urls } => {
                w.delete_meta(crate::publication::record(0, client_urls).0);
                Ok(Applied::Recorded)
            }
            Command::MemberStarted { member_id } => {
                w.put_meta(crate::publication::started_key(*member_id), vec![1]);
                Ok(Applied::Recorded)
            }
            Command::Alarm(r) => {
                let (listed, change) = alarms.apply(r);
                match change {
                    Some(alarms::Change::Put(k)) => w.put_meta(k, Vec::new()),
                    Some(alarms::Change::Delete(k)) => w.delete_meta(k),
                    None => {}
                }
                Ok(Applied::Alarm(listed))
            }
            Command::Downgrade(target) => {
                let key = crate::downgrade::META_KEY.to_vec();
                match target {
                    Some(v) => w.put_meta(key, v.clone().into_bytes()),
                    None => w.delete_meta(key),
                }
                Ok(Applied::Recorded)
            }
            Command::Auth(change) => {
                let (applied, writes) =
                    self.auth
                        .apply(self.index, proposal.auth.as_ref(), change)?;
                for (key, value) in writes {
                    match value {
                        Some(v) => w.put_meta(key, v),
                        None => w.delete_meta(key),
                    }
                }
                Ok(Applied::Auth(applied))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineKind, open};
    use metastore_proto::etcdserverpb::range_request::SortOrder;
    use metastore_proto::etcdserverpb::request_op::Request;
    use metastore_proto::etcdserverpb::{
        DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    };

    fn put(key: &str) -> Command {
        Command::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    }

    fn op(request: Request) -> RequestOp {
        RequestOp {
            request: Some(request),
        }
    }

    fn machine(kind: EngineKind, dir: &std::path::Path) -> (Arc<Store>, StateMachine) {
        let store = Arc::new(Store::open(open(kind, dir).expect("engine").engine).expect("store"));
        let sm = StateMachine::new(store.clone(), Arc::new(Auth::new(Default::default())))
            .expect("state machine");
        (store, sm)
    }

    /// etcd 3.4 panics on this txn (and on every restart): the put finds its key deleted by the
    /// op before it. Here it fails as a whole with etcd's error, changes nothing, and still
    /// consumes its log index.
    #[test]
    fn a_txn_failing_part_way_changes_nothing() {
        for kind in [EngineKind::Memory, EngineKind::Rocksdb] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (store, sm) = machine(kind, dir.path());
            sm.apply(1, &put("b").into()).expect("engine").expect("put");
            let before = store.current_revision();
            let poison = Command::Txn(TxnRequest {
                compare: vec![],
                success: vec![
                    op(Request::RequestDeleteRange(DeleteRangeRequest {
                        key: b"a".to_vec(),
                        range_end: vec![0],
                        prev_kv: false,
                    })),
                    op(Request::RequestPut(PutRequest {
                        key: b"b".to_vec(),
                        ignore_value: true,
                        ..Default::default()
                    })),
                ],
                failure: vec![],
            });
            let outcome = sm.apply(2, &poison.into()).expect("not an engine failure");
            assert!(
                matches!(outcome, Err(MvccError::KeyNotFound)),
                "{kind:?}: {outcome:?}"
            );
            assert_eq!(store.applied_index(), 2, "{kind:?}: the index is consumed");
            assert_eq!(
                store.current_revision(),
                before,
                "{kind:?}: no revision taken"
            );
            let got = store
                .range(&RangeRequest {
                    key: b"b".to_vec(),
                    ..Default::default()
                })
                .expect("range");
            assert_eq!(got.kvs.len(), 1, "{kind:?}: the delete was undone");
            // The store goes on as if the txn never ran, also after a reopen.
            sm.apply(3, &put("c").into()).expect("engine").expect("put");
            assert_eq!(store.current_revision(), before + 1);
            let engine = store.shared_engine();
            drop((sm, store));
            let store = Store::open(engine).expect("reopen");
            assert_eq!(store.applied_index(), 3);
            let all = store
                .range(&RangeRequest {
                    key: vec![0],
                    range_end: vec![0],
                    ..Default::default()
                })
                .expect("range");
            assert_eq!(all.kvs.len(), 2, "{kind:?}: b and c, nothing else");
        }
    }

    /// What the gateway refuses is refused here too, when sent straight to a member.
    #[test]
    fn malformed_commands_are_refused_in_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, sm) = machine(EngineKind::Memory, dir.path());
        let bad_sort = Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![op(Request::RequestRange(RangeRequest {
                key: b"k".to_vec(),
                sort_order: 99,
                ..Default::default()
            }))],
            failure: vec![],
        });
        let dup = Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![
                op(Request::RequestPut(PutRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                })),
                op(Request::RequestPut(PutRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                })),
            ],
            failure: vec![],
        });
        let empty_key = Command::Put(PutRequest::default());
        let empty_op = Command::Txn(TxnRequest {
            compare: vec![],
            success: vec![RequestOp { request: None }],
            failure: vec![],
        });
        for (i, cmd) in [bad_sort, dup, empty_key, empty_op].into_iter().enumerate() {
            let outcome = sm.apply(i as u64 + 1, &cmd.into()).expect("engine");
            assert!(
                matches!(outcome, Err(MvccError::Rejected(_))),
                "{i}: {outcome:?}"
            );
        }
        assert_eq!(store.current_revision(), 1);
        assert_eq!(store.applied_index(), 4);
        assert_eq!(SortOrder::try_from(99).ok(), None);
    }

    /// A request proposed twice under one origin is applied once, also after a restart.
    #[test]
    fn one_origin_is_applied_once() {
        for kind in [EngineKind::Memory, EngineKind::Rocksdb] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (store, sm) = machine(kind, dir.path());
            let origin = Some(Origin {
                gateway: 42,
                request: 7,
            });
            let p = Proposal {
                origin,
                auth: None,
                command: put("k"),
            };
            sm.apply(1, &p).expect("engine").expect("first");
            let again = sm.apply(2, &p).expect("engine");
            assert!(matches!(again, Err(MvccError::Duplicate)), "{kind:?}");
            assert_eq!(store.current_revision(), 2, "{kind:?}: one revision");
            let engine = store.shared_engine();
            drop((sm, store));
            let store = Arc::new(Store::open(engine).expect("reopen"));
            let sm = StateMachine::new(store.clone(), Arc::new(Auth::new(Default::default())))
                .expect("sm");
            let third = sm.apply(3, &p).expect("engine");
            assert!(matches!(third, Err(MvccError::Duplicate)), "{kind:?}");
            let other = Proposal {
                auth: None,
                origin: Some(Origin {
                    gateway: 42,
                    request: 8,
                }),
                command: put("k"),
            };
            sm.apply(4, &other)
                .expect("engine")
                .expect("a new request applies");
            assert_eq!(store.current_revision(), 3, "{kind:?}");
        }
    }
}
