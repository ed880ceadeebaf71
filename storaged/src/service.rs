//! The internal storage gRPC service: decode, call the node, encode. The one place that maps
//! storaged's errors to internal error codes.

use crate::mvcc::{self, MvccError};
use crate::node::{Node, NodeError};
use crate::state_machine::{Applied, Command};
use crate::watch::{self, WatchHub};
use futures::{Stream, StreamExt};
use metastore_internal_proto::storage::kv_request::Op;
use metastore_internal_proto::storage::kv_response::Result as KvResult;
use metastore_internal_proto::storage::storage_server::Storage;
use metastore_internal_proto::storage::watch_upstream_request::Request as WatchAsk;
use metastore_internal_proto::storage::watch_upstream_response::Kind;
use metastore_internal_proto::storage::{
    ErrorCode, KvRequest, KvResponse, MemberInfoRequest, MemberInfoResponse, StorageError,
    WatchUpstreamRequest, WatchUpstreamResponse,
};
use metastore_proto::etcdserverpb::ResponseHeader;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered per watcher between its task and the gRPC stream.
const WATCH_OUT_QUEUE: usize = 16;

pub struct StorageService {
    node: Arc<Node>,
    hub: Arc<WatchHub>,
}

/// Fills the member-specific header fields; the revision comes from the operation.
#[derive(Clone, Copy)]
struct Stamp {
    cluster_id: u64,
    member_id: u64,
    raft_term: u64,
}

impl Stamp {
    fn apply(self, header: &mut Option<ResponseHeader>) {
        let h = header.get_or_insert_with(Default::default);
        h.cluster_id = self.cluster_id;
        h.member_id = self.member_id;
        h.raft_term = self.raft_term;
    }

    fn apply_watch(self, m: &mut WatchUpstreamResponse) {
        match &mut m.kind {
            Some(Kind::Created(x)) => self.apply(&mut x.header),
            Some(Kind::Events(x)) => self.apply(&mut x.header),
            Some(Kind::Progress(x)) => self.apply(&mut x.header),
            Some(Kind::Compacted(x)) => self.apply(&mut x.header),
            None => {}
        }
    }
}

impl StorageService {
    pub fn new(node: Arc<Node>, hub: Arc<WatchHub>) -> Self {
        Self { node, hub }
    }

    fn stamp_values(&self) -> Stamp {
        Stamp {
            cluster_id: self.node.identity().cluster_id,
            member_id: self.node.identity().member_id,
            raft_term: self.node.raft_term(),
        }
    }

    fn stamp(&self, header: &mut Option<ResponseHeader>) {
        self.stamp_values().apply(header);
    }

    async fn execute(&self, op: Op) -> Result<KvResult, NodeError> {
        let node = &self.node;
        Ok(match op {
            Op::Range(r) => KvResult::Range(node.range(r).await?),
            Op::Txn(t) if mvcc::is_read_only_txn(&t) => KvResult::Txn(node.read_txn(t).await?),
            Op::Txn(t) => applied(node.write(Command::Txn(t)).await?),
            Op::Put(p) => applied(node.write(Command::Put(p)).await?),
            Op::DeleteRange(d) => applied(node.write(Command::DeleteRange(d)).await?),
            Op::Compact(c) => applied(node.write(Command::Compact(c)).await?),
            Op::LeaseGrant(r) => KvResult::LeaseGrant(node.lease_grant(r).await?),
            Op::LeaseRevoke(r) => KvResult::LeaseRevoke(node.lease_revoke(r.id).await?),
            Op::LeaseKeepAlive(r) => KvResult::LeaseKeepAlive(node.lease_keep_alive(r.id)),
            Op::LeaseTimeToLive(r) => KvResult::LeaseTimeToLive(node.lease_time_to_live(&r)),
            Op::LeaseLeases(_) => KvResult::LeaseLeases(node.lease_leases()),
        })
    }
}

