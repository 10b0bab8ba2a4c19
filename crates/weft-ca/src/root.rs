//! Roots: generating a self-signed CA (EC P-256 by default, 10 years), describing it in Consul's `CARoot` shape,
//! and cross-signing a new root with the old one during rotation so both generations of leaves stay trusted.

use crate::{hex_colon, now_datetime, CaError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One root as `/v1/connect/ca/roots` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CaRoot {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub serial_number: u64,
    #[serde(rename = "SigningKeyID")]
    pub signing_key_id: String,
    pub external_trust_domain: String,
    pub not_before: String,
    pub not_after: String,
    pub root_cert: String,
    pub intermediate_certs: Option<Vec<String>>,
    pub active: bool,
    pub rotated_out_at: String,
    pub private_key_type: String,
    pub private_key_bits: u32,
    pub create_index: u64,
    pub modify_index: u64,
}

/// `/v1/connect/ca/roots`: the trust domain, the active root's ID and every root still trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CaRootList {
    #[serde(rename = "ActiveRootID")]
    pub active_root_id: String,
    pub trust_domain: String,
    pub roots: Vec<CaRoot>,
}

/// A root with its private key, as the servers keep it (the key never leaves them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRoot {
    pub root: CaRoot,
    pub private_key_pem: String,
    /// Unix seconds when this root stopped being active (0 while active); pruning counts from here.
    pub rotated_out_unix: u64,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn random_uid() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The certificate template of a root. Rotation reuses it to cross-sign, so the cross-signed copy carries the same
/// subject and key identifier as the root it stands for.
fn root_params(
    common_name: &str,
    trust_domain: &str,
    serial: u64,
    now_unix: u64,
    ttl: Duration,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{trust_domain}")
            .try_into()
            .map_err(|_| CaError::Internal("bad trust domain".into()))?,
    )];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
    let start = now_datetime(now_unix);
    params.not_before = start;
    params.not_after = start + ttl;
    Ok(params)
}

fn key_pair(key_type: &str, bits: u32, supplied_pem: &str) -> Result<KeyPair, CaError> {
    if !supplied_pem.is_empty() {
        return KeyPair::from_pem(supplied_pem)
            .map_err(|e| CaError::BadConfig(format!("invalid PrivateKey: {e}")));
    }
    let alg = match (key_type, bits) {
        ("ec", 256) => &rcgen::PKCS_ECDSA_P256_SHA256,
        ("ec", 384) => &rcgen::PKCS_ECDSA_P384_SHA384,
        _ => {
            return Err(CaError::BadConfig(format!(
                "cannot generate a {key_type} key of {bits} bits"
            )))
        }
    };
    KeyPair::generate_for(alg).map_err(|e| CaError::Internal(format!("key generation failed: {e}")))
}

/// Describes a root certificate in Consul's `CARoot` shape.
pub fn describe(
    cert_pem: &str,
    serial: u64,
    trust_domain: &str,
    key_type: &str,
    key_bits: u32,
) -> Result<CaRoot, CaError> {
    let der = crate::pem_to_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| CaError::BadConfig(format!("invalid RootCert: {e}")))?;
    let fingerprint = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    let skid = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap_or_default();
    let ts = |t: x509_parser::time::ASN1Time| rfc3339(t.to_datetime());
    Ok(CaRoot {
        id: hex_colon(fingerprint.as_ref()),
        name: "Consul CA Primary Cert".into(),
        serial_number: serial,
        signing_key_id: hex_colon(&skid),
        external_trust_domain: trust_domain.split('.').next().unwrap_or("").to_string(),
        not_before: ts(cert.validity().not_before),
        not_after: ts(cert.validity().not_after),
        root_cert: cert_pem.to_string(),
        intermediate_certs: None,
        active: true,
        rotated_out_at: ZERO_TIME.into(),
        private_key_type: key_type.into(),
        private_key_bits: key_bits,
        create_index: 0,
        modify_index: 0,
    })
}

/// Generates (or adopts, when the config supplies `PrivateKey`/`RootCert`) a root for the trust domain.
pub fn generate_root(
    config: &crate::CaConfig,
    cluster_id: &str,
    serial: u64,
    now_unix: u64,
) -> Result<StoredRoot, CaError> {
    let trust_domain = crate::spiffe::trust_domain(cluster_id);
    let key = key_pair(
        &config.private_key_type,
        config.private_key_bits,
        &config.private_key,
    )?;
    let cert_pem = if !config.root_cert.is_empty() {
        let der = crate::pem_to_der(&config.root_cert)?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| CaError::BadConfig(format!("invalid RootCert: {e}")))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError::BadConfig(
                "RootCert does not match PrivateKey".into(),
            ));
        }
        if !cert.is_ca() {
            return Err(CaError::BadConfig(
                "RootCert is not a CA certificate".into(),
            ));
        }
        config.root_cert.clone()
    } else {
        let cn = format!(
            "pri-{}.consul.ca.{}.consul",
            random_uid(),
            cluster_id.chars().take(8).collect::<String>()
        );
        let params = root_params(&cn, &trust_domain, serial, now_unix, config.root_cert_ttl)?;
        params
            .self_signed(&key)
            .map_err(|e| CaError::Internal(format!("self-signing failed: {e}")))?
            .pem()
    };
    let root = describe(
        &cert_pem,
        serial,
        &trust_domain,
        &config.private_key_type,
        config.private_key_bits,
    )?;
    Ok(StoredRoot {
        root,
        private_key_pem: key.serialize_pem(),
        rotated_out_unix: 0,
    })
}

/// Cross-signs `new` with `old`: a certificate with the new root's subject and key, issued by the old root, valid
/// for 7 days. Leaves signed by the new root present it, so peers that trust only the old root accept them.
pub fn cross_sign(
    old: &StoredRoot,
    new: &StoredRoot,
    serial: u64,
    now_unix: u64,
) -> Result<String, CaError> {
    let old_key = KeyPair::from_pem(&old.private_key_pem)
        .map_err(|e| CaError::Internal(format!("old CA key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&old.root.root_cert, old_key)
        .map_err(|e| CaError::Internal(format!("old root: {e}")))?;
    let new_key = KeyPair::from_pem(&new.private_key_pem)
        .map_err(|e| CaError::Internal(format!("new CA key: {e}")))?;
    let der = crate::pem_to_der(&new.root.root_cert)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| CaError::Internal(format!("new root: {e}")))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or("weft-ca")
        .to_string();
    let trust_domain = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => {
                    u.strip_prefix("spiffe://").map(str::to_string)
                }
                _ => None,
            })
        })
        .unwrap_or_default();
    let mut params = root_params(
        &cn,
        &trust_domain,
        serial,
        now_unix.saturating_sub(60),
        Duration::from_secs(7 * 24 * 3600),
    )?;
    params.use_authority_key_identifier_extension = true;
    params
        .signed_by(&new_key, &issuer)
        .map(|c| c.pem())
        .map_err(|e| CaError::Internal(format!("cross-signing failed: {e}")))
}

/// When a rotated-out root may be dropped: once every leaf it signed has expired (2 × leaf TTL, as Consul).
pub fn prunable(root: &StoredRoot, now_unix: u64, leaf_ttl: Duration) -> bool {
    !root.root.active
        && root.rotated_out_unix > 0
        && now_unix.saturating_sub(root.rotated_out_unix) > 2 * leaf_ttl.as_secs()
}
