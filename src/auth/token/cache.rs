//! Tokens verified recently: the same bearer token comes with every request of a pull, and
//! verifying its signature (RSA, ECDSA) costs more than serving a manifest. Entries are keyed
//! by the SHA-256 of the token (never the token itself), hold what verification found, and
//! are used until the earlier of [`CACHE_TTL`] after verification and the token's own
//! expiry (with the leeway verification allows): a cached answer is never one verification
//! would not give.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use super::{LEEWAY_SECS, VerifiedToken};

/// How long a verification is reused (seconds).
pub const CACHE_TTL: i64 = 60;

/// Most tokens remembered; when full, expired entries go, and if none had, all.
const CACHE_MAX: usize = 10_000;

/// The cache key of a token.
pub fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified tokens by key, each with the Unix second it stops being used.
#[derive(Default)]
pub struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], (VerifiedToken, i64)>>,
}

impl VerifiedCache {
    /// What verifying the token gave, if that was recent enough and it has not expired.
    pub fn get(&self, key: &[u8; 32], now: i64) -> Option<VerifiedToken> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((verified, until)) if now <= *until => Some(verified.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers a token verified at `now`.
    pub fn put(&self, key: [u8; 32], verified: &VerifiedToken, now: i64) {
        let until = now
            .saturating_add(CACHE_TTL)
            .min(verified.expires.saturating_add(LEEWAY_SECS));
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (_, until)| now <= *until);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key, (verified.clone(), until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(expires: i64) -> VerifiedToken {
        VerifiedToken {
            subject: "ci".into(),
            expires,
            access: vec![],
        }
    }

    #[test]
    fn entries_last_until_the_ttl_or_the_tokens_expiry() {
        let cache = VerifiedCache::default();
        let (a, b) = (key("token a"), key("token b"));
        cache.put(a, &verified(10_000), 1_000);
        assert!(cache.get(&a, 1_000 + CACHE_TTL).is_some());
        assert!(cache.get(&a, 1_001 + CACHE_TTL).is_none());
        // Past its exp but within the leeway when verified: used only as long as
        // verification would still accept it, not the whole TTL.
        let expires = 1_000 - LEEWAY_SECS + 10;
        cache.put(b, &verified(expires), 1_000);
        assert!(cache.get(&b, 1_010).is_some());
        assert!(cache.get(&b, 1_011).is_none());
        assert!(cache.get(&key("unknown"), 1_000).is_none());
    }
}
