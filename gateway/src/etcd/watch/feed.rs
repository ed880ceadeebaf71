//! Shared upstream watches (coalescing). Client watchers that watch the same range "from now"
//! with the same `prev_kv` choice subscribe to one upstream watch on storaged instead of
//! opening one each.
//!
//! A feed relays every upstream message to its subscribers' queues without waiting; a
//! subscriber whose queue is full is dropped from the feed, and its watcher task continues on
//! an upstream watch of its own from the first revision it has not delivered (so a slow client
//! never holds up the others, and loses nothing). Progress questions are forwarded upstream
//! and each answer goes back to the subscriber that asked, in order with the events.

use crate::upstream::{Upstream, UpstreamWatch};
use metastore_internal_proto::storage::watch_upstream_response::Kind;
use metastore_internal_proto::storage::{WatchProgress, WatchStart, WatchUpstreamResponse};
use metastore_proto::etcdserverpb::ResponseHeader;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Messages queued per subscriber before it is dropped to a watch of its own.
const SUBSCRIBER_QUEUE: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FeedKey {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
}

pub type Shared = Arc<WatchUpstreamResponse>;

enum Cmd {
    Subscribe {
        id: u64,
        queue: mpsc::Sender<Shared>,
        created: oneshot::Sender<Option<ResponseHeader>>,
    },
    Unsubscribe(u64),
    Progress(u64),
}

/// The registry of feeds, shared by every client stream of the gateway.
#[derive(Clone)]
pub struct Feeds {
    upstream: Upstream,
    feeds: Arc<parking_lot::Mutex<HashMap<FeedKey, mpsc::Sender<Cmd>>>>,
    next_id: Arc<AtomicU64>,
}

/// A live subscription; unsubscribes when dropped.
pub struct Subscription {
    pub queue: mpsc::Receiver<Shared>,
    feed: mpsc::Sender<Cmd>,
    id: u64,
}

impl Subscription {
    /// Asks where the feed stands; the answer arrives on `queue` in order.
    pub async fn ask_progress(&self) {
        let _ = self.feed.send(Cmd::Progress(self.id)).await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.feed.try_send(Cmd::Unsubscribe(self.id));
    }
}

