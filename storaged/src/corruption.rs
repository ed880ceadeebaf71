//! Corruption checks, etcd's `--experimental-initial-corrupt-check` and
//! `--experimental-corrupt-check-time`: members compare the hash of their MVCC history
//! (HashKV) at the same revision. At start, a member whose history differs from a peer's
//! refuses to serve; the periodic check runs on the leader and raises the CORRUPT alarm (through
//! raft) for each member that differs, which stops every write in the cluster.
//!
//! Hashes are compared only when both sides have compacted to the same revision (a compaction
//! changes what the hash covers), and members that cannot answer — down, behind the asked
//! revision, or compacted past it — are left out of that round.

use crate::forward::Forwarder;
use crate::mvcc;
use crate::node::Node;
use metastore_internal_proto::storage::HashKvAsk;
use metastore_proto::etcdserverpb::{AlarmType, HashKvRequest, HashKvResponse};
use std::sync::Arc;
use std::time::Duration;

/// How long one peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the leader waits to apply what a peer already applied before comparing.
const CATCH_UP: Duration = Duration::from_secs(2);

/// This member's hash, revision and compact revision now.
struct Own {
    hash: u32,
    revision: i64,
    compacted: i64,
}

async fn own_hash(node: &Node) -> Result<Own, String> {
    let store = node.store().clone();
    let resp = tokio::task::spawn_blocking(move || mvcc::hash_kv(&store, 0))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(Own {
        hash: resp.hash,
        revision: resp.header.map_or(0, |h| h.revision),
        compacted: resp.compact_revision,
    })
}

/// The HashKV at `revision` of every other member that answers.
async fn peer_hashes(
    node: &Node,
    forwarder: &Forwarder,
    revision: i64,
) -> Vec<(u64, HashKvResponse)> {
    let me = node.identity().member_id;
    let peers: Vec<_> = node
        .members()
        .into_iter()
        .filter(|(id, _)| *id != me)
        .collect();
    let mut answers = Vec::new();
    for (id, member) in peers {
        let Ok(mut client) = forwarder.client(&member) else {
            continue;
        };
        let call = client.hash_kv(HashKvAsk {
            request: Some(HashKvRequest { revision }),
            context: None,
        });
        match tokio::time::timeout(PEER_TIMEOUT, call).await {
            Ok(Ok(reply)) => match reply.into_inner() {
                reply if reply.error.is_none() => {
                    if let Some(resp) = reply.response {
                        answers.push((id, resp));
                    }
                }
                reply => tracing::warn!(
                    peer = format!("{id:x}"), revision, error = ?reply.error,
                    "corruption check: the peer cannot hash this revision"
                ),
            },
            Ok(Err(status)) => tracing::warn!(
                peer = format!("{id:x}"), %status, "corruption check: the peer did not answer"
            ),
            Err(_) => tracing::warn!(
                peer = format!("{id:x}"),
                "corruption check: the peer did not answer in time"
            ),
        }
    }
    answers
}

/// At start, before serving: an error when a peer's history at this member's revision differs
/// from this member's (the member must not serve it).
pub async fn initial_check(node: &Node, forwarder: &Forwarder) -> Result<(), String> {
    let own = own_hash(node).await?;
    let peers = peer_hashes(node, forwarder, own.revision).await;
    let mismatched: Vec<String> = peers
        .iter()
        .filter(|(_, p)| p.compact_revision == own.compacted && p.hash != own.hash)
        .map(|(id, p)| format!("{id:x} (hash {} vs {})", p.hash, own.hash))
        .collect();
    tracing::info!(
        revision = own.revision,
        peers = peers.len(),
        "initial corruption check done"
    );
    if mismatched.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{:x} found data inconsistency with peers: {}",
            node.identity().member_id,
            mismatched.join(", ")
        ))
    }
}

/// One round of the leader's check: the members found inconsistent (each now alarmed).
pub async fn periodic_check(node: &Node, forwarder: &Forwarder) -> Result<Vec<u64>, String> {
    let first = own_hash(node).await?;
    let peers = peer_hashes(node, forwarder, first.revision).await;
    // A follower may apply an entry a moment before the leader does (it learns the commit
    // while the leader's apply is still under way): let this member catch up with the newest
    // revision a peer reported before calling anyone ahead.
    let newest = |f: fn(&HashKvResponse) -> i64| peers.iter().map(|(_, p)| f(p)).max();
    let revision = newest(|p| p.header.as_ref().map_or(0, |h| h.revision)).unwrap_or(0);
    let compacted = newest(|p| p.compact_revision).unwrap_or(0);
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while tokio::time::Instant::now() < deadline
        && node
            .store()
            .with_revisions(|current, done| current < revision || done < compacted)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let again = own_hash(node).await?;
    let mut corrupt = Vec::new();
    // This member's own history changed under the same revisions.
    if again.hash != first.hash
        && again.revision == first.revision
        && again.compacted == first.compacted
    {
        corrupt.push(node.identity().member_id);
    }
    for (id, p) in &peers {
        let revision = p.header.as_ref().map_or(0, |h| h.revision);
        // A follower ahead of the leader, or compacted past it, holds revisions that were
        // never committed; one compacted as the leader was must hold the same history.
        if revision > again.revision
            || p.compact_revision > again.compacted
            || (p.compact_revision == first.compacted && p.hash != first.hash)
        {
            corrupt.push(*id);
        }
    }
    for id in &corrupt {
        tracing::error!(
            member = format!("{id:x}"),
            "corruption check: history differs"
        );
        node.write(crate::alarms::raise(*id, AlarmType::Corrupt))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(corrupt)
}

/// Runs the check every `interval` while this member leads.
pub fn spawn_periodic(node: Arc<Node>, forwarder: Forwarder, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !node.raft().is_leader() {
                continue;
            }
            if let Err(e) = periodic_check(&node, &forwarder).await {
                tracing::warn!(error = %e, "corruption check failed");
            }
        }
    });
}
