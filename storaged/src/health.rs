//! gRPC health (`grpc.health.v1.Health`, service `""`) on the storage port, from this member's
//! raft view: a leader is SERVING while a quorum has acknowledged it within the longest
//! election timeout; a follower or learner while it knows a leader. A follower keeps the leader
//! it last heard of until an election replaces it, so only the leader's answer tells that
//! quorum is lost; clients' `/health` (the gateway's) reads through a quorum and always does.
//! Any member is NOT_SERVING while an alarm is active or while it has more than 5,000 committed
//! entries left to apply.

use crate::node::Node;
use openraft::async_runtime::WatchReceiver;
use openraft::{Instant, ServerState};
use std::sync::Arc;
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often the status is refreshed.
const INTERVAL: Duration = Duration::from_millis(500);

/// Keeps `reporter` up to date with `node`.
pub fn spawn(node: Arc<Node>, reporter: HealthReporter) {
    tokio::spawn(async move {
        let quorum_window = Duration::from_millis(node.raft().config().election_timeout_max);
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tick.tick().await;
            let m = node.raft().metrics().borrow_watched().clone();
            let serving = match m.state {
                // A sole voter is its own quorum (nothing acknowledges it: it has no one to
                // send heartbeats to).
                ServerState::Leader => {
                    sole_voter(&m)
                        || m.last_quorum_acked
                            .is_some_and(|acked| acked.elapsed() <= quorum_window)
                }
                _ => m.current_leader.is_some(),
            } && !far_behind(&m)
                && !alarmed(&node);
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
        }
    });
}

fn sole_voter(m: &crate::raft::RaftMetrics) -> bool {
    let mut voters = m.membership_config.membership().voter_ids();
    voters.next() == Some(m.id) && voters.next().is_none()
}

/// Committed entries a member may have left to apply and still count as serving (etcd refuses
/// requests beyond this backlog with `too many requests`).
const MAX_APPLY_BACKLOG: u64 = 5_000;

fn far_behind(m: &crate::raft::RaftMetrics) -> bool {
    let committed = m.local_committed.map_or(0, |l| l.index());
    let applied = m.last_applied.map_or(0, |l| l.index());
    committed.saturating_sub(applied) > MAX_APPLY_BACKLOG
}

/// An active alarm (NOSPACE, CORRUPT) makes the member unhealthy, as etcd's `/health`.
fn alarmed(node: &Node) -> bool {
    crate::alarms::Alarms::load(node.store()).map_or(true, |a| !a.list(0).is_empty())
}
