//! One classification of every storage request.

use metastore_internal_proto::storage::kv_request::Op;
use metastore_proto::etcdserverpb::TxnRequest;
use metastore_proto::etcdserverpb::alarm_request::AlarmAction;
use metastore_proto::etcdserverpb::downgrade_request::DowngradeAction;
use metastore_proto::etcdserverpb::request_op::Request;

/// Whether a request changes the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only. `serializable`: may be served from any member's local state.
    Read { serializable: bool },
    /// Goes through the raft log.
    Write,
}

/// What the gateway and storaged need to know about a request to route, forward and retry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    pub access: Access,
    /// Running it twice answers the same as running it once (so it may be retried after an
    /// unknown outcome).
    pub idempotent: bool,
}

impl Class {
    const LEADER_READ: Class = Class {
        access: Access::Read {
            serializable: false,
        },
        idempotent: true,
    };
    const WRITE: Class = Class {
        access: Access::Write,
        idempotent: false,
    };

    /// Only the leader may serve it (writes, linearizable reads, lease bookkeeping).
    pub fn leader_only(&self) -> bool {
        !self.serializable()
    }

    /// Any member may answer from its local state.
    pub fn serializable(&self) -> bool {
        matches!(self.access, Access::Read { serializable: true })
    }

    pub fn is_write(&self) -> bool {
        self.access == Access::Write
    }
}

/// Classifies a storage request by its op alone.
pub fn classify(op: &Op) -> Class {
    match op {
        Op::Range(r) => Class {
            access: Access::Read {
                serializable: r.serializable,
            },
            idempotent: true,
        },
        Op::Txn(t) => match txn_reads(t) {
            Some(serializable) => Class {
                access: Access::Read { serializable },
                idempotent: true,
            },
            None => Class::WRITE,
        },
        Op::Put(_) | Op::DeleteRange(_) | Op::Compact(_) => Class::WRITE,
        // A grant with a chosen id fails the second time; without one it makes a new lease.
        Op::LeaseGrant(_) | Op::LeaseRevoke(_) => Class::WRITE,
        Op::LeaseTimeToLive(_) | Op::LeaseLeases(_) => Class::LEADER_READ,
        Op::Alarm(a) if a.action == AlarmAction::Get as i32 => Class::LEADER_READ,
        // Clearing an alarm twice answers differently the second time.
        Op::Alarm(_) => Class::WRITE,
        Op::Downgrade(d) if d.action == DowngradeAction::Validate as i32 => Class::LEADER_READ,
        Op::Downgrade(_) => Class::WRITE,
        // Checked against the serving member's auth store, as etcd checks a watch.
        Op::WatchAccess(_) => Class {
            access: Access::Read { serializable: true },
            idempotent: true,
        },
    }
}

/// `Some(serializable)` when every op of both branches, nested txns included, is a Range
/// (such a txn changes nothing whichever branch runs); `serializable` when all of them are.
pub fn txn_reads(t: &TxnRequest) -> Option<bool> {
    let mut serializable = true;
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => serializable &= r.serializable,
            Some(Request::RequestTxn(inner)) => serializable &= txn_reads(inner)?,
            _ => return None,
        }
    }
    Some(serializable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metastore_proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp};

    fn range(serializable: bool) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: b"k".to_vec(),
                serializable,
                ..Default::default()
            })),
        }
    }

    fn nested(ops: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                compare: vec![],
                success: ops,
                failure: vec![],
            })),
        }
    }

    fn txn(ops: Vec<RequestOp>) -> Op {
        Op::Txn(TxnRequest {
            compare: vec![],
            success: vec![],
            failure: ops,
        })
    }

    #[test]
    fn nested_txns_are_looked_into() {
        let put = RequestOp {
            request: Some(Request::RequestPut(PutRequest::default())),
        };
        assert!(classify(&txn(vec![range(true), nested(vec![put])])).is_write());
        let read = classify(&txn(vec![range(true), nested(vec![range(true)])]));
        assert!(read.serializable() && read.idempotent && !read.leader_only());
        let linear = classify(&txn(vec![range(true), nested(vec![range(false)])]));
        assert!(!linear.is_write() && linear.leader_only());
        // An empty op is not a read: it fails in the log like etcd's.
        assert!(classify(&txn(vec![RequestOp { request: None }])).is_write());
    }

    #[test]
    fn writes_are_not_idempotent() {
        for op in [
            Op::Put(PutRequest::default()),
            Op::LeaseGrant(Default::default()),
            Op::LeaseRevoke(Default::default()),
            Op::Compact(Default::default()),
            Op::DeleteRange(Default::default()),
        ] {
            let c = classify(&op);
            assert!(c.is_write() && !c.idempotent && c.leader_only(), "{op:?}");
        }
        let ttl = classify(&Op::LeaseTimeToLive(Default::default()));
        assert!(!ttl.is_write() && ttl.idempotent && ttl.leader_only());
    }
}
