//! `auth.htpasswd`: users and bcrypt hashes in an Apache htpasswd file (`htpasswd -Bbn`).
//!
//! - Lines are `user:hash`; hashes of kind `$2y$`, `$2a$` and `$2b$` are used; any other kind
//!   (MD5 `$apr1$`, SHA1 `{SHA}`, crypt) is ignored with a warning naming the line number.
//! - The file is re-read when its modification time or size changes, checked at most once
//!   a second, so users are added and removed without a restart. A file that cannot be read
//!   any more keeps the users last read (with an error logged).
//! - bcrypt is slow by design: it runs on tokio's blocking threads, and a successful
//!   verification is remembered for [`CACHE_TTL`], keyed by the SHA-256 of user, password and
//!   stored hash (never the password itself), so a pull of 50 layers costs one bcrypt run.
//!   Changing a user's hash in the file therefore invalidates its cache entries.
//! - An unknown user costs a bcrypt run too (against a fixed hash), so response times do
//!   not tell which users exist. bcrypt compares hashes in constant time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};

/// How long a successful verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// How often, at most, the file's modification time and size are looked at.
const RECHECK: Duration = Duration::from_secs(1);

/// Most cached verifications kept (entries expire anyway; this bounds memory).
const CACHE_MAX: usize = 10_000;

/// Why the htpasswd file cannot be used at start.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// The file cannot be read (missing, unreadable).
    #[error(
        "cannot read the htpasswd file {path} (auth.htpasswd.path): {source}; create it with `htpasswd -Bbc {path} <user> <password>`"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The users of an htpasswd file, kept current.
#[derive(Debug)]
pub struct Htpasswd {
    path: PathBuf,
    state: Mutex<FileState>,
    cache: Mutex<HashMap<[u8; 32], Instant>>,
}

#[derive(Debug)]
struct FileState {
    users: Arc<HashMap<String, String>>,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

impl Htpasswd {
    /// Reads the file; fails when it cannot be read.
    pub fn open(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let read_error = |source| HtpasswdError::Read {
            path: path.to_path_buf(),
            source,
        };
        let stamp = stamp(path).map_err(read_error)?;
        let text = std::fs::read(path).map_err(read_error)?;
        let users = parse(&String::from_utf8_lossy(&text), path);
        Ok(Htpasswd {
            path: path.to_path_buf(),
            state: Mutex::new(FileState {
                users: Arc::new(users),
                stamp: Some(stamp),
                checked: Instant::now(),
            }),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Number of usable users in the file as last read.
    pub fn user_count(&self) -> usize {
        self.users().len()
    }

    /// The users, re-reading the file first if it changed (checked at most once a second).
    fn users(&self) -> Arc<HashMap<String, String>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            match stamp(&self.path) {
                Ok(now) if Some(now) != state.stamp => match std::fs::read(&self.path) {
                    Ok(text) => {
                        let users = parse(&String::from_utf8_lossy(&text), &self.path);
                        tracing::info!(
                            path = %self.path.display(),
                            users = users.len(),
                            "htpasswd file changed; re-read"
                        );
                        state.users = Arc::new(users);
                        state.stamp = Some(now);
                    }
                    Err(e) => tracing::error!(
                        path = %self.path.display(),
                        error = %e,
                        "cannot re-read the htpasswd file; keeping the users last read"
                    ),
                },
                Ok(_) => {}
                Err(e) => tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "cannot look at the htpasswd file; keeping the users last read"
                ),
            }
        }
        state.users.clone()
    }

    /// Whether `password` is `user`'s.
    pub async fn verify(&self, user: &str, password: &str) -> bool {
        let users = self.users();
        let stored = users.get(user).cloned();
        let key = cache_key(user, password, stored.as_deref().unwrap_or(""));
        if stored.is_some() && self.cached(&key) {
            return true;
        }
        let password = password.to_string();
        let known = stored.is_some();
        let ok = tokio::task::spawn_blocking(move || {
            let hash = stored.unwrap_or_else(|| dummy_hash().to_string());
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
            && known;
        if ok {
            self.remember(key);
        }
        ok
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(key) {
            Some(at) if at.elapsed() < CACHE_TTL => true,
            Some(_) => {
                cache.remove(key);
                false
            }
            None => false,
        }
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, at| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, Instant::now());
    }
}

/// Modification time and size.
fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

/// The cache key: SHA-256 over the lengths and bytes of user, password and stored hash.
fn cache_key(user: &str, password: &str, stored: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [user, password, stored] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// A bcrypt hash of nothing in particular, verified for unknown users so that they take as
/// long as known ones.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        bcrypt::hash("ferry: no such user", bcrypt::DEFAULT_COST).unwrap_or_else(|_| {
            // Cannot happen (the cost is valid); a malformed hash only makes verify fail.
            String::new()
        })
    })
}

/// The `user:$2y$...` lines of `text`.
fn parse(text: &str, path: &Path) -> HashMap<String, String> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            tracing::warn!(
                path = %path.display(),
                line = i + 1,
                "htpasswd line without a colon ignored"
            );
            continue;
        };
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
            users.insert(user.to_string(), hash.to_string());
        } else {
            tracing::warn!(
                path = %path.display(),
                line = i + 1,
                "htpasswd entry ignored: only bcrypt hashes ($2y$, $2a$, $2b$) are supported; make it with `htpasswd -B`"
            );
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_lines_count() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text = format!(
            "# comment\nalice:{hash}\nbob:$apr1$abc$def\ncarol:{{SHA}}xyz\nnocolon\n\ndave:{}\n",
            hash.replacen("$2b$", "$2y$", 1)
        );
        let users = parse(&text, Path::new("x"));
        assert_eq!(users.len(), 2);
        assert!(users.contains_key("alice") && users.contains_key("dave"));
    }

    #[tokio::test]
    async fn verifies_caches_and_rereads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let h2y = bcrypt::hash("secret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        std::fs::write(&path, format!("alice:{h2y}\n")).unwrap();
        let file = Htpasswd::open(&path).unwrap();
        assert!(file.verify("alice", "secret").await);
        assert!(file.verify("alice", "secret").await);
        assert!(!file.verify("alice", "wrong").await);
        assert!(!file.verify("bob", "secret").await);
        assert_eq!(file.cache.lock().unwrap().len(), 1);

        let other = bcrypt::hash("new", 4).unwrap();
        std::fs::write(&path, format!("alice:{other}\nbob:{other}\n")).unwrap();
        // Force the next look at the file.
        file.state.lock().unwrap().checked = Instant::now() - RECHECK;
        file.state.lock().unwrap().stamp = None;
        assert!(!file.verify("alice", "secret").await);
        assert!(file.verify("bob", "new").await);
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let e = Htpasswd::open(Path::new("/nonexistent/htpasswd")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/htpasswd"), "{e}");
    }
}
