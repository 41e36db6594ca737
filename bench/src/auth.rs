//! Access control for `--auth`: the credentials both registries are started
//! with and the `Authorization` header the bench client sends on every request.
//!
//! - `htpasswd`: one user in an htpasswd file whose bcrypt hash is made here
//!   at cost 5, what `htpasswd -B` writes by default (`$2y$05$...`); the client
//!   sends `Authorization: Basic` on every request, as docker does after a login.
//! - `token`: a self-signed RSA certificate made with the `openssl` CLI is the
//!   `rootcertbundle`; the bench mints one RS256 JWT (signed by `openssl dgst
//!   -sha256 -sign`, which is exactly JWS RS256) whose header carries the
//!   certificate as `x5c` (Distribution 2.8 and Ferry both accept a chain that
//!   is one bundle certificate) and whose `access` grants pull and push on the
//!   bench's repositories; the client sends `Authorization: Bearer` with it on
//!   every request, as docker does with the token it fetched from a token
//!   server. No token server runs: the realm is never contacted.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Htpasswd,
    Token,
}

impl AuthMode {
    pub fn parse(s: &str) -> Result<AuthMode> {
        match s.trim() {
            "none" | "open" => Ok(AuthMode::None),
            "htpasswd" => Ok(AuthMode::Htpasswd),
            "token" => Ok(AuthMode::Token),
            other => bail!("--auth {other}: expected none, htpasswd or token"),
        }
    }

    /// Suffix of column labels ("" for the open registry, as before).
    pub fn suffix(self) -> &'static str {
        match self {
            AuthMode::None => "",
            AuthMode::Htpasswd => " htpasswd",
            AuthMode::Token => " token",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthMode::None => "open",
            AuthMode::Htpasswd => "htpasswd",
            AuthMode::Token => "token",
        }
    }
}

pub const REALM: &str = "ferry-bench";
pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench-secret";
/// `htpasswd -B`'s default cost.
pub const BCRYPT_COST: u32 = 5;
/// Never contacted: the bench mints its token itself.
pub const TOKEN_REALM: &str = "http://127.0.0.1:9/token";
pub const SERVICE: &str = "ferry-bench";
pub const ISSUER: &str = "ferry-bench-issuer";

/// What one registry is started with.
#[derive(Clone, Debug)]
pub enum ServerAuth {
    Htpasswd { path: PathBuf },
    Token { rootcertbundle: PathBuf },
}

impl ServerAuth {
    /// Environment overrides for `ferry serve`.
    pub fn ferry_env(&self) -> Vec<(&'static str, String)> {
        match self {
            ServerAuth::Htpasswd { path } => vec![
                ("REGISTRY_AUTH_HTPASSWD_REALM", REALM.into()),
                ("REGISTRY_AUTH_HTPASSWD_PATH", path.display().to_string()),
            ],
            ServerAuth::Token { rootcertbundle } => vec![
                ("REGISTRY_AUTH_TOKEN_REALM", TOKEN_REALM.into()),
                ("REGISTRY_AUTH_TOKEN_SERVICE", SERVICE.into()),
                ("REGISTRY_AUTH_TOKEN_ISSUER", ISSUER.into()),
                (
                    "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE",
                    rootcertbundle.display().to_string(),
                ),
            ],
        }
    }

    /// The `auth:` section of a Distribution config.yml.
    pub fn distribution_yaml(&self) -> String {
        match self {
            ServerAuth::Htpasswd { path } => format!(
                "auth:\n  htpasswd:\n    realm: {REALM}\n    path: {}\n",
                path.display()
            ),
            ServerAuth::Token { rootcertbundle } => format!(
                "auth:\n  token:\n    realm: {TOKEN_REALM}\n    service: {SERVICE}\n    \
                 issuer: {ISSUER}\n    rootcertbundle: {}\n",
                rootcertbundle.display()
            ),
        }
    }
}

/// The files and header of one auth mode.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub server: ServerAuth,
    /// `Authorization` header value the client sends on every request.
    pub header: String,
}

/// Writes the htpasswd file under `dir`.
pub fn htpasswd(dir: &Path) -> Result<Prepared> {
    std::fs::create_dir_all(dir)?;
    let hash = bcrypt::hash_with_result(PASSWORD, BCRYPT_COST)
        .context("bcrypt")?
        .format_for_version(bcrypt::Version::TwoY);
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("{USER}:{hash}\n"))?;
    Ok(Prepared {
        server: ServerAuth::Htpasswd { path },
        header: format!(
            "Basic {}",
            base64(format!("{USER}:{PASSWORD}").as_bytes(), STANDARD, true)
        ),
    })
}

/// Makes the certificate under `dir` and mints one token granting pull and
/// push on `repos`, valid for `valid`.
pub fn token(dir: &Path, repos: &[String], valid: Duration) -> Result<Prepared> {
    std::fs::create_dir_all(dir)?;
    let (key, cert, der) = (
        dir.join("token.key"),
        dir.join("token.crt"),
        dir.join("token.der"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            path_str(&key)?,
            "-out",
            path_str(&cert)?,
            "-subj",
            "/CN=ferry-bench token issuer",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,digitalSignature",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-in",
            path_str(&cert)?,
            "-outform",
            "DER",
            "-out",
            path_str(&der)?,
        ],
    )?;
    let x5c = base64(&std::fs::read(&der)?, STANDARD, true);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let header = format!(r#"{{"typ":"JWT","alg":"RS256","x5c":["{x5c}"]}}"#);
    let access: Vec<String> = repos
        .iter()
        .map(|r| format!(r#"{{"type":"repository","name":"{r}","actions":["pull","push"]}}"#))
        .collect();
    let claims = format!(
        r#"{{"iss":"{ISSUER}","sub":"{USER}","aud":"{SERVICE}","exp":{},"nbf":{},"iat":{},"jti":"ferry-bench-{now}","access":[{}]}}"#,
        now + valid.as_secs(),
        now - 1,
        now - 1,
        access.join(",")
    );
    let input = format!(
        "{}.{}",
        base64(header.as_bytes(), URL_SAFE, false),
        base64(claims.as_bytes(), URL_SAFE, false)
    );
    let (input_path, sig_path) = (dir.join("token.input"), dir.join("token.sig"));
    std::fs::write(&input_path, &input)?;
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            path_str(&key)?,
            "-out",
            path_str(&sig_path)?,
            path_str(&input_path)?,
        ],
    )?;
    let sig = std::fs::read(&sig_path)?;
    if sig.len() != 256 {
        bail!("openssl dgst -sign wrote {} bytes, expected 256", sig.len());
    }
    let jwt = format!("{input}.{}", base64(&sig, URL_SAFE, false));
    Ok(Prepared {
        server: ServerAuth::Token {
            rootcertbundle: cert,
        },
        header: format!("Bearer {jwt}"),
    })
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// Runs `openssl` with `args` in `dir` (for `--auth token` and `--tls`).
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running openssl (needed for --auth token and --tls)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed ({}): {}",
            args.first().unwrap_or(&""),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 base64 with `alphabet`, padded with `=` when `pad`.
fn base64(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes(), STANDARD, true), encoded);
            assert_eq!(
                base64(plain.as_bytes(), URL_SAFE, false),
                encoded.trim_end_matches('=')
            );
        }
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE, false), "-_8");
    }
}
