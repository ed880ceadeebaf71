//! TLS with etcd's certificate flags, for both binaries: one loader of PEM files into rustls
//! configurations, a server side that re-reads its files when they change (certificate
//! rotation without a restart) or uses a certificate made at start (`--auto-tls`), an acceptor
//! stream for listeners, and the client side every internal channel uses for `https://` URLs.

use crate::self_signed::SelfSigned;
use futures::{Stream, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How often certificate files are checked for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// etcd's server certificate flags (`--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, or their `--peer-*` forms).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub trusted_ca: Option<PathBuf>,
    /// Require a client certificate signed by `trusted_ca`.
    pub client_cert_auth: bool,
    /// Without `cert`: serve a self-signed certificate made at start (etcd's `--auto-tls`).
    pub auto: bool,
}

/// etcd's server certificate flags, shared by both binaries (`#[command(flatten)]`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Server certificate for the `https://` URLs this process serves (etcd's flag).
    #[arg(long, env = "METASTORE_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Key of --cert-file (etcd's flag).
    #[arg(long, env = "METASTORE_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// CA that signs the certificates of clients (etcd's flag).
    #[arg(long, env = "METASTORE_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by --trusted-ca-file (etcd's flag)
    /// [default: false].
    #[arg(long, env = "METASTORE_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub client_cert_auth: Option<bool>,
    /// Without --cert-file, serve `https://` URLs with a self-signed certificate made at each
    /// start and kept in memory (etcd's flag; clients cannot verify it) [default: false].
    #[arg(long, env = "METASTORE_AUTO_TLS", num_args = 0..=1, default_missing_value = "true")]
    pub auto_tls: Option<bool>,
}

impl TlsArgs {
    /// These flags, each taken from `other` where unset here.
    pub fn or(self, other: TlsArgs) -> TlsArgs {
        TlsArgs {
            cert_file: self.cert_file.or(other.cert_file),
            key_file: self.key_file.or(other.key_file),
            trusted_ca_file: self.trusted_ca_file.or(other.trusted_ca_file),
            client_cert_auth: self.client_cert_auth.or(other.client_cert_auth),
            auto_tls: self.auto_tls.or(other.auto_tls),
        }
    }

    /// The files, checked.
    pub fn files(&self) -> Result<TlsFiles, String> {
        let files = TlsFiles {
            cert: self.cert_file.clone(),
            key: self.key_file.clone(),
            trusted_ca: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth.unwrap_or(false),
            auto: self.auto_tls.unwrap_or(false),
        };
        files.check("")?;
        Ok(files)
    }
}

impl TlsFiles {
    /// `prefix` is `""` or `"peer-"`, for error messages.
    pub fn check(&self, prefix: &str) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(format!(
                    "--{prefix}cert-file and --{prefix}key-file go together"
                ));
            }
            _ => {}
        }
        if self.client_cert_auth && self.trusted_ca.is_none() {
            return Err(format!(
                "--{prefix}client-cert-auth needs --{prefix}trusted-ca-file"
            ));
        }
        Ok(())
    }

    /// Whether `https://` URLs can be served: a certificate is given, or one is made.
    pub fn has_cert(&self) -> bool {
        self.cert.is_some() || self.auto
    }

    /// Whether the certificate is made at start (auto TLS and no certificate file).
    pub fn self_signed(&self) -> bool {
        self.cert.is_none() && self.auto
    }
}

// ring is the provider tonic's `tls-ring` builds on (aws-lc-rs would add a C/CMake build);
// rustls marks it deprecated for lacking post-quantum key exchange, which etcd's Go TLS stack
// of 3.4/3.5 lacks too.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

