//! The node: where requests meet the replicated log.
//!
//! Today a storaged is a one-member cluster: a write takes the next log index and is applied
//! by the [`StateMachine`] at once. When raft lands, `write` proposes the command to the raft
//! group and waits for it to be applied; `read` confirms leadership (read index) for
//! linearizable reads. Callers above this module do not change.

use crate::identity::Identity;
use crate::mvcc::{self, MvccError, Store};
use crate::state_machine::{Applied, Command, StateMachine};
use metastore_proto::etcdserverpb::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use parking_lot::Mutex;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error("request task failed: {0}")]
    Task(String),
}

pub struct Node {
    identity: Identity,
    store: Arc<Store>,
    state_machine: StateMachine,
    /// Next log index to assign; the lock also keeps entries in index order.
    next_index: Mutex<u64>,
}

/// The raft term reported in headers. One member never holds an election, so its term
/// stays 1 until raft replication lands.
pub const SINGLE_MEMBER_TERM: u64 = 1;

impl Node {
    pub fn new(identity: Identity, store: Arc<Store>) -> Self {
        let next_index = store.applied_index() + 1;
        Self {
            identity,
            state_machine: StateMachine::new(store.clone()),
            store,
            next_index: Mutex::new(next_index),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn raft_term(&self) -> u64 {
        SINGLE_MEMBER_TERM
    }

    /// Appends `cmd` to the log and applies it.
    pub async fn write(self: &Arc<Self>, cmd: Command) -> Result<Applied, NodeError> {
        let node = self.clone();
        blocking(move || {
            let mut next = node.next_index.lock();
            let outcome = node.state_machine.apply(*next, &cmd)?;
            *next += 1;
            Ok(outcome?)
        })
        .await
    }

    pub async fn range(self: &Arc<Self>, req: RangeRequest) -> Result<RangeResponse, NodeError> {
        let node = self.clone();
        blocking(move || Ok(node.store.range(&req)?)).await
    }

    /// A txn whose ops are all reads; served without taking a log index.
    pub async fn read_txn(self: &Arc<Self>, req: TxnRequest) -> Result<TxnResponse, NodeError> {
        let node = self.clone();
        blocking(move || Ok(mvcc::txn_read_only(&node.store, &req)?)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Task(e.to_string()))?
}
