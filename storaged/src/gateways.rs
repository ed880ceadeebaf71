//! Gateway publications. Every few seconds each gateway announces the client URLs it serves
//! and the member it prefers; MemberList shows them as that member's client URLs. A record is
//! written through raft only when it changes, but every announcement reaches the leader, which
//! remembers when it last heard each one and withdraws a publication not renewed within the
//! publication TTL (its gateway stopped), so MemberList, like etcd's, lists URLs that answer.

use crate::command::Command;
use crate::node::{Node, NodeError};
use crate::publication::{PREFIX, record, urls_of};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Published gateways' client URLs, by the member they prefer.
pub fn by_member(node: &Node) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let records = node.store().meta_with_prefix(PREFIX).unwrap_or_default();
    for (k, v) in records {
        let Ok(id) = <[u8; 8]>::try_from(v.as_slice()).map(u64::from_be_bytes) else {
            continue;
        };
        out.entry(id).or_default().extend(urls_of(&k));
    }
    out
}

/// The publications of this member: recorded through raft, kept alive by the leader.
pub struct Gateways {
    node: Arc<Node>,
    liveness: Liveness,
}

impl Gateways {
    pub fn new(node: Arc<Node>, ttl: Duration) -> Self {
        Self {
            node,
            liveness: Liveness::new(ttl),
        }
    }

    /// This member started (`true`) or stopped leading.
    pub fn leading(&self, leading: bool) {
        self.liveness.leading(leading);
    }

    /// Records that a gateway serving `client_urls` prefers `member_id`. Runs on the leader
    /// (others forward it), which notes that the gateway is alive.
    pub async fn publish(&self, member_id: u64, client_urls: Vec<String>) -> Result<(), NodeError> {
        let node = &self.node;
        node.require_leader()?;
        let (key, value) = record(member_id, &client_urls);
        self.liveness.heard(key.clone());
        let known = node
            .store()
            .meta_with_prefix(&key)?
            .into_iter()
            .any(|(k, v)| k == key && v == value);
        if !known {
            node.write(Command::PublishGateway {
                member_id,
                client_urls,
            })
            .await?;
        }
        Ok(())
    }

    /// On the leader: withdraws publications whose gateway has not announced itself within
    /// the TTL.
    pub async fn withdraw_stale(&self) {
        let Ok(records) = self.node.store().meta_with_prefix(PREFIX) else {
            return;
        };
        let stale = self
            .liveness
            .stale(records.into_iter().map(|(k, _)| k).collect());
        for key in stale {
            let client_urls = urls_of(&key);
            tracing::info!(gateway = ?client_urls, "withdrawing the publication of a silent gateway");
            if let Err(e) = self
                .node
                .write(Command::WithdrawGateway { client_urls })
                .await
            {
                tracing::warn!(error = %e, "withdrawing a gateway publication failed");
            }
        }
    }
}

/// When the leader last heard each publication (leader only, in memory).
struct Liveness {
    ttl: Duration,
    heard: Mutex<HashMap<Vec<u8>, Instant>>,
    leading_since: Mutex<Option<Instant>>,
}

impl Liveness {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            heard: Mutex::new(HashMap::new()),
            leading_since: Mutex::new(None),
        }
    }

    fn leading(&self, leading: bool) {
        let mut since = self.leading_since.lock();
        match (leading, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {
                *since = None;
                self.heard.lock().clear();
            }
            _ => {}
        }
    }

    fn heard(&self, key: Vec<u8>) {
        self.heard.lock().insert(key, Instant::now());
    }

    /// Of `keys`, those not heard within the TTL; none until this member has led for a whole
    /// TTL (every live gateway has announced itself to it by then).
    fn stale(&self, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let now = Instant::now();
        let led_long_enough = self
            .leading_since
            .lock()
            .is_some_and(|t| now.duration_since(t) >= self.ttl);
        if !led_long_enough {
            return Vec::new();
        }
        let mut heard = self.heard.lock();
        heard.retain(|_, t| now.duration_since(*t) < self.ttl);
        keys.into_iter()
            .filter(|k| !heard.contains_key(k))
            .collect()
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_only_after_a_whole_ttl_of_leadership() {
        let l = Liveness::new(Duration::from_millis(30));
        let (a, b) = (b"gateway/a".to_vec(), b"gateway/b".to_vec());
        assert!(l.stale(vec![a.clone()]).is_empty(), "not leading");
        l.leading(true);
        assert!(
            l.stale(vec![a.clone()]).is_empty(),
            "leading for less than the TTL"
        );
        std::thread::sleep(Duration::from_millis(40));
        l.heard(b.clone());
        assert_eq!(l.stale(vec![a.clone(), b.clone()]), vec![a.clone()]);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            l.stale(vec![b.clone()]),
            vec![b],
            "not heard again within the TTL"
        );
        l.leading(false);
        assert!(l.stale(vec![a]).is_empty());
    }
}
