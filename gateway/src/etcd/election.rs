//! `v3electionpb.Election`, with etcd's server-side semantics over plain keys: a candidate
//! claims `name/<lease hex>` holding its value; the leader is the oldest key under `name/`.
//! Proclaim and Resign act only while the candidate's key is the same one (same create
//! revision) it was given. Observe streams the leader and every change of it.

use super::concurrency::{self, GiveUpOnDrop, answer};
use crate::error::Error;
use crate::upstream::Upstream;
use metastore_internal_proto::storage::WatchStart;
use metastore_proto::etcdserverpb::request_op::Request as RequestKind;
use metastore_proto::etcdserverpb::{PutRequest, RequestOp, ResponseHeader, TxnRequest};
use metastore_proto::mvccpb::KeyValue;
use metastore_proto::mvccpb::event::EventType;
use metastore_proto::v3electionpb::election_server::Election;
use metastore_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use std::pin::Pin;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Leader changes queued for one observer before the observer waits for the client.
const OBSERVE_QUEUE: usize = 16;

pub struct ElectionService {
    upstream: Upstream,
}

impl ElectionService {
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }
}

fn leader_key(k: Option<LeaderKey>) -> Result<LeaderKey, Error> {
    k.ok_or(Error::LeaderFieldMissing)
}

/// Puts `value` on the candidate's key if it still holds the claim `k` names.
fn proclaim_txn(k: &LeaderKey, value: &[u8]) -> TxnRequest {
    let put = PutRequest {
        key: k.key.clone(),
        value: value.to_vec(),
        ignore_lease: true,
        ..Default::default()
    };
    TxnRequest {
        compare: vec![concurrency::created_at(&k.key, k.rev)],
        success: vec![RequestOp {
            request: Some(RequestKind::RequestPut(put)),
        }],
        failure: vec![],
    }
}

async fn proclaim(up: &Upstream, k: &LeaderKey, value: &[u8]) -> Result<ResponseHeader, Error> {
    let r = concurrency::txn(up, proclaim_txn(k, value)).await?;
    if !r.succeeded {
        return Err(Error::ElectionNotLeader);
    }
    Ok(r.header.unwrap_or_default())
}

type LeaderStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

impl ElectionService {
    async fn run_campaign(&self, req: CampaignRequest) -> Result<CampaignResponse, Error> {
        let up = &self.upstream;
        let lease = concurrency::lease_or_grant(up, req.lease).await?;
        let claim = concurrency::claim(up, &req.name, lease, &req.value).await?;
        let leader = LeaderKey {
            name: req.name.clone(),
            key: claim.key.clone(),
            rev: claim.revision,
            lease,
        };
        // If the caller goes away before it leads, the candidacy is withdrawn.
        let guard = GiveUpOnDrop::new(up, &claim.key, claim.revision);
        if claim.existing.as_ref().is_some_and(|v| *v != req.value) {
            proclaim(up, &leader, &req.value).await?;
        }
        let prefix = concurrency::prefix(&req.name);
        concurrency::wait_deletes(up, &prefix, claim.revision - 1).await?;
        guard.disarm();
        Ok(CampaignResponse {
            header: Some(claim.header),
            leader: Some(leader),
        })
    }

    async fn run_proclaim(&self, req: ProclaimRequest) -> Result<ProclaimResponse, Error> {
        let k = leader_key(req.leader)?;
        let header = proclaim(&self.upstream, &k, &req.value).await?;
        Ok(ProclaimResponse {
            header: Some(header),
        })
    }

    async fn current_leader(&self, req: LeaderRequest) -> Result<LeaderResponse, Error> {
        match concurrency::oldest(&self.upstream, &req.name).await? {
            (header, Some(kv)) => Ok(LeaderResponse {
                header: Some(header),
                kv: Some(kv),
            }),
            (_, None) => Err(Error::ElectionNoLeader),
        }
    }

    async fn run_resign(&self, req: ResignRequest) -> Result<ResignResponse, Error> {
        let k = leader_key(req.leader)?;
        let r = concurrency::txn(&self.upstream, concurrency::resign_txn(&k.key, k.rev)).await?;
        Ok(ResignResponse { header: r.header })
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    type ObserveStream = LeaderStream;

    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        answer(self.run_campaign(request.into_inner()).await)
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        answer(self.run_proclaim(request.into_inner()).await)
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        answer(self.current_leader(request.into_inner()).await)
    }

