//! Load generator for any etcd v3 endpoint, so MetaStore and etcd get the same load.
//!
//! `metastore-bench --endpoints http://127.0.0.1:2379 put --total 20000 --clients 16`
//! `metastore-bench --endpoints http://127.0.0.1:2379 range --total 20000 --clients 16`

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
}

fn key(i: usize, size: usize) -> Vec<u8> {
    let mut k = format!("{i:0size$}").into_bytes();
    k.truncate(size.max(1));
    k
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let endpoints: Vec<String> = args.endpoints.split(',').map(String::from).collect();
    let value = vec![b'v'; args.val_size];
    if let Cmd::Range { .. } = args.cmd {
        let mut c = Client::connect(&endpoints, None).await?;
        for i in 0..args.key_space.min(args.total) {
            c.put(key(i, args.key_size), value.clone(), None).await?;
        }
    }
    let per_client = args.total / args.clients.max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.clients {
        let endpoints = endpoints.clone();
        let value = value.clone();
        let (cmd, key_size, key_space) = (args.cmd, args.key_size, args.key_space);
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&endpoints, None).await?;
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
                match cmd {
                    Cmd::Put => {
                        c.put(k, value.clone(), None).await?;
                    }
                    Cmd::Range { serializable } => {
                        let opts = serializable.then(|| GetOptions::new().with_serializable());
                        c.get(k, opts).await?;
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
