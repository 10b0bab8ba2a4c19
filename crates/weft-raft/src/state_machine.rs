//! The state machine is the state store: committed commands are applied to the same [`Store`] the API reads.
//!
//! The store lives in memory; what survives a restart is the last snapshot (a file written atomically) plus the
//! log after it, which openraft re-applies from the saved commit point on start.

use crate::{Applied, Request, Response, StorageResult, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;
use weft_state::Store;
use weft_types::fsio;

/// The last applied log id and the membership it carried.
type AppliedState = (Option<LogId<u64>>, StoredMembership<u64, BasicNode>);

/// State shared by the state machine and its snapshot builders.
pub struct Shared {
    pub(crate) store: Arc<RwLock<Store>>,
    applied: Mutex<AppliedState>,
    snapshot_path: PathBuf,
    pub(crate) events: broadcast::Sender<Applied>,
}

/// openraft's handle on the state machine.
#[derive(Clone)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

/// Why the snapshot saved in the data dir cannot be restored at start.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("the snapshot {path} is damaged (no metadata line)")]
    NoMetadata { path: PathBuf },
    #[error("the snapshot {path} is damaged: {source}")]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A snapshot file: its metadata on the first line, the store's own serialisation after it.
fn encode(meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) -> Vec<u8> {
    let mut out = serde_json::to_vec(meta).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

fn decode(bytes: &[u8]) -> Option<(SnapshotMeta<u64, BasicNode>, &[u8])> {
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let meta = serde_json::from_slice(&bytes[..split]).ok()?;
    Some((meta, &bytes[split + 1..]))
}

impl StateMachine {
    /// Builds the state machine over `store`, first restoring the snapshot found in `dir`, if any.
    pub fn open(dir: &Path, store: Arc<RwLock<Store>>) -> Result<StateMachine, SnapshotFileError> {
        let snapshot_path = dir.join("snapshot.bin");
        let mut applied = (None, StoredMembership::default());
        if let Ok(bytes) = std::fs::read(&snapshot_path) {
            let (meta, data) = decode(&bytes).ok_or_else(|| SnapshotFileError::NoMetadata {
                path: snapshot_path.clone(),
            })?;
            write_lock(&store)
                .restore(data)
                .map_err(|source| SnapshotFileError::Damaged {
                    path: snapshot_path.clone(),
                    source,
                })?;
            applied = (meta.last_log_id, meta.last_membership.clone());
        }
        Ok(StateMachine {
            shared: Arc::new(Shared {
                store,
                applied: Mutex::new(applied),
                snapshot_path,
                events: broadcast::channel(4096).0,
            }),
        })
    }
}

fn write_lock(store: &RwLock<Store>) -> std::sync::RwLockWriteGuard<'_, Store> {
    store.write().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn applied(&self) -> std::sync::MutexGuard<'_, AppliedState> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a snapshot file atomically and durably (a temporary file, fsync, rename, fsync of the directory),
    /// readable by its owner only: it holds the CA's private key.
    fn persist(&self, bytes: &[u8]) -> std::io::Result<()> {
        fsio::atomic_write(&self.snapshot_path, bytes, fsio::PRIVATE_FILE)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (data, last_log_id, membership) = {
            let store = self.shared.store.read().unwrap_or_else(|p| p.into_inner());
            let applied = self.shared.applied();
            (store.snapshot(), applied.0, applied.1.clone())
        };
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, weft_now_ms()),
            None => format!("0-0-{}", weft_now_ms()),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id,
        };
        let bytes = encode(&meta, &data);
        self.shared.persist(&bytes).map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

fn weft_now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let applied = self.shared.applied();
        Ok((applied.0, applied.1.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            let response = match entry.payload {
                EntryPayload::Blank => Response {
                    results: Vec::new(),
                },
                EntryPayload::Normal(Request { now_ms, commands }) => {
                    let mut results = Vec::with_capacity(commands.len());
                    for command in commands {
                        let (index, result) = {
                            let mut store = write_lock(&self.shared.store);
                            let result = store.apply(log_id.index, now_ms, &command);
                            (store.last_index(), result)
                        };
                        let _ = self.shared.events.send(Applied::Command {
                            index,
                            now_ms,
                            command: Arc::new(command),
                        });
                        results.push((index, result));
                    }
                    Response { results }
                }
                EntryPayload::Membership(m) => {
                    self.shared.applied().1 = StoredMembership::new(Some(log_id), m);
                    Response {
                        results: Vec::new(),
                    }
                }
            };
            self.shared.applied().0 = Some(log_id);
            out.push(response);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        write_lock(&self.shared.store).restore(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        *self.shared.applied() = (meta.last_log_id, meta.last_membership.clone());
        self.shared.persist(&encode(meta, &data)).map_err(|e| {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        let _ = self.shared.events.send(Applied::Restored);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Ok(bytes) = std::fs::read(&self.shared.snapshot_path) else {
            return Ok(None);
        };
        let Some((meta, data)) = decode(&bytes) else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}
