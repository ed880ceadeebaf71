//! Backups in etcd's own format: `bolt` reads and writes bbolt database files, `etcd_db` maps
//! the store to etcd's backend schema inside one, and `snapshot` makes the file that
//! `Maintenance.Snapshot` streams (the database and its SHA-256); `status` reads a snapshot file
//! as `etcdctl snapshot status` does (`metastore-ctl snapshot status`).

pub mod bolt;
pub mod etcd_db;
pub mod restore;
pub mod snapshot;
pub mod status;
