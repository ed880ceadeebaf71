//! What stands between a client's socket and the gRPC server.
//!
//! - [`authority`]: lets clients whose HTTP/2 `:authority` the server's HTTP stack refuses
//!   (etcdctl 3.4 sends a whole URL) through.
//! - [`connections`]: at most `--max-connections` client connections.

pub mod authority;
pub mod connections;
