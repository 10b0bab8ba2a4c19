//! Consul's snapshot archive: a gzip-compressed tar holding `meta.json` (the Raft snapshot's metadata), `state.bin`
//! (the state; Weft's own encoding inside) and `SHA256SUMS` (`<hex>  <name>` per file), in that order. Tools that
//! read Consul snapshots (`consul snapshot inspect`, backup agents checking sums) read Weft's.
//!
//! Reading is bounded (the archive, every member and the decompressed total) and checks every sum before the state
//! is handed on, so a truncated, altered or oversized archive changes nothing.

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// The decompressed size an archive may have: far above any real state, far below what would exhaust the server.
pub const MAX_STATE: u64 = 512 << 20;
/// Members besides the three Consul writes are refused, as are more than a handful of members.
const MAX_MEMBERS: usize = 8;

/// `meta.json`: hashicorp/raft's `SnapshotMeta`, as Consul writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Meta {
    pub version: u32,
    #[serde(rename = "ID")]
    pub id: String,
    pub index: u64,
    pub term: u64,
    pub peers: Option<String>,
    pub configuration: Configuration,
    pub configuration_index: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Configuration {
    pub servers: Vec<ConfigServer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigServer {
    /// 0 voter, 1 nonvoter, as hashicorp/raft numbers them.
    pub suffrage: u8,
    #[serde(rename = "ID")]
    pub id: String,
    pub address: String,
}

/// Why an archive is refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("snapshot archive is truncated or damaged: {0}")]
    Read(std::io::Error),
    #[error("snapshot archive has an unexpected file {0:?}")]
    Unexpected(String),
    #[error("snapshot archive is missing {0}")]
    Missing(&'static str),
    #[error("snapshot archive is larger than {MAX_STATE} bytes")]
    TooLarge,
    #[error("snapshot archive's SHA256SUMS is malformed")]
    BadSums,
    #[error("sha256 hash mismatch for {0}")]
    Mismatch(String),
    #[error("snapshot archive's meta.json is not valid: {0}")]
    BadMeta(serde_json::Error),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest(&SHA256, bytes).as_ref())
}

