//! metastore-storaged: one member of the MetaStore storage cluster.
//!
//! Layers, top to bottom (writes flow down, reads and answers flow up):
//! - [`server`]: wires it all together; [`config`] reads settings; [`stopping`] hands a
//!   leader's leadership over on SIGTERM or SIGINT.
//! - [`service`]: the internal storage gRPC service gateways call: checks a request, runs it
//!   through [`forward`] (here when this member leads, else once on the leader), maps the
//!   error with [`errors`] and stamps the header with [`stamp`]. [`keepalive`] serves the
//!   gateways' batched lease renewal streams the same way.
//! - [`metrics`]: Prometheus metrics under etcd's names (`--listen-metrics-urls`); [`scrape`]
//!   reads the member's state for each scrape.
//! - [`health`]: gRPC health on the storage port (a leader with a quorum, or a member that knows
//!   a leader).
//! - [`duties`]: background work: the leader's tick (lease expiry and checkpoints, silent
//!   gateways' publications withdrawn) and publishing this member's own name; [`compactor`]
//!   is etcd's auto-compaction on the leader.
//! - [`cluster`]: etcd's Cluster API, leader transfer and member status on top of raft
//!   membership; [`gateways`] keeps the gateways' published client URLs alive on the leader.
//! - [`node`]: proposes writes to raft, confirms linearizable reads, keeps the [`lessor`].
//! - [`raft`]: the openraft member: log store, state machine adapter, snapshots, peer RPC.
//! - [`state_machine`]: applies [`command`]s in log order, recording the applied log id
//!   atomically with the data; [`dedup`] applies a gateway's retried write once;
//!   [`publication`] holds the metadata records (published gateways, members that ran);
//!   [`alarms`] the active alarms and the writes they refuse.
//! - [`mvcc`]: etcd's revisioned key-value model, independent of the engine.
//! - [`watch`]: the watch hub: live fan-out of committed changes, history catch-up.
//! - [`engine`]: ordered key-value backends (`memory`, `rocksdb`) behind small traits.
//!
//! Beside them: [`identity`] derives member and cluster ids; [`bootstrap`] asks the other
//! members before a data dir is created (a joining member's cluster id, no second bootstrap).

pub mod alarms;
pub mod auth;
pub mod backup;
pub mod bootstrap;
pub mod cluster;
pub mod command;
pub mod compactor;
pub mod config;
pub mod corruption;
pub mod dedup;
pub mod downgrade;
pub mod duties;
pub mod engine;
pub mod errors;
pub mod forward;
pub mod gateways;
pub mod health;
pub mod identity;
pub mod keepalive;
pub mod lessor;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod publication;
pub mod quota;
pub mod raft;
pub mod scrape;
pub mod server;
pub mod service;
pub mod stamp;
pub mod state_machine;
pub mod stopping;
pub mod traces;
pub mod watch;
