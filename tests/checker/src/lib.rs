//! Checks client histories recorded by fault-injection runs against what an etcd v3 store
//! promises: linearizable KV operations, one revision per write, watch guarantees, mutual
//! exclusion and fencing of locks, no lost or invented counter increments.
//!
//! ```no_run
//! use metastore_checker::{History, check};
//! # fn main() -> std::io::Result<()> {
//! let history = History::load(std::path::Path::new("history.json"))?;
//! let report = check(&history);
//! println!("{report}");
//! assert!(report.is_ok());
//! # Ok(())
//! # }
//! ```

pub mod history;
pub mod linearizability;
pub mod locks;
pub mod revisions;
pub mod watch;

pub use history::{
    CounterIncrement, History, Key, KvInput, KvOp, KvOutput, LockHold, Time, Value, WatchEvent,
    WatchItem, WatchLog,
};
pub use linearizability::{LinearizabilityOptions, Undecided};

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViolationKind {
    /// A key's operations admit no linearization.
    NotLinearizable,
    /// Two acknowledged writes reported the same revision.
    DuplicateRevision,
    /// A revision went backwards in real time.
    RevisionOrder,
    /// An acknowledged write is not in the final event log as written.
    LostWrite,
    /// The final event log has a write no client (or only a failed one) made.
    InventedWrite,
    /// A watch stream delivered an event of a lower revision after a higher one.
    WatchOrder,
    /// A watch stream delivered the same event twice.
    WatchDuplicate,
    /// A revision's events were split across responses or delivered partially.
    WatchNotAtomic,
    /// A watch stream skipped events in its range (or claimed compaction it did not have).
    WatchGap,
    /// A watch stream delivered an event that does not exist, differs, or is out of range.
    WatchWrongEvent,
    /// An event arrived at or below a revision already reported by a progress notification.
    ProgressAhead,
    /// Two clients held the lock at once.
    LockOverlap,
    /// Fencing revisions did not strictly increase.
    FencingNotIncreasing,
    /// An acknowledged counter increment was lost.
    LostIncrement,
    /// The counter moved more than the increments explain.
    InventedIncrement,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub detail: String,
}

impl Violation {
    pub fn new(kind: ViolationKind, detail: impl Into<String>) -> Violation {
        Violation {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub linearizability: LinearizabilityOptions,
    /// A lock hold never released lasts to the end of the history (true), or is left out of
    /// the overlap check (false; e.g. when the holder may have crashed and its lease expired).
    pub unreleased_lock_held_until_end: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            linearizability: LinearizabilityOptions::default(),
            unreleased_lock_held_until_end: true,
        }
    }
}

/// What one check looked at and how many violations it found.
#[derive(Serialize, Clone, Debug)]
pub struct CheckSummary {
    pub name: &'static str,
    /// Items checked (operations, streams, holds, increments).
    pub checked: usize,
    pub violations: usize,
}

#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub kv: linearizability::KvCounts,
    pub watch_streams: usize,
    pub watch_events: usize,
    pub lock_holds: usize,
    pub increments: usize,
    pub checks: Vec<CheckSummary>,
    /// Keys whose linearizability could not be decided within the budget (not violations).
    pub undecided: Vec<Undecided>,
    pub violations: Vec<Violation>,
}

impl Report {
    /// No violations (undecided keys do not count).
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn count(&self, kind: ViolationKind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }

    pub fn has(&self, kind: ViolationKind) -> bool {
        self.count(kind) > 0
    }

    pub fn kinds(&self) -> Vec<ViolationKind> {
        let mut kinds: Vec<ViolationKind> = self.violations.iter().map(|v| v.kind).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// Violations of one kind shown by `Display` before summarising the rest.
const SHOWN_PER_KIND: usize = 10;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kv = &self.kv;
        writeln!(
            f,
            "kv: {} ops on {} keys, {} checked ({} failed and {} unknown gets dropped, {} \
             unobservable unknown writes pruned, {} malformed), {} search steps",
            kv.ops_total,
            kv.keys,
            kv.ops_checked,
            kv.dropped_failed,
            kv.dropped_unknown_gets,
            kv.pruned_unknown_writes,
            kv.malformed,
            kv.search_steps
        )?;
        writeln!(
            f,
            "watch: {} streams, {} events; locks: {} holds; counter: {} increments",
            self.watch_streams, self.watch_events, self.lock_holds, self.increments
        )?;
        for c in &self.checks {
            let verdict = if c.violations == 0 {
                "ok".to_string()
            } else {
                format!("{} VIOLATIONS", c.violations)
            };
            writeln!(f, "  {:<16} {:>8} checked  {verdict}", c.name, c.checked)?;
        }
        for u in &self.undecided {
            writeln!(
                f,
                "UNDECIDED key {:?} ({} ops, {} steps): {}",
                u.key, u.ops, u.steps, u.reason
            )?;
        }
        for kind in self.kinds() {
            let all: Vec<&Violation> = self.violations.iter().filter(|v| v.kind == kind).collect();
            for v in all.iter().take(SHOWN_PER_KIND) {
                writeln!(f, "{v}")?;
            }
            if all.len() > SHOWN_PER_KIND {
                writeln!(f, "{kind:?}: ... and {} more", all.len() - SHOWN_PER_KIND)?;
            }
        }
        if self.is_ok() {
            write!(f, "RESULT: ok")?;
            if !self.undecided.is_empty() {
                write!(f, " ({} keys undecided)", self.undecided.len())?;
            }
        } else {
            write!(f, "RESULT: {} violations", self.violations.len())?;
        }
        Ok(())
    }
}

/// Runs every check with default options.
pub fn check(history: &History) -> Report {
    check_with(history, &CheckOptions::default())
}

pub fn check_with(history: &History, opts: &CheckOptions) -> Report {
    let mut checks = Vec::new();
    let mut violations = Vec::new();
    let mut record = |name, checked, found: Vec<Violation>| {
        checks.push(CheckSummary {
            name,
            checked,
            violations: found.len(),
        });
        violations.extend(found);
    };

    let kv = linearizability::check_kv(&history.kv, &opts.linearizability);
    let counts = kv.counts();
    record("linearizable", kv.ops_checked, kv.violations);
    let acked = history
        .kv
        .iter()
        .filter(|op| op.output.revision().is_some())
        .count();
    record("revisions", acked, revisions::check_revisions(&history.kv));
    record(
        "final-events",
        history.final_events.len(),
        revisions::check_final_events(&history.kv, &history.watches, &history.final_events),
    );
    let (watch_stats, found) = watch::check_watches(&history.watches, &history.final_events);
    record("watch", watch_stats.streams, found);
    record(
        "locks",
        history.locks.len(),
        locks::check_locks(&history.locks, opts.unreleased_lock_held_until_end),
    );
    record(
        "counter",
        history.increments.len(),
        locks::check_increments(&history.increments, history.final_counter),
    );

    Report {
        kv: counts,
        watch_streams: watch_stats.streams,
        watch_events: watch_stats.events,
        lock_holds: history.locks.len(),
        increments: history.increments.len(),
        checks,
        undecided: kv.undecided,
        violations,
    }
}
