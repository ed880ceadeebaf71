//! One task per watcher: the only sender on the watcher's outgoing stream, so everything it
//! sends (created, history, live events, progress, compaction) stays in revision order.

use super::hub::{LiveEvents, Registration, WatchHub};
use crate::mvcc::{KeyRange, MvccError, Store};
use futures::{FutureExt, Stream, StreamExt};
use metastore_internal_proto::storage::watch_upstream_request::Request as Ask;
use metastore_internal_proto::storage::watch_upstream_response::Kind;
use metastore_internal_proto::storage::{
    WatchCompacted, WatchCreated, WatchEvents, WatchProgress, WatchStart, WatchUpstreamRequest,
    WatchUpstreamResponse,
};
use metastore_proto::etcdserverpb::ResponseHeader;
use metastore_proto::mvccpb::Event;
use prost::Message as _;
use std::sync::Arc;
use tokio::sync::mpsc;
use tonic::Status;

/// Revisions read from history per response while catching up (etcd uses the same batch).
const HISTORY_BATCH: i64 = 1000;
/// Soft size cap of one catch-up response, so clients with gRPC's default 4 MiB receive
/// limit can take it; one revision is never split.
const HISTORY_BATCH_BYTES: usize = 1024 * 1024;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn msg(kind: Kind) -> WatchUpstreamResponse {
    WatchUpstreamResponse { kind: Some(kind) }
}

/// Largest part of one events response on the wire; a bigger response (a revision that
/// deleted many large keys, with their previous values) is cut into parts marked `more`, far
/// below the internal message limit, so no revision is ever too large to deliver.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// `events` with `header` as one or more messages, every one but the last marked `more`.
fn parts(revision: i64, events: Vec<Event>) -> Vec<WatchUpstreamResponse> {
    let mut out = Vec::new();
    let mut part = Vec::new();
    let mut size = 0;
    for e in events {
        let len = e.encoded_len();
        if size + len > PART_BYTES && !part.is_empty() {
            out.push(std::mem::take(&mut part));
            size = 0;
        }
        size += len;
        part.push(e);
    }
    out.push(part);
    let last = out.len() - 1;
    out.into_iter()
        .enumerate()
        .map(|(i, events)| {
            msg(Kind::Events(WatchEvents {
                header: header(revision),
                events,
                more: i < last,
            }))
        })
        .collect()
}

/// Registers a watcher for `start` and spawns its task. The first message on `out` is
/// `created`; the task ends when `inbound` or `out` closes, or on compaction.
pub fn spawn<S>(
    hub: Arc<WatchHub>,
    store: Arc<Store>,
    start: WatchStart,
    inbound: S,
    out: mpsc::Sender<WatchUpstreamResponse>,
) where
    S: Stream<Item = Result<WatchUpstreamRequest, Status>> + Unpin + Send + 'static,
{
    let range = KeyRange::new(&start.key, &start.range_end);
    let (current, next, registration) = store.with_revisions(|current, _| {
        let next = if start.start_revision > 0 {
            start.start_revision
        } else {
            current + 1
        };
        (
            current,
            next,
            hub.register(range.clone(), start.prev_kv, next),
        )
    });
    let task = Watcher {
        hub,
        store,
        range,
        prev_kv: start.prev_kv,
        reg: registration,
        out,
    };
    tokio::spawn(task.run(inbound, current, next));
}

struct Watcher {
    hub: Arc<WatchHub>,
    store: Arc<Store>,
    range: KeyRange,
    prev_kv: bool,
    reg: Registration,
    out: mpsc::Sender<WatchUpstreamResponse>,
}

enum Step {
    Continue,
    Stop,
}

impl Watcher {
    async fn run<S>(mut self, mut inbound: S, current: i64, mut next: i64)
    where
        S: Stream<Item = Result<WatchUpstreamRequest, Status>> + Unpin + Send,
    {
        let created = msg(Kind::Created(WatchCreated {
            header: header(current),
        }));
        if self.out.send(created).await.is_ok() {
            loop {
                let step = match self.catch_up(&mut inbound, next).await {
                    Ok(()) => self.relay_live(&mut inbound).await,
                    Err(step) => step,
                };
                match step {
                    Step::Stop => break,
                    Step::Continue => match self.hub.resume_point(self.reg.id) {
                        Some(n) => next = n,
                        None => break,
                    },
                }
            }
        }
        self.hub.remove(self.reg.id);
    }

