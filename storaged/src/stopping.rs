//! A clean stop: before a leader exits it hands leadership to the voter that holds the most of
//! the log (as etcd does), so the cluster does not wait out an election timeout.

use crate::node::Node;
use openraft::async_runtime::WatchReceiver;
use std::time::Duration;

/// On a leader with other voters: moves leadership to the most caught-up one, waiting at most
/// `within`. Returns the new leader's id when leadership moved.
pub async fn hand_off(node: &Node, within: Duration) -> Option<u64> {
    node.require_leader().ok()?;
    let me = node.identity().member_id;
    let metrics = node.raft().metrics().borrow_watched().clone();
    let matched = |id: &u64| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .map(|log_id| log_id.index())
    };
    let target = node
        .raft()
        .voter_ids()
        .filter(|v| *v != me)
        .max_by_key(|v| matched(v))?;
    match tokio::time::timeout(within, crate::cluster::move_leader(node, target)).await {
        Ok(Ok(())) => {
            tracing::info!(
                to = format!("{target:x}"),
                "handed leadership over before stopping"
            );
            Some(target)
        }
        Ok(Err(e)) => {
            tracing::warn!(to = format!("{target:x}"), error = %e, "leadership hand-off failed; stopping anyway");
            None
        }
        Err(_) => {
            tracing::warn!(
                to = format!("{target:x}"),
                "leadership hand-off timed out; stopping anyway"
            );
            None
        }
    }
}
