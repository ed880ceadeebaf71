//! Load generator for any etcd v3 endpoint, so MetaStore and etcd get the same load.
//!
//! `metastore-bench --endpoints http://127.0.0.1:2379 put --total 20000 --clients 16`
//! `metastore-bench --endpoints http://127.0.0.1:2379 range --total 20000 --clients 16`

mod otlp_sink;

use anyhow::Result;
use clap::{Parser, Subcommand};
use etcd_client::{Client, GetOptions};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "metastore-bench", about = "etcd v3 load generator")]
struct Args {
    /// Comma-separated client URLs.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    endpoints: String,
    /// Concurrent clients (each with its own connection).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests in total.
    #[arg(long, default_value_t = 20_000)]
    total: usize,
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Distinct keys written or read.
    #[arg(long, default_value_t = 10_000)]
    key_space: usize,
    /// Authenticate every client as `name:password` (auth on).
    #[arg(long)]
    user: Option<String>,
    /// Values like stored objects (half JSON-like text, half random letters and digits, as
    /// compressible as typical data) instead of one repeated byte.
    #[arg(long)]
    mixed_values: bool,
    /// Put and Range through etcd's JSON gateway (`/v3/kv/put`, `/v3/kv/range` over
    /// HTTP/1.1, one keep-alive connection per client) instead of gRPC.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Clone, Copy)]
enum Cmd {
    /// Puts of random keys.
    Put,
    /// Linearizable single-key gets (keys are written first).
    Range {
        /// Serializable reads instead.
        #[arg(long)]
        serializable: bool,
    },
    /// Event delivery: `watchers` watchers (100 per stream) on one key, then `--total` puts
    /// to it; reports delivery latency and delivered events per second.
    Watch {
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
    },
    /// Lease renewals: each client grants a lease and renews it over a keep-alive stream
    /// (`--total` renewals in all); reports renewals per second.
    Keepalive,
    /// Not a load: an OTLP/gRPC trace receiver on 127.0.0.1:`port` that accepts and counts
    /// spans (a stand-in collector for measuring what tracing costs); prints the count each
    /// 10 s.
    OtlpSink {
        #[arg(long)]
        port: u16,
    },
    /// Loads `--total` distinct keys (0 .. total, `--key-size` digits) in txns of 100 puts,
    /// the clients splitting the range; reports keys per second.
    Fill,
}

/// Writes keys `0..total` in txns of 100 puts from `clients` clients.
async fn fill(
    endpoints: &[String],
    clients: usize,
    total: usize,
    key_size: usize,
    value: &[u8],
) -> Result<()> {
    use etcd_client::{Txn, TxnOp};
    const BATCH: usize = 100;
    let start = Instant::now();
    let batches = total.div_ceil(BATCH);
    let mut tasks = Vec::new();
    for w in 0..clients.max(1) {
        let (endpoints, value) = (endpoints.to_vec(), value.to_vec());
        let clients = clients.max(1);
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&endpoints).await?;
            for b in (w..batches).step_by(clients) {
                let ops: Vec<TxnOp> = (b * BATCH..((b + 1) * BATCH).min(total))
                    .map(|i| TxnOp::put(key(i, key_size), value_of(i, &value), None))
                    .collect();
                c.txn(Txn::new().and_then(ops)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{total} keys in {elapsed:.1}s: {:.0} keys/s",
        total as f64 / elapsed
    );
    Ok(())
}

/// Whether `--mixed-values` is on, set once at start.
static MIXED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The value written for key `i`: `base`, or with `--mixed-values` a value of the same size
/// that is half JSON-like text and half random letters and digits.
fn value_of(i: usize, base: &[u8]) -> Vec<u8> {
    if !MIXED.get().copied().unwrap_or(false) {
        return base.to_vec();
    }
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut out = format!(
        r#"{{"kind":"Object","metadata":{{"name":"object-{i:08}","namespace":"default","labels":{{"app":"bench"}}}},"data":""#
    )
    .into_bytes();
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < base.len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(ALNUM[(x % ALNUM.len() as u64) as usize]);
    }
    out.truncate(base.len().max(1));
    out
}

/// `--user`, set once at start.
static USER: std::sync::OnceLock<Option<(String, String)>> = std::sync::OnceLock::new();

/// A client of `endpoints`, logged in as `--user` when given.
async fn connect(endpoints: &[String]) -> Result<Client> {
    let options = USER
        .get()
        .cloned()
        .flatten()
        .map(|(name, password)| etcd_client::ConnectOptions::new().with_user(name, password));
    Ok(Client::connect(endpoints, options).await?)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An HTTP/1.1 client for the JSON gateway (keeps its connection open between requests).
fn json_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().http1_only().build()?)
}

/// One JSON gateway call; anything but 200 is an error.
async fn json_call(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let resp = http
        .post(format!("{base}{path}"))
        .body(body.to_string())
        .send()
        .await?;
    let status = resp.status();
    let text = resp.bytes().await?;
    if status != reqwest::StatusCode::OK {
        anyhow::bail!("{path}: {status}: {}", String::from_utf8_lossy(&text));
    }
    Ok(())
}

