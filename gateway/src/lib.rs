//! metastore-gateway: the stateless front of MetaStore. It speaks etcd's v3 API to clients and
//! turns every request into one internal call to storaged; it holds no data.
//!
//! - [`etcd`]: the etcd gRPC services (thin handlers).
//! - [`validate`]: etcd's request checks and limits, applied at the edge.
//! - [`error`]: the one error type and its mapping to etcd's exact gRPC errors.
//! - [`upstream`]: connections to storaged; [`keepalive`] multiplexes every client's lease
//!   renewals onto one upstream stream.
//! - [`config`], [`server`]: settings and listeners; [`authority`] lets clients that send a
//!   URL as the HTTP/2 authority (etcdctl 3.4 with `http://` endpoints) through.

pub mod authority;
pub mod config;
pub mod error;
pub mod etcd;
pub mod keepalive;
pub mod server;
pub mod upstream;
pub mod validate;
