//! Start-up plumbing shared by `metastore-storaged` and `metastore-gateway`.
//!
//! Settings come from flags, then `METASTORE_*` environment variables (clap does both), then
//! the YAML file named by `--config` (keys are the flag names), then built-in defaults. Every
//! failure here is one line of text for the operator; the binaries print it and exit non-zero.

pub mod rpc;

use serde::de::DeserializeOwned;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;

/// Reads a YAML config file; no file means all defaults.
pub fn load_yaml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, String> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| {
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

/// Parses a comma-separated list of `http://host:port` URLs into socket addresses.
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
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            format!("--{flag} {url}: TLS is not supported yet (use http://)")
        } else {
            format!("--{flag} {url}: expected http://host:port")
        }
    })?;
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

/// Logs to stderr; `RUST_LOG` wins over `level`.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // openraft logs every election step at info; its warnings (a peer unreachable, a
        // snapshot or append that timed out) are what an operator needs to see when a member
        // does not catch up, so they stay on unless asked otherwise (RUST_LOG or an explicit
        // openraft directive).
        let spec = if level.contains("openraft") {
            level.to_string()
        } else {
            format!("{level},openraft=warn,openraft::core::heartbeat=error")
        };
        tracing_subscriber::EnvFilter::new(spec)
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
        assert!(parse_urls("x", "https://127.0.0.1:2379").is_err());
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
