//! metastore-storaged: one member of the MetaStore storage cluster.
//!
//! Layers, top to bottom (writes flow down, reads and answers flow up):
//! - [`service`]: the internal storage gRPC service gateways call; runs a request here or
//!   forwards it to the leader.
//! - [`node`]: proposes writes to raft, confirms linearizable reads, keeps the lessor.
//! - [`raft`]: the openraft member: log store, state machine adapter, snapshots, peer RPC.
//! - [`cluster`]: etcd's Cluster API and member status on top of raft membership.
//! - [`state_machine`]: applies log entries to the store, recording the applied log id
//!   atomically with the data.
//! - [`mvcc`]: etcd's revisioned key-value model, independent of the engine.
//! - [`watch`]: the watch hub: live fan-out of committed changes, history catch-up.
//! - [`engine`]: ordered key-value backends (`memory`, `rocksdb`) behind small traits.
//!
//! [`lessor`] tracks lease deadlines on the leader; [`keepalive`] serves gateways' batched
//! renewal streams. [`forward`] passes requests on to the leader.
//! [`gateways`] keeps the gateways' published client URLs (withdrawn when a gateway goes silent). [`identity`] derives member and cluster
//! ids; [`config`] reads settings; [`server`] wires it all together.

pub mod bootstrap;
pub mod cluster;
pub mod command;
pub mod config;
pub mod dedup;
pub mod engine;
pub mod forward;
pub mod gateways;
pub mod identity;
pub mod keepalive;
pub mod lessor;
pub mod mvcc;
pub mod node;
pub mod publication;
pub mod raft;
pub mod server;
pub mod service;
pub mod state_machine;
pub mod watch;
