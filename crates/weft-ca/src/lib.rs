//! Weft's built-in certificate authority. Pure: no I/O and no clock (callers pass the time), so rotation, expiry
//! and renewal are tested without sleeping.
//!
//! - [`spiffe`]: service identities and trust domains.
//! - [`config`]: the CA configuration with Consul's defaults and validation.
//! - [`root`]: roots, their `CARoot` description, cross-signing and pruning.
//! - [`leaf`]: CSRs, signing with Consul's checks, and reading certificates back.
//! - [`renewal`]: when an agent should renew a leaf.
//! - [`seal`]: encrypting the CA's private keys at rest.

pub mod config;
pub mod leaf;
pub mod renewal;
pub mod root;
pub mod seal;
pub mod spiffe;

pub use config::{CaConfig, CaConfigWire};
pub use leaf::IssuedCert;
pub use root::{CaRoot, CaRootList, StoredRoot};
pub use spiffe::ServiceId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// The configuration is invalid (400).
    #[error("{0}")]
    BadConfig(String),
    /// The CSR asks for something this CA will not sign (400).
    #[error("{0}")]
    BadCsr(String),
    /// Cryptography failed where it should not (500).
    #[error("{0}")]
    Internal(String),
}

/// Colon-separated lowercase hex (`aa:bb:cc`), Consul's rendering of serials and key IDs.
pub fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn now_datetime(unix: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The DER bytes of the first PEM block.
pub(crate) fn pem_to_der(pem: &str) -> Result<Vec<u8>, CaError> {
    use base64::Engine;
    let begin = pem
        .find("-----BEGIN ")
        .ok_or_else(|| CaError::BadConfig("no PEM block found".into()))?;
    let after = &pem[begin..];
    let body_start = after
        .find('\n')
        .ok_or_else(|| CaError::BadConfig("truncated PEM block".into()))?
        + 1;
    let end = after
        .find("-----END ")
        .ok_or_else(|| CaError::BadConfig("truncated PEM block".into()))?;
    if end < body_start {
        return Err(CaError::BadConfig("truncated PEM block".into()));
    }
    let body: String = after[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| CaError::BadConfig(format!("invalid PEM encoding: {e}")))
}

#[cfg(test)]
mod tests;
