//! Docker token auth for tests: signing keys and certificates made with the `openssl` CLI
//! ([`pki`], once per test binary), tokens minted directly with any header and claims
//! ([`Mint`], for the negative tests), and a small token server ([`TokenServer`]) as the
//! Docker token spec describes it: `GET /token?service=..&scope=..` with HTTP basic auth (and
//! the OAuth2 `POST /token` form containerd tries first), granting the intersection of the
//! requested scopes and what the user (or an anonymous caller) is allowed.
//!
//! Key ids (thumbprints, libtrust ids) and JWKs are computed here from openssl's output,
//! independently of Ferry's code, so that the tests check Ferry against something else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Kinds of signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RSA 2048.
    Rsa,
    /// ECDSA P-256.
    P256,
    /// ECDSA P-384.
    P384,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    pub const ALL: [KeyKind; 4] = [KeyKind::Rsa, KeyKind::P256, KeyKind::P384, KeyKind::Ed25519];

    /// The JWS algorithm tokens signed with such a key use by default.
    pub fn alg(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RS256",
            KeyKind::P256 => "ES256",
            KeyKind::P384 => "ES384",
            KeyKind::Ed25519 => "EdDSA",
        }
    }

    fn genpkey_args(self) -> &'static [&'static str] {
        match self {
            KeyKind::Rsa => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyKind::P256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::P384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            KeyKind::Ed25519 => &["-algorithm", "ED25519"],
        }
    }
}

/// A private key and its certificate (DER), with what openssl says about its public key.
#[derive(Clone)]
pub struct TestKey {
    pub kind: KeyKind,
    /// PKCS#8 private key.
    pkcs8: Vec<u8>,
    /// DER SubjectPublicKeyInfo, as openssl writes it.
    pub spki: Vec<u8>,
    /// RSA modulus (big-endian), from `openssl rsa -modulus`.
    rsa_modulus: Vec<u8>,
    /// The certificate, DER.
    pub cert: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
}

impl TestKey {
    /// The public key as a JWK (RFC 7517 members only).
    pub fn jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match self.kind {
            KeyKind::Rsa => json!({"kty": "RSA", "n": b64(&self.rsa_modulus), "e": "AQAB"}),
            KeyKind::P256 | KeyKind::P384 => {
                let size = if self.kind == KeyKind::P256 { 32 } else { 48 };
                // The SPKI ends with the uncompressed point 04 || x || y.
                let point = &self.spki[self.spki.len() - 2 * size..];
                let crv = if self.kind == KeyKind::P256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "crv": crv, "x": b64(&point[..size]), "y": b64(&point[size..])})
            }
            KeyKind::Ed25519 => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&self.spki[self.spki.len() - 32..])})
            }
        }
    }

    /// The RFC 7638 thumbprint of [`TestKey::jwk`].
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let member = |name: &str| jwk[name].as_str().unwrap_or_default().to_string();
        let canonical = match self.kind {
            KeyKind::Rsa => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                member("e"),
                member("n")
            ),
            KeyKind::P256 | KeyKind::P384 => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                member("crv"),
                member("x"),
                member("y")
            ),
            KeyKind::Ed25519 => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, member("x")),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
    }

    /// The libtrust key id: base32 of the first 30 bytes of SHA-256 of openssl's DER SPKI,
    /// in groups of four joined by `:`.
    pub fn libtrust_id(&self) -> String {
        let encoded = base32(&Sha256::digest(&self.spki)[..30]);
        let groups: Vec<String> = encoded
            .as_bytes()
            .chunks(4)
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect();
        groups.join(":")
    }

    /// The certificate as an `x5c` entry (standard base64 DER).
    pub fn x5c_entry(&self) -> String {
        STANDARD.encode(&self.cert)
    }

    /// Signs `message` with `alg` (which must fit the key; an RSA key signs RS* and PS*).
    pub fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self.kind {
            KeyKind::Rsa => {
                let key = RsaKeyPair::from_pkcs8(&self.pkcs8).expect("RSA PKCS#8");
                let padding: &dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("an RSA key cannot sign {other}"),
                };
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(padding, &rng, message, &mut sig)
                    .expect("RSA sign");
                sig
            }
            KeyKind::P256 | KeyKind::P384 => {
                let algorithm = if self.kind == KeyKind::P256 {
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let key =
                    EcdsaKeyPair::from_pkcs8(algorithm, &self.pkcs8, &rng).expect("EC PKCS#8");
                key.sign(&rng, message)
                    .expect("ECDSA sign")
                    .as_ref()
                    .to_vec()
            }
            KeyKind::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8)
                .expect("Ed25519 PKCS#8")
                .sign(message)
                .as_ref()
                .to_vec(),
        }
    }
}

