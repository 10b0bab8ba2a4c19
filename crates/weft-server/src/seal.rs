//! The CA's private keys at rest. Roots are stored (in the Raft log, its snapshots and the store) with their keys
//! sealed by a [`SealKey`] that never enters the log: the server that creates the CA creates the key and keeps it
//! in its data dir (0600), and every other server fetches it from a peer over server RPC as soon as the CA table
//! names a key it lacks, so whichever server leads next can sign. An operator may supply the key instead
//! (`connect.ca_seal_key_file`, the same file on every server).
//!
//! Exports (`GET /v1/snapshot`) open the keys, so a backup restores on a fresh cluster, as Consul's do; with an
//! operator's key they stay sealed, and the cluster restoring them needs the same key file.

use crate::Server;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use weft_ca::seal::{sealed_with, SealError, SealKey};
use weft_ca::StoredRoot;
use weft_state::{CaSetup, Command, MapKeysError, Store, Table};

/// Where this server's sealing key comes from.
#[derive(Debug, Clone, Default)]
pub enum SealKeySource {
    /// Kept in memory only (dev mode, which has no data dir and no peers).
    #[default]
    Memory,
    /// `<data-dir>/ca-seal.key`: `key` is what the file held at start (none yet on a new server).
    DataDir { path: PathBuf, key: Option<SealKey> },
    /// The operator's file, read at start.
    Operator(SealKey),
}

impl SealKeySource {
    pub(crate) fn initial(&self) -> Option<SealKey> {
        match self {
            SealKeySource::Memory => None,
            SealKeySource::DataDir { key, .. } => key.clone(),
            SealKeySource::Operator(key) => Some(key.clone()),
        }
    }
}

/// The file a server keeps its sealing key in, inside its data dir.
pub const SEAL_KEY_FILE: &str = "ca-seal.key";

#[derive(Debug, thiserror::Error)]
pub enum SealKeyError {
    #[error("reading the CA sealing key {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("saving the CA sealing key to {path}: {reason}")]
    Save { path: PathBuf, reason: String },
    #[error(
        "the CA's private keys are sealed with key {wanted}, which no reachable server holds (this server has {have}); \
         with connect.ca_seal_key_file, give every server the same file"
    )]
    Unavailable { wanted: String, have: String },
    #[error(
        "the snapshot's CA keys are sealed with key {wanted}, and this cluster's key is {have}: restore it on a \
         cluster configured with the same connect.ca_seal_key_file"
    )]
    SnapshotOtherKey { wanted: String, have: String },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    State(#[from] MapKeysError<SealError>),
}

/// Reads a key file (the data dir's or an operator's); `Ok(None)` when it does not exist.
pub fn read_seal_key(path: &Path) -> Result<Option<SealKey>, SealKeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SealKeyError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    SealKey::from_base64(&text)
        .map(Some)
        .map_err(|e| SealKeyError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// `POST /v1/internal/ca/seal-key`'s answer: the key in base64, sealed under the RPC transport key when the
/// cluster has a gossip key (so it never crosses a plain connection in the clear).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealKeyAnswer {
    pub key: String,
    pub sealed: bool,
}

const TRANSPORT_CONTEXT: &str = "weft ca seal key";
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

fn key_id(key: Option<&SealKey>) -> String {
    key.map_or_else(|| "none".to_string(), |k| k.id().to_string())
}

