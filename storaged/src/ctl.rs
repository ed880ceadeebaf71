//! `metastore-ctl`: offline tools on snapshot files and data dirs (etcd's `etcdutl`), with
//! etcdutl's command and flag names.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "metastore-ctl",
    about = "Offline tools for MetaStore snapshot files"
)]
struct Cli {
    /// Output format: simple, table, json or fields.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        default_value = "simple"
    )]
    write_out: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot files (made by `etcdctl snapshot save` from MetaStore or etcd).
    #[command(subcommand)]
    Snapshot(Snapshot),
}

#[derive(Subcommand)]
enum Snapshot {
    /// Hash, revision, number of records and size of a snapshot file.
    Status { file: PathBuf },
    /// Makes the data dir of a member of a new cluster from a snapshot file (MetaStore's or a
    /// real etcd's); every member of the new cluster restores the same file.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct RestoreArgs {
    file: PathBuf,
    /// Where the member's data goes (must not exist) [default: data/<engine>/<name>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The member's name, as given to storaged's --name.
    #[arg(long, default_value = "default")]
    name: String,
    /// The new cluster's members, as given to storaged.
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// This member's peer URLs (must match its entry in --initial-cluster).
    #[arg(long, default_value = "http://localhost:2380")]
    initial_advertise_peer_urls: String,
    /// The engine the member will run: memory or rocksdb.
    #[arg(long, default_value = "rocksdb")]
    engine: String,
    /// Restore a file without the SHA-256 trailer (a backend database copied by hand).
    #[arg(long)]
    skip_hash_check: bool,
}

fn restore(a: RestoreArgs) -> Result<(), String> {
    let engine: metastore_storaged::engine::EngineKind = a.engine.parse()?;
    let data_dir = a
        .data_dir
        .unwrap_or_else(|| PathBuf::from("data").join(engine.as_str()).join(&a.name));
    let options = metastore_storaged::backup::restore::RestoreOptions {
        file: a.file,
        data_dir: data_dir.clone(),
        name: a.name,
        initial_cluster: a.initial_cluster,
        initial_cluster_token: a.initial_cluster_token,
        initial_advertise_peer_urls: a.initial_advertise_peer_urls,
        engine,
        skip_hash_check: a.skip_hash_check,
    };
    let r = metastore_storaged::backup::restore::restore(&options)?;
    eprintln!(
        "restored snapshot into {} ({engine}): revision {}, compacted at {}, {} records, {} leases, {} alarms, {} auth records",
        data_dir.display(),
        r.revision,
        r.compacted,
        r.records,
        r.leases,
        r.alarms,
        r.auth_records
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Snapshot(Snapshot::Status { file }) => {
            metastore_storaged::backup::status::status(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))
                .and_then(|s| s.render(&cli.write_out))
                .map(|out| print!("{out}"))
        }
        Command::Snapshot(Snapshot::Restore(args)) => restore(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
