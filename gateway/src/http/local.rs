//! In-process etcd gRPC clients for the HTTP front door.
//!
//! Every HTTP route (grpc-gateway JSON, REST, health) is served by calling the very gRPC
//! services that serve gRPC clients, through this in-process channel: the request is encoded,
//! routed by its gRPC path, checked and answered by the same code, with no socket in between.
//! No HTTP route implements a rule of its own.

use crate::caller::{TokenLayer, TokenService};
use metastore_proto::etcdserverpb::auth_client::AuthClient;
use metastore_proto::etcdserverpb::cluster_client::ClusterClient;
use metastore_proto::etcdserverpb::kv_client::KvClient;
use metastore_proto::etcdserverpb::lease_client::LeaseClient;
use metastore_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use metastore_proto::etcdserverpb::watch_client::WatchClient;
use metastore_proto::v3electionpb::election_client::ElectionClient;
use metastore_proto::v3lockpb::lock_client::LockClient;
use tower::Layer;

/// The channel: the gRPC services' router, each call in its caller's token scope.
pub type Channel = TokenService<axum::Router>;

/// Handle to the gateway's own gRPC services.
#[derive(Clone)]
pub struct Local {
    channel: Channel,
}

/// Builds a client over the in-process channel with no message size limit of its own (the
/// services enforce etcd's limits on what they receive).
macro_rules! client {
    ($name:ident, $client:ident) => {
        pub fn $name(&self) -> $client<Channel> {
            $client::new(self.channel.clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX)
        }
    };
}

impl Local {
    /// `grpc`: a router serving the etcd gRPC services (and nothing else).
    pub fn new(grpc: axum::Router) -> Self {
        Self {
            channel: TokenLayer::default().layer(grpc),
        }
    }

    client!(kv, KvClient);
    client!(watch, WatchClient);
    client!(lease, LeaseClient);
    client!(cluster, ClusterClient);
    client!(maintenance, MaintenanceClient);
    client!(auth, AuthClient);
    client!(lock, LockClient);
    client!(election, ElectionClient);
}

/// A request carrying `token` (may be empty) as gRPC clients send it.
pub fn request<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if !token.is_empty()
        && let Ok(v) = token.parse()
    {
        req.metadata_mut().insert("token", v);
    }
    req
}
