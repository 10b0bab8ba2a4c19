//! Consul's `jwt` auth method: its `Config`, read strictly, and the checks a login's JWT must pass.
//!
//! Where Weft is stricter than Consul, on purpose: a token without `exp` is refused (one leaked token would
//! otherwise log in forever), the `JWKSURL` must be a `file://` URL (keys come from the operator, not from a fetch
//! at login time: Weft's servers make no outbound calls), OIDC discovery is refused rather than half-done, and a
//! config field Weft does not know is an error rather than ignored.

use crate::claims::Identity;
use crate::keys::{from_jwks, Alg, PublicKey, TrustedKey};
use crate::{config, rejected, LoginError, MAX_BEARER_TOKEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The largest JWKS file read.
const MAX_JWKS_FILE: u64 = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct JwtConfig {
    #[serde(rename = "JWTValidationPubKeys", default)]
    jwt_validation_pub_keys: Vec<String>,
    #[serde(rename = "JWKSURL", default)]
    jwks_url: String,
    #[serde(rename = "JWKSCACert", default)]
    jwks_ca_cert: String,
    #[serde(rename = "OIDCDiscoveryURL", default)]
    oidc_discovery_url: String,
    #[serde(rename = "OIDCDiscoveryCACert", default)]
    oidc_discovery_ca_cert: String,
    #[serde(default)]
    bound_issuer: String,
    #[serde(default)]
    bound_audiences: Vec<String>,
    #[serde(default)]
    claim_mappings: BTreeMap<String, String>,
    #[serde(default)]
    list_claim_mappings: BTreeMap<String, String>,
    #[serde(rename = "JWTSupportedAlgs", default)]
    jwt_supported_algs: Vec<String>,
    #[serde(default)]
    expiration_leeway: Option<Value>,
    #[serde(default)]
    not_before_leeway: Option<Value>,
    #[serde(default)]
    clock_skew_leeway: Option<Value>,
}

/// A `jwt` auth method ready to check logins.
#[derive(Debug, Clone)]
pub struct JwtMethod {
    keys: Vec<TrustedKey>,
    algs: Vec<Alg>,
    bound_issuer: String,
    bound_audiences: Vec<String>,
    claim_mappings: BTreeMap<String, String>,
    list_claim_mappings: BTreeMap<String, String>,
    expiration_leeway: u64,
    not_before_leeway: u64,
    clock_skew_leeway: u64,
}

/// A leeway in seconds: Consul's `0` (or absent) means the default, `-1` none; a duration string or nanoseconds.
fn leeway(field: &str, v: &Option<Value>, default: u64) -> Result<u64, LoginError> {
    let bad = || config(format!("{field}: not a duration"));
    let nanos: i128 = match v {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad)? as i128,
        Some(Value::String(s)) if s.trim().starts_with('-') => -1,
        Some(Value::String(s)) => weft_types::duration::parse_duration(s)
            .map_err(|_| bad())?
            .as_nanos() as i128,
        Some(_) => return Err(bad()),
    };
    Ok(match nanos {
        0 => default,
        n if n < 0 => 0,
        n => (n / 1_000_000_000) as u64,
    })
}

