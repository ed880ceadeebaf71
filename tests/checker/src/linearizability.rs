//! Linearizability of the KV history, one register per key.
//!
//! The search is the Wing–Gong algorithm with Lowe's memoisation (the one porcupine uses): the
//! call and return events of one key's operations, sorted by time, form a doubly linked list.
//! Walking it, any call met before the first remaining return may be linearized next; taking
//! one removes its call and return from the list and continues from the head; meeting a return
//! whose operation is still pending means the choices so far cannot work, so the last choice is
//! undone. Each (set of linearized operations, register state) reached is remembered so no
//! configuration is explored twice.
//!
//! Operations that definitely failed are dropped; gets with an unknown outcome are dropped;
//! writes with an unknown outcome never return (their return event is at +infinity) and accept
//! any result, so they may take effect at any point after their invocation, or effectively not
//! at all (linearized after everything else).

use crate::history::{KvInput, KvOp, KvOutput, Time, fmt_op};
use crate::{Violation, ViolationKind};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Clone, Debug)]
pub struct LinearizabilityOptions {
    /// Search steps allowed per key before the key is reported as undecided.
    pub max_steps_per_key: u64,
    /// Memory the search memo may use per key before the key is reported as undecided.
    pub max_cache_bytes_per_key: usize,
    /// Drop writes with an unknown outcome whose effect nothing could have observed (see
    /// [`check_kv`]); sound, and it keeps timeouts from blowing up the search.
    pub prune_unobservable_unknown_writes: bool,
}

impl Default for LinearizabilityOptions {
    fn default() -> Self {
        LinearizabilityOptions {
            max_steps_per_key: 20_000_000,
            max_cache_bytes_per_key: 512 << 20,
            prune_unobservable_unknown_writes: true,
        }
    }
}

/// A key whose search ran out of budget: neither proved linearizable nor refuted.
#[derive(Clone, Debug, Serialize)]
pub struct Undecided {
    pub key: String,
    pub ops: usize,
    pub steps: u64,
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct KvOutcome {
    /// Operations in the history.
    pub ops_total: usize,
    /// Operations that took part in the search.
    pub ops_checked: usize,
    pub dropped_failed: usize,
    pub dropped_unknown_gets: usize,
    /// Unknown-outcome writes dropped because no operation could have observed them.
    pub pruned_unknown_writes: usize,
    /// Operations whose output does not match their input (harness bug); ignored.
    pub malformed: usize,
    pub keys: usize,
    pub search_steps: u64,
    pub violations: Vec<Violation>,
    pub undecided: Vec<Undecided>,
}

/// The counters of a [`KvOutcome`], for the report.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct KvCounts {
    pub ops_total: usize,
    pub ops_checked: usize,
    pub dropped_failed: usize,
    pub dropped_unknown_gets: usize,
    pub pruned_unknown_writes: usize,
    pub malformed: usize,
    pub keys: usize,
    pub search_steps: u64,
}

impl KvOutcome {
    pub fn counts(&self) -> KvCounts {
        KvCounts {
            ops_total: self.ops_total,
            ops_checked: self.ops_checked,
            dropped_failed: self.dropped_failed,
            dropped_unknown_gets: self.dropped_unknown_gets,
            pruned_unknown_writes: self.pruned_unknown_writes,
            malformed: self.malformed,
            keys: self.keys,
            search_steps: self.search_steps,
        }
    }
}

