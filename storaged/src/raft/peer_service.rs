//! Server side of the raft peer RPC: decode, hand to openraft, encode the result.

use super::{Raft, Snapshot, SnapshotMeta, codec};
use metastore_internal_proto::storage::RaftMessage;
use metastore_internal_proto::storage::raft_server::Raft as RaftRpc;
use openraft::alias::VoteOf;
use openraft::errors::RaftError;
use serde::Serialize;
use std::io::Cursor;
use tonic::{Request, Response, Status};

pub struct PeerService {
    raft: Raft,
}

impl PeerService {
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

fn decode<T: serde::de::DeserializeOwned>(req: Request<RaftMessage>) -> Result<T, Status> {
    codec::decode(&req.into_inner().body).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    codec::encode(value)
        .map(|body| Response::new(RaftMessage { body }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftRpc for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        reply(&self.raft.append_entries(decode(req)?).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        reply(&self.raft.vote(decode(req)?).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let (vote, meta, data): (VoteOf<super::TypeConfig>, SnapshotMeta, Vec<u8>) = decode(req)?;
        let snapshot = Snapshot {
            meta,
            snapshot: Cursor::new(data),
        };
        let res = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(RaftError::<super::TypeConfig>::Fatal);
        reply(&res)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let res = self
            .raft
            .handle_transfer_leader(decode(req)?)
            .await
            .map_err(RaftError::<super::TypeConfig>::Fatal);
        reply(&res)
    }
}
