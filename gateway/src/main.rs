use clap::{CommandFactory, Parser};
use metastore_gateway::config::Args;
use std::process::ExitCode;

fn main() -> ExitCode {
    metastore_cli::fail_stop();
    // etcd's ETCD_* variables set the flags MetaStore shares with etcd.
    let argv = metastore_cli::etcd_env::args_with_etcd_env(&Args::command());
    let cfg = match Args::parse_from(argv).resolve() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("metastore-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let observe = cfg.observe.clone();
    metastore_cli::process::run(
        "metastore-gateway",
        &observe,
        metastore_gateway::server::run(cfg),
    )
}
