//! Start-up plumbing shared by `metastore-storaged` and `metastore-gateway`.
//!
//! Settings come from flags, then `METASTORE_*` environment variables (clap does both), then
//! etcd's `ETCD_*` variables for flags named as etcd's ([`etcd_env`]), then
//! the YAML file named by `--config` (keys are the flag names), then built-in defaults. Every
//! failure here is one line of text for the operator; the binaries print it and exit non-zero.

pub mod etcd_env;
pub mod grpc_metrics;
pub mod logging;
pub mod process;
pub mod rpc;
pub mod self_signed;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;

/// The settings of a YAML config file (keys are flag names, etcd's config-file keys among
/// them) as command-line arguments for `cmd`: `[binary, --key=value, ...]`, lists joined with
/// commas. A key that is one of etcd's settings MetaStore has no flag for is skipped with a
/// warning on stderr (an etcd config file works as it is); any other unknown key is an error.
pub fn config_file_args(path: &Path, cmd: &clap::Command) -> Result<Vec<OsString>, String> {
    let invalid =
        |why: String| format!("invalid config file {}: {}", path.display(), one_line(&why));
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let mut out = vec![OsString::from(cmd.get_name())];
    let map = match doc {
        serde_yaml_ng::Value::Null => return Ok(out),
        serde_yaml_ng::Value::Mapping(m) => m,
        _ => return Err(invalid("expected a mapping of settings".into())),
    };
    let known: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            return Err(invalid(format!("setting names are strings, not {key:?}")));
        };
        if key == "config" || !known.contains(&key) {
            if etcd_env::ETCD_FLAGS.contains(&key) || ETCD_FILE_ONLY.contains(&key) {
                eprintln!(
                    "{}: config file key {key:?} is an etcd setting with no meaning here; ignored",
                    cmd.get_name()
                );
                continue;
            }
            return Err(invalid(format!("unknown setting {key:?}")));
        }
        let value = match value {
            serde_yaml_ng::Value::Null => continue,
            serde_yaml_ng::Value::Sequence(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            other => scalar(&other),
        }
        .ok_or_else(|| invalid(format!("{key}: expected a value or a list of values")))?;
        out.push(format!("--{key}={value}").into());
    }
    Ok(out)
}

/// etcd config-file keys that are not flags (nested TLS sections and the like).
const ETCD_FILE_ONLY: &[&str] = &[
    "client-transport-security",
    "peer-transport-security",
    "self-signed-cert-validity",
];

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses a config file's settings into `T` (`None`: no file, all unset).
pub fn load_config<T: clap::Parser + Default>(path: Option<&Path>) -> Result<T, String> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let args = config_file_args(path, &T::command())?;
    T::try_parse_from(args).map_err(|e| {
        format!(
            "invalid config file {}: {}",
            path.display(),
            one_line(&e.to_string())
        )
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a request is a gRPC call (its content type), not a plain HTTP one.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A URL to listen on: its address, and whether it is `https://`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Parses a comma-separated list of `http://` or `https://host:port` URLs to listen on.
pub fn parse_listen_urls(flag: &str, value: &str) -> Result<Vec<Listen>, String> {
    let urls: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let addrs = parse_urls(flag, value)?;
    Ok(addrs
        .into_iter()
        .zip(urls)
        .map(|(addr, url)| Listen {
            addr,
            tls: url.starts_with("https://"),
        })
        .collect())
}

/// Parses a comma-separated list of `http://` or `https://host:port` URLs into socket
/// addresses.
pub fn parse_urls(flag: &str, value: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for url in value.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        out.push(parse_url(flag, url)?);
    }
    if out.is_empty() {
        return Err(format!("--{flag} is empty"));
    }
    Ok(out)
}

fn parse_url(flag: &str, url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("--{flag} {url}: expected http://host:port or https://host:port"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err(format!("--{flag} {url}: a URL here takes no path"));
    }
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("--{flag} {url}: {e}"))?
        .next()
        .ok_or_else(|| format!("--{flag} {url}: host does not resolve"))
}

/// Binds every address, failing with one clear line (for example when a port is in use).
pub async fn bind_all(flag: &str, addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, String> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (--{flag}): {e}"))?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// Makes every panic stop the process (after logging it): a member or gateway never keeps
/// running with a task that died half way through changing its state. Called first thing by
/// both binaries; tests, which need unwinding, don't call it.
pub fn fail_stop() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(%info, "panic: stopping the process");
        std::process::abort();
    }));
}

/// A Go duration (`500ms`, `30s`, `5m0s`, `1h30m`, `1.5h`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(s.parse().ok()?));
    }
    // Go's form: one or more decimal numbers, each with a unit (`1h30m`, `5m0s`, `1.5h`).
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let (num, tail) = rest.split_at(num_len);
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etcd_config_file_becomes_arguments() {
        let cmd = clap::Command::new("storaged")
            .arg(clap::Arg::new("name").long("name"))
            .arg(clap::Arg::new("heartbeat-interval").long("heartbeat-interval"))
            .arg(clap::Arg::new("listen-peer-urls").long("listen-peer-urls"))
            .arg(clap::Arg::new("pre").long("experimental-initial-corrupt-check"));
        let dir = std::env::temp_dir().join(format!("cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("etcd.yaml");
        let yaml = "name: infra0\nheartbeat-interval: 100\nwal-dir:\nenable-v2: false\n\
            listen-peer-urls: [http://10.0.0.1:2380, http://10.0.0.1:2480]\n\
            experimental-initial-corrupt-check: true\n\
            client-transport-security:\n  cert-file: /x\n";
        std::fs::write(&file, yaml).expect("write");
        let args = config_file_args(&file, &cmd).expect("args");
        assert_eq!(
            args,
            [
                "storaged",
                "--name=infra0",
                "--heartbeat-interval=100",
                "--listen-peer-urls=http://10.0.0.1:2380,http://10.0.0.1:2480",
                "--experimental-initial-corrupt-check=true",
            ]
        );
        std::fs::write(&file, "no-such-setting: 1\n").expect("write");
        let err = config_file_args(&file, &cmd).expect_err("unknown key");
        assert!(err.contains("unknown setting \"no-such-setting\""), "{err}");
        std::fs::write(&file, "name: {a: 1}\n").expect("write");
        assert!(config_file_args(&file, &cmd).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn durations_in_go_form() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m0s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "h", "5x", "-1s", "1h-"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls() {
        let a = parse_urls("x", "http://127.0.0.1:2379,http://127.0.0.1:2380/").expect("ok");
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].port(), 2380);
        assert!(parse_urls("x", "127.0.0.1:2379").is_err());
        let tls =
            parse_listen_urls("x", "https://127.0.0.1:2379,http://127.0.0.1:2380").expect("ok");
        assert_eq!((tls[0].tls, tls[1].tls), (true, false));
        assert!(parse_urls("x", "ftp://127.0.0.1:2379").is_err());
        assert!(parse_urls("x", "").is_err());
        assert!(parse_urls("x", "http://127.0.0.1:notaport").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("5d"), None);
    }
}
