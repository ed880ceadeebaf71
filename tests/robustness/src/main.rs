//! `metastore-robustness`: runs MetaStore (3 storaged members, 3 gateways) under concurrent
//! etcd clients while injecting one kind of fault at a time, records every request and answer,
//! and checks the history with `metastore-checker` (linearizability, watch guarantees, lock
//! safety, lost writes) plus the harness's own checks (a leader after healing, every member
//! at the same revision and HashKV). See docs/robustness.md.

mod cluster;
mod faults;
mod net;
mod run;
mod workload;

use anyhow::{Context, Result, bail};
use clap::Parser;
use faults::FaultKind;
use run::{RunResult, RunSpec};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "metastore-robustness",
    about = "Fault-injection robustness run of MetaStore with a history checker"
)]
struct Args {
    /// Short mode (CI): 2 faults per kind, 20 MB for snapshot-catchup.
    #[arg(long)]
    short: bool,
    /// memory, rocksdb or both.
    #[arg(long, default_value = "both")]
    engine: String,
    /// Fault kind to run (repeat the flag for several; default: every kind).
    #[arg(long = "fault", value_enum)]
    faults: Vec<FaultKind>,
    /// Faults injected per run (default: 2 short, 6 full; fewer for the slow kinds).
    #[arg(long)]
    rounds: Option<usize>,
    /// MB written while a follower is down in snapshot-catchup [default: 20 short, 200 full].
    #[arg(long)]
    catchup_mb: Option<u64>,
    /// Directory for logs, data and histories [default: a new directory under $TMPDIR].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Directory with metastore-storaged and metastore-gateway [default:
    /// $CARGO_TARGET_DIR/release, else this executable's directory].
    #[arg(long, env = "METASTORE_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Do not use network namespaces (partition faults are then skipped).
    #[arg(long)]
    no_netns: bool,
    /// Keep the run directory even when every run passed.
    #[arg(long)]
    keep: bool,
    /// Seed of the clients' random choices [default: from the clock].
    #[arg(long)]
    seed: Option<u64>,
}

fn bin_dir(args: &Args) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = &args.bin_dir {
        candidates.push(d.clone());
    } else {
        if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
            candidates.push(PathBuf::from(t).join("release"));
        }
        if let Some(d) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            candidates.push(d);
        }
    }
    for d in &candidates {
        if d.join("metastore-storaged").exists() && d.join("metastore-gateway").exists() {
            return Ok(d.clone());
        }
    }
    bail!(
        "metastore-storaged and metastore-gateway not found in {:?}: build them first \
         (cargo build --release -p metastore-storaged -p metastore-gateway) or set METASTORE_BIN_DIR",
        candidates
    )
}

