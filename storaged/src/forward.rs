//! The one way a request reaches the raft leader. Leader work runs here when this member
//! leads; otherwise it is passed on once to the leader, over the storage client of that member
//! (reached on its peer URL). A request that was forwarded once is never forwarded again.

use crate::node::{Node, NodeError};
use crate::raft::Member;
use metastore_cli::rpc::{self, Channel, ChannelOptions, MAX_INTERNAL_MESSAGE};
use metastore_internal_proto::storage::storage_client::StorageClient;
use metastore_internal_proto::storage::{
    AuthRequest, ClusterRequest, DefragmentAsk, HashKvAsk, KvRequest, MoveLeaderAsk,
    PublishGatewayRequest, RenewBatch, RequestContext, SnapshotAsk,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

pub use metastore_cli::rpc::not_sent;

/// How long a member without a known leader waits for one before failing a request.
pub const LEADER_WAIT: Duration = Duration::from_secs(3);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(6);
/// Leader lookups for one request: a leader that turns out to be this member again (its view
/// lagged) is tried here once more.
const LEADER_LOOKUPS: usize = 2;

/// A storage client of another member.
pub type Client = StorageClient<Channel>;

/// The leader, when known.
pub type Leader = Option<(u64, Member)>;

/// An error that may say "this member does not lead".
pub trait Redirect: From<NodeError> {
    /// `Ok(leader)` when the work belongs on the leader; the error itself otherwise.
    fn redirect(self) -> Result<Leader, Self>;
}

impl Redirect for NodeError {
    fn redirect(self) -> Result<Leader, Self> {
        match self {
            NodeError::NotLeader(leader) => Ok(leader),
            other => Err(other),
        }
    }
}

/// A request that travels in the storage envelope.
pub trait Envelope {
    fn context(&mut self) -> &mut Option<RequestContext>;
}

macro_rules! envelope {
    ($($t:ty),*) => {$(
        impl Envelope for $t {
            fn context(&mut self) -> &mut Option<RequestContext> {
                &mut self.context
            }
        }
    )*};
}
envelope!(
    KvRequest,
    ClusterRequest,
    PublishGatewayRequest,
    MoveLeaderAsk,
    RenewBatch,
    AuthRequest,
    HashKvAsk,
    SnapshotAsk,
    DefragmentAsk
);

/// Why leader work did not complete.
#[derive(Debug)]
pub enum Failure<E> {
    /// It failed here, or could not be passed on (no leader: nothing was sent).
    Here(E),
    /// The call to the leader failed: certainly not sent when [`not_sent`] says so, otherwise
    /// its outcome is unknown.
    Call { leader: u64, status: Status },
}

impl<E: std::fmt::Display> std::fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Here(e) => e.fmt(f),
            Failure::Call { leader, status } => {
                write!(f, "forwarding to leader {leader:x}: {status}")
            }
        }
    }
}

impl<E> Failure<E> {
    /// The error of this member, or the leader's transport error passed on as is (the
    /// gateway then treats it as this member's).
    pub fn here_or_status(self) -> Result<E, Status> {
        match self {
            Failure::Here(e) => Ok(e),
            Failure::Call { status, .. } => Err(status),
        }
    }
}

impl<E: Redirect> Failure<E> {
    /// As an error of this member: a call that was certainly not sent is no leader, any other
    /// a leader change with an unknown outcome.
    pub fn into_error(self) -> E {
        match self {
            Failure::Here(e) => e,
            Failure::Call { status, .. } if not_sent(&status) => NodeError::NotLeader(None).into(),
            Failure::Call { leader, status } => {
                NodeError::Raft(format!("forwarding to leader {leader:x}: {status}")).into()
            }
        }
    }
}

#[derive(Clone)]
pub struct Forwarder {
    node: Arc<Node>,
    clients: Arc<Mutex<HashMap<String, Client>>>,
}

impl Forwarder {
    pub fn new(node: Arc<Node>) -> Self {
        Self {
            node,
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Runs `here` on this member; when it answers that this member does not lead (and the
    /// request was not forwarded already), finds the leader (waiting up to [`LEADER_WAIT`]) and
    /// sends `request` there with `there`, marked forwarded.
    pub async fn on_leader<R, T, E, Here, There>(
        &self,
        mut request: R,
        mut here: impl FnMut() -> Here,
        there: impl FnOnce(Client, R) -> There,
    ) -> Result<T, Failure<E>>
    where
        R: Envelope,
        E: Redirect,
        Here: Future<Output = Result<T, E>>,
        There: Future<Output = Result<T, Status>>,
    {
        if context_of(&mut request).forwarded {
            return here().await.map_err(Failure::Here);
        }
        let mut leader = match here().await {
            Ok(v) => return Ok(v),
            Err(e) => e.redirect().map_err(Failure::Here)?,
        };
        for _ in 0..LEADER_LOOKUPS {
            let (id, member) = match leader {
                Some(l) => l,
                None => self
                    .node
                    .wait_leader(LEADER_WAIT)
                    .await
                    .ok_or(Failure::Here(NodeError::NotLeader(None).into()))?,
            };
            if id == self.node.identity().member_id {
                leader = match here().await {
                    Ok(v) => return Ok(v),
                    Err(e) => e.redirect().map_err(Failure::Here)?,
                };
                continue;
            }
            let client = self.client(&member).map_err(|e| Failure::Here(e.into()))?;
            context_of(&mut request).forwarded = true;
            return there(client, request)
                .await
                .map_err(|status| Failure::Call { leader: id, status });
        }
        Err(Failure::Here(NodeError::NotLeader(None).into()))
    }

    /// A storage client for `member`, reached on its peer URL.
    pub fn client(&self, member: &Member) -> Result<Client, NodeError> {
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

fn context_of<R: Envelope>(request: &mut R) -> &mut RequestContext {
    request.context().get_or_insert_with(Default::default)
}
