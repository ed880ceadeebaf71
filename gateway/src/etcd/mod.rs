//! The etcd v3 gRPC services. Handlers are thin: validate, make one upstream call, return.

mod feed;
pub mod kv;
pub mod lease;
pub mod watch;
