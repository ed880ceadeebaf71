//! etcd's request checks (as etcd's v3rpc layer does them): missing keys, contradictory put
//! flags, txn size and duplicate keys, sort enums, request size.

use metastore_internal_proto::storage::kv_request::Op;
use metastore_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use metastore_proto::etcdserverpb::request_op::Request;
use metastore_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use prost::Message;
use std::collections::HashSet;

/// Why a request is refused. The client-visible text is the gateway's (its error table); these
/// names say which etcd error each one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("key is not provided")]
    EmptyKey,
    #[error("value is provided")]
    ValueProvided,
    #[error("lease is provided")]
    LeaseProvided,
    #[error("too many operations in txn request")]
    TooManyOps,
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    #[error("invalid sort option")]
    InvalidSortOption,
    #[error("request is too large")]
    RequestTooLarge,
    /// A txn op with no request in it (etcd answers `key not found`).
    #[error("empty txn op")]
    EmptyOp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
}

impl Default for Limits {
    /// etcd's defaults (`--max-txn-ops`, `--max-request-bytes`).
    fn default() -> Self {
        Self {
            max_txn_ops: 128,
            max_request_bytes: 1_572_864,
        }
    }
}

impl Limits {
    /// What every member checks on every entry it applies. Fixed (never a setting), so all
    /// members decide alike whatever their flags; far above any configurable limit, so only
    /// an entry that skipped the checks before proposing can meet it. Entry size is bounded
    /// by the raft transport.
    pub const APPLY: Limits = Limits {
        max_txn_ops: 1 << 16,
        max_request_bytes: usize::MAX,
    };
}

/// Checks one storage op the way etcd's v3rpc layer does, with `limits`. Ops without client
/// fields to check (compaction, leases) pass.
pub fn op(op: &Op, limits: &Limits) -> Result<(), Invalid> {
    match op {
        Op::Range(r) => range(r),
        Op::Put(r) => {
            put(r)?;
            size(r, limits)
        }
        Op::DeleteRange(r) => {
            delete_range(r)?;
            size(r, limits)
        }
        Op::Txn(r) => {
            txn(r, limits)?;
            size(r, limits)
        }
        Op::Compact(_)
        | Op::LeaseGrant(_)
        | Op::LeaseRevoke(_)
        | Op::LeaseTimeToLive(_)
        | Op::LeaseLeases(_)
        | Op::Alarm(_)
        | Op::Downgrade(_)
        | Op::WatchAccess(_) => Ok(()),
    }
}

