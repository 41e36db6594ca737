//! Bearer token verification (`ferry::auth::token`) against tokens signed with keys and
//! certificates made by openssl: every key kind named by `x5c`, `jwk` and `kid` (RFC 7638
//! thumbprint, libtrust id, JWKS id), and the refusals: times, audience, issuer, signature,
//! unknown keys, foreign chains, `alg: none`, HS256 with the public key as secret, huge and
//! garbled tokens. And the test token server itself.

mod support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ferry::auth::token::{
    MAX_TOKEN_LEN, TokenError, TokenSettings, TokenSetupError, TokenVerifier, VerifiedToken,
};
use serde_json::{Value, json};
use support::token::*;

const ISSUER: &str = "test-issuer";
const SERVICE: &str = "test-registry";

/// A verifier trusting the PEM certificates `bundle` (and the JWKS `jwks`, if any).
struct Verifier {
    verifier: TokenVerifier,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Verifier {
    type Target = TokenVerifier;
    fn deref(&self) -> &TokenVerifier {
        &self.verifier
    }
}

fn settings(bundle: Option<PathBuf>, jwks: Option<PathBuf>) -> TokenSettings {
    TokenSettings {
        realm: "https://auth.example/token".into(),
        service: SERVICE.into(),
        issuer: ISSUER.into(),
        rootcertbundle: bundle,
        jwks,
        autoredirect: false,
        signing_algorithms: Vec::new(),
    }
}

fn verifier_with(bundle: &[&TestKey], jwks: Option<&[Value]>, algorithms: &[&str]) -> Verifier {
    let dir = tempfile::tempdir().unwrap();
    let bundle_path = (!bundle.is_empty()).then(|| {
        let path = dir.path().join("bundle.pem");
        let pem: String = bundle.iter().map(|k| k.cert_pem.as_str()).collect();
        std::fs::write(&path, pem).unwrap();
        path
    });
    let jwks_path = jwks.map(|keys| write_jwks(dir.path(), keys));
    let mut settings = settings(bundle_path, jwks_path);
    settings.signing_algorithms = algorithms.iter().map(|a| a.to_string()).collect();
    Verifier {
        verifier: TokenVerifier::new(settings).expect("verifier"),
        _dir: dir,
    }
}

/// Trusts the test PKI's root: for `x5c` chains.
fn root_verifier() -> Verifier {
    verifier_with(&[&pki().root], None, &[])
}

/// Trusts every leaf certificate of the test PKI directly: for `jwk` and `kid`.
fn leaf_verifier() -> Verifier {
    let leaves: Vec<&TestKey> = KeyKind::ALL.iter().map(|&k| pki().leaf(k)).collect();
    verifier_with(&leaves, None, &[])
}

fn mint(key: &TestKey, naming: Naming) -> Mint {
    Mint::new(key, naming, ISSUER, SERVICE)
}

fn pull_push(name: &str) -> Value {
    json!([{"type": "repository", "name": name, "actions": ["pull", "push"]}])
}

#[track_caller]
fn accepted(verifier: &TokenVerifier, token: &str) -> VerifiedToken {
    verifier
        .verify(token)
        .unwrap_or_else(|e| panic!("token refused: {e}"))
}

#[track_caller]
fn refused(verifier: &TokenVerifier, token: &str) -> TokenError {
    let err = verifier.verify(token).expect_err("token accepted");
    let message = err.to_string();
    if token.len() > 16 {
        assert!(
            !message.contains(token),
            "the message shows the token: {message}"
        );
    }
    err
}

// ---------------------------------------------------------------------------------------
// Accepted: every key kind, every way of naming the key
// ---------------------------------------------------------------------------------------

#[test]
fn every_key_kind_verifies_by_x5c_chain() {
    let v = root_verifier();
    for kind in KeyKind::ALL {
        let key = pki().leaf(kind);
        let token = mint(key, Naming::X5c)
            .grant("ci", pull_push("team/app"))
            .sign(key);
        let verified = accepted(&v, &token);
        assert_eq!(verified.subject, "ci", "{kind:?}");
        assert_eq!(verified.access.len(), 1);
        assert_eq!(verified.access[0].kind, "repository");
        assert_eq!(verified.access[0].name, "team/app");
        assert_eq!(verified.access[0].actions, ["pull", "push"]);
    }
}

#[test]
fn every_key_kind_verifies_by_jwk_and_both_kids() {
    let v = leaf_verifier();
    for kind in KeyKind::ALL {
        let key = pki().leaf(kind);
        for naming in [Naming::Jwk, Naming::KidThumbprint, Naming::KidLibtrust] {
            let token = mint(key, naming).grant("ci", pull_push("a/b")).sign(key);
            assert_eq!(accepted(&v, &token).subject, "ci", "{kind:?} {naming:?}");
        }
    }
}

#[test]
fn the_bundle_roots_own_keys_are_trusted_by_kid() {
    // Distribution trusts the bundle certificates' keys for kid and jwk, CAs included.
    let v = root_verifier();
    let root = &pki().root;
    for naming in [Naming::Jwk, Naming::KidThumbprint, Naming::KidLibtrust] {
        accepted(&v, &mint(root, naming).sign(root));
    }
}

#[test]
fn rsa_signs_with_every_rsa_algorithm() {
    let v = root_verifier();
    let key = pki().leaf(KeyKind::Rsa);
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
        let mut m = mint(key, Naming::X5c);
        m.header["alg"] = json!(alg);
        accepted(&v, &m.sign(key));
    }
}

