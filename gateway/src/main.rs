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
    metastore_cli::logging::init(&cfg.log_level, cfg.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("metastore-gateway: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(metastore_gateway::server::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metastore-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
