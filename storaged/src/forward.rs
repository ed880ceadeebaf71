//! Passing requests on to the raft leader: storage clients of other members, reached on
//! their peer URLs, shared by every handler.

use crate::node::{Node, NodeError};
use crate::raft::Member;
use metastore_cli::rpc::{self, ChannelOptions, MAX_INTERNAL_MESSAGE};
use metastore_internal_proto::storage::RequestContext;
use metastore_internal_proto::storage::storage_client::StorageClient;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// How long a member without a known leader waits for one before failing a request.
pub const LEADER_WAIT: Duration = Duration::from_secs(3);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(6);

#[derive(Clone)]
pub struct Forwarder {
    node: Arc<Node>,
    clients: Arc<Mutex<HashMap<String, StorageClient<Channel>>>>,
}

pub use metastore_cli::rpc::not_sent;

impl Forwarder {
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A client of the leader for passing on the request whose `context` is given: marks it
    /// forwarded. A request that was forwarded once is not forwarded again, and none is when no
    /// leader appears in time (both: not leader).
    pub async fn leader_client(
        &self,
        context: &mut Option<RequestContext>,
    ) -> Result<StorageClient<Channel>, NodeError> {
        let ctx = context.get_or_insert_with(Default::default);
        if ctx.forwarded {
            return Err(NodeError::NotLeader(None));
        }
        let (_, leader) = self
            .node
            .wait_leader(LEADER_WAIT)
            .await
            .ok_or(NodeError::NotLeader(None))?;
        ctx.forwarded = true;
        self.client(&leader)
    }

    /// A storage client for `member`, reached on its peer URL.
    pub fn client(&self, member: &Member) -> Result<StorageClient<Channel>, NodeError> {
        let url = member
            .peer_urls
            .first()
            .ok_or_else(|| NodeError::Raft(format!("member {member} has no peer URL")))?;
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(url) {
            return Ok(c.clone());
        }
        let options = ChannelOptions {
            timeout: Some(FORWARD_TIMEOUT),
            ..ChannelOptions::UNARY
        };
        let channel = rpc::channel(url, options).map_err(NodeError::Raft)?;
        let client = StorageClient::new(channel)
            .max_decoding_message_size(MAX_INTERNAL_MESSAGE)
            .max_encoding_message_size(MAX_INTERNAL_MESSAGE);
        clients.insert(url.clone(), client.clone());
        Ok(client)
    }
}
