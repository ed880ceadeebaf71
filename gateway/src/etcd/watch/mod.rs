//! `etcdserverpb.Watch`: one bidirectional stream carries many watchers.
//!
//! A `Session` per client stream owns the watch ids and handles create, cancel and progress
//! requests in arrival order (`session`). Each watcher has a task (`watcher`) that relays
//! events from a shared feed (watchers "from now", see `feed`) or from an upstream watch of
//! its own, applying filters and fragmentation (`fragment`). If its source goes away, the
//! task resumes from the next undelivered revision, so the client sees no gap and no duplicate.
//! The session and its watchers share only what is in `client` (the reply channel, progress
//! answers). Every upstream watch, shared or not, is opened by `Upstream::open_watch`.

mod client;
mod feed;
mod fragment;
mod session;
mod watcher;

use crate::upstream::Upstream;
use feed::Feeds;
use metastore_proto::etcdserverpb::watch_server::Watch;
use metastore_proto::etcdserverpb::{WatchRequest, WatchResponse};
use session::Session;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered per client stream (etcd uses 128 as well).
const CLIENT_QUEUE: usize = 128;

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
        crate::caller::spawn(session.run(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
