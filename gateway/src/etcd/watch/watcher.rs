//! One client watcher: relays its upstream source (a shared feed or its own watch) to the
//! client, resuming from the first undelivered revision when the source goes away.

use super::client::{ClientGone, ClientTx, ProgressReply};
use super::feed::{FeedKey, Feeds, Shared, Subscription};
use super::fragment::fragment;
use crate::error::Error;
use crate::upstream::{Upstream, UpstreamWatch};
use metastore_internal_proto::storage::watch_upstream_response::Kind;
use metastore_internal_proto::storage::{WatchStart, WatchUpstreamResponse};
use metastore_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use metastore_proto::mvccpb::event::EventType;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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
    Own(Box<UpstreamWatch>),
}

impl Source {
    /// The next message; `None` when the source is gone (upstream lost, or dropped by the
    /// feed for being slow).
    async fn next(&mut self) -> Option<Shared> {
        match self {
            Source::Shared(sub) => sub.queue.recv().await,
            Source::Own(up) => up.message().await.ok().flatten().map(Arc::new),
        }
    }

    async fn ask_progress(&mut self) {
        match self {
            Source::Shared(sub) => sub.ask_progress().await,
            Source::Own(up) => up.ask_progress().await,
        }
    }
}

pub(super) struct WatcherTask {
    pub(super) id: i64,
    pub(super) upstream: Upstream,
    pub(super) feeds: Feeds,
    pub(super) tx: ClientTx,
    pub(super) ended: mpsc::Sender<i64>,
    pub(super) no_put: bool,
    pub(super) no_delete: bool,
    pub(super) fragment_limit: Option<usize>,
    pub(super) progress_every: Option<Duration>,
    pub(super) start: WatchStart,
    /// First revision not yet delivered to the client (0 until created).
    pub(super) next_rev: i64,
    pub(super) sent_since_tick: bool,
}

impl WatcherTask {
    /// Opens an upstream watch of its own from `start_revision`; returns the `created` header.
    async fn open(&self, start_revision: i64) -> Result<(Source, Option<ResponseHeader>), Error> {
        let start = WatchStart {
            start_revision,
            ..self.start.clone()
        };
        let (up, header) = self.upstream.open_watch(start).await?;
        Ok((Source::Own(Box::new(up)), header))
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

    pub(super) async fn run(
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
        let mut header = header;
        self.next_rev = if self.start.start_revision > 0 {
            self.start.start_revision
        } else {
            // "From now" is after every revision this gateway has already reported: the
            // member serving the watch may not have applied them yet, and their events must
            // not reach a watcher created after the writes were acknowledged.
            let current = header
                .map_or(0, |h| h.revision)
                .max(self.upstream.seen_revision());
            if let Some(h) = header.as_mut() {
                h.revision = current;
            }
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
                // A member still applying revisions from before this watcher was created
                // reports its own position; the watcher has everything before `next_rev`.
                let mut p = *p;
                if let Some(h) = p.header.as_mut() {
                    h.revision = h.revision.max(self.next_rev - 1);
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
