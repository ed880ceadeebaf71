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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