/// Checks every key's history as a register whose initial value is "absent".
///
/// Pruning (when enabled): a write with an unknown outcome that would leave state `s` (a put of
/// `v`: `Some(v)`; a delete: absent) is dropped when no acknowledged operation that completed
/// after its invocation could tell `s` apart: no get returning `s`, no delete reporting that
/// the key existed (for a put) or did not (for a delete), and no compare-and-swap at all. Any
/// linearization in which such a write takes effect is followed directly by a blind write (or
/// nothing), so removing it yields a linearization too.
pub fn check_kv(ops: &[KvOp], opts: &LinearizabilityOptions) -> KvOutcome {
    let mut outcome = KvOutcome {
        ops_total: ops.len(),
        ..KvOutcome::default()
    };
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        by_key.entry(op.key()).or_default().push(i);
    }
    outcome.keys = by_key.len();
    for (key, indices) in by_key {
        let model = KeyModel::build(ops, &indices, opts, &mut outcome);
        outcome.ops_checked += model.ops.len();
        if model.ops.is_empty() {
            continue;
        }
        let result = search(&model, opts);
        outcome.search_steps += result.steps;
        match result.verdict {
            Verdict::Linearizable => {}
            Verdict::Undecided(reason) => outcome.undecided.push(Undecided {
                key: key.to_string(),
                ops: model.ops.len(),
                steps: result.steps,
                reason,
            }),
            Verdict::NotLinearizable { prefix, stuck } => outcome.violations.push(Violation::new(
                ViolationKind::NotLinearizable,
                explain(key, ops, &model, &prefix, stuck),
            )),
        }
    }
    outcome
}

/// Interned register value: 0 = absent, n = `values[n - 1]`.
type State = u32;

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Read observing a state.
    Get(State),
    /// Blind write (acknowledged or unknown put; unknown delete writes 0).
    Write(State),
    /// Acknowledged delete: whether it reported deleting the key (`None`: impossible count).
    Delete(Option<bool>),
    /// Compare-and-swap; `succeeded` None = unknown outcome.
    Cas {
        expect: State,
        new: State,
        succeeded: Option<bool>,
    },
}

impl Step {
    fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Get(v) => (v == state).then_some(state),
            Step::Write(v) => Some(v),
            Step::Delete(Some(deleted)) => (deleted == (state != 0)).then_some(0),
            Step::Delete(None) => None,
            Step::Cas {
                expect,
                new,
                succeeded,
            } => match succeeded {
                Some(true) => (state == expect).then_some(new),
                Some(false) => (state != expect).then_some(state),
                None => Some(if state == expect { new } else { state }),
            },
        }
    }
}

struct ModelOp {
    /// Index into the full history.
    index: usize,
    invoke: Time,
    /// `Time::MAX` for unknown outcomes.
    complete: Time,
    step: Step,
}

struct KeyModel {
    ops: Vec<ModelOp>,
    values: Vec<String>,
}

impl KeyModel {
    fn build<'a>(
        all: &'a [KvOp],
        indices: &[usize],
        opts: &LinearizabilityOptions,
        outcome: &mut KvOutcome,
    ) -> KeyModel {
        let mut interned: HashMap<&'a str, State> = HashMap::new();
        let mut values: Vec<String> = Vec::new();
        let mut intern = |v: Option<&'a String>| -> State {
            match v {
                None => 0,
                Some(v) => *interned.entry(v.as_str()).or_insert_with(|| {
                    values.push(v.clone());
                    State::try_from(values.len()).unwrap_or(State::MAX)
                }),
            }
        };
        let mut ops = Vec::new();
        for &index in indices {
            let op = &all[index];
            let unknown = op.output.is_unknown();
            let step = match (&op.input, &op.output) {
                (_, KvOutput::Failed { .. }) => {
                    outcome.dropped_failed += 1;
                    continue;
                }
                (KvInput::Get { .. }, KvOutput::Unknown { .. }) => {
                    outcome.dropped_unknown_gets += 1;
                    continue;
                }
                (KvInput::Get { .. }, KvOutput::Get { value, .. }) => {
                    Step::Get(intern(value.as_ref()))
                }
                (KvInput::Put { value, .. }, KvOutput::Put { .. } | KvOutput::Unknown { .. }) => {
                    Step::Write(intern(Some(value)))
                }
                (KvInput::Delete { .. }, KvOutput::Unknown { .. }) => Step::Write(0),
                (KvInput::Delete { .. }, KvOutput::Delete { deleted, .. }) => {
                    Step::Delete(match deleted {
                        0 => Some(false),
                        1 => Some(true),
                        _ => None,
                    })
                }
                (KvInput::Cas { expect, new, .. }, KvOutput::Cas { succeeded, .. }) => Step::Cas {
                    expect: intern(expect.as_ref()),
                    new: intern(Some(new)),
                    succeeded: Some(*succeeded),
                },
                (KvInput::Cas { expect, new, .. }, KvOutput::Unknown { .. }) => Step::Cas {
                    expect: intern(expect.as_ref()),
                    new: intern(Some(new)),
                    succeeded: None,
                },
                _ => {
                    outcome.malformed += 1;
                    continue;
                }
            };
            ops.push(ModelOp {
                index,
                invoke: op.invoke,
                complete: if unknown { Time::MAX } else { op.complete },
                step,
            });
        }
        if opts.prune_unobservable_unknown_writes {
            let before = ops.len();
            prune_unobservable(&mut ops, all);
            outcome.pruned_unknown_writes += before - ops.len();
        }
        KeyModel { ops, values }
    }

    fn show(&self, state: State) -> String {
        match state {
            0 => "<absent>".to_string(),
            n => self
                .values
                .get(n as usize - 1)
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
        }
    }
}

