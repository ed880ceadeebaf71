//! Background duties of a member, above the node: every tick the leader expires leases,
//! records lease checkpoints and withdraws the publications of silent gateways; until its own
//! name is recorded, every member publishes it through the leader.

use crate::cluster::{self, MembershipError};
use crate::forward::{Client, Forwarder};
use crate::gateways::Gateways;
use crate::node::Node;
use metastore_internal_proto::storage::cluster_request::Op as ClusterOp;
use metastore_internal_proto::storage::cluster_response::Result as ClusterResult;
use metastore_internal_proto::storage::{ClusterRequest, PublishName};
use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

const TICK: Duration = Duration::from_millis(500);
const NAME_RETRY: Duration = Duration::from_secs(1);

/// Starts the duties of this member.
pub fn spawn(node: Arc<Node>, gateways: Arc<Gateways>, forwarder: Forwarder) {
    tokio::spawn(tick_forever(node.clone(), gateways));
    tokio::spawn(publish_own_name(node, forwarder));
}

/// Every member ticks; only the leader acts.
async fn tick_forever(node: Arc<Node>, gateways: Arc<Gateways>) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let leading = node.raft().is_leader();
        gateways.leading(leading);
        if node.tick_leases(leading).await {
            gateways.withdraw_stale().await;
        }
    }
}

/// Once this member appears in the membership under another name (a member added with
/// MemberAdd has none), publish its own through the leader.
async fn publish_own_name(node: Arc<Node>, forwarder: Forwarder) {
    let id = node.identity().member_id;
    let name = node.identity().name.clone();
    loop {
        tokio::time::sleep(NAME_RETRY).await;
        let listed = node
            .raft()
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|m| m.name.clone());
        match listed {
            Some(n) if n == name && cluster::has_started(&node, id) => return,
            Some(_) => {
                if let Err(e) = publish_name(&node, &forwarder, id, &name).await {
                    tracing::debug!(error = %e, "publishing the member name failed; will retry");
                }
            }
            None => {}
        }
    }
}

async fn publish_name(
    node: &Node,
    forwarder: &Forwarder,
    id: u64,
    name: &str,
) -> Result<(), impl std::fmt::Display> {
    let request = ClusterRequest {
        context: None,
        op: Some(ClusterOp::PublishName(PublishName {
            id,
            name: name.to_string(),
        })),
    };
    let here = move || async move {
        node.require_leader()?;
        cluster::publish_name(node, id, name.to_string()).await?;
        Ok::<_, MembershipError>(())
    };
    let there = |mut client: Client, request| async move {
        match client.cluster(request).await?.into_inner().result {
            Some(ClusterResult::Error(e)) => Err(Status::unavailable(e.detail)),
            _ => Ok(()),
        }
    };
    forwarder.on_leader(request, here, there).await
}
