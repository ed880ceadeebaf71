//! Self-test: valid histories pass; each planted violation is reported with the right kind.
#![allow(clippy::unwrap_used)]

use metastore_checker::{
    CheckOptions, CounterIncrement, History, KvInput, KvOp, KvOutput, LockHold, Report,
    ViolationKind, WatchEvent, WatchItem, WatchLog, check, check_with,
};
use std::collections::HashMap;
use std::time::Instant;

// ---- builders ----

fn op(client: u64, invoke: u64, complete: u64, input: KvInput, output: KvOutput) -> KvOp {
    KvOp {
        client,
        invoke,
        complete,
        input,
        output,
    }
}
fn put(k: &str, v: &str) -> KvInput {
    KvInput::Put {
        key: k.into(),
        value: v.into(),
    }
}
fn get(k: &str) -> KvInput {
    KvInput::Get { key: k.into() }
}
fn del(k: &str) -> KvInput {
    KvInput::Delete { key: k.into() }
}
fn cas(k: &str, expect: Option<&str>, new: &str) -> KvInput {
    KvInput::Cas {
        key: k.into(),
        expect: expect.map(String::from),
        new: new.into(),
    }
}
fn put_ok(revision: i64) -> KvOutput {
    KvOutput::Put { revision }
}
fn got(v: Option<&str>, revision: i64) -> KvOutput {
    KvOutput::Get {
        value: v.map(String::from),
        revision,
    }
}
fn cas_ok(succeeded: bool, revision: i64) -> KvOutput {
    KvOutput::Cas {
        succeeded,
        revision,
    }
}
fn unknown() -> KvOutput {
    KvOutput::Unknown {
        error: "deadline exceeded".into(),
    }
}
fn failed() -> KvOutput {
    KvOutput::Failed {
        error: "not leader".into(),
    }
}
fn ev(revision: i64, key: &str, value: Option<&str>) -> WatchEvent {
    WatchEvent {
        revision,
        key: key.into(),
        is_put: value.is_some(),
        value: value.unwrap_or_default().into(),
    }
}
fn events(at: u64, evs: Vec<WatchEvent>) -> WatchItem {
    let header_revision = evs.iter().map(|e| e.revision).max().unwrap_or(0);
    WatchItem::Events {
        at,
        header_revision,
        events: evs,
    }
}
fn progress(at: u64, revision: i64) -> WatchItem {
    WatchItem::Progress { at, revision }
}
fn inc(
    client: u64,
    invoke: u64,
    fencing: i64,
    new_value: i64,
    acknowledged: bool,
) -> CounterIncrement {
    CounterIncrement {
        client,
        invoke,
        complete: invoke + 5,
        fencing,
        new_value,
        acknowledged,
    }
}

