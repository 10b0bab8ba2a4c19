//! The Raft log's entries in one append-only file: an append is one `write` and one `fdatasync`.
//!
//! Why not redb, which keeps the vote and the other metadata: a redb commit of one small entry wrote 9 pages here
//! (strace: 9 `pwrite64` and an `fdatasync` per append) and was a quarter of a leader's CPU per write (perf); the
//! leader flushes its log before openraft 0.9 replicates the entry, so that cost is paid twice, in series, by every
//! write.
//!
//! A record is a 21-byte header, `[payload length: u32][crc32 of the header's other fields: u32][crc32 of the
//! payload: u32][kind: u8][log index: u64]` (little-endian), then the payload: an entry in JSON (kind 0) or the
//! commit point openraft last reported (kind 1, a hint written with the next append). Entries in the file have
//! consecutive indexes. Opening replays the file. A damaged or cut-short record after which no valid record header
//! follows is the end of an append that never finished (never acknowledged: its `fdatasync` did not return) and is
//! cut off, its bytes first copied aside to `raft.log.torn`; damage with valid records after it refuses the open,
//! rather than losing acknowledged entries.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use weft_types::fsio;

const HEADER: usize = 21;
const KIND_ENTRY: u8 = 0;
const KIND_COMMITTED: u8 = 1;
/// Purged bytes at the head of the file beyond which a purge rewrites the file without them.
const COMPACT_AFTER: u64 = 4 * 1024 * 1024;

