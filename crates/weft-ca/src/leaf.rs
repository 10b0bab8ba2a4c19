//! Leaf certificates: the agent's key and CSR for a service identity, the server's checks and signature, and
//! Consul's `IssuedCert` shape. Leaves carry one SPIFFE URI SAN, no subject, and both serverAuth and clientAuth,
//! because a sidecar is a TLS server to one peer and a TLS client to the next.

use crate::root::StoredRoot;
use crate::spiffe::ServiceId;
use crate::{hex_colon, now_datetime, CaError};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

/// `/v1/agent/connect/ca/leaf/:service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct IssuedCert {
    pub serial_number: String,
    #[serde(rename = "CertPEM")]
    pub cert_pem: String,
    #[serde(rename = "PrivateKeyPEM")]
    pub private_key_pem: String,
    pub service: String,
    #[serde(rename = "ServiceURI")]
    pub service_uri: String,
    pub valid_after: String,
    pub valid_before: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A fresh key and a CSR for a service identity (done by the agent; the key never leaves it).
pub fn new_request(id: &ServiceId) -> Result<(String, String), CaError> {
    let key = KeyPair::generate()
        .map_err(|e| CaError::Internal(format!("key generation failed: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(
        id.uri()
            .try_into()
            .map_err(|_| CaError::BadCsr("invalid SPIFFE URI".into()))?,
    )];
    let csr = params
        .serialize_request(&key)
        .map_err(|e| CaError::Internal(format!("CSR failed: {e}")))?;
    let pem = csr
        .pem()
        .map_err(|e| CaError::Internal(format!("CSR encoding failed: {e}")))?;
    Ok((key.serialize_pem(), pem))
}

/// What the signer needs to know about the cluster.
pub struct SigningContext<'a> {
    pub root: &'a StoredRoot,
    pub trust_domain: &'a str,
    pub datacenter: &'a str,
    pub serial: u64,
    pub now_unix: u64,
    pub ttl: Duration,
}

/// Checks a CSR (one service SPIFFE URI in our trust domain and datacenter) and signs it with the active root.
/// Returns the issued certificate (leaf followed by the root's intermediates) and the identity it names.
pub fn sign(csr_pem: &str, ctx: &SigningContext<'_>) -> Result<(IssuedCert, ServiceId), CaError> {
    Csr::parse(csr_pem)?.sign(ctx)
}

/// A CSR read once: the identity it asks for (its one URI SAN, checked for shape but not yet for trust domain or
/// datacenter), so that who may have it signed is decided before signing, without parsing it twice.
pub struct Csr {
    req: CertificateSigningRequestParams,
    pub id: ServiceId,
}

impl Csr {
    pub fn parse(csr_pem: &str) -> Result<Csr, CaError> {
        parse_csr(csr_pem).map(|(req, id)| Csr { req, id })
    }

    /// Checks the identity's scope and signs with the active root (see [`sign`]).
    pub fn sign(self, ctx: &SigningContext<'_>) -> Result<(IssuedCert, ServiceId), CaError> {
        check_scope(&self.id, ctx)?;
        sign_checked(self.req, self.id, ctx)
    }
}

fn parse_csr(csr_pem: &str) -> Result<(CertificateSigningRequestParams, ServiceId), CaError> {
    let req = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| CaError::BadCsr(format!("invalid certificate signing request: {e}")))?;
    let uris: Vec<String> = req
        .params
        .subject_alt_names
        .iter()
        .filter_map(|s| match s {
            SanType::URI(u) => Some(u.as_str().to_string()),
            _ => None,
        })
        .collect();
    if req
        .params
        .subject_alt_names
        .iter()
        .any(|s| matches!(s, SanType::Rfc822Name(_)))
    {
        return Err(CaError::BadCsr("CSR SAN contains an email address".into()));
    }
    let [uri] = uris.as_slice() else {
        return Err(CaError::BadCsr(format!(
            "CSR SAN should contain exactly one URI SAN, got {}",
            uris.len()
        )));
    };
    let id = ServiceId::parse(uri).ok_or_else(|| {
        CaError::BadCsr(format!("SPIFFE ID in CSR is not a service identity: {uri}"))
    })?;
    Ok((req, id))
}

