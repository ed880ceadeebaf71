//! Serving `/metrics`: the member's own state (leader, raft indexes, store size, keys,
//! watchers) read at scrape time and handed to [`crate::metrics`], and the task that counts
//! leader changes.

use crate::metrics::MemberState;
use crate::node::Node;
use crate::watch::WatchHub;
use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;

/// The text exposition of every metric, with `node`'s state read now.
pub fn render(node: &Node, hub: &WatchHub) -> String {
    let raft = node.raft().metrics().borrow_watched().clone();
    let me = node.identity().member_id;
    crate::metrics::render(&MemberState {
        has_leader: raft.current_leader.is_some(),
        is_leader: raft.current_leader == Some(me),
        committed: raft.local_committed.map_or(0, |l| l.index()),
        applied: raft.last_applied.map_or(0, |l| l.index()),
        db_size: node.store().engine().size_bytes(),
        keys: node.store().key_count(),
        watchers: hub.len(),
        slow_watchers: hub.unsynced(),
    })
}

/// Counts leader changes as raft reports them (from a member's start).
pub fn spawn_leader_watch(node: Arc<Node>) {
    tokio::spawn(async move {
        let mut rx = node.raft().metrics();
        let mut leader = None;
        loop {
            let now = rx.borrow_watched().current_leader;
            if now != leader {
                if now.is_some() {
                    crate::metrics::leader_changed();
                }
                leader = now;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}