fn engines(arg: &str) -> Result<Vec<String>> {
    match arg {
        "both" => Ok(vec!["memory".into(), "rocksdb".into()]),
        "memory" | "rocksdb" => Ok(vec![arg.to_string()]),
        other => bail!("unknown engine {other:?}: memory, rocksdb or both"),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn summary_table(results: &[RunResult], skipped: &[(String, FaultKind, String)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| engine | fault | faults injected | kv ops (checked) | watch events | lock holds | increments | violations | time |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {} | {:.0} s |",
            r.engine,
            r.kind.name(),
            r.faults,
            r.kv_ops,
            r.kv_checked,
            r.watch_events,
            r.lock_holds,
            r.increments,
            r.violations.len(),
            r.seconds
        );
    }
    for (engine, kind, why) in skipped {
        let _ = writeln!(
            s,
            "| {engine} | {} | SKIPPED: {why} | | | | | | |",
            kind.name()
        );
    }
    s
}

async fn main_inner(args: Args) -> Result<i32> {
    let bin_dir = bin_dir(&args)?;
    let engines = engines(&args.engine)?;
    let kinds: Vec<FaultKind> = if args.faults.is_empty() {
        FaultKind::ALL.to_vec()
    } else {
        args.faults.clone()
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let base = match &args.run_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("metastore-robustness-{seed}")),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;

    let net = if args.no_netns {
        eprintln!("robustness: --no-netns: members on loopback; partition faults are SKIPPED");
        None
    } else {
        match net::Net::setup() {
            Ok(n) => Some(Arc::new(n)),
            Err(e) => {
                eprintln!(
                    "robustness: network namespaces unavailable ({e:#}); members run on \
                     loopback and the partition faults (partition-leader, partition-minority, \
                     partition-asymmetric) are SKIPPED"
                );
                None
            }
        }
    };
    eprintln!(
        "robustness: {} mode, engines {:?}, faults {:?}, seed {seed}, binaries {}, run dir {}",
        if args.short { "short" } else { "full" },
        engines,
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        bin_dir.display(),
        base.display()
    );

    let mut results: Vec<RunResult> = Vec::new();
    let mut skipped = Vec::new();
    let mut errors = Vec::new();
    let mut interrupted = false;
    'outer: for engine in &engines {
        for &kind in &kinds {
            if kind.needs_netns() && net.is_none() {
                eprintln!(
                    "robustness: {engine} {}: SKIPPED (needs network namespaces)",
                    kind.name()
                );
                skipped.push((engine.clone(), kind, "no network namespaces".to_string()));
                continue;
            }
            let dir = base.join(format!("{engine}-{}", kind.name()));
            eprintln!("robustness: === {engine} {} ===", kind.name());
            let spec = RunSpec {
                engine: engine.clone(),
                kind,
                short: args.short,
                rounds: args.rounds,
                catchup_mb: args.catchup_mb,
                dir: dir.clone(),
                bin_dir: bin_dir.clone(),
                net: net.clone(),
                seed,
            };
            let outcome = tokio::select! {
                r = run::run(spec) => r,
                _ = shutdown_signal() => {
                    interrupted = true;
                    break 'outer;
                }
            };
            if let Some(n) = &net {
                n.kill_ns_processes();
                let _ = n.heal();
            }
            match outcome {
                Ok(r) => {
                    eprintln!("{}", r.report);
                    for n in &r.notes {
                        eprintln!("note: {n}");
                    }
                    for v in r.violations.iter().take(20) {
                        eprintln!("VIOLATION: {v}");
                    }
                    eprintln!(
                        "robustness: {engine} {}: {} faults, {} kv ops, {} violations, {:.0} s",
                        kind.name(),
                        r.faults,
                        r.kv_ops,
                        r.violations.len(),
                        r.seconds
                    );
                    if r.passed() && !args.keep {
                        let _ = std::fs::remove_dir_all(&r.dir);
                    } else {
                        // Data dirs can be large (snapshot-catchup); logs and history stay.
                        let _ = std::fs::remove_dir_all(r.dir.join("data"));
                    }
                    results.push(r);
                }
                Err(e) => {
                    eprintln!("robustness: {engine} {}: HARNESS ERROR: {e:#}", kind.name());
                    errors.push(format!("{engine} {}: {e:#}", kind.name()));
                }
            }
        }
    }
    if let Some(n) = &net {
        n.kill_ns_processes();
    }
    drop(net);

    let table = summary_table(&results, &skipped);
    let mut summary = String::new();
    let _ = writeln!(summary, "seed {seed}\n\n{table}");
    for r in &results {
        for n in &r.notes {
            let _ = writeln!(summary, "- {} {}: {n}", r.engine, r.kind.name());
        }
    }
    for r in results.iter().filter(|r| !r.passed()) {
        let _ = writeln!(
            summary,
            "\n## {} {}: {} violations ({})\n",
            r.engine,
            r.kind.name(),
            r.violations.len(),
            r.dir.display()
        );
        for v in &r.violations {
            let _ = writeln!(summary, "- {}", v.replace('\n', "\n  "));
        }
    }
    for e in &errors {
        let _ = writeln!(summary, "\nHARNESS ERROR {e}");
    }
    let _ = std::fs::write(base.join("summary.md"), &summary);
    println!("\n{table}");
    let failed = results.iter().filter(|r| !r.passed()).count();
    if interrupted {
        eprintln!("robustness: interrupted; run dir {}", base.display());
        return Ok(130);
    }
    if failed > 0 || !errors.is_empty() {
        println!(
            "robustness: FAILED: {failed} runs with violations, {} harness errors; logs, \
             histories and summary.md in {}",
            errors.len(),
            base.display()
        );
        return Ok(1);
    }
    println!(
        "robustness: ok: {} runs, 0 violations{}",
        results.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} skipped)", skipped.len())
        }
    );
    if args.keep {
        println!("robustness: run dir {}", base.display());
    } else {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(0)
}

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("robustness: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match runtime.block_on(main_inner(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("robustness: {e:#}");
            2
        }
    };
    // Client tasks still holding connections are dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
