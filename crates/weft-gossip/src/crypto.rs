//! Gossip encryption: every packet is sealed with AES-GCM under the keyring's primary key (base64 of 16 or 32 bytes,
//! as `weft keygen` prints) and opened with whichever installed key sealed it, so that a key can be rotated across
//! a running cluster (`weft keyring -install`, `-use`, `-remove`) without a moment in which two members cannot
//! understand each other. A random 96-bit nonce is sent in front of each sealed packet.
//!
//! The keyring is shared: the gossip task seals and opens with it, the RPC layer derives its request MACs from its
//! keys, and every change is written to the keyring file (mode 0600) when there is one, so a restarted agent
//! comes back with the keys the cluster uses now rather than the one its `-encrypt` flag was first given.

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// At most this many keys are installed at once (a rotation needs two).
pub const MAX_KEYS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the gossip encryption key is not valid base64")]
    NotBase64,
    #[error("the gossip encryption key must be 16 or 32 bytes (base64-encoded), not {0}")]
    BadLength(usize),
    #[error("the system's random number generator failed; no key was made")]
    NoRandomness,
    // Serf's and memberlist's texts, which Consul's keyring answers carry.
    #[error("Requested key is not in the keyring")]
    NotInstalled,
    #[error("Removing the primary key is not allowed")]
    RemovePrimary,
    #[error("the keyring already holds {MAX_KEYS} keys: remove one first")]
    Full,
    #[error("the keyring file {path}: {reason}")]
    File { path: String, reason: String },
}

/// One installed key: its canonical base64 text, raw bytes and cipher.
struct Key {
    text: String,
    raw: Vec<u8>,
    cipher: LessSafeKey,
}

impl Key {
    fn parse(text: &str) -> Result<Key, KeyError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::NotBase64)?;
        let algorithm = match raw.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => return Err(KeyError::BadLength(n)),
        };
        let unbound =
            UnboundKey::new(algorithm, &raw).map_err(|_| KeyError::BadLength(raw.len()))?;
        Ok(Key {
            text: base64::engine::general_purpose::STANDARD.encode(&raw),
            raw,
            cipher: LessSafeKey::new(unbound),
        })
    }
}

struct Keys {
    /// Primary first.
    keys: Vec<Key>,
    /// Bumped on every change, so users of derived material know to derive again.
    generation: u64,
}

/// The installed keys, the first one primary; cheap to clone (clones share the keys).
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<RwLock<Keys>>,
    rng: SystemRandom,
    /// Where every change is written, when the agent has a data dir.
    file: Option<Arc<PathBuf>>,
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

/// The canonical text of a key (checked: base64 of 16 or 32 bytes), for comparing what operators type.
pub fn canonical_key(text: &str) -> Result<String, KeyError> {
    Key::parse(text).map(|k| k.text)
}

impl Keyring {
    /// A keyring holding one key, primary.
    pub fn from_base64(key: &str) -> Result<Keyring, KeyError> {
        Keyring::from_keys(&[key.to_string()])
    }

    /// A keyring holding `keys`, the first primary (duplicates dropped).
    pub fn from_keys(keys: &[String]) -> Result<Keyring, KeyError> {
        let mut parsed: Vec<Key> = Vec::new();
        for text in keys {
            let key = Key::parse(text)?;
            if !parsed.iter().any(|k| k.text == key.text) {
                parsed.push(key);
            }
        }
        if parsed.is_empty() {
            return Err(KeyError::BadLength(0));
        }
        if parsed.len() > MAX_KEYS {
            return Err(KeyError::Full);
        }
        Ok(Keyring {
            keys: Arc::new(RwLock::new(Keys {
                keys: parsed,
                generation: 0,
            })),
            rng: SystemRandom::new(),
            file: None,
        })
    }

