//! How each binary runs once its flags are read: the Tokio runtime, logs and traces set up
//! inside it (the trace exporter's gRPC client needs the runtime), the server, and what is
//! still buffered sent before the process exits.

use crate::logging::LogFormat;
use crate::telemetry::Otel;
use std::future::Future;
use std::process::ExitCode;

/// What a binary logs and traces.
#[derive(Clone, Debug)]
pub struct Observe {
    pub log_level: String,
    pub log_format: LogFormat,
    pub otel: Option<Otel>,
}

/// Runs `server` to its end; `name` prefixes the error printed when it fails.
pub fn run<F>(name: &'static str, observe: &Observe, server: F) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tracer = match &observe.otel {
        None => None,
        Some(otel) => {
            let _in_runtime = runtime.enter();
            match crate::telemetry::start(otel, name) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("{name}: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    crate::logging::init(&observe.log_level, observe.log_format, tracer);
    let outcome = runtime.block_on(server);
    crate::telemetry::flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
