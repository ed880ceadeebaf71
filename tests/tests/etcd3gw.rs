//! python `etcd3gw` (the OpenStack client of etcd's JSON gateway, from PyPI) runs its own
//! functional test suite (put, get, delete, prefixes, sort, txn-based replace and create,
//! leases, watch, locks) against MetaStore, unchanged. `scripts/deps.sh --test` installs it
//! into the Python environment named by `METASTORE_PYTHON` (default
//! `~/.cache/metastore-py/bin/python`).

use anyhow::{Context, Result, bail};
use metastore_tests::{Deployment, matrix};
use std::path::PathBuf;

matrix!(etcd3gw_suite_passes);

fn python() -> PathBuf {
    std::env::var_os("METASTORE_PYTHON").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/metastore-py/bin/python")
        },
        PathBuf::from,
    )
}

async fn etcd3gw_suite_passes(d: Deployment) -> Result<()> {
    d.ready().await?;
    let python = python();
    if !python.exists() {
        bail!(
            "{} not found: run scripts/deps.sh --test (it installs etcd3gw)",
            python.display()
        );
    }
    let endpoint = d.endpoint();
    let port = endpoint.rsplit(':').next().context("port")?.to_string();
    let out = tokio::process::Command::new(&python)
        .args(["-m", "unittest", "-v", "etcd3gw.tests.test_etcd3gw"])
        .env("TOOZ_TEST_HTTP_URL", &endpoint)
        .env("TOOZ_TEST_ETCD_PORT", &port)
        .output()
        .await
        .context("run python")?;
    let report = String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| {
            l.contains(" ... ")
                || l.starts_with("Ran ")
                || l.starts_with("OK")
                || l.starts_with("FAILED")
        })
        .collect();
    assert!(out.status.success(), "etcd3gw suite failed:\n{report}");
    assert!(
        !report.contains("skipped"),
        "the suite skipped tests (did it reach the gateway?):\n{}",
        summary.join("\n")
    );
    let ran = report
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .context("no test count in the report")?;
    assert!(
        ran >= 20,
        "only {ran} etcd3gw tests ran:\n{}",
        summary.join("\n")
    );
    Ok(())
}
