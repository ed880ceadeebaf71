//! Client side of the raft peer RPC: one lazily connected gRPC channel per target member.

use super::{Member, Snapshot, TypeConfig, codec};
use metastore_internal_proto::storage::RaftMessage;
use metastore_internal_proto::storage::raft_client::RaftClient;
use openraft::OptionalSend;
use openraft::alias::VoteOf;
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
use std::io::Cursor;
use tonic::transport::{Channel, Endpoint};

/// Largest raft message (a snapshot travels in one).
pub const MAX_RAFT_MESSAGE: usize = 1 << 30;

#[derive(Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &Member) -> Self::Network {
        let url = node.peer_urls.first().cloned().unwrap_or_default();
        let channel = Endpoint::from_shared(url.clone())
            .map(|e| {
                e.tcp_nodelay(true)
                    .connect_timeout(std::time::Duration::from_secs(1))
                    .connect_lazy()
            })
            .map_err(|e| e.to_string());
        PeerClient {
            target,
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
    url: String,
    client: Result<RaftClient<Channel>, String>,
}

enum Rpc {
    Append,
    Vote,
    Snapshot,
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
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                let e = std::io::Error::other(format!(
                    "member {:x} at {:?}: {e}",
                    self.target, self.url
                ));
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let body = codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftMessage { body });
        request.set_timeout(option.hard_ttl());
        let reply = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
            Rpc::Transfer => client.transfer_leader(request).await,
        };
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
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Append, &req, &option).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Vote, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.call(Rpc::Snapshot, &req, &option) => Ok(res?),
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
