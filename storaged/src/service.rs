//! The internal storage gRPC service: decode, call the node, encode. The one place that maps
//! storaged's errors to internal error codes.

use crate::cluster::{self, MembershipError};
use crate::command::{Command, Origin, Proposal};
use crate::forward::{self, Forwarder, LEADER_WAIT};
use crate::keepalive::Renewer;
use crate::mvcc::{self, MvccError};
use crate::node::{Node, NodeError};
use crate::state_machine::Applied;
use crate::watch::{self, WatchHub};
use futures::{Stream, StreamExt};
use metastore_internal_proto::storage::cluster_request::Op as ClusterOp;
use metastore_internal_proto::storage::cluster_response::Result as ClusterResult;
use metastore_internal_proto::storage::kv_request::Op;
use metastore_internal_proto::storage::kv_response::Result as KvResult;
use metastore_internal_proto::storage::storage_server::Storage;
use metastore_internal_proto::storage::watch_upstream_request::Request as WatchAsk;
use metastore_internal_proto::storage::watch_upstream_response::Kind;
use metastore_internal_proto::storage::{
    ClusterRequest, ClusterResponse, HashKvReply, MoveLeaderAsk, MoveLeaderReply,
    PublishGatewayRequest, PublishGatewayResponse, PublishName, StatusRequest, StatusResponse,
};
use metastore_internal_proto::storage::{
    ErrorCode, KvRequest, KvResponse, MemberInfoRequest, MemberInfoResponse, RenewBatch,
    RenewReply, RequestContext, StorageError, WatchUpstreamRequest, WatchUpstreamResponse,
};
use metastore_proto::etcdserverpb::ResponseHeader;
use metastore_proto::etcdserverpb::{HashKvRequest, MoveLeaderResponse};
use metastore_request::{Invalid, Limits, classify, validate};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered per watcher between its task and the gRPC stream.
const WATCH_OUT_QUEUE: usize = 16;

pub struct StorageService {
    node: Arc<Node>,
    hub: Arc<WatchHub>,
    forwarder: Forwarder,
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
        Self {
            forwarder: Forwarder::new(node.clone()),
            node,
            hub,
        }
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

    async fn execute(&self, op: Op, ctx: &RequestContext) -> Result<KvResult, NodeError> {
        let node = &self.node;
        let class = classify(&op);
        let origin = (ctx.gateway_id != 0).then_some(Origin {
            gateway: ctx.gateway_id,
            request: ctx.request_id,
        });
        let write = |command| Proposal { origin, command };
        let min_revision = ctx.min_revision;
        Ok(match op {
            Op::Range(r) => KvResult::Range(node.range(r, min_revision).await?),
            Op::Txn(t) if !class.is_write() => {
                KvResult::Txn(node.read_txn(t, class.serializable(), min_revision).await?)
            }
            Op::Txn(t) => applied(node.write(write(Command::Txn(t))).await?),
            Op::Put(p) => applied(node.write(write(Command::Put(p))).await?),
            Op::DeleteRange(d) => applied(node.write(write(Command::DeleteRange(d))).await?),
            Op::Compact(c) => applied(node.write(write(Command::Compact(c))).await?),
            Op::LeaseGrant(r) => KvResult::LeaseGrant(node.lease_grant(r).await?),
            Op::LeaseRevoke(r) => KvResult::LeaseRevoke(node.lease_revoke(r.id).await?),
            Op::LeaseTimeToLive(r) => KvResult::LeaseTimeToLive(node.lease_time_to_live(&r).await?),
            Op::LeaseLeases(_) => KvResult::LeaseLeases(node.lease_leases().await?),
        })
    }

