//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use crate::upstream::Upstream;
use crate::validate::{self, Limits};
use metastore_internal_proto::storage::Consistency;
use metastore_internal_proto::storage::kv_request::Op;
use metastore_proto::etcdserverpb::kv_server::Kv;
use metastore_proto::etcdserverpb::request_op::Request as OpRequest;
use metastore_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

pub struct KvService {
    upstream: Upstream,
    limits: Limits,
}

impl KvService {
    pub fn new(upstream: Upstream, limits: Limits) -> Self {
        Self { upstream, limits }
    }
}

/// A txn made only of serializable ranges may be served by any member (etcd's rule).
fn txn_consistency(t: &TxnRequest) -> Consistency {
    let serializable = t
        .success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(OpRequest::RequestRange(r)) => r.serializable,
            Some(OpRequest::RequestTxn(t)) => txn_consistency(t) == Consistency::Serializable,
            _ => false,
        });
    if serializable {
        Consistency::Serializable
    } else {
        Consistency::Linearizable
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let r = request.into_inner();
        validate::range(&r)?;
        let consistency = if r.serializable {
            Consistency::Serializable
        } else {
            Consistency::Linearizable
        };
        Ok(Response::new(expect_result!(
            self.upstream.kv(consistency, Op::Range(r)).await?,
            Range
        )?))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = request.into_inner();
        validate::put(&r)?;
        validate::size(&r, &self.limits)?;
        Ok(Response::new(expect_result!(
            self.upstream
                .kv(Consistency::Linearizable, Op::Put(r))
                .await?,
            Put
        )?))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let r = request.into_inner();
        validate::delete_range(&r)?;
        validate::size(&r, &self.limits)?;
        Ok(Response::new(expect_result!(
            self.upstream
                .kv(Consistency::Linearizable, Op::DeleteRange(r))
                .await?,
            DeleteRange
        )?))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let r = request.into_inner();
        validate::txn(&r, &self.limits)?;
        validate::size(&r, &self.limits)?;
        let consistency = txn_consistency(&r);
        Ok(Response::new(expect_result!(
            self.upstream.kv(consistency, Op::Txn(r)).await?,
            Txn
        )?))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(expect_result!(
            self.upstream
                .kv(Consistency::Linearizable, Op::Compact(r))
                .await?,
            Compact
        )?))
    }
}
