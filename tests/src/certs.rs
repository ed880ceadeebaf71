//! Test certificates made with the `openssl` command: a CA, and certificates it signs for
//! 127.0.0.1 (server and client use), with a chosen common name.

use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    pub fn cert(&self) -> &str {
        self.cert.to_str().unwrap_or_default()
    }
    pub fn key(&self) -> &str {
        self.key.to_str().unwrap_or_default()
    }
}

fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl")?;
    ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn path(dir: &Path, name: &str) -> Result<String> {
    Ok(dir
        .join(name)
        .to_str()
        .context("a test path is not UTF-8")?
        .to_string())
}

/// A new CA `name` in `dir`.
pub fn ca(dir: &Path, name: &str) -> Result<Pair> {
    let (cert, key) = (
        path(dir, &format!("{name}.crt"))?,
        path(dir, &format!("{name}.key"))?,
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    Ok(Pair {
        cert: cert.into(),
        key: key.into(),
    })
}

/// A certificate for 127.0.0.1 and localhost, good for servers and clients, with common name
/// `cn`, signed by `ca`, written as `<name>.crt` / `<name>.key` in `dir` (replacing any).
pub fn issue(dir: &Path, ca: &Pair, name: &str, cn: &str) -> Result<Pair> {
    let (cert, key) = (
        path(dir, &format!("{name}.crt"))?,
        path(dir, &format!("{name}.key"))?,
    );
    let csr = path(dir, &format!("{name}.csr"))?;
    let ext = path(dir, &format!("{name}.ext"))?;
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         extendedKeyUsage=serverAuth,clientAuth\n\
         basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n",
    )?;
    // Written beside the final files and renamed over them, so a server re-reading its files
    // never sees half of a pair.
    let (tmp_cert, tmp_key) = (format!("{cert}.new"), format!("{key}.new"));
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &tmp_key,
        "-out",
        &csr,
        "-subj",
        &format!("/CN={cn}"),
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        ca.cert(),
        "-CAkey",
        ca.key(),
        "-CAcreateserial",
        "-out",
        &tmp_cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ])?;
    std::fs::rename(&tmp_key, &key)?;
    std::fs::rename(&tmp_cert, &cert)?;
    Ok(Pair {
        cert: cert.into(),
        key: key.into(),
    })
}