fn check_scope(id: &ServiceId, ctx: &SigningContext<'_>) -> Result<(), CaError> {
    if id.trust_domain != ctx.trust_domain.to_ascii_lowercase() {
        return Err(CaError::BadCsr(format!(
            "SPIFFE ID in CSR from a different trust domain: {} (want {})",
            id.trust_domain, ctx.trust_domain
        )));
    }
    if id.datacenter != ctx.datacenter {
        return Err(CaError::BadCsr(format!(
            "SPIFFE ID in CSR from a different datacenter: {} (want {})",
            id.datacenter, ctx.datacenter
        )));
    }
    if id.namespace != "default" {
        return Err(CaError::BadCsr(format!(
            "namespace {:?} is not supported (use default)",
            id.namespace
        )));
    }
    Ok(())
}

fn sign_checked(
    mut req: CertificateSigningRequestParams,
    id: ServiceId,
    ctx: &SigningContext<'_>,
) -> Result<(IssuedCert, ServiceId), CaError> {
    let key = KeyPair::from_pem(&ctx.root.private_key_pem)
        .map_err(|e| CaError::Internal(format!("CA key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&ctx.root.root.root_cert, key)
        .map_err(|e| CaError::Internal(format!("CA certificate: {e}")))?;
    let p = &mut req.params;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.subject_alt_names.retain(|s| {
        matches!(
            s,
            SanType::URI(_) | SanType::DnsName(_) | SanType::IpAddress(_)
        )
    });
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DataEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(SerialNumber::from_slice(&ctx.serial.to_be_bytes()));
    // Backdated a minute (as Consul does) for clock skew, but never by more than a quarter of a short test TTL.
    let backdate = 60.min(ctx.ttl.as_secs() / 4);
    let not_before = now_datetime(ctx.now_unix.saturating_sub(backdate));
    p.not_before = not_before;
    p.not_after = not_before + ctx.ttl;
    let cert = req
        .signed_by(&issuer)
        .map_err(|e| CaError::Internal(format!("signing failed: {e}")))?;
    let mut cert_pem = cert.pem();
    for intermediate in ctx.root.root.intermediate_certs.iter().flatten() {
        if !cert_pem.ends_with('\n') {
            cert_pem.push('\n');
        }
        cert_pem.push_str(intermediate);
    }
    let info = inspect(&cert_pem)?;
    let issued = IssuedCert {
        serial_number: info.serial,
        cert_pem,
        private_key_pem: String::new(),
        service: id.service.clone(),
        service_uri: id.uri(),
        valid_after: info.valid_after,
        valid_before: info.valid_before,
        create_index: 0,
        modify_index: 0,
    };
    Ok((issued, id))
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub serial: String,
    pub valid_after: String,
    pub valid_before: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// Authority key identifier, colon hex: which root key signed it.
    pub authority_key_id: String,
    pub uris: Vec<String>,
}

/// The subject alternative names `pick` keeps.
fn san_names(
    cert: &X509Certificate<'_>,
    pick: impl Fn(&x509_parser::extensions::GeneralName<'_>) -> Option<String>,
) -> Vec<String> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.iter().filter_map(&pick).collect())
        .unwrap_or_default()
}

fn uris_of(cert: &X509Certificate<'_>) -> Vec<String> {
    san_names(cert, |n| match n {
        x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_string()),
        _ => None,
    })
}

/// The DNS SANs of a DER certificate, lowercased (empty when it does not parse): server RPC names its roles so.
pub fn cert_dns_names(der: &[u8]) -> Vec<String> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => san_names(&cert, |n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        }),
        Err(_) => Vec::new(),
    }
}

/// The URI SANs of a DER certificate (empty when it does not parse): where a peer's SPIFFE identity is.
pub fn cert_uris(der: &[u8]) -> Vec<String> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => uris_of(&cert),
        Err(_) => Vec::new(),
    }
}

/// Reads the first certificate of a PEM bundle.
pub fn inspect(pem: &str) -> Result<CertInfo, CaError> {
    let der = crate::pem_to_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| CaError::BadCsr(format!("invalid certificate: {e}")))?;
    let ts = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let authority_key_id = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| hex_colon(k.0))
            }
            _ => None,
        })
        .unwrap_or_default();
    let uris = uris_of(&cert);
    Ok(CertInfo {
        serial: hex_colon(cert.raw_serial()),
        valid_after: ts(cert.validity().not_before),
        valid_before: ts(cert.validity().not_after),
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        authority_key_id,
        uris,
    })
}