    /// Runs `op` here, or on the leader when this member does not lead.
    async fn execute_anywhere(&self, req: &KvRequest, op: Op) -> Result<KvResult, NodeError> {
        let ctx = req.context.clone().unwrap_or_default();
        let forwarded = ctx.forwarded;
        // Checked here whatever the gateway did: this port can be reached directly.
        validate::op(&op, &Limits::APPLY).map_err(MvccError::from)?;
        if !forwarded && self.node.is_learner() && !is_serializable_range(&op) {
            return Err(NodeError::Learner);
        }
        let mut leader = match self.execute(op.clone(), &ctx).await {
            Err(NodeError::NotLeader(leader)) if !forwarded => leader,
            other => return other,
        };
        for _ in 0..2 {
            let (id, member) = match leader {
                Some(l) => l,
                None => self
                    .node
                    .wait_leader(LEADER_WAIT)
                    .await
                    .ok_or(NodeError::NotLeader(None))?,
            };
            if id == self.node.identity().member_id {
                match self.execute(op.clone(), &ctx).await {
                    Err(NodeError::NotLeader(next)) => {
                        leader = next;
                        continue;
                    }
                    other => return other,
                }
            }
            let mut fwd = req.clone();
            fwd.op = Some(op.clone());
            fwd.context.get_or_insert_with(Default::default).forwarded = true;
            let mut client = self.forwarder.client(&member)?;
            return match client.kv(fwd).await {
                Ok(r) => r
                    .into_inner()
                    .result
                    .ok_or_else(|| NodeError::Task("empty forwarded response".into())),
                // The leader could not even be reached: nothing was proposed.
                Err(status) if forward::not_sent(&status) => Err(NodeError::NotLeader(None)),
                Err(status) => Err(NodeError::Raft(format!(
                    "forwarding to leader {id:x}: {status}"
                ))),
            };
        }
        Err(NodeError::NotLeader(None))
    }

    /// Asks the cluster (through the leader) to record this member's name.
    pub async fn publish_name(&self, id: u64, name: String) -> Result<(), Status> {
        let request = ClusterRequest {
            context: None,
            op: Some(ClusterOp::PublishName(PublishName { id, name })),
        };
        let reply = self.cluster(Request::new(request)).await?.into_inner();
        match reply.result {
            Some(ClusterResult::Error(e)) => Err(Status::unavailable(e.detail)),
            _ => Ok(()),
        }
    }
}

/// What etcd lets a learner serve: a serializable Range.
fn is_serializable_range(op: &Op) -> bool {
    matches!(op, Op::Range(r) if r.serializable)
}

fn applied(a: Applied) -> KvResult {
    match a {
        Applied::Put(r) => KvResult::Put(r),
        Applied::DeleteRange(r) => KvResult::DeleteRange(r),
        Applied::Txn(r) => KvResult::Txn(r),
        Applied::Compact(r) => KvResult::Compact(r),
        Applied::Recorded => KvResult::Error(StorageError {
            code: ErrorCode::StorageFailure as i32,
            detail: "cluster metadata change reached the KV path".into(),
        }),
        Applied::Lease { revision } => KvResult::Error(StorageError {
            code: ErrorCode::StorageFailure as i32,
            detail: format!("lease change at revision {revision} reached the KV path"),
        }),
    }
}

fn cluster_error(e: &MembershipError) -> ClusterResponse {
    let error = match e {
        MembershipError::Node(n) => storage_error(n),
        other => StorageError {
            code: match other {
                MembershipError::NotFound => ErrorCode::MemberNotFound,
                MembershipError::PeerUrlExists => ErrorCode::PeerUrlExists,
                MembershipError::Exists => ErrorCode::MemberExists,
                MembershipError::NotLearner => ErrorCode::MemberNotLearner,
                MembershipError::TooManyLearners => ErrorCode::TooManyLearners,
                MembershipError::NotEnoughStarted => ErrorCode::NotEnoughStarted,
                MembershipError::Unhealthy => ErrorCode::UnhealthyCluster,
                MembershipError::LearnerNotReady | MembershipError::Node(_) => {
                    ErrorCode::LearnerNotReady
                }
            } as i32,
            detail: other.to_string(),
        },
    };
    ClusterResponse {
        result: Some(ClusterResult::Error(error)),
    }
}

