//! etcd's watch guarantees, per stream: ordered, unique, atomic, reliable (and so resumable:
//! a resumed stream is checked from the revision it asked for), progress never ahead.
//!
//! The stream's range starts at its start revision (or the revision of its `Created` response
//! plus one for a "from now" stream) and ends at the highest revision it delivered or reported
//! progress for. Within the range it must deliver exactly the final event log restricted to its
//! prefix. Events of a "from now" stream below its range need not be complete but must be real.

use crate::history::{WatchEvent, WatchItem, WatchLog};
use crate::{Violation, ViolationKind};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Totals of what was checked.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchStats {
    pub streams: usize,
    pub events: usize,
}

/// Checks every stream. Without a final event log (empty `final_events`) only the checks that
/// need no ground truth run (order, duplicates, atomicity across items, progress).
pub fn check_watches(
    watches: &[WatchLog],
    final_events: &[WatchEvent],
) -> (WatchStats, Vec<Violation>) {
    let truth = Truth::new(final_events);
    let mut stats = WatchStats::default();
    let mut violations = Vec::new();
    for log in watches {
        stats.streams += 1;
        stats.events += check_stream(log, truth.as_ref(), &mut violations);
    }
    (stats, violations)
}

struct Truth<'a> {
    by_rev_key: HashMap<(i64, &'a str), &'a WatchEvent>,
    /// Keys of each revision, in log order.
    by_rev: BTreeMap<i64, Vec<&'a WatchEvent>>,
}

