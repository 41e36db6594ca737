//! Certificates for the HTTPS tests, made with the `openssl` command in a temporary
//! directory (a CA, server certificates for 127.0.0.1, client certificates), and TLS clients
//! that trust that CA: rustls configurations for reqwest and for raw handshakes that read
//! the server's certificate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;

use super::TestRegistry;
use super::cli::sh_within;

/// How long one `openssl` run may take.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    /// The certificate's DER bytes (the first certificate of the file).
    pub fn der(&self) -> Vec<u8> {
        CertificateDer::from_pem_file(&self.cert)
            .unwrap_or_else(|e| panic!("{}: {e}", self.cert.display()))
            .to_vec()
    }
}

/// A certificate authority in a directory of its own, issuing certificates into it.
pub struct Ca {
    pub dir: PathBuf,
    /// The CA's certificate (`ca.pem`): what clients trust, or `http.tls.clientcas`.
    pub cert: PathBuf,
    key: PathBuf,
}

/// Runs `openssl` in `dir` with `args`, split at whitespace (no argument holds a space).
fn openssl(dir: &Path, args: &str) {
    sh_within(
        Command::new("openssl")
            .current_dir(dir)
            .args(args.split_whitespace()),
        OPENSSL_TIMEOUT,
    );
}

impl Ca {
    /// A new CA (P-256 key) named `name`, in `dir/name/`.
    pub fn new(dir: &Path, name: &str) -> Self {
        super::cli::require(&["openssl"]);
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("CA directory");
        openssl(
            &dir,
            &format!(
                "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
                 -out ca.pem -days 2 -subj /CN={name} \
                 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        Ca {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
            dir,
        }
    }

    /// A certificate for the server at 127.0.0.1 (and `localhost`) named `cn`, with serial
    /// `serial`; files `<cn>.pem` and `<cn>.key`.
    pub fn server(&self, cn: &str, serial: u32) -> Pair {
        self.issue(
            cn,
            serial,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
    }

    /// A client certificate named `cn`.
    pub fn client(&self, cn: &str, serial: u32) -> Pair {
        self.issue(cn, serial, "extendedKeyUsage=clientAuth\n")
    }

    fn issue(&self, cn: &str, serial: u32, extensions: &str) -> Pair {
        let ext = self.dir.join(format!("{cn}.ext"));
        std::fs::write(
            &ext,
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}"),
        )
        .expect("extensions file");
        openssl(
            &self.dir,
            &format!(
                "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {cn}.key \
                 -out {cn}.csr -subj /CN={cn}"
            ),
        );
        openssl(
            &self.dir,
            &format!(
                "x509 -req -in {cn}.csr -CA {} -CAkey {} -set_serial {serial} -days 2 \
                 -extfile {} -out {cn}.pem",
                self.cert.display(),
                self.key.display(),
                ext.display()
            ),
        );
        Pair {
            cert: self.dir.join(format!("{cn}.pem")),
            key: self.dir.join(format!("{cn}.key")),
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The `REGISTRY_*` overrides serving `pair` over HTTPS.
pub fn tls_env(pair: &Pair) -> Vec<(String, String)> {
    vec![
        (
            "REGISTRY_HTTP_TLS_CERTIFICATE".into(),
            path_str(&pair.cert).into(),
        ),
        ("REGISTRY_HTTP_TLS_KEY".into(), path_str(&pair.key).into()),
    ]
}

/// Starts Ferry serving HTTPS with `pair`, plus `env`.
pub fn start_tls(pair: &Pair, env: &[(&str, &str)]) -> TestRegistry {
    let mut all = tls_env(pair);
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestRegistry::start_with(super::Flavor::Ferry, &all)
}

/// `https://127.0.0.1:PORT`.
pub fn https_url(reg: &TestRegistry) -> String {
    format!("https://{}", reg.host)
}

/// A client configuration trusting `ca`, offering `versions` and the ALPN protocols
/// `alpn`, presenting `identity` when given.
pub fn client_config(
    ca: &Path,
    identity: Option<&Pair>,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&str],
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("CA added");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pair.cert)
                .expect("client certificate file")
                .map(|c| c.expect("client certificate"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(&pair.key).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate and key")
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

/// TLS 1.2 and 1.3.
pub const ANY_VERSION: &[&SupportedProtocolVersion] = &[&TLS13, &TLS12];
/// TLS 1.2 only.
pub const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&TLS12];

/// A reqwest client trusting `ca` (HTTP/2 or HTTP/1.1 by ALPN), with `identity` when given.
pub fn https_client(ca: &Path, identity: Option<&Pair>) -> reqwest::Client {
    https_client_alpn(ca, identity, &["h2", "http/1.1"])
}

/// [`https_client`] offering only the ALPN protocols `alpn`.
pub fn https_client_alpn(ca: &Path, identity: Option<&Pair>, alpn: &[&str]) -> reqwest::Client {
    super::http::client_builder()
        .tls_backend_preconfigured(client_config(ca, identity, ANY_VERSION, alpn))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("https client")
}

/// What a TLS handshake with the registry gave: the server's certificate (DER) and the
/// ALPN protocol chosen, or the error.
pub async fn handshake(
    reg: &TestRegistry,
    config: ClientConfig,
) -> Result<(Vec<u8>, Option<Vec<u8>>), std::io::Error> {
    let tcp = TcpStream::connect(reg.addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(reg.addr.ip().into());
    let stream = connector.connect(name, tcp).await?;
    let (_, session) = stream.get_ref();
    let cert = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    Ok((cert, session.alpn_protocol().map(|p| p.to_vec())))
}
