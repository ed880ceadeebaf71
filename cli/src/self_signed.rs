//! etcd's `--auto-tls` and `--peer-auto-tls`: a certificate made at start for the addresses a
//! process listens on, and the client side that goes with it — TLS that encrypts but does not
//! authenticate the server (as etcd's members do towards peers with generated certificates).

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use std::net::SocketAddr;
use std::sync::Arc;

/// A certificate and its key, made in memory (never written anywhere).
#[derive(Debug)]
pub struct SelfSigned {
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl SelfSigned {
    /// A self-signed certificate naming `addrs`' hosts and `localhost`.
    pub fn new(addrs: &[SocketAddr]) -> Result<Self, String> {
        let mut names: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        names.push("localhost".into());
        names.sort();
        names.dedup();
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("making a self-signed certificate: {e}"))?;
        Ok(Self {
            cert: made.cert.der().clone(),
            key: made.signing_key.serialize_der(),
        })
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// Accepts any server certificate (the handshake's signatures are still checked, so the
/// connection is encrypted to whoever holds the certificate's key).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration for HTTP/2 that does not verify servers, showing `identity` (a
/// certificate chain and its key) when given.
pub fn unverified_client(
    provider: Arc<rustls::crypto::CryptoProvider>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