#[test]
fn jwks_keys_are_found_by_their_kid_thumbprint_and_libtrust_id() {
    let keys: Vec<Value> = KeyKind::ALL
        .iter()
        .map(|&kind| {
            let mut jwk = pki().leaf(kind).jwk();
            jwk["kid"] = json!(format!("key-{kind:?}"));
            jwk["use"] = json!("sig");
            jwk
        })
        .collect();
    let v = verifier_with(&[], Some(&keys), &[]);
    for kind in KeyKind::ALL {
        let key = pki().leaf(kind);
        let mut by_jwks_kid = mint(key, Naming::None);
        by_jwks_kid.header["kid"] = json!(format!("key-{kind:?}"));
        accepted(&v, &by_jwks_kid.sign(key));
        for naming in [Naming::KidThumbprint, Naming::KidLibtrust, Naming::Jwk] {
            accepted(&v, &mint(key, naming).sign(key));
        }
    }
}

#[test]
fn a_self_signed_bundle_certificate_may_be_the_whole_chain() {
    // docker_auth style: the token server's own self-signed (CA:TRUE) certificate is the
    // bundle, and tokens carry it as x5c.
    let key = &pki().self_signed;
    let v = verifier_with(&[key], None, &[]);
    let mut m = mint(key, Naming::None);
    m.header["x5c"] = json!([key.x5c_entry()]);
    accepted(&v, &m.sign(key));
}

#[test]
fn a_jwk_header_may_carry_its_own_chain() {
    let v = root_verifier();
    let key = pki().leaf(KeyKind::P256);
    let mut m = mint(key, Naming::Jwk);
    m.header["jwk"]["x5c"] = json!(pki().chain(key));
    accepted(&v, &m.sign(key));

    // The chain must be the jwk's own key's.
    let other = pki().leaf(KeyKind::Rsa);
    let mut m = mint(key, Naming::Jwk);
    m.header["jwk"]["x5c"] = json!(pki().chain(other));
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::UntrustedChain(_)
    ));
}

#[test]
fn audience_may_be_a_list_and_access_may_be_missing() {
    let v = root_verifier();
    let key = pki().leaf(KeyKind::Ed25519);
    let mut m = mint(key, Naming::X5c);
    m.claims["aud"] = json!(["other", SERVICE]);
    m.claims["sub"] = json!("alice");
    m.claims.as_object_mut().unwrap().remove("access");
    m.claims.as_object_mut().unwrap().remove("nbf");
    m.claims.as_object_mut().unwrap().remove("iat");
    let verified = accepted(&v, &m.sign(key));
    assert_eq!(verified.subject, "alice");
    assert!(verified.access.is_empty());

    let catalog = json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]);
    let verified = accepted(&v, &mint(key, Naming::X5c).grant("ci", catalog).sign(key));
    assert_eq!(verified.access[0].kind, "registry");
    assert_eq!(verified.access[0].name, "catalog");
    assert_eq!(verified.access[0].actions, ["*"]);
}

