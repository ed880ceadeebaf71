//! `docs/configuration.md` is the binaries' own `--help`, so the configuration reference lists
//! every flag there is and no flag that is gone. `METASTORE_BLESS=1` rewrites the file from
//! the built binaries instead of comparing.

use anyhow::{Result, bail};
use std::path::PathBuf;
use std::process::Command;

const HEADER: &str = "# Configuration reference

Every flag of both binaries, as their `--help` prints it (this file is made from it:
`METASTORE_BLESS=1 cargo test --release -p metastore-tests --test config_reference`, and that
test fails when the two differ). Each flag can also be set by its `METASTORE_*` variable, by
etcd's `ETCD_*` variable when the flag has etcd's name, or by a key of the same name in the
YAML file given to `--config`; `operations.md` explains the order and the flags' meaning in
context.
";

fn help(binary: &str) -> Result<String> {
    // No environment: a set METASTORE_* variable would show in the text.
    let out = Command::new(metastore_tests::binary(binary)?)
        .arg("--help")
        .env_clear()
        .output()?;
    if !out.status.success() {
        bail!("{binary} --help: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn the_configuration_reference_is_the_binaries_help() -> Result<()> {
    let mut doc = HEADER.to_string();
    for binary in ["metastore-storaged", "metastore-gateway"] {
        doc.push_str(&format!("\n## {binary}\n\n```text\n{}```\n", help(binary)?));
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    if std::env::var_os("METASTORE_BLESS").is_some() {
        std::fs::write(&path, &doc)?;
        return Ok(());
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != doc {
        bail!(
            "docs/configuration.md differs from the binaries' --help; run \
             METASTORE_BLESS=1 cargo test --release -p metastore-tests --test config_reference"
        );
    }
    Ok(())
}