/// A valid history exercising every part: overlapping operations, an unknown write that took
/// effect and one that did not, a failed write, CAS, delete, a two-key revision seen only by
/// watches, two watch streams (from revision 1, and "from now"), locks and a counter.
fn valid() -> History {
    let kv = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(2, 5, 15, get("a"), got(None, 1)), // concurrent with the put: old value
        op(3, 12, 20, get("a"), got(Some("1"), 2)),
        op(1, 20, 30, put("a", "2"), unknown()), // took effect (rev 3), seen below
        op(3, 31, 34, get("a"), got(Some("2"), 3)),
        op(2, 35, 40, put("a", "3"), put_ok(4)),
        op(1, 41, 50, put("b", "x"), unknown()), // never took effect
        op(2, 42, 45, put("b", "y"), failed()),
        op(3, 60, 70, get("b"), got(None, 4)),
        op(1, 71, 80, cas("a", Some("3"), "4"), cas_ok(true, 5)),
        op(2, 72, 81, cas("a", Some("3"), "5"), cas_ok(false, 5)),
        op(
            2,
            90,
            95,
            del("a"),
            KvOutput::Delete {
                deleted: 1,
                revision: 6,
            },
        ),
        op(3, 96, 99, get("a"), got(None, 6)),
        op(
            3,
            96,
            99,
            del("b"),
            KvOutput::Delete {
                deleted: 0,
                revision: 6,
            },
        ),
        op(2, 96, 97, get("b"), unknown()), // unknown get: dropped
        // Final reads.
        op(9, 1000, 1001, get("a"), got(None, 7)),
        op(9, 1002, 1003, get("b"), got(None, 7)),
    ];
    let final_events = vec![
        ev(2, "a", Some("1")),
        ev(3, "a", Some("2")),
        ev(4, "a", Some("3")),
        ev(5, "a", Some("4")),
        ev(6, "a", None),
        ev(7, "m1", Some("p")),
        ev(7, "m2", Some("q")),
    ];
    let from_one = WatchLog {
        watcher: 1,
        key_prefix: String::new(),
        start_revision: 1,
        items: vec![
            WatchItem::Created {
                at: 1,
                revision: 1,
                start_revision: 1,
            },
            events(11, vec![ev(2, "a", Some("1"))]),
            events(41, vec![ev(3, "a", Some("2")), ev(4, "a", Some("3"))]),
            progress(42, 4),
            events(81, vec![ev(5, "a", Some("4"))]),
            events(96, vec![ev(6, "a", None)]),
            events(150, vec![ev(7, "m1", Some("p")), ev(7, "m2", Some("q"))]),
            progress(200, 7),
        ],
    };
    let from_now = WatchLog {
        watcher: 2,
        key_prefix: "m".into(),
        start_revision: 0,
        items: vec![
            WatchItem::Created {
                at: 50,
                revision: 4,
                start_revision: 0,
            },
            progress(60, 5),
            events(150, vec![ev(7, "m1", Some("p")), ev(7, "m2", Some("q"))]),
        ],
    };
    // A stream that resumed after an error, from revision 5.
    let resumed = WatchLog {
        watcher: 1,
        key_prefix: "a".into(),
        start_revision: 5,
        items: vec![
            events(82, vec![ev(5, "a", Some("4"))]),
            events(96, vec![ev(6, "a", None)]),
        ],
    };
    let locks = vec![
        LockHold {
            client: 1,
            acquired: 100,
            released: Some(200),
            fencing: 10,
        },
        LockHold {
            client: 2,
            acquired: 200,
            released: Some(300),
            fencing: 12,
        },
        LockHold {
            client: 3,
            acquired: 310,
            released: None,
            fencing: 15,
        },
    ];
    let increments = vec![
        inc(1, 110, 10, 1, true),
        inc(1, 130, 10, 2, true),
        inc(2, 210, 12, 3, false), // took effect
        inc(2, 250, 12, 4, false), // did not
        inc(3, 320, 15, 4, true),
    ];
    History {
        kv,
        watches: vec![from_one, from_now, resumed],
        locks,
        increments,
        final_events,
        final_counter: Some(4),
    }
}

fn assert_ok(h: &History) -> Report {
    let report = check(h);
    assert!(report.is_ok(), "expected no violations:\n{report}");
    assert!(report.undecided.is_empty(), "{report}");
    report
}

#[track_caller]
fn assert_reports(h: &History, kind: ViolationKind) -> Report {
    let report = check(h);
    assert!(report.has(kind), "expected {kind:?}:\n{report}");
    report
}

fn stream(h: &mut History, watcher: usize) -> &mut Vec<WatchItem> {
    &mut h.watches[watcher].items
}

// ---- valid histories ----

#[test]
fn valid_history_passes() {
    let report = assert_ok(&valid());
    println!("{report}");
    assert_eq!(report.kv.dropped_failed, 1);
    assert_eq!(report.kv.dropped_unknown_gets, 1);
    assert_eq!(report.watch_streams, 3);
    assert!(report.to_string().contains("RESULT: ok"));
}

#[test]
fn save_and_load_round_trip() {
    let h = valid();
    let path = std::env::temp_dir().join(format!("checker-roundtrip-{}.json", std::process::id()));
    h.save(&path).unwrap();
    let back = History::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back, h);
}

