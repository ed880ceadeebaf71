//! One conformance suite, run against every engine.

use super::{Engine, EngineKind, ReadView, Table, WriteBatch, open};
use std::sync::Arc;

fn collect(view: &dyn ReadView, table: Table, start: &[u8], end: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    view.scan(table, start, end, &mut |k, _| {
        keys.push(k.to_vec());
        true
    })
    .expect("scan");
    keys
}

fn batch(puts: &[(&[u8], &[u8])]) -> WriteBatch {
    let mut b = WriteBatch::default();
    for (k, v) in puts {
        b.put(Table::Key, *k, *v);
    }
    b
}

fn put_get_delete(e: &dyn Engine) {
    assert_eq!(e.get(Table::Key, b"a").expect("get"), None);
    e.write(batch(&[(b"a", b"1")])).expect("write");
    assert_eq!(e.get(Table::Key, b"a").expect("get"), Some(b"1".to_vec()));
    let mut b = WriteBatch::default();
    b.delete(Table::Key, b"a".to_vec());
    e.write(b).expect("write");
    assert_eq!(e.get(Table::Key, b"a").expect("get"), None);
}

fn tables_are_separate(e: &dyn Engine) {
    let mut b = WriteBatch::default();
    b.put(Table::Key, b"k".to_vec(), b"key".to_vec());
    b.put(Table::Meta, b"k".to_vec(), b"meta".to_vec());
    e.write(b).expect("write");
    assert_eq!(e.get(Table::Key, b"k").expect("get"), Some(b"key".to_vec()));
    assert_eq!(
        e.get(Table::Meta, b"k").expect("get"),
        Some(b"meta".to_vec())
    );
}

fn scan_is_ordered_and_bounded(e: &dyn Engine) {
    e.write(batch(&[
        (b"c", b""),
        (b"a", b""),
        (b"b", b""),
        (b"\xff", b""),
        (b"ab", b""),
    ]))
    .expect("write");
    assert_eq!(
        collect(e, Table::Key, b"", None),
        vec![
            b"a".to_vec(),
            b"ab".to_vec(),
            b"b".to_vec(),
            b"c".to_vec(),
            b"\xff".to_vec()
        ]
    );
    assert_eq!(
        collect(e, Table::Key, b"ab", Some(b"c")),
        vec![b"ab".to_vec(), b"b".to_vec()]
    );
    assert!(collect(e, Table::Key, b"c", Some(b"a")).is_empty());
    let mut first = Vec::new();
    e.scan(Table::Key, b"", None, &mut |k, _| {
        first.push(k.to_vec());
        false
    })
    .expect("scan");
    assert_eq!(first, vec![b"a".to_vec()]);
}

fn batch_is_atomic_and_ordered(e: &dyn Engine) {
    let mut b = WriteBatch::default();
    b.put(Table::Key, b"x".to_vec(), b"1".to_vec());
    b.delete(Table::Key, b"x".to_vec());
    b.put(Table::Key, b"y".to_vec(), b"2".to_vec());
    e.write(b).expect("write");
    assert_eq!(e.get(Table::Key, b"x").expect("get"), None);
    assert_eq!(e.get(Table::Key, b"y").expect("get"), Some(b"2".to_vec()));
    // Atomic: a reader's consistent view never holds half a batch. Each batch writes the
    // same number under both keys (and in two tables); views taken while batches land must
    // always see equal values.
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..2_000u32 {
                let v = i.to_be_bytes().to_vec();
                let mut b = WriteBatch::default();
                b.put(Table::Key, b"p".to_vec(), v.clone());
                b.put(Table::Meta, b"q".to_vec(), v.clone());
                b.put(Table::Key, b"r".to_vec(), v);
                e.write(b).expect("write");
            }
        });
        let mut views = 0;
        while !writer.is_finished() || views == 0 {
            e.with_snapshot(&mut |view| {
                let p = view.get(Table::Key, b"p")?;
                let q = view.get(Table::Meta, b"q")?;
                let r = view.get(Table::Key, b"r")?;
                assert!(p == q && q == r, "half a batch seen: {p:?} {q:?} {r:?}");
                Ok(())
            })
            .expect("snapshot");
            views += 1;
        }
    });
}