// ---------------------------------------------------------------------------------------
// Refused: claims
// ---------------------------------------------------------------------------------------

#[test]
fn expired_not_yet_valid_and_undated_tokens_are_refused() {
    let v = root_verifier();
    let key = pki().leaf(KeyKind::P256);
    let now = now_secs();

    let mut m = mint(key, Naming::X5c);
    m.claims["exp"] = json!(now - 3600);
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::Expired { .. }
    ));

    let mut m = mint(key, Naming::X5c);
    m.claims["nbf"] = json!(now + 3600);
    m.claims["exp"] = json!(now + 7200);
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::NotYetValid { .. }
    ));

    let mut m = mint(key, Naming::X5c);
    m.claims.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::MissingExpiry
    ));

    // A time of the wrong type is malformed, not absent (the jsonwebtoken 9 bypass).
    let mut m = mint(key, Naming::X5c);
    m.claims["nbf"] = json!((now + 3600).to_string());
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::Malformed(_)
    ));
}

#[test]
fn tokens_for_another_service_or_from_another_issuer_are_refused() {
    let v = root_verifier();
    let key = pki().leaf(KeyKind::Rsa);

    let mut m = mint(key, Naming::X5c);
    m.claims["aud"] = json!("another-registry");
    match refused(&v, &m.sign(key)) {
        TokenError::WrongAudience { found, expected } => {
            assert_eq!(found, ["another-registry"]);
            assert_eq!(expected, SERVICE);
        }
        other => panic!("{other}"),
    }
    let mut m = mint(key, Naming::X5c);
    m.claims.as_object_mut().unwrap().remove("aud");
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::WrongAudience { .. }
    ));

    let mut m = mint(key, Naming::X5c);
    m.claims["iss"] = json!("someone-else");
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::WrongIssuer { .. }
    ));
}

// ---------------------------------------------------------------------------------------
// Refused: keys, chains, signatures, algorithms
// ---------------------------------------------------------------------------------------

#[test]
fn a_wrong_signature_is_refused() {
    let v = root_verifier();
    let key = pki().leaf(KeyKind::Rsa);
    // Signed by another RSA key while naming the trusted chain.
    let forged = mint(key, Naming::X5c).sign(&pki().rogue_leaf);
    assert!(matches!(refused(&v, &forged), TokenError::BadSignature));

    // Claims changed after signing.
    let token = mint(key, Naming::X5c).grant("reader", json!([])).sign(key);
    let (input, signature) = token.rsplit_once('.').unwrap();
    let (header, _) = input.split_once('.').unwrap();
    let mut claims: Value = mint(key, Naming::X5c).claims;
    claims["access"] = pull_push("*");
    let tampered = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert!(matches!(refused(&v, &tampered), TokenError::BadSignature));

    // No signature at all.
    assert!(matches!(
        refused(&v, &format!("{input}.")),
        TokenError::BadSignature
    ));
}

#[test]
fn unknown_keys_are_refused() {
    let v = leaf_verifier();
    let rogue = &pki().rogue_leaf;
    for naming in [Naming::KidThumbprint, Naming::KidLibtrust, Naming::Jwk] {
        assert!(
            matches!(
                refused(&v, &mint(rogue, naming).sign(rogue)),
                TokenError::UnknownKey(_)
            ),
            "{naming:?}"
        );
    }
    let mut m = mint(rogue, Naming::None);
    m.header["kid"] = json!("ABCD:EFGH:IJKL:MNOP:QRST:UVWX:YZ23:4567:ABCD:EFGH:IJKL:MNOP");
    assert!(matches!(
        refused(&v, &m.sign(rogue)),
        TokenError::UnknownKey(_)
    ));
    assert!(matches!(
        refused(&v, &mint(rogue, Naming::None).sign(rogue)),
        TokenError::NoKeyNamed
    ));
    // A trusted key's kid, but the token's jwk header (checked first) is another key.
    let key = pki().leaf(KeyKind::Rsa);
    let mut m = mint(key, Naming::KidLibtrust);
    m.header["jwk"] = rogue.jwk();
    assert!(matches!(
        refused(&v, &m.sign(rogue)),
        TokenError::UnknownKey(_)
    ));
}