fn key(i: usize, size: usize) -> Vec<u8> {
    let mut k = format!("{i:0size$}").into_bytes();
    k.truncate(size.max(1));
    k
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let user = match &args.user {
        Some(u) => {
            let (name, password) = u
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--user: expected name:password"))?;
            Some((name.to_string(), password.to_string()))
        }
        None => None,
    };
    let _ = USER.set(user);
    let _ = MIXED.set(args.mixed_values);
    let endpoints: Vec<String> = args.endpoints.split(',').map(String::from).collect();
    let value = vec![b'v'; args.val_size];
    if let Cmd::Range { .. } = args.cmd {
        let mut c = connect(&endpoints).await?;
        for i in 0..args.key_space.min(args.total) {
            c.put(key(i, args.key_size), value.clone(), None).await?;
        }
    }
    if let Cmd::OtlpSink { port } = args.cmd {
        return otlp_sink::serve(port).await;
    }
    if let Cmd::Fill = args.cmd {
        return fill(&endpoints, args.clients, args.total, args.key_size, &value).await;
    }
    if let Cmd::Keepalive = args.cmd {
        return keepalive_bench(&endpoints, args.clients, args.total).await;
    }
    if let Cmd::Watch { watchers } = args.cmd {
        return watch_bench(&endpoints, watchers, args.total, args.val_size).await;
    }
    let per_client = args.total / args.clients.max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.clients {
        let endpoints = endpoints.clone();
        let value = value.clone();
        let (cmd, key_size, key_space, json) = (args.cmd, args.key_size, args.key_space, args.json);
        tasks.push(tokio::spawn(async move {
            let mut c = if json {
                None
            } else {
                Some(connect(&endpoints).await?)
            };
            let http = json_client()?;
            let base = endpoints[w % endpoints.len()].clone();
            let mut lat = Vec::with_capacity(per_client);
            let mut seed = (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for _ in 0..per_client {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let k = key(
                    seed as usize % key_space.min(per_client * 1000).max(1),
                    key_size,
                );
                let t = Instant::now();
                match (cmd, c.as_mut()) {
                    (Cmd::Put, Some(c)) => {
                        c.put(k, value.clone(), None).await?;
                    }
                    (Cmd::Range { serializable }, Some(c)) => {
                        let opts = serializable.then(|| GetOptions::new().with_serializable());
                        c.get(k, opts).await?;
                    }
                    (Cmd::Put, None) => {
                        let body = serde_json::json!({"key": b64(&k), "value": b64(&value)});
                        json_call(&http, &base, "/v3/kv/put", &body).await?;
                    }
                    (Cmd::Range { serializable }, None) => {
                        let body =
                            serde_json::json!({"key": b64(&k), "serializable": serializable});
                        json_call(&http, &base, "/v3/kv/range", &body).await?;
                    }
                    (Cmd::Watch { .. } | Cmd::Keepalive | Cmd::Fill | Cmd::OtlpSink { .. }, _) => {
                        unreachable!("handled above")
                    }
                }
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(args.total);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{} requests, {} clients, {:.2}s: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        args.clients,
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

async fn watch_bench(
    endpoints: &[String],
    watchers: usize,
    puts: usize,
    val_size: usize,
) -> Result<()> {
    const PER_STREAM: usize = 100;
    let key = "bench-watch-key";
    let streams = watchers.div_ceil(PER_STREAM);
    let mut readers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(streams.max(1));
    for s in 0..streams {
        let n = PER_STREAM.min(watchers - s * PER_STREAM);
        let mut c = connect(endpoints).await?;
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            // Each create is answered with `created` before the next is sent.
            let mut ws = c.watch(key, None).await?;
            ws.message().await?;
            for _ in 1..n {
                ws.watch(key, None).await?;
                ws.message().await?;
            }
            ready.send(()).await?;
            let mut lat = Vec::with_capacity(n * puts);
            let mut last = Instant::now();
            while lat.len() < n * puts {
                let Some(r) = ws.message().await? else { break };
                let now = now_nanos();
                for e in r.events() {
                    let sent: u128 = e
                        .kv()
                        .and_then(|kv| kv.value_str().ok())
                        .and_then(|v| v.split(':').next())
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(now);
                    lat.push(Duration::from_nanos(now.saturating_sub(sent) as u64));
                }
                last = Instant::now();
            }
            anyhow::Ok((lat, last))
        }));
    }
    for _ in 0..streams {
        ready_rx.recv().await;
    }
    let mut c = connect(endpoints).await?;
    let pad = "x".repeat(val_size.saturating_sub(30));
    let start = Instant::now();
    for _ in 0..puts {
        c.put(key, format!("{}:{pad}", now_nanos()), None).await?;
    }
    let mut all = Vec::new();
    let mut end = start;
    for r in readers {
        let (lat, last) = r.await??;
        all.extend(lat);
        end = end.max(last);
    }
    all.sort();
    let elapsed = end.duration_since(start).as_secs_f64();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{watchers} watchers, {puts} puts: {} events in {elapsed:.2}s = {:.0} events/s, latency p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

async fn keepalive_bench(endpoints: &[String], clients: usize, total: usize) -> Result<()> {
    let per_client = total / clients.max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let endpoints = endpoints.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&endpoints).await?;
            let id = c.lease_grant(60, None).await?.id();
            let (mut keeper, mut answers) = c.lease_keep_alive(id).await?;
            let mut lat = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                keeper.keep_alive().await?;
                answers.message().await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let p = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{} renewals, {clients} clients: {:.0} renewals/s, p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        all.len() as f64 / elapsed,
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
