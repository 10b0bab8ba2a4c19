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
    #[error("the gossip keyring is empty")]
    NoKey,
}

/// Where the gossip keys come from: the agent's keyring, which `weft keyring` changes while the cluster runs.
pub trait KeySource: Send + Sync + 'static {
    /// Every installed key's raw bytes, the primary one first.
    fn keys(&self) -> Vec<Vec<u8>>;
    /// Changes whenever the keys do, so derived keys are made again only then.
    fn generation(&self) -> u64;
}

/// One fixed key (tests, and agents whose keyring never changes).
struct FixedKey(Vec<u8>);

impl KeySource for FixedKey {
    fn keys(&self) -> Vec<Vec<u8>> {
        vec![self.0.clone()]
    }
    fn generation(&self) -> u64 {
        0
    }
}

/// The keys derived from one gossip key.
struct Derived {
    mac: hmac::Key,
    transport: weft_ca::seal::SealKey,
}

impl Derived {
    fn from_gossip_key(gossip_key: &[u8]) -> Derived {
        let root = hmac::Key::new(hmac::HMAC_SHA256, gossip_key);
        let derived = hmac::sign(&root, b"weft rpc authentication v1");
        let transport = hmac::sign(&root, b"weft rpc secret transport v1");
        // A SHA-256 HMAC is 32 bytes, a sealing key's length.
        let mut transport_key = [0u8; 32];
        for (to, from) in transport_key.iter_mut().zip(transport.as_ref()) {
            *to = *from;
        }
        Derived {
            mac: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            transport: weft_ca::seal::SealKey::from_array(transport_key),
        }
    }
}

/// Signs and checks RPC requests with keys derived from the gossip keys: requests are signed with the primary key
/// and accepted under any installed key, so a key rotation never cuts members off from each other.
pub struct RpcAuth {
    source: Box<dyn KeySource>,
    /// The derived keys (primary first) and the generation they were made for.
    derived: std::sync::RwLock<(u64, std::sync::Arc<Vec<Derived>>)>,
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
    /// The RPC keys for a cluster whose gossip key is `gossip_key` (its raw bytes). Separate keys, so the gossip
    /// cipher's key is never used for anything else.
    pub fn from_gossip_key(gossip_key: &[u8]) -> RpcAuth {
        RpcAuth::from_keys(Box::new(FixedKey(gossip_key.to_vec())))
    }

    /// The RPC keys for whatever gossip keys `source` holds at the time of each request.
    pub fn from_keys(source: Box<dyn KeySource>) -> RpcAuth {
        RpcAuth {
            source,
            derived: std::sync::RwLock::new((u64::MAX, std::sync::Arc::new(Vec::new()))),
            rng: SystemRandom::new(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The derived keys for the source's current keys, primary first.
    fn derived(&self) -> std::sync::Arc<Vec<Derived>> {
        let generation = self.source.generation();
        {
            let held = self.derived.read().unwrap_or_else(|p| p.into_inner());
            if held.0 == generation {
                return held.1.clone();
            }
        }
        let keys: Vec<Derived> = self
            .source
            .keys()
            .iter()
            .map(|k| Derived::from_gossip_key(k))
            .collect();
        let keys = std::sync::Arc::new(keys);
        *self.derived.write().unwrap_or_else(|p| p.into_inner()) = (generation, keys.clone());
        keys
    }

    /// Seals a secret one member hands another (the CA's sealing key) under the primary key.
    pub fn seal_secret(&self, plain: &str, context: &str) -> Result<String, String> {
        let keys = self.derived();
        let primary = keys.first().ok_or("the gossip keyring is empty")?;
        primary
            .transport
            .seal(plain, context)
            .map_err(|e| e.to_string())
    }

    /// Opens a secret sealed by [`RpcAuth::seal_secret`] under any installed key.
    pub fn open_secret(&self, sealed: &str, context: &str) -> Result<String, String> {
        let keys = self.derived();
        let mut last = String::from("the gossip keyring is empty");
        for key in keys.iter() {
            match key.transport.open(sealed, context) {
                Ok(plain) => return Ok(plain),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
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
        let keys = self.derived();
        let primary = keys.first().ok_or(AuthError::NoKey)?;
        let mac = hmac::sign(
            &primary.mac,
            &message(method, path_and_query, at, nonce, body),
        );
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
        let signed = message(method, path_and_query, at, nonce, body);
        if !self
            .derived()
            .iter()
            .any(|k| hmac::verify(&k.mac, &signed, &mac).is_ok())
        {
            return Err(AuthError::BadMac);
        }
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

    /// Keys that a test changes at will.
    struct Switchable(std::sync::Mutex<(u64, Vec<Vec<u8>>)>);

    impl KeySource for std::sync::Arc<Switchable> {
        fn keys(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().1.clone()
        }
        fn generation(&self) -> u64 {
            self.0.lock().unwrap().0
        }
    }

    #[test]
    fn during_a_rotation_either_key_is_accepted_and_afterwards_only_the_new_one() {
        let (k1, k2) = (b"0123456789abcdef".to_vec(), b"fedcba9876543210".to_vec());
        let keys = std::sync::Arc::new(Switchable(std::sync::Mutex::new((0, vec![k1.clone()]))));
        let server = RpcAuth::from_keys(Box::new(keys.clone()));
        let old_member = RpcAuth::from_gossip_key(&k1);
        let new_member = RpcAuth::from_gossip_key(&k2);
        let sign = |a: &RpcAuth| a.sign("POST", "/v1/internal/apply", b"{}").unwrap();
        let verify = |h: &str| server.verify("POST", "/v1/internal/apply", Some(h), b"{}");
        assert_eq!(verify(&sign(&new_member)), Err(AuthError::BadMac));
        // Installed beside the old key: both are accepted; the primary (still k1) signs.
        *keys.0.lock().unwrap() = (1, vec![k1.clone(), k2.clone()]);
        assert_eq!(verify(&sign(&new_member)), Ok(()));
        assert_eq!(verify(&sign(&old_member)), Ok(()));
        assert_eq!(
            old_member.verify("POST", "/v1/internal/apply", Some(&sign(&server)), b"{}"),
            Ok(())
        );
        let secret = server.seal_secret("ca key", "ctx").unwrap();
        assert_eq!(old_member.open_secret(&secret, "ctx").unwrap(), "ca key");
        // The old key removed: its signatures and sealed secrets are refused.
        *keys.0.lock().unwrap() = (2, vec![k2.clone()]);
        assert_eq!(verify(&sign(&old_member)), Err(AuthError::BadMac));
        assert_eq!(verify(&sign(&new_member)), Ok(()));
        assert!(server
            .open_secret(&old_member.seal_secret("x", "ctx").unwrap(), "ctx")
            .is_err());
        assert_eq!(
            new_member
                .open_secret(&server.seal_secret("y", "ctx").unwrap(), "ctx")
                .unwrap(),
            "y"
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