/// Drops unknown-outcome blind writes nothing could have observed (see [`check_kv`]).
fn prune_unobservable(ops: &mut Vec<ModelOp>, all: &[KvOp]) {
    // Latest completion of an operation observing each kind of state.
    let mut get_seen: HashMap<State, Time> = HashMap::new();
    let mut any_cas: Option<Time> = None;
    let mut delete_found: Option<Time> = None;
    let mut delete_missing: Option<Time> = None;
    let later = |slot: &mut Option<Time>, t: Time| *slot = Some(slot.map_or(t, |s| s.max(t)));
    for op in ops.iter() {
        match op.step {
            Step::Get(v) => {
                let slot = get_seen.entry(v).or_insert(op.complete);
                *slot = (*slot).max(op.complete);
            }
            Step::Cas { .. } => later(&mut any_cas, op.complete),
            Step::Delete(Some(true)) => later(&mut delete_found, op.complete),
            Step::Delete(Some(false)) => later(&mut delete_missing, op.complete),
            Step::Delete(None) | Step::Write(_) => {}
        }
    }
    ops.retain(|op| {
        let Step::Write(s) = op.step else {
            return true;
        };
        if !all[op.index].output.is_unknown() {
            return true;
        }
        let deletes = if s == 0 { delete_missing } else { delete_found };
        let observed = [get_seen.get(&s).copied(), any_cas, deletes]
            .into_iter()
            .flatten()
            .max();
        // Observers that completed strictly before the invocation cannot follow it.
        observed.is_some_and(|t| t >= op.invoke)
    });
}

enum Verdict {
    Linearizable,
    /// `prefix`: the longest sequence of operations (model indices) that could be linearized;
    /// `stuck`: the operation that could not be placed after it.
    NotLinearizable {
        prefix: Vec<usize>,
        stuck: usize,
    },
    Undecided(String),
}

struct SearchResult {
    verdict: Verdict,
    steps: u64,
}

const NIL: usize = usize::MAX;

/// The call/return event list, with O(1) unlink and relink (dancing links).
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Operation of each event node.
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// Return node of each operation.
    ret: Vec<usize>,
    head: usize,
}

impl Events {
    fn new(ops: &[ModelOp]) -> Events {
        let mut entries: Vec<(Time, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            entries.push((op.invoke, false, i));
            // An operation cannot return before it was invoked; clamp bad clocks.
            entries.push((op.complete.max(op.invoke), true, i));
        }
        // At equal times calls sort before returns: such operations count as concurrent.
        entries.sort_unstable();
        let n = entries.len();
        let head = n;
        let mut ev = Events {
            next: (1..=n).map(|i| if i < n { i } else { NIL }).collect(),
            prev: (0..n).map(|i| if i == 0 { head } else { i - 1 }).collect(),
            op: entries.iter().map(|e| e.2).collect(),
            is_call: entries.iter().map(|e| !e.1).collect(),
            ret: vec![NIL; ops.len()],
            head,
        };
        ev.next.push(if n > 0 { 0 } else { NIL });
        ev.prev.push(NIL);
        for (node, e) in entries.iter().enumerate() {
            if e.1 {
                ev.ret[e.2] = node;
            }
        }
        ev
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Removes a call and its return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.ret[self.op[call]]);
    }

    /// Undoes the matching [`Events::lift`]; lifts must be undone last-in first-out.
    fn unlift(&mut self, call: usize) {
        self.relink(self.ret[self.op[call]]);
        self.relink(call);
    }
}

