//! gRPC health (`grpc.health.v1.Health`, service `""`) on the storage port: SERVING while this
//! member knows a raft leader, NOT_SERVING otherwise. Load balancers and orchestrators can ask a
//! member directly; clients' `/health` is the gateway's (it also checks alarms and a
//! linearizable read).

use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often the reported status follows the member's view of the leader.
const REFRESH: Duration = Duration::from_millis(500);

/// Keeps `reporter` up to date with `node`.
pub fn spawn(node: Arc<Node>, reporter: HealthReporter) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tick.tick().await;
            let status = if node.leader().is_some() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
        }
    });
}
