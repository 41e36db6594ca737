//! The little DER that public keys need: reading a `SubjectPublicKeyInfo` (RFC 5280) and a
//! PKCS#1 `RSAPublicKey` out of certificates, and writing them back canonically, as Go's
//! `x509.MarshalPKIXPublicKey` does, for libtrust key ids.
//!
//! Only certificates from the root bundle, or chains already verified up to it, reach the
//! reader: nothing a client sends is parsed here before a trusted signature covers it. The
//! reader never indexes out of bounds; anything unexpected is `None`.

/// `SEQUENCE`.
pub const SEQUENCE: u8 = 0x30;
/// `INTEGER`.
pub const INTEGER: u8 = 0x02;
/// `BIT STRING`.
pub const BIT_STRING: u8 = 0x03;
/// `NULL`.
pub const NULL: u8 = 0x05;
/// `OBJECT IDENTIFIER`.
pub const OID: u8 = 0x06;

/// rsaEncryption, 1.2.840.113549.1.1.1.
pub const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
pub const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7.
pub const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (P-384), 1.3.132.0.34.
pub const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// id-Ed25519, 1.3.101.112.
pub const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A cursor over DER input.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Reader(input)
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// Reads one element that must carry `tag`; returns its contents.
    pub fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&found, rest) = self.0.split_first()?;
        if found != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            // Long form with 1 to 3 length bytes (up to 16 MiB, far more than any key).
            0x81..=0x83 => {
                let count = usize::from(first & 0x7f);
                let (bytes, rest) = rest.split_at_checked(count)?;
                let len = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
                if len < 0x80 || bytes.first() == Some(&0) {
                    return None; // not the shortest form: not DER
                }
                (len, rest)
            }
            _ => return None, // indefinite or absurd lengths
        };
        let (contents, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some(contents)
    }

    /// Reads a non-negative `INTEGER`; returns its big-endian magnitude without leading zeros.
    pub fn read_unsigned(&mut self) -> Option<&'a [u8]> {
        let bytes = self.read(INTEGER)?;
        if bytes.first().is_none_or(|&b| b & 0x80 != 0) {
            return None; // empty or negative
        }
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        Some(&bytes[start..])
    }
}

/// A `SubjectPublicKeyInfo` taken apart.
pub struct Spki<'a> {
    /// The algorithm's OID contents.
    pub algorithm: &'a [u8],
    /// The named curve's OID contents, for EC keys.
    pub curve: Option<&'a [u8]>,
    /// The `subjectPublicKey` bits (a whole number of bytes).
    pub key: &'a [u8],
}

/// Parses a DER `SubjectPublicKeyInfo` (with its outer `SEQUENCE`).
pub fn parse_spki(der: &[u8]) -> Option<Spki<'_>> {
    let mut outer = Reader::new(der);
    let mut spki = Reader::new(outer.read(SEQUENCE)?);
    let mut algorithm_identifier = Reader::new(spki.read(SEQUENCE)?);
    let algorithm = algorithm_identifier.read(OID)?;
    let curve = match algorithm_identifier.peek_tag() {
        Some(OID) => Some(algorithm_identifier.read(OID)?),
        Some(NULL) => {
            algorithm_identifier.read(NULL)?;
            None
        }
        Some(_) => return None,
        None => None,
    };
    let bits = spki.read(BIT_STRING)?;
    let (&unused_bits, key) = bits.split_first()?;
    if unused_bits != 0 || !algorithm_identifier.is_empty() || !spki.is_empty() || !outer.is_empty()
    {
        return None;
    }
    Some(Spki {
        algorithm,
        curve,
        key,
    })
}

/// Parses a PKCS#1 `RSAPublicKey`; returns `(n, e)` without leading zeros.
pub fn parse_rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut outer = Reader::new(der);
    let mut key = Reader::new(outer.read(SEQUENCE)?);
    let n = key.read_unsigned()?;
    let e = key.read_unsigned()?;
    (key.is_empty() && outer.is_empty()).then_some((n, e))
}

/// One DER element: `tag`, the shortest length, `contents`.
pub fn element(tag: u8, contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        let significant = &bytes[skip..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(contents);
    out
}

/// A non-negative `INTEGER` from a big-endian magnitude.
pub fn unsigned(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude.iter().position(|&b| b != 0);
    let digits = start.map_or(&[][..], |s| &magnitude[s..]);
    let mut contents = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        contents.push(0); // zero, or a high bit that would read as negative
    }
    contents.extend_from_slice(digits);
    element(INTEGER, &contents)
}

/// A `SubjectPublicKeyInfo` for `algorithm` (and `parameters`, already encoded) over `key`.
pub fn spki(algorithm: &[u8], parameters: &[u8], key: &[u8]) -> Vec<u8> {
    let mut algorithm_identifier = element(OID, algorithm);
    algorithm_identifier.extend_from_slice(parameters);
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    let mut contents = element(SEQUENCE, &algorithm_identifier);
    contents.extend_from_slice(&element(BIT_STRING, &bits));
    element(SEQUENCE, &contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 300, 65_535, 65_536] {
            let contents = vec![7u8; len];
            let der = element(SEQUENCE, &contents);
            let mut reader = Reader::new(&der);
            assert_eq!(reader.read(SEQUENCE), Some(&contents[..]), "{len}");
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(unsigned(&[0, 0, 1]), vec![INTEGER, 1, 1]);
        assert_eq!(unsigned(&[0x80]), vec![INTEGER, 2, 0, 0x80]);
        assert_eq!(unsigned(&[]), vec![INTEGER, 1, 0]);
        let mut reader = Reader::new(&[INTEGER, 2, 0, 0x80]);
        assert_eq!(reader.read_unsigned(), Some(&[0x80][..]));
        let mut negative = Reader::new(&[INTEGER, 1, 0x80]);
        assert_eq!(negative.read_unsigned(), None);
    }

    #[test]
    fn truncated_or_odd_input_is_refused_without_panicking() {
        let good = spki(OID_ED25519, &[], &[9; 32]);
        assert!(parse_spki(&good).is_some());
        for cut in 0..good.len() {
            assert!(parse_spki(&good[..cut]).is_none(), "{cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_spki(&trailing).is_none());
        for bad in [
            &[SEQUENCE, 0x84, 0, 0, 0, 1][..],      // four length bytes
            &[SEQUENCE, 0x80],                      // indefinite length
            &[SEQUENCE, 0x81, 0x05, 0, 0, 0, 0, 0], // long form for a short length
            &[SEQUENCE, 0xff],
        ] {
            assert!(Reader::new(bad).read(SEQUENCE).is_none(), "{bad:?}");
        }
    }
}