#[test]
fn unknown_write_that_never_applied_needs_no_pruning() {
    let mut opts = CheckOptions::default();
    opts.linearizability.prune_unobservable_unknown_writes = false;
    let report = check_with(&valid(), &opts);
    assert!(report.is_ok(), "{report}");
}

// ---- planted KV violations ----

#[test]
fn stale_read() {
    let mut h = valid();
    // put a=3 completed at 40; a read after it returns the older "2".
    h.kv.push(op(3, 41, 44, get("a"), got(Some("2"), 4)));
    let report = assert_reports(&h, ViolationKind::NotLinearizable);
    let detail = &report.violations[0].detail;
    assert!(detail.contains("key \"a\""), "{detail}");
    println!("{report}");
}

#[test]
fn lost_write() {
    let mut h = valid();
    // Acknowledged put of b, a later read returns the previous value (absent).
    h.kv.push(op(1, 500, 510, put("b", "z"), put_ok(8)));
    h.kv.push(op(3, 520, 530, get("b"), got(None, 8)));
    let report = assert_reports(&h, ViolationKind::NotLinearizable);
    // The final log has no revision 8 either.
    assert!(report.has(ViolationKind::LostWrite), "{report}");
}

#[test]
fn failed_write_that_applied() {
    let mut h = valid();
    h.final_events.push(ev(8, "b", Some("y")));
    assert_reports(&h, ViolationKind::InventedWrite);
}

#[test]
fn duplicate_revision() {
    let mut h = valid();
    // The successful CAS reports the revision of the put before it.
    h.kv[9].output = cas_ok(true, 4);
    assert_reports(&h, ViolationKind::DuplicateRevision);
}

#[test]
fn revision_backwards() {
    let mut h = valid();
    h.kv[12].output = got(None, 3);
    assert_reports(&h, ViolationKind::RevisionOrder);
}

// ---- planted watch violations ----

#[test]
fn watch_duplicate_event() {
    let mut h = valid();
    stream(&mut h, 0).insert(5, events(85, vec![ev(5, "a", Some("4"))]));
    assert_reports(&h, ViolationKind::WatchDuplicate);
}

#[test]
fn watch_gap() {
    let mut h = valid();
    stream(&mut h, 0).remove(2); // revisions 3 and 4
    let report = assert_reports(&h, ViolationKind::WatchGap);
    assert_eq!(report.count(ViolationKind::WatchGap), 1);
}

#[test]
fn watch_gap_in_resumed_stream() {
    let mut h = valid();
    stream(&mut h, 2).remove(0); // asked for revision 5, got 6 first
    assert_reports(&h, ViolationKind::WatchGap);
}

#[test]
fn watch_revision_split_across_items() {
    let mut h = valid();
    let items = stream(&mut h, 0);
    items[6] = events(150, vec![ev(7, "m1", Some("p"))]);
    items.insert(7, events(151, vec![ev(7, "m2", Some("q"))]));
    assert_reports(&h, ViolationKind::WatchNotAtomic);
}

#[test]
fn watch_revision_delivered_partially() {
    let mut h = valid();
    stream(&mut h, 1)[2] = events(150, vec![ev(7, "m2", Some("q"))]);
    assert_reports(&h, ViolationKind::WatchNotAtomic);
}

#[test]
fn watch_progress_ahead() {
    let mut h = valid();
    let items = stream(&mut h, 0);
    let p = items.remove(3);
    items.insert(2, p); // progress 4 before the events of revisions 3 and 4
    let report = assert_reports(&h, ViolationKind::ProgressAhead);
    assert!(!report.has(ViolationKind::WatchGap), "{report}");
}

#[test]
fn watch_out_of_order() {
    let mut h = valid();
    stream(&mut h, 0).swap(4, 5);
    assert_reports(&h, ViolationKind::WatchOrder);
}

