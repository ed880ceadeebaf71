//! Connections to the storaged members. Every client request becomes one call here.
//!
//! The gateway prefers the first reachable `--storage-endpoints` entry. Requests only the
//! leader may serve (writes, linearizable reads, lease operations) go to the member that
//! leads, as last seen by a probe of every member each second; the others (serializable reads,
//! watches, membership and status calls) go to the preferred member, which forwards what it
//! must. A stale leader hint costs one forwarding hop, never correctness. When a member cannot
//! be reached, the next one is tried (and preferred from then on).
//! A request is retried on another member only when it cannot have taken effect: the
//! connection failed before it was sent, or the member answered that there is no leader
//! (nothing was proposed); an idempotent one also after `leader changed`. Writes carry this
//! gateway's id and a request id, kept across retries, so storaged applies each at most once.
//! Serializable reads (and HashKV) carry the newest revision and raft log index this gateway has
//! answered with, so whichever member serves them has applied at least that much (a client never
//! reads back in time, and sees its own compactions and lease grants too).

use crate::breaker::Breaker;
use crate::error::{self, Error};
use metastore_cli::rpc::{self, Channel, ChannelOptions, MAX_INTERNAL_MESSAGE, not_sent};
use metastore_internal_proto::storage::auth_request::Op as AuthOp;
use metastore_internal_proto::storage::auth_response::Result as AuthResult;
use metastore_internal_proto::storage::cluster_request::Op as ClusterOp;
use metastore_internal_proto::storage::cluster_response::Result as ClusterResult;
use metastore_internal_proto::storage::kv_request::Op;
use metastore_internal_proto::storage::kv_response::Result as KvResult;
use metastore_internal_proto::storage::storage_client::StorageClient;
use metastore_internal_proto::storage::watch_upstream_request::Request as WatchAsk;
use metastore_internal_proto::storage::watch_upstream_response::Kind as WatchKind;
use metastore_internal_proto::storage::{
    AuthRequest, ClusterRequest, Consistency, DefragmentAsk, ErrorCode, GatewayInfo, HashKvAsk,
    KvRequest, MemberInfoRequest, MemberInfoResponse, MoveLeaderAsk, PublishGatewayRequest,
    RenewBatch, RenewReply, RequestContext, SnapshotAsk, StatusRequest, StatusResponse,
    StorageError, WatchAccess, WatchProgressAsk, WatchStart, WatchUpstreamRequest,
    WatchUpstreamResponse,
};
use metastore_proto::etcdserverpb::{
    DefragmentResponse, HashKvRequest, HashKvResponse, MoveLeaderResponse, ResponseHeader,
    SnapshotResponse,
};
use metastore_request::classify;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// etcd's request timeout with default settings: 5 s + 2 x election timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// How often an earlier, unreachable storage endpoint is probed again.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before asking again when a member reports no leader (an election is running).
const NO_LEADER_BACKOFF: Duration = Duration::from_millis(100);

struct Member {
    url: String,
    /// Unary calls, each bounded by the request timeout.
    client: StorageClient<Channel>,
    /// Long-lived streams (watches), on their own connection without a deadline.
    streams: StorageClient<Channel>,
    breaker: Breaker,
}

/// Progress asks queued per upstream watch.
const WATCH_ASKS: usize = 64;

/// An open upstream watch (see [`Upstream::open_watch`]).
pub struct UpstreamWatch {
    asks: mpsc::Sender<WatchUpstreamRequest>,
    stream: WatchStream,
}

impl UpstreamWatch {
    /// The next message, whole; `None` when storaged ended the watch.
    pub async fn message(&mut self) -> Result<Option<WatchUpstreamResponse>, tonic::Status> {
        self.stream.message().await
    }

    /// Asks where the watch stands; the answer comes as a progress message, in order with the
    /// events.
    pub async fn ask_progress(&self) {
        let _ = self
            .asks
            .send(WatchUpstreamRequest {
                request: Some(WatchAsk::Progress(WatchProgressAsk {})),
            })
            .await;
    }
}

/// An upstream watch whose messages come whole: a response storaged cut into parts (`more`)
/// is joined before it is handed on, so every revision's events stay together.
struct WatchStream(Streaming<WatchUpstreamResponse>);