impl Feeds {
    pub fn new(upstream: Upstream) -> Self {
        Self {
            upstream,
            feeds: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Subscribes to the feed for `key` (starting one if needed). Returns the header of the
    /// `created` reply (its revision is where the subscription starts) and the subscription.
    pub async fn subscribe(&self, key: FeedKey) -> Option<(Option<ResponseHeader>, Subscription)> {
        for _ in 0..3 {
            let feed = {
                let mut feeds = self.feeds.lock();
                match feeds.get(&key) {
                    Some(f) if !f.is_closed() => f.clone(),
                    _ => {
                        let (tx, rx) = mpsc::channel(256);
                        feeds.insert(key.clone(), tx.clone());
                        tokio::spawn(run_feed(self.clone(), key.clone(), tx.clone(), rx));
                        tx
                    }
                }
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (queue_tx, queue_rx) = mpsc::channel(SUBSCRIBER_QUEUE);
            let (created_tx, created_rx) = oneshot::channel();
            let cmd = Cmd::Subscribe {
                id,
                queue: queue_tx,
                created: created_tx,
            };
            if feed.send(cmd).await.is_err() {
                continue;
            }
            if let Ok(Some(header)) = created_rx.await {
                let sub = Subscription {
                    queue: queue_rx,
                    feed,
                    id,
                };
                return Some((Some(header), sub));
            }
        }
        None
    }

    fn retire(&self, key: &FeedKey, me: &mpsc::Sender<Cmd>) {
        let mut feeds = self.feeds.lock();
        if feeds.get(key).is_some_and(|f| f.same_channel(me)) {
            feeds.remove(key);
        }
    }
}

/// Opens the feed's upstream watch from `start_revision`; the header of its `created` reply.
async fn open(
    upstream: &Upstream,
    key: &FeedKey,
    start_revision: i64,
) -> Option<(UpstreamWatch, ResponseHeader)> {
    let start = WatchStart {
        key: key.key.clone(),
        range_end: key.range_end.clone(),
        start_revision,
        prev_kv: key.prev_kv,
    };
    let (up, header) = upstream.open_watch(start).await.ok()?;
    Some((up, header.unwrap_or_default()))
}

fn header_at(template: &ResponseHeader, revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..*template
    }
}

/// Who asked an outstanding upstream progress question.
enum Asker {
    Subscriber(u64),
    /// A new subscriber: it joins when the answer says where the feed stands, so its
    /// `created` revision is the store's current one, as etcd reports.
    Joining {
        id: u64,
        queue: mpsc::Sender<Shared>,
        created: oneshot::Sender<Option<ResponseHeader>>,
    },
}

async fn run_feed(
    feeds: Feeds,
    key: FeedKey,
    me: mpsc::Sender<Cmd>,
    mut cmds: mpsc::Receiver<Cmd>,
) {
    let mut subs: HashMap<u64, mpsc::Sender<Shared>> = HashMap::new();
    let mut askers: VecDeque<Asker> = VecDeque::new();
    let Some((mut up, created)) = open(&feeds.upstream, &key, 0).await else {
        feeds.retire(&key, &me);
        return;
    };
    let _open = crate::metrics::watch_feed_opened();
    let mut template = created;
    // Every revision up to `position` has been relayed to current subscribers.
    let mut position = created.revision;
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Subscribe { id, queue, created }) => {
                    if subs.is_empty() && askers.is_empty() {
                        // The first subscriber starts where the upstream watch was created.
                        if created.send(Some(header_at(&template, position))).is_ok() {
                            subs.insert(id, queue);
                        }
                    } else {
                        askers.push_back(Asker::Joining { id, queue, created });
                        up.ask_progress().await;
                    }
                }
                Some(Cmd::Unsubscribe(id)) => {
                    subs.remove(&id);
                    if subs.is_empty() && askers.is_empty() {
                        break;
                    }
                }
                Some(Cmd::Progress(id)) => {
                    askers.push_back(Asker::Subscriber(id));
                    up.ask_progress().await;
                }
                None => break,
            },
            msg = up.message() => match msg {
                Ok(Some(m)) => {
                    let mut ended = false;
                    let mut target: Option<u64> = None;
                    match &m.kind {
                        Some(Kind::Events(e)) => {
                            if let Some(h) = e.header { template = h; }
                            if let Some(kv) = e.events.last().and_then(|ev| ev.kv.as_ref()) {
                                position = position.max(kv.mod_revision);
                            }
                        }
                        Some(Kind::Progress(p)) => {
                            if let Some(h) = p.header {
                                template = h;
                                position = position.max(h.revision);
                            }
                            match askers.pop_front() {
                                Some(Asker::Subscriber(id)) => target = Some(id),
                                Some(Asker::Joining { id, queue, created }) => {
                                    if created.send(Some(header_at(&template, position))).is_ok() {
                                        subs.insert(id, queue);
                                    }
                                    continue;
                                }
                                None => continue,
                            }
                        }
                        Some(Kind::Compacted(_)) => ended = true,
                        _ => continue,
                    }
                    let shared = Arc::new(m);
                    subs.retain(|id, q| {
                        if target.is_some_and(|t| t != *id) {
                            return true;
                        }
                        // A full queue drops the subscriber; its task resumes on its own.
                        match q.try_send(shared.clone()) {
                            Ok(()) => true,
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                tracing::debug!(subscriber = id, "slow subscriber leaves the shared feed");
                                false
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => false,
                        }
                    });
                    if ended {
                        break;
                    }
                }
                Ok(None) | Err(_) => {
                    // Upstream lost: answer pending asks with "not synced" (everything up to
                    // `position` was relayed), then reopen from there.
                    for asker in askers.drain(..) {
                        match asker {
                            Asker::Subscriber(id) => {
                                if let Some(q) = subs.get(&id) {
                                    let reply = WatchUpstreamResponse {
                                        kind: Some(Kind::Progress(WatchProgress {
                                            header: Some(header_at(&template, position)),
                                            synced: false,
                                        })),
                                    };
                                    let _ = q.try_send(Arc::new(reply));
                                }
                            }
                            Asker::Joining { id, queue, created } => {
                                if created.send(Some(header_at(&template, position))).is_ok() {
                                    subs.insert(id, queue);
                                }
                            }
                        }
                    }
                    let mut backoff = Duration::from_millis(50);
                    loop {
                        if let Some((u, _)) = open(&feeds.upstream, &key, position + 1).await {
                            up = u;
                            break;
                        }
                        if subs.values().all(|q| q.is_closed()) {
                            feeds.retire(&key, &me);
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            },
        }
    }
    feeds.retire(&key, &me);
}