/// Hasher for keys that already are well-mixed 64-bit hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b) ^ (self.0 >> 56);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Memo of visited (linearized set, state) configurations, bitsets stored in one arena.
struct Memo {
    words: usize,
    arena: Vec<u64>,
    states: Vec<State>,
    /// Next entry with the same hash (`u32::MAX` = none).
    chain: Vec<u32>,
    index: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
}

impl Memo {
    fn new(words: usize) -> Memo {
        Memo {
            words,
            arena: Vec::new(),
            states: Vec::new(),
            chain: Vec::new(),
            index: HashMap::default(),
        }
    }

    fn bytes(&self) -> usize {
        self.arena.len() * 8 + self.states.len() * 8 + self.index.len() * 16
    }

    /// Records the configuration; false if it was already there.
    fn insert(&mut self, hash: u64, bits: &[u64], state: State) -> bool {
        let mut at = self.index.get(&hash).copied().unwrap_or(u32::MAX);
        let first = at;
        while at != u32::MAX {
            let i = at as usize;
            if self.states[i] == state && &self.arena[i * self.words..(i + 1) * self.words] == bits
            {
                return false;
            }
            at = self.chain[i];
        }
        let Ok(entry) = u32::try_from(self.states.len()) else {
            return true;
        };
        self.arena.extend_from_slice(bits);
        self.states.push(state);
        self.chain.push(first);
        self.index.insert(hash, entry);
        true
    }
}

fn search(model: &KeyModel, opts: &LinearizabilityOptions) -> SearchResult {
    let ops = &model.ops;
    let mut events = Events::new(ops);
    let words = ops.len().div_ceil(64);
    let mut bits = vec![0u64; words];
    let zobrist: Vec<u64> = (0..ops.len() as u64).map(mix).collect();
    let mut set_hash = 0u64;
    let mut memo = Memo::new(words);
    let mut state: State = 0;
    // Linearized calls, with the state before each.
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut stuck: Option<usize> = None;
    let mut steps = 0u64;
    let mut entry = events.first();
    while events.first() != NIL {
        steps += 1;
        if steps > opts.max_steps_per_key {
            return SearchResult {
                verdict: Verdict::Undecided(format!(
                    "step budget of {} exhausted",
                    opts.max_steps_per_key
                )),
                steps,
            };
        }
        let op = events.op[entry];
        if events.is_call[entry] {
            if let Some(next_state) = ops[op].step.apply(state) {
                bits[op / 64] |= 1 << (op % 64);
                let h = set_hash ^ zobrist[op];
                if memo.insert(h ^ mix(u64::from(next_state) ^ 0x5151), &bits, next_state) {
                    if memo.bytes() > opts.max_cache_bytes_per_key {
                        return SearchResult {
                            verdict: Verdict::Undecided(format!(
                                "memo exceeded {} MiB",
                                opts.max_cache_bytes_per_key >> 20
                            )),
                            steps,
                        };
                    }
                    stack.push((entry, state));
                    set_hash = h;
                    state = next_state;
                    events.lift(entry);
                    entry = events.first();
                    continue;
                }
                bits[op / 64] &= !(1 << (op % 64));
            }
            entry = events.next[entry];
        } else {
            // A pending operation's return: it had to be linearized by now. Backtrack.
            if stuck.is_none() || stack.len() > best.len() {
                best = stack.iter().map(|&(call, _)| events.op[call]).collect();
                stuck = Some(op);
            }
            let Some((call, before)) = stack.pop() else {
                return SearchResult {
                    verdict: Verdict::NotLinearizable {
                        prefix: best,
                        stuck: stuck.unwrap_or(op),
                    },
                    steps,
                };
            };
            let undone = events.op[call];
            bits[undone / 64] &= !(1 << (undone % 64));
            set_hash ^= zobrist[undone];
            state = before;
            events.unlift(call);
            entry = events.next[call];
        }
    }
    SearchResult {
        verdict: Verdict::Linearizable,
        steps,
    }
}

