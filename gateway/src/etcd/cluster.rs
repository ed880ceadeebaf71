//! `etcdserverpb.Cluster`: membership of the storaged raft group.
//!
//! Members are storaged processes; etcd clients reach the cluster through gateways, so a
//! member's `clientURLs` are gateway URLs: this gateway lists its own `--advertise-client-urls`
//! under the member it prefers (the one answering it).

use crate::error::Error;
use crate::upstream::Upstream;
use metastore_internal_proto::storage::cluster_request::Op;
use metastore_internal_proto::storage::cluster_response::Result as ClusterResult;
use metastore_proto::etcdserverpb::cluster_server::Cluster;
use metastore_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

pub struct ClusterService {
    upstream: Upstream,
    advertise_client_urls: Vec<String>,
}

impl ClusterService {
    pub fn new(upstream: Upstream, advertise_client_urls: Vec<String>) -> Self {
        Self {
            upstream,
            advertise_client_urls,
        }
    }

    /// Fills in this gateway's URLs as the client URLs of the member that answered.
    fn with_client_urls(&self, header: &Option<ResponseHeader>, members: &mut [Member]) {
        let answering = header.as_ref().map_or(0, |h| h.member_id);
        for m in members.iter_mut().filter(|m| m.id == answering) {
            m.client_ur_ls = self.advertise_client_urls.clone();
        }
    }
}

/// etcd accepts absolute URLs with a scheme and a host:port.
fn valid_peer_urls(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|u| {
            let Some((scheme, rest)) = u.split_once("://") else {
                return false;
            };
            matches!(scheme, "http" | "https" | "unix" | "unixs")
                && rest
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        })
}

macro_rules! cluster_result {
    ($result:expr, $variant:ident) => {
        match $result {
            ClusterResult::$variant(r) => Ok(r),
            other => Err(Error::Internal(format!(
                "storage answered {} with {other:?}",
                stringify!($variant)
            ))),
        }
    };
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let r = request.into_inner();
        if !valid_peer_urls(&r.peer_ur_ls) {
            return Err(Error::MemberBadUrls.into());
        }
        let result = self.upstream.cluster(Op::MemberAdd(r)).await?;
        let mut resp = cluster_result!(result, MemberAdd)?;
        self.with_client_urls(&resp.header, &mut resp.members);
        Ok(Response::new(resp))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let result = self
            .upstream
            .cluster(Op::MemberRemove(request.into_inner()))
            .await?;
        let mut resp = cluster_result!(result, MemberRemove)?;
        self.with_client_urls(&resp.header, &mut resp.members);
        Ok(Response::new(resp))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = request.into_inner();
        if !valid_peer_urls(&r.peer_ur_ls) {
            return Err(Error::MemberBadUrls.into());
        }
        let result = self.upstream.cluster(Op::MemberUpdate(r)).await?;
        let mut resp = cluster_result!(result, MemberUpdate)?;
        self.with_client_urls(&resp.header, &mut resp.members);
        Ok(Response::new(resp))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let result = self
            .upstream
            .cluster(Op::MemberList(request.into_inner()))
            .await?;
        let mut resp = cluster_result!(result, MemberList)?;
        self.with_client_urls(&resp.header, &mut resp.members);
        Ok(Response::new(resp))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let result = self
            .upstream
            .cluster(Op::MemberPromote(request.into_inner()))
            .await?;
        let mut resp = cluster_result!(result, MemberPromote)?;
        self.with_client_urls(&resp.header, &mut resp.members);
        Ok(Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_peer_urls;

    #[test]
    fn peer_urls_are_checked_like_etcd() {
        let ok = |u: &[&str]| valid_peer_urls(&u.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["http://127.0.0.1:2380"]));
        assert!(ok(&["https://node-1:2380", "http://10.0.0.1:12380"]));
        assert!(!ok(&[]));
        assert!(!ok(&["127.0.0.1:2380"]));
        assert!(!ok(&["http://127.0.0.1"]));
        assert!(!ok(&["ftp://x:1"]));
    }
}