#[test]
fn chains_not_ending_in_the_bundle_are_refused() {
    let v = root_verifier();
    let rogue = &pki().rogue_leaf;
    // A chain to another root with the same name.
    let mut m = mint(rogue, Naming::None);
    m.header["x5c"] = json!([rogue.x5c_entry(), pki().rogue_root.x5c_entry()]);
    assert!(matches!(
        refused(&v, &m.sign(rogue)),
        TokenError::UntrustedChain(_)
    ));
    // The intermediate left out.
    let key = pki().leaf(KeyKind::P384);
    let mut m = mint(key, Naming::None);
    m.header["x5c"] = json!([key.x5c_entry()]);
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::UntrustedChain(_)
    ));
    // A leaf certificate (CA:FALSE) cannot act as a CA for another one.
    let by_leaf = &pki().by_leaf;
    let signer = pki().leaf(KeyKind::P256);
    let mut m = mint(by_leaf, Naming::None);
    m.header["x5c"] = json!([
        by_leaf.x5c_entry(),
        signer.x5c_entry(),
        pki().intermediate.x5c_entry()
    ]);
    assert!(matches!(
        refused(&v, &m.sign(by_leaf)),
        TokenError::UntrustedChain(_)
    ));
    // Bytes that are no certificate.
    let mut m = mint(key, Naming::None);
    m.header["x5c"] = json!([STANDARD.encode(b"not a certificate")]);
    assert!(matches!(
        refused(&v, &m.sign(key)),
        TokenError::UntrustedChain(_)
    ));
}

#[test]
fn an_expired_chain_is_refused() {
    // The certificates are valid for ten years: verify eleven years ahead, with claims
    // valid then.
    let v = root_verifier();
    let key = pki().leaf(KeyKind::Ed25519);
    let later = SystemTime::now() + Duration::from_secs(11 * 365 * 24 * 3600);
    let later_secs = later
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut m = mint(key, Naming::X5c);
    m.claims["exp"] = json!(later_secs + 300);
    m.claims["nbf"] = json!(later_secs - 1);
    let token = m.sign(key);
    let err = v.verify_at(&token, later).expect_err("accepted");
    assert!(matches!(err, TokenError::UntrustedChain(_)), "{err}");
    // The same token by kid: the bundle key has no dates.
    let leaves = leaf_verifier();
    let mut m = mint(key, Naming::KidThumbprint);
    m.claims["exp"] = json!(later_secs + 300);
    m.claims["nbf"] = json!(later_secs - 1);
    leaves.verify_at(&m.sign(key), later).unwrap();
}