fn valid_attribute(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl JwtMethod {
    /// Reads a method's `Config`. A JWKS named by a `file://` URL is read now (and again whenever the method is
    /// loaded for a login).
    pub fn from_config(raw: &Value) -> Result<JwtMethod, LoginError> {
        let c: JwtConfig = serde_json::from_value(raw.clone())
            .map_err(|e| config(format!("invalid jwt auth method config: {e}")))?;
        if !c.oidc_discovery_url.is_empty() || !c.oidc_discovery_ca_cert.is_empty() {
            return Err(config(
                "OIDCDiscoveryURL is not supported: give JWTValidationPubKeys or a file:// JWKSURL",
            ));
        }
        if !c.jwks_ca_cert.is_empty() {
            return Err(config(
                "JWKSCACert has no use: the JWKSURL must be a file:// URL",
            ));
        }
        let keys = match (c.jwt_validation_pub_keys.is_empty(), c.jwks_url.is_empty()) {
            (false, true) => c
                .jwt_validation_pub_keys
                .iter()
                .map(|pem| PublicKey::from_pem(pem).map(|key| TrustedKey { kid: None, key }))
                .collect::<Result<Vec<_>, _>>()?,
            (true, false) => {
                let path = c.jwks_url.strip_prefix("file://").ok_or_else(|| {
                    config("JWKSURL must be a file:// URL (Weft's servers fetch nothing at login)")
                })?;
                let size = std::fs::metadata(path)
                    .map_err(|e| config(format!("JWKSURL {path}: {e}")))?
                    .len();
                if size > MAX_JWKS_FILE {
                    return Err(config(format!("JWKSURL {path}: larger than 1 MiB")));
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| config(format!("JWKSURL {path}: {e}")))?;
                from_jwks(&text)?
            }
            _ => {
                return Err(config(
                    "exactly one of JWTValidationPubKeys and JWKSURL must be set",
                ))
            }
        };
        let algs = if c.jwt_supported_algs.is_empty() {
            vec![Alg::RS256]
        } else {
            c.jwt_supported_algs
                .iter()
                .map(|a| {
                    Alg::parse(a).ok_or_else(|| {
                        config(format!(
                            "JWTSupportedAlgs: unsupported algorithm {a:?} (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut attributes = std::collections::BTreeSet::new();
        for attr in c
            .claim_mappings
            .values()
            .chain(c.list_claim_mappings.values())
        {
            if !valid_attribute(attr) {
                return Err(config(format!(
                    "invalid claim mapping attribute {attr:?}: letters, digits, '-' and '_' only"
                )));
            }
            if !attributes.insert(attr) {
                return Err(config(format!(
                    "claim mapping attribute {attr:?} is mapped twice"
                )));
            }
        }
        Ok(JwtMethod {
            keys,
            algs,
            bound_issuer: c.bound_issuer,
            bound_audiences: c.bound_audiences,
            expiration_leeway: leeway("ExpirationLeeway", &c.expiration_leeway, 150)?,
            not_before_leeway: leeway("NotBeforeLeeway", &c.not_before_leeway, 150)?,
            clock_skew_leeway: leeway("ClockSkewLeeway", &c.clock_skew_leeway, 60)?,
            claim_mappings: c.claim_mappings,
            list_claim_mappings: c.list_claim_mappings,
        })
    }

    /// Whether `value.<name>` is an attribute of this method (what binding rules may fill into names).
    pub fn has_value(&self, name: &str) -> bool {
        self.claim_mappings.values().any(|a| a == name)
    }

    /// Whether `list.<name>` is an attribute of this method.
    pub fn has_list(&self, name: &str) -> bool {
        self.list_claim_mappings.values().any(|a| a == name)
    }

    /// Verifies `token` at `now` (Unix seconds) and maps its claims.
    pub fn login(&self, token: &str, now: u64) -> Result<Identity, LoginError> {
        let claims = self.verify(token, now)?;
        Identity::from_claims(&claims, &self.claim_mappings, &self.list_claim_mappings)
    }

    fn verify(&self, token: &str, now: u64) -> Result<Map<String, Value>, LoginError> {
        if token.len() > MAX_BEARER_TOKEN {
            return Err(rejected("bearer token too large"));
        }
        let mut parts = token.trim().split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(rejected(
                "malformed JWT: expected three dot-separated parts",
            ));
        };
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| rejected(format!("malformed JWT: {what} is not base64url")))
        };
        let object = |bytes: Vec<u8>, what: &str| match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(rejected(format!(
                "malformed JWT: {what} is not a JSON object"
            ))),
        };
        let header = object(decode(h64, "header")?, "header")?;
        if header.contains_key("crit") {
            return Err(rejected("unsupported JWT: critical header parameters"));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Alg::parse)
            .filter(|a| self.algs.contains(a))
            .ok_or_else(|| rejected("JWT signing algorithm is not allowed by the auth method"))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let signature = decode(s64, "signature")?;
        let signed = &token.trim().as_bytes()[..h64.len() + 1 + p64.len()];
        let verified = self
            .keys
            .iter()
            .filter(|k| match (kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .any(|k| k.key.verifies(alg, signed, &signature));
        if !verified {
            return Err(rejected("failed to verify the JWT's signature"));
        }
        let claims = object(decode(p64, "payload")?, "payload")?;
        self.check_times(&claims, now)?;
        if !self.bound_issuer.is_empty()
            && claims.get("iss").and_then(Value::as_str) != Some(self.bound_issuer.as_str())
        {
            return Err(rejected("invalid issuer (iss) claim"));
        }
        if !self.bound_audiences.is_empty() {
            let auds: Vec<&str> = match claims.get("aud") {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !auds
                .iter()
                .any(|a| self.bound_audiences.iter().any(|b| b == a))
            {
                return Err(rejected(
                    "invalid audience (aud) claim: audience claim does not match any expected audience",
                ));
            }
        }
        Ok(claims)
    }

    fn check_times(&self, claims: &Map<String, Value>, now: u64) -> Result<(), LoginError> {
        let time = |name: &str| -> Result<Option<u64>, LoginError> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or_else(|| rejected(format!("invalid {name} claim"))),
                Some(_) => Err(rejected(format!("invalid {name} claim: not a number"))),
            }
        };
        let skew = self.clock_skew_leeway;
        let exp = time("exp")?.ok_or_else(|| rejected("the JWT has no exp claim"))?;
        if now
            > exp
                .saturating_add(self.expiration_leeway)
                .saturating_add(skew)
        {
            return Err(rejected("the JWT is expired"));
        }
        if let Some(nbf) = time("nbf")? {
            if now
                .saturating_add(self.not_before_leeway)
                .saturating_add(skew)
                < nbf
            {
                return Err(rejected("the JWT is not valid yet"));
            }
        }
        if let Some(iat) = time("iat")? {
            if iat > now.saturating_add(skew) {
                return Err(rejected("the JWT was issued in the future"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    pub struct Signer {
        pair: EcdsaKeyPair,
        pub public_pem: String,
    }

    impl Signer {
        pub fn new() -> Signer {
            let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let rng = ring::rand::SystemRandom::new();
            let pair = EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &kp.serialize_der(),
                &rng,
            )
            .unwrap();
            Signer {
                pair,
                public_pem: kp.public_key_pem(),
            }
        }

        pub fn sign(&self, header: Value, claims: Value) -> String {
            let h = URL_SAFE_NO_PAD.encode(header.to_string());
            let p = URL_SAFE_NO_PAD.encode(claims.to_string());
            let msg = format!("{h}.{p}");
            let sig = self
                .pair
                .sign(&ring::rand::SystemRandom::new(), msg.as_bytes())
                .unwrap();
            format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }

        pub fn token(&self, claims: Value) -> String {
            self.sign(json!({"alg": "ES256", "typ": "JWT"}), claims)
        }
    }

    const NOW: u64 = 1_800_000_000;

    fn method(signer: &Signer) -> JwtMethod {
        JwtMethod::from_config(&json!({
            "JWTValidationPubKeys": [signer.public_pem],
            "JWTSupportedAlgs": ["ES256"],
            "BoundIssuer": "https://issuer.example",
            "BoundAudiences": ["weft"],
            "ClaimMappings": {"service": "service"},
            "ListClaimMappings": {"groups": "groups"},
        }))
        .unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({
            "iss": "https://issuer.example", "aud": ["other", "weft"], "exp": NOW + 60, "iat": NOW - 5,
            "service": "web", "groups": ["ops"],
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    #[test]
    fn a_good_token_logs_in_with_its_claims_mapped() {
        let s = Signer::new();
        let id = method(&s).login(&s.token(claims(json!({}))), NOW).unwrap();
        assert_eq!(id.values["service"], "web");
        assert_eq!(id.lists["groups"], vec!["ops"]);
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let s = Signer::new();
        let m = method(&s);
        let refused = |token: String, why: &str| {
            let e = m.login(&token, NOW).unwrap_err();
            assert!(
                matches!(&e, LoginError::Rejected(r) if r.contains(why)),
                "{e:?} lacks {why}"
            );
        };
        let other = Signer::new();
        refused(other.token(claims(json!({}))), "signature");
        let good = s.token(claims(json!({})));
        let payload = URL_SAFE_NO_PAD.encode(claims(json!({"service": "db"})).to_string());
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = good.replace(parts[1], &payload);
        refused(tampered, "signature");
        refused(s.token(claims(json!({"aud": "nope"}))), "audience");
        refused(s.token(claims(json!({"aud": null}))), "audience");
        refused(s.token(claims(json!({"iss": "evil"}))), "issuer");
        refused(s.token(claims(json!({"exp": NOW - 300}))), "expired");
        refused(s.token(claims(json!({"exp": null}))), "no exp");
        refused(s.token(claims(json!({"exp": "soon"}))), "exp");
        refused(s.token(claims(json!({"nbf": NOW + 400}))), "not valid yet");
        refused(s.token(claims(json!({"iat": NOW + 400}))), "future");
        refused(
            s.token(claims(json!({"service": {"a": 1}}))),
            "converting claim",
        );
        refused(
            s.sign(json!({"alg": "RS256"}), claims(json!({}))),
            "algorithm",
        );
        refused(
            s.sign(json!({"alg": "none"}), claims(json!({}))),
            "algorithm",
        );
        refused(
            s.sign(json!({"alg": "ES256", "crit": ["x"]}), claims(json!({}))),
            "critical",
        );
        refused("a.b".into(), "three");
        refused("!!.!!.!!".into(), "base64url");
        refused("a".repeat(MAX_BEARER_TOKEN + 1), "too large");
        // Within the leeways still logs in.
        assert!(m
            .login(&s.token(claims(json!({"exp": NOW - 100}))), NOW)
            .is_ok());
    }

    #[test]
    fn configs_are_read_strictly() {
        let s = Signer::new();
        let bad = [
            json!({}),
            json!({"JWTValidationPubKeys": [s.public_pem], "JWKSURL": "file:///x"}),
            json!({"JWKSURL": "https://idp.example/keys"}),
            json!({"JWKSURL": "file:///nonexistent/jwks.json"}),
            json!({"OIDCDiscoveryURL": "https://idp.example"}),
            json!({"JWTValidationPubKeys": ["junk"]}),
            json!({"JWTValidationPubKeys": [s.public_pem], "JWTSupportedAlgs": ["HS256"]}),
            json!({"JWTValidationPubKeys": [s.public_pem], "ClaimMapings": {}}),
            json!({"JWTValidationPubKeys": [s.public_pem], "ClaimMappings": {"a": "x", "b": "x"}}),
            json!({"JWTValidationPubKeys": [s.public_pem], "ClaimMappings": {"a": "x.y"}}),
            json!({"JWTValidationPubKeys": [s.public_pem], "ExpirationLeeway": "soon"}),
        ];
        for c in bad {
            assert!(
                matches!(JwtMethod::from_config(&c), Err(LoginError::Config(_))),
                "{c}"
            );
        }
    }

    #[test]
    fn a_jwks_file_is_read_and_kids_pick_keys() {
        let s = Signer::new();
        let kp = PublicKey::from_pem(&s.public_pem).unwrap();
        let PublicKey::Ec { point, .. } = kp else {
            panic!("not EC")
        };
        let dir = std::env::temp_dir().join(format!("weft-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwks.json");
        let doc = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
        std::fs::write(&file, doc.to_string()).unwrap();
        let m = JwtMethod::from_config(&json!({
            "JWKSURL": format!("file://{}", file.display()),
            "JWTSupportedAlgs": ["ES256"],
            "ExpirationLeeway": -1,
        }))
        .unwrap();
        let c = json!({"exp": NOW + 10});
        assert!(m
            .login(
                &s.sign(json!({"alg": "ES256", "kid": "k1"}), c.clone()),
                NOW
            )
            .is_ok());
        assert!(m
            .login(
                &s.sign(json!({"alg": "ES256", "kid": "k2"}), c.clone()),
                NOW
            )
            .is_err());
        // No expiration leeway: only the clock skew (60 s) is left.
        assert!(m.login(&s.token(json!({"exp": NOW - 61})), NOW).is_err());
        assert!(m.login(&s.token(json!({"exp": NOW - 59})), NOW).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
