//! etcd request semantics on top of the store: Put, DeleteRange, Txn, Compact, Range.
//!
//! Responses carry `header.revision` only; the service layer adds cluster, member and term.

use super::error::MvccError;
use super::key_range::KeyRange;
use super::read::{self, read_revision};
use super::store::{KvView, ReadTxn, Store, WriteTxn};
use metastore_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use metastore_proto::etcdserverpb::request_op::Request;
use metastore_proto::etcdserverpb::response_op::Response;
use metastore_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, TxnResponse,
};
use metastore_proto::mvccpb::KeyValue;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// True when every op in both branches (recursively) is a Range: such a txn changes nothing
/// and is served as a read.
pub fn is_read_only_txn(req: &TxnRequest) -> bool {
    metastore_request::class::txn_reads(req).is_some()
}

/// Serves a read-only txn (see [`is_read_only_txn`]) from a read view.
pub fn txn_read_only(store: &Store, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
    let mut view = store.read();
    txn(&mut view, req)
}

impl Store {
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        read::range(&self.read(), req)
    }
}

impl WriteTxn<'_> {
    pub fn apply_put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        exec_put(self, req)
    }

    pub fn apply_delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        exec_delete(self, req)
    }

    pub fn apply_txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        txn(self, req)
    }

    pub fn apply_compact(
        &mut self,
        req: &CompactionRequest,
    ) -> Result<CompactionResponse, MvccError> {
        self.compact(req.revision)?;
        Ok(CompactionResponse {
            header: header(self.visible_revision()),
        })
    }
}

/// What a txn needs from the view it runs on: reads for all, writes for write txns.
trait TxnTarget: KvView {
    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError>;
    fn delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError>;
}

impl TxnTarget for WriteTxn<'_> {
    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        exec_put(self, req)
    }
    fn delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        exec_delete(self, req)
    }
}

impl TxnTarget for ReadTxn<'_> {
    fn put(&mut self, _: &PutRequest) -> Result<PutResponse, MvccError> {
        Err(MvccError::InvalidRequest("put in a read-only txn".into()))
    }
    fn delete(&mut self, _: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        Err(MvccError::InvalidRequest(
            "delete in a read-only txn".into(),
        ))
    }
}

fn latest(view: &impl KvView, key: &[u8]) -> Result<Option<KeyValue>, MvccError> {
    match view.index().latest(key) {
        Some(e) => view.value(e.rev).map(Some),
        None => Ok(None),
    }
}

fn check_put(view: &impl KvView, req: &PutRequest) -> Result<(), MvccError> {
    if (req.ignore_value || req.ignore_lease) && view.index().latest(&req.key).is_none() {
        return Err(MvccError::KeyNotFound);
    }
    if !req.ignore_lease && req.lease != 0 && !view.lease_exists(req.lease) {
        return Err(MvccError::LeaseNotFound);
    }
    Ok(())
}

/// Checks the put against the store as the ops before it in the same write left it, then
/// runs it.
fn exec_put(w: &mut WriteTxn<'_>, req: &PutRequest) -> Result<PutResponse, MvccError> {
    check_put(w, req)?;
    let prev = latest(w, &req.key)?;
    let (value, lease) = match (&prev, req.ignore_value, req.ignore_lease) {
        (None, true, _) | (None, _, true) => return Err(MvccError::KeyNotFound),
        (Some(p), iv, il) => (
            if iv {
                p.value.clone()
            } else {
                req.value.clone()
            },
            if il { p.lease } else { req.lease },
        ),
        (None, false, false) => (req.value.clone(), req.lease),
    };
    let prev_kv = if req.prev_kv { prev.clone() } else { None };
    w.put(&req.key, value, lease, prev);
    Ok(PutResponse {
        header: header(w.visible_revision()),
        prev_kv,
    })
}

