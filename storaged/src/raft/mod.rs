//! Replication: the raft group (openraft) that orders every write.
//!
//! - [`log_store`]: the durable raft log over an engine's [`crate::engine::LogBackend`].
//! - [`state_machine`]: applies committed entries to the MVCC store and builds/installs
//!   snapshots of it.
//! - [`snapshot_file`]: the snapshot file in the data dir and its temporary files;
//!   [`snapshot_format`]: its checksummed, streamed encoding; [`snapshot_blob`]: a snapshot
//!   as an open file (what openraft passes around) and the receiver of a streamed one.
//! - [`network`] and [`peer_service`]: the raft peer RPC, client and server side.
//! - [`codec`]: how raft messages and entries are serialized.

pub mod codec;
pub mod failpoints;
pub mod log_store;
pub mod network;
pub mod peer_service;
pub mod snapshot_blob;
pub mod snapshot_file;
pub mod snapshot_format;
pub mod state_machine;

#[cfg(test)]
mod suite_test;

use crate::command::Proposal;
use crate::mvcc::MvccError;
use crate::state_machine::Applied;
use serde::{Deserialize, Serialize};
use std::fmt;

openraft::declare_raft_types!(
    /// Raft types of a storaged cluster: node ids are etcd member ids.
    pub TypeConfig:
        D = Proposal,
        R = Reply,
        NodeId = u64,
        Node = Member,
);

pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachineStore>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, snapshot_blob::SnapshotBlob>;

/// What the cluster knows of a member: its etcd name and URLs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// Peer URLs (`--initial-advertise-peer-urls`): raft traffic, and requests a member
    /// forwards to the leader (the storage RPC is served on the peer listener too).
    pub peer_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

/// The outcome of applying one entry, handed to the proposer on this member only.
#[derive(Debug)]
pub struct Reply(pub Result<Applied, MvccError>);

/// Replies never cross the network; serializing one is a programming error reported as such.
impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "apply replies stay on the proposing member",
        ))
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(_d: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "apply replies stay on the proposing member",
        ))
    }
}
