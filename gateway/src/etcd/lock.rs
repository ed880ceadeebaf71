//! `v3lockpb.Lock`: a distributed mutex over plain keys, with etcd's server-side semantics.
//! Lock claims `name/<lease hex>` and returns once every key under `name/` created before it
//! is gone; Unlock deletes the key. Ownership ends with the lease.

use super::concurrency::{self, GiveUpOnDrop, answer};
use crate::error::Error;
use crate::upstream::Upstream;
use metastore_internal_proto::storage::kv_request::Op;
use metastore_proto::etcdserverpb::DeleteRangeRequest;
use metastore_proto::v3lockpb::lock_server::Lock;
use metastore_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

pub struct LockService {
    upstream: Upstream,
}

impl LockService {
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }

    async fn acquire(&self, req: LockRequest) -> Result<LockResponse, Error> {
        let up = &self.upstream;
        let lease = concurrency::lease_or_grant(up, req.lease).await?;
        let claim = concurrency::claim(up, &req.name, lease, b"").await?;
        let owns = claim
            .oldest
            .as_ref()
            .is_none_or(|kv| kv.create_revision == claim.revision);
        let header = if owns {
            claim.header
        } else {
            // If the caller goes away while waiting, the claim is given up.
            let guard = GiveUpOnDrop::new(up, &claim.key, claim.revision);
            let prefix = concurrency::prefix(&req.name);
            concurrency::wait_deletes(up, &prefix, claim.revision - 1).await?;
            // The owner key may have gone with its lease meanwhile: then the caller does not
            // hold the lock (etcd 3.5's answer; 3.4 reported the lock as taken).
            let (header, held) = concurrency::get(up, &claim.key).await?;
            guard.disarm();
            if held.is_none_or(|kv| kv.create_revision != claim.revision) {
                return Err(Error::LockSessionExpired);
            }
            header
        };
        Ok(LockResponse {
            header: Some(header),
            key: claim.key,
        })
    }

    async fn release(&self, req: UnlockRequest) -> Result<UnlockResponse, Error> {
        let delete = DeleteRangeRequest {
            key: req.key,
            ..Default::default()
        };
        let r = expect_result!(
            self.upstream.kv(Op::DeleteRange(delete)).await?,
            DeleteRange
        )?;
        Ok(UnlockResponse { header: r.header })
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        answer(self.acquire(request.into_inner()).await)
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        answer(self.release(request.into_inner()).await)
    }
}
