//! The state machine: applies write commands in log order to the MVCC store.
//!
//! Each command is applied in one engine batch together with its log index, so after a crash
//! the store knows exactly which entries it holds: no entry is applied twice or lost. A command
//! that fails validation (say, a compacted revision) still consumes its index and changes
//! nothing else, as a committed raft entry would.

use crate::mvcc::KvView as _;
use crate::mvcc::{MvccError, Store};
use metastore_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, TxnRequest, TxnResponse,
};
use std::sync::Arc;

/// A write as it would be carried by a log entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// Lease id and TTL are decided before the entry is proposed.
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
}

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
}

pub struct StateMachine {
    store: Arc<Store>,
}

impl StateMachine {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Index of the last applied entry (0 when none).
    pub fn applied_index(&self) -> u64 {
        self.store.applied_index()
    }

    /// Applies entry `index`. Returns the domain outcome of the command; an `Err` from the
    /// outer result means the engine failed and nothing was applied.
    pub fn apply(
        &self,
        index: u64,
        cmd: &Command,
    ) -> Result<Result<Applied, MvccError>, MvccError> {
        self.store.write(index, |w| {
            let outcome = match cmd {
                Command::Put(r) => w.apply_put(r).map(Applied::Put),
                Command::DeleteRange(r) => w.apply_delete_range(r).map(Applied::DeleteRange),
                Command::Txn(r) => w.apply_txn(r).map(Applied::Txn),
                Command::Compact(r) => w.apply_compact(r).map(Applied::Compact),
                Command::LeaseGrant { id, ttl } => {
                    w.grant_lease(*id, *ttl).map(|()| Applied::Lease {
                        revision: w.visible_revision(),
                    })
                }
                Command::LeaseRevoke { id } => w.revoke_lease(*id).map(|()| Applied::Lease {
                    revision: w.visible_revision(),
                }),
            };
            match outcome {
                Err(e @ MvccError::Engine(_)) => Err(e),
                Err(e) if w.changed() => Err(e),
                other => Ok(other),
            }
        })
    }
}
