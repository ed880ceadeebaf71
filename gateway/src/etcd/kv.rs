//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact. Each handler validates, makes one
//! upstream call (which classifies the request), and takes the expected answer out.

use crate::upstream::Upstream;
use metastore_internal_proto::storage::kv_request::Op;
use metastore_proto::etcdserverpb::kv_server::Kv;
use metastore_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use metastore_request::{Limits, validate};
use tonic::{Request, Response, Status};

pub struct KvService {
    upstream: Upstream,
    limits: Limits,
}

impl KvService {
    pub fn new(upstream: Upstream, limits: Limits) -> Self {
        Self { upstream, limits }
    }

    async fn call(
        &self,
        op: Op,
    ) -> Result<metastore_internal_proto::storage::kv_response::Result, Status> {
        validate::op(&op, &self.limits).map_err(crate::error::Error::from)?;
        Ok(self.upstream.kv(op).await?)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let op = Op::Range(request.into_inner());
        Ok(Response::new(expect_result!(self.call(op).await?, Range)?))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let op = Op::Put(request.into_inner());
        Ok(Response::new(expect_result!(self.call(op).await?, Put)?))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let op = Op::DeleteRange(request.into_inner());
        Ok(Response::new(expect_result!(
            self.call(op).await?,
            DeleteRange
        )?))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let op = Op::Txn(request.into_inner());
        Ok(Response::new(expect_result!(self.call(op).await?, Txn)?))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let op = Op::Compact(request.into_inner());
        Ok(Response::new(expect_result!(
            self.call(op).await?,
            Compact
        )?))
    }
}
