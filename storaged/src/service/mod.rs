//! The internal storage gRPC service: check the request, call the node (here or, through
//! [`Forwarder::on_leader`], on the leader), map the error, stamp the header.

mod auth;

use crate::auth::check;
use crate::auth::perms::Need;
use crate::backup::snapshot::SnapshotFile;
use crate::cluster::{self, MembershipError};
use crate::command::{Command, Origin, Proposal};
use crate::errors::{error_status, membership_error, storage_error};
use crate::forward::{Client, Envelope, Forwarder};
use crate::gateways::Gateways;
use crate::keepalive::Renewer;
use crate::mvcc::{self, MvccError};
use crate::node::{Node, NodeError, Seen};
use crate::stamp::{Headed, Stamp};
use crate::state_machine::Applied;
use crate::watch::{self, WatchHub};
use futures::{Stream, StreamExt};
use metastore_internal_proto::storage::auth_response::Result as AuthResult;
use metastore_internal_proto::storage::cluster_request::Op as ClusterOp;
use metastore_internal_proto::storage::cluster_response::Result as ClusterResult;
use metastore_internal_proto::storage::kv_request::Op;
use metastore_internal_proto::storage::kv_response::Result as KvResult;
use metastore_internal_proto::storage::storage_server::Storage;
use metastore_internal_proto::storage::watch_upstream_request::Request as WatchAsk;
use metastore_internal_proto::storage::{AuthInfo, AuthRequest, AuthResponse, HashKvAsk};
use metastore_internal_proto::storage::{
    ClusterRequest, ClusterResponse, DefragmentAsk, DefragmentReply, HashKvReply, MoveLeaderAsk,
    MoveLeaderReply, PublishGatewayRequest, PublishGatewayResponse, SnapshotAsk, StatusRequest,
    StatusResponse,
};
use metastore_internal_proto::storage::{
    ErrorCode, KvRequest, KvResponse, MemberInfoRequest, MemberInfoResponse, RenewBatch,
    RenewReply, RequestContext, StorageError, WatchUpstreamRequest, WatchUpstreamResponse,
};
use metastore_proto::etcdserverpb::{
    AlarmResponse, DefragmentResponse, MoveLeaderResponse, ResponseHeader, SnapshotResponse,
};
use metastore_request::{Limits, classify, validate};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered per watcher between its task and the gRPC stream.
const WATCH_OUT_QUEUE: usize = 16;

/// Whether an untrusted caller naming a certificate user has been logged (once per process).
static UNTRUSTED_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Who may say which user a request runs as because its client authenticated with a TLS
/// certificate (`RequestContext.cert_user`).
#[derive(Clone, Debug)]
pub enum CertUsers {
    /// The peer port: members pass on their callers' requests as they got them (whoever can
    /// call the peer port can take part in raft anyway).
    FromMembers,
    /// The storage port: callers whose verified client certificate has one of these common
    /// names (`--trusted-gateway-cn`).
    FromGateways(Arc<[String]>),
}

#[derive(Clone)]
pub struct StorageService {
    node: Arc<Node>,
    hub: Arc<WatchHub>,
    gateways: Arc<Gateways>,
    forwarder: Forwarder,
    /// Where snapshot files are made before they are sent.
    scratch_dir: std::path::PathBuf,
    cert_users: CertUsers,
}

impl StorageService {
    pub fn new(
        node: Arc<Node>,
        hub: Arc<WatchHub>,
        gateways: Arc<Gateways>,
        forwarder: Forwarder,
        scratch_dir: std::path::PathBuf,
        trusted_gateway_cns: &[String],
    ) -> Self {
        Self {
            node,
            hub,
            gateways,
            forwarder,
            scratch_dir,
            cert_users: CertUsers::FromGateways(trusted_gateway_cns.into()),
        }
    }

    /// The same service for the peer port (see [`CertUsers::FromMembers`]).
    pub fn for_peers(&self) -> Self {
        Self {
            cert_users: CertUsers::FromMembers,
            ..self.clone()
        }
    }