/// RFC 4648 base32, upper case, no padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    bits.chunks(5)
        .map(|chunk| {
            let value = chunk
                .iter()
                .chain(std::iter::repeat(&0))
                .take(5)
                .fold(0usize, |v, &bit| (v << 1) | usize::from(bit));
            char::from(ALPHABET[value])
        })
        .collect()
}

/// The test PKI: a root CA (RSA), an intermediate CA (P-256) it signed, a leaf of every key
/// kind the intermediate signed, a certificate the P-256 leaf (not a CA) signed, a
/// self-signed certificate (CA:TRUE, as `openssl req -x509` makes them for docker_auth), and a
/// rogue root (with the real root's name) with a leaf of its own.
pub struct Pki {
    pub root: TestKey,
    pub intermediate: TestKey,
    leaves: HashMap<KeyKind, TestKey>,
    /// Issued by the P-256 leaf, which has `CA:FALSE`.
    pub by_leaf: TestKey,
    pub self_signed: TestKey,
    pub rogue_root: TestKey,
    pub rogue_leaf: TestKey,
}

impl Pki {
    /// The leaf of `kind`, signed by the intermediate.
    pub fn leaf(&self, kind: KeyKind) -> &TestKey {
        &self.leaves[&kind]
    }

    /// The `x5c` header of `leaf` issued under the intermediate: leaf, intermediate.
    pub fn chain(&self, leaf: &TestKey) -> Vec<String> {
        vec![leaf.x5c_entry(), self.intermediate.x5c_entry()]
    }
}

const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// The test PKI, made once per test binary.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let gen_ = Gen::new(dir.path());
        let root = gen_.self_signed("root", KeyKind::Rsa, "Ferry test root");
        let intermediate = gen_.issued("intermediate", KeyKind::P256, "ca", "root");
        let leaves = KeyKind::ALL
            .into_iter()
            .map(|kind| {
                let name = format!("leaf-{kind:?}");
                (kind, gen_.issued(&name, kind, "leaf", "intermediate"))
            })
            .collect();
        let by_leaf = gen_.issued("by-leaf", KeyKind::P256, "leaf", "leaf-P256");
        let self_signed = gen_.self_signed("self-signed", KeyKind::P256, "token-server");
        let rogue_root = gen_.self_signed("rogue-root", KeyKind::P256, "Ferry test root");
        let rogue_leaf = gen_.issued("rogue-leaf", KeyKind::Rsa, "leaf", "rogue-root");
        Pki {
            root,
            intermediate,
            leaves,
            by_leaf,
            self_signed,
            rogue_root,
            rogue_leaf,
        }
    })
}

/// Runs openssl in a directory.
struct Gen<'a> {
    dir: &'a Path,
    config: PathBuf,
    serial: std::cell::Cell<u32>,
}

impl<'a> Gen<'a> {
    fn new(dir: &'a Path) -> Self {
        let config = dir.join("openssl.cnf");
        std::fs::write(&config, OPENSSL_CONFIG).expect("openssl config");
        Gen {
            dir,
            config,
            serial: std::cell::Cell::new(1000),
        }
    }

    fn openssl(&self, args: &[&str]) -> String {
        super::run(Command::new("openssl").current_dir(self.dir).args(args))
    }

    fn key(&self, name: &str, kind: KeyKind) {
        let pem = format!("{name}.key");
        let mut args = vec!["genpkey"];
        args.extend_from_slice(kind.genpkey_args());
        args.extend_from_slice(&["-out", &pem]);
        self.openssl(&args);
    }

