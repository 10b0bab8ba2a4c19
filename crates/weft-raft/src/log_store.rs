//! The Raft log on disk: entries in an append-only file ([`crate::log_file`]), the vote and the purge point in a
//! redb file beside it.
//!
//! An entry is reported flushed to openraft only after the `fdatasync` of the append that holds it returns: a write
//! is acknowledged to a client only once a quorum has it on disk.

use crate::log_file::LogFile;
use crate::{StorageResult, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, LogState, RaftLogId, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::fs::OpenOptions;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use weft_types::fsio;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Format 1 kept entries in redb's `log` table; format 2 keeps them in `raft.log` (a format-1 dir is moved over when
/// opened).
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// The on-disk format this build writes. A data dir with a higher number was written by a newer Weft.
pub const FORMAT_VERSION: u64 = 2;

const KEY_FORMAT: &str = "format";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// Why a data dir cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the Raft log at {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the data dir at {path} was written by a newer Weft (format {found}, this build reads {FORMAT_VERSION})")]
    NewerFormat { path: String, found: u64 },
}

/// A cheap handle; clones share the files (openraft reads the log from replication tasks).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    entries: Arc<Mutex<LogFile>>,
    /// The commit point openraft last reported, written to disk with the next append (see `save_committed`).
    committed: Arc<Mutex<Option<Option<LogId<u64>>>>>,
}

impl LogStore {
    /// The commit index openraft last reported to this member (0 before the first).
    pub fn commit_index(&self) -> u64 {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flatten()
            .map_or(0, |id| id.index)
    }
}

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