    /// The request, without the certificate user it names unless its caller may name one: a
    /// request from an untrusted caller runs as its token says, or as nobody (under auth,
    /// etcd's `user name is empty`), as if no certificate had been shown.
    fn admit<T: Envelope>(&self, request: Request<T>) -> T {
        let trusted = match &self.cert_users {
            CertUsers::FromMembers => true,
            CertUsers::FromGateways(cns) => {
                metastore_cli::tls::peer_common_name(request.peer_certs())
                    .is_some_and(|cn| cns.contains(&cn))
            }
        };
        let mut inner = request.into_inner();
        if let Some(ctx) = inner.context().as_mut()
            && !ctx.cert_user.is_empty()
            && !trusted
        {
            ctx.cert_user.clear();
            if !UNTRUSTED_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    "a caller on the storage port named a request's certificate user without \
                     being trusted to (add its storage certificate's common name to \
                     --trusted-gateway-cn); such requests run without that user"
                );
            }
        }
        inner
    }

    fn stamp(&self) -> Stamp {
        Stamp::of(&self.node)
    }

    /// Runs `read` after checking the caller with `allowed`, and refuses its answer if the
    /// auth store changed meanwhile (as etcd does).
    async fn checked_read<T>(
        &self,
        who: &AuthInfo,
        allowed: impl FnOnce(&crate::auth::state::AuthState) -> Result<(), crate::auth::AuthError>,
        read: impl std::future::Future<Output = Result<T, NodeError>>,
    ) -> Result<T, NodeError> {
        allowed(&self.node.auth().state()).map_err(MvccError::from)?;
        let answer = read.await?;
        let state = self.node.auth().state();
        if state.enabled && who.revision != 0 && who.revision != state.revision {
            return Err(MvccError::from(crate::auth::AuthError::OldRevision).into());
        }
        Ok(answer)
    }

    async fn execute(&self, op: Op, ctx: &RequestContext) -> Result<KvResult, NodeError> {
        let node = &self.node;
        let class = classify(&op);
        let origin = (ctx.gateway_id != 0).then_some(Origin {
            gateway: ctx.gateway_id,
            request: ctx.request_id,
        });
        let seen = Seen::of(ctx);
        // A read first reaches its read point, then identifies and checks its caller, so the
        // check sees every auth change the read will see (an `auth enable` the gateway has
        // answered is applied here before a request without a token is let through).
        match &op {
            Op::Range(r) => node.ready_to_read(r.serializable, seen).await?,
            Op::Txn(_) if !class.is_write() => {
                node.ready_to_read(class.serializable(), seen).await?
            }
            Op::WatchAccess(_) => node.catch_up(seen).await?,
            _ => {}
        }
        let who = node.identify(ctx).await?;
        let write = |command| Proposal {
            origin,
            auth: Some(who.clone()),
            command,
        };
        Ok(match op {
            Op::Range(r) => {
                let allowed = |s: &_| check::range(s, &who, &r);
                let read = node.range(r.clone());
                KvResult::Range(self.checked_read(&who, allowed, read).await?)
            }
            Op::Txn(t) if !class.is_write() => {
                let allowed = |s: &_| check::txn(s, &who, &t, None);
                let read = node.read_txn(t.clone());
                KvResult::Txn(self.checked_read(&who, allowed, read).await?)
            }
            Op::WatchAccess(w) => {
                let state = node.auth().state();
                check::keys(&state, &who, Need::Read, &w.key, &w.range_end)
                    .map_err(MvccError::from)?;
                KvResult::WatchAccess(w)
            }
            Op::Txn(t) => applied(node.write(write(Command::Txn(t))).await?),
            Op::Put(p) => applied(node.write(write(Command::Put(p))).await?),
            Op::DeleteRange(d) => applied(node.write(write(Command::DeleteRange(d))).await?),
            Op::Compact(c) => applied(node.write(write(Command::Compact(c))).await?),
            Op::LeaseGrant(r) => KvResult::LeaseGrant(node.lease_grant(r).await?),
            Op::LeaseRevoke(r) => KvResult::LeaseRevoke(node.lease_revoke(r.id, Some(who)).await?),
            Op::LeaseTimeToLive(r) => {
                let answer = node.lease_time_to_live(&r).await?;
                check::lease_keys_readable(&node.auth().state(), &who, &answer.keys)
                    .map_err(MvccError::from)?;
                KvResult::LeaseTimeToLive(answer)
            }
            Op::LeaseLeases(_) => KvResult::LeaseLeases(node.lease_leases().await?),
            Op::Downgrade(r) => KvResult::Downgrade(node.downgrade(r).await?),
            Op::Alarm(r) => {
                let alarms = if class.is_write() {
                    match node.write(write(Command::Alarm(r))).await? {
                        Applied::Alarm(listed) => listed,
                        other => return Ok(applied(other)),
                    }
                } else {
                    node.alarms(r.alarm).await?
                };
                // etcd 3.5 fills the header (3.4 sends none).
                let header = Some(ResponseHeader {
                    revision: node.store().current_revision(),
                    ..Default::default()
                });
                KvResult::Alarm(AlarmResponse { header, alarms })
            }
        })
    }

    /// Runs `op` here, or on the leader when this member does not lead. Also returns the log
    /// index the answering member had applied when it answered.
    async fn execute_on_leader(
        &self,
        req: KvRequest,
        op: Op,
    ) -> Result<(KvResult, u64), NodeError> {
        let ctx = req.context.clone().unwrap_or_default();
        // Checked here whatever the gateway did: this port can be reached directly.
        validate::op(&op, &Limits::APPLY).map_err(MvccError::from)?;
        if !ctx.forwarded && self.node.is_learner() && !is_serializable_range(&op) {
            return Err(NodeError::Learner);
        }
        let (op, ctx) = (&op, &ctx);
        let here = move || async move {
            let result = self.execute(op.clone(), ctx).await?;
            // Read after the answer exists: a write waited for its own entry to apply here.
            Ok::<_, NodeError>((Some(result), self.node.store().applied_index()))
        };
        let there = |mut client: Client, req| async move {
            let reply = client.kv(req).await?.into_inner();
            Ok((reply.result, reply.applied_index))
        };
        let (result, applied) = self
            .forwarder
            .on_leader(req, here, there)
            .await
            .map_err(|f| f.into_error())?;
        let result = result.ok_or_else(|| NodeError::Task("empty forwarded response".into()))?;
        Ok((result, applied))
    }
}