/// Why the log file could not be opened, read or written. The path is the log file's.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Damage with valid records after it: cutting it off would lose acknowledged entries.
    #[error("the Raft log {path} is damaged at byte {offset}")]
    Damaged { path: PathBuf, offset: u64 },
    #[error("the Raft log {path} is damaged at byte {offset}: entry {index} out of order")]
    OutOfOrder {
        path: PathBuf,
        offset: u64,
        index: u64,
    },
    #[error("cannot keep the unfinished append of {path}: {source}")]
    KeepTorn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot cut {path} at byte {offset}: {source}")]
    Cut {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
    #[error("cannot sync the directory of {path}: {source}")]
    SyncDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The entries to append do not follow the last one (a caller's bug; nothing was written).
    #[error("append of entry {index} where {expected} was expected")]
    NotConsecutive { index: u64, expected: u64 },
    #[error("cannot append to {path}: {source}")]
    Append {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read entry {index}: {source}")]
    ReadEntry { index: u64, source: std::io::Error },
    #[error("cannot truncate {path}: {source}")]
    Truncate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot compact {path}: {source}")]
    Compact {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The entries file and where each entry is in it.
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Length of the file (where the next record goes).
    end: u64,
    /// Index of `records[0]`.
    first: u64,
    /// Payload offset and length of each live entry, by index from `first`.
    records: VecDeque<(u64, u32)>,
    /// The latest commit-point hint found in or written to the file.
    committed: Option<Vec<u8>>,
}

fn record(kind: u8, index: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let payload_crc = crc32fast::hash(payload).to_le_bytes();
    let mut rest = [0u8; 13];
    rest[..4].copy_from_slice(&payload_crc);
    rest[4] = kind;
    rest[5..].copy_from_slice(&index.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(&rest);
    out.extend_from_slice(&len);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&rest);
    out.extend_from_slice(payload);
}

/// A record header that checks out at `pos`: (payload length, payload crc, kind, index).
fn header_at(bytes: &[u8], pos: usize) -> Option<(usize, u32, u8, u64)> {
    let h = bytes.get(pos..pos.checked_add(HEADER)?)?;
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[0..4]);
    hasher.update(&h[8..21]);
    if hasher.finalize() != u32_at(4) || h[12] > KIND_COMMITTED {
        return None;
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&h[13..21]);
    Some((
        u32_at(0) as usize,
        u32_at(8),
        h[12],
        u64::from_le_bytes(index),
    ))
}

/// True when no valid record header starts after `pos`: what is there is the unfinished end of the last append.
fn only_a_torn_tail_after(bytes: &[u8], pos: usize) -> bool {
    (pos + 1..bytes.len()).all(|p| header_at(bytes, p).is_none())
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

impl LogFile {
    /// Opens (or creates) the file and replays it; `purged`: entries up to this index are gone.
    pub fn open(path: &Path, purged: Option<u64>) -> Result<LogFile, LogFileError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(fsio::PRIVATE_FILE)
            .open(path)
            .map_err(|source| LogFileError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let bytes = std::fs::read(path).map_err(|source| LogFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut log = LogFile {
            path: path.to_path_buf(),
            file,
            end: 0,
            first: purged.map_or(0, |p| p + 1),
            records: VecDeque::new(),
            committed: None,
        };
        let mut pos = 0usize;
        while pos < bytes.len() {
            let checked = header_at(&bytes, pos).and_then(|(len, crc, kind, index)| {
                let payload = bytes.get(pos + HEADER..(pos + HEADER).checked_add(len)?)?;
                (crc32fast::hash(payload) == crc).then_some((len, kind, index, payload))
            });
            let Some((len, kind, index, payload)) = checked else {
                if only_a_torn_tail_after(&bytes, pos) {
                    break;
                }
                return Err(LogFileError::Damaged {
                    path: path.to_path_buf(),
                    offset: pos as u64,
                });
            };
            let at = (pos + HEADER) as u64;
            if kind == KIND_COMMITTED {
                log.committed = Some(payload.to_vec());
            } else if purged.is_some_and(|p| index <= p) {
                // Purged, not yet compacted away.
            } else if log.records.is_empty() && (log.first == 0 || index == log.first) {
                log.first = index;
                log.records.push_back((at, len as u32));
            } else if index == log.first + log.records.len() as u64 {
                log.records.push_back((at, len as u32));
            } else {
                return Err(LogFileError::OutOfOrder {
                    path: path.to_path_buf(),
                    offset: pos as u64,
                    index,
                });
            }
            pos += HEADER + len;
        }
        if pos < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                dropped = bytes.len() - pos,
                "dropping an append that never finished (kept in raft.log.torn)"
            );
            // Durably set aside before the log is cut: the bytes exist somewhere at every moment.
            fsio::atomic_write(
                &path.with_extension("log.torn"),
                &bytes[pos..],
                fsio::PRIVATE_FILE,
            )
            .map_err(|source| LogFileError::KeepTorn {
                path: path.to_path_buf(),
                source,
            })?;
            log.file
                .set_len(pos as u64)
                .and_then(|()| log.file.sync_data())
                .map_err(|source| LogFileError::Cut {
                    path: path.to_path_buf(),
                    offset: pos as u64,
                    source,
                })?;
        }
        log.end = pos as u64;
        // A file created just now must survive a power loss as a directory entry, not only as data.
        sync_dir(path).map_err(|source| LogFileError::SyncDir {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(log)
    }

    /// The index after the last entry's (the next to append), and the first entry's.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        (!self.records.is_empty()).then(|| (self.first, self.first + self.records.len() as u64 - 1))
    }

    /// The latest commit-point hint.
    pub fn committed(&self) -> Option<&[u8]> {
        self.committed.as_deref()
    }

    /// Appends entries (`(index, JSON)`, consecutive after the last) and a commit hint, durably.
    pub fn append(
        &mut self,
        entries: &[(u64, Vec<u8>)],
        committed: Option<Vec<u8>>,
    ) -> Result<(), LogFileError> {
        let mut buf = Vec::new();
        if let Some(c) = &committed {
            record(KIND_COMMITTED, 0, c, &mut buf);
        }
        let mut placed = Vec::with_capacity(entries.len());
        // After the last entry; an empty log starts wherever the first append does.
        let base = match (self.bounds(), entries.first()) {
            (Some((_, last)), _) => last + 1,
            (None, Some((first, _))) => *first,
            (None, None) => 0,
        };
        for (index, json) in entries {
            let expected = base + placed.len() as u64;
            if *index != expected {
                return Err(LogFileError::NotConsecutive {
                    index: *index,
                    expected,
                });
            }
            placed.push((self.end + (buf.len() + HEADER) as u64, json.len() as u32));
            record(KIND_ENTRY, *index, json, &mut buf);
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Leave no half record for the next append to follow.
            let _ = self.file.set_len(self.end);
            return Err(LogFileError::Append {
                path: self.path.clone(),
                source: e,
            });
        }
        if self.records.is_empty() {
            if let Some((first, _)) = entries.first() {
                self.first = *first;
            }
        }
        self.records.extend(placed);
        self.end += buf.len() as u64;
        if committed.is_some() {
            self.committed = committed;
        }
        Ok(())
    }

    /// The JSON of entries `from..=to` (clamped to what the file holds).
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, LogFileError> {
        let Some((first, last)) = self.bounds() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for index in from.max(first)..=to.min(last) {
            let (at, len) = self.records[(index - first) as usize];
            let mut buf = vec![0u8; len as usize];
            self.file
                .read_exact_at(&mut buf, at)
                .map_err(|source| LogFileError::ReadEntry { index, source })?;
            out.push(buf);
        }
        Ok(out)
    }

    /// Deletes entries from `since` on (a new leader's log replaces them).
    pub fn truncate(&mut self, since: u64) -> Result<(), LogFileError> {
        let Some((first, last)) = self.bounds() else {
            return Ok(());
        };
        if since > last {
            return Ok(());
        }
        let keep = since.saturating_sub(first) as usize;
        let cut = match self.records.get(keep) {
            Some((at, _)) => at - HEADER as u64,
            None => return Ok(()),
        };
        self.file
            .set_len(cut)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| LogFileError::Truncate {
                path: self.path.clone(),
                source,
            })?;
        self.records.truncate(keep);
        self.end = cut;
        Ok(())
    }

    /// Forgets entries up to `upto` (they are in a snapshot), rewriting the file once enough bytes are dead.
    pub fn purge(&mut self, upto: u64) -> Result<(), LogFileError> {
        while self.first <= upto && self.records.pop_front().is_some() {
            self.first += 1;
        }
        if self.records.is_empty() {
            self.first = self.first.max(upto + 1);
        }
        let dead = self
            .records
            .front()
            .map_or(self.end, |(at, _)| at - HEADER as u64);
        if dead < COMPACT_AFTER {
            return Ok(());
        }
        // Rewrite: the commit hint, then the live records as they are; switch files by rename.
        let mut buf = Vec::new();
        if let Some(c) = &self.committed {
            record(KIND_COMMITTED, 0, c, &mut buf);
        }
        let shift = dead as i64 - buf.len() as i64;
        let mut live = vec![0u8; (self.end - dead) as usize];
        self.file
            .read_exact_at(&mut live, dead)
            .map_err(|source| LogFileError::Compact {
                path: self.path.clone(),
                source,
            })?;
        buf.extend_from_slice(&live);
        let tmp = self.path.with_extension("compact");
        // Everything that can fail comes before the rename, which switches files atomically.
        let written = (|| -> std::io::Result<File> {
            // A leftover of a compaction cut short may have any mode: start afresh, private from the first byte.
            fsio::remove_if_exists(&tmp)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(fsio::PRIVATE_FILE)
                .open(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
            let reopened = OpenOptions::new().read(true).append(true).open(&tmp)?;
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path)?;
            Ok(reopened)
        })();
        let file = written.map_err(|source| LogFileError::Compact {
            path: self.path.clone(),
            source,
        })?;
        self.file = file;
        self.end = buf.len() as u64;
        for (at, _) in self.records.iter_mut() {
            *at = (*at as i64 - shift) as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{LogFile, LogFileError};

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("weft-logfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        (from..=to)
            .map(|i| (i, format!("{{\"i\":{i}}}").into_bytes()))
            .collect()
    }

    #[test]
    fn appends_survive_a_reopen_and_a_torn_tail_is_dropped() {
        let d = dir("reopen");
        let path = d.join("raft.log");
        let mut log = LogFile::open(&path, None).unwrap();
        log.append(&entries(1, 3), Some(b"c1".to_vec())).unwrap();
        log.append(&entries(4, 4), None).unwrap();
        assert!(
            matches!(
                log.append(&entries(6, 6), None),
                Err(LogFileError::NotConsecutive {
                    index: 6,
                    expected: 5
                })
            ),
            "a gap is refused"
        );
        drop(log);
        // Half a record at the end: an append that never finished.
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        std::fs::write(&path, &bytes).unwrap();
        let log = LogFile::open(&path, None).unwrap();
        assert_eq!(log.bounds(), Some((1, 4)));
        assert_eq!(
            log.read(2, 3).unwrap(),
            vec![b"{\"i\":2}".to_vec(), b"{\"i\":3}".to_vec()]
        );
        assert_eq!(log.committed(), Some(b"c1".as_slice()));
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, whole);
        assert_eq!(
            std::fs::read(d.join("raft.log.torn")).unwrap(),
            [9, 0, 0, 0, 1, 2],
            "the cut bytes are kept aside"
        );
        drop(log);
        // Zeros after the last record: the file grew, its blocks were never written.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&path, &bytes).unwrap();
        let log = LogFile::open(&path, None).unwrap();
        assert_eq!(log.bounds(), Some((1, 4)));
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, whole);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn damage_before_the_end_refuses_the_open() {
        let d = dir("damage");
        let path = d.join("raft.log");
        let mut log = LogFile::open(&path, None).unwrap();
        log.append(&entries(1, 3), None).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0xff; // inside entry 1's payload
        std::fs::write(&path, &bytes).unwrap();
        let err = LogFile::open(&path, None).err().unwrap();
        assert!(
            matches!(err, LogFileError::Damaged { offset: 0, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("damaged at byte 0"), "{err}");
        // A damaged length field (which says the record runs past the end) is damage too, not a torn tail.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0xff;
        let second = 21 + 7; // entry 1's header and payload
        bytes[second + 1] = 0x7f;
        std::fs::write(&path, &bytes).unwrap();
        let err = LogFile::open(&path, None).err().unwrap();
        assert!(
            err.to_string()
                .contains(&format!("damaged at byte {second}")),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing is cut");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn truncate_and_purge_with_compaction_keep_the_rest_readable() {
        let d = dir("purge");
        let path = d.join("raft.log");
        let mut log = LogFile::open(&path, None).unwrap();
        let big = |i: u64| (i, vec![b'x'; 64 * 1024]);
        let batch: Vec<(u64, Vec<u8>)> = (1..=100).map(big).collect();
        log.append(&batch, Some(b"c".to_vec())).unwrap();
        log.truncate(91).unwrap();
        assert_eq!(log.bounds(), Some((1, 90)));
        log.append(&[(91, b"new".to_vec())], None).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        log.purge(80).unwrap();
        assert!(
            std::fs::metadata(&path).unwrap().len() < before / 4,
            "purged bytes are rewritten away"
        );
        assert_eq!(log.bounds(), Some((81, 91)));
        assert_eq!(log.read(91, 91).unwrap(), vec![b"new".to_vec()]);
        log.append(&[(92, b"after".to_vec())], None).unwrap();
        drop(log);
        let log = LogFile::open(&path, Some(80)).unwrap();
        assert_eq!(log.bounds(), Some((81, 92)));
        assert_eq!(log.read(92, 92).unwrap(), vec![b"after".to_vec()]);
        assert_eq!(log.read(81, 81).unwrap()[0].len(), 64 * 1024);
        assert_eq!(log.committed(), Some(b"c".as_slice()));
        let _ = std::fs::remove_dir_all(&d);
    }
}
