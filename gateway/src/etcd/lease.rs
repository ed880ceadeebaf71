//! `etcdserverpb.Lease`: grant, revoke, keep-alive streams, time-to-live, list.

use crate::keepalive::KeepAliveHub;
use crate::upstream::Upstream;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
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

/// Renewals of one client stream being answered at once.
const STREAM_IN_FLIGHT: usize = 256;

pub struct LeaseService {
    upstream: Upstream,
    hub: KeepAliveHub,
}

impl LeaseService {
    pub fn new(upstream: Upstream, hub: KeepAliveHub) -> Self {
        Self { upstream, hub }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        let result = self.upstream.kv(Op::LeaseGrant(r)).await?;
        Ok(Response::new(expect_result!(result, LeaseGrant)?))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let r = request.into_inner();
        let result = self.upstream.kv(Op::LeaseRevoke(r)).await?;
        Ok(Response::new(expect_result!(result, LeaseRevoke)?))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    /// One answer per request, in order; an unknown or expired lease is answered with TTL 0
    /// and the stream goes on. Renewals go through the gateway's keep-alive hub, several of a
    /// stream at once. The stream ends normally when the client stops sending.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let mut waiting = FuturesOrdered::new();
            let mut open = true;
            while open || !waiting.is_empty() {
                tokio::select! {
                    request = inbound.next(), if open && waiting.len() < STREAM_IN_FLIGHT => {
                        match request {
                            Some(Ok(r)) => {
                                let hub = hub.clone();
                                waiting.push_back(async move { hub.renew(r.id).await });
                            }
                            _ => open = false,
                        }
                    }
                    Some(answer) = waiting.next(), if !waiting.is_empty() => {
                        let answer = answer.map_err(Status::from);
                        let failed = answer.is_err();
                        if tx.send(answer).await.is_err() || failed {
                            return;
                        }
                    }
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
        let result = self.upstream.kv(Op::LeaseTimeToLive(r)).await?;
        Ok(Response::new(expect_result!(result, LeaseTimeToLive)?))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let r = request.into_inner();
        let result = self.upstream.kv(Op::LeaseLeases(r)).await?;
        Ok(Response::new(expect_result!(result, LeaseLeases)?))
    }
}