impl StorageService {
    /// etcd's admin check for the caller of `ctx` (passes while auth is off).
    async fn require_admin(&self, ctx: &RequestContext) -> Result<(), NodeError> {
        let who = self.node.identify(ctx).await?;
        self.node
            .auth()
            .state()
            .require_admin(Some(&who))
            .map_err(|e| MvccError::from(e).into())
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
        Applied::Alarm(alarms) => KvResult::Alarm(AlarmResponse {
            header: None,
            alarms,
        }),
        Applied::Recorded | Applied::Auth(_) => KvResult::Error(StorageError {
            code: ErrorCode::StorageFailure as i32,
            detail: "cluster metadata change reached the KV path".into(),
        }),
        Applied::Lease { revision } => KvResult::Error(StorageError {
            code: ErrorCode::StorageFailure as i32,
            detail: format!("lease change at revision {revision} reached the KV path"),
        }),
    }
}

/// Runs a membership operation on this member.
async fn membership(node: &Node, op: ClusterOp) -> Result<ClusterResult, MembershipError> {
    Ok(match op {
        ClusterOp::MemberList(_) => ClusterResult::MemberList(cluster::member_list(node)),
        ClusterOp::MemberAdd(r) => ClusterResult::MemberAdd(cluster::member_add(node, r).await?),
        ClusterOp::MemberRemove(r) => {
            ClusterResult::MemberRemove(cluster::member_remove(node, r.id).await?)
        }
        ClusterOp::MemberUpdate(r) => {
            ClusterResult::MemberUpdate(cluster::member_update(node, r).await?)
        }
        ClusterOp::MemberPromote(r) => {
            ClusterResult::MemberPromote(cluster::member_promote(node, r.id).await?)
        }
        ClusterOp::PublishName(r) => {
            ClusterResult::MemberUpdate(cluster::publish_name(node, r.id, r.name).await?)
        }
    })
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
        let stamp = self.stamp();
        let stream = ReceiverStream::new(rx).map(move |mut m| {
            stamp.answer(&mut m);
            Ok(m)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn kv(&self, request: Request<KvRequest>) -> Result<Response<KvResponse>, Status> {
        let req = self.admit(request);
        let Some(op) = req.op.clone() else {
            return Err(Status::invalid_argument("empty storage request"));
        };
        let request_id = req.context.as_ref().map(|c| c.request_id);
        let mut applied_index = 0;
        let result = match self.execute_on_leader(req, op).await {
            Ok((mut r, applied)) => {
                self.stamp().answer(&mut r);
                applied_index = applied;
                r
            }
            Err(e) => {
                if matches!(
                    e,
                    NodeError::Task(_)
                        | NodeError::Mvcc(MvccError::Engine(_) | MvccError::Corrupt(_))
                ) {
                    tracing::error!(error = %e, request_id, "storage failure");
                }
                KvResult::Error(storage_error(&e))
            }
        };
        Ok(Response::new(KvResponse {
            result: Some(result),
            applied_index,
        }))
    }

    async fn cluster(
        &self,
        request: Request<ClusterRequest>,
    ) -> Result<Response<ClusterResponse>, Status> {
        let req = self.admit(request);
        let Some(op) = req.op.clone() else {
            return Err(Status::invalid_argument("empty cluster request"));
        };
        let node = &self.node;
        // Any member lists the members; the rest changes membership on the leader.
        let leader_work = !matches!(op, ClusterOp::MemberList(_));
        // Clients' membership changes need root; members publish their names themselves.
        let admin = leader_work && !matches!(op, ClusterOp::PublishName(_));
        let ctx = req.context.clone().unwrap_or_default();
        let (op, ctx) = (&op, &ctx);
        let here = move || async move {
            if admin {
                self.require_admin(ctx).await?;
            }
            if leader_work {
                node.require_leader()?;
            }
            let mut result = membership(node, op.clone()).await?;
            self.stamp().answer(&mut result);
            Ok::<_, MembershipError>(ClusterResponse {
                result: Some(result),
            })
        };
        let there = |mut client: Client, req| async move {
            client.cluster(req).await.map(Response::into_inner)
        };
        let response = match self.forwarder.on_leader(req, here, there).await {
            Ok(response) => response,
            Err(f) => ClusterResponse {
                result: Some(ClusterResult::Error(membership_error(&f.here_or_status()?))),
            },
        };
        Ok(Response::new(response))
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
        let urls = &urls;
        let here = move || async move {
            let published = self.gateways.publish(member_id, urls.clone()).await;
            published.map(|()| PublishGatewayResponse { error: None })
        };
        let there = |mut client: Client, req| async move {
            client.publish_gateway(req).await.map(Response::into_inner)
        };
        let response = match self.forwarder.on_leader(req, here, there).await {
            Ok(response) => response,
            Err(f) => PublishGatewayResponse {
                error: Some(storage_error(&f.here_or_status()?)),
            },
        };
        Ok(Response::new(response))
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let mut status = cluster::status(&self.node);
        // etcd fills the revision of Status answers too (`endpoint status -w json` shows it).
        status.header = self.stamp().at(self.node.store().current_revision());
        Ok(Response::new(StatusResponse {
            status: Some(status),
            name: self.node.identity().name.clone(),
            engine: self.node.store().engine().kind().to_string(),
        }))
    }

    async fn hash_kv(&self, request: Request<HashKvAsk>) -> Result<Response<HashKvReply>, Status> {
        let ask = self.admit(request);
        let revision = ask.request.map_or(0, |r| r.revision);
        if let Some(ctx) = &ask.context
            && let Err(e) = self.require_admin(ctx).await
        {
            return Ok(Response::new(HashKvReply {
                response: None,
                error: Some(storage_error(&e)),
            }));
        }
        if let Some(ctx) = &ask.context
            && let Err(e) = self.node.catch_up(Seen::of(ctx)).await
        {
            return Ok(Response::new(HashKvReply {
                response: None,
                error: Some(storage_error(&e)),
            }));
        }
        let store = self.node.store().clone();
        let result = tokio::task::spawn_blocking(move || mvcc::hash_kv(&store, revision))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(match result {
            Ok(mut resp) => {
                self.stamp().apply(&mut resp.header);
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

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    /// This member's store as an etcd database: made in a scratch file from one consistent
    /// view (writes go on), then sent in chunks and followed by its SHA-256.
    async fn snapshot(
        &self,
        request: Request<SnapshotAsk>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let ctx = self.admit(request).context.unwrap_or_default();
        self.require_admin(&ctx)
            .await
            .map_err(|e| error_status(&e))?;
        let (node, dir) = (self.node.clone(), self.scratch_dir.clone());
        let members = cluster::member_records(&node);
        let version = node.etcd_version().cluster().to_string();
        let file = tokio::task::spawn_blocking(move || {
            SnapshotFile::make(node.store(), &members, &version, &dir)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("making the snapshot: {e}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let sent = file.stream(&mut |chunk| tx.blocking_send(Ok(chunk)).is_ok());
            if let Err(e) = sent {
                let _ =
                    tx.blocking_send(Err(Status::internal(format!("sending the snapshot: {e}"))));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// Reclaims unused engine space on this member; reads and writes go on meanwhile.
    async fn defragment(
        &self,
        request: Request<DefragmentAsk>,
    ) -> Result<Response<DefragmentReply>, Status> {
        let ctx = self.admit(request).context.unwrap_or_default();
        if let Err(e) = self.require_admin(&ctx).await {
            return Ok(Response::new(DefragmentReply {
                response: None,
                error: Some(storage_error(&e)),
            }));
        }
        let store = self.node.store().clone();
        let result = tokio::task::spawn_blocking(move || store.engine().defragment())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(match result {
            // etcd answers a defragment without a header.
            Ok(()) => DefragmentReply {
                response: Some(DefragmentResponse::default()),
                error: None,
            },
            Err(e) => DefragmentReply {
                response: None,
                error: Some(storage_error(&MvccError::from(e).into())),
            },
        }))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderAsk>,
    ) -> Result<Response<MoveLeaderReply>, Status> {
        let ask = request.into_inner();
        let target = ask.request.as_ref().map_or(0, |r| r.target_id);
        let here = move || async move {
            cluster::move_leader(&self.node, target).await?;
            Ok::<_, MembershipError>(MoveLeaderReply {
                response: Some(MoveLeaderResponse { header: None }),
                error: None,
            })
        };
        let there = |mut client: Client, ask| async move {
            client.move_leader(ask).await.map(Response::into_inner)
        };
        let reply = match self.forwarder.on_leader(ask, here, there).await {
            Ok(reply) => reply,
            Err(f) => match f.here_or_status()? {
                MembershipError::Stopped(e) => return Err(Status::internal(e)),
                e => MoveLeaderReply {
                    response: None,
                    error: Some(membership_error(&e)),
                },
            },
        };
        Ok(Response::new(reply))
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

    async fn auth(&self, request: Request<AuthRequest>) -> Result<Response<AuthResponse>, Status> {
        let req = self.admit(request);
        let Some(op) = req.op.clone() else {
            return Err(Status::invalid_argument("empty auth request"));
        };
        let ctx = req.context.clone().unwrap_or_default();
        let (op, ctx) = (&op, &ctx);
        let here = move || async move {
            let mut result = self.auth_op(op.clone(), ctx).await?;
            if let Some(header) = result.header() {
                *header = self.stamp().at(self.node.store().current_revision());
            }
            // Read after the answer exists: a change waited for its own entry to apply here.
            Ok::<_, NodeError>((Some(result), self.node.store().applied_index()))
        };
        let there = |mut client: Client, req| async move {
            let reply = client.auth(req).await?.into_inner();
            Ok((reply.result, reply.applied_index))
        };
        let (result, applied_index) = match self.forwarder.on_leader(req, here, there).await {
            Ok((Some(result), applied)) => (result, applied),
            Ok((None, _)) => return Err(Status::internal("empty forwarded auth response")),
            Err(f) => (AuthResult::Error(storage_error(&f.into_error())), 0),
        };
        Ok(Response::new(AuthResponse {
            result: Some(result),
            applied_index,
        }))
    }

    async fn member_info(
        &self,
        request: Request<MemberInfoRequest>,
    ) -> Result<Response<MemberInfoResponse>, Status> {
        let about = request.into_inner().about_member;
        Ok(Response::new(MemberInfoResponse {
            header: self.stamp().at(self.node.store().current_revision()),
            name: self.node.identity().name.clone(),
            engine: self.node.store().engine().kind().to_string(),
            about_member_started: about != 0 && cluster::has_started(&self.node, about),
        }))
    }
}
