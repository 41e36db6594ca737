//! `--tls`: both registries serve HTTPS with one self-signed certificate made here with the
//! `openssl` CLI (an EC P-256 key; `subjectAltName` IP 127.0.0.1; `CA:FALSE`, as rustls
//! refuses a CA certificate as a server's). The bench's own client trusts exactly that
//! certificate; wrk and h2load do not check certificates. Over TLS Distribution speaks
//! HTTP/2 (ALPN `h2`), which it does not without TLS, so the rate workload's HTTP/2 rows
//! then compare the two registries, and every figure shows what TLS costs each.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The server's certificate and key files, and the certificate for the client to trust.
pub struct Tls {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub pem: Vec<u8>,
}

/// A fresh self-signed certificate for 127.0.0.1 in `dir`.
pub fn self_signed(dir: &Path) -> Result<Tls> {
    std::fs::create_dir_all(dir)?;
    crate::auth::openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
    )?;
    let certificate = dir.join("cert.pem");
    let pem = std::fs::read(&certificate).context("reading the certificate openssl wrote")?;
    Ok(Tls {
        certificate,
        key: dir.join("key.pem"),
        pem,
    })
}
