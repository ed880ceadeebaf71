//! `etcdserverpb.Watch`: one bidirectional stream carries many watchers.
//!
//! A [`Session`] per client stream owns the watch ids and handles create, cancel and progress
//! requests in arrival order. Each watcher has a task that holds one upstream watch on
//! storaged and relays its events (filters and fragmentation applied here). If the upstream
//! stream breaks, the task resumes it from the next undelivered revision, so the client sees
//! no gap and no duplicate.

use super::feed::{FeedKey, Feeds, Shared, Subscription};
use crate::error::Error;
use crate::upstream::Upstream;
use futures::StreamExt;
use metastore_internal_proto::storage::watch_upstream_request::Request as Ask;
use metastore_internal_proto::storage::watch_upstream_response::Kind;
use metastore_internal_proto::storage::{
    WatchProgressAsk, WatchStart, WatchUpstreamRequest, WatchUpstreamResponse,
};
use metastore_proto::etcdserverpb::watch_create_request::FilterType;
use metastore_proto::etcdserverpb::watch_request::RequestUnion;
use metastore_proto::etcdserverpb::watch_server::Watch;
use metastore_proto::etcdserverpb::{
    ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use metastore_proto::mvccpb::event::EventType;
use prost::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered per client stream (etcd uses 128 as well).
const CLIENT_QUEUE: usize = 128;
const REASON_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const REASON_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

#[derive(Clone, Copy, Debug)]
pub struct WatchLimits {
    pub per_stream: usize,
    pub per_gateway: usize,
    pub progress_interval: Duration,
    /// Responses at least this large are split when the watcher allows fragments.
    pub fragment_bytes: usize,
}

pub struct WatchService {
    upstream: Upstream,
    feeds: Feeds,
    limits: WatchLimits,
    total: Arc<AtomicUsize>,
}

impl WatchService {
    pub fn new(upstream: Upstream, limits: WatchLimits) -> Self {
        Self {
            feeds: Feeds::new(upstream.clone()),
            upstream,
            limits,
            total: Arc::new(AtomicUsize::new(0)),
        }
    }
}

type ClientTx = mpsc::Sender<Result<WatchResponse, Status>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let (ended_tx, ended_rx) = mpsc::channel(64);
        let session = Session {
            upstream: self.upstream.clone(),
            feeds: self.feeds.clone(),
            limits: self.limits,
            total: self.total.clone(),
            tx,
            watchers: HashMap::new(),
            next_id: 0,
            ended_tx,
            ended_rx,
        };
        tokio::spawn(session.run(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Where a watcher stands: `None` header means it could not say.
struct ProgressReply {
    header: Option<ResponseHeader>,
    synced: bool,
}

struct Handle {
    task: JoinHandle<()>,
    asks: mpsc::Sender<oneshot::Sender<ProgressReply>>,
}

struct Session {
    upstream: Upstream,
    feeds: Feeds,
    limits: WatchLimits,
    total: Arc<AtomicUsize>,
    tx: ClientTx,
    watchers: HashMap<i64, Handle>,
    next_id: i64,
    ended_tx: mpsc::Sender<i64>,
    ended_rx: mpsc::Receiver<i64>,
}

struct ClientGone;

impl Session {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        let mut inbound_open = true;
        loop {
            tokio::select! {
                req = inbound.next(), if inbound_open => match req {
                    Some(Ok(r)) => {
                        if self.handle(r).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(_)) => break,
                    // A half-closed client keeps receiving, as with etcd.
                    None => inbound_open = false,
                },
                Some(id) = self.ended_rx.recv() => self.forget(id),
                _ = self.tx.closed() => break,
            }
        }
        for (_, h) in self.watchers.drain() {
            h.task.abort();
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn forget(&mut self, id: i64) {
        if self.watchers.remove(&id).is_some() {
            self.total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn send(&self, r: WatchResponse) -> Result<(), ClientGone> {
        self.tx.send(Ok(r)).await.map_err(|_| ClientGone)
    }

    async fn current_header(&self) -> Option<ResponseHeader> {
        match self.upstream.member_info().await {
            Ok(info) => info.header,
            Err(_) => Some(ResponseHeader::default()),
        }
    }

    async fn handle(&mut self, r: WatchRequest) -> Result<(), ClientGone> {
        match r.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => self.cancel(c.watch_id).await,
            Some(RequestUnion::ProgressRequest(_)) => self.progress().await,
            None => Ok(()),
        }
    }

    async fn refuse(&self, reason: String) -> Result<(), ClientGone> {
        let header = self.current_header().await;
        self.send(WatchResponse {
            header,
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        })
        .await
    }

    async fn create(&mut self, mut c: WatchCreateRequest) -> Result<(), ClientGone> {
        if c.key.is_empty() {
            c.key = vec![0];
        }
        if !c.range_end.is_empty() && c.range_end != [0] && c.key >= c.range_end {
            return self.refuse(REASON_EMPTY_RANGE.into()).await;
        }
        let id = if c.watch_id != 0 {
            if self.watchers.contains_key(&c.watch_id) {
                return self.refuse(REASON_DUPLICATE_ID.into()).await;
            }
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        };
        if self.watchers.len() >= self.limits.per_stream {
            let limit = self.limits.per_stream;
            return self
                .refuse(format!(
                    "metastore: too many watchers on this stream (limit {limit})"
                ))
                .await;
        }
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.limits.per_gateway {
            self.total.fetch_sub(1, Ordering::Relaxed);
            let limit = self.limits.per_gateway;
            return self
                .refuse(format!(
                    "metastore: too many watchers on this gateway (limit {limit})"
                ))
                .await;
        }
        let (asks_tx, asks_rx) = mpsc::channel(16);
        let (created_tx, created_rx) = oneshot::channel();
        let task = WatcherTask {
            id,
            upstream: self.upstream.clone(),
            feeds: self.feeds.clone(),
            tx: self.tx.clone(),
            ended: self.ended_tx.clone(),
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            fragment_limit: c.fragment.then_some(self.limits.fragment_bytes),
            progress_every: c.progress_notify.then_some(self.limits.progress_interval),
            start: WatchStart {
                key: c.key,
                range_end: c.range_end,
                start_revision: c.start_revision,
                prev_kv: c.prev_kv,
            },
            next_rev: 0,
            sent_since_tick: false,
        };
        let handle = tokio::spawn(task.run(asks_rx, created_tx));
        // Creates are answered in order: wait for this one's `created` before the next request.
        match created_rx.await {
            Ok(Ok(())) => {
                self.watchers.insert(
                    id,
                    Handle {
                        task: handle,
                        asks: asks_tx,
                    },
                );
                Ok(())
            }
            Ok(Err(e)) => {
                self.total.fetch_sub(1, Ordering::Relaxed);
                self.refuse(e.to_string()).await
            }
            Err(_) => {
                self.total.fetch_sub(1, Ordering::Relaxed);
                Err(ClientGone)
            }
        }
    }

    async fn cancel(&mut self, id: i64) -> Result<(), ClientGone> {
        // An unknown id gets no reply at all, as with etcd.
        let Some(h) = self.watchers.remove(&id) else {
            return Ok(());
        };
        self.total.fetch_sub(1, Ordering::Relaxed);
        h.task.abort();
        let _ = h.task.await;
        let header = self.current_header().await;
        self.send(WatchResponse {
            header,
            watch_id: id,
            canceled: true,
            ..Default::default()
        })
        .await
    }

    /// Answers with a revision every watcher of the stream has delivered, only when all of
    /// them are synced (etcd 3.4.25+ / 3.5.8+); with no watchers, with the current revision.
    async fn progress(&mut self) -> Result<(), ClientGone> {
        let mut replies = Vec::new();
        for h in self.watchers.values() {
            let (tx, rx) = oneshot::channel();
            if h.asks.send(tx).await.is_ok() {
                replies.push(rx);
            }
        }
        let mut min: Option<ResponseHeader> = None;
        for rx in replies {
            match rx.await {
                Ok(ProgressReply {
                    header: Some(h),
                    synced: true,
                }) => {
                    if min.is_none_or(|m| h.revision < m.revision) {
                        min = Some(h);
                    }
                }
                _ => return Ok(()),
            }
        }
        let header = match min {
            Some(h) => Some(h),
            None if self.watchers.is_empty() => self.current_header().await,
            None => return Ok(()),
        };
        self.send(WatchResponse {
            header,
            watch_id: -1,
            ..Default::default()
        })
        .await
    }
}

/// What an outstanding upstream progress ask is for.
enum Pending {
    Client(oneshot::Sender<ProgressReply>),
    Periodic,
}

/// Where a watcher's upstream messages come from.
enum Source {
    /// A feed shared with other watchers of the same range (coalescing).
    Shared(Subscription),
    /// An upstream watch of its own.
    Own(
        mpsc::Sender<WatchUpstreamRequest>,
        Box<Streaming<WatchUpstreamResponse>>,
    ),
}

impl Source {
    /// The next message; `None` when the source is gone (upstream lost, or dropped by the
    /// feed for being slow).
    async fn next(&mut self) -> Option<Shared> {
        match self {
            Source::Shared(sub) => sub.queue.recv().await,
            Source::Own(_, up) => up.message().await.ok().flatten().map(Arc::new),
        }
    }

    async fn ask_progress(&mut self) {
        match self {
            Source::Shared(sub) => sub.ask_progress().await,
            Source::Own(tx, _) => {
                let _ = tx.send(progress_ask()).await;
            }
        }
    }
}

struct WatcherTask {
    id: i64,
    upstream: Upstream,
    feeds: Feeds,
    tx: ClientTx,
    ended: mpsc::Sender<i64>,
    no_put: bool,
    no_delete: bool,
    fragment_limit: Option<usize>,
    progress_every: Option<Duration>,
    start: WatchStart,
    /// First revision not yet delivered to the client (0 until created).
    next_rev: i64,
    sent_since_tick: bool,
}

impl WatcherTask {
    /// Opens an upstream watch of its own from `start_revision`; returns the `created` header.
    async fn open(&self, start_revision: i64) -> Result<(Source, Option<ResponseHeader>), Error> {
        let (tx, rx) = mpsc::channel(16);
        let start = WatchStart {
            start_revision,
            ..self.start.clone()
        };
        let _ = tx
            .send(WatchUpstreamRequest {
                request: Some(Ask::Start(start)),
            })
            .await;
        let mut up = self.upstream.watch(rx).await?;
        match up.message().await {
            Ok(Some(WatchUpstreamResponse {
                kind: Some(Kind::Created(c)),
            })) => Ok((Source::Own(tx, Box::new(up)), c.header)),
            Ok(_) => Err(Error::Internal("watch not created".into())),
            Err(s) => Err(crate::error::from_upstream(&s)),
        }
    }

    /// Watchers "from now" share a feed; others (history) get their own upstream watch.
    async fn connect(&self) -> Result<(Source, Option<ResponseHeader>), Error> {
        if self.start.start_revision == 0 {
            let key = FeedKey {
                key: self.start.key.clone(),
                range_end: self.start.range_end.clone(),
                prev_kv: self.start.prev_kv,
            };
            if let Some((header, sub)) = self.feeds.subscribe(key).await {
                return Ok((Source::Shared(sub), header));
            }
        }
        self.open(self.start.start_revision).await
    }

    async fn send(&self, r: WatchResponse) -> Result<(), ClientGone> {
        self.tx.send(Ok(r)).await.map_err(|_| ClientGone)
    }

    async fn run(
        mut self,
        mut asks: mpsc::Receiver<oneshot::Sender<ProgressReply>>,
        created: oneshot::Sender<Result<(), Error>>,
    ) {
        let (mut source, header) = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                let _ = created.send(Err(e));
                return;
            }
        };
        let current = header.map_or(0, |h| h.revision);
        self.next_rev = if self.start.start_revision > 0 {
            self.start.start_revision
        } else {
            current + 1
        };
        let reply = WatchResponse {
            header,
            watch_id: self.id,
            created: true,
            ..Default::default()
        };
        if self.send(reply).await.is_err() {
            return;
        }
        let _ = created.send(Ok(()));
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let period = self.progress_every.unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                msg = source.next() => match msg {
                    Some(m) => match self.relay(&m, &mut pending).await {
                        Ok(true) => {}
                        Ok(false) | Err(ClientGone) => return,
                    },
                    None => {
                        // Source lost: outstanding asks cannot be answered; resume on our own.
                        for p in pending.drain(..) {
                            if let Pending::Client(reply) = p {
                                let _ = reply.send(ProgressReply { header: None, synced: false });
                            }
                        }
                        match self.resume().await {
                            Some(s) => source = s,
                            None => return,
                        }
                    }
                },
                ask = asks.recv() => match ask {
                    Some(reply) => {
                        pending.push_back(Pending::Client(reply));
                        source.ask_progress().await;
                    }
                    None => return,
                },
                _ = tick.tick(), if self.progress_every.is_some() => {
                    if !self.sent_since_tick {
                        pending.push_back(Pending::Periodic);
                        source.ask_progress().await;
                    }
                    self.sent_since_tick = false;
                }
            }
        }
    }

    /// Reopens an upstream watch of its own from the first undelivered revision.
    async fn resume(&mut self) -> Option<Source> {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.tx.is_closed() {
                return None;
            }
            // The new registration's `created` is internal; the client already has one.
            if let Ok((source, _)) = self.open(self.next_rev).await {
                return Some(source);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Handles one upstream message; `Ok(false)` when the watcher has ended.
    async fn relay(
        &mut self,
        m: &WatchUpstreamResponse,
        pending: &mut VecDeque<Pending>,
    ) -> Result<bool, ClientGone> {
        match &m.kind {
            Some(Kind::Events(e)) => {
                // A shared feed may relay revisions this watcher already has; skip them.
                let events: Vec<_> = e
                    .events
                    .iter()
                    .filter(|ev| {
                        ev.kv
                            .as_ref()
                            .is_some_and(|kv| kv.mod_revision >= self.next_rev)
                    })
                    .filter(|ev| {
                        let delete = ev.r#type == EventType::Delete as i32;
                        !(delete && self.no_delete || !delete && self.no_put)
                    })
                    .cloned()
                    .collect();
                if let Some(last) = e.events.last().and_then(|ev| ev.kv.as_ref()) {
                    self.next_rev = self.next_rev.max(last.mod_revision + 1);
                }
                if events.is_empty() {
                    return Ok(true);
                }
                self.sent_since_tick = true;
                let response = WatchResponse {
                    header: e.header,
                    watch_id: self.id,
                    events,
                    ..Default::default()
                };
                for piece in fragment(response, self.fragment_limit) {
                    self.send(piece).await?;
                }
                Ok(true)
            }
            Some(Kind::Progress(p)) => {
                let revision = p.header.map_or(0, |h| h.revision);
                if p.synced {
                    self.next_rev = self.next_rev.max(revision + 1);
                }
                match pending.pop_front() {
                    Some(Pending::Client(reply)) => {
                        let _ = reply.send(ProgressReply {
                            header: p.header,
                            synced: p.synced,
                        });
                    }
                    Some(Pending::Periodic) if p.synced && !self.sent_since_tick => {
                        self.send(WatchResponse {
                            header: p.header,
                            watch_id: self.id,
                            ..Default::default()
                        })
                        .await?;
                    }
                    _ => {}
                }
                Ok(true)
            }
            Some(Kind::Compacted(c)) => {
                self.send(WatchResponse {
                    header: c.header,
                    watch_id: self.id,
                    canceled: true,
                    compact_revision: c.compact_revision,
                    ..Default::default()
                })
                .await?;
                let _ = self.ended.send(self.id).await;
                Ok(false)
            }
            Some(Kind::Created(_)) | None => Ok(true),
        }
    }
}

fn progress_ask() -> WatchUpstreamRequest {
    WatchUpstreamRequest {
        request: Some(Ask::Progress(WatchProgressAsk {})),
    }
}

/// Splits a response of two or more events whose encoded size reaches `limit`; every piece but
/// the last is marked `fragment`, and all share the header and watch id.
fn fragment(response: WatchResponse, limit: Option<usize>) -> Vec<WatchResponse> {
    let Some(limit) = limit else {
        return vec![response];
    };
    if response.events.len() < 2 || response.encoded_len() < limit {
        return vec![response];
    }
    let shell = WatchResponse {
        events: Vec::new(),
        ..response.clone()
    };
    let base = shell.encoded_len();
    let mut pieces = Vec::new();
    let mut current = shell.clone();
    let mut size = base;
    for ev in response.events {
        let ev_size = ev.encoded_len() + 4;
        if !current.events.is_empty() && size + ev_size >= limit {
            current.fragment = true;
            pieces.push(std::mem::replace(&mut current, shell.clone()));
            size = base;
        }
        size += ev_size;
        current.events.push(ev);
    }
    pieces.push(current);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use metastore_proto::mvccpb::{Event, KeyValue};

    fn ev(n: usize) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                value: vec![0; n],
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn fragments_only_large_multi_event_responses() {
        let r = WatchResponse {
            watch_id: 3,
            events: vec![ev(600), ev(600), ev(600)],
            ..Default::default()
        };
        assert_eq!(fragment(r.clone(), None).len(), 1);
        assert_eq!(fragment(r.clone(), Some(100_000)).len(), 1);
        let pieces = fragment(r, Some(1000));
        assert_eq!(pieces.len(), 3);
        assert!(pieces[0].fragment && pieces[1].fragment && !pieces[2].fragment);
        assert!(
            pieces
                .iter()
                .all(|p| p.watch_id == 3 && p.events.len() == 1)
        );
        let single = WatchResponse {
            events: vec![ev(5000)],
            ..Default::default()
        };
        assert_eq!(fragment(single, Some(1000)).len(), 1);
    }
}