    fn self_signed(&self, name: &str, kind: KeyKind, cn: &str) -> TestKey {
        self.key(name, kind);
        let subject = format!("/CN={cn}");
        let config = self.config.to_str().expect("utf-8 path");
        let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
        self.openssl(&[
            "req",
            "-config",
            config,
            "-x509",
            "-new",
            "-key",
            &key,
            "-subj",
            &subject,
            "-days",
            "3650",
            "-extensions",
            "ca",
            "-out",
            &cert,
        ]);
        self.load(name, kind)
    }

    /// A key `name` and its certificate with `extensions`, issued by the CA `ca_name`.
    fn issued(&self, name: &str, kind: KeyKind, extensions: &str, ca_name: &str) -> TestKey {
        self.key(name, kind);
        let subject = format!("/CN=Ferry test {name}");
        let config = self.config.to_str().expect("utf-8 path");
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let (ca_cert, ca_key) = (format!("{ca_name}.crt"), format!("{ca_name}.key"));
        self.openssl(&[
            "req", "-config", config, "-new", "-key", &key, "-subj", &subject, "-out", &csr,
        ]);
        self.serial.set(self.serial.get() + 1);
        let serial = self.serial.get().to_string();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "3650",
            "-extfile",
            config,
            "-extensions",
            extensions,
            "-out",
            &cert,
        ]);
        self.load(name, kind)
    }

    fn load(&self, name: &str, kind: KeyKind) -> TestKey {
        let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
        let (pkcs8, spki, cert_der) = (
            format!("{name}.p8"),
            format!("{name}.spki"),
            format!("{name}.der"),
        );
        self.openssl(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER", "-out", &pkcs8,
        ]);
        self.openssl(&[
            "pkey", "-in", &key, "-pubout", "-outform", "DER", "-out", &spki,
        ]);
        self.openssl(&["x509", "-in", &cert, "-outform", "DER", "-out", &cert_der]);
        let rsa_modulus = if kind == KeyKind::Rsa {
            let out = self.openssl(&["rsa", "-in", &key, "-noout", "-modulus"]);
            let hex_modulus = out
                .trim()
                .strip_prefix("Modulus=")
                .expect("openssl -modulus");
            hex::decode(hex_modulus).expect("hex modulus")
        } else {
            Vec::new()
        };
        let read = |file: &str| std::fs::read(self.dir.join(file)).expect("openssl output");
        TestKey {
            kind,
            pkcs8: read(&pkcs8),
            spki: read(&spki),
            rsa_modulus,
            cert: read(&cert_der),
            cert_pem: String::from_utf8(read(&cert)).expect("PEM"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Minting tokens
// ---------------------------------------------------------------------------------------

/// How a token's header names its signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `x5c`: the leaf and the intermediate (the root is in the bundle).
    X5c,
    /// `jwk`: the public key.
    Jwk,
    /// `kid`: the RFC 7638 thumbprint.
    KidThumbprint,
    /// `kid`: the libtrust key id.
    KidLibtrust,
    /// Nothing.
    None,
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A token to be signed: edit `header` and `claims` freely, then [`Mint::sign`].
#[derive(Clone, Debug)]
pub struct Mint {
    pub header: Value,
    pub claims: Value,
}

impl Mint {
    /// A token from `issuer` for `service` naming `key` as `naming` says (for x5c, under the
    /// test PKI's intermediate), valid for five minutes, for `subject` with `access`.
    pub fn new(key: &TestKey, naming: Naming, issuer: &str, service: &str) -> Mint {
        let mut header = json!({"typ": "JWT", "alg": key.kind.alg()});
        match naming {
            Naming::X5c => header["x5c"] = json!(pki().chain(key)),
            Naming::Jwk => header["jwk"] = key.jwk(),
            Naming::KidThumbprint => header["kid"] = json!(key.thumbprint()),
            Naming::KidLibtrust => header["kid"] = json!(key.libtrust_id()),
            Naming::None => {}
        }
        let now = now_secs();
        Mint {
            header,
            claims: json!({
                "iss": issuer,
                "sub": "",
                "aud": service,
                "exp": now + 300,
                "nbf": now - 1,
                "iat": now - 1,
                "jti": uuid::Uuid::new_v4().simple().to_string(),
                "access": [],
            }),
        }
    }

    /// Sets `sub` and `access` (a list of `{"type","name","actions"}`).
    pub fn grant(mut self, subject: &str, access: Value) -> Mint {
        self.claims["sub"] = json!(subject);
        self.claims["access"] = access;
        self
    }

    /// The signing input `base64url(header).base64url(claims)`.
    pub fn signing_input(&self) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(self.header.to_string()),
            URL_SAFE_NO_PAD.encode(self.claims.to_string())
        )
    }

    /// Signs with `key` under the header's `alg`.
    pub fn sign(&self, key: &TestKey) -> String {
        let alg = self.header["alg"].as_str().expect("alg in the header");
        let input = self.signing_input();
        let signature = key.sign(alg, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

// ---------------------------------------------------------------------------------------
// The token server
// ---------------------------------------------------------------------------------------

/// What a caller may be granted: `kind:pattern:actions`. `pattern` is a repository name, or
/// ends in `*` to match every name with that prefix (`*` alone: all); `actions` may be `*`.
#[derive(Clone, Debug)]
pub struct Grant {
    pub kind: String,
    pub pattern: String,
    pub actions: Vec<String>,
}

impl Grant {
    /// `repository:<pattern>:<actions>`.
    pub fn repository(pattern: &str, actions: &[&str]) -> Grant {
        Grant {
            kind: "repository".into(),
            pattern: pattern.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Grant {
        Grant {
            kind: "registry".into(),
            pattern: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    fn matches(&self, kind: &str, name: &str) -> bool {
        self.kind == kind
            && match self.pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => self.pattern == name,
            }
    }
}

/// A user of the token server.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub name: String,
    pub password: String,
    pub grants: Vec<Grant>,
}

impl TestUser {
    pub fn new(name: &str, password: &str, grants: Vec<Grant>) -> TestUser {
        TestUser {
            name: name.into(),
            password: password.into(),
            grants,
        }
    }
}

/// How a [`TokenServer`] is set up.
#[derive(Clone, Debug)]
pub struct TokenServerConfig {
    pub service: String,
    pub issuer: String,
    /// The signing key: a leaf of the test PKI.
    pub key: KeyKind,
    /// How tokens name it. With `X5c` the bundle holds the root; otherwise the leaf's own
    /// certificate (as with docker_auth), so that its key is trusted directly.
    pub naming: Naming,
    /// Token lifetime, seconds.
    pub expires_in: i64,
    pub users: Vec<TestUser>,
    /// What callers without credentials get.
    pub anonymous: Vec<Grant>,
}

impl Default for TokenServerConfig {
    /// A `ci` user (password `ci-secret`) with every right, a `reader` (`reader-secret`) who
    /// may only pull, and nothing for anonymous callers; RSA keys named by `x5c`.
    fn default() -> Self {
        TokenServerConfig {
            service: "ferry-test".into(),
            issuer: "ferry-test-issuer".into(),
            key: KeyKind::Rsa,
            naming: Naming::X5c,
            expires_in: 300,
            users: vec![
                TestUser::new(
                    "ci",
                    "ci-secret",
                    vec![Grant::repository("*", &["*"]), Grant::catalog()],
                ),
                TestUser::new(
                    "reader",
                    "reader-secret",
                    vec![Grant::repository("*", &["pull"])],
                ),
            ],
            anonymous: Vec::new(),
        }
    }
}

/// A request the server answered (for assertions on what clients asked).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The authenticated user; `None` for anonymous requests.
    pub user: Option<String>,
    /// The requested scopes.
    pub scopes: Vec<String>,
    /// The `service` parameter.
    pub service: Option<String>,
}

/// A token server on `127.0.0.1:<random port>`, stopped when dropped.
pub struct TokenServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `http://127.0.0.1:PORT/token`: the registry's `auth.token.realm`.
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// The PEM file for `auth.token.rootcertbundle`.
    pub rootcertbundle: PathBuf,
    state: Arc<ServerState>,
    _server: super::http::BackgroundServer,
    _dir: tempfile::TempDir,
}

struct ServerState {
    config: TokenServerConfig,
    key: TestKey,
    requests: Mutex<Vec<TokenRequest>>,
}

impl TokenServer {
    /// Starts a server with [`TokenServerConfig::default`].
    pub fn start() -> TokenServer {
        TokenServer::start_with(TokenServerConfig::default())
    }

    /// Starts a server; works from synchronous and asynchronous tests alike (it runs on its
    /// own thread and runtime).
    pub fn start_with(config: TokenServerConfig) -> TokenServer {
        let key = pki().leaf(config.key).clone();
        let dir = tempfile::tempdir().expect("temp dir");
        let rootcertbundle = dir.path().join("rootcertbundle.pem");
        let bundle = match config.naming {
            Naming::X5c => &pki().root.cert_pem,
            _ => &key.cert_pem,
        };
        std::fs::write(&rootcertbundle, bundle).expect("write rootcertbundle");

        let state = Arc::new(ServerState {
            config: config.clone(),
            key,
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/token", get(token_get).post(token_post))
            .with_state(state.clone());
        let server = super::http::BackgroundServer::start(
            super::http::BackgroundServer::listener(),
            app,
            "token server",
        );
        let addr = server.addr;
        let url = format!("http://{addr}");
        TokenServer {
            addr,
            realm: format!("{url}/token"),
            url,
            service: config.service,
            issuer: config.issuer,
            rootcertbundle,
            state,
            _server: server,
            _dir: dir,
        }
    }

    /// The signing key.
    pub fn key(&self) -> &TestKey {
        &self.state.key
    }

    /// A token as this server would issue it (no rights, subject empty), to edit and sign
    /// with [`TokenServer::sign`].
    pub fn mint(&self) -> Mint {
        Mint::new(
            &self.state.key,
            self.state.config.naming,
            &self.issuer,
            &self.service,
        )
    }

    /// Signs `mint` with this server's key.
    pub fn sign(&self, mint: &Mint) -> String {
        mint.sign(&self.state.key)
    }

    /// A valid token for `subject` with `access`, without asking over HTTP.
    pub fn issue(&self, subject: &str, access: Value) -> String {
        self.sign(&self.mint().grant(subject, access))
    }

    /// Asks the server over HTTP, as a client would, for a token with `scopes`, as `user`
    /// (`(name, password)`) or anonymously.
    pub fn request(&self, user: Option<(&str, &str)>, scopes: &[&str]) -> super::Resp {
        let mut query = vec![("service", self.service.as_str())];
        query.extend(scopes.iter().map(|s| ("scope", *s)));
        let url = format!(
            "{}?{}",
            self.realm,
            serde_urlencoded::to_string(&query).expect("query")
        );
        let basic = user.map(|(name, password)| {
            format!("Basic {}", STANDARD.encode(format!("{name}:{password}")))
        });
        let headers: Vec<(&str, &str)> = basic
            .as_deref()
            .map(|b| ("authorization", b))
            .into_iter()
            .collect();
        super::http("GET", &url, &headers, None)
    }

    /// [`TokenServer::request`]'s token; panics unless the server answers 200.
    pub fn fetch(&self, user: Option<(&str, &str)>, scopes: &[&str]) -> String {
        let response = self.request(user, scopes);
        response.expect(200);
        response.json()["token"]
            .as_str()
            .expect("token in the answer")
            .to_string()
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("requests").clone()
    }

    /// Distribution's `auth.token` keys for this server, as `REGISTRY_*` overrides.
    pub fn registry_env(&self) -> Vec<(String, String)> {
        vec![
            ("REGISTRY_AUTH_TOKEN_REALM".into(), self.realm.clone()),
            ("REGISTRY_AUTH_TOKEN_SERVICE".into(), self.service.clone()),
            ("REGISTRY_AUTH_TOKEN_ISSUER".into(), self.issuer.clone()),
            (
                "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE".into(),
                self.rootcertbundle
                    .to_str()
                    .expect("utf-8 path")
                    .to_string(),
            ),
        ]
    }
}

/// Why a token request is refused.
enum Refusal {
    BadCredentials,
    WrongService,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::BadCredentials => (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    r#"Basic realm="ferry-test-token""#,
                )],
                json_body(&json!({"details": "incorrect username or password"})),
            )
                .into_response(),
            Refusal::WrongService => (
                StatusCode::BAD_REQUEST,
                json_body(&json!({"details": "unknown service"})),
            )
                .into_response(),
        }
    }
}

/// `GET /token?service=..&scope=..&scope=..` with optional basic auth.
async fn token_get(
    State(state): State<Arc<ServerState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    let service = param(&params, "service");
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string))
        .filter(|s| !s.is_empty())
        .collect();
    let user = basic_auth(&headers);
    let (token, issued_at) = state.answer(user, service, scopes)?;
    Ok(json_body(&json!({
        "token": token,
        "access_token": token,
        "expires_in": state.config.expires_in,
        "issued_at": issued_at,
    })))
}