/// The violation detail: where the search got stuck, with a small window of operations.
fn explain(key: &str, all: &[KvOp], model: &KeyModel, prefix: &[usize], stuck: usize) -> String {
    let ops = &model.ops;
    let mut out = format!(
        "key {key:?}: {} operations are not linearizable; the longest linearizable prefix has {} \
         operations, after which this one has no valid linearization point:\n    {}",
        ops.len(),
        prefix.len(),
        fmt_op(&all[ops[stuck].index])
    );
    let mut state = 0;
    let mut states = Vec::with_capacity(prefix.len());
    for &i in prefix {
        state = ops[i].step.apply(state).unwrap_or(state);
        states.push(state);
    }
    let shown = prefix.len().saturating_sub(4);
    out.push_str(&format!(
        "\n  last linearized operations (value after each; {shown} earlier not shown):"
    ));
    for (&i, &s) in prefix.iter().zip(&states).skip(shown) {
        out.push_str(&format!(
            "\n    {}   -> {}",
            fmt_op(&all[ops[i].index]),
            model.show(s)
        ));
    }
    let (lo, hi) = (ops[stuck].invoke, ops[stuck].complete);
    let mut concurrent: Vec<usize> = (0..ops.len())
        .filter(|&i| i != stuck && ops[i].invoke <= hi && ops[i].complete >= lo)
        .collect();
    // Acknowledged operations first: unknown ones overlap everything after their invocation.
    concurrent.sort_by_key(|&i| (ops[i].complete == Time::MAX, ops[i].invoke));
    let total = concurrent.len();
    out.push_str(&format!(
        "\n  operations overlapping it ({total}{}):",
        if total > 8 { ", first 8" } else { "" }
    ));
    for &i in concurrent.iter().take(8) {
        let mark = if prefix.contains(&i) {
            "linearized"
        } else {
            "pending"
        };
        out.push_str(&format!("\n    {} [{mark}]", fmt_op(&all[ops[i].index])));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, invoke: Time, complete: Time, input: KvInput, output: KvOutput) -> KvOp {
        KvOp {
            client,
            invoke,
            complete,
            input,
            output,
        }
    }
    fn put(v: &str) -> KvInput {
        KvInput::Put {
            key: "k".into(),
            value: v.into(),
        }
    }
    fn get() -> KvInput {
        KvInput::Get { key: "k".into() }
    }
    fn got(v: Option<&str>) -> KvOutput {
        KvOutput::Get {
            value: v.map(String::from),
            revision: 0,
        }
    }
    fn ok() -> KvOutput {
        KvOutput::Put { revision: 0 }
    }
    fn unknown() -> KvOutput {
        KvOutput::Unknown {
            error: "timeout".into(),
        }
    }

    fn run(ops: &[KvOp]) -> KvOutcome {
        check_kv(ops, &LinearizabilityOptions::default())
    }

    #[test]
    fn concurrent_reads_may_see_either_value() {
        let h = vec![
            op(1, 0, 10, put("a"), ok()),
            op(1, 20, 50, put("b"), ok()),
            op(2, 25, 30, get(), got(Some("b"))),
            op(3, 31, 40, get(), got(Some("a"))),
        ];
        // Reader 2 saw b, so b was applied before 30; reader 3 then must not see a.
        assert_eq!(run(&h).violations.len(), 1);
        let h2 = vec![
            op(1, 0, 10, put("a"), ok()),
            op(1, 20, 50, put("b"), ok()),
            op(2, 25, 30, get(), got(Some("a"))),
            op(3, 31, 40, get(), got(Some("b"))),
        ];
        assert!(run(&h2).violations.is_empty());
    }

    #[test]
    fn unknown_write_can_apply_late_or_never() {
        let late = vec![
            op(1, 0, 10, put("a"), ok()),
            op(2, 5, 6, put("x"), unknown()),
            op(3, 20, 30, get(), got(Some("a"))),
            op(3, 40, 50, get(), got(Some("x"))),
        ];
        let out = run(&late);
        assert!(out.violations.is_empty(), "{:?}", out.violations);
        assert_eq!(out.pruned_unknown_writes, 0);
        let never = vec![
            op(1, 0, 10, put("a"), ok()),
            op(2, 5, 6, put("x"), unknown()),
            op(3, 20, 30, get(), got(Some("a"))),
        ];
        let out = run(&never);
        assert!(out.violations.is_empty());
        assert_eq!(out.pruned_unknown_writes, 1);
        // Without pruning the search must find "never" by itself.
        let opts = LinearizabilityOptions {
            prune_unobservable_unknown_writes: false,
            ..Default::default()
        };
        assert!(check_kv(&never, &opts).violations.is_empty());
    }

    #[test]
    fn unknown_write_cannot_apply_before_invoke() {
        let h = vec![
            op(3, 0, 10, get(), got(Some("x"))),
            op(2, 20, 21, put("x"), unknown()),
        ];
        assert_eq!(run(&h).violations.len(), 1);
    }

    #[test]
    fn cas_and_delete() {
        let cas = |e: Option<&str>, n: &str| KvInput::Cas {
            key: "k".into(),
            expect: e.map(String::from),
            new: n.into(),
        };
        let cas_out = |s: bool| KvOutput::Cas {
            succeeded: s,
            revision: 0,
        };
        let del = KvInput::Delete { key: "k".into() };
        let deleted = |n: i64| KvOutput::Delete {
            deleted: n,
            revision: 0,
        };
        let good = vec![
            op(1, 0, 10, cas(None, "a"), cas_out(true)),
            op(2, 5, 15, cas(None, "b"), cas_out(false)),
            op(1, 20, 30, del.clone(), deleted(1)),
            op(2, 31, 40, del.clone(), deleted(0)),
            op(1, 41, 50, cas(Some("a"), "c"), cas_out(false)),
            op(1, 51, 60, get(), got(None)),
        ];
        assert!(run(&good).violations.is_empty());
        let bad = vec![
            op(1, 0, 10, cas(None, "a"), cas_out(true)),
            op(2, 11, 15, cas(None, "b"), cas_out(true)),
        ];
        assert_eq!(run(&bad).violations.len(), 1);
        // An unknown CAS explains a later read only if its condition held.
        let unknown_cas = vec![
            op(1, 0, 10, put("a"), ok()),
            op(2, 11, 12, cas(Some("a"), "b"), unknown()),
            op(3, 20, 30, get(), got(Some("b"))),
        ];
        assert!(run(&unknown_cas).violations.is_empty());
        let impossible_cas = vec![
            op(1, 0, 10, put("z"), ok()),
            op(2, 11, 12, cas(Some("a"), "b"), unknown()),
            op(3, 20, 30, get(), got(Some("b"))),
        ];
        assert_eq!(run(&impossible_cas).violations.len(), 1);
    }

    #[test]
    fn budget_reports_undecided() {
        let mut h = Vec::new();
        for i in 0..30 {
            h.push(op(i, i, i + 1000, put(&format!("v{i}")), ok()));
        }
        h.push(op(99, 2000, 2001, get(), got(Some("nope"))));
        let opts = LinearizabilityOptions {
            max_steps_per_key: 1000,
            ..Default::default()
        };
        let out = check_kv(&h, &opts);
        assert!(out.violations.is_empty());
        assert_eq!(out.undecided.len(), 1);
    }
}