    /// Reads a keyring file (a JSON array of base64 keys, primary first); `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<Keyring>, KeyError> {
        let file_error = |reason: String| KeyError::File {
            path: path.display().to_string(),
            reason,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(file_error(e.to_string())),
        };
        let keys: Vec<String> = serde_json::from_slice(&bytes)
            .map_err(|e| file_error(format!("not a JSON array of keys: {e}")))?;
        Keyring::from_keys(&keys)
            .map(Some)
            .map_err(|e| file_error(e.to_string()))
    }

    /// Writes the keys to `path` now and after every change.
    pub fn persist_to(mut self, path: &Path) -> Result<Keyring, KeyError> {
        self.file = Some(Arc::new(path.to_path_buf()));
        self.save()?;
        Ok(self)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self) -> Result<(), KeyError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let (_, keys) = self.list();
        let bytes = serde_json::to_vec(&keys).map_err(|e| KeyError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        weft_types::fsio::atomic_write(path, &bytes, weft_types::fsio::PRIVATE_FILE).map_err(|e| {
            KeyError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })
    }

    /// Changes the keys with `change` (which answers whether anything changed) and saves them.
    fn change(
        &self,
        change: impl FnOnce(&mut Vec<Key>) -> Result<bool, KeyError>,
    ) -> Result<(), KeyError> {
        let changed = {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            let changed = change(&mut keys.keys)?;
            if changed {
                keys.generation += 1;
            }
            changed
        };
        if changed {
            self.save()?;
        }
        Ok(())
    }

    /// Adds `key` (not primary); installing a key already there changes nothing.
    pub fn install(&self, key: &str) -> Result<(), KeyError> {
        let key = Key::parse(key)?;
        self.change(|keys| {
            if keys.iter().any(|k| k.text == key.text) {
                return Ok(false);
            }
            if keys.len() >= MAX_KEYS {
                return Err(KeyError::Full);
            }
            keys.push(key);
            Ok(true)
        })
    }

    /// Makes an installed key the primary one (packets are sealed with it from now on).
    pub fn use_key(&self, key: &str) -> Result<(), KeyError> {
        let text = canonical_key(key)?;
        self.change(|keys| {
            let at = keys
                .iter()
                .position(|k| k.text == text)
                .ok_or(KeyError::NotInstalled)?;
            if at == 0 {
                return Ok(false);
            }
            let key = keys.remove(at);
            keys.insert(0, key);
            Ok(true)
        })
    }

    /// Removes a key that is not the primary one; removing a key that is not there changes nothing (as Serf).
    pub fn remove(&self, key: &str) -> Result<(), KeyError> {
        let text = canonical_key(key)?;
        self.change(|keys| {
            if keys.first().is_some_and(|k| k.text == text) {
                return Err(KeyError::RemovePrimary);
            }
            let before = keys.len();
            keys.retain(|k| k.text != text);
            Ok(keys.len() != before)
        })
    }

    /// The primary key and every installed key (primary first), as base64.
    pub fn list(&self) -> (String, Vec<String>) {
        let keys = self.read();
        let all: Vec<String> = keys.keys.iter().map(|k| k.text.clone()).collect();
        (all.first().cloned().unwrap_or_default(), all)
    }

    /// The raw bytes of every key, primary first.
    pub fn raw_keys(&self) -> Vec<Vec<u8>> {
        self.read().keys.iter().map(|k| k.raw.clone()).collect()
    }

    /// Changes on every install, use and remove.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// nonce || ciphertext || tag, under the primary key.
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut buf = plain.to_vec();
        self.read()
            .keys
            .first()?
            .cipher
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Some(out)
    }

    /// The plaintext, or `None` when no installed key sealed the packet (or it was altered).
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let keys = self.read();
        for key in &keys.keys {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = rest.to_vec();
            if let Ok(plain) = key.cipher.open_in_place(nonce, Aad::empty(), &mut buf) {
                return Some(plain.to_vec());
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_never_leaves_two_members_unable_to_talk() {
        let k1 = generate_key().unwrap();
        let k2 = generate_key().unwrap();
        let a = Keyring::from_base64(&k1).unwrap();
        let b = Keyring::from_base64(&k1).unwrap();
        // Install everywhere, then switch one member: each still opens the other's packets.
        a.install(&k2).unwrap();
        b.install(&k2).unwrap();
        a.use_key(&k2).unwrap();
        assert_eq!(a.list(), (k2.clone(), vec![k2.clone(), k1.clone()]));
        assert!(b.open(&a.seal(b"x").unwrap()).is_some());
        assert!(a.open(&b.seal(b"y").unwrap()).is_some());
        b.use_key(&k2).unwrap();
        a.remove(&k1).unwrap();
        b.remove(&k1).unwrap();
        assert_eq!(a.list().1, vec![k2.clone()]);
        // A member left on the old key alone is out.
        let old = Keyring::from_base64(&k1).unwrap();
        assert!(old.open(&a.seal(b"z").unwrap()).is_none());
        assert!(a.open(&old.seal(b"z").unwrap()).is_none());
    }

    #[test]
    fn bad_changes_are_refused_and_change_nothing() {
        let k1 = generate_key().unwrap();
        let k2 = generate_key().unwrap();
        let ring = Keyring::from_base64(&k1).unwrap();
        let before = ring.generation();
        assert_eq!(ring.remove(&k1), Err(KeyError::RemovePrimary));
        assert_eq!(ring.use_key(&k2), Err(KeyError::NotInstalled));
        assert_eq!(ring.install("not base64!"), Err(KeyError::NotBase64));
        assert_eq!(ring.install("AAAA"), Err(KeyError::BadLength(3)));
        // Removing a key that is not there, or installing one twice, is not an error (as Serf) and no change.
        ring.remove(&k2).unwrap();
        ring.install(&k1).unwrap();
        assert_eq!(ring.generation(), before);
        for _ in 1..MAX_KEYS {
            ring.install(&generate_key().unwrap()).unwrap();
        }
        assert_eq!(ring.install(&k2), Err(KeyError::Full));
        assert_eq!(ring.list().1.len(), MAX_KEYS);
    }

    #[test]
    fn the_keyring_file_follows_every_change_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("weft-keyring-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keyring");
        assert!(Keyring::load(&path).unwrap().is_none());
        let k1 = generate_key().unwrap();
        let k2 = generate_key().unwrap();
        let ring = Keyring::from_base64(&k1)
            .unwrap()
            .persist_to(&path)
            .unwrap();
        ring.install(&k2).unwrap();
        ring.use_key(&k2).unwrap();
        let back = Keyring::load(&path).unwrap().unwrap();
        assert_eq!(back.list(), (k2.clone(), vec![k2, k1]));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(Keyring::load(&path), Err(KeyError::File { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