pub(crate) fn storage_error(e: &NodeError) -> StorageError {
    let code = match e {
        NodeError::Mvcc(m) => match m {
            MvccError::Compacted => ErrorCode::Compacted,
            MvccError::FutureRev => ErrorCode::FutureRevision,
            MvccError::LeaseNotFound => ErrorCode::LeaseNotFound,
            MvccError::LeaseExists => ErrorCode::LeaseExists,
            MvccError::LeaseTtlTooLarge => ErrorCode::LeaseTtlTooLarge,
            MvccError::KeyNotFound => ErrorCode::KeyNotFound,
            MvccError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            MvccError::Rejected(i) => match i {
                Invalid::EmptyKey => ErrorCode::EmptyKey,
                Invalid::ValueProvided => ErrorCode::ValueProvided,
                Invalid::LeaseProvided => ErrorCode::LeaseProvided,
                Invalid::TooManyOps => ErrorCode::TooManyOps,
                Invalid::DuplicateKey => ErrorCode::DuplicateKey,
                Invalid::InvalidSortOption => ErrorCode::InvalidSortOption,
                Invalid::RequestTooLarge => ErrorCode::RequestTooLarge,
                Invalid::EmptyOp => ErrorCode::KeyNotFound,
            },
            MvccError::Duplicate => ErrorCode::DuplicateRequest,
            MvccError::Corrupt(_) | MvccError::Engine(_) => ErrorCode::StorageFailure,
        },
        NodeError::Task(_) => ErrorCode::StorageFailure,
        NodeError::NotLeader(_) => ErrorCode::NoLeader,
        NodeError::Learner => ErrorCode::LearnerUnsupported,
        NodeError::Raft(_) => ErrorCode::LeaderChanged,
        NodeError::OutcomeUnknown(_) => ErrorCode::OutcomeUnknown,
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
        let Some(op) = req.op.clone() else {
            return Err(Status::invalid_argument("empty storage request"));
        };
        let result = match self.execute_anywhere(&req, op).await {
            Ok(mut r) => {
                match &mut r {
                    KvResult::Range(x) => self.stamp(&mut x.header),
                    KvResult::Put(x) => self.stamp(&mut x.header),
                    KvResult::DeleteRange(x) => self.stamp(&mut x.header),
                    KvResult::Txn(x) => self.stamp(&mut x.header),
                    KvResult::Compact(x) => self.stamp(&mut x.header),
                    KvResult::LeaseGrant(x) => self.stamp(&mut x.header),
                    KvResult::LeaseRevoke(x) => self.stamp(&mut x.header),
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

    async fn cluster(
        &self,
        request: Request<ClusterRequest>,
    ) -> Result<Response<ClusterResponse>, Status> {
        let mut req = request.into_inner();
        let Some(op) = req.op.clone() else {
            return Err(Status::invalid_argument("empty cluster request"));
        };
        let node = &self.node;
        let is_list = matches!(op, ClusterOp::MemberList(_));
        if !is_list && !node.raft().is_leader() {
            return match self.forwarder.leader_client(&mut req.context).await {
                Ok(mut client) => client.cluster(req).await,
                Err(e) => Ok(Response::new(cluster_error(&e.into()))),
            };
        }
        let result = match op {
            ClusterOp::MemberList(_) => Ok(ClusterResult::MemberList(cluster::member_list(node))),
            ClusterOp::MemberAdd(r) => cluster::member_add(node, r)
                .await
                .map(ClusterResult::MemberAdd),
            ClusterOp::MemberRemove(r) => cluster::member_remove(node, r.id)
                .await
                .map(ClusterResult::MemberRemove),
            ClusterOp::MemberUpdate(r) => cluster::member_update(node, r)
                .await
                .map(ClusterResult::MemberUpdate),
            ClusterOp::MemberPromote(r) => cluster::member_promote(node, r.id)
                .await
                .map(ClusterResult::MemberPromote),
            ClusterOp::PublishName(r) => cluster::publish_name(node, r.id, r.name)
                .await
                .map(ClusterResult::MemberUpdate),
        };
        let mut result = match result {
            Ok(r) => r,
            Err(e) => return Ok(Response::new(cluster_error(&e))),
        };
        match &mut result {
            ClusterResult::MemberList(x) => self.stamp(&mut x.header),
            ClusterResult::MemberAdd(x) => self.stamp(&mut x.header),
            ClusterResult::MemberRemove(x) => self.stamp(&mut x.header),
            ClusterResult::MemberUpdate(x) => self.stamp(&mut x.header),
            ClusterResult::MemberPromote(x) => self.stamp(&mut x.header),
            ClusterResult::Error(_) => {}
        }
        Ok(Response::new(ClusterResponse {
            result: Some(result),
        }))
    }

    async fn publish_gateway(
        &self,
        request: Request<PublishGatewayRequest>,
    ) -> Result<Response<PublishGatewayResponse>, Status> {
        let mut req = request.into_inner();
        let info = req.gateway.get_or_insert_with(Default::default);
        if info.member_id == 0 {
            info.member_id = self.node.identity().member_id;
        }
        let (member_id, urls) = (info.member_id, info.client_urls.clone());
        let error = match crate::gateways::publish(&self.node, member_id, urls).await {
            Ok(()) => None,
            Err(NodeError::NotLeader(_)) => {
                return match self.forwarder.leader_client(&mut req.context).await {
                    Ok(mut client) => client.publish_gateway(req).await,
                    Err(e) => Ok(Response::new(PublishGatewayResponse {
                        error: Some(storage_error(&e)),
                    })),
                };
            }
            Err(e) => Some(storage_error(&e)),
        };
        Ok(Response::new(PublishGatewayResponse { error }))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let mut status = cluster::status(&self.node);
        self.stamp(&mut status.header);
        Ok(Response::new(StatusResponse {
            status: Some(status),
            name: self.node.identity().name.clone(),
            engine: self.node.store().engine().kind().to_string(),
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvReply>, Status> {
        let revision = request.into_inner().revision;
        let store = self.node.store().clone();
        let result = tokio::task::spawn_blocking(move || mvcc::hash_kv(&store, revision))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(match result {
            Ok(mut resp) => {
                self.stamp(&mut resp.header);
                HashKvReply {
                    response: Some(resp),
                    error: None,
                }
            }
            Err(e) => HashKvReply {
                response: None,
                error: Some(storage_error(&e.into())),
            },
        }))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderAsk>,
    ) -> Result<Response<MoveLeaderReply>, Status> {
        let ask = request.into_inner();
        let target = ask.request.as_ref().map_or(0, |r| r.target_id);
        let reply = |error: StorageError| {
            Ok(Response::new(MoveLeaderReply {
                response: None,
                error: Some(error),
            }))
        };
        let node = &self.node;
        if !node.raft().is_leader() {
            let mut fwd = ask.clone();
            return match self.forwarder.leader_client(&mut fwd.context).await {
                Ok(mut client) => client.move_leader(fwd).await,
                Err(e) => reply(storage_error(&e)),
            };
        }
        let is_voter = node.raft().voter_ids().any(|v| v == target);
        if !is_voter {
            return reply(StorageError {
                code: ErrorCode::BadLeaderTransferee as i32,
                detail: format!("{target:x} is not a voting member"),
            });
        }
        if target != node.identity().member_id {
            node.raft()
                .trigger()
                .transfer_leader(target)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            let deadline = tokio::time::Instant::now() + LEADER_WAIT;
            while node.leader().map(|(id, _)| id) != Some(target) {
                if tokio::time::Instant::now() >= deadline {
                    return reply(StorageError {
                        code: ErrorCode::Timeout as i32,
                        detail: "leader transfer did not complete".into(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(Response::new(MoveLeaderReply {
            response: Some(MoveLeaderResponse { header: None }),
            error: None,
        }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<RenewReply, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<RenewBatch>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let renewer = Renewer::new(self.node.clone(), self.forwarder.clone());
        Ok(Response::new(renewer.serve(request.into_inner())))
    }

    async fn lease_renew(
        &self,
        request: Request<RenewBatch>,
    ) -> Result<Response<RenewReply>, Status> {
        let renewer = Renewer::new(self.node.clone(), self.forwarder.clone());
        Ok(Response::new(renewer.renew(request.into_inner()).await))
    }

    async fn member_info(
        &self,
        request: Request<MemberInfoRequest>,
    ) -> Result<Response<MemberInfoResponse>, Status> {
        let about = request.into_inner().about_member;
        let mut header = Some(ResponseHeader {
            revision: self.node.store().current_revision(),
            ..Default::default()
        });
        self.stamp(&mut header);
        Ok(Response::new(MemberInfoResponse {
            header,
            name: self.node.identity().name.clone(),
            engine: self.node.store().engine().kind().to_string(),
            about_member_started: about != 0 && cluster::has_started(&self.node, about),
        }))
    }
}
