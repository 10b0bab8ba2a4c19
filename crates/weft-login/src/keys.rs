//! The public keys a JWT auth method trusts (PEM `PUBLIC KEY` blocks or a JWKS document) and the signature
//! algorithms it checks them with. RSA (PKCS#1 v1.5 and PSS) and ECDSA on P-256 and P-384 are what ring verifies;
//! anything else is refused when the method is written, not skipped at login.

use crate::{config, LoginError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use serde_json::Value;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// At most this many keys per method: a JWKS document is outside input too.
const MAX_KEYS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed point (`04 || x || y`).
    Ec { curve: Curve, point: Vec<u8> },
}

/// A key and the `kid` a JWKS gave it (a token naming a `kid` is checked only against keys with that `kid` or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub kid: Option<String>,
    pub key: PublicKey,
}

/// The JWS algorithms Weft verifies (`JWTSupportedAlgs`; Consul's default is `RS256` alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            _ => return None,
        })
    }
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

impl PublicKey {
    /// Whether `sig` is `alg`'s signature of `msg` by this key. A key of the wrong kind for `alg` never verifies.
    pub fn verifies(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    Alg::ES256 | Alg::ES384 => return false,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            PublicKey::Ec { curve, point } => {
                let algorithm: &dyn signature::VerificationAlgorithm = match (alg, curve) {
                    (Alg::ES256, Curve::P256) => &signature::ECDSA_P256_SHA256_FIXED,
                    (Alg::ES384, Curve::P384) => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                signature::UnparsedPublicKey::new(algorithm, point)
                    .verify(msg, sig)
                    .is_ok()
            }
        }
    }

    /// One PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block.
    pub fn from_pem(pem: &str) -> Result<PublicKey, LoginError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| config(format!("JWTValidationPubKeys: not a PEM public key: {e}")))?;
        let (_, spki) = SubjectPublicKeyInfo::from_der(der.as_ref())
            .map_err(|e| config(format!("JWTValidationPubKeys: bad public key: {e}")))?;
        match spki.parsed() {
            Ok(ParsedKey::RSA(rsa)) => Ok(PublicKey::Rsa {
                n: strip_zeros(rsa.modulus),
                e: strip_zeros(rsa.exponent),
            }),
            Ok(ParsedKey::EC(point)) => {
                let oid = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok());
                let curve =
                    match oid {
                        Some(o) if o == OID_EC_P256 => Curve::P256,
                        Some(o) if o == OID_NIST_EC_P384 => Curve::P384,
                        _ => return Err(config(
                            "JWTValidationPubKeys: only the P-256 and P-384 curves are supported",
                        )),
                    };
                Ok(PublicKey::Ec {
                    curve,
                    point: point.data().to_vec(),
                })
            }
            _ => Err(config(
                "JWTValidationPubKeys: only RSA and EC (P-256, P-384) public keys are supported",
            )),
        }
    }
}

