//! etcd v3 wire types, generated from `protos/` (written from the etcd v3 API facts:
//! same packages, services, methods and field numbers).
//!
//! - [`etcdserverpb`]: KV, Watch, Lease, Cluster, Maintenance and Auth services.
//! - [`mvccpb`]: `KeyValue` and `Event`.
//! - [`authpb`]: users, roles, permissions.
//! - [`v3lockpb`], [`v3electionpb`]: the lock and election helpers.
//!
//! No logic lives here; conversions and validation belong to the crates that use the types.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// Encoded `FileDescriptorSet` of every etcd proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptor.bin"));
