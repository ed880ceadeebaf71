//! One client watch stream: watch ids, and create, cancel and progress requests in order.

use super::WatchLimits;
use super::client::{ClientGone, ClientTx, ProgressReply};
use super::feed::Feeds;
use super::watcher::WatcherTask;
use crate::error::WatchRefusal;
use crate::upstream::Upstream;
use futures::StreamExt;
use metastore_internal_proto::storage::WatchStart;
use metastore_proto::etcdserverpb::watch_create_request::FilterType;
use metastore_proto::etcdserverpb::watch_request::RequestUnion;
use metastore_proto::etcdserverpb::{
    ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::Streaming;

pub(super) struct Handle {
    task: JoinHandle<()>,
    asks: mpsc::Sender<oneshot::Sender<ProgressReply>>,
}

pub(super) struct Session {
    pub(super) upstream: Upstream,
    pub(super) feeds: Feeds,
    pub(super) limits: WatchLimits,
    pub(super) total: Arc<AtomicUsize>,
    pub(super) tx: ClientTx,
    pub(super) watchers: HashMap<i64, Handle>,
    pub(super) next_id: i64,
    pub(super) ended_tx: mpsc::Sender<i64>,
    pub(super) ended_rx: mpsc::Receiver<i64>,
}

impl Session {
    pub(super) async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
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

    async fn refuse(&self, refusal: WatchRefusal) -> Result<(), ClientGone> {
        let header = self.current_header().await;
        self.send(WatchResponse {
            header,
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: refusal.reason(),
            ..Default::default()
        })
        .await
    }

    async fn create(&mut self, mut c: WatchCreateRequest) -> Result<(), ClientGone> {
        if c.key.is_empty() {
            c.key = vec![0];
        }
        if !c.range_end.is_empty() && c.range_end != [0] && c.key >= c.range_end {
            return self.refuse(WatchRefusal::EmptyRange).await;
        }
        let id = if c.watch_id != 0 {
            if self.watchers.contains_key(&c.watch_id) {
                return self.refuse(WatchRefusal::DuplicateId).await;
            }
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        };
        // etcd checks READ on the watched range when the watcher is created.
        if let Err(e) = self.upstream.watch_access(&c.key, &c.range_end).await {
            return self.refuse(WatchRefusal::Failed(e)).await;
        }
        if self.watchers.len() >= self.limits.per_stream {
            let limit = self.limits.per_stream;
            return self.refuse(WatchRefusal::StreamLimit(limit)).await;
        }
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.limits.per_gateway {
            self.total.fetch_sub(1, Ordering::Relaxed);
            let limit = self.limits.per_gateway;
            return self.refuse(WatchRefusal::GatewayLimit(limit)).await;
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
        let handle = crate::caller::spawn(task.run(asks_rx, created_tx));
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
                self.refuse(WatchRefusal::Failed(e)).await
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
