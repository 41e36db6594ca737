//! `ferry healthcheck`: asks the running server for `GET /health/ready` over loopback (200
//! while the metadata database and the store answer; no credentials needed, also under
//! `auth`), for container health checks that must work without a shell or curl in the
//! image. With `http.tls` the
//! question goes over TLS, trusting whatever certificate the server shows: the probe tells
//! whether the server answers, sends nothing secret and believes nothing but a status line.
//! A server that requires client certificates (`http.tls.clientcas`) and refuses the probe
//! for having none has answered, and counts as healthy.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why the server is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// No connection within the timeout.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Address tried.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server answered, but not 200.
    #[error("GET {PROBE_PATH} on {addr} answered {status:?}")]
    Status {
        /// Address tried.
        addr: String,
        /// The status line.
        status: String,
    },
}

/// What the probe asks: readiness, which needs no credentials.
pub const PROBE_PATH: &str = "/health/ready";

/// The address to probe for a listen address: a wildcard becomes loopback.
pub fn probe_address(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0" | "" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => listen.to_string(),
    }
}

/// Checks that the registry at `addr` answers `GET /health/ready` with 200 (over TLS when `tls`).
pub async fn check(addr: &str, tls: bool, timeout: Duration) -> Result<(), HealthError> {
    let connect_error = |reason: String| HealthError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        if !tls {
            return ask(tcp, addr).await;
        }
        let stream = tls_connector()
            .connect(ServerName::from(LOOPBACK), tcp)
            .await
            .map_err(|e| connect_error(format!("TLS handshake failed: {e}")))?;
        ask(stream, addr).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(connect_error(format!("no answer within {timeout:?}"))))
}

/// `GET /health/ready` over `stream`.
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: &str,
) -> Result<(), HealthError> {
    let connect_error = |reason: String| HealthError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let request = format!(
        "GET {PROBE_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: ferry-healthcheck\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let mut head = vec![0u8; 256];
    let n = match stream.read(&mut head).await {
        Ok(n) => n,
        Err(e) if refused_without_client_certificate(&e) => return Ok(()),
        Err(e) => return Err(connect_error(e.to_string())),
    };
    let status_line = String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(HealthError::Status {
            addr: addr.to_string(),
            status: status_line,
        })
    }
}

/// The name the probe asks for (the server answers with its one certificate anyway).
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A TLS 1.3 server that requires a client certificate finishes the handshake and then
/// refuses the probe with this alert.
fn refused_without_client_certificate(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
            )
        })
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Accepts whatever certificate the server shows (its signatures are still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(probe_address("0.0.0.0:5000"), "127.0.0.1:5000");
        assert_eq!(probe_address("[::]:5000"), "127.0.0.1:5000");
        assert_eq!(probe_address("10.0.0.1:5000"), "10.0.0.1:5000");
    }
}
