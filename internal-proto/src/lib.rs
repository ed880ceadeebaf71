//! Internal RPCs of MetaStore.
//!
//! - [`storage`]: the gateway -> storaged storage service. etcd messages travel inside an
//!   envelope (`RequestContext`); errors come back as typed [`storage::ErrorCode`]s that the
//!   gateway alone turns into etcd's client-visible messages.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod storage {
    tonic::include_proto!("metastore.storage");
}

/// Encoded `FileDescriptorSet` of the internal protos, for server reflection on storaged.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/internal_descriptor.bin"));