impl LogStore {
    /// Opens (or creates) the log at `path`, refusing files of a newer format.
    pub fn open(path: &Path) -> Result<LogStore, OpenError> {
        let shown = path.display().to_string();
        let io = |e: &dyn std::fmt::Display| OpenError::Io {
            path: shown.clone(),
            reason: e.to_string(),
        };
        // redb would create the file with the umask's mode: create it private first (redb takes an empty file).
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(fsio::PRIVATE_FILE)
            .open(path)
            .map_err(|e| io(&e))?;
        let db = Database::create(path).map_err(|e| io(&e))?;
        let tx = db.begin_write().map_err(|e| io(&e))?;
        {
            let _ = tx.open_table(LOG).map_err(|e| io(&e))?;
            let mut meta = tx.open_table(META).map_err(|e| io(&e))?;
            let found = meta
                .get(KEY_FORMAT)
                .map_err(|e| io(&e))?
                .and_then(|v| serde_json::from_slice::<u64>(v.value()).ok());
            match found {
                Some(found) if found > FORMAT_VERSION => {
                    return Err(OpenError::NewerFormat { path: shown, found })
                }
                Some(_) => {}
                None => {
                    let v = serde_json::to_vec(&FORMAT_VERSION).unwrap_or_default();
                    meta.insert(KEY_FORMAT, v.as_slice()).map_err(|e| io(&e))?;
                }
            }
        }
        tx.commit().map_err(|e| io(&e))?;
        let db = Arc::new(db);
        let purged: Option<LogId<u64>> = get_meta(&db, KEY_PURGED).map_err(|e| io(&e))?;
        let file = path.with_file_name("raft.log");
        let mut entries =
            LogFile::open(&file, purged.map(|p| p.index)).map_err(|e| OpenError::Io {
                path: file.display().to_string(),
                reason: e.to_string(),
            })?;
        migrate_format_1(&db, &mut entries).map_err(|e| io(&e))?;
        Ok(LogStore {
            db,
            entries: Arc::new(Mutex::new(entries)),
            committed: Arc::default(),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LogFile> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AnyError> {
        get_meta(&self.db, key)
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), AnyError> {
        let bytes = serde_json::to_vec(value).map_err(|e| AnyError::new(&e))?;
        let tx = self.db.begin_write().map_err(io_err)?;
        {
            let mut table = tx.open_table(META).map_err(io_err)?;
            table.insert(key, bytes.as_slice()).map_err(io_err)?;
        }
        tx.commit().map_err(io_err)
    }

    /// True once this node has voted or holds log entries: it belongs to a cluster and must not bootstrap again.
    pub fn has_state(&self) -> bool {
        let vote: Option<Vote<u64>> = self.get_meta(KEY_VOTE).ok().flatten();
        vote.is_some() || self.entries().bounds().is_some()
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, AnyError> {
        let log = self.entries();
        let Some((_, last)) = log.bounds() else {
            return Ok(None);
        };
        let json = log.read(last, last).map_err(AnyError::error)?;
        json.first()
            .map(|j| serde_json::from_slice(j).map_err(|e| AnyError::new(&e)))
            .transpose()
    }
}

fn get_meta<T: serde::de::DeserializeOwned>(
    db: &Database,
    key: &str,
) -> Result<Option<T>, AnyError> {
    let tx = db.begin_read().map_err(io_err)?;
    let table = tx.open_table(META).map_err(io_err)?;
    let Some(v) = table.get(key).map_err(io_err)? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(|e| AnyError::new(&e))
}

/// Moves the entries of a format-1 data dir (redb's `log` table) into the entries file, then marks the dir format 2.
fn migrate_format_1(db: &Database, entries: &mut LogFile) -> Result<(), AnyError> {
    let tx = db.begin_write().map_err(io_err)?;
    {
        let table = tx.open_table(LOG).map_err(io_err)?;
        let mut old = Vec::new();
        for item in table.iter().map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            old.push((k.value(), v.value().to_vec()));
        }
        // The table is the truth while it exists: whatever an interrupted earlier move left in the file from its
        // first index on is replaced.
        if let Some((first, _)) = old.first() {
            entries.truncate(*first).map_err(AnyError::error)?;
            entries.append(&old, None).map_err(AnyError::error)?;
        }
    }
    tx.delete_table(LOG).map_err(io_err)?;
    {
        let mut meta = tx.open_table(META).map_err(io_err)?;
        let v = serde_json::to_vec(&FORMAT_VERSION).map_err(|e| AnyError::new(&e))?;
        meta.insert(KEY_FORMAT, v.as_slice()).map_err(io_err)?;
    }
    tx.commit().map_err(io_err)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let read = || -> Result<Vec<Entry<TypeConfig>>, AnyError> {
            let from = match range.start_bound() {
                Bound::Included(i) => *i,
                Bound::Excluded(i) => i.saturating_add(1),
                Bound::Unbounded => 0,
            };
            let to = match range.end_bound() {
                Bound::Included(i) => *i,
                Bound::Excluded(0) => return Ok(Vec::new()),
                Bound::Excluded(i) => i - 1,
                Bound::Unbounded => u64::MAX,
            };
            if from > to {
                return Ok(Vec::new());
            }
            let json = self.entries().read(from, to).map_err(AnyError::error)?;
            json.iter()
                .map(|j| serde_json::from_slice(j).map_err(|e| AnyError::new(&e)))
                .collect()
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let purged: Option<LogId<u64>> = self
            .get_meta(KEY_PURGED)
            .map_err(StorageIOError::read_logs)?;
        let last = self
            .last_entry()
            .map_err(StorageIOError::read_logs)?
            .map(|e| *e.get_log_id());
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.put_meta(KEY_VOTE, vote)
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.get_meta(KEY_VOTE)
            .map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        // A hint that lets a restarted member apply its log before hearing from a leader. It changes with every
        // write, so it costs no transaction of its own: the next append writes it in the same commit. Losing the
        // latest value only means waiting for the leader's next commit after a restart.
        *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        let hint = self.entries().committed().map(<[u8]>::to_vec);
        if let Some(hint) = hint {
            return Ok(serde_json::from_slice::<Option<LogId<u64>>>(&hint)
                .ok()
                .flatten());
        }
        // A format-1 data dir kept it in redb.
        Ok(self
            .get_meta::<Option<LogId<u64>>>(KEY_COMMITTED)
            .map_err(StorageIOError::read)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let write = || -> Result<(), AnyError> {
            let mut batch = Vec::new();
            for entry in entries {
                let json = serde_json::to_vec(&entry).map_err(|e| AnyError::new(&e))?;
                batch.push((entry.get_log_id().index, json));
            }
            let committed = committed
                .map(|c| serde_json::to_vec(&c))
                .transpose()
                .map_err(|e| AnyError::new(&e))?;
            self.entries()
                .append(&batch, committed)
                .map_err(AnyError::error)
        };
        match write() {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        self.entries()
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(AnyError::error(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        // The purge point first: entries up to it are ignored when the file is replayed, even before compaction.
        self.put_meta(KEY_PURGED, &Some(log_id))
            .map_err(StorageIOError::write_logs)?;
        self.entries()
            .purge(log_id.index)
            .map_err(|e| StorageIOError::write_logs(AnyError::error(e)).into())
    }
}

/// Opens the log under a data dir's `raft/` folder, which is made readable by its owner only: the folder itself,
/// and whatever an earlier version left in it readable by others (log, snapshot, leftovers of an unfinished write).
pub fn open_in(dir: &Path) -> Result<LogStore, OpenError> {
    let io = |path: &Path, e: std::io::Error| OpenError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    fsio::private_dir(dir).map_err(|e| io(dir, e))?;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        fsio::tighten(&path).map_err(|e| io(&path, e))?;
    }
    LogStore::open(&dir.join("raft.redb"))
}
