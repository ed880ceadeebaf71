//! Refusing to bootstrap twice. A member whose data dir was lost and that is started again
//! with `--initial-cluster-state new` would come back with no log and no vote: it could vote
//! twice in one term and help elect a second leader. Before such a member creates a new data
//! dir it asks the other members listed in `--initial-cluster`; if any of them knows it as a
//! member that already started (it published its name), it refuses to start, as etcd does
//! (`member ... has already been bootstrapped`). A member of a cluster that is still forming
//! (the others never saw it run) starts normally. "Has run" is a replicated record each
//! member writes once through the leader when it first starts (etcd uses the published
//! client URLs the same way).

use crate::identity::Identity;
use metastore_cli::rpc::{self, ChannelOptions};
use metastore_internal_proto::storage::MemberInfoRequest;
use metastore_internal_proto::storage::storage_client::StorageClient;
use std::time::Duration;

const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors when another member of `identity`'s cluster already knows this member as started.
pub async fn check_not_bootstrapped(identity: &Identity) -> Result<(), String> {
    let own_urls = identity
        .members
        .get(&identity.name)
        .cloned()
        .unwrap_or_default();
    for (name, urls) in &identity.members {
        if *name == identity.name {
            continue;
        }
        for url in urls.iter().filter(|u| !own_urls.contains(u)) {
            if let Some(true) = knows_started(url, identity.member_id).await {
                return Err(format!(
                    "member {:x} has already been bootstrapped (member {name} at {url} lists it); \
                     its data dir is gone: remove it with `member remove` and add it back, or \
                     restore its data",
                    identity.member_id
                ));
            }
        }
    }
    Ok(())
}

/// Whether the member at `peer_url` has member `id` recorded as having run; `None` when it
/// cannot be asked.
async fn knows_started(peer_url: &str, id: u64) -> Option<bool> {
    let options = ChannelOptions {
        timeout: Some(ASK_TIMEOUT),
        ..ChannelOptions::UNARY
    };
    let channel = rpc::channel(peer_url, options).ok()?;
    let mut client = StorageClient::new(channel);
    let reply = client
        .member_info(MemberInfoRequest { about_member: id })
        .await
        .ok()?
        .into_inner();
    Some(reply.about_member_started)
}

/// The id of the running cluster a new member joins (`--initial-cluster-state existing`), as
/// the other members report it: the joining member's own flags list a different member set
/// than the one the cluster was created with, so its id cannot be derived from them. Peer
/// messages carry this id and are refused across clusters.
pub async fn existing_cluster_id(identity: &Identity) -> Result<u64, String> {
    let own_urls = identity
        .members
        .get(&identity.name)
        .cloned()
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for urls in identity.members.values() {
            for url in urls.iter().filter(|u| !own_urls.contains(u)) {
                if let Some(id) = cluster_id_at(url).await {
                    return Ok(id);
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(
                "--initial-cluster-state existing: no member of the existing cluster \
                        answered on its peer URL"
                    .into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn cluster_id_at(peer_url: &str) -> Option<u64> {
    let options = ChannelOptions {
        timeout: Some(ASK_TIMEOUT),
        ..ChannelOptions::UNARY
    };
    let channel = rpc::channel(peer_url, options).ok()?;
    let reply = StorageClient::new(channel)
        .member_info(MemberInfoRequest { about_member: 0 })
        .await
        .ok()?
        .into_inner();
    reply.header.map(|h| h.cluster_id).filter(|id| *id != 0)
}
