//! Lock holds and the counter incremented under the lock.

use crate::history::{CounterIncrement, LockHold, Time, fmt_time};
use crate::{Violation, ViolationKind};
use std::collections::HashMap;

fn show_hold(h: &LockHold) -> String {
    format!(
        "client {} held [{} .. {}) fencing {}",
        h.client,
        fmt_time(h.acquired),
        h.released.map_or_else(|| "end".to_string(), fmt_time),
        h.fencing
    )
}

fn show_inc(i: &CounterIncrement) -> String {
    format!(
        "client {} [{} .. {}] fencing {} wrote {}{}",
        i.client,
        fmt_time(i.invoke),
        fmt_time(i.complete),
        i.fencing,
        i.new_value,
        if i.acknowledged { "" } else { " (unknown)" }
    )
}

/// `LockOverlap`: holds of different clients overlap in time (a hold is `[acquired, released)`;
/// an unreleased hold lasts to the end of the history when `unreleased_until_end`, otherwise it
/// is not checked for overlap). `FencingNotIncreasing`: in acquisition order, fencing revisions
/// do not strictly increase.
pub fn check_locks(holds: &[LockHold], unreleased_until_end: bool) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut order: Vec<usize> = (0..holds.len()).collect();
    order.sort_by_key(|&i| (holds[i].acquired, holds[i].fencing));
    let end = |h: &LockHold| match h.released {
        Some(t) => Some(t),
        None if unreleased_until_end => Some(Time::MAX),
        None => None,
    };
    let mut active: Vec<usize> = Vec::new();
    for &i in &order {
        let h = &holds[i];
        active.retain(|&j| end(&holds[j]).is_some_and(|e| e > h.acquired));
        for &j in &active {
            if holds[j].client != h.client {
                violations.push(Violation::new(
                    ViolationKind::LockOverlap,
                    format!(
                        "two clients held the lock at once:\n    {}\n    {}",
                        show_hold(&holds[j]),
                        show_hold(h)
                    ),
                ));
            }
        }
        if end(h).is_some() {
            active.push(i);
        }
    }
    for pair in order.windows(2) {
        let (a, b) = (&holds[pair[0]], &holds[pair[1]]);
        if b.fencing <= a.fencing {
            violations.push(Violation::new(
                ViolationKind::FencingNotIncreasing,
                format!(
                    "a later acquisition has a fencing revision not above an earlier one:\n    \
                     {}\n    {}",
                    show_hold(a),
                    show_hold(b)
                ),
            ));
        }
    }
    violations
}

/// Counter increments, each "read n, write n + 1 under fencing token f"; the counter starts at 0.
///
/// `LostIncrement`: two acknowledged increments wrote the same value; acknowledged values
/// ordered by (fencing, invoke) go backwards; the final counter is below the highest
/// acknowledged value or below the number of acknowledged increments.
/// `InventedIncrement`: the final counter (or an acknowledged value) exceeds the number of
/// increments that could have taken effect; a non-zero final counter that no increment wrote.
/// `FencingNotIncreasing`: an acknowledged increment used a lower fencing revision than one
/// that had completed before it was invoked.
pub fn check_increments(incs: &[CounterIncrement], final_counter: Option<i64>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let acked: Vec<&CounterIncrement> = incs.iter().filter(|i| i.acknowledged).collect();
    let possible = i64::try_from(incs.len()).unwrap_or(i64::MAX);

    let mut by_value: HashMap<i64, &CounterIncrement> = HashMap::new();
    for &inc in &acked {
        if let Some(first) = by_value.insert(inc.new_value, inc) {
            violations.push(Violation::new(
                ViolationKind::LostIncrement,
                format!(
                    "two acknowledged increments wrote the same value {} (one was lost):\n    \
                     {}\n    {}",
                    inc.new_value,
                    show_inc(first),
                    show_inc(inc)
                ),
            ));
        }
    }

    let mut ordered = acked.clone();
    ordered.sort_by_key(|i| (i.fencing, i.invoke));
    for pair in ordered.windows(2) {
        if pair[1].new_value < pair[0].new_value {
            violations.push(Violation::new(
                ViolationKind::LostIncrement,
                format!(
                    "the counter went backwards under a later fencing token:\n    {}\n    {}",
                    show_inc(pair[0]),
                    show_inc(pair[1])
                ),
            ));
        }
    }

    // Fencing in real time: sweep by invoke over increments completed strictly before.
    let mut by_complete = acked.clone();
    by_complete.sort_by_key(|i| i.complete);
    let mut by_invoke = acked.clone();
    by_invoke.sort_by_key(|i| i.invoke);
    let mut done = 0;
    let mut highest: Option<&CounterIncrement> = None;
    for b in by_invoke {
        while done < by_complete.len() && by_complete[done].complete < b.invoke {
            let a = by_complete[done];
            if highest.is_none_or(|h| a.fencing > h.fencing) {
                highest = Some(a);
            }
            done += 1;
        }
        if let Some(a) = highest
            && b.fencing < a.fencing
        {
            violations.push(Violation::new(
                ViolationKind::FencingNotIncreasing,
                format!(
                    "an increment used a stale fencing revision after a newer one completed:\n    \
                     {}\n    {}",
                    show_inc(a),
                    show_inc(b)
                ),
            ));
        }
    }

    let max_acked = acked.iter().map(|i| i.new_value).max();
    let n_acked = i64::try_from(acked.len()).unwrap_or(i64::MAX);
    if let Some(m) = max_acked
        && m > possible
    {
        violations.push(Violation::new(
            ViolationKind::InventedIncrement,
            format!(
                "an acknowledged increment wrote {m}, but only {possible} increments were attempted"
            ),
        ));
    }
    let Some(f) = final_counter else {
        return violations;
    };
    if let Some(m) = max_acked
        && f < m
    {
        violations.push(Violation::new(
            ViolationKind::LostIncrement,
            format!("final counter {f} is below the acknowledged value {m}"),
        ));
    }
    if f < n_acked {
        violations.push(Violation::new(
            ViolationKind::LostIncrement,
            format!("final counter {f} is below the {n_acked} acknowledged increments"),
        ));
    }
    if f > possible {
        violations.push(Violation::new(
            ViolationKind::InventedIncrement,
            format!(
                "final counter {f} exceeds the {possible} increments attempted ({n_acked} \
                 acknowledged, {} unknown)",
                possible - n_acked
            ),
        ));
    }
    if f != 0 && !incs.iter().any(|i| i.new_value == f) {
        violations.push(Violation::new(
            ViolationKind::InventedIncrement,
            format!("final counter {f} is a value no increment wrote"),
        ));
    }
    violations
}