#[test]
fn alg_none_is_refused() {
    let v = leaf_verifier();
    let key = pki().leaf(KeyKind::Rsa);
    for alg in ["none", "None", "NONE", ""] {
        let mut m = mint(key, Naming::KidThumbprint);
        m.header["alg"] = json!(alg);
        let unsigned = format!("{}.", m.signing_input());
        assert!(
            matches!(refused(&v, &unsigned), TokenError::AlgorithmNotAllowed(_)),
            "{alg}"
        );
        let with_signature = format!("{unsigned}{}", URL_SAFE_NO_PAD.encode(b"x"));
        assert!(matches!(
            refused(&v, &with_signature),
            TokenError::AlgorithmNotAllowed(_)
        ));
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let key = pki().leaf(KeyKind::Rsa);
    let public_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD
            .encode(&key.spki)
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Even where HS256 is listed (Distribution's default list has it), and with every way of
    // naming the key.
    for v in [
        leaf_verifier(),
        verifier_with(&[key], None, &["HS256", "RS256"]),
    ] {
        for naming in [Naming::KidThumbprint, Naming::KidLibtrust, Naming::Jwk] {
            for secret in [public_pem.as_bytes(), &key.spki[..], &key.cert[..]] {
                let mut m = mint(key, naming);
                m.header["alg"] = json!("HS256");
                let input = m.signing_input();
                let mac = ring::hmac::sign(
                    &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
                    input.as_bytes(),
                );
                let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
                match refused(&v, &token) {
                    TokenError::AlgorithmNotAllowed(alg) => assert_eq!(alg, "HS256"),
                    other => panic!("{other}"),
                }
            }
        }
    }
}

#[test]
fn alg_must_fit_the_key_and_the_configured_list() {
    let v = root_verifier();
    let rsa = pki().leaf(KeyKind::Rsa);
    let mut m = mint(rsa, Naming::X5c);
    m.header["alg"] = json!("ES256");
    assert!(matches!(
        refused(&v, &m.sign(pki().leaf(KeyKind::P256))),
        TokenError::AlgorithmKeyMismatch { .. }
    ));
    let p256 = pki().leaf(KeyKind::P256);
    let mut m = mint(p256, Naming::X5c);
    m.header["alg"] = json!("ES384");
    assert!(matches!(
        refused(&v, &m.sign(pki().leaf(KeyKind::P384))),
        TokenError::AlgorithmKeyMismatch { .. }
    ));

    let only_ec = verifier_with(&[&pki().root], None, &["ES256", "ES384"]);
    assert!(matches!(
        refused(&only_ec, &mint(rsa, Naming::X5c).sign(rsa)),
        TokenError::AlgorithmNotAllowed(_)
    ));
    accepted(&only_ec, &mint(p256, Naming::X5c).sign(p256));

    // A JWKS key that names its algorithm is used with that one only.
    let mut jwk = rsa.jwk();
    jwk["alg"] = json!("RS256");
    let pinned = verifier_with(&[], Some(&[jwk]), &[]);
    accepted(&pinned, &mint(rsa, Naming::KidThumbprint).sign(rsa));
    let mut m = mint(rsa, Naming::KidThumbprint);
    m.header["alg"] = json!("PS256");
    assert!(matches!(
        refused(&pinned, &m.sign(rsa)),
        TokenError::KeyAlgorithmMismatch { .. }
    ));
}

// ---------------------------------------------------------------------------------------
// Refused: size and garbage, never a panic
// ---------------------------------------------------------------------------------------

#[test]
fn huge_tokens_are_refused_before_parsing() {
    let v = root_verifier();
    let garbage = "a".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(refused(&v, &garbage), TokenError::TooLarge { .. }));
    let key = pki().leaf(KeyKind::P256);
    let many: Vec<Value> = (0..400)
        .map(
            |i| json!({"type": "repository", "name": format!("team/app-{i}"), "actions": ["pull"]}),
        )
        .collect();
    let token = mint(key, Naming::X5c).grant("ci", json!(many)).sign(key);
    assert!(token.len() > MAX_TOKEN_LEN);
    assert!(matches!(refused(&v, &token), TokenError::TooLarge { .. }));
}

#[test]
fn garbage_is_malformed() {
    let v = root_verifier();
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let key = pki().leaf(KeyKind::Rsa);
    let good = mint(key, Naming::X5c).sign(key);
    let (good_header, _) = good.split_once('.').unwrap();
    let signature = b64("signature");
    let header_ok = b64(r#"{"alg":"RS256","kid":"x"}"#);
    let cases = [
        String::new(),
        "abc".into(),
        "a.b".into(),
        format!("{good_header}.{}", b64("{}")),
        format!("{good}.extra"),
        "!!!.???.***".into(),
        format!("{header_ok}.{}.{signature}", "e30="), // padded base64
        format!("{}.{}.{signature}", b64("[1,2]"), b64("{}")),
        format!("{}.{}.{signature}", b64("null"), b64("{}")),
        format!("{}.{}.{signature}", b64("\"alg\""), b64("{}")),
        format!("{}.{}.{signature}", b64("{}"), b64("{}")),
        format!("{}.{}.{signature}", b64(r#"{"alg":256}"#), b64("{}")),
        format!(
            "{}.{}.{signature}",
            b64(r#"{"alg":"RS256","alg":"RS256"}"#),
            b64("{}")
        ),
        format!(
            "{}.{}.{signature}",
            b64(r#"{"alg":"RS256","x5c":"abc"}"#),
            b64("{}")
        ),
        format!(
            "{}.{}.{signature}",
            b64(r#"{"alg":"RS256","x5c":["%%%"]}"#),
            b64("{}")
        ),
        format!(
            "{}.{}.{signature}",
            b64(r#"{"alg":"RS256","x5c":[]}"#),
            b64("{}")
        ),
        format!(
            "{}.{}.{signature}",
            b64(r#"{"alg":"RS256","jwk":{"kty":"RSA"}}"#),
            b64("{}")
        ),
        format!(
            "{}.{}.{signature}",
            b64(r#"{"alg":"RS256","crit":["exp"],"kid":"x"}"#),
            b64("{}")
        ),
        format!(
            "{}.{}.{signature}",
            [0xffu8, 0xfe].map(char::from).iter().collect::<String>(),
            b64("{}")
        ),
        format!(
            "{}.{}.{signature}",
            STANDARD.encode([0xff, 0xfe, 0xfd]),
            b64("{}")
        ),
        format!("{header_ok}.{}.%%%", b64("{}")),
    ];
    for token in &cases {
        match v.verify(token) {
            Err(TokenError::Malformed(_)) => {}
            other => panic!("{token:?}: {other:?}"),
        }
    }
}

#[test]
fn signed_claims_that_are_not_an_object_are_malformed() {
    let v = root_verifier();
    let key = pki().leaf(KeyKind::Ed25519);
    for claims in [
        json!([1, 2]),
        json!("claims"),
        json!(null),
        json!({"exp": "soon"}),
    ] {
        let mut m = mint(key, Naming::X5c);
        m.claims = claims;
        assert!(matches!(
            refused(&v, &m.sign(key)),
            TokenError::Malformed(_)
        ));
    }
    // Claims that are no JSON at all.
    let m = mint(key, Naming::X5c);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(m.header.to_string()),
        URL_SAFE_NO_PAD.encode([0xc3, 0x28, b'{'])
    );
    let token = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign("EdDSA", input.as_bytes()))
    );
    assert!(matches!(refused(&v, &token), TokenError::Malformed(_)));
}

#[test]
fn mutated_tokens_never_verify_nor_panic() {
    let v = root_verifier();
    let key = pki().leaf(KeyKind::P256);
    let token = mint(key, Naming::X5c)
        .grant("ci", pull_push("a/b"))
        .sign(key);
    accepted(&v, &token);
    // A deterministic walk over positions and replacement characters.
    let alphabet = b"AZaz09-_.=+/ \x00";
    let bytes = token.as_bytes();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pos = (state % bytes.len() as u64) as usize;
        let replacement = alphabet[((state >> 32) % alphabet.len() as u64) as usize];
        if bytes[pos] == replacement {
            continue;
        }
        let mut mutated = bytes.to_vec();
        mutated[pos] = replacement;
        let mutated = String::from_utf8(mutated).unwrap();
        assert!(v.verify(&mutated).is_err(), "mutation at {pos} verified");
    }
    // Truncations.
    for cut in (0..token.len()).step_by(7) {
        assert!(v.verify(&token[..cut]).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------

#[test]
fn setup_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let bad_cert = dir.path().join("bad.pem");
    std::fs::write(
        &bad_cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let bad_jwks = dir.path().join("bad-jwks.json");
    std::fs::write(&bad_jwks, "{\"keys\": 5}").unwrap();
    let only_secrets = write_jwks(dir.path(), &[json!({"kty": "oct", "k": "c2VjcmV0"})]);

    let err = |s: TokenSettings| TokenVerifier::new(s).expect_err("verifier built");
    assert!(matches!(err(settings(None, None)), TokenSetupError::NoKeys));
    assert!(matches!(
        err(settings(Some(missing), None)),
        TokenSetupError::Read { .. }
    ));
    assert!(matches!(
        err(settings(Some(garbage), None)),
        TokenSetupError::RootCertBundle { .. }
    ));
    assert!(matches!(
        err(settings(Some(bad_cert), None)),
        TokenSetupError::RootCertBundle { .. }
    ));
    assert!(matches!(
        err(settings(None, Some(bad_jwks))),
        TokenSetupError::Jwks { .. }
    ));
    assert!(matches!(
        err(settings(None, Some(only_secrets))),
        TokenSetupError::NoKeys
    ));
    let mut unknown = settings(None, None);
    unknown.signing_algorithms = vec!["RS256".into(), "XS999".into()];
    assert!(matches!(err(unknown), TokenSetupError::UnknownAlgorithm(_)));
}

// ---------------------------------------------------------------------------------------
// The test token server
// ---------------------------------------------------------------------------------------

fn server_verifier(server: &TokenServer) -> TokenVerifier {
    TokenVerifier::new(TokenSettings {
        realm: server.realm.clone(),
        service: server.service.clone(),
        issuer: server.issuer.clone(),
        rootcertbundle: Some(server.rootcertbundle.clone()),
        jwks: None,
        autoredirect: false,
        signing_algorithms: Vec::new(),
    })
    .expect("verifier for the token server")
}

/// A token request as a client sends it: `(status, JSON body)`.
fn fetch(server: &TokenServer, user: Option<(&str, &str)>, scopes: &[&str]) -> (u16, Value) {
    let response = server.request(user, scopes);
    let body = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, body)
}

#[test]
fn the_token_server_grants_what_users_may_do() {
    let server = TokenServer::start_with(TokenServerConfig {
        anonymous: vec![Grant::repository("public/*", &["pull"])],
        ..TokenServerConfig::default()
    });
    let v = server_verifier(&server);

    let (status, body) = fetch(
        &server,
        Some(("reader", "reader-secret")),
        &["repository:team/app:pull,push", "registry:catalog:*"],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'), "{body}");
    let verified = v.verify(body["token"].as_str().unwrap()).unwrap();
    assert_eq!(verified.subject, "reader");
    assert_eq!(verified.access.len(), 1, "{verified:?}");
    assert_eq!(verified.access[0].name, "team/app");
    assert_eq!(verified.access[0].actions, ["pull"]);

    let (status, body) = fetch(
        &server,
        Some(("ci", "ci-secret")),
        &["repository:team/app:pull,push registry:catalog:*"],
    );
    assert_eq!(status, 200);
    let verified = v.verify(body["token"].as_str().unwrap()).unwrap();
    assert_eq!(verified.subject, "ci");
    assert_eq!(verified.access.len(), 2, "{verified:?}");
    assert_eq!(verified.access[0].actions, ["pull", "push"]);
    assert_eq!(verified.access[1].kind, "registry");

    let (status, body) = fetch(
        &server,
        None,
        &[
            "repository:public/base:pull,push",
            "repository:team/app:pull",
        ],
    );
    assert_eq!(status, 200);
    let verified = v.verify(body["token"].as_str().unwrap()).unwrap();
    assert_eq!(verified.subject, "");
    assert_eq!(verified.access.len(), 1, "{verified:?}");
    assert_eq!(verified.access[0].name, "public/base");
    assert_eq!(verified.access[0].actions, ["pull"]);

    let (status, _) = fetch(&server, Some(("ci", "wrong")), &[]);
    assert_eq!(status, 401);
    let (status, _) = fetch(&server, Some(("nobody", "x")), &[]);
    assert_eq!(status, 401);

    let requests = server.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(requests[0].user.as_deref(), Some("reader"));
    assert_eq!(requests[1].scopes.len(), 2);
    assert_eq!(requests[2].user, None);
}

#[test]
fn the_token_server_signs_with_every_key_kind_and_naming() {
    for key in KeyKind::ALL {
        for naming in [
            Naming::X5c,
            Naming::Jwk,
            Naming::KidThumbprint,
            Naming::KidLibtrust,
        ] {
            let server = TokenServer::start_with(TokenServerConfig {
                key,
                naming,
                ..TokenServerConfig::default()
            });
            let v = server_verifier(&server);
            let (status, body) =
                fetch(&server, Some(("ci", "ci-secret")), &["repository:x/y:pull"]);
            assert_eq!(status, 200, "{key:?} {naming:?}: {body}");
            let verified = v.verify(body["token"].as_str().unwrap()).unwrap();
            assert_eq!(verified.access[0].actions, ["pull"], "{key:?} {naming:?}");
            // Minted directly, with the server's key and naming.
            let direct = server.issue("ci", pull_push("x/y"));
            assert_eq!(v.verify(&direct).unwrap().subject, "ci");
        }
    }
}

#[test]
fn the_token_server_answers_the_oauth2_form() {
    let server = TokenServer::start();
    let v = server_verifier(&server);
    let form = format!(
        "grant_type=password&username=reader&password=reader-secret&service={}&scope=repository%3Aa%2Fb%3Apull%2Cpush&client_id=test",
        server.service
    );
    let response = support::http(
        "POST",
        &server.realm,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form.into_bytes()),
    );
    response.expect(200);
    let body = response.json();
    let verified = v.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(verified.subject, "reader");
    assert_eq!(verified.access[0].actions, ["pull"]);
    assert!(
        server
            .registry_env()
            .iter()
            .any(|(k, v)| k == "REGISTRY_AUTH_TOKEN_REALM" && v == &server.realm)
    );
}

/// The reference, Distribution 2.8 (Debian's `docker-registry`), accepts what the test token
/// server issues: its challenge names the server, its tokens open the registry, and a
/// pull-only token cannot push. RSA and EC keys, named by x5c, libtrust kid or jwk (2.8 knows
/// neither Ed25519 nor thumbprint kids).
#[test]
fn the_reference_registry_accepts_the_test_servers_tokens() {
    support::cli::require(&["docker-registry"]);
    for (key, naming) in [
        (KeyKind::Rsa, Naming::X5c),
        (KeyKind::P256, Naming::X5c),
        (KeyKind::Rsa, Naming::KidLibtrust),
        (KeyKind::P384, Naming::KidLibtrust),
        (KeyKind::P256, Naming::Jwk),
    ] {
        let server = TokenServer::start_with(TokenServerConfig {
            key,
            naming,
            ..TokenServerConfig::default()
        });
        let env = server.registry_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reg = support::TestRegistry::start_with(support::Flavor::Distribution, &env);
        let base = format!("{}/v2/", reg.url);
        let challenge = support::http("GET", &base, &[], None);
        challenge.expect(401);
        assert_eq!(
            challenge.must_header("www-authenticate"),
            format!(
                r#"Bearer realm="{}",service="{}""#,
                server.realm, server.service
            )
        );
        let bearer = |token: String| format!("Bearer {token}");
        let ci = bearer(server.fetch(Some(("ci", "ci-secret")), &[]));
        support::http("GET", &base, &[("authorization", &ci)], None).expect(200);

        let uploads = format!("{}/v2/team/app/blobs/uploads/", reg.url);
        let scope = "repository:team/app:pull,push";
        let reader = bearer(server.fetch(Some(("reader", "reader-secret")), &[scope]));
        let refused = support::http("POST", &uploads, &[("authorization", &reader)], None);
        refused.expect(401);
        assert!(
            refused
                .must_header("www-authenticate")
                .contains(r#"error="insufficient_scope""#),
            "{key:?} {naming:?}: {refused:?}"
        );
        let writer = bearer(server.fetch(Some(("ci", "ci-secret")), &[scope]));
        support::http("POST", &uploads, &[("authorization", &writer)], None).expect(202);
    }
}