fn b64_field(key: &Value, field: &str) -> Result<Vec<u8>, LoginError> {
    let text = key[field]
        .as_str()
        .ok_or_else(|| config(format!("JWKS: a key lacks {field:?}")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| config(format!("JWKS: {field:?} is not base64url")))
}

/// The signing keys of a JWKS document (`{"keys": [...]}`); keys marked for encryption are left out.
pub fn from_jwks(text: &str) -> Result<Vec<TrustedKey>, LoginError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| config(format!("JWKS: not JSON: {e}")))?;
    let keys = doc["keys"]
        .as_array()
        .ok_or_else(|| config("JWKS: no \"keys\" array"))?;
    if keys.len() > MAX_KEYS {
        return Err(config(format!("JWKS: more than {MAX_KEYS} keys")));
    }
    let mut out = Vec::new();
    for k in keys {
        if k["use"].as_str().is_some_and(|u| u != "sig") {
            continue;
        }
        let key = match k["kty"].as_str() {
            Some("RSA") => PublicKey::Rsa {
                n: strip_zeros(&b64_field(k, "n")?),
                e: strip_zeros(&b64_field(k, "e")?),
            },
            Some("EC") => {
                let (curve, len) = match k["crv"].as_str() {
                    Some("P-256") => (Curve::P256, 32),
                    Some("P-384") => (Curve::P384, 48),
                    other => {
                        return Err(config(format!(
                            "JWKS: unsupported curve {}",
                            other.unwrap_or("(none)")
                        )))
                    }
                };
                let (x, y) = (b64_field(k, "x")?, b64_field(k, "y")?);
                if x.len() != len || y.len() != len {
                    return Err(config("JWKS: an EC key's x or y has the wrong length"));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                PublicKey::Ec { curve, point }
            }
            other => {
                return Err(config(format!(
                    "JWKS: unsupported key type {}",
                    other.unwrap_or("(none)")
                )))
            }
        };
        out.push(TrustedKey {
            kid: k["kid"].as_str().map(str::to_string),
            key,
        });
    }
    if out.is_empty() {
        return Err(config("JWKS: no signing keys"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ec_pair(alg: &'static rcgen::SignatureAlgorithm) -> (rcgen::KeyPair, String) {
        let kp = rcgen::KeyPair::generate_for(alg).unwrap();
        let pem = kp.public_key_pem();
        (kp, pem)
    }

    #[test]
    fn pem_keys_verify_their_own_signatures_only() {
        let (kp, pem) = ec_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let key = PublicKey::from_pem(&pem).unwrap();
        assert!(matches!(
            key,
            PublicKey::Ec {
                curve: Curve::P256,
                ..
            }
        ));
        let pkcs8 = kp.serialize_der();
        let rng = ring::rand::SystemRandom::new();
        let signer = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &rng,
        )
        .unwrap();
        let sig = signer.sign(&rng, b"hello").unwrap();
        assert!(key.verifies(Alg::ES256, b"hello", sig.as_ref()));
        assert!(!key.verifies(Alg::ES256, b"hellO", sig.as_ref()));
        assert!(!key.verifies(Alg::ES384, b"hello", sig.as_ref()));
        assert!(!key.verifies(Alg::RS256, b"hello", sig.as_ref()));
        let (_, other) = ec_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let other = PublicKey::from_pem(&other).unwrap();
        assert!(!other.verifies(Alg::ES256, b"hello", sig.as_ref()));
    }

    #[test]
    fn p384_and_ed25519_pem_keys() {
        let (_, pem) = ec_pair(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert!(matches!(
            PublicKey::from_pem(&pem).unwrap(),
            PublicKey::Ec {
                curve: Curve::P384,
                ..
            }
        ));
        let (_, pem) = ec_pair(&rcgen::PKCS_ED25519);
        assert!(matches!(
            PublicKey::from_pem(&pem),
            Err(LoginError::Config(_))
        ));
        assert!(PublicKey::from_pem("not a key").is_err());
    }

    #[test]
    fn jwks_documents() {
        let (kp, _) = ec_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let raw = kp.public_key_raw();
        let (x, y) = (&raw[1..33], &raw[33..65]);
        let doc = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "k1", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AAEC", "e": "AQAB"},
        ]});
        let keys = from_jwks(&doc.to_string()).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid.as_deref(), Some("k1"));
        assert_eq!(
            keys[0].key,
            PublicKey::Ec {
                curve: Curve::P256,
                point: raw.to_vec()
            }
        );
        assert_eq!(
            keys[1].key,
            PublicKey::Rsa {
                n: vec![1, 2],
                e: vec![1, 0, 1]
            }
        );
        for bad in [
            "{}",
            "[]",
            r#"{"keys": []}"#,
            r#"{"keys": [{"kty": "oct", "k": "AA"}]}"#,
            r#"{"keys": [{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}]}"#,
            r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#,
            r#"{"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}"#,
        ] {
            assert!(from_jwks(bad).is_err(), "{bad}");
        }
    }
}
