//! The node: where requests meet the replicated log.
//!
//! Today a storaged is a one-member cluster: a write takes the next log index and is applied
//! by the [`StateMachine`] at once. When raft lands, `write` proposes the command to the raft
//! group and waits for it to be applied; `read` confirms leadership (read index) for
//! linearizable reads. Callers above this module do not change.

use crate::identity::Identity;
use crate::lessor::{Lessor, MIN_LEASE_TTL};
use crate::mvcc::{self, MvccError, Store};
use crate::state_machine::{Applied, Command, StateMachine};
use metastore_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
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
    lessor: Lessor,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The raft term reported in headers. One member never holds an election, so its term
/// stays 1 until raft replication lands.
pub const SINGLE_MEMBER_TERM: u64 = 1;

impl Node {
    pub fn new(identity: Identity, store: Arc<Store>) -> Self {
        let next_index = store.applied_index() + 1;
        let lessor = Lessor::default();
        for (id, ttl) in store.leases() {
            lessor.start(id, ttl);
        }
        Self {
            identity,
            state_machine: StateMachine::new(store.clone()),
            store,
            next_index: Mutex::new(next_index),
            lessor,
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

    /// Grants a lease: the id (client-chosen or allocated here) and the TTL (raised to the
    /// minimum) are fixed before the entry is written, so every member applies the same.
    pub async fn lease_grant(
        self: &Arc<Self>,
        req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, NodeError> {
        let ttl = req.ttl.max(MIN_LEASE_TTL);
        let id = if req.id != 0 {
            req.id
        } else {
            self.new_lease_id()
        };
        let Applied::Lease { revision } = self.write(Command::LeaseGrant { id, ttl }).await? else {
            return Err(NodeError::Task("unexpected lease grant result".into()));
        };
        self.lessor.start(id, ttl);
        Ok(LeaseGrantResponse {
            header: header(revision),
            id,
            ttl,
            error: String::new(),
        })
    }

    pub async fn lease_revoke(self: &Arc<Self>, id: i64) -> Result<LeaseRevokeResponse, NodeError> {
        let Applied::Lease { revision } = self.write(Command::LeaseRevoke { id }).await? else {
            return Err(NodeError::Task("unexpected lease revoke result".into()));
        };
        self.lessor.forget(id);
        Ok(LeaseRevokeResponse {
            header: header(revision),
        })
    }

    /// Renews a lease; TTL 0 when it does not exist (or has expired), as etcd answers.
    pub fn lease_keep_alive(&self, id: i64) -> LeaseKeepAliveResponse {
        let revision = self.store.current_revision();
        let ttl = if self.store.lease_exists(id) {
            self.lessor.renew(id).unwrap_or(0)
        } else {
            0
        };
        LeaseKeepAliveResponse {
            header: header(revision),
            id,
            ttl,
        }
    }

    pub fn lease_time_to_live(&self, req: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let revision = self.store.current_revision();
        match self.store.lease(req.id) {
            Some(record) => LeaseTimeToLiveResponse {
                header: header(revision),
                id: req.id,
                ttl: self.lessor.remaining(req.id).unwrap_or(record.ttl),
                granted_ttl: record.ttl,
                keys: if req.keys {
                    record.keys.into_iter().collect()
                } else {
                    Vec::new()
                },
            },
            None => LeaseTimeToLiveResponse {
                header: header(revision),
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        }
    }

    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        let revision = self.store.current_revision();
        LeaseLeasesResponse {
            header: header(revision),
            leases: self
                .lessor
                .by_deadline()
                .into_iter()
                .filter(|id| self.store.lease_exists(*id))
                .map(|id| LeaseStatus { id })
                .collect(),
        }
    }

    /// Revokes every lease whose deadline passed (run periodically on the expiring member).
    pub async fn expire_leases(self: &Arc<Self>) {
        for id in self.lessor.expired() {
            match self.lease_revoke(id).await {
                Ok(_) | Err(NodeError::Mvcc(MvccError::LeaseNotFound)) => self.lessor.forget(id),
                Err(e) => tracing::warn!(lease = id, error = %e, "lease expiry failed"),
            }
        }
    }

    /// A positive id unlikely to collide across members: member bits, time, counter.
    fn new_lease_id(&self) -> i64 {
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or_default();
            let id = (((self.identity.member_id & 0xffff) << 47) ^ (now << 4)) as i64 & i64::MAX;
            if id != 0 && !self.store.lease_exists(id) {
                return id;
            }
        }
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
