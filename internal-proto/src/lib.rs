//! Internal RPCs of MetaStore, all in `protos/metastore/storage.proto` (module [`storage`]).
//!
//! - `Storage` service: gateway -> storaged, and member -> leader for forwarded calls. etcd
//!   messages travel inside an envelope (`RequestContext`: origin, consistency, forwarded);
//!   errors come back as typed [`storage::ErrorCode`]s that the gateway alone turns into
//!   etcd's client-visible messages.
//! - `Raft` service: peer RPC between storaged members; openraft messages travel as opaque
//!   bodies (`RaftMessage`) checked for the cluster id.
//! - `RaftCommand`: the wire form of one raft log entry (a write and its `RequestOrigin`).
//! - [`FILE_DESCRIPTOR_SET`]: the compiled descriptors, for server reflection.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod storage {
    tonic::include_proto!("metastore.storage");
}

/// Encoded `FileDescriptorSet` of the internal protos, for server reflection on storaged.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/internal_descriptor.bin"));