#[test]
fn watch_wrong_value() {
    let mut h = valid();
    stream(&mut h, 0)[4] = events(81, vec![ev(5, "a", Some("5"))]);
    assert_reports(&h, ViolationKind::WatchWrongEvent);
}

#[test]
fn watch_canceled_as_compacted_without_compaction() {
    let mut h = valid();
    stream(&mut h, 2).push(WatchItem::Canceled {
        at: 100,
        reason: "compacted".into(),
        compact_revision: 3,
    });
    assert_reports(&h, ViolationKind::WatchGap);
}

// ---- planted lock / counter violations ----

#[test]
fn lock_overlap() {
    let mut h = valid();
    h.locks[1].acquired = 150;
    assert_reports(&h, ViolationKind::LockOverlap);
}

#[test]
fn unreleased_hold_overlaps_later_holder() {
    let mut h = valid();
    h.locks[0].released = None;
    assert_reports(&h, ViolationKind::LockOverlap);
    let opts = CheckOptions {
        unreleased_lock_held_until_end: false,
        ..CheckOptions::default()
    };
    assert!(check_with(&h, &opts).is_ok());
}

#[test]
fn fencing_not_increasing() {
    let mut h = valid();
    h.locks[1].fencing = 9;
    assert_reports(&h, ViolationKind::FencingNotIncreasing);
}

#[test]
fn increment_with_stale_fencing() {
    let mut h = valid();
    h.increments[4].fencing = 9;
    assert_reports(&h, ViolationKind::FencingNotIncreasing);
}

#[test]
fn lost_increment() {
    let mut h = valid();
    h.final_counter = Some(3);
    assert_reports(&h, ViolationKind::LostIncrement);
    let mut h = valid();
    h.increments[4].new_value = 2; // read a stale counter: overwrote increment 2
    h.final_counter = Some(3);
    assert_reports(&h, ViolationKind::LostIncrement);
}

#[test]
fn invented_increment() {
    let mut h = valid();
    h.final_counter = Some(6);
    assert_reports(&h, ViolationKind::InventedIncrement);
}

// ---- generated histories ----

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A linearizable concurrent history: each client runs operations back to back; every
/// operation takes effect at a random point inside its interval; outputs come from a model
/// store applied in the order of those points. `unknown_per_mille` of the operations lose
/// their response; half of those never apply. A watch from revision 1 sees every event.
fn generate(
    clients: u64,
    per_client: u64,
    keys: u64,
    unknown_per_mille: u64,
    seed: u64,
) -> History {
    let mut rng = Rng(seed | 1);
    // (linearization point, client, invoke, complete, unknown, applies)
    let mut slots = Vec::new();
    for c in 0..clients {
        let mut t = rng.below(1000);
        for _ in 0..per_client {
            let invoke = t + rng.below(1000);
            let point = invoke + 1 + rng.below(5000);
            let complete = point + 1 + rng.below(5000);
            let unknown = rng.below(1000) < unknown_per_mille;
            let applies = !unknown || rng.below(2) == 0;
            slots.push((point, c, invoke, complete, unknown, applies));
            t = complete;
        }
    }
    slots.sort_unstable();
    let mut store: HashMap<String, String> = HashMap::new();
    let mut rev = 1i64;
    let mut h = History::default();
    let mut seq = 0u64;
    for (_, client, invoke, complete, unknown, applies) in slots {
        seq += 1;
        let key = format!("key{}", rng.below(keys));
        let value = format!("c{client}-{seq}");
        let current = store.get(&key).cloned();
        let roll = rng.below(100);
        let (input, output) = if roll < 40 {
            (get(&key), got(current.as_deref(), rev))
        } else if roll < 75 {
            if applies {
                rev += 1;
                store.insert(key.clone(), value.clone());
                h.final_events.push(ev(rev, &key, Some(&value)));
            }
            (put(&key, &value), put_ok(rev))
        } else if roll < 85 {
            let deleted = applies && current.is_some();
            if deleted {
                rev += 1;
                store.remove(&key);
                h.final_events.push(ev(rev, &key, None));
            }
            (
                del(&key),
                KvOutput::Delete {
                    deleted: i64::from(deleted),
                    revision: rev,
                },
            )
        } else {
            let expect = if rng.below(2) == 0 {
                current.clone()
            } else {
                Some(format!("c0-{}", rng.below(seq)))
            };
            let succeeded = applies && expect == current;
            if succeeded {
                rev += 1;
                store.insert(key.clone(), value.clone());
                h.final_events.push(ev(rev, &key, Some(&value)));
            }
            (cas(&key, expect.as_deref(), &value), cas_ok(succeeded, rev))
        };
        let output = if unknown { self::unknown() } else { output };
        h.kv.push(op(client, invoke, complete, input, output));
    }
    let end = h.kv.iter().map(|o| o.complete).max().unwrap_or(0) + 1;
    for k in 0..keys {
        let key = format!("key{k}");
        let t = end + 10 * k;
        h.kv.push(op(
            99,
            t,
            t + 5,
            get(&key),
            got(store.get(&key).map(String::as_str), rev),
        ));
    }
    let mut items = vec![WatchItem::Created {
        at: 0,
        revision: 1,
        start_revision: 1,
    }];
    items.extend(h.final_events.iter().map(|e| events(0, vec![e.clone()])));
    items.push(progress(end, rev));
    h.watches.push(WatchLog {
        watcher: 1,
        key_prefix: "key".into(),
        start_revision: 1,
        items,
    });
    h
}