fn server_config(
    files: &TlsFiles,
    own: Option<&SelfSigned>,
) -> Result<rustls::ServerConfig, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (&files.trusted_ca, files.client_cert_auth) {
        (Some(ca), true) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = match (own, &files.cert, &files.key) {
        (Some(own), _, _) => builder
            .with_single_cert(vec![own.cert.clone()], own.key())
            .map_err(|e| format!("self-signed certificate: {e}"))?,
        (None, Some(cert), Some(key_path)) => builder
            .with_single_cert(certs(cert)?, key(key_path)?)
            .map_err(|e| format!("{}: {e}", cert.display()))?,
        _ => return Err("TLS needs a certificate and a key".into()),
    };
    // gRPC needs HTTP/2; HTTP/1.1 for the JSON and REST APIs.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The server side of one listener's TLS: the current configuration, rebuilt when a file
/// changes (a bad new file is logged and the previous configuration kept).
pub struct ServerTls {
    files: TlsFiles,
    own: Option<SelfSigned>,
    current: RwLock<(Arc<rustls::ServerConfig>, Vec<Option<SystemTime>>)>,
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [&files.cert, &files.key, &files.trusted_ca]
        .into_iter()
        .map(|p| {
            p.as_ref()
                .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        })
        .collect()
}

impl ServerTls {
    /// Loads the files now (failing with one line) and re-reads them when they change; with
    /// auto TLS and no certificate file, makes a certificate for `addrs` instead.
    pub fn load(files: TlsFiles, addrs: &[std::net::SocketAddr]) -> Result<Arc<Self>, String> {
        let own = if files.self_signed() {
            tracing::warn!(
                "serving a self-signed certificate made at start (auto TLS): clients cannot verify it"
            );
            Some(SelfSigned::new(addrs)?)
        } else {
            None
        };
        let config = Arc::new(server_config(&files, own.as_ref())?);
        let tls = Arc::new(ServerTls {
            current: RwLock::new((config, stamps(&files))),
            files,
            own,
        });
        let weak = Arc::downgrade(&tls);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            loop {
                tick.tick().await;
                let Some(tls) = weak.upgrade() else { return };
                tls.reload_if_changed();
            }
        });
        Ok(tls)
    }

    fn reload_if_changed(&self) {
        let now = stamps(&self.files);
        let unchanged = self.current.read().map(|c| c.1 == now).unwrap_or(true);
        if unchanged {
            return;
        }
        match server_config(&self.files, self.own.as_ref()) {
            Ok(config) => {
                if let Ok(mut c) = self.current.write() {
                    *c = (Arc::new(config), now);
                }
                tracing::info!(cert = ?self.files.cert, "certificate files changed; reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate files changed but do not load; keeping the previous ones")
            }
        }
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current
            .read()
            .ok()
            .map(|c| TlsAcceptor::from(c.0.clone()))
    }
}

/// TLS connections from a listener's accepted TCP connections: handshakes run concurrently,
/// a failed or slow one drops that connection only.
pub fn accept<S>(
    incoming: S,
    tls: Arc<ServerTls>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<TcpStream, std::io::Error>> + Send + 'static,
{
    incoming
        .map(move |conn| {
            let acceptor = tls.acceptor();
            async move {
                let conn = conn.ok()?;
                let acceptor = acceptor?;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                    Ok(Ok(stream)) => Some(stream),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        None
                    }
                }
            }
        })
        .buffer_unordered(256)
        .filter_map(|s| async move { s.map(Ok) })
}

/// The client side for internal `https://` channels: the CA that signs the servers and this
/// process's own certificate, if it has one.
pub fn client_config(
    trusted_ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::ClientTlsConfig, String> {
    let mut config = tonic::transport::ClientTlsConfig::new();
    if let Some(ca) = trusted_ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        config = config.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    if let Some((cert, key)) = identity {
        let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
        config = config.identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
    }
    Ok(config)
}

/// The client side for internal `https://` channels towards servers with self-signed
/// certificates (etcd's `--peer-auto-tls`): encrypted, not verified. Shows this process's own
/// certificate files when given, else a certificate made for `addrs`.
pub fn unverified_client_config(
    identity: Option<(&Path, &Path)>,
    addrs: &[std::net::SocketAddr],
) -> Result<rustls::ClientConfig, String> {
    let identity = match identity {
        Some((cert, key_path)) => (certs(cert)?, key(key_path)?),
        None => {
            let own = SelfSigned::new(addrs)?;
            (vec![own.cert.clone()], own.key())
        }
    };
    crate::self_signed::unverified_client(provider(), Some(identity))
}

/// The common name in the subject of the first (the caller's own) certificate of a verified
/// TLS client: the user etcd takes a client certificate to stand for. `None` without a
/// certificate, or when its subject has no common name.
pub fn peer_common_name(certs: Option<Arc<Vec<CertificateDer<'static>>>>) -> Option<String> {
    let certs = certs?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_subject(cn: Option<&str>) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("certificate parameters");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "MetaStore tests");
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("certificate").der().clone()
    }

    #[test]
    fn the_common_name_of_the_callers_own_certificate() {
        let alice = with_subject(Some("alice"));
        let ca = with_subject(Some("some CA"));
        assert_eq!(
            peer_common_name(Some(Arc::new(vec![alice, ca]))).as_deref(),
            Some("alice")
        );
        assert_eq!(
            peer_common_name(Some(Arc::new(vec![with_subject(None)]))),
            None
        );
        assert_eq!(peer_common_name(Some(Arc::new(vec![]))), None);
        assert_eq!(peer_common_name(None), None);
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff]);
        assert_eq!(peer_common_name(Some(Arc::new(vec![garbage]))), None);
    }
}
