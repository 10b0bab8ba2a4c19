//! Proof of membership on the RPC port without TLS: every request carries an HMAC keyed from the cluster's gossip
//! encryption key, over the method, the path, a timestamp, a nonce and the body's digest, so that a bare HTTP client
//! on the network gets nothing and a captured request cannot be replayed.
//!
//! Header: `X-Weft-Rpc-Auth: v1 <unix-ms> <nonce> <base64 mac>`. A request is accepted once, within `SKEW` of the
//! server's clock; nonces are remembered for twice that long (a bounded table: when it is full of live nonces,
//! requests are refused rather than remembered less).

use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const HEADER: &str = "x-weft-rpc-auth";

/// How far a request's clock may be from ours.
const SKEW: Duration = Duration::from_secs(30);
/// At most this many nonces are remembered (a few thousand requests a second for a minute).
const MAX_NONCES: usize = 262_144;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this request carries no cluster authentication")]
    Missing,
    #[error("malformed cluster authentication")]
    Malformed,
    #[error("the request's clock is more than 30 s from the server's (or the request is old)")]
    Stale,
    #[error("cluster authentication does not match: another cluster's key, or an altered request")]
    BadMac,
    #[error("this request was already seen")]
    Replayed,
    #[error("too many requests to remember; refusing")]
    Busy,
    #[error("the system's random number generator failed")]
    NoRandomness,
}

/// Signs and checks RPC requests with a key derived from the gossip key.
pub struct RpcAuth {
    key: hmac::Key,
    /// Seals secrets one server hands another (the CA's sealing key) when no TLS protects the connection.
    transport: weft_ca::seal::SealKey,
    rng: SystemRandom,
    /// Nonces seen, with the time (unix ms) after which they may be forgotten.
    seen: Mutex<HashMap<u64, u64>>,
}

impl std::fmt::Debug for RpcAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RpcAuth(..)")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn message(method: &str, path_and_query: &str, at: u64, nonce: u64, body: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let mut m = format!("v1\n{method}\n{path_and_query}\n{at}\n{nonce:016x}\n").into_bytes();
    m.extend_from_slice(digest.as_ref());
    m
}

impl RpcAuth {
    /// The RPC key for a cluster whose gossip key is `gossip_key` (its raw bytes). A separate key, so the gossip
    /// cipher's key is never used for anything else.
    pub fn from_gossip_key(gossip_key: &[u8]) -> RpcAuth {
        let root = hmac::Key::new(hmac::HMAC_SHA256, gossip_key);
        let derived = hmac::sign(&root, b"weft rpc authentication v1");
        let transport = hmac::sign(&root, b"weft rpc secret transport v1");
        // A SHA-256 HMAC is 32 bytes, a sealing key's length.
        let mut transport_key = [0u8; 32];
        for (to, from) in transport_key.iter_mut().zip(transport.as_ref()) {
            *to = *from;
        }
        RpcAuth {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            transport: weft_ca::seal::SealKey::from_array(transport_key),
            rng: SystemRandom::new(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The key that seals secrets sent between members (derived from the gossip key, like the MAC key).
    pub fn transport_key(&self) -> &weft_ca::seal::SealKey {
        &self.transport
    }

    /// The header value for one request.
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<String, AuthError> {
        let mut nonce = [0u8; 8];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| AuthError::NoRandomness)?;
        let nonce = u64::from_be_bytes(nonce);
        let at = now_ms();
        let mac = hmac::sign(&self.key, &message(method, path_and_query, at, nonce, body));
        let mac = base64::engine::general_purpose::STANDARD.encode(mac.as_ref());
        Ok(format!("v1 {at} {nonce:016x} {mac}"))
    }

    /// Checks one request's header; a request passes once.
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        header: Option<&str>,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let mut parts = header.split(' ');
        let (Some("v1"), Some(at), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(AuthError::Malformed);
        };
        let at: u64 = at.parse().map_err(|_| AuthError::Malformed)?;
        let nonce = u64::from_str_radix(nonce, 16).map_err(|_| AuthError::Malformed)?;
        let mac = base64::engine::general_purpose::STANDARD
            .decode(mac)
            .map_err(|_| AuthError::Malformed)?;
        let now = now_ms();
        let skew = SKEW.as_millis() as u64;
        if at.abs_diff(now) > skew {
            return Err(AuthError::Stale);
        }
        hmac::verify(
            &self.key,
            &message(method, path_and_query, at, nonce, body),
            &mac,
        )
        .map_err(|_| AuthError::BadMac)?;
        self.remember(nonce, now, now.saturating_add(2 * skew))
    }

    fn remember(&self, nonce: u64, now: u64, until: u64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains_key(&nonce) {
            return Err(AuthError::Replayed);
        }
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, expiry| *expiry > now);
            if seen.len() >= MAX_NONCES {
                return Err(AuthError::Busy);
            }
        }
        seen.insert(nonce, until);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_passes_once() {
        let auth = RpcAuth::from_gossip_key(b"0123456789abcdef0123456789abcdef");
        let h = auth.sign("POST", "/v1/internal/apply", b"{}").unwrap();
        assert_eq!(
            auth.verify("POST", "/v1/internal/apply", Some(&h), b"{}"),
            Ok(())
        );
        assert_eq!(
            auth.verify("POST", "/v1/internal/apply", Some(&h), b"{}"),
            Err(AuthError::Replayed)
        );
    }

    #[test]
    fn anything_altered_or_missing_is_refused() {
        let auth = RpcAuth::from_gossip_key(b"0123456789abcdef0123456789abcdef");
        let other = RpcAuth::from_gossip_key(b"fedcba9876543210fedcba9876543210");
        let h = auth.sign("POST", "/v1/internal/apply", b"{}").unwrap();
        assert_eq!(
            auth.verify("POST", "/v1/internal/apply", None, b"{}"),
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.verify("POST", "/v1/internal/apply", Some("v1 x"), b"{}"),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            auth.verify("PUT", "/v1/internal/apply", Some(&h), b"{}"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            auth.verify("POST", "/v1/internal/join", Some(&h), b"{}"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            auth.verify("POST", "/v1/internal/apply", Some(&h), b"[]"),
            Err(AuthError::BadMac)
        );
        assert_eq!(
            other.verify("POST", "/v1/internal/apply", Some(&h), b"{}"),
            Err(AuthError::BadMac)
        );
        let parts: Vec<&str> = h.split(' ').collect();
        let old = format!("v1 {} {} {}", now_ms() - 60_000, parts[2], parts[3]);
        assert_eq!(
            auth.verify("POST", "/v1/internal/apply", Some(&old), b"{}"),
            Err(AuthError::Stale)
        );
    }
}
