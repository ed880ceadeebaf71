//! Health probe for container health checks (a minimal image has no shell and no curl): asks
//! the gRPC health service at URL (default http://127.0.0.1:2379) for the server's overall
//! status and exits 0 if it answers SERVING, 1 otherwise (with the reason on stderr). Works
//! against a gateway's client port and a storaged member's storage port; both answer
//! NOT_SERVING without a leader or with an alarm raised.
//!
//! usage: metastore-probe [URL]

use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let url = match std::env::args().nth(1) {
        Some(arg) if arg == "-h" || arg == "--help" => {
            println!("usage: metastore-probe [URL]  (default http://127.0.0.1:2379)");
            return ExitCode::SUCCESS;
        }
        Some(url) => url,
        None => "http://127.0.0.1:2379".to_owned(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("metastore-probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(check(url)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("metastore-probe: {reason}");
            ExitCode::FAILURE
        }
    }
}

async fn check(url: String) -> Result<(), String> {
    let channel = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("bad URL {url}: {e}"))?
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let response = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|status| format!("{url}: {}", status.message()))?;
    match ServingStatus::try_from(response.into_inner().status) {
        Ok(ServingStatus::Serving) => Ok(()),
        Ok(other) => Err(format!("{url} is {}", other.as_str_name())),
        Err(_) => Err(format!("{url} answered an unknown status")),
    }
}