fn exec_delete(
    w: &mut WriteTxn<'_>,
    req: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, MvccError> {
    let deleted = w.delete_range(&KeyRange::new(&req.key, &req.range_end))?;
    Ok(DeleteRangeResponse {
        header: header(w.visible_revision()),
        deleted: deleted.len() as i64,
        prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
    })
}

/// Which branch each (nested) txn takes, decided before any op runs, as etcd does.
struct TxnPath {
    succeeded: bool,
    nested: Vec<TxnPath>,
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

fn compare_path(view: &impl KvView, req: &TxnRequest) -> Result<TxnPath, MvccError> {
    let mut succeeded = true;
    for c in &req.compare {
        if !compare(view, c)? {
            succeeded = false;
            break;
        }
    }
    let mut nested = Vec::new();
    for op in branch(req, succeeded) {
        if let Some(Request::RequestTxn(t)) = &op.request {
            nested.push(compare_path(view, t)?);
        }
    }
    Ok(TxnPath { succeeded, nested })
}

fn compare(view: &impl KvView, c: &Compare) -> Result<bool, MvccError> {
    let rev = view.visible_revision();
    let mut entries = Vec::new();
    view.index()
        .range(&KeyRange::new(&c.key, &c.range_end), rev, |_, e| {
            entries.push(e);
            true
        });
    let target = CompareTarget::try_from(c.target).ok();
    if entries.is_empty() {
        if target == Some(CompareTarget::Value) {
            return Ok(false);
        }
        return Ok(compare_kv(c, target, &KeyValue::default()));
    }
    for e in entries {
        let kv = if target == Some(CompareTarget::Value) {
            view.value(e.rev)?
        } else {
            KeyValue {
                create_revision: e.create,
                mod_revision: e.rev.main,
                version: e.version,
                lease: e.lease,
                ..Default::default()
            }
        };
        if !compare_kv(c, target, &kv) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn compare_kv(c: &Compare, target: Option<CompareTarget>, kv: &KeyValue) -> bool {
    let int = |f: fn(&TargetUnion) -> Option<i64>| c.target_union.as_ref().and_then(f).unwrap_or(0);
    let ord = match target {
        Some(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Some(CompareTarget::Version) => kv.version.cmp(&int(|t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Create) => kv.create_revision.cmp(&int(|t| match t {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Mod) => kv.mod_revision.cmp(&int(|t| match t {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Lease) => kv.lease.cmp(&int(|t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        None => std::cmp::Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord.is_eq(),
        Ok(CompareResult::NotEqual) => ord.is_ne(),
        Ok(CompareResult::Greater) => ord.is_gt(),
        Ok(CompareResult::Less) => ord.is_lt(),
        Err(_) => true,
    }
}

/// Checks what can be checked on the chosen path before anything runs (read revisions,
/// the shape of nested txns). Puts are checked as they run, against the state the earlier
/// ops left; a txn that fails part way is undone as a whole by the store.
fn check_path(view: &impl KvView, req: &TxnRequest, path: &TxnPath) -> Result<(), MvccError> {
    let mut nested = path.nested.iter();
    for op in branch(req, path.succeeded) {
        match &op.request {
            Some(Request::RequestRange(r)) => {
                read_revision(view, r.revision)?;
            }
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => {}
            Some(Request::RequestTxn(t)) => {
                let p = nested
                    .next()
                    .ok_or_else(|| MvccError::InvalidRequest("txn path mismatch".into()))?;
                check_path(view, t, p)?;
            }
            None => return Err(MvccError::KeyNotFound),
        }
    }
    Ok(())
}

fn txn(target: &mut impl TxnTarget, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
    let path = compare_path(target, req)?;
    check_path(target, req, &path)?;
    let mut resp = exec_path(target, req, &path)?;
    resp.header = header(target.visible_revision());
    Ok(resp)
}

fn exec_path(
    target: &mut impl TxnTarget,
    req: &TxnRequest,
    path: &TxnPath,
) -> Result<TxnResponse, MvccError> {
    let ops = branch(req, path.succeeded);
    let mut nested = path.nested.iter();
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Response::ResponseRange(read::range(target, r)?),
            Some(Request::RequestPut(p)) => Response::ResponsePut(target.put(p)?),
            Some(Request::RequestDeleteRange(d)) => {
                Response::ResponseDeleteRange(target.delete(d)?)
            }
            Some(Request::RequestTxn(t)) => {
                let p = nested
                    .next()
                    .ok_or_else(|| MvccError::InvalidRequest("txn path mismatch".into()))?;
                // etcd leaves nested txn headers empty (present, all zero).
                let mut r = exec_path(target, t, p)?;
                r.header = Some(ResponseHeader::default());
                Response::ResponseTxn(r)
            }
            None => return Err(MvccError::KeyNotFound),
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded: path.succeeded,
        responses,
    })
}
