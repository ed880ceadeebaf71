//! Registry of watchers and live fan-out.

use crate::mvcc::{CommitObserver, KeyRange};
use metastore_proto::mvccpb::Event;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};

/// Live events of one revision for one watcher.
#[derive(Debug)]
pub struct LiveEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// Live messages queued per watcher before it is moved aside to catch up from history.
pub const LIVE_QUEUE: usize = 256;

struct Entry {
    range: KeyRange,
    prev_kv: bool,
    live: mpsc::Sender<LiveEvents>,
    synced: bool,
    /// First revision this watcher still needs: a floor for live events (future start
    /// revisions) and the resume point after falling behind.
    next_rev: i64,
    wake: Arc<Notify>,
}

#[derive(Default)]
pub struct WatchHub {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    watchers: HashMap<u64, Entry>,
}

/// What a watcher task needs to talk to the hub.
pub struct Registration {
    pub id: u64,
    pub live: mpsc::Receiver<LiveEvents>,
    pub wake: Arc<Notify>,
}

impl WatchHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a watcher that starts out catching up from `next_rev`.
    pub fn register(&self, range: KeyRange, prev_kv: bool, next_rev: i64) -> Registration {
        let (tx, rx) = mpsc::channel(LIVE_QUEUE);
        let wake = Arc::new(Notify::new());
        let mut inner = self.inner.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.watchers.insert(
            id,
            Entry {
                range,
                prev_kv,
                live: tx,
                synced: false,
                next_rev,
                wake: wake.clone(),
            },
        );
        Registration { id, live: rx, wake }
    }

    /// Marks the watcher synced from `next_rev` on. Call with the store read lock held and
    /// `next_rev > current revision`.
    pub fn set_synced(&self, id: u64, next_rev: i64) {
        if let Some(e) = self.inner.lock().watchers.get_mut(&id) {
            e.synced = true;
            e.next_rev = next_rev;
        }
    }

    pub fn is_synced(&self, id: u64) -> bool {
        self.inner
            .lock()
            .watchers
            .get(&id)
            .is_some_and(|e| e.synced)
    }

    /// Where a watcher that fell behind must resume.
    pub fn resume_point(&self, id: u64) -> Option<i64> {
        self.inner.lock().watchers.get(&id).map(|e| e.next_rev)
    }

    pub fn remove(&self, id: u64) {
        self.inner.lock().watchers.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Watchers catching up from history (they fell behind, or started in the past).
    pub fn unsynced(&self) -> usize {
        self.inner
            .lock()
            .watchers
            .values()
            .filter(|w| !w.synced)
            .count()
    }
}

fn key_of(e: &Event) -> &[u8] {
    e.kv.as_ref()
        .map(|kv| kv.key.as_slice())
        .unwrap_or_default()
}

impl CommitObserver for WatchHub {
    fn committed(&self, revision: i64, events: &[Event]) {
        let mut inner = self.inner.lock();
        inner.watchers.retain(|id, w| {
            if !w.synced || revision < w.next_rev {
                return true;
            }
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| w.range.contains(key_of(e)))
                .map(|e| {
                    let mut e = e.clone();
                    if !w.prev_kv {
                        e.prev_kv = None;
                    }
                    e
                })
                .collect();
            if mine.is_empty() {
                return true;
            }
            match w.live.try_send(LiveEvents {
                revision,
                events: mine,
            }) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Too slow: stop live delivery; its task catches up from history.
                    tracing::debug!(watcher = id, revision, "watcher fell behind");
                    w.synced = false;
                    w.next_rev = revision;
                    w.wake.notify_one();
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Live watchers continue from history: the revisions the snapshot brought in were never
    /// committed here one by one (history comes with the snapshot, as in etcd).
    fn restored(&self, delivered_upto: i64) {
        let mut inner = self.inner.lock();
        for w in inner.watchers.values_mut().filter(|w| w.synced) {
            w.synced = false;
            w.next_rev = w.next_rev.max(delivered_upto + 1);
            w.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a snapshot replaced the store, synced watchers go back to history from the first
    /// revision they have not seen, and are woken to do so.
    #[test]
    fn restore_sends_synced_watchers_back_to_history() {
        let hub = WatchHub::new();
        let synced = hub.register(KeyRange::From(Vec::new()), false, 3);
        hub.set_synced(synced.id, 6);
        let catching_up = hub.register(KeyRange::From(Vec::new()), false, 2);
        let future = hub.register(KeyRange::From(Vec::new()), false, 50);
        hub.set_synced(future.id, 50);
        hub.restored(5);
        assert!(!hub.is_synced(synced.id));
        assert_eq!(hub.resume_point(synced.id), Some(6));
        assert_eq!(hub.resume_point(catching_up.id), Some(2));
        assert_eq!(hub.resume_point(future.id), Some(50));
    }
}
