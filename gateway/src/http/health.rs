//! `/health`, `/livez`, `/readyz` and `/version`, answered as etcd 3.5 answers them, through the
//! gateway's own gRPC services (so a gateway whose storage cannot reach quorum reports it).
//!
//! - `/health`: `{"health":"true","reason":""}`; false (503) with the reason when an alarm is
//!   active (`ALARM NOSPACE`, `ALARM CORRUPT`), there is no leader (`RAFT NO LEADER`) or a
//!   linearizable read fails within a second (`RANGE ERROR:<error>`). `?exclude=NOSPACE`
//!   ignores that alarm; `?serializable=true` reads locally and skips the leader check.
//! - `/livez` (check `serializable_read`) and `/readyz` (`data_corruption`,
//!   `serializable_read`, `linearizable_read`, `non_learner`): `ok`, or 503 listing the failed
//!   checks; `?verbose` lists every check, `?exclude=<check>` skips one, `/<path>/<check>` runs
//!   one.
//! - `/version`: `{"etcdserver":"3.4.0","etcdcluster":"3.4.0"}` (the version the members
//!   report and its `X.Y.0`).

use super::json::{method_not_allowed, plain};
use super::local::{Local, request};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use metastore_proto::etcdserverpb::{
    AlarmRequest, AlarmType, RangeRequest, StatusRequest, alarm_request,
};
use std::time::Duration;

/// How long a health check waits for the cluster (etcd's health read timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub fn router() -> axum::Router<Local> {
    axum::Router::new()
        .route("/health", get_only(get(health)))
        .route("/version", get_only(get(version)))
        .route(
            "/livez",
            get_only(get(|s, q| probe(s, q, Probe::Live, None))),
        )
        .route(
            "/readyz",
            get_only(get(|s, q| probe(s, q, Probe::Ready, None))),
        )
        .route(
            "/livez/{check}",
            get_only(get(|s, q, Path(c): Path<String>| {
                probe(s, q, Probe::Live, Some(c))
            })),
        )
        .route(
            "/readyz/{check}",
            get_only(get(|s, q, Path(c): Path<String>| {
                probe(s, q, Probe::Ready, Some(c))
            })),
        )
}

fn get_only(route: MethodRouter<Local>) -> MethodRouter<Local> {
    route.fallback(|| async {
        let mut resp = method_not_allowed();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        resp
    })
}

/// The query's `name=value` pairs (a bare `name` has an empty value).
fn params(query: &Option<String>) -> Vec<(String, String)> {
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

async fn health(State(local): State<Local>, RawQuery(query): RawQuery) -> Response {
    let params = params(&query);
    let excluded: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let serializable = params
        .iter()
        .any(|(k, v)| k == "serializable" && v == "true");
    let reason: String = health_problem(&local, &excluded, serializable)
        .await
        .unwrap_or_default();
    let healthy = reason.is_empty();
    #[derive(serde::Serialize)]
    struct Health<'a> {
        health: &'a str,
        reason: &'a str,
    }
    let body = serde_json::to_string(&Health {
        health: if healthy { "true" } else { "false" },
        reason: &reason,
    })
    .unwrap_or_default();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut text = body;
    if !healthy {
        text.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Keeps the gateway's gRPC health (service `""`) in step with `/health`: NOT_SERVING while an
/// alarm is active or there is no leader (without `/health`'s read of a key, so a polling load
/// balancer adds no reads).
pub fn spawn_grpc_health(local: Local, reporter: tonic_health::server::HealthReporter) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let status = match leader_or_alarm_problem(&local).await {
                None => tonic_health::ServingStatus::Serving,
                Some(why) => {
                    tracing::debug!(reason = %why, "gRPC health: not serving");
                    tonic_health::ServingStatus::NotServing
                }
            };
            reporter.set_service_status("", status).await;
        }
    });
}

/// Why the cluster is unhealthy, if it is.
async fn health_problem(local: &Local, excluded: &[&str], serializable: bool) -> Option<String> {
    problem(local, excluded, serializable, true).await
}

/// Like [`health_problem`] without the read of a key.
async fn leader_or_alarm_problem(local: &Local) -> Option<String> {
    problem(local, &[], false, false).await
}

async fn problem(
    local: &Local,
    excluded: &[&str],
    serializable: bool,
    read: bool,
) -> Option<String> {
    // Alarms are read with a linearizable read too; when that fails the leader and read checks
    // below say why.
    let alarms = active_alarms(local).await;
    if let Ok(alarms) = &alarms {
        for alarm in alarms {
            let name = alarm.as_str_name();
            if !excluded.contains(&name) {
                return Some(format!("ALARM {name}"));
            }
        }
    }
    if !serializable && leader(local).await == Some(0) {
        return Some("RAFT NO LEADER".to_string());
    }
    if read && let Err(e) = read_health_key(local, serializable).await {
        return Some(format!("RANGE ERROR:{e}"));
    }
    alarms.err().map(|e| format!("ALARM ERROR:{e}"))
}

