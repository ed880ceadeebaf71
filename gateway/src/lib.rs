//! metastore-gateway: the stateless front of MetaStore. It speaks etcd's v3 API to clients and
//! turns every request into one internal call to storaged; it holds no data.
//!
//! - [`etcd`]: the etcd gRPC services (thin handlers: check the request with
//!   `metastore-request`, the checks and classification shared with storaged, then call
//!   upstream).
//! - [`caller`]: the client's auth token, carried from its call into every storage request
//!   (storaged resolves and checks it).
//! - [`error`]: the one error type and its mapping to etcd's exact gRPC errors.
//! - [`upstream`]: connections to storaged; [`keepalive`] multiplexes every client's lease
//!   renewals onto one upstream stream.
//! - [`http`]: the HTTP front door on the client port (etcd's JSON gateway, health and
//!   version), answered through in-process calls of the gRPC services; [`rest`] is MetaStore's
//!   own REST API there.
//! - [`config`], [`server`]: settings and listeners; [`listen`] is what stands between a
//!   client's socket and the server (it lets clients whose HTTP/2 `:authority` the server would
//!   refuse, such as etcdctl 3.4 with `http://` endpoints, through).

pub mod breaker;
pub mod caller;
pub mod config;
pub mod error;
pub mod etcd;
pub mod http;
pub mod keepalive;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod rest;
pub mod server;
pub mod upstream;
