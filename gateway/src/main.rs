use clap::Parser;
use metastore_gateway::config::Args;
use std::process::ExitCode;

fn main() -> ExitCode {
    metastore_cli::fail_stop();
    let cfg = match Args::parse().resolve() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("metastore-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    metastore_cli::init_logging(&cfg.log_level);
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