    /// Streams the leader and its changes. As with etcd, a failed read or watch ends the
    /// stream without an error (the observer opens it again).
    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let name = request.into_inner().name;
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
        let up = self.upstream.clone();
        crate::caller::spawn(async move {
            if let Err(e) = observe(&up, &name, &tx).await {
                tracing::debug!(error = %e, "election observer ended");
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        answer(self.run_resign(request.into_inner()).await)
    }
}

/// Sends the leader of `name` and every change of it until the client goes away: when
/// there is none, waits for the first candidate; then follows the leader's key (new values
/// are sent) until it is deleted, and looks again. A leader already sent is not sent twice.
async fn observe(
    up: &Upstream,
    name: &[u8],
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), Error> {
    let prefix = concurrency::prefix(name);
    let mut last: Option<(Vec<u8>, i64)> = None;
    loop {
        let (header, oldest) = concurrency::oldest(up, name).await?;
        let (header, kv) = match oldest {
            Some(kv) => (header, kv),
            None => match first_put(up, &prefix, header.revision + 1, tx).await? {
                Next::Found(header, kv) => (header, kv),
                Next::Again => continue,
                Next::Left => return Ok(()),
            },
        };
        let from = kv.mod_revision + 1;
        let key = kv.key.clone();
        let seen = Some((key.clone(), kv.mod_revision));
        if last != seen && !send(tx, header, kv).await {
            return Ok(());
        }
        last = seen;
        match follow(up, &key, from, tx, &mut last).await? {
            Next::Left => return Ok(()),
            _ => continue,
        }
    }
}

async fn send(
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
    header: ResponseHeader,
    kv: KeyValue,
) -> bool {
    let r = LeaderResponse {
        header: Some(header),
        kv: Some(kv),
    };
    tx.send(Ok(r)).await.is_ok()
}

/// What a watch step of [`observe`] ended with.
enum Next {
    /// A candidate appeared (header of its event, its key).
    Found(ResponseHeader, KeyValue),
    /// Look at the keys again (the leader was deleted, or the watch ended without saying).
    Again,
    /// The client went away.
    Left,
}

/// Waits for the first key put under `prefix` from revision `from` on.
async fn first_put(
    up: &Upstream,
    prefix: &[u8],
    from: i64,
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<Next, Error> {
    let start = WatchStart {
        key: prefix.to_vec(),
        range_end: concurrency::prefix_end(prefix),
        start_revision: from,
        prev_kv: false,
    };
    let (mut watch, _) = up.open_watch(start).await?;
    loop {
        tokio::select! {
            e = concurrency::next_events(&mut watch) => {
                let Some(e) = e else { return Ok(Next::Again) };
                let put = e.events.into_iter().find(|ev| ev.r#type == EventType::Put as i32);
                if let Some(kv) = put.and_then(|ev| ev.kv) {
                    return Ok(Next::Found(e.header.unwrap_or_default(), kv));
                }
            }
            _ = tx.closed() => return Ok(Next::Left),
        }
    }
}

/// Sends every new value of the leader's `key` from revision `from` on, until the key is
/// deleted or the watch ends without saying ([`Next::Again`]) or the client leaves.
async fn follow(
    up: &Upstream,
    key: &[u8],
    from: i64,
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
    last: &mut Option<(Vec<u8>, i64)>,
) -> Result<Next, Error> {
    let start = WatchStart {
        key: key.to_vec(),
        start_revision: from,
        ..Default::default()
    };
    let (mut watch, _) = up.open_watch(start).await?;
    loop {
        tokio::select! {
            e = concurrency::next_events(&mut watch) => {
                let Some(e) = e else { return Ok(Next::Again) };
                let header = e.header.unwrap_or_default();
                for ev in e.events {
                    if ev.r#type == EventType::Delete as i32 {
                        return Ok(Next::Again);
                    }
                    if let Some(kv) = ev.kv {
                        *last = Some((kv.key.clone(), kv.mod_revision));
                        if !send(tx, header, kv).await {
                            return Ok(Next::Left);
                        }
                    }
                }
            }
            _ = tx.closed() => return Ok(Next::Left),
        }
    }
}