pub fn range(r: &RangeRequest) -> Result<(), Invalid> {
    if r.key.is_empty() {
        return Err(Invalid::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(Invalid::InvalidSortOption);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<(), Invalid> {
    if r.key.is_empty() {
        return Err(Invalid::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Invalid::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Invalid::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), Invalid> {
    if r.key.is_empty() {
        return Err(Invalid::EmptyKey);
    }
    Ok(())
}

/// Size, compares, every op, then duplicate keys in each branch.
pub fn txn(r: &TxnRequest, limits: &Limits) -> Result<(), Invalid> {
    txn_ops(r, limits.max_txn_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn txn_ops(r: &TxnRequest, max_ops: usize) -> Result<(), Invalid> {
    let n = r.compare.len().max(r.success.len()).max(r.failure.len());
    if n > max_ops {
        return Err(Invalid::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Invalid::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        request_op(op, max_ops - n)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_ops: usize) -> Result<(), Invalid> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(r),
        Some(Request::RequestPut(r)) => put(r),
        Some(Request::RequestDeleteRange(r)) => delete_range(r),
        Some(Request::RequestTxn(r)) => txn_ops(r, max_ops),
        None => Err(Invalid::EmptyOp),
    }
}

/// Deletes of one txn level: single keys or `[key, range_end)` compared byte-wise, exactly as
/// etcd's interval tree does (so a `"\0"` range end, which sorts before every key, covers
/// nothing here — etcd has the same quirk).
#[derive(Default)]
struct Deletes(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Deletes {
    fn covers(&self, key: &[u8]) -> bool {
        self.0.iter().any(|(start, end)| match end {
            None => start.as_slice() == key,
            Some(end) => start.as_slice() <= key && key < end.as_slice(),
        })
    }
}

/// etcd's duplicate-key rule for one branch: no key may be put twice, and no put may fall in
/// a delete of the same branch (nested txns included; the then/else of one nested txn may
/// put the same key, as only one of them runs).
fn check_intervals(reqs: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Deletes), Invalid> {
    let mut dels = Deletes::default();
    for op in reqs {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            let end = (!d.range_end.is_empty()).then(|| d.range_end.clone());
            dels.0.push((d.key.clone(), end));
        }
    }
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in reqs {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.covers(k) {
                return Err(Invalid::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || dels.covers(&k) {
                return Err(Invalid::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.0.extend(dels_then.0);
        dels.0.extend(dels_else.0);
    }
    for op in reqs {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || dels.covers(&p.key) {
            return Err(Invalid::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// etcd refuses a write whose encoded request exceeds `--max-request-bytes`.
pub fn size(msg: &impl Message, limits: &Limits) -> Result<(), Invalid> {
    if msg.encoded_len() > limits.max_request_bytes {
        return Err(Invalid::RequestTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use metastore_proto::etcdserverpb::Compare;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }

    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                prev_kv: false,
            })),
        }
    }

    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    fn check(success: Vec<RequestOp>) -> Result<(), Invalid> {
        txn(
            &TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            },
            &Limits::default(),
        )
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(
            check(vec![put_op("a"), put_op("a")]),
            Err(Invalid::DuplicateKey)
        );
        assert_eq!(
            check(vec![put_op("b"), del_op("a", "c")]),
            Err(Invalid::DuplicateKey)
        );
        assert_eq!(
            check(vec![put_op("a"), del_op("a", "")]),
            Err(Invalid::DuplicateKey)
        );
        assert_eq!(check(vec![del_op("a", "c"), del_op("b", "d")]), Ok(()));
        assert_eq!(check(vec![put_op("a"), put_op("b")]), Ok(()));
        // then/else of one nested txn may put the same key.
        assert_eq!(
            check(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]),
            Ok(())
        );
        assert_eq!(
            check(vec![put_op("a"), txn_op(vec![put_op("a")], vec![])]),
            Err(Invalid::DuplicateKey)
        );
        assert_eq!(
            check(vec![txn_op(vec![del_op("a", "z")], vec![]), put_op("b")]),
            Err(Invalid::DuplicateKey)
        );
    }

    #[test]
    fn op_limits_and_empty_ops() {
        let many: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(check(many), Err(Invalid::TooManyOps));
        assert_eq!(
            check(vec![RequestOp { request: None }]),
            Err(Invalid::EmptyOp)
        );
        let bad_compare = TxnRequest {
            compare: vec![Compare::default()],
            success: vec![],
            failure: vec![],
        };
        assert_eq!(
            txn(&bad_compare, &Limits::default()),
            Err(Invalid::EmptyKey)
        );
    }

    #[test]
    fn put_flags() {
        let p = |value: &str, lease, iv, il| PutRequest {
            key: b"k".to_vec(),
            value: value.into(),
            lease,
            prev_kv: false,
            ignore_value: iv,
            ignore_lease: il,
        };
        assert_eq!(put(&p("v", 0, true, false)), Err(Invalid::ValueProvided));
        assert_eq!(put(&p("", 5, false, true)), Err(Invalid::LeaseProvided));
        assert_eq!(put(&p("", 0, true, true)), Ok(()));
        assert_eq!(put(&PutRequest::default()), Err(Invalid::EmptyKey));
    }

    #[test]
    fn sizes() {
        let limits = Limits {
            max_txn_ops: 128,
            max_request_bytes: 100,
        };
        let big = PutRequest {
            key: b"k".to_vec(),
            value: vec![0; 200],
            ..Default::default()
        };
        assert_eq!(size(&big, &limits), Err(Invalid::RequestTooLarge));
        assert_eq!(size(&PutRequest::default(), &limits), Ok(()));
    }
}