fn snapshot_is_stable(e: &dyn Engine) {
    e.write(batch(&[(b"s", b"old")])).expect("write");
    let (mut before, mut after, mut later_seen) = (None, None, true);
    let mut wrote_meanwhile = false;
    std::thread::scope(|scope| {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        scope.spawn(move || {
            if go_rx.recv().is_ok() {
                e.write(batch(&[(b"s", b"new"), (b"t", b"added")]))
                    .expect("write");
                let _ = done_tx.send(());
            }
        });
        e.with_snapshot(&mut |view| {
            before = view.get(Table::Key, b"s")?;
            // A write lands while the view is in use; it must not wait for the view to end.
            let _ = go_tx.send(());
            wrote_meanwhile = done_rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .is_ok();
            after = view.get(Table::Key, b"s")?;
            later_seen = view.get(Table::Key, b"t")?.is_some();
            Ok(())
        })
        .expect("snapshot");
    });
    assert!(wrote_meanwhile, "a write waited for a snapshot view to end");
    assert_eq!(before, Some(b"old".to_vec()));
    assert_eq!(after, Some(b"old".to_vec()), "the view moved");
    assert!(!later_seen, "a later write shows in the view");
    assert_eq!(e.get(Table::Key, b"s").expect("get"), Some(b"new".to_vec()));
}

fn binary_keys_and_values(e: &dyn Engine) {
    let key = vec![0u8, 1, 2, 0, 255];
    let value = vec![0u8; 70_000];
    let mut b = WriteBatch::default();
    b.put(Table::Key, key.clone(), value.clone());
    e.write(b).expect("write");
    assert_eq!(e.get(Table::Key, &key).expect("get"), Some(value));
}

/// Defragmenting while another thread writes and another reads: every write lands, nothing
/// deleted comes back, reads see the data throughout, and RocksDB gives the space of the
/// deleted records back (the memory engine holds live records only).
fn defragment_with_concurrent_writes(e: &dyn Engine) {
    let value = vec![7u8; 1024];
    for chunk in 0..20 {
        let mut b = WriteBatch::default();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            b.put(Table::Key, format!("k{i:05}").into_bytes(), value.clone());
        }
        e.write(b).expect("write");
    }
    let mut b = WriteBatch::default();
    for i in (0..20_000).step_by(2) {
        b.delete(Table::Key, format!("k{i:05}").into_bytes());
    }
    e.write(b).expect("delete");
    let before = e.size_bytes();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..2000 {
                e.write(batch(&[(format!("w{i:04}").as_bytes(), b"x")]))
                    .expect("write during defragment");
            }
        });
        let reader = s.spawn(|| {
            for _ in 0..200 {
                assert_eq!(
                    e.get(Table::Key, b"k00001").expect("get"),
                    Some(value.clone())
                );
                assert_eq!(e.get(Table::Key, b"k00002").expect("get"), None);
            }
        });
        for _ in 0..3 {
            e.defragment().expect("defragment");
        }
        writer.join().expect("writer");
        reader.join().expect("reader");
    });
    assert_eq!(collect(e, Table::Key, b"w", Some(b"x")).len(), 2000);
    let keys = collect(e, Table::Key, b"k", Some(b"l"));
    assert_eq!(keys.len(), 10_000);
    assert!(
        keys.iter()
            .all(|k| k.last().is_some_and(|d| (d - b'0') % 2 == 1))
    );
    if e.kind() == EngineKind::Rocksdb {
        let after = e.size_bytes();
        assert!(after < before * 3 / 4, "size {before} -> {after}");
    }
}

fn fresh(kind: EngineKind) -> (tempfile::TempDir, Arc<dyn Engine>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(kind, dir.path()).expect("open").engine;
    (dir, engine)
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod memory {
            $(#[test] fn $name() { let (_d, e) = super::fresh(super::EngineKind::Memory); super::$name(e.as_ref()); })*
        }
        mod rocksdb {
            $(#[test] fn $name() { let (_d, e) = super::fresh(super::EngineKind::Rocksdb); super::$name(e.as_ref()); })*
        }
    };
}

suite!(
    put_get_delete,
    tables_are_separate,
    scan_is_ordered_and_bounded,
    batch_is_atomic_and_ordered,
    snapshot_is_stable,
    binary_keys_and_values,
    defragment_with_concurrent_writes
);

#[test]
fn rocksdb_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let e = open(EngineKind::Rocksdb, dir.path()).expect("open").engine;
        e.write(batch(&[(b"durable", b"yes")])).expect("write");
    }
    let e = open(EngineKind::Rocksdb, dir.path())
        .expect("reopen")
        .engine;
    assert_eq!(
        e.get(Table::Key, b"durable").expect("get"),
        Some(b"yes".to_vec())
    );
}

#[test]
fn unknown_engine_is_one_clear_line() {
    let err = "leveldb".parse::<EngineKind>().expect_err("must fail");
    assert!(!err.contains('\n'));
    assert!(err.contains("leveldb") && err.contains("rocksdb"));
}
