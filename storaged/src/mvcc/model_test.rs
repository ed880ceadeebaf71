//! Model-based test: random Put/Delete/Txn/Compact/Range sequences run against the store and
//! against a deliberately naive model (a full copy of the key space per revision); every answer
//! must agree.

use super::{KeyRange, MvccError, Store};
use crate::engine::{EngineKind, open};
use metastore_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use metastore_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use metastore_proto::etcdserverpb::request_op::Request;
use metastore_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use metastore_proto::mvccpb::KeyValue;
use proptest::prelude::*;
use std::collections::BTreeMap;

type State = BTreeMap<Vec<u8>, KeyValue>;

/// The model: `states[r]` is the whole key space at revision `r` (index 0 unused).
struct Model {
    states: Vec<State>,
    compacted: i64,
}

impl Model {
    fn new() -> Self {
        Self {
            states: vec![State::new(), State::new()],
            compacted: 0,
        }
    }
    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }
    fn latest(&self) -> &State {
        &self.states[self.states.len() - 1]
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> i64 {
        let rev = self.current() + 1;
        let mut s = self.latest().clone();
        let kv = match s.get(key) {
            Some(p) => KeyValue {
                key: key.to_vec(),
                create_revision: p.create_revision,
                mod_revision: rev,
                version: p.version + 1,
                value: value.to_vec(),
                lease: 0,
            },
            None => KeyValue {
                key: key.to_vec(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                value: value.to_vec(),
                lease: 0,
            },
        };
        s.insert(key.to_vec(), kv);
        self.states.push(s);
        rev
    }
    fn delete(&mut self, range: &KeyRange) -> i64 {
        let mut s = self.latest().clone();
        let before = s.len();
        s.retain(|k, _| !range.contains(k));
        let n = (before - s.len()) as i64;
        if n > 0 {
            self.states.push(s);
        }
        n
    }
    fn range(
        &self,
        range: &KeyRange,
        rev: i64,
        limit: i64,
    ) -> Result<(Vec<KeyValue>, i64, bool), MvccError> {
        let rev = if rev <= 0 { self.current() } else { rev };
        if rev > self.current() {
            return Err(MvccError::FutureRev);
        }
        if rev < self.compacted {
            return Err(MvccError::Compacted);
        }
        let all: Vec<KeyValue> = self.states[rev as usize]
            .values()
            .filter(|kv| range.contains(&kv.key))
            .cloned()
            .collect();
        let count = all.len() as i64;
        let more = limit > 0 && all.len() > limit as usize;
        let kvs = if limit > 0 {
            all.into_iter().take(limit as usize).collect()
        } else {
            all
        };
        Ok((kvs, count, more))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8),
    /// If version(key) == v then put key else delete [key, key+span).
    Txn(u8, i64, u8),
    Compact(i64),
    Range(u8, u8, i64, i64),
    /// Delete [key, key+span), put another key, then put `key` with ignore_value (which finds
    /// it deleted): fails with key not found, and must leave no trace.
    FailingTxn(u8, u8),
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + (k % 6)]
}

fn range_of(k: u8, span: u8) -> KeyRange {
    let start = key(k);
    match span % 3 {
        0 => KeyRange::Single(start),
        1 => KeyRange::From(start),
        _ => KeyRange::Between(start.clone(), vec![start[0] + 2]),
    }
}

fn range_end(r: &KeyRange) -> Vec<u8> {
    match r {
        KeyRange::Single(_) => Vec::new(),
        KeyRange::From(_) => vec![0],
        KeyRange::Between(_, e) => e.clone(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(k, s)| Op::Delete(k, s)),
        2 => (any::<u8>(), 0i64..3, any::<u8>()).prop_map(|(k, v, s)| Op::Txn(k, v, s)),
        1 => (0i64..30).prop_map(Op::Compact),
        4 => (any::<u8>(), any::<u8>(), -3i64..30, 0i64..4).prop_map(|(k, s, r, l)| Op::Range(k, s, r, l)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(k, s)| Op::FailingTxn(k, s)),
    ]
}

fn same_err(a: &MvccError, b: &MvccError) -> bool {
    matches!(
        (a, b),
        (MvccError::Compacted, MvccError::Compacted) | (MvccError::FutureRev, MvccError::FutureRev)
    )
}

