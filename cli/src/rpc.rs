//! Internal gRPC plumbing shared by both binaries: one builder for every internal channel
//! (gateway -> storaged, member -> leader, raft peers) and one typed test of whether a failed
//! call certainly never reached its server.

use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tonic::transport::{ClientTlsConfig, Endpoint};

/// Largest internal message other than raft's (a storage request or answer: a 1.5 MiB request
/// or a large range answer).
pub const MAX_INTERNAL_MESSAGE: usize = 64 * 1024 * 1024;

/// An internal channel: calls made while serving a traced request carry its trace context.
pub type Channel = crate::telemetry::ClientSpan<tonic::transport::Channel>;

/// How an internal channel behaves.
#[derive(Clone, Copy, Debug)]
pub struct ChannelOptions {
    /// Bound on each call (none for long-lived streams).
    pub timeout: Option<Duration>,
    /// HTTP/2 pings keep idle connections checked (a dead peer is noticed within this twice).
    pub keep_alive: Option<Duration>,
}

impl ChannelOptions {
    pub const UNARY: ChannelOptions = ChannelOptions {
        timeout: None,
        keep_alive: Some(Duration::from_secs(5)),
    };
}

/// Bound on an internal channel's TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The TLS settings of this process's internal `https://` channels (set once at start).
static CLIENT_TLS: OnceLock<ClientTlsConfig> = OnceLock::new();

/// Instead of [`CLIENT_TLS`]: internal `https://` channels that do not verify their servers
/// (servers with self-signed certificates, etcd's `--peer-auto-tls`).
static UNVERIFIED_TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Sets the CA and client certificate every internal `https://` channel uses.
pub fn use_client_tls(config: ClientTlsConfig) {
    let _ = CLIENT_TLS.set(config);
}

/// Makes every internal `https://` channel encrypt without verifying the server.
pub fn use_unverified_tls(config: rustls::ClientConfig) {
    let _ = UNVERIFIED_TLS.set(Arc::new(config));
}

/// Connects over TCP, then TLS with `config` (tonic's own TLS needs a verified server).
fn unverified_connector(
    config: Arc<rustls::ClientConfig>,
) -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Send
+ Clone
+ 'static {
    tower::service_fn(move |uri: http::Uri| {
        let config = config.clone();
        async move {
            let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(host)
                .map_err(|_| invalid("bad host name"))?;
            let tls = tokio::time::timeout(
                TLS_HANDSHAKE_TIMEOUT,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    })
}

/// A lazily connected channel to `url` (connection failures surface on the first call).
pub fn channel(url: &str, options: ChannelOptions) -> Result<Channel, String> {
    let unverified = UNVERIFIED_TLS
        .get()
        .filter(|_| url.starts_with("https://"))
        .cloned();
    // The connector makes the TLS connection; tonic sees a plain one.
    let target = match unverified {
        Some(_) => url.replacen("https://", "http://", 1),
        None => url.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(target)
        .map_err(|e| format!("{url}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1));
    if url.starts_with("https://") && unverified.is_none() {
        // A peer that accepts connections but does not serve them (still starting, or
        // paused) must not hold a call in the handshake, where no request timeout applies.
        let tls = CLIENT_TLS
            .get()
            .cloned()
            .unwrap_or_default()
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("{url}: {e}"))?;
    }
    if let Some(t) = options.timeout {
        endpoint = endpoint.timeout(t);
    }
    if let Some(k) = options.keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(k)
            .keep_alive_timeout(k)
            .keep_alive_while_idle(true);
    }
    let channel = match unverified {
        Some(config) => endpoint.connect_with_connector_lazy(unverified_connector(config)),
        None => endpoint.connect_lazy(),
    };
    Ok(crate::telemetry::ClientSpan::new(channel))
}

/// True when a failed call certainly did not reach the server: the connection was refused
/// (nobody listens) or could not be made at all. Decided from the error's kind (the io error
/// under the transport error), never from its text; any other failure may have been
/// delivered, so its outcome is unknown.
pub fn not_sent(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            );
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codegen::http;

    /// A call to a port nobody listens on is "not sent"; a call that reached a server and failed
    /// there is not, whatever its message says.
    #[tokio::test]
    async fn refused_connections_are_not_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let ch =
            channel(&format!("http://127.0.0.1:{port}"), ChannelOptions::UNARY).expect("channel");
        let mut client = tonic::client::Grpc::new(ch);
        client.ready().await.err();
        let path = http::uri::PathAndQuery::from_static("/x.Y/Z");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let status = client
            .unary(tonic::Request::new(()), path, codec)
            .await
            .expect_err("nobody listens");
        assert!(not_sent(&status), "{status:?}");
        let made_up = tonic::Status::unavailable("error trying to connect: Connection refused");
        assert!(!not_sent(&made_up), "text alone decides nothing");
    }
}