    async fn send(&self, m: WatchUpstreamResponse) -> Result<(), Step> {
        self.out.send(m).await.map_err(|_| Step::Stop)
    }

    /// Reads history from `next` until caught up, then switches to live delivery.
    async fn catch_up<S>(&mut self, inbound: &mut S, mut next: i64) -> Result<(), Step>
    where
        S: Stream<Item = Result<WatchUpstreamRequest, Status>> + Unpin + Send,
    {
        loop {
            // Answer progress questions between batches: not synced yet.
            while let Some(ask) = inbound.next().now_or_never() {
                match ask {
                    Some(Ok(WatchUpstreamRequest {
                        request: Some(Ask::Progress(_)),
                    })) => {
                        self.send(msg(Kind::Progress(WatchProgress {
                            header: header(next - 1),
                            synced: false,
                        })))
                        .await?;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Err(Step::Stop),
                }
            }
            let store = self.store.clone();
            let range = self.range.clone();
            let prev_kv = self.prev_kv;
            let read = tokio::task::spawn_blocking(move || {
                store.history(&range, next, HISTORY_BATCH, HISTORY_BATCH_BYTES, prev_kv)
            })
            .await;
            let history = match read {
                Ok(Ok(h)) => h,
                Ok(Err(MvccError::Compacted)) => {
                    let compacted = self.store.compacted_revision();
                    let _ = self
                        .send(msg(Kind::Compacted(WatchCompacted {
                            header: header(0),
                            compact_revision: compacted,
                        })))
                        .await;
                    return Err(Step::Stop);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "watch history read failed");
                    return Err(Step::Stop);
                }
                Err(e) => {
                    tracing::error!(error = %e, "watch history task failed");
                    return Err(Step::Stop);
                }
            };
            if !history.events.is_empty() {
                for m in parts(history.current, history.events) {
                    self.send(m).await?;
                }
            }
            next = history.last + 1;
            let hub = &self.hub;
            let id = self.reg.id;
            let synced = self.store.with_revisions(|current, _| {
                if next > current {
                    hub.set_synced(id, next);
                    true
                } else {
                    false
                }
            });
            if synced {
                return Ok(());
            }
        }
    }

    /// Relays live events until the hub moves this watcher aside (then `Continue` to catch up)
    /// or the stream ends (`Stop`).
    async fn relay_live<S>(&mut self, inbound: &mut S) -> Step
    where
        S: Stream<Item = Result<WatchUpstreamRequest, Status>> + Unpin + Send,
    {
        loop {
            tokio::select! {
                live = self.reg.live.recv() => match live {
                    Some(l) => if self.forward(l).await.is_err() { return Step::Stop },
                    None => return Step::Stop,
                },
                _ = self.reg.wake.notified() => {
                    // Fell behind: deliver what was queued (all older than the resume point).
                    while let Ok(l) = self.reg.live.try_recv() {
                        if self.forward(l).await.is_err() {
                            return Step::Stop;
                        }
                    }
                    return Step::Continue;
                }
                ask = inbound.next() => match ask {
                    Some(Ok(WatchUpstreamRequest { request: Some(Ask::Progress(_)) })) => {
                        if self.progress().await.is_err() {
                            return Step::Stop;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Step::Stop,
                },
                _ = self.out.closed() => return Step::Stop,
            }
        }
    }

    async fn forward(&self, l: LiveEvents) -> Result<(), Step> {
        for m in parts(l.revision, l.events) {
            self.send(m).await?;
        }
        Ok(())
    }

    /// Answers "where are you": every event up to the answer's revision is sent before it.
    async fn progress(&mut self) -> Result<(), Step> {
        let hub = &self.hub;
        let id = self.reg.id;
        let (current, synced) = self
            .store
            .with_revisions(|current, _| (current, hub.is_synced(id)));
        let mut later = Vec::new();
        // Commits up to `current` already queued their events; send those first and hold back
        // anything newer until after the answer.
        while let Ok(l) = self.reg.live.try_recv() {
            if l.revision <= current {
                self.forward(l).await?;
            } else {
                later.push(l);
            }
        }
        // A watcher that just fell behind has delivered everything below its resume point.
        let delivered = if synced {
            current
        } else {
            self.hub.resume_point(id).map_or(current, |n| n - 1)
        };
        self.send(msg(Kind::Progress(WatchProgress {
            header: header(delivered),
            synced,
        })))
        .await?;
        for l in later {
            self.forward(l).await?;
        }
        Ok(())
    }
}
