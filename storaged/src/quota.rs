//! The backend quota (etcd's `--quota-backend-bytes`): a write that would take the store past
//! it is refused with `database space exceeded` before it is proposed, and the member raises
//! the NOSPACE alarm through raft, which puts the cluster in capped mode
//! ([`crate::alarms`]). The cost of a request is etcd's estimate, not its encoded size: a Put
//! costs 256 bytes plus its key and value, a Txn its larger branch's Puts, a LeaseGrant 64.

use crate::command::Command;
use metastore_proto::etcdserverpb::TxnRequest;
use metastore_proto::etcdserverpb::request_op::Request;

/// etcd's default quota, used when the flag is 0 or absent.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Above this etcd warns that the quota is larger than it supports well.
pub const MAX_SUGGESTED_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;

const PUT_OVERHEAD: u64 = 256;
const LEASE_OVERHEAD: u64 = 64;

/// The quota in force: a limit in bytes, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    limit: Option<u64>,
}

impl Default for Quota {
    fn default() -> Self {
        Self::from_flag(0)
    }
}

impl Quota {
    /// The flag's meaning: 0 is etcd's default of 2 GiB, a negative value turns the quota off.
    pub fn from_flag(bytes: i64) -> Self {
        let limit = match bytes {
            0 => Some(DEFAULT_QUOTA_BYTES),
            b if b < 0 => None,
            b => Some(b as u64),
        };
        Quota { limit }
    }

    /// The limit in bytes (0 when the quota is off, as etcd's Status `dbSizeQuota`).
    pub fn limit(&self) -> u64 {
        self.limit.unwrap_or(0)
    }

    /// Whether `cmd` may be proposed on a store of `size` bytes: commands that may add data
    /// (Put, Txn, LeaseGrant) must leave the store below the limit, as etcd decides it.
    pub fn admits(&self, size: u64, cmd: &Command) -> bool {
        let (Some(limit), Some(cost)) = (self.limit, cost(cmd)) else {
            return true;
        };
        size.saturating_add(cost) < limit
    }
}

/// etcd's cost estimate of a command the quota applies to; `None` for the others.
pub fn cost(cmd: &Command) -> Option<u64> {
    match cmd {
        Command::Put(p) => Some(PUT_OVERHEAD + (p.key.len() + p.value.len()) as u64),
        Command::Txn(t) => Some(txn_cost(t)),
        Command::LeaseGrant { .. } => Some(LEASE_OVERHEAD),
        _ => None,
    }
}

/// The larger of the two branches' Put costs (nested txns counted with their larger branch).
fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[metastore_proto::etcdserverpb::RequestOp]| {
        ops.iter()
            .map(|op| match &op.request {
                Some(Request::RequestPut(p)) => PUT_OVERHEAD + (p.key.len() + p.value.len()) as u64,
                Some(Request::RequestTxn(inner)) => txn_cost(inner),
                _ => 0,
            })
            .sum::<u64>()
    };
    branch(&t.success).max(branch(&t.failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metastore_proto::etcdserverpb::{
        CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp,
    };

    fn put(key: &str, value_len: usize) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: vec![b'v'; value_len],
            ..Default::default()
        }
    }

    fn op(p: PutRequest) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(p)),
        }
    }

    #[test]
    fn costs_follow_etcds_estimate() {
        assert_eq!(cost(&Command::Put(put("abc", 10))), Some(256 + 13));
        assert_eq!(cost(&Command::LeaseGrant { id: 1, ttl: 5 }), Some(64));
        let txn = TxnRequest {
            success: vec![op(put("a", 1)), op(put("b", 1))],
            failure: vec![op(put("c", 1000))],
            ..Default::default()
        };
        assert_eq!(cost(&Command::Txn(txn.clone())), Some(256 + 1001));
        let nested = TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::RequestTxn(txn)),
            }],
            ..Default::default()
        };
        assert_eq!(cost(&Command::Txn(nested)), Some(256 + 1001));
        assert_eq!(cost(&Command::Txn(TxnRequest::default())), Some(0));
        assert_eq!(
            cost(&Command::DeleteRange(DeleteRangeRequest::default())),
            None
        );
        assert_eq!(cost(&Command::Compact(CompactionRequest::default())), None);
    }

    #[test]
    fn the_limit_is_exclusive_and_only_growing_commands_count() {
        let q = Quota::from_flag(1000);
        let p = Command::Put(put("k", 10)); // costs 267
        assert!(q.admits(732, &p));
        assert!(!q.admits(733, &p));
        // A txn without puts costs nothing, but the store must still be below the limit.
        assert!(q.admits(999, &Command::Txn(TxnRequest::default())));
        assert!(!q.admits(1000, &Command::Txn(TxnRequest::default())));
        let delete = Command::DeleteRange(DeleteRangeRequest::default());
        assert!(q.admits(u64::MAX, &delete));
    }

    #[test]
    fn zero_means_the_default_and_negative_means_off() {
        assert_eq!(Quota::from_flag(0).limit(), DEFAULT_QUOTA_BYTES);
        assert_eq!(Quota::default().limit(), DEFAULT_QUOTA_BYTES);
        let off = Quota::from_flag(-1);
        assert_eq!(off.limit(), 0);
        assert!(off.admits(u64::MAX, &Command::Put(put("k", 1 << 20))));
    }
}