impl WatchStream {
    async fn message(&mut self) -> Result<Option<WatchUpstreamResponse>, tonic::Status> {
        let Some(mut m) = self.0.message().await? else {
            return Ok(None);
        };
        while let Some(WatchKind::Events(e)) = &mut m.kind
            && e.more
        {
            match self.0.message().await? {
                Some(WatchUpstreamResponse {
                    kind: Some(WatchKind::Events(next)),
                }) => {
                    e.events.extend(next.events);
                    e.header = next.header;
                    e.more = next.more;
                }
                _ => return Err(tonic::Status::data_loss("watch response cut off")),
            }
        }
        Ok(Some(m))
    }
}

/// A call that failed on the way rather than with the member's answer: no connection, the
/// connection broke, or no answer within the deadline.
fn transport_failure(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded
    ) && std::error::Error::source(status).is_some()
}

/// `Upstream::leader` when no member is known to lead.
const NO_LEADER: usize = usize::MAX;

#[derive(Clone)]
pub struct Upstream {
    members: Arc<Vec<Member>>,
    preferred: Arc<AtomicUsize>,
    /// Index of the member that leads, as last probed (`NO_LEADER` when unknown).
    leader: Arc<AtomicUsize>,
    /// Whether the preferred member was a learner at the last probe.
    preferred_is_learner: Arc<AtomicBool>,
    /// Names this gateway process in request origins (random per start).
    gateway_id: u64,
    next_request_id: Arc<AtomicU64>,
    /// The newest store revision any answer of this gateway carried.
    seen_revision: Arc<AtomicI64>,
    /// The newest raft log index any answer of this gateway said was applied.
    seen_applied: Arc<AtomicU64>,
}

/// A random, non-zero id for this process.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// The store revision an answer carries.
fn revision_of(result: &KvResult) -> i64 {
    let header = match result {
        KvResult::Range(r) => r.header.as_ref(),
        KvResult::Put(r) => r.header.as_ref(),
        KvResult::DeleteRange(r) => r.header.as_ref(),
        KvResult::Txn(r) => r.header.as_ref(),
        KvResult::Compact(r) => r.header.as_ref(),
        KvResult::LeaseGrant(r) => r.header.as_ref(),
        KvResult::LeaseRevoke(r) => r.header.as_ref(),
        KvResult::LeaseTimeToLive(r) => r.header.as_ref(),
        KvResult::LeaseLeases(r) => r.header.as_ref(),
        KvResult::Alarm(r) => r.header.as_ref(),
        KvResult::Downgrade(r) => r.header.as_ref(),
        KvResult::WatchAccess(_) | KvResult::Error(_) => None,
    };
    header.map_or(0, |h| h.revision)
}

fn storage_failure(e: StorageError) -> Result<(), Error> {
    Err(e.into())
}

impl Upstream {
    /// Prepares connections (made lazily, so a gateway may start before storaged).
    pub fn new(endpoints: &[String]) -> Result<Self, String> {
        if endpoints.is_empty() {
            return Err("--storage-endpoints is empty".to_string());
        }
        let mut members = Vec::new();
        for url in endpoints {
            crate::metrics::upstream_member(url);
            let client = |timeout| {
                let options = ChannelOptions {
                    timeout,
                    ..ChannelOptions::UNARY
                };
                rpc::channel(url, options)
                    .map_err(|e| format!("--storage-endpoints {e}"))
                    .map(|channel| {
                        StorageClient::new(channel)
                            .max_decoding_message_size(MAX_INTERNAL_MESSAGE)
                            .max_encoding_message_size(MAX_INTERNAL_MESSAGE)
                    })
            };
            members.push(Member {
                url: url.clone(),
                client: client(Some(REQUEST_TIMEOUT))?,
                streams: client(None)?,
                breaker: Breaker::default(),
            });
        }
        Ok(Self {
            members: Arc::new(members),
            preferred: Arc::new(AtomicUsize::new(0)),
            leader: Arc::new(AtomicUsize::new(NO_LEADER)),
            preferred_is_learner: Arc::new(AtomicBool::new(false)),
            gateway_id: random_id(),
            next_request_id: Arc::new(AtomicU64::new(1)),
            seen_revision: Arc::new(AtomicI64::new(0)),
            seen_applied: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Every second asks every member for its status: the member whose id is the leader they
    /// report becomes the leader hint, and the preference moves back to the earliest
    /// `--storage-endpoints` entry that answers, so a gateway prefers the first healthy
    /// member. Call once, inside the runtime.
    pub fn spawn_recovery(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECOVERY_INTERVAL);
            loop {
                tick.tick().await;
                this.probe().await;
            }
        });
    }

