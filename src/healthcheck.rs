//! `ferry healthcheck`: asks the running server for `GET /v2/` over loopback, for container
//! health checks that must work without a shell or curl in the image.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    #[error("GET /v2/ on {addr} answered {status:?}")]
    Status {
        /// Address tried.
        addr: String,
        /// The status line.
        status: String,
    },
}

/// The address to probe for a listen address: a wildcard becomes loopback.
pub fn probe_address(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some(("0.0.0.0" | "" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => listen.to_string(),
    }
}

/// Checks that the registry at `addr` answers `GET /v2/` with 200.
pub async fn check(addr: &str, timeout: Duration) -> Result<(), HealthError> {
    let connect_error = |reason: String| HealthError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: ferry-healthcheck\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let mut head = vec![0u8; 256];
        let n = stream
            .read(&mut head)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
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
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(connect_error(format!("no answer within {timeout:?}"))))
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
