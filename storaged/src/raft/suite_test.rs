//! openraft's storage test suite against the log store and state machine of both engines.

use super::TypeConfig;
use super::log_store::LogStore;
use super::state_machine::StateMachineStore;
use crate::engine::{EngineKind, open};
use crate::mvcc::Store;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use std::sync::Arc;

struct Builder(EngineKind);

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let opened = open(self.0, dir.path()).expect("open engine");
        let store = Arc::new(Store::open(opened.engine).expect("open store"));
        let sm = StateMachineStore::open(
            store,
            dir.path(),
            std::sync::Arc::new(crate::auth::Auth::new(Default::default())),
        )
        .expect("open state machine");
        Ok((dir, LogStore::new(opened.log), sm))
    }
}

fn run(kind: EngineKind) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(Suite::test_all(Builder(kind)))
        .expect("storage suite");
}

#[test]
fn openraft_suite_memory() {
    run(EngineKind::Memory);
}

#[test]
fn openraft_suite_rocksdb() {
    run(EngineKind::Rocksdb);
}
