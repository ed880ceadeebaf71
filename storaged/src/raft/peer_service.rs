//! Server side of the raft peer RPC: check, decode, hand to openraft, encode the result.
//!
//! Peer input is input: a message from another cluster (a member wiped and re-bootstrapped,
//! a misconfigured peer URL) is refused, and terms are bounded so that no message can drive
//! openraft's term arithmetic into overflow.

use super::snapshot_file::SnapshotFile;
use super::snapshot_format;
use super::{LogId, Raft, Snapshot, SnapshotMeta, TypeConfig, codec};
use metastore_internal_proto::storage::RaftMessage;
use metastore_internal_proto::storage::raft_server::Raft as RaftRpc;
use openraft::alias::VoteOf;
use openraft::entry::RaftEntry;
use openraft::errors::RaftError;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

/// No honest cluster gets near this many elections; anything above is refused.
pub const MAX_TERM: u64 = 1 << 62;

pub struct PeerService {
    raft: Raft,
    cluster_id: u64,
    /// Where incoming snapshots are written (the member's snapshot file's directory).
    snapshots: SnapshotFile,
}

impl PeerService {
    pub fn new(raft: Raft, cluster_id: u64, data_dir: &std::path::Path) -> Self {
        Self {
            raft,
            cluster_id,
            snapshots: SnapshotFile::new(data_dir),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<T, Status> {
        let msg = req.into_inner();
        self.check_cluster(&msg)?;
        codec::decode(&msg.body).map_err(|e| Status::invalid_argument(e.to_string()))
    }

    fn check_cluster(&self, msg: &RaftMessage) -> Result<(), Status> {
        if msg.cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "message of cluster {:x} reached a member of cluster {:x}",
                msg.cluster_id, self.cluster_id
            )));
        }
        Ok(())
    }

    /// Receives a snapshot stream into a temporary file: the head (vote, meta, length), then
    /// the file's bytes, checked against the length and checksum and against the announced
    /// meta before openraft sees any of it.
    async fn receive_snapshot(
        &self,
        mut stream: Streaming<RaftMessage>,
    ) -> Result<(VoteOf<TypeConfig>, Snapshot), Status> {
        let head = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        self.check_cluster(&head)?;
        let (vote, meta, len): (VoteOf<TypeConfig>, SnapshotMeta, u64) =
            codec::decode(&head.body).map_err(|e| Status::invalid_argument(e.to_string()))?;
        check_vote(&vote)?;
        check_log_id(meta.last_log_id.as_ref())?;
        let refused = |e: std::io::Error| Status::invalid_argument(format!("snapshot: {e}"));
        let failed = |e: std::io::Error| Status::internal(format!("snapshot: {e}"));
        let mut receiver = self.snapshots.receiver(len).map_err(failed)?;
        while let Some(msg) = stream.message().await? {
            self.check_cluster(&msg)?;
            receiver =
                tokio::task::spawn_blocking(move || receiver.write(&msg.body).map(|()| receiver))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(refused)?;
        }
        let blob = tokio::task::spawn_blocking(move || receiver.finish())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(refused)?;
        let inside =
            snapshot_format::read_meta(&mut blob.reader().map_err(failed)?).map_err(refused)?;
        if inside != meta {
            return Err(Status::invalid_argument(
                "snapshot: the file's meta differs from the announced one",
            ));
        }
        Ok((
            vote,
            Snapshot {
                meta,
                snapshot: blob,
            },
        ))
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    codec::encode(value)
        .map(|body| {
            Response::new(RaftMessage {
                body,
                cluster_id: 0,
            })
        })
        .map_err(|e| Status::internal(e.to_string()))
}

fn check_term(term: u64) -> Result<(), Status> {
    if term >= MAX_TERM {
        return Err(Status::invalid_argument(format!(
            "term {term} out of range"
        )));
    }
    Ok(())
}

fn check_vote(vote: &VoteOf<TypeConfig>) -> Result<(), Status> {
    check_term(vote.leader_id.term)
}

fn check_log_id(id: Option<&LogId>) -> Result<(), Status> {
    id.map_or(Ok(()), |id| check_term(id.leader_id.term))
}

fn check_append(req: &AppendEntriesRequest<TypeConfig>) -> Result<(), Status> {
    check_vote(&req.vote)?;
    check_log_id(req.prev_log_id.as_ref())?;
    check_log_id(req.leader_commit.as_ref())?;
    for e in &req.entries {
        check_log_id(Some(&e.log_id()))?;
    }
    Ok(())
}

fn check_vote_request(req: &VoteRequest<TypeConfig>) -> Result<(), Status> {
    check_vote(&req.vote)?;
    check_log_id(req.last_log_id.as_ref())
}

#[tonic::async_trait]
impl RaftRpc for PeerService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = self.decode(req)?;
        check_append(&req)?;
        reply(&self.raft.append_entries(req).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let req: VoteRequest<TypeConfig> = self.decode(req)?;
        check_vote_request(&req)?;
        reply(&self.raft.vote(req).await)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let req: VoteRequest<TypeConfig> = self.decode(req)?;
        check_vote_request(&req)?;
        reply(&self.raft.pre_vote(req).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<RaftMessage>, Status> {
        let (vote, snapshot) = self.receive_snapshot(req.into_inner()).await?;
        let res = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(RaftError::<TypeConfig>::Fatal);
        reply(&res)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let req: openraft::raft::TransferLeaderRequest<TypeConfig> = self.decode(req)?;
        let res = self
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(RaftError::<TypeConfig>::Fatal);
        reply(&res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::log_id;

    fn vote(term: u64) -> VoteOf<TypeConfig> {
        openraft::Vote::new(term, 1)
    }

    /// Terms near u64::MAX would overflow openraft's term arithmetic (a panic, so an abort in
    /// our builds): they are refused at the door, in votes, appends and log ids alike.
    #[test]
    fn out_of_range_terms_are_refused() {
        let ok = VoteRequest::<TypeConfig>::new(vote(7), Some(log_id::<TypeConfig>(7, 1, 3)));
        assert!(check_vote_request(&ok).is_ok());
        let huge = VoteRequest::<TypeConfig>::new(vote(u64::MAX), None);
        assert!(check_vote_request(&huge).is_err());
        let huge_log =
            VoteRequest::<TypeConfig>::new(vote(3), Some(log_id::<TypeConfig>(MAX_TERM, 1, 3)));
        assert!(check_vote_request(&huge_log).is_err());
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: vote(MAX_TERM),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        assert!(check_append(&append).is_err());
    }
}