impl<'a> Truth<'a> {
    fn new(events: &'a [WatchEvent]) -> Option<Truth<'a>> {
        if events.is_empty() {
            return None;
        }
        let mut by_rev: BTreeMap<i64, Vec<&WatchEvent>> = BTreeMap::new();
        for e in events {
            by_rev.entry(e.revision).or_default().push(e);
        }
        Some(Truth {
            by_rev_key: events
                .iter()
                .map(|e| ((e.revision, e.key.as_str()), e))
                .collect(),
            by_rev,
        })
    }
}

fn describe(log: &WatchLog) -> String {
    format!(
        "watcher {} stream (prefix {:?}, start revision {})",
        log.watcher, log.key_prefix, log.start_revision
    )
}

fn show(e: &WatchEvent) -> String {
    if e.is_put {
        format!("rev {} put {:?} = {:?}", e.revision, e.key, e.value)
    } else {
        format!("rev {} delete {:?}", e.revision, e.key)
    }
}

/// Returns the number of events delivered.
fn check_stream(log: &WatchLog, truth: Option<&Truth>, out: &mut Vec<Violation>) -> usize {
    let who = describe(log);
    let mut push =
        |kind, detail: String| out.push(Violation::new(kind, format!("{who}: {detail}")));
    let mut created: Option<i64> = None;
    let mut seen: HashSet<(i64, &str)> = HashSet::new();
    // Item that carried each revision (first one).
    let mut item_of_rev: HashMap<i64, usize> = HashMap::new();
    let mut split_reported: HashSet<i64> = HashSet::new();
    let mut last_rev = 0i64;
    let mut progress = 0i64;
    let mut delivered: Vec<&WatchEvent> = Vec::new();
    let mut cancel_compact: Option<i64> = None;
    let mut count = 0;
    for (i, item) in log.items.iter().enumerate() {
        match item {
            WatchItem::Created { revision, .. } => {
                created.get_or_insert(*revision);
            }
            WatchItem::Progress { revision, .. } => progress = progress.max(*revision),
            WatchItem::Canceled {
                compact_revision, ..
            } => {
                if *compact_revision > 0 {
                    cancel_compact.get_or_insert(*compact_revision);
                }
            }
            WatchItem::Events { events, .. } => {
                for e in events {
                    count += 1;
                    if !e.key.starts_with(&log.key_prefix) {
                        push(
                            ViolationKind::WatchWrongEvent,
                            format!("delivered an event outside its prefix: {}", show(e)),
                        );
                    }
                    if !seen.insert((e.revision, e.key.as_str())) {
                        push(
                            ViolationKind::WatchDuplicate,
                            format!("delivered an event twice: {}", show(e)),
                        );
                        continue;
                    }
                    if e.revision < last_rev {
                        push(
                            ViolationKind::WatchOrder,
                            format!(
                                "delivered {} after an event of revision {last_rev}",
                                show(e)
                            ),
                        );
                    }
                    let first_item = *item_of_rev.entry(e.revision).or_insert(i);
                    if first_item != i && split_reported.insert(e.revision) {
                        push(
                            ViolationKind::WatchNotAtomic,
                            format!(
                                "events of revision {} split across responses #{first_item} and #{i}",
                                e.revision
                            ),
                        );
                    }
                    if e.revision <= progress {
                        push(
                            ViolationKind::ProgressAhead,
                            format!(
                                "delivered {} after reporting progress up to revision {progress}",
                                show(e)
                            ),
                        );
                    }
                    if log.start_revision > 0 && e.revision < log.start_revision {
                        push(
                            ViolationKind::WatchWrongEvent,
                            format!("delivered an event before its start revision: {}", show(e)),
                        );
                    }
                    last_rev = last_rev.max(e.revision);
                    delivered.push(e);
                }
            }
        }
    }

    let from = if log.start_revision > 0 {
        Some(log.start_revision)
    } else {
        created.map(|r| r + 1)
    };
    let upper = last_rev.max(progress);
    if let Some(compact) = cancel_compact {
        // Compacted at C: revisions <= C are gone, so resuming at next <= C is impossible.
        let next = upper.max(from.map_or(0, |f| f - 1)) + 1;
        if next > compact {
            push(
                ViolationKind::WatchGap,
                format!(
                    "canceled as compacted at revision {compact}, but it only needed revisions \
                     from {next} on"
                ),
            );
        }
    }
    let Some(truth) = truth else {
        return count;
    };

    // Every delivered event is real.
    let mut partial: HashSet<i64> = HashSet::new();
    for e in &delivered {
        match truth.by_rev_key.get(&(e.revision, e.key.as_str())) {
            None => push(
                ViolationKind::WatchWrongEvent,
                format!(
                    "delivered an event that is not in the final log: {}",
                    show(e)
                ),
            ),
            Some(t) if t.is_put != e.is_put || (t.is_put && t.value != e.value) => push(
                ViolationKind::WatchWrongEvent,
                format!("delivered {} but the final log has {}", show(e), show(t)),
            ),
            Some(_) => {}
        }
    }
    // Atomic: a delivered revision comes with all its events under the prefix.
    let delivered_revs: Vec<i64> = {
        let mut r: Vec<i64> = delivered.iter().map(|e| e.revision).collect();
        r.dedup();
        r
    };
    for rev in delivered_revs {
        let missing: Vec<&str> = truth
            .by_rev
            .get(&rev)
            .into_iter()
            .flatten()
            .filter(|t| t.key.starts_with(&log.key_prefix))
            .filter(|t| !seen.contains(&(rev, t.key.as_str())))
            .map(|t| t.key.as_str())
            .collect();
        if !missing.is_empty() && partial.insert(rev) {
            push(
                ViolationKind::WatchNotAtomic,
                format!("delivered revision {rev} only partially: missing keys {missing:?}"),
            );
        }
    }
    // Reliable: nothing missing in [from, upper].
    let Some(from) = from.or_else(|| delivered.iter().map(|e| e.revision).min()) else {
        return count;
    };
    // A stream that ended before reaching its start revision (created, then canceled) has
    // nothing it had to deliver.
    if from > upper {
        return count;
    }
    let mut gaps: Vec<&WatchEvent> = Vec::new();
    for (&rev, events) in truth.by_rev.range(from..=upper) {
        if partial.contains(&rev) {
            continue;
        }
        gaps.extend(
            events
                .iter()
                .filter(|t| t.key.starts_with(&log.key_prefix))
                .filter(|t| !seen.contains(&(rev, t.key.as_str()))),
        );
    }
    if !gaps.is_empty() {
        let listed: Vec<String> = gaps.iter().take(5).map(|e| show(e)).collect();
        push(
            ViolationKind::WatchGap,
            format!(
                "missed {} events between revisions {from} and {upper} (it delivered or \
                 reported progress up to {upper}); first: {}",
                gaps.len(),
                listed.join("; ")
            ),
        );
    }
    count
}