impl Server {
    pub(crate) fn seal_key(&self) -> Option<SealKey> {
        self.inner
            .seal_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Saves `key` where this server keeps it (its data dir), unless the operator supplies it.
    fn save_seal_key(&self, key: &SealKey) -> Result<(), SealKeyError> {
        if let SealKeySource::DataDir { path, .. } = &self.config().ca_seal {
            weft_types::fsio::atomic_write(
                path,
                format!("{}\n", key.to_base64()).as_bytes(),
                0o600,
            )
            .map_err(|e| SealKeyError::Save {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Keeps `key` (saved first).
    fn adopt_seal_key(&self, key: SealKey) -> Result<(), SealKeyError> {
        let mut held = self
            .inner
            .seal_key
            .write()
            .unwrap_or_else(|p| p.into_inner());
        self.save_seal_key(&key)?;
        tracing::info!(key = key.id(), "holding the CA sealing key");
        *held = Some(key);
        Ok(())
    }

    /// The key new root keys are sealed with: the one held, else a new one (saved before it seals anything).
    /// Checked and created under one lock: two initialisations racing (the dev agent's start and the leader loop)
    /// must not each make a key of their own.
    pub(crate) fn seal_key_or_new(&self) -> Result<SealKey, SealKeyError> {
        let mut held = self
            .inner
            .seal_key
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(key) = held.as_ref() {
            return Ok(key.clone());
        }
        let key = SealKey::generate()?;
        self.save_seal_key(&key)?;
        tracing::info!(key = key.id(), "created the CA sealing key");
        *held = Some(key.clone());
        Ok(key)
    }

    /// `root` with its key sealed (a key already sealed stays as it is).
    pub(crate) fn sealed_root(
        &self,
        mut root: StoredRoot,
        key: &SealKey,
    ) -> Result<StoredRoot, SealKeyError> {
        if !root.private_key_pem.is_empty() && sealed_with(&root.private_key_pem).is_none() {
            root.private_key_pem = key.seal(&root.private_key_pem, &root.root.id)?;
        }
        Ok(root)
    }

    /// `root` with its key in the clear, for signing; fetches the sealing key from a peer when this server lacks it.
    pub(crate) async fn unsealed_root(
        &self,
        root: &StoredRoot,
    ) -> Result<StoredRoot, SealKeyError> {
        let Some(wanted) = sealed_with(&root.private_key_pem) else {
            return Ok(root.clone());
        };
        let key = match self.seal_key() {
            Some(key) if key.id() == wanted => key,
            _ => self.fetch_seal_key(wanted).await?,
        };
        Ok(StoredRoot {
            private_key_pem: key.open(&root.private_key_pem, &root.root.id)?,
            ..root.clone()
        })
    }

    /// Asks the other servers for the key named `wanted`, keeps it and returns it.
    pub async fn fetch_seal_key(&self, wanted: &str) -> Result<SealKey, SealKeyError> {
        let me = &self.config().rpc_addr;
        for peer in self.peers().iter().filter(|p| *p != me) {
            let answer: Result<Result<SealKeyAnswer, String>, _> = weft_rpc::post_json(
                self.http(),
                peer,
                "/v1/internal/ca/seal-key",
                &(),
                FETCH_TIMEOUT,
            )
            .await;
            let key = match answer {
                Ok(Ok(answer)) => self.decode_answer(&answer),
                Ok(Err(refusal)) => Err(refusal),
                Err(e) => Err(e.to_string()),
            };
            match key {
                Ok(key) if key.id() == wanted => {
                    self.adopt_seal_key(key.clone())?;
                    return Ok(key);
                }
                Ok(key) => {
                    tracing::debug!(%peer, has = key.id(), wanted, "a peer holds another sealing key")
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "could not fetch the sealing key from a peer")
                }
            }
        }
        Err(SealKeyError::Unavailable {
            wanted: wanted.to_string(),
            have: key_id(self.seal_key().as_ref()),
        })
    }

    fn decode_answer(&self, answer: &SealKeyAnswer) -> Result<SealKey, String> {
        let text = if answer.sealed {
            let auth = self.config().rpc_auth.as_ref().ok_or(
                "the peer sealed its answer with a gossip-derived key this server does not have",
            )?;
            auth.open_secret(&answer.key, TRANSPORT_CONTEXT)?
        } else {
            answer.key.clone()
        };
        SealKey::from_base64(&text).map_err(|e| e.to_string())
    }

    /// Serves `POST /v1/internal/ca/seal-key` (servers only: the RPC guard checks the caller).
    pub fn handle_seal_key(&self) -> Result<SealKeyAnswer, String> {
        let key = self
            .seal_key()
            .ok_or("this server does not hold the CA sealing key yet")?;
        match &self.config().rpc_auth {
            Some(auth) => Ok(SealKeyAnswer {
                key: auth.seal_secret(&key.to_base64(), TRANSPORT_CONTEXT)?,
                sealed: true,
            }),
            None => Ok(SealKeyAnswer {
                key: key.to_base64(),
                sealed: false,
            }),
        }
    }

    /// The leader's upgrade step: roots stored before keys were sealed get sealed now.
    pub(crate) async fn seal_plain_roots(&self) -> Result<(), crate::CaManagerError> {
        let setup = {
            let store = self.read();
            let ca = store.ca();
            let plain = ca.roots.iter().any(|r| {
                !r.private_key_pem.is_empty() && sealed_with(&r.private_key_pem).is_none()
            });
            let Some(config) = ca.config.clone().filter(|_| plain) else {
                return Ok(());
            };
            (ca.cluster_id.clone(), config, ca.roots.clone(), ca.serial)
        };
        let (cluster_id, config, roots, serial) = setup;
        let key = self.seal_key_or_new()?;
        let roots = roots
            .into_iter()
            .map(|r| self.sealed_root(r, &key))
            .collect::<Result<Vec<_>, _>>()?;
        self.write(Command::CaSet(Box::new(CaSetup {
            cluster_id,
            config,
            roots,
            serial,
        })))
        .await?;
        tracing::info!(key = key.id(), "sealed the CA's private keys at rest");
        Ok(())
    }

    /// The state as `GET /v1/snapshot` exports it: root keys opened (a backup restores anywhere), or left sealed
    /// when the operator supplies the key.
    pub async fn export_state(&self) -> Result<(Vec<u8>, u64), SealKeyError> {
        let (state, index, wanted) = {
            let store = self.read();
            let wanted = store
                .ca()
                .roots
                .iter()
                .find_map(|r| sealed_with(&r.private_key_pem).map(str::to_string));
            (store.snapshot(), store.last_index(), wanted)
        };
        if matches!(self.config().ca_seal, SealKeySource::Operator(_)) {
            return Ok((state, index));
        }
        let Some(wanted) = wanted else {
            return Ok((state, index));
        };
        let key = match self.seal_key() {
            Some(key) if key.id() == wanted => key,
            _ => self.fetch_seal_key(&wanted).await?,
        };
        let opened = Store::map_root_keys(&state, |root| {
            key.open_or_plain(&root.private_key_pem, &root.root.id)
        })?;
        Ok((opened, index))
    }

    /// A snapshot's state made ready to restore here: keys in the clear are sealed with this cluster's key; keys
    /// sealed with it stay; keys sealed with another key are refused (before anything changes).
    pub fn prepare_restore(&self, state: &str) -> Result<String, SealKeyError> {
        let key = self.seal_key_or_new()?;
        let sealed = Store::map_root_keys(state.as_bytes(), |root| {
            match sealed_with(&root.private_key_pem) {
                None => key.seal(&root.private_key_pem, &root.root.id),
                Some(id) if id == key.id() => {
                    // Proves the value opens, so a damaged key is refused now rather than at the next signing.
                    key.open(&root.private_key_pem, &root.root.id)?;
                    Ok(root.private_key_pem.clone())
                }
                Some(id) => Err(SealError::OtherKey {
                    wanted: id.to_string(),
                    have: key.id().to_string(),
                }),
            }
        })
        .map_err(|e| match e {
            MapKeysError::Key(SealError::OtherKey { wanted, have }) => {
                SealKeyError::SnapshotOtherKey { wanted, have }
            }
            other => SealKeyError::State(other),
        })?;
        Ok(String::from_utf8_lossy(&sealed).into_owned())
    }
}

/// Runs on every Raft server: whenever the CA table names a sealing key this server does not hold, fetch it from a
/// peer (retrying), so that a failover never finds the new leader unable to sign.
pub(crate) async fn keep_key(server: Server) {
    let mut changes = server.subscribe(Table::ConnectCa);
    let mut pause = Duration::from_secs(1);
    loop {
        let wanted = server
            .read()
            .ca()
            .active_root()
            .and_then(|r| sealed_with(&r.private_key_pem).map(str::to_string));
        if let Some(wanted) = wanted {
            let held = server.seal_key();
            if held.as_ref().map(SealKey::id) != Some(wanted.as_str()) {
                match server.fetch_seal_key(&wanted).await {
                    Ok(_) => pause = Duration::from_secs(1),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?pause, "the CA sealing key is not here yet");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(30));
                    }
                }
                continue;
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{Server, ServerConfig};

    /// Two CA initialisations racing (the dev agent's start and the leader loop) used to make a key each: the CA
    /// was sealed with one and the server kept the other, and could never sign again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_initialisations_share_one_sealing_key() {
        let server = Server::new(ServerConfig::new("dc1", "n1", "127.0.0.1:8300"));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = server.clone();
                tokio::task::spawn_blocking(move || s.seal_key_or_new().unwrap().id().to_string())
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
        // And the CA the server creates opens with the key it holds: it signs.
        server.ensure_ca().await.unwrap();
        let root = server.read().ca().active_root().cloned().unwrap();
        assert!(server.unsealed_root(&root).await.is_ok());
    }
}