/// `POST /token` (OAuth2 password grant, `application/x-www-form-urlencoded`).
async fn token_post(
    State(state): State<Arc<ServerState>>,
    body: String,
) -> Result<Response, Refusal> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap_or_default();
    let user = match (
        param(&params, "grant_type").as_deref(),
        param(&params, "username"),
    ) {
        (Some("password"), Some(name)) => {
            Some((name, param(&params, "password").unwrap_or_default()))
        }
        _ => None,
    };
    let scopes = param(&params, "scope")
        .map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let (token, issued_at) = state.answer(user, param(&params, "service"), scopes)?;
    Ok(json_body(&json!({
        "access_token": token,
        "expires_in": state.config.expires_in,
        "issued_at": issued_at,
    })))
}

/// A JSON response (status 200 unless a tuple around it says otherwise).
fn json_body(value: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// `(user, password)` of an `Authorization: Basic` header.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

impl ServerState {
    /// Authenticates, grants and signs; returns the token and its RFC 3339 issue time.
    fn answer(
        &self,
        credentials: Option<(String, String)>,
        service: Option<String>,
        scopes: Vec<String>,
    ) -> Result<(String, String), Refusal> {
        if service.as_deref().is_some_and(|s| s != self.config.service) {
            return Err(Refusal::WrongService);
        }
        let (subject, grants) = match &credentials {
            None => (None, &self.config.anonymous),
            Some((name, password)) => {
                let user = self
                    .config
                    .users
                    .iter()
                    .find(|u| &u.name == name && &u.password == password)
                    .ok_or(Refusal::BadCredentials)?;
                (Some(user.name.clone()), &user.grants)
            }
        };
        self.requests.lock().expect("requests").push(TokenRequest {
            user: subject.clone(),
            scopes: scopes.clone(),
            service,
        });
        let access: Vec<Value> = scopes
            .iter()
            .filter_map(|scope| granted(scope, grants))
            .collect();
        let mut mint = Mint::new(
            &self.key,
            self.config.naming,
            &self.config.issuer,
            &self.config.service,
        )
        .grant(subject.as_deref().unwrap_or_default(), json!(access));
        let now = now_secs();
        mint.claims["exp"] = json!(now + self.config.expires_in);
        let issued_at = chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok((mint.sign(&self.key), issued_at))
    }
}

/// The access entry granted for `scope` (`type:name:actions`), if any action is.
fn granted(scope: &str, grants: &[Grant]) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let allowed: Vec<&str> = actions
        .split(',')
        .filter(|action| {
            grants
                .iter()
                .any(|g| g.matches(kind, name) && g.actions.iter().any(|a| a == "*" || a == action))
        })
        .collect();
    (!allowed.is_empty()).then(|| json!({"type": kind, "name": name, "actions": allowed}))
}

/// Writes `keys` (JWKs) as a JWKS file in `dir`; returns its path.
pub fn write_jwks(dir: &Path, keys: &[Value]) -> PathBuf {
    let path = dir.join("jwks.json");
    std::fs::write(&path, json!({ "keys": keys }).to_string()).expect("write jwks");
    path
}