fn run(kind: EngineKind, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let store = Store::open(
        open(kind, dir.path())
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .engine,
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Model::new();
    let mut index = 0u64;
    for op in ops {
        index += 1;
        match op {
            Op::Put(k, v) => {
                let req = PutRequest {
                    key: key(k),
                    value: vec![v],
                    ..Default::default()
                };
                let resp = store
                    .write(index, |w| w.apply_put(&req))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let rev = model.put(&req.key, &req.value);
                prop_assert_eq!(resp.header.map(|h| h.revision), Some(rev));
            }
            Op::Delete(k, s) => {
                let r = range_of(k, s);
                let req = DeleteRangeRequest {
                    key: r.start().to_vec(),
                    range_end: range_end(&r),
                    prev_kv: true,
                };
                let expect_prev: Vec<KeyValue> = model
                    .latest()
                    .values()
                    .filter(|kv| r.contains(&kv.key))
                    .cloned()
                    .collect();
                let resp = store
                    .write(index, |w| w.apply_delete_range(&req))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let n = model.delete(&r);
                prop_assert_eq!(resp.deleted, n);
                prop_assert_eq!(resp.prev_kvs, expect_prev);
                prop_assert_eq!(resp.header.map(|h| h.revision), Some(model.current()));
            }
            Op::Txn(k, v, s) => {
                let r = range_of(k, s);
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Version as i32,
                        key: key(k),
                        target_union: Some(TargetUnion::Version(v)),
                        range_end: Vec::new(),
                    }],
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: key(k),
                            value: b"t".to_vec(),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![RequestOp {
                        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                            key: r.start().to_vec(),
                            range_end: range_end(&r),
                            prev_kv: false,
                        })),
                    }],
                };
                let version = model.latest().get(&key(k)).map_or(0, |kv| kv.version);
                let resp = store
                    .write(index, |w| w.apply_txn(&req))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(resp.succeeded, version == v);
                if version == v {
                    model.put(&key(k), b"t");
                } else {
                    model.delete(&r);
                }
                prop_assert_eq!(resp.header.map(|h| h.revision), Some(model.current()));
            }
            Op::Compact(back) => {
                let rev = (model.current() - back).max(1);
                let got = store.write(index, |w| {
                    w.apply_compact(&CompactionRequest {
                        revision: rev,
                        physical: true,
                    })
                });
                let want = if rev <= model.compacted {
                    Err(MvccError::Compacted)
                } else {
                    Ok(())
                };
                match (got, want) {
                    (Ok(_), Ok(())) => model.compacted = rev,
                    (Err(a), Err(b)) => prop_assert!(same_err(&a, &b), "{a:?} vs {b:?}"),
                    (a, b) => prop_assert!(false, "compact {rev}: store {a:?}, model {b:?}"),
                }
            }
            Op::FailingTxn(k, s) => {
                let r = range_of(k, s);
                let other = vec![b'z'];
                let req = TxnRequest {
                    compare: vec![],
                    success: vec![
                        RequestOp {
                            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                                key: r.start().to_vec(),
                                range_end: range_end(&r),
                                prev_kv: false,
                            })),
                        },
                        RequestOp {
                            request: Some(Request::RequestPut(PutRequest {
                                key: other,
                                value: b"x".to_vec(),
                                ..Default::default()
                            })),
                        },
                        RequestOp {
                            request: Some(Request::RequestPut(PutRequest {
                                key: key(k),
                                ignore_value: true,
                                ..Default::default()
                            })),
                        },
                    ],
                    failure: vec![],
                };
                let got = store
                    .apply_entry(index, None, |w| w.apply_txn(&req))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(matches!(got, Err(MvccError::KeyNotFound)), "{got:?}");
                prop_assert_eq!(store.applied_index(), index);
                prop_assert_eq!(store.current_revision(), model.current());
            }
            Op::Range(k, s, rev, limit) => {
                let r = range_of(k, s);
                let req = RangeRequest {
                    key: r.start().to_vec(),
                    range_end: range_end(&r),
                    revision: rev,
                    limit,
                    ..Default::default()
                };
                match (store.range(&req), model.range(&r, rev, limit)) {
                    (Ok(resp), Ok((kvs, count, more))) => {
                        prop_assert_eq!(resp.kvs, kvs);
                        prop_assert_eq!(resp.count, count);
                        prop_assert_eq!(resp.more, more);
                        prop_assert_eq!(resp.header.map(|h| h.revision), Some(model.current()));
                    }
                    (Err(a), Err(b)) => prop_assert!(same_err(&a, &b), "{a:?} vs {b:?}"),
                    (a, b) => prop_assert!(false, "range: store {a:?}, model {b:?}"),
                }
            }
        }
    }
    // Reopening the store rebuilds the same state from the engine (durable engines only).
    if kind == EngineKind::Rocksdb {
        let current = store.current_revision();
        let latest = store
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let engine = store.engine.clone();
        drop(store);
        let reopened = Store::open(engine).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(reopened.current_revision(), current);
        prop_assert_eq!(reopened.compacted_revision(), model.compacted);
        let again = reopened
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again.kvs, latest.kvs);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn store_matches_model_memory(ops in proptest::collection::vec(op(), 1..60)) {
        run(EngineKind::Memory, ops)?;
    }

    #[test]
    fn store_matches_model_rocksdb(ops in proptest::collection::vec(op(), 1..40)) {
        run(EngineKind::Rocksdb, ops)?;
    }
}

#[test]
fn sort_and_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(open(EngineKind::Memory, dir.path()).expect("open").engine).expect("store");
    for (i, (k, v)) in [("a", "3"), ("b", "1"), ("c", "2"), ("a", "9")]
        .into_iter()
        .enumerate()
    {
        let req = PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        };
        store
            .write(i as u64 + 1, |w| w.apply_put(&req))
            .expect("put");
    }
    let all = |order: SortOrder, target: SortTarget, limit: i64| {
        let resp = store
            .range(&RangeRequest {
                key: b"a".to_vec(),
                range_end: b"z".to_vec(),
                sort_order: order as i32,
                sort_target: target as i32,
                limit,
                ..Default::default()
            })
            .expect("range");
        (
            resp.kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                .collect::<Vec<_>>(),
            resp.more,
            resp.count,
        )
    };
    assert_eq!(
        all(SortOrder::Descend, SortTarget::Key, 0).0,
        ["c", "b", "a"]
    );
    assert_eq!(
        all(SortOrder::None, SortTarget::Value, 0).0,
        ["b", "c", "a"]
    );
    assert_eq!(
        all(SortOrder::Descend, SortTarget::Mod, 2),
        (vec!["a".to_string(), "c".to_string()], true, 3)
    );
    assert_eq!(all(SortOrder::Ascend, SortTarget::Version, 1).0, ["b"]);
    let filtered = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            range_end: b"z".to_vec(),
            min_mod_revision: 4,
            ..Default::default()
        })
        .expect("range");
    assert_eq!(filtered.kvs.len(), 2);
    assert_eq!(filtered.count, 3, "count ignores the min/max filters");
    let keys_only = store
        .range(&RangeRequest {
            key: b"a".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .expect("range");
    assert!(keys_only.kvs[0].value.is_empty());
}
