//! Connections to storaged. Every client request becomes one call here.
//!
//! Before raft replication lands, a storaged is a one-member cluster, so the gateway sends
//! everything to the first `--storage-endpoints` entry; leader tracking and read spreading
//! across members arrive with replication.

use crate::error::{self, Error};
use metastore_internal_proto::storage::kv_request::Op;
use metastore_internal_proto::storage::kv_response::Result as KvResult;
use metastore_internal_proto::storage::storage_client::StorageClient;
use metastore_internal_proto::storage::{
    Consistency, KvRequest, MemberInfoRequest, MemberInfoResponse, RequestContext,
    WatchUpstreamRequest, WatchUpstreamResponse,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// etcd's request timeout with default settings: 5 s + 2 x election timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
const MAX_INTERNAL_MESSAGE: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct Upstream {
    /// Unary calls, each bounded by the request timeout.
    client: StorageClient<Channel>,
    /// Long-lived streams (watches), on their own connection without a deadline.
    streams: StorageClient<Channel>,
    next_request_id: std::sync::Arc<AtomicU64>,
}

impl Upstream {
    /// Prepares connections (made lazily, so a gateway may start before storaged).
    pub fn new(endpoints: &[String]) -> Result<Self, String> {
        let first = endpoints
            .first()
            .ok_or_else(|| "--storage-endpoints is empty".to_string())?;
        let endpoint = Endpoint::from_shared(first.clone())
            .map_err(|e| format!("--storage-endpoints {first}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let client = |endpoint: Endpoint| {
            StorageClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(MAX_INTERNAL_MESSAGE)
                .max_encoding_message_size(MAX_INTERNAL_MESSAGE)
        };
        Ok(Self {
            client: client(endpoint.clone().timeout(REQUEST_TIMEOUT)),
            streams: client(endpoint),
            next_request_id: std::sync::Arc::new(AtomicU64::new(1)),
        })
    }

    /// Identity and current revision of the member the gateway talks to.
    pub async fn member_info(&self) -> Result<MemberInfoResponse, Error> {
        self.client
            .clone()
            .member_info(MemberInfoRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| error::from_upstream(&s))
    }

    /// Opens one upstream watch. `asks` carries the start request and later progress asks.
    pub async fn watch(
        &self,
        asks: mpsc::Receiver<WatchUpstreamRequest>,
    ) -> Result<Streaming<WatchUpstreamResponse>, Error> {
        self.streams
            .clone()
            .watch(ReceiverStream::new(asks))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| error::from_upstream(&s))
    }

    pub async fn kv(&self, consistency: Consistency, op: Op) -> Result<KvResult, Error> {
        let request = KvRequest {
            context: Some(RequestContext {
                request_id: self.next_request_id.fetch_add(1, Ordering::Relaxed),
                caller: String::new(),
                consistency: consistency as i32,
            }),
            op: Some(op),
        };
        let response = self
            .client
            .clone()
            .kv(request)
            .await
            .map_err(|s| error::from_upstream(&s))?;
        match response.into_inner().result {
            Some(KvResult::Error(e)) => Err(e.into()),
            Some(r) => Ok(r),
            None => Err(Error::Internal("empty storage response".into())),
        }
    }
}
