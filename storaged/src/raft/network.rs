//! Client side of the raft peer RPC: one lazily connected gRPC channel per target member.
//!
//! Every call's deadline grows with what it carries (openraft's own timeouts are sized for
//! heartbeats), so a large append or snapshot can arrive on a slow link instead of timing out
//! and being resent for ever; appends are cut to [`MAX_APPEND_BYTES`] and the rest follows in
//! the next call.

use super::snapshot_blob::{CHUNK, SnapshotBlob};
use super::{Member, Snapshot, TypeConfig, codec};
use futures::StreamExt;
use metastore_cli::rpc::{self, Channel, ChannelOptions, MAX_INTERNAL_MESSAGE};
use metastore_internal_proto::storage::RaftMessage;
use metastore_internal_proto::storage::raft_client::RaftClient;
use openraft::OptionalSend;
use openraft::alias::VoteOf;
use openraft::entry::RaftEntry;
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::io::Read;
use std::time::Duration;

/// How many of `entries`, from the first, fit in `limit` bytes (at least one).
fn entries_within(entries: &[super::Entry], limit: usize) -> usize {
    let mut total = 0usize;
    for (i, e) in entries.iter().enumerate() {
        total += entry_size(e);
        if total > limit {
            return i.max(1);
        }
    }
    entries.len()
}

fn entry_size(e: &super::Entry) -> usize {
    use openraft::EntryPayload;
    64 + match &e.payload {
        EntryPayload::Normal(p) => p.encoded_len(),
        _ => 256,
    }
}

/// Largest raft message: an append of up to [`MAX_APPEND_BYTES`] plus the one entry that
/// crosses it (a command is at most one internal message). Snapshots travel in chunks of
/// [`CHUNK`].
pub const MAX_RAFT_MESSAGE: usize = MAX_APPEND_BYTES + MAX_INTERNAL_MESSAGE + (1 << 20);
/// Entries sent in one append are cut at this size (at least one entry goes).
pub const MAX_APPEND_BYTES: usize = 8 << 20;
/// The slowest link a transfer's deadline allows for, in bytes per second.
const MIN_BYTES_PER_SEC: u64 = 4 << 20;

/// The deadline of a call carrying `bytes`: openraft's soft timeout plus the time the bytes
/// take at [`MIN_BYTES_PER_SEC`].
pub fn deadline(option: &RPCOption, bytes: usize) -> Duration {
    option.soft_ttl() + Duration::from_millis(bytes as u64 * 1000 / MIN_BYTES_PER_SEC)
}

pub struct Network {
    cluster_id: u64,
}

impl Network {
    pub fn new(cluster_id: u64) -> Self {
        Self { cluster_id }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Member) -> Self::Network {
        let url = node.peer_urls.first().cloned().unwrap_or_default();
        let options = ChannelOptions {
            timeout: None,
            keep_alive: Some(Duration::from_secs(5)),
        };
        let channel = rpc::channel(&url, options);
        PeerClient {
            target,
            cluster_id: self.cluster_id,
            url,
            client: channel.map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(MAX_RAFT_MESSAGE)
                    .max_encoding_message_size(MAX_RAFT_MESSAGE)
            }),
        }
    }
}

pub struct PeerClient {
    target: u64,
    cluster_id: u64,
    url: String,
    client: Result<RaftClient<Channel>, String>,
}

enum Rpc {
    Append,
    Vote,
    PreVote,
    Transfer,
}

impl PeerClient {
    async fn call<Req, Resp>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Result<Resp, RaftError<TypeConfig>>: DeserializeOwned,
    {
        let body = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let timeout = deadline(option, body.len());
        let mut request = tonic::Request::new(RaftMessage {
            body,
            cluster_id: self.cluster_id,
        });
        request.set_timeout(timeout);
        let sent = request.get_ref().body.len();
        let target = self.target;
        let client = self.client()?;
        let started = std::time::Instant::now();
        let reply = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::PreVote => client.pre_vote(request).await,
            Rpc::Transfer => client.transfer_leader(request).await,
        };
        let received = reply.as_ref().map_or(0, |r| r.get_ref().body.len());
        crate::metrics::peer_call(target, sent, received, started.elapsed());
        self.answer(reply)
    }

    fn client(&mut self) -> Result<&mut RaftClient<Channel>, RPCError<TypeConfig>> {
        match &mut self.client {
            Ok(c) => Ok(c),
            Err(e) => {
                let e = std::io::Error::other(format!(
                    "member {:x} at {:?}: {e}",
                    self.target, self.url
                ));
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
        }
    }

    /// The decoded answer of a call, or the error openraft should see.
    fn answer<Resp>(
        &self,
        reply: Result<tonic::Response<RaftMessage>, tonic::Status>,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Result<Resp, RaftError<TypeConfig>>: DeserializeOwned,
    {
        let reply = reply.map_err(|status| {
            let e = std::io::Error::other(format!("member {:x}: {status}", self.target));
            if status.code() == tonic::Code::Unavailable {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        let result: Result<Resp, RaftError<TypeConfig>> =
            codec::decode(&reply.into_inner().body)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    /// Sends `snapshot` as a stream: a head message (vote, meta, length), then the snapshot
    /// file's bytes in chunks of at most [`CHUNK`], read from the open file as they go.
    async fn send_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: Snapshot,
        option: &RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, RPCError<TypeConfig>> {
        let network = |e: std::io::Error| RPCError::Network(NetworkError::new(&e));
        let len = snapshot.snapshot.len();
        let head = codec::encode(&(vote, snapshot.meta, len)).map_err(network)?;
        let reader = snapshot.snapshot.reader().map_err(network)?;
        let cluster_id = self.cluster_id;
        let first = RaftMessage {
            body: head,
            cluster_id,
        };
        let chunks = futures::stream::unfold(Some(reader), move |reader| async move {
            let mut reader = reader?;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::with_capacity(CHUNK);
                (&mut reader)
                    .take(CHUNK as u64)
                    .read_to_end(&mut buf)
                    .map(|_| (reader, buf))
            });
            // A read error ends the stream early; the receiver refuses the short snapshot.
            let (reader, body) = read.await.ok()?.ok()?;
            (!body.is_empty()).then(|| (RaftMessage { body, cluster_id }, Some(reader)))
        });
        let mut request =
            tonic::Request::new(futures::stream::once(async move { first }).chain(chunks));
        request.set_timeout(deadline(option, len as usize));
        let reply = self.client()?.install_snapshot(request).await;
        self.answer(reply)
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotBlob;

    async fn append_entries(
        &mut self,
        mut req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let keep = entries_within(&req.entries, MAX_APPEND_BYTES);
        if keep == req.entries.len() {
            return self.call(Rpc::Append, &req, &option).await;
        }
        req.entries.truncate(keep);
        let last = req.entries.last().map(|e| e.log_id());
        let resp: AppendEntriesResponse<TypeConfig> = self.call(Rpc::Append, &req, &option).await?;
        Ok(match resp {
            // Only the entries sent were matched: openraft sends the rest next.
            AppendEntriesResponse::Success => AppendEntriesResponse::PartialSuccess(last),
            other => other,
        })
    }

    async fn vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Vote, &req, &option).await
    }

    async fn pre_vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::PreVote, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.send_snapshot(vote, snapshot, &option) => Ok(res?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Transfer, &req, &option).await
    }
}
