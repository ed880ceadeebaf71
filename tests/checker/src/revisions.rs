//! Revision checks on the KV history, and acknowledged writes against the final event log.
//!
//! etcd gives every write transaction its own revision, and revisions only grow in real time:
//! an operation invoked after another completed reports a revision at least as high, strictly
//! higher if it writes.

use crate::history::{KvInput, KvOp, KvOutput, WatchEvent, WatchLog, fmt_op};
use crate::{Violation, ViolationKind};
use std::collections::{HashMap, HashSet};

/// `DuplicateRevision`: two acknowledged writes reporting the same revision.
/// `RevisionOrder`: an operation invoked after another completed reports a lower revision (or,
/// for a write, not a higher one). Revisions <= 0 are taken as "not recorded" and skipped.
pub fn check_revisions(kv: &[KvOp]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut writers: HashMap<i64, usize> = HashMap::new();
    for (i, op) in kv.iter().enumerate() {
        let Some(rev) = op.write_revision().filter(|&r| r > 0) else {
            continue;
        };
        if let Some(&first) = writers.get(&rev) {
            violations.push(Violation::new(
                ViolationKind::DuplicateRevision,
                format!(
                    "two acknowledged writes report revision {rev}:\n    {}\n    {}",
                    fmt_op(&kv[first]),
                    fmt_op(op)
                ),
            ));
        } else {
            writers.insert(rev, i);
        }
    }

    // Real-time order: sweep operations by invocation, folding in those completed strictly
    // before it and remembering the highest revision among them.
    let with_rev: Vec<usize> = (0..kv.len())
        .filter(|&i| kv[i].output.revision().is_some_and(|r| r > 0))
        .collect();
    let mut by_complete = with_rev.clone();
    by_complete.sort_by_key(|&i| kv[i].complete);
    let mut by_invoke = with_rev;
    by_invoke.sort_by_key(|&i| kv[i].invoke);
    let mut done = 0;
    let mut highest: Option<(i64, usize)> = None;
    for &b in &by_invoke {
        while done < by_complete.len() && kv[by_complete[done]].complete < kv[b].invoke {
            let a = by_complete[done];
            let rev = kv[a].output.revision().unwrap_or(0);
            if highest.is_none_or(|(h, _)| rev > h) {
                highest = Some((rev, a));
            }
            done += 1;
        }
        let Some((high, a)) = highest else { continue };
        let rev = kv[b].output.revision().unwrap_or(0);
        let writes = kv[b].write_revision().is_some();
        if rev < high || (writes && rev == high) {
            violations.push(Violation::new(
                ViolationKind::RevisionOrder,
                format!(
                    "revision went backwards in real time: {} at revision {rev} was invoked \
                     after this completed at revision {high}:\n    {}\n    {}",
                    if writes { "a write" } else { "an operation" },
                    fmt_op(&kv[a]),
                    fmt_op(&kv[b])
                ),
            ));
        }
    }
    violations
}

/// Cross-checks acknowledged writes with the final event log (ground truth). Only keys the log
/// covers are checked: keys under a watched prefix, or keys that appear in the log.
///
/// `LostWrite`: an acknowledged put/delete/successful CAS is not in the log at its revision
/// with its value. `InventedWrite`: a put event of a key the KV clients use carries a value no
/// client wrote, or only an operation that definitely failed wrote.
pub fn check_final_events(
    kv: &[KvOp],
    watches: &[WatchLog],
    final_events: &[WatchEvent],
) -> Vec<Violation> {
    let mut violations = Vec::new();
    if final_events.is_empty() {
        return violations;
    }
    let by_rev_key: HashMap<(i64, &str), &WatchEvent> = final_events
        .iter()
        .map(|e| ((e.revision, e.key.as_str()), e))
        .collect();
    let logged_keys: HashSet<&str> = final_events.iter().map(|e| e.key.as_str()).collect();
    let covered = |key: &str| {
        logged_keys.contains(key) || watches.iter().any(|w| key.starts_with(&w.key_prefix))
    };
    for op in kv {
        let Some(rev) = op.write_revision().filter(|&r| r > 0) else {
            continue;
        };
        if !covered(op.key()) {
            continue;
        }
        let expected = match &op.input {
            KvInput::Put { value, .. } | KvInput::Cas { new: value, .. } => Some(value),
            KvInput::Delete { .. } | KvInput::Get { .. } => None,
        };
        let problem = match by_rev_key.get(&(rev, op.key())) {
            None => "has no event at its revision".to_string(),
            Some(e) if e.is_put != expected.is_some() => format!(
                "has a {} event at its revision",
                if e.is_put { "put" } else { "delete" }
            ),
            Some(e) if expected.is_some_and(|v| *v != e.value) => {
                format!("has value {:?} at its revision", e.value)
            }
            Some(_) => continue,
        };
        violations.push(Violation::new(
            ViolationKind::LostWrite,
            format!(
                "acknowledged write missing from the final event log (key {problem}):\n    {}",
                fmt_op(op)
            ),
        ));
    }

    // Who may have written what: (key, Some(value)) for puts, (key, None) for deletes.
    let mut written: HashMap<(&str, Option<&str>), bool> = HashMap::new();
    for op in kv {
        let target = match &op.input {
            KvInput::Put { key, value }
            | KvInput::Cas {
                key, new: value, ..
            } => (key.as_str(), Some(value.as_str())),
            KvInput::Delete { key } => (key.as_str(), None),
            KvInput::Get { .. } => continue,
        };
        let possible = !matches!(op.output, KvOutput::Failed { .. });
        let slot = written.entry(target).or_insert(false);
        *slot |= possible;
    }
    let kv_keys: HashSet<&str> = kv.iter().map(KvOp::key).collect();
    for e in final_events {
        if !kv_keys.contains(e.key.as_str()) {
            continue;
        }
        let target = (e.key.as_str(), e.is_put.then_some(e.value.as_str()));
        let what = match written.get(&target) {
            Some(true) => continue,
            Some(false) => "only by operations that reported a definite failure",
            None => "by no client",
        };
        violations.push(Violation::new(
            ViolationKind::InventedWrite,
            format!(
                "final event log has {} of key {:?}{} at revision {}, written {what}",
                if e.is_put { "a put" } else { "a delete" },
                e.key,
                if e.is_put {
                    format!(" = {:?}", e.value)
                } else {
                    String::new()
                },
                e.revision
            ),
        ));
    }
    violations
}
