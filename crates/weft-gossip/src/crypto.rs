//! Gossip encryption: every packet is sealed with AES-GCM under the key given to `-encrypt` (base64 of 16 or 32
//! bytes, as `weft keygen` prints). A random 96-bit nonce is sent in front of each sealed packet.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the gossip encryption key is not valid base64")]
    NotBase64,
    #[error("the gossip encryption key must be 16 or 32 bytes (base64-encoded), not {0}")]
    BadLength(usize),
    #[error("the system's random number generator failed; no key was made")]
    NoRandomness,
}

/// The key used to seal and open packets.
#[derive(Clone)]
pub struct Keyring {
    key: std::sync::Arc<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(..)")
    }
}

/// A new random 32-byte key, base64-encoded (`weft keygen`). Fails rather than hand out a predictable key when the
/// system cannot supply randomness.
pub fn generate_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::NoRandomness)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Keyring {
    pub fn from_base64(key: &str) -> Result<Keyring, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| KeyError::NotBase64)?;
        let algorithm = match bytes.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => return Err(KeyError::BadLength(n)),
        };
        let unbound =
            UnboundKey::new(algorithm, &bytes).map_err(|_| KeyError::BadLength(bytes.len()))?;
        Ok(Keyring {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
            rng: SystemRandom::new(),
        })
    }

    /// nonce || ciphertext || tag
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Some(out)
    }

    /// The plaintext, or `None` when the packet was not sealed with this key (or was altered).
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}
