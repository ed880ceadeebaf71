//! `etcdserverpb.Maintenance`: facts about one member. A gateway answers from the member it
//! prefers, so `etcdctl endpoint status` over several gateways shows several members.

use crate::error::Error;
use crate::upstream::Upstream;
use metastore_internal_proto::storage::kv_request::Op;
use metastore_proto::etcdserverpb::maintenance_server::Maintenance;
use metastore_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct MaintenanceService {
    upstream: Upstream,
}

impl MaintenanceService {
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// GET lists the active alarms (all, or of one type); ACTIVATE and DEACTIVATE raise or
    /// clear one member's alarm through raft, for the whole cluster.
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let op = Op::Alarm(request.into_inner());
        let r = expect_result!(self.upstream.kv(op).await?, Alarm)?;
        Ok(Response::new(r))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let status = self.upstream.status().await?;
        let status = status
            .status
            .ok_or_else(|| Error::Internal("empty status response".into()))?;
        Ok(Response::new(status))
    }

    /// Defragments the member this gateway prefers; it keeps serving meanwhile.
    async fn defragment(
        &self,
        _request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let answer = self
            .upstream
            .defragment()
            .await
            .map_err(Error::in_maintenance)?;
        Ok(Response::new(answer))
    }

    /// The hash of every stored revision (what HashKV at the current revision hashes).
    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let resp = self
            .upstream
            .hash_kv(HashKvRequest { revision: 0 })
            .await
            .map_err(Error::in_maintenance)?;
        Ok(Response::new(HashResponse {
            header: resp.header,
            hash: resp.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let answer = self
            .upstream
            .hash_kv(request.into_inner())
            .await
            .map_err(Error::in_maintenance)?;
        Ok(Response::new(answer))
    }

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    /// The preferred member's store as an etcd database file, chunk by chunk, then its
    /// SHA-256 (what `etcdctl snapshot save` writes to disk and checks).
    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let mut upstream = self
            .upstream
            .snapshot()
            .await
            .map_err(Error::in_maintenance)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let item = match upstream.message().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => return,
                    Err(status) => Err(Status::from(crate::error::from_upstream(&status))),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        Ok(Response::new(self.upstream.move_leader(target).await?))
    }

    /// etcd 3.5's Downgrade, decided by the leader against the version storaged reports.
    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        let op = Op::Downgrade(request.into_inner());
        let r = expect_result!(self.upstream.kv(op).await?, Downgrade)?;
        Ok(Response::new(r))
    }
}