    async fn probe(&self) {
        let probes = self.members.iter().map(|m| {
            let mut client = m.client.clone();
            async move {
                let mut probe = tonic::Request::new(StatusRequest {});
                probe.set_timeout(RECOVERY_INTERVAL);
                let status = client.status(probe).await.ok()?.into_inner().status?;
                let header = status.header?;
                Some((
                    header.member_id,
                    status.leader,
                    status.is_learner,
                    header.raft_term,
                    (header.revision, status.raft_index),
                ))
            }
        });
        let floors = (
            self.seen_revision(),
            self.seen_applied.load(Ordering::Relaxed),
        );
        let answers = futures::future::join_all(probes).await;
        self.forget_a_replaced_history(floors, answers.iter().flatten().map(|a| a.4));
        let answers: Vec<_> = answers
            .into_iter()
            .map(|a| a.map(|(id, leader, learner, term, _)| (id, leader, learner, term)))
            .collect();
        // A member that was paused or cut off may still think it leads; of the members that
        // say they lead, the one of the newest term does.
        let leader = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Some((id, leader, _, term)) if *leader != 0 && id == leader => Some((*term, i)),
                _ => None,
            })
            .max()
            .map_or(NO_LEADER, |(_, i)| i);
        self.leader.store(leader, Ordering::Relaxed);
        let current = self.preferred.load(Ordering::Relaxed) % self.members.len();
        if let Some(i) = answers[..current].iter().position(Option::is_some) {
            tracing::info!(member = %self.members[i].url, "preferring storage member again");
            self.preferred.store(i, Ordering::Relaxed);
        }
        let preferred = self.preferred.load(Ordering::Relaxed) % self.members.len();
        let learner = matches!(answers[preferred], Some((_, _, true, _)));
        self.preferred_is_learner.store(learner, Ordering::Relaxed);
    }

    /// The member to try first for a request only the leader serves: the leader when known,
    /// unless this gateway prefers a learner (whose refusals etcd clients of it expect).
    pub fn leader_hint(&self) -> Option<usize> {
        if self.preferred_is_learner.load(Ordering::Relaxed) {
            return None;
        }
        let i = self.leader.load(Ordering::Relaxed);
        (i < self.members.len()).then_some(i)
    }

    fn context(&self, consistency: Consistency) -> RequestContext {
        let caller = crate::caller::caller();
        RequestContext {
            request_id: self.next_request_id.fetch_add(1, Ordering::Relaxed),
            token: caller.token,
            cert_user: caller.cert_user,
            consistency: consistency as i32,
            forwarded: false,
            gateway_id: self.gateway_id,
            min_revision: self.seen_revision(),
            min_applied_index: self.seen_applied.load(Ordering::Relaxed),
        }
    }

    /// Lowers what this gateway has seen to what the members now hold when every member that
    /// answered a probe is behind what was seen before the probe started: the cluster was
    /// restored from a backup (a new log, maybe older revisions). Without this, serializable
    /// reads would wait for a revision or log index that may never come again. (When only a
    /// lagging minority answers, this gives up the floor too: reads may then be stale, as
    /// serializable reads may be, but never wrong.)
    fn forget_a_replaced_history(
        &self,
        (revision, applied): (i64, u64),
        members: impl Iterator<Item = (i64, u64)>,
    ) {
        let Some((newest_revision, longest_log)) =
            members.reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)))
        else {
            return;
        };
        if longest_log < applied || newest_revision < revision {
            tracing::warn!(
                revision,
                applied,
                newest_revision,
                longest_log,
                "every storage member is behind what this gateway saw: history was replaced"
            );
            if newest_revision < revision {
                self.seen_revision
                    .fetch_min(newest_revision, Ordering::Relaxed);
            }
            if longest_log < applied {
                self.seen_applied.fetch_min(longest_log, Ordering::Relaxed);
            }
        }
    }

    /// The newest store revision any answer of this gateway carried: everything up to it
    /// happened before anything this gateway starts now.
    pub fn seen_revision(&self) -> i64 {
        self.seen_revision.load(Ordering::Relaxed)
    }

    /// Runs `call` on the preferred member, moving on to the next member while the call
    /// fails without having been sent, until the request deadline.
    async fn on_member<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: FnMut(StorageClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        self.on_member_from(None, call).await
    }

    /// Like [`Self::on_member`], starting at member `first` when given (without changing the
    /// preference) instead of the preferred member.
    async fn on_member_from<T, F, Fut>(&self, first: Option<usize>, mut call: F) -> Result<T, Error>
    where
        F: FnMut(StorageClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let n = self.members.len();
        let mut last = None;
        loop {
            let start = first.unwrap_or_else(|| self.preferred.load(Ordering::Relaxed)) % n;
            let breakers: Vec<&Breaker> = self.members.iter().map(|m| &m.breaker).collect();
            for i in crate::breaker::order(start, &breakers) {
                let started = Instant::now();
                let outcome = call(self.members[i].client.clone()).await;
                crate::metrics::upstream_call(&self.members[i].url, started.elapsed());
                match outcome {
                    Ok(v) => {
                        self.answered(i);
                        if first.is_none() {
                            self.preferred.store(i, Ordering::Relaxed);
                        }
                        return Ok(v);
                    }
                    Err(status) if not_sent(&status) => {
                        self.failed(i);
                        tracing::debug!(member = %self.members[i].url, %status, "storage member unreachable");
                        crate::metrics::upstream_retry(&self.members[i].url);
                        // An unreachable member is no leader to aim at until probed again.
                        let _ = self.leader.compare_exchange(
                            i,
                            NO_LEADER,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        last = Some(status);
                    }
                    Err(status) => {
                        // Sent, so never retried here: its outcome is unknown (the caller may
                        // send a request that changes nothing again).
                        if transport_failure(&status) {
                            self.failed(i);
                            // A member that fails on the way is no leader to aim at until
                            // probed again.
                            let _ = self.leader.compare_exchange(
                                i,
                                NO_LEADER,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                        } else {
                            self.answered(i);
                        }
                        return Err(error::from_upstream(&status));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(last.map_or(Error::Timeout, |s| error::from_upstream(&s)));
            }
            tokio::time::sleep(NO_LEADER_BACKOFF).await;
        }
    }

    /// Member `i` answered a call: its breaker closes.
    fn answered(&self, i: usize) {
        if self.members[i].breaker.success() {
            tracing::info!(member = %self.members[i].url, "storage member answers again");
            crate::metrics::breaker_open(&self.members[i].url, false);
        }
    }

    /// A call to member `i` failed at the transport: its breaker may open.
    fn failed(&self, i: usize) {
        if self.members[i].breaker.failure() {
            tracing::warn!(
                member = %self.members[i].url,
                "storage member failing; tried after the others for a while"
            );
            crate::metrics::breaker_open(&self.members[i].url, true);
        }
    }

    /// Identity and current revision of the preferred member.
    pub async fn member_info(&self) -> Result<MemberInfoResponse, Error> {
        self.on_member(|mut c| async move {
            c.member_info(MemberInfoRequest { about_member: 0 })
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Tells the preferred member (and through it the cluster) that this gateway serves
    /// `client_urls`, so MemberList shows them as that member's client URLs.
    pub async fn publish(&self, client_urls: &[String]) -> Result<(), Error> {
        let request = PublishGatewayRequest {
            context: Some(self.context(Consistency::Linearizable)),
            gateway: Some(GatewayInfo {
                member_id: 0,
                client_urls: client_urls.to_vec(),
            }),
        };
        let reply = self
            .on_member(|mut c| {
                let request = request.clone();
                async move {
                    c.publish_gateway(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        match reply.error {
            Some(e) => storage_failure(e),
            None => Ok(()),
        }
    }

    /// Raft and store facts of the preferred member (Maintenance.Status).
    /// Also refreshes whether the preferred member is a learner, so the gateway routes as the
    /// status it reports says (a learner's gateway does not aim at the leader).
    pub async fn status(&self) -> Result<StatusResponse, Error> {
        let reply = self
            .on_member(|mut c| async move {
                c.status(StatusRequest {})
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        if let Some(status) = &reply.status {
            self.preferred_is_learner
                .store(status.is_learner, Ordering::Relaxed);
        }
        Ok(reply)
    }

    pub async fn hash_kv(&self, req: HashKvRequest) -> Result<HashKvResponse, Error> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut first = None;
        loop {
            let ask = HashKvAsk {
                request: Some(req),
                context: Some(self.context(Consistency::Serializable)),
            };
            let reply = self
                .on_member_from(first, |mut c| {
                    let ask = ask.clone();
                    async move { c.hash_kv(ask).await.map(tonic::Response::into_inner) }
                })
                .await?;
            match reply.error {
                // That member is behind what this gateway has seen and did not catch up in
                // time (nothing was changed): ask the next one.
                Some(e) if e.code == ErrorCode::NoLeader as i32 && Instant::now() < deadline => {
                    let tried = first.unwrap_or_else(|| self.preferred.load(Ordering::Relaxed));
                    first = Some(tried + 1);
                    tokio::time::sleep(NO_LEADER_BACKOFF).await;
                }
                Some(e) => return Err(e.into()),
                None => {
                    return reply
                        .response
                        .ok_or_else(|| Error::Internal("empty hash response".into()));
                }
            }
        }
    }

    /// Defragments the member this gateway prefers (as etcd defragments the member asked).
    pub async fn defragment(&self) -> Result<DefragmentResponse, Error> {
        let ask = DefragmentAsk {
            context: Some(self.context(Consistency::Serializable)),
        };
        let reply = self
            .on_member(|mut c| {
                let ask = ask.clone();
                async move { c.defragment(ask).await.map(tonic::Response::into_inner) }
            })
            .await?;
        if let Some(e) = reply.error {
            storage_failure(e)?;
        }
        reply
            .response
            .ok_or_else(|| Error::Internal("empty defragment response".into()))
    }

    /// Opens a snapshot stream from the preferred member (on the connection without a
    /// deadline: a large store takes a while to send).
    pub async fn snapshot(&self) -> Result<Streaming<SnapshotResponse>, Error> {
        let n = self.members.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = None;
        for step in 0..n {
            let mut client = self.members[(start + step) % n].streams.clone();
            let ask = SnapshotAsk {
                context: Some(self.context(Consistency::Serializable)),
            };
            match client.snapshot(ask).await {
                Ok(stream) => return Ok(stream.into_inner()),
                Err(status) if not_sent(&status) => last = Some(status),
                Err(status) => return Err(error::from_upstream(&status)),
            }
        }
        Err(last.map_or(Error::Timeout, |s| error::from_upstream(&s)))
    }

    pub async fn move_leader(&self, target_id: u64) -> Result<MoveLeaderResponse, Error> {
        let ask = MoveLeaderAsk {
            context: Some(self.context(Consistency::Linearizable)),
            request: Some(metastore_proto::etcdserverpb::MoveLeaderRequest { target_id }),
        };
        let reply = self
            .on_member(|mut c| {
                let ask = ask.clone();
                async move { c.move_leader(ask).await.map(tonic::Response::into_inner) }
            })
            .await?;
        if let Some(e) = reply.error {
            storage_failure(e)?;
        }
        reply
            .response
            .ok_or_else(|| Error::Internal("empty move-leader response".into()))
    }

    /// One Auth RPC (changes and Authenticate run on the leader; storaged forwards them).
    pub async fn auth(&self, op: AuthOp) -> Result<AuthResult, Error> {
        let request = AuthRequest {
            context: Some(self.context(Consistency::Linearizable)),
            op: Some(op),
        };
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let response = self
                .on_member_from(self.leader_hint(), |mut c| {
                    let request = request.clone();
                    async move { c.auth(request).await.map(tonic::Response::into_inner) }
                })
                .await?;
            match response.result {
                // Nothing was proposed: ask again once a leader is elected.
                Some(AuthResult::Error(e))
                    if e.code == ErrorCode::NoLeader as i32 && Instant::now() < deadline =>
                {
                    tokio::time::sleep(NO_LEADER_BACKOFF).await;
                }
                Some(AuthResult::Error(e)) => return Err(e.into()),
                Some(r) => {
                    self.seen_applied
                        .fetch_max(response.applied_index, Ordering::Relaxed);
                    return Ok(r);
                }
                None => return Err(Error::Internal("empty auth response".into())),
            }
        }
    }

    pub async fn cluster(&self, op: ClusterOp) -> Result<ClusterResult, Error> {
        let request = ClusterRequest {
            context: Some(self.context(Consistency::Linearizable)),
            op: Some(op),
        };
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let response = self
                .on_member(|mut c| {
                    let request = request.clone();
                    async move { c.cluster(request).await.map(tonic::Response::into_inner) }
                })
                .await?;
            match response.result {
                // Nothing was proposed: ask again once a leader is elected.
                Some(ClusterResult::Error(e))
                    if e.code == ErrorCode::NoLeader as i32 && Instant::now() < deadline =>
                {
                    tokio::time::sleep(NO_LEADER_BACKOFF).await;
                }
                Some(ClusterResult::Error(e)) => return Err(e.into()),
                Some(r) => return Ok(r),
                None => return Err(Error::Internal("empty cluster response".into())),
            }
        }
    }

    /// Opens a long-lived stream with `open` on member `first` when given, else on the
    /// preferred member; returns it with the member's index. When the member cannot be
    /// reached the hint is dropped or the next member becomes preferred, so the caller's next
    /// attempt reaches another member.
    async fn open_stream<T, F, Fut>(
        &self,
        first: Option<usize>,
        open: F,
    ) -> Result<(T, usize), Error>
    where
        F: FnOnce(StorageClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let n = self.members.len();
        let i = first.unwrap_or_else(|| self.preferred.load(Ordering::Relaxed)) % n;
        match open(self.members[i].streams.clone()).await {
            Ok(r) => Ok((r.into_inner(), i)),
            Err(status) => {
                if first.is_some() {
                    let _ = self.leader.compare_exchange(
                        i,
                        NO_LEADER,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                } else {
                    let _ = self.preferred.compare_exchange(
                        i,
                        (i + 1) % n,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                Err(error::from_upstream(&status))
            }
        }
    }

    /// Opens one upstream watch on the preferred member: sends `start`, waits for `created`,
    /// and returns the watch with the header of that reply. The one place that opens one.
    /// A member that cannot be reached (stopped, or removed from the cluster) is passed over
    /// for the next one: opening a watch changes nothing, so trying again is always safe.
    pub async fn open_watch(
        &self,
        start: WatchStart,
    ) -> Result<(UpstreamWatch, Option<ResponseHeader>), Error> {
        // Rounds over every member until the request deadline: a member in its stop window
        // (draining after SIGTERM) refuses new streams for a few seconds, and a removed one
        // may too.
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let mut last = None;
            for _ in 0..self.members.len() {
                match self.open_watch_once(start.clone()).await {
                    Err(e @ Error::Unavailable(_)) => last = Some(e),
                    other => return other,
                }
            }
            if Instant::now() >= deadline {
                return Err(last.unwrap_or(Error::Timeout));
            }
            tokio::time::sleep(NO_LEADER_BACKOFF).await;
        }
    }

    async fn open_watch_once(
        &self,
        start: WatchStart,
    ) -> Result<(UpstreamWatch, Option<ResponseHeader>), Error> {
        let (asks, rx) = mpsc::channel(WATCH_ASKS);
        asks.send(WatchUpstreamRequest {
            request: Some(WatchAsk::Start(start)),
        })
        .await
        .map_err(|_| Error::Internal("watch request queue closed".into()))?;
        let (stream, _) = self
            .open_stream(None, |mut c| async move {
                c.watch(ReceiverStream::new(rx)).await
            })
            .await?;
        let mut stream = WatchStream(stream);
        match stream.message().await {
            Ok(Some(WatchUpstreamResponse {
                kind: Some(WatchKind::Created(c)),
            })) => Ok((UpstreamWatch { asks, stream }, c.header)),
            Ok(_) => Err(Error::Internal("watch not created".into())),
            Err(s) => Err(error::from_upstream(&s)),
        }
    }

    /// Opens the keep-alive stream (batched lease renewals of all this gateway's clients) on
    /// the leader when it is known; returns it with the member's index.
    pub async fn renew_stream(
        &self,
        batches: mpsc::Receiver<RenewBatch>,
    ) -> Result<(Streaming<RenewReply>, usize), Error> {
        self.open_stream(self.leader_hint(), |mut c| async move {
            c.lease_keep_alive(ReceiverStream::new(batches)).await
        })
        .await
    }

    /// Context of one batch of renewals.
    pub fn renew_context(&self) -> RequestContext {
        self.context(Consistency::Linearizable)
    }

    /// Whether the caller may watch `[key, range_end)`; any member answers.
    pub async fn watch_access(&self, key: &[u8], range_end: &[u8]) -> Result<(), Error> {
        let access = WatchAccess {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        };
        match self.kv(Op::WatchAccess(access)).await? {
            KvResult::WatchAccess(_) => Ok(()),
            other => Err(Error::Internal(format!(
                "storage answered a watch access check with {other:?}"
            ))),
        }
    }

    /// One KV or lease request, routed and retried by its class.
    pub async fn kv(&self, op: Op) -> Result<KvResult, Error> {
        let class = classify(&op);
        let consistency = if class.serializable() {
            Consistency::Serializable
        } else {
            Consistency::Linearizable
        };
        let idempotent = class.idempotent;
        let request = KvRequest {
            context: Some(self.context(consistency)),
            op: Some(op),
        };
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            // Serializable reads may be answered by any member: spread them over all of them.
            // Everything else is served by the leader: go there directly when it is known
            // (asked again on every attempt, as a retry usually follows a leader change).
            let first = if consistency == Consistency::Serializable {
                Some(self.next_request_id.load(Ordering::Relaxed) as usize)
            } else {
                self.leader_hint()
            };
            let response = match self
                .on_member_from(first, |mut c| {
                    let request = request.clone();
                    async move { c.kv(request).await.map(tonic::Response::into_inner) }
                })
                .await
            {
                Ok(r) => r,
                // A request that changes nothing (a read, a watch's access check) may go again
                // after any failure on the way, even one that may have reached the member.
                Err(Error::Unavailable(_)) if idempotent && Instant::now() < deadline => {
                    tokio::time::sleep(NO_LEADER_BACKOFF).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match response.result {
                // Not proposed anywhere (no leader), or a request that changes nothing and
                // lost its leader on the way (leader changed): safe to ask again once a
                // leader is elected.
                Some(KvResult::Error(e))
                    if Instant::now() < deadline
                        && (e.code == ErrorCode::NoLeader as i32
                            || (e.code == ErrorCode::LeaderChanged as i32 && idempotent)) =>
                {
                    tokio::time::sleep(NO_LEADER_BACKOFF).await;
                }
                Some(KvResult::Error(e)) => return Err(e.into()),
                Some(r) => {
                    self.seen_revision
                        .fetch_max(revision_of(&r), Ordering::Relaxed);
                    self.seen_applied
                        .fetch_max(response.applied_index, Ordering::Relaxed);
                    return Ok(r);
                }
                None => return Err(Error::Internal("empty storage response".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(u: &Upstream) -> (i64, u64) {
        (u.seen_revision(), u.seen_applied.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn floors_drop_only_when_every_answer_is_behind() {
        let u = Upstream::new(&["http://127.0.0.1:1".to_string()]).expect("upstream");
        u.seen_revision.store(50, Ordering::Relaxed);
        u.seen_applied.store(100, Ordering::Relaxed);
        // A member behind, another ahead: nothing was replaced.
        u.forget_a_replaced_history((50, 100), [(10, 20), (50, 100)].into_iter());
        assert_eq!(seen(&u), (50, 100));
        // No answer at all: nothing is known.
        u.forget_a_replaced_history((50, 100), std::iter::empty());
        assert_eq!(seen(&u), (50, 100));
        // Restored from an older backup: a new, shorter log and older revisions.
        u.forget_a_replaced_history((50, 100), [(40, 3), (40, 2)].into_iter());
        assert_eq!(seen(&u), (40, 3));
        // Restored from a recent backup: the log is new, the revisions are not older.
        u.seen_revision.store(50, Ordering::Relaxed);
        u.seen_applied.store(100, Ordering::Relaxed);
        u.forget_a_replaced_history((50, 100), [(50, 3)].into_iter());
        assert_eq!(seen(&u), (50, 3));
    }
}
