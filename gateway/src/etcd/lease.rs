//! `etcdserverpb.Lease`: grant, revoke, keep-alive streams, time-to-live, list.

use crate::upstream::Upstream;
use futures::StreamExt;
use metastore_internal_proto::storage::Consistency;
use metastore_internal_proto::storage::kv_request::Op;
use metastore_proto::etcdserverpb::lease_server::Lease;
use metastore_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct LeaseService {
    upstream: Upstream,
}

impl LeaseService {
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        let result = self
            .upstream
            .kv(Consistency::Linearizable, Op::LeaseGrant(r))
            .await?;
        Ok(Response::new(expect_result!(result, LeaseGrant)?))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let r = request.into_inner();
        let result = self
            .upstream
            .kv(Consistency::Linearizable, Op::LeaseRevoke(r))
            .await?;
        Ok(Response::new(expect_result!(result, LeaseRevoke)?))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    /// One answer per request, in order; an unknown or expired lease is answered with TTL 0
    /// and the stream goes on. The stream ends normally when the client stops sending.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let upstream = self.upstream.clone();
        tokio::spawn(async move {
            while let Some(Ok(r)) = inbound.next().await {
                let answer = match upstream
                    .kv(Consistency::Linearizable, Op::LeaseKeepAlive(r))
                    .await
                {
                    Ok(result) => expect_result!(result, LeaseKeepAlive).map_err(Status::from),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let result = self
            .upstream
            .kv(Consistency::Linearizable, Op::LeaseTimeToLive(r))
            .await?;
        Ok(Response::new(expect_result!(result, LeaseTimeToLive)?))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let r = request.into_inner();
        let result = self
            .upstream
            .kv(Consistency::Linearizable, Op::LeaseLeases(r))
            .await?;
        Ok(Response::new(expect_result!(result, LeaseLeases)?))
    }
}
