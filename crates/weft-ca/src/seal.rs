//! Sealing secrets at rest: the CA's private keys are stored in the Raft log and its snapshots only as
//! `weft-sealed:v1:<key id>:<base64 nonce ‖ ciphertext>`, encrypted with AES-256-GCM under a [`SealKey`] that lives
//! outside the log (a file in the data dir, or one the operator supplies). A sealed value names the key that sealed
//! it, so a server holding another key says which one it lacks instead of failing obscurely.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "weft-sealed:v1:";
const KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a sealing key is 32 bytes, base64-encoded (as `weft keygen` prints); this one is {0} bytes")]
    KeyLength(usize),
    #[error("a sealing key is base64 (as `weft keygen` prints): {0}")]
    KeyEncoding(String),
    #[error("the value is not sealed")]
    NotSealed,
    #[error("the value is sealed with key {wanted}, and this key is {have}")]
    OtherKey { wanted: String, have: String },
    #[error("the sealed value is damaged or was altered")]
    Damaged,
    #[error("the system's random number generator failed")]
    NoRandomness,
}

/// A 256-bit key that seals secrets at rest. Its `Debug` shows only the key's ID.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey {
    raw: [u8; KEY_LEN],
    id: String,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.id)
    }
}

/// The ID under which a sealed `value` was sealed; `None` for a value in the clear (or empty).
pub fn sealed_with(value: &str) -> Option<&str> {
    value
        .strip_prefix(PREFIX)?
        .split_once(':')
        .map(|(id, _)| id)
}

impl SealKey {
    /// A new random key.
    pub fn generate() -> Result<SealKey, SealError> {
        let mut raw = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| SealError::NoRandomness)?;
        Ok(SealKey::from_array(raw))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SealKey, SealError> {
        let raw: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| SealError::KeyLength(bytes.len()))?;
        Ok(SealKey::from_array(raw))
    }

    /// A key as files hold it: base64, surrounding whitespace ignored.
    pub fn from_base64(text: &str) -> Result<SealKey, SealError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| SealError::KeyEncoding(e.to_string()))?;
        SealKey::from_bytes(&bytes)
    }

    pub fn from_array(raw: [u8; KEY_LEN]) -> SealKey {
        // The ID names the key without revealing it: the start of a digest under a fixed label.
        let mut labelled = b"weft seal key id v1\n".to_vec();
        labelled.extend_from_slice(&raw);
        let digest = ring::digest::digest(&ring::digest::SHA256, &labelled);
        let id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        SealKey { raw, id }
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.raw)
    }

    /// A short public name for the key (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Result<LessSafeKey, SealError> {
        UnboundKey::new(&AES_256_GCM, &self.raw)
            .map(LessSafeKey::new)
            .map_err(|_| SealError::KeyLength(KEY_LEN))
    }

    /// Seals `plain`; `context` (e.g. the root's ID) is authenticated too, so a sealed value cannot be moved to
    /// another record.
    pub fn seal(&self, plain: &str, context: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::NoRandomness)?;
        let mut data = plain.as_bytes().to_vec();
        self.cipher()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| SealError::Damaged)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!(
            "{PREFIX}{}:{}",
            self.id,
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Opens a value sealed by [`SealKey::seal`] with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SealError> {
        let rest = sealed.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
        let (id, body) = rest.split_once(':').ok_or(SealError::Damaged)?;
        if id != self.id {
            return Err(SealError::OtherKey {
                wanted: id.to_string(),
                have: self.id.clone(),
            });
        }
        let mut data = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| SealError::Damaged)?;
        if data.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&data[..NONCE_LEN]);
        let plain = self
            .cipher()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data[NONCE_LEN..],
            )
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Damaged)
    }

    /// `value` in the clear: opened when sealed, as it is otherwise (a store written before sealing existed).
    pub fn open_or_plain(&self, value: &str, context: &str) -> Result<String, SealError> {
        if sealed_with(value).is_some() {
            self.open(value, context)
        } else {
            Ok(value.to_string())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = SealKey::generate().unwrap();
        let sealed = key.seal("-----BEGIN PRIVATE KEY-----", "root-1").unwrap();
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(sealed_with(&sealed), Some(key.id()));
        assert_eq!(
            key.open(&sealed, "root-1").unwrap(),
            "-----BEGIN PRIVATE KEY-----"
        );
        assert_eq!(key.open(&sealed, "root-2"), Err(SealError::Damaged));
        let other = SealKey::generate().unwrap();
        assert!(matches!(
            other.open(&sealed, "root-1"),
            Err(SealError::OtherKey { .. })
        ));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open(&altered, "root-1").is_err());
        assert_eq!(key.open("plain", "root-1"), Err(SealError::NotSealed));
        assert_eq!(key.open_or_plain("plain", "x").unwrap(), "plain");
        assert_eq!(
            key.open("weft-sealed:v1:nope", "x"),
            Err(SealError::Damaged)
        );
    }

    #[test]
    fn keys_round_trip_through_base64_and_bad_ones_are_refused() {
        let key = SealKey::generate().unwrap();
        let again = SealKey::from_base64(&format!(" {}\n", key.to_base64())).unwrap();
        assert_eq!(again, key);
        assert!(!format!("{key:?}").contains(&key.to_base64()));
        assert_eq!(
            SealKey::from_base64("c2hvcnQ="),
            Err(SealError::KeyLength(5))
        );
        assert!(matches!(
            SealKey::from_base64("not base64!"),
            Err(SealError::KeyEncoding(_))
        ));
    }
}