#[test]
fn generated_history_performance() {
    let h = generate(5, 2000, 10, 0, 42);
    let started = Instant::now();
    let report = check(&h);
    let took = started.elapsed();
    println!("{report}");
    println!("5 clients x 2000 ops on 10 keys checked in {took:.2?}");
    assert!(report.is_ok(), "{report}");
    assert!(report.undecided.is_empty());
    assert_eq!(report.kv.ops_checked, 10_010);
}

#[test]
fn generated_history_with_unknown_outcomes() {
    let h = generate(5, 1000, 5, 30, 7);
    let started = Instant::now();
    let report = check(&h);
    println!("{report}");
    println!("with 3% unknown outcomes: {:.2?}", started.elapsed());
    assert!(report.is_ok(), "{report}");
    assert!(report.undecided.is_empty());
}

#[test]
fn generated_history_with_planted_stale_read() {
    let mut h = generate(5, 1000, 5, 30, 99);
    // Find a read after two sequential acknowledged puts of its key completed; make it return
    // the older put's value.
    let mut planted = false;
    for i in (0..h.kv.len() * 3 / 4).rev() {
        let KvInput::Get { key } = &h.kv[i].input else {
            continue;
        };
        if !matches!(h.kv[i].output, KvOutput::Get { .. }) {
            continue;
        }
        let invoke = h.kv[i].invoke;
        let done: Vec<&KvOp> = h.kv[..i]
            .iter()
            .filter(|o| o.key() == key && o.complete < invoke)
            .filter(|o| {
                matches!(
                    (&o.input, &o.output),
                    (KvInput::Put { .. }, KvOutput::Put { .. })
                )
            })
            .collect();
        let [.., older, newer] = done.as_slice() else {
            continue;
        };
        // Values are unique, so once `newer` (which followed `older`) completed, no
        // linearization lets the read see `older`'s value again.
        if newer.invoke <= older.complete {
            continue;
        }
        let KvInput::Put { value, .. } = &older.input else {
            continue;
        };
        let stale = value.clone();
        h.kv[i].output = got(Some(&stale), 0);
        planted = true;
        break;
    }
    assert!(planted, "no place to plant a stale read");
    let started = Instant::now();
    let report = check(&h);
    println!("planted stale read found in {:.2?}", started.elapsed());
    assert!(report.has(ViolationKind::NotLinearizable), "{report}");
    println!("{}", report.violations[0]);
}
