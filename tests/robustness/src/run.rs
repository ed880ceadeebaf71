//! One run: a cluster, the workload, one fault kind injected several times, healing, the final
//! reads, the member convergence check and the history checker.

use crate::cluster::Cluster;
use crate::faults::{FaultKind, FaultOutcome, FaultPlan, run_faults};
use crate::net::Net;
use crate::workload::{self, Ctx, KV_PREFIX, Recorder};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub struct RunSpec {
    pub engine: String,
    pub kind: FaultKind,
    pub short: bool,
    pub rounds: Option<usize>,
    pub catchup_mb: Option<u64>,
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    pub net: Option<Arc<Net>>,
    pub seed: u64,
}

pub struct RunResult {
    pub engine: String,
    pub kind: FaultKind,
    pub dir: PathBuf,
    pub faults: usize,
    pub kv_ops: usize,
    pub kv_checked: usize,
    pub watch_events: usize,
    pub lock_holds: usize,
    pub increments: usize,
    /// Checker violations and the harness's own (member stuck, no leader, ...).
    pub violations: Vec<String>,
    pub notes: Vec<String>,
    pub report: String,
    pub seconds: f64,
}

impl RunResult {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

const KV_CLIENTS: usize = 6;
const LOCK_CLIENTS: usize = 3;
const WATCHERS: u64 = 2;
const KEYS: usize = 8;
const ELECTION_TIMEOUT_MS: u64 = 500;

fn plan(spec: &RunSpec) -> FaultPlan {
    let rounds = spec.rounds.unwrap_or(match (spec.short, spec.kind) {
        (true, FaultKind::SnapshotCatchup) => 1,
        (true, FaultKind::BounceLeader) => 4,
        (true, _) => 2,
        (false, FaultKind::SnapshotCatchup) => 2,
        (false, FaultKind::MemberChurn) => 3,
        (false, _) => 6,
    });
    let hold = match spec.kind {
        // Several election timeouts, so a new leader is elected meanwhile.
        FaultKind::StopLeader => Duration::from_millis(ELECTION_TIMEOUT_MS * 5),
        FaultKind::PartitionLeader
        | FaultKind::PartitionMinority
        | FaultKind::PartitionAsymmetric => Duration::from_secs(3),
        _ => Duration::from_secs(2),
    };
    let mb = spec.catchup_mb.unwrap_or(if spec.short { 20 } else { 200 });
    FaultPlan {
        kind: spec.kind,
        rounds,
        hold,
        long_hold: Duration::from_secs(8),
        promote_timeout: Duration::from_secs(if spec.short { 15 } else { 60 }),
        gap: Duration::from_millis(if spec.short { 1500 } else { 3000 }),
        catchup_bytes: mb * 1_000_000,
        catchup_timeout: Duration::from_secs(if spec.short { 60 } else { 300 }),
    }
}

/// Undoes every fault: heals partitions, resumes paused members, starts what is down.
async fn heal(c: &mut Cluster, violations: &mut Vec<String>) {
    if let Some(net) = c.net()
        && let Err(e) = net.heal()
    {
        violations.push(format!("harness: healing the network failed: {e:#}"));
    }
    for i in c.members.clone() {
        if c.is_stopped(i) {
            let _ = c.resume_member(i);
        }
        if !c.is_running(i)
            && let Err(e) = c.start_member(i).await
        {
            violations.push(format!("{} did not start again: {e:#}", c.slots[i].name));
        }
    }
    for g in 0..c.gateway_count() {
        if !c.gateway_running(g)
            && let Err(e) = c.start_gateway(g).await
        {
            violations.push(format!("gateway g{} did not start again: {e:#}", g + 1));
        }
    }
}

/// Every member reaches the same revision with the same HashKV within `timeout`; otherwise
/// the members that lag or differ.
async fn converge(c: &Cluster, timeout: Duration) -> Vec<String> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let mut statuses = Vec::new();
        let mut silent = Vec::new();
        for &i in &c.members {
            match c.status(i).await {
                Ok(s) => statuses.push((i, s)),
                Err(e) => silent.push(format!("{} does not answer ({e:#})", c.slots[i].name)),
            }
        }
        let top = statuses.iter().map(|(_, s)| s.revision).max().unwrap_or(0);
        if silent.is_empty() && statuses.iter().all(|(_, s)| s.revision == top) {
            let mut hashes = Vec::new();
            for (i, _) in &statuses {
                match c.hash_kv(*i, top).await {
                    Ok((h, _)) => hashes.push((*i, h)),
                    Err(e) => silent.push(format!("{} HashKV failed: {e:#}", c.slots[*i].name)),
                }
            }
            if silent.is_empty() {
                if hashes.windows(2).all(|w| w[0].1 == w[1].1) {
                    return Vec::new();
                }
                if Instant::now() > deadline {
                    let shown: Vec<String> = hashes
                        .iter()
                        .map(|(i, h)| format!("{}={h:#010x}", c.slots[*i].name))
                        .collect();
                    return vec![format!(
                        "members differ: HashKV at revision {top}: {}",
                        shown.join(", ")
                    )];
                }
            }
        }
        if Instant::now() > deadline {
            let mut found = silent;
            for (i, s) in &statuses {
                if s.revision < top {
                    found.push(format!(
                        "member stuck: {} at revision {} (raft index {}, applied {}) while \
                         others reached {top}, {} s after healing",
                        c.slots[*i].name,
                        s.revision,
                        s.raft_index,
                        s.applied,
                        timeout.as_secs()
                    ));
                }
            }
            if found.is_empty() {
                found.push(format!(
                    "members did not agree on a revision within {} s",
                    timeout.as_secs()
                ));
            }
            return found;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn run(spec: RunSpec) -> Result<RunResult> {
    let began = Instant::now();
    std::fs::create_dir_all(&spec.dir)?;
    let plan = plan(&spec);
    let snapshot_count = if spec.kind == FaultKind::SnapshotCatchup {
        "100"
    } else {
        "1000"
    };
    let storaged_args = vec!["--snapshot-count".to_string(), snapshot_count.to_string()];
    // bounce-leader: a slow disk on the leader, so followers hold entries the leader's own log
    // has not synced when it is killed.
    let storaged_env = match spec.kind {
        FaultKind::BounceLeader => vec![(
            "METASTORE_FAILPOINT_LEADER_SYNC_DELAY_MS".to_string(),
            "300".to_string(),
        )],
        _ => Vec::new(),
    };
    let mut c = Cluster::start(
        &spec.engine,
        &spec.dir,
        &spec.bin_dir,
        spec.net.clone(),
        3,
        &[0, 1, 2],
        spec.kind == FaultKind::MemberChurn,
        storaged_args,
        storaged_env,
        ELECTION_TIMEOUT_MS,
    )
    .await?;
    c.wait_leader(Duration::from_secs(30))
        .await
        .context("the new cluster elected no leader")?;

    let rec = Arc::new(Recorder::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Ctx {
        rec: rec.clone(),
        gateways: c.gateway_urls(),
        keys: workload::kv_keys(KEYS),
        stop: stop_rx,
        watch_target: Arc::new(AtomicI64::new(0)),
    };
    let mut clients = Vec::new();
    for w in 0..KV_CLIENTS {
        let seed = spec.seed.wrapping_add(w as u64);
        clients.push(tokio::spawn(workload::kv_worker(ctx.clone(), w, seed)));
    }
    for w in 0..LOCK_CLIENTS {
        let seed = spec.seed.wrapping_add(100 + w as u64);
        clients.push(tokio::spawn(workload::lock_worker(ctx.clone(), w, seed)));
    }
    let mut watchers = Vec::new();
    for w in 0..WATCHERS {
        watchers.push(tokio::spawn(workload::watch_worker(ctx.clone(), w)));
    }

    let mut violations = Vec::new();
    let mut outcome = match run_faults(&mut c, &plan, || false).await {
        Ok(o) => o,
        Err(e) => {
            let mut o = FaultOutcome::default();
            o.violations
                .push(format!("harness: fault injection stopped: {e:#}"));
            o
        }
    };
    tokio::time::sleep(plan.gap).await;
    heal(&mut c, &mut violations).await;
    if let Err(e) = c.wait_leader(Duration::from_secs(30)).await {
        violations.push(format!("no leader 30 s after healing every fault: {e:#}"));
    }
    let _ = stop_tx.send(true);
    for t in clients {
        if tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .is_err()
        {
            violations.push("harness: a client did not stop within 30 s".to_string());
        }
    }

    // Final state: every key read (recorded), the counter, every event from revision 1.
    let url = c.gateway_url(0);
    if let Err(e) = workload::final_reads(&rec, &url, &ctx.keys).await {
        violations.push(format!("final reads failed: {e:#}"));
    }
    let (final_counter, revision) = match workload::final_counter(&url).await {
        Ok((v, r)) => (Some(v), r),
        Err(e) => {
            violations.push(format!("final counter read failed: {e:#}"));
            (None, 0)
        }
    };
    ctx.watch_target.store(revision.max(1), Ordering::Relaxed);
    for t in watchers {
        if tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .is_err()
        {
            violations.push("harness: a watcher did not stop within 30 s".to_string());
        }
    }
    let final_events = match workload::read_all_events(&url, KV_PREFIX, revision).await {
        Ok(e) => e,
        Err(e) => {
            violations.push(format!("final watch from revision 1 failed: {e:#}"));
            Vec::new()
        }
    };
    let catchup = if spec.short { 30 } else { 120 };
    violations.extend(converge(&c, Duration::from_secs(catchup)).await);
    drop(c);

    let mut history = rec.take();
    history.final_events = final_events;
    history.final_counter = final_counter;
    let path = spec.dir.join("history.json");
    if let Err(e) = history.save(&path) {
        eprintln!("robustness: could not save {}: {e}", path.display());
    }
    let report = metastore_checker::check(&history);
    let mut all = std::mem::take(&mut outcome.violations);
    all.extend(violations);
    all.extend(report.violations.iter().map(|v| v.to_string()));
    let mut notes = outcome.notes;
    let fenced = rec.fenced_out.load(Ordering::Relaxed);
    if fenced > 0 {
        notes.push(format!(
            "{fenced} increments refused by their fencing compare (lock lost in time)"
        ));
    }
    if !report.undecided.is_empty() {
        notes.push(format!(
            "{} keys undecided by the linearizability search",
            report.undecided.len()
        ));
    }
    Ok(RunResult {
        engine: spec.engine,
        kind: spec.kind,
        dir: spec.dir,
        faults: outcome.injected,
        kv_ops: history.kv.len(),
        kv_checked: report.kv.ops_checked,
        watch_events: report.watch_events,
        lock_holds: report.lock_holds,
        increments: report.increments,
        violations: all,
        notes,
        report: report.to_string(),
        seconds: began.elapsed().as_secs_f64(),
    })
}