/// The archive of `state` described by `meta` (its `size` is set here).
pub fn write(meta: &Meta, state: &[u8], mtime: u64) -> std::io::Result<Vec<u8>> {
    let mut meta = meta.clone();
    meta.size = state.len() as u64;
    let meta_json = serde_json::to_vec(&meta)?;
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        sha256_hex(&meta_json),
        sha256_hex(state)
    );
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, body) in [
        ("meta.json", meta_json.as_slice()),
        ("state.bin", state),
        ("SHA256SUMS", sums.as_bytes()),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, body)?;
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// True when `bytes` starts like a gzip stream (an archive rather than a Weft snapshot file).
pub fn is_archive(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// The metadata and state of an archive whose sums all match.
pub fn read(archive: &[u8]) -> Result<(Meta, Vec<u8>), ArchiveError> {
    // One byte past the limit tells "exactly at the limit" from "over it".
    let gz = flate2::read::GzDecoder::new(archive).take(MAX_STATE + 1);
    let mut tar = tar::Archive::new(gz);
    let (mut meta, mut state, mut sums) = (None, None, None);
    let mut total: u64 = 0;
    for (count, entry) in tar.entries().map_err(ArchiveError::Read)?.enumerate() {
        if count >= MAX_MEMBERS {
            return Err(ArchiveError::Unexpected("(too many files)".into()));
        }
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let name = entry
            .path()
            .map_err(ArchiveError::Read)?
            .to_string_lossy()
            .into_owned();
        let size = entry.header().size().map_err(ArchiveError::Read)?;
        total = total.saturating_add(size);
        if total > MAX_STATE {
            return Err(ArchiveError::TooLarge);
        }
        let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
        entry.read_to_end(&mut body).map_err(ArchiveError::Read)?;
        match name.as_str() {
            "meta.json" => meta = Some(body),
            "state.bin" => state = Some(body),
            "SHA256SUMS" => sums = Some(body),
            _ => return Err(ArchiveError::Unexpected(name)),
        }
    }
    let meta = meta.ok_or(ArchiveError::Missing("meta.json"))?;
    let state = state.ok_or(ArchiveError::Missing("state.bin"))?;
    let sums = sums.ok_or(ArchiveError::Missing("SHA256SUMS"))?;
    let sums = std::str::from_utf8(&sums).map_err(|_| ArchiveError::BadSums)?;
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.is_empty()) {
        let (want, name) = line.split_once("  ").ok_or(ArchiveError::BadSums)?;
        let body = match name {
            "meta.json" => &meta,
            "state.bin" => &state,
            _ => return Err(ArchiveError::BadSums),
        };
        if sha256_hex(body) != want.to_ascii_lowercase() {
            return Err(ArchiveError::Mismatch(name.to_string()));
        }
        checked += 1;
    }
    if checked != 2 {
        return Err(ArchiveError::BadSums);
    }
    let meta: Meta = serde_json::from_slice(&meta).map_err(ArchiveError::BadMeta)?;
    Ok((meta, state))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            version: 1,
            id: "2-5-1700000000000".into(),
            index: 5,
            term: 2,
            configuration: Configuration {
                servers: vec![ConfigServer {
                    suffrage: 0,
                    id: "a1".into(),
                    address: "10.0.0.1:8300".into(),
                }],
            },
            configuration_index: 1,
            ..Meta::default()
        }
    }

    #[test]
    fn an_archive_reads_back_with_its_meta_and_state() {
        let archive = write(&meta(), b"{\"state\":1}", 1_700_000_000).unwrap();
        assert!(is_archive(&archive));
        let (m, state) = read(&archive).unwrap();
        assert_eq!(state, b"{\"state\":1}");
        assert_eq!((m.index, m.term, m.size), (5, 2, 11));
        // Consul's layout: the three members in order, each 0600.
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()));
        let names: Vec<(String, u32)> = tar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("meta.json".into(), 0o600),
                ("state.bin".into(), 0o600),
                ("SHA256SUMS".into(), 0o600)
            ]
        );
    }

    /// An archive built by hand, members and sums as given.
    fn custom(members: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, body) in members {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            tar.append_data(&mut h, name, *body).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn altered_missing_or_foreign_members_are_refused_before_use() {
        let meta_json = serde_json::to_vec(&meta()).unwrap();
        let sums = format!(
            "{}  meta.json\n{}  state.bin\n",
            sha256_hex(&meta_json),
            sha256_hex(b"good")
        );
        let ok = custom(&[
            ("meta.json", &meta_json),
            ("state.bin", b"good"),
            ("SHA256SUMS", sums.as_bytes()),
        ]);
        assert!(read(&ok).is_ok());
        let altered = custom(&[
            ("meta.json", &meta_json),
            ("state.bin", b"evil"),
            ("SHA256SUMS", sums.as_bytes()),
        ]);
        assert_eq!(
            read(&altered).unwrap_err().to_string(),
            "sha256 hash mismatch for state.bin"
        );
        let missing = custom(&[("meta.json", &meta_json), ("SHA256SUMS", sums.as_bytes())]);
        assert!(read(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing state.bin"));
        let foreign = custom(&[("passwd", b"x")]);
        assert!(read(&foreign)
            .unwrap_err()
            .to_string()
            .contains("unexpected file"));
        let unsummed = custom(&[
            ("meta.json", &meta_json),
            ("state.bin", b"good"),
            ("SHA256SUMS", b""),
        ]);
        assert!(matches!(read(&unsummed), Err(ArchiveError::BadSums)));
        let truncated = &ok[..ok.len() / 2];
        assert!(read(truncated).is_err());
        assert!(read(b"\x1f\x8bnot gzip").is_err());
    }

    #[test]
    fn a_member_declaring_more_than_the_limit_is_refused_without_reading_it() {
        let mut h = tar::Header::new_ustar();
        h.set_size(MAX_STATE + 1);
        h.set_path("state.bin").unwrap();
        h.set_cksum();
        // Only the header: the declared size alone is enough to refuse.
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let archive = gz.finish().unwrap();
        assert!(matches!(read(&archive), Err(ArchiveError::TooLarge)));
    }
}