fn applied(a: Applied) -> KvResult {
    match a {
        Applied::Put(r) => KvResult::Put(r),
        Applied::DeleteRange(r) => KvResult::DeleteRange(r),
        Applied::Txn(r) => KvResult::Txn(r),
        Applied::Compact(r) => KvResult::Compact(r),
        Applied::Lease { revision } => KvResult::Error(StorageError {
            code: ErrorCode::StorageFailure as i32,
            detail: format!("lease change at revision {revision} reached the KV path"),
        }),
    }
}

fn storage_error(e: &NodeError) -> StorageError {
    let code = match e {
        NodeError::Mvcc(m) => match m {
            MvccError::Compacted => ErrorCode::Compacted,
            MvccError::FutureRev => ErrorCode::FutureRevision,
            MvccError::LeaseNotFound => ErrorCode::LeaseNotFound,
            MvccError::LeaseExists => ErrorCode::LeaseExists,
            MvccError::LeaseTtlTooLarge => ErrorCode::LeaseTtlTooLarge,
            MvccError::KeyNotFound => ErrorCode::KeyNotFound,
            MvccError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            MvccError::Corrupt(_) | MvccError::Engine(_) => ErrorCode::StorageFailure,
        },
        NodeError::Task(_) => ErrorCode::StorageFailure,
    };
    StorageError {
        code: code as i32,
        detail: e.to_string(),
    }
}

#[tonic::async_trait]
impl Storage for StorageService {
    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<WatchUpstreamResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchUpstreamRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut inbound = request.into_inner();
        let start = match inbound.message().await? {
            Some(WatchUpstreamRequest {
                request: Some(WatchAsk::Start(start)),
            }) => start,
            _ => return Err(Status::invalid_argument("a watch must begin with start")),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_OUT_QUEUE);
        watch::spawn(
            self.hub.clone(),
            self.node.store().clone(),
            start,
            inbound,
            tx,
        );
        let stamp = self.stamp_values();
        let stream = ReceiverStream::new(rx).map(move |mut m| {
            stamp.apply_watch(&mut m);
            Ok(m)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn kv(&self, request: Request<KvRequest>) -> Result<Response<KvResponse>, Status> {
        let req = request.into_inner();
        let Some(op) = req.op else {
            return Err(Status::invalid_argument("empty storage request"));
        };
        let result = match self.execute(op).await {
            Ok(mut r) => {
                match &mut r {
                    KvResult::Range(x) => self.stamp(&mut x.header),
                    KvResult::Put(x) => self.stamp(&mut x.header),
                    KvResult::DeleteRange(x) => self.stamp(&mut x.header),
                    KvResult::Txn(x) => self.stamp(&mut x.header),
                    KvResult::Compact(x) => self.stamp(&mut x.header),
                    KvResult::LeaseGrant(x) => self.stamp(&mut x.header),
                    KvResult::LeaseRevoke(x) => self.stamp(&mut x.header),
                    KvResult::LeaseKeepAlive(x) => self.stamp(&mut x.header),
                    KvResult::LeaseTimeToLive(x) => self.stamp(&mut x.header),
                    KvResult::LeaseLeases(x) => self.stamp(&mut x.header),
                    KvResult::Error(_) => {}
                }
                r
            }
            Err(e) => {
                if matches!(
                    e,
                    NodeError::Task(_)
                        | NodeError::Mvcc(MvccError::Engine(_) | MvccError::Corrupt(_))
                ) {
                    tracing::error!(error = %e, request_id = req.context.map(|c| c.request_id), "storage failure");
                }
                KvResult::Error(storage_error(&e))
            }
        };
        Ok(Response::new(KvResponse {
            result: Some(result),
        }))
    }

    async fn member_info(
        &self,
        _request: Request<MemberInfoRequest>,
    ) -> Result<Response<MemberInfoResponse>, Status> {
        let mut header = Some(ResponseHeader {
            revision: self.node.store().current_revision(),
            ..Default::default()
        });
        self.stamp(&mut header);
        Ok(Response::new(MemberInfoResponse {
            header,
            name: self.node.identity().name.clone(),
            engine: self.node.store().engine().kind().to_string(),
        }))
    }
}