async fn active_alarms(local: &Local) -> Result<Vec<AlarmType>, String> {
    let req = AlarmRequest {
        action: alarm_request::AlarmAction::Get as i32,
        ..Default::default()
    };
    let mut client = local.maintenance();
    let call = client.alarm(request(req, ""));
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(resp)) => Ok(resp.into_inner().alarms.iter().map(|a| a.alarm()).collect()),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(_) => Err("context deadline exceeded".to_string()),
    }
}

/// The leader the serving member knows of (0: none), if it answers.
async fn leader(local: &Local) -> Option<u64> {
    let mut client = local.maintenance();
    let call = client.status(request(StatusRequest {}, ""));
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(resp)) => Some(resp.into_inner().leader),
        _ => None,
    }
}

/// Reads the key `health`. A refusal by auth (no token, no permission) is an answer from a
/// working cluster, as in etcd.
async fn read_health_key(local: &Local, serializable: bool) -> Result<(), String> {
    let req = RangeRequest {
        key: b"health".to_vec(),
        serializable,
        ..Default::default()
    };
    let mut client = local.kv();
    let call = client.range(request(req, ""));
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(s))
            if matches!(
                s.code(),
                tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
                    | tonic::Code::InvalidArgument
            ) =>
        {
            Ok(())
        }
        Ok(Err(s)) => Err(s.message().to_string()),
        Err(_) => Err("context deadline exceeded".to_string()),
    }
}

async fn version(State(local): State<Local>) -> Response {
    let mut client = local.maintenance();
    let call = client.status(request(StatusRequest {}, ""));
    let server = match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(resp)) => resp.into_inner().version,
        _ => String::new(),
    };
    let cluster = cluster_version(&server);
    let server = if server.is_empty() {
        "not_decided".to_string()
    } else {
        server
    };
    #[derive(serde::Serialize)]
    struct Versions {
        etcdserver: String,
        etcdcluster: String,
    }
    let body = serde_json::to_string(&Versions {
        etcdserver: server,
        etcdcluster: cluster,
    })
    .unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `X.Y.0` of a version, or `not_decided`.
fn cluster_version(server: &str) -> String {
    let mut parts = server.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) if !major.is_empty() => format!("{major}.{minor}.0"),
        _ => "not_decided".to_string(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Live,
    Ready,
}

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Probe::Live => "livez",
            Probe::Ready => "readyz",
        }
    }

    fn checks(self) -> &'static [&'static str] {
        match self {
            Probe::Live => &["serializable_read"],
            Probe::Ready => &[
                "data_corruption",
                "serializable_read",
                "linearizable_read",
                "non_learner",
            ],
        }
    }
}

async fn run_check(local: &Local, check: &str) -> Result<(), String> {
    match check {
        "serializable_read" => read_health_key(local, true).await,
        "linearizable_read" => read_health_key(local, false).await,
        "data_corruption" => match active_alarms(local).await {
            Ok(alarms) if alarms.contains(&AlarmType::Corrupt) => {
                Err("alarm activated: CORRUPT".to_string())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
        "non_learner" => {
            let mut client = local.maintenance();
            let call = client.status(request(StatusRequest {}, ""));
            match tokio::time::timeout(CHECK_TIMEOUT, call).await {
                Ok(Ok(resp)) if resp.get_ref().is_learner => {
                    Err("this member is a learner".to_string())
                }
                Ok(Ok(_)) => Ok(()),
                Ok(Err(s)) => Err(s.message().to_string()),
                Err(_) => Err("context deadline exceeded".to_string()),
            }
        }
        _ => Err(format!("unknown check {check}")),
    }
}

async fn probe(
    State(local): State<Local>,
    RawQuery(query): RawQuery,
    probe: Probe,
    only: Option<String>,
) -> Response {
    let params = params(&query);
    let verbose = params.iter().any(|(k, _)| k == "verbose");
    let excluded: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let checks: Vec<&str> = match &only {
        Some(one) if probe.checks().contains(&one.as_str()) => vec![one.as_str()],
        Some(_) => return plain(StatusCode::NOT_FOUND, "404 page not found\n"),
        None => probe.checks().to_vec(),
    };
    let mut lines = String::new();
    let mut failed = false;
    for check in checks {
        if excluded.contains(&check) {
            lines.push_str(&format!("[+]{check} excluded: ok\n"));
            continue;
        }
        match run_check(&local, check).await {
            Ok(()) => lines.push_str(&format!("[+]{check} ok\n")),
            Err(e) => {
                failed = true;
                lines.push_str(&format!("[-]{check} failed: {e}\n"));
            }
        }
    }
    let (status, text) = if failed {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{lines}{} check failed\n", probe.name()),
        )
    } else if verbose {
        (StatusCode::OK, format!("{lines}ok\n"))
    } else {
        (StatusCode::OK, "ok\n".to_string())
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_version_is_major_minor_zero() {
        assert_eq!(cluster_version("3.4.23"), "3.4.0");
        assert_eq!(cluster_version("3.5.0"), "3.5.0");
        assert_eq!(cluster_version(""), "not_decided");
    }

    #[test]
    fn query_params_with_and_without_values() {
        let p = params(&Some("verbose&exclude=NOSPACE".to_string()));
        assert_eq!(
            p,
            vec![
                ("verbose".to_string(), String::new()),
                ("exclude".to_string(), "NOSPACE".to_string())
            ]
        );
    }
}
