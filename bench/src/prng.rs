//! Fast seeded PRNG (xoshiro256++) used to generate blob contents on the fly.
//!
//! A blob is fully described by `(seed, len)`: its bytes are the little-endian
//! concatenation of the generator's outputs, truncated to `len`. Every fill
//! except the last one must be a multiple of 8 bytes so that the byte stream
//! does not depend on how it is chunked.

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        Rng {
            s: [
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
                splitmix64(&mut x),
            ],
        }
    }

    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rem = chunks.into_remainder();
        if !rem.is_empty() {
            let v = self.next_u64().to_le_bytes();
            let n = rem.len();
            rem.copy_from_slice(&v[..n]);
        }
    }
}

/// Derive a seed from a few labels (stable across registries and runs).
pub fn seed_of(parts: &[u64]) -> u64 {
    let mut x = 0x5EED_F00D_u64;
    for p in parts {
        x ^= *p;
        x = splitmix64(&mut x);
    }
    x
}

/// Generates the bytes of a blob in chunks of `chunk` bytes (multiple of 8).
pub struct BlobReader {
    rng: Rng,
    remaining: u64,
    chunk: usize,
}

impl BlobReader {
    pub fn new(seed: u64, len: u64, chunk: usize) -> Self {
        assert!(chunk.is_multiple_of(8) && chunk > 0);
        BlobReader {
            rng: Rng::new(seed),
            remaining: len,
            chunk,
        }
    }

    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let n = (self.remaining.min(self.chunk as u64)) as usize;
        let mut b = BytesMut::zeroed(n);
        self.rng.fill(&mut b);
        self.remaining -= n as u64;
        Some(b.freeze())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// A blob's bytes in memory with their digest: what a timed push sends.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub bytes: Bytes,
}

impl Blob {
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The bytes in pieces of `piece` bytes, each a view of the same memory.
    pub fn pieces(&self, piece: usize) -> impl Iterator<Item = Bytes> + Send + 'static {
        let bytes = self.bytes.clone();
        (0..bytes.len())
            .step_by(piece.max(1))
            .map(move |at| bytes.slice(at..bytes.len().min(at + piece)))
    }
}

/// A blob described by its seed and length, with its precomputed digest.
#[derive(Clone, Debug)]
pub struct BlobSpec {
    pub seed: u64,
    pub len: u64,
    pub digest: String,
}

impl BlobSpec {
    /// Computes the digest by streaming the generator through SHA-256 (never
    /// holds the blob in memory).
    pub fn compute(seed: u64, len: u64) -> BlobSpec {
        let mut rng = Rng::new(seed);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 4 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            h.update(&buf[..n]);
            left -= n as u64;
        }
        BlobSpec {
            seed,
            len,
            digest: format!("sha256:{}", hex(&h.finalize())),
        }
    }

    /// Computes many specs on all cores.
    pub fn compute_many(items: &[(u64, u64)]) -> Vec<BlobSpec> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let out: Vec<std::sync::Mutex<Option<BlobSpec>>> =
            items.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..threads.min(items.len().max(1)) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= items.len() {
                            break;
                        }
                        let (seed, len) = items[i];
                        *out[i].lock().unwrap() = Some(BlobSpec::compute(seed, len));
                    }
                });
            }
        });
        out.into_iter()
            .map(|m| m.into_inner().unwrap().unwrap())
            .collect()
    }

    /// The blob made in memory (untimed), for a push.
    pub fn generate(&self) -> Blob {
        Blob {
            digest: self.digest.clone(),
            bytes: self.bytes(),
        }
    }

    pub fn reader(&self, chunk: usize) -> BlobReader {
        BlobReader::new(self.seed, self.len, chunk)
    }

    /// The whole blob in memory. Timed pushes send blobs made ahead of time, so the client
    /// spends its CPU on sending, not on making bytes (generating 1 GiB on the fly cost the
    /// client ~0.35 CPU-s, on the two cores the registry under test has).
    pub fn bytes(&self) -> Bytes {
        let mut b = BytesMut::zeroed(self.len as usize);
        Rng::new(self.seed).fill(&mut b);
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_does_not_change_bytes() {
        let spec = BlobSpec::compute(7, 1 << 20 | 5);
        let mut whole = Vec::new();
        let mut r = spec.reader(4096);
        while let Some(c) = r.next_chunk() {
            whole.extend_from_slice(&c);
        }
        assert_eq!(whole.len() as u64, spec.len);
        assert_eq!(sha256_digest(&whole), spec.digest);
        assert_eq!(spec.bytes(), Bytes::from(whole));
    }
}
