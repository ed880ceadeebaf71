//! Start-up failures: one clear line on stderr and a non-zero exit.

use anyhow::Result;
use metastore_tests::{binary, free_port};
use std::process::Command;

fn run(bin: &str, args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new(binary(bin)?).args(args).output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

fn assert_one_line_failure((ok, stderr): (bool, String), needle: &str) {
    assert!(!ok, "must exit non-zero");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(needle),
        "{stderr:?} should mention {needle:?}"
    );
}

#[test]
fn unknown_engine() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().into_owned();
    assert_one_line_failure(
        run(
            "metastore-storaged",
            &["--engine", "leveldb", "--data-dir", &data],
        )?,
        "unknown engine",
    );
    Ok(())
}

/// Trusting gateways to name certificate users needs a storage port that checks their
/// certificates.
#[test]
fn trusted_gateway_cn_needs_client_certificates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().into_owned();
    assert_one_line_failure(
        run(
            "metastore-storaged",
            &["--data-dir", &data, "--trusted-gateway-cn", "gateway"],
        )?,
        "--trusted-gateway-cn needs https:// --listen-storage-urls with --client-cert-auth",
    );
    Ok(())
}

#[test]
fn port_in_use() -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_string_lossy().into_owned();
    let url = format!("http://127.0.0.1:{port}");
    assert_one_line_failure(
        run(
            "metastore-storaged",
            &[
                "--engine",
                "memory",
                "--data-dir",
                &data,
                "--listen-storage-urls",
                &url,
            ],
        )?,
        "cannot listen",
    );
    let storage = format!("http://127.0.0.1:{}", free_port()?);
    assert_one_line_failure(
        run(
            "metastore-gateway",
            &[
                "--listen-client-urls",
                &url,
                "--storage-endpoints",
                &storage,
            ],
        )?,
        "cannot listen",
    );
    Ok(())
}

#[test]
fn unusable_data_dir() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory")?;
    let data = file.join("sub").to_string_lossy().into_owned();
    let url = format!("http://127.0.0.1:{}", free_port()?);
    assert_one_line_failure(
        run(
            "metastore-storaged",
            &[
                "--engine",
                "rocksdb",
                "--data-dir",
                &data,
                "--listen-storage-urls",
                &url,
            ],
        )?,
        "data dir",
    );
    Ok(())
}

#[test]
fn config_file_and_bad_keys() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("storaged.yaml");
    std::fs::write(&cfg, "engine: nosuch\n")?;
    let cfg_s = cfg.to_string_lossy().into_owned();
    assert_one_line_failure(
        run("metastore-storaged", &["--config", &cfg_s])?,
        "unknown engine",
    );
    std::fs::write(&cfg, "no-such-setting: 1\n")?;
    assert_one_line_failure(
        run("metastore-storaged", &["--config", &cfg_s])?,
        "invalid config file",
    );
    Ok(())
}
