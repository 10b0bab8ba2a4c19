//! `/v1/snapshot`: the whole state as one file, for backups and for moving a cluster (`weft snapshot save|restore`).
//!
//! `GET` answers Consul's archive ([`crate::snapshot_archive`]: gzipped tar of `meta.json`, `state.bin`,
//! `SHA256SUMS`). `PUT` takes that archive, or a file of Weft's earlier format: a one-line JSON header
//! (`"Weft": "snapshot"`, format version, length, FNV-1a checksum) followed by the state. Either is checked whole
//! before anything changes.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use weft_state::{Command, Store};

pub const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Header {
    pub weft: String,
    pub version: u32,
    pub index: u64,
    pub datacenter: String,
    pub length: usize,
    pub checksum: String,
}

fn fnv64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Why a snapshot file is refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("not a Weft snapshot: no header line")]
    NoHeader,
    #[error("not a Weft snapshot: bad header ({0})")]
    BadHeader(serde_json::Error),
    #[error("not a Weft snapshot")]
    NotWeft,
    #[error("snapshot format {0} is newer than this build reads ({FORMAT})")]
    Newer(u32),
    #[error(
        "snapshot is truncated or padded: {found} bytes of state where the header says {expected}"
    )]
    Length { found: usize, expected: usize },
    #[error("snapshot is damaged: checksum mismatch")]
    Checksum,
    #[error("snapshot is damaged: not UTF-8")]
    NotUtf8,
    #[error(transparent)]
    State(#[from] weft_state::SnapshotError),
    #[error(transparent)]
    Archive(#[from] crate::snapshot_archive::ArchiveError),
}

/// A checked snapshot file of either format.
#[derive(Debug)]
pub struct Snapshot {
    /// The Raft index the state is as of.
    pub index: u64,
    pub state: String,
    pub format: Format,
}

#[derive(Debug)]
pub enum Format {
    /// Consul's archive, with its `meta.json`.
    Archive(crate::snapshot_archive::Meta),
    /// Weft's earlier file, with its header.
    Weft(Header),
}

/// Checks a snapshot file of either format and returns its state.
pub fn decode(file: &[u8]) -> Result<Snapshot, SnapshotFileError> {
    if crate::snapshot_archive::is_archive(file) {
        let (meta, state) = crate::snapshot_archive::read(file)?;
        let state = String::from_utf8(state).map_err(|_| SnapshotFileError::NotUtf8)?;
        Store::validate_snapshot(&state)?;
        return Ok(Snapshot {
            index: meta.index,
            state,
            format: Format::Archive(meta),
        });
    }
    let (header, state) = check(file)?;
    Ok(Snapshot {
        index: header.index,
        state: state.to_string(),
        format: Format::Weft(header),
    })
}

/// Checks a snapshot file and returns its state; the reason it is refused otherwise.
pub fn check(file: &[u8]) -> Result<(Header, &str), SnapshotFileError> {
    let split = file
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(SnapshotFileError::NoHeader)?;
    let header: Header =
        serde_json::from_slice(&file[..split]).map_err(SnapshotFileError::BadHeader)?;
    if header.weft != "snapshot" {
        return Err(SnapshotFileError::NotWeft);
    }
    if header.version > FORMAT {
        return Err(SnapshotFileError::Newer(header.version));
    }
    let body = &file[split + 1..];
    if body.len() != header.length {
        return Err(SnapshotFileError::Length {
            found: body.len(),
            expected: header.length,
        });
    }
    if fnv64(body) != header.checksum {
        return Err(SnapshotFileError::Checksum);
    }
    let state = std::str::from_utf8(body).map_err(|_| SnapshotFileError::NotUtf8)?;
    Store::validate_snapshot(state)?;
    Ok((header, state))
}

pub async fn snapshot(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    if ctx.method == Method::GET {
        save(ctx).await
    } else {
        restore(ctx).await
    }
}

async fn save(ctx: Ctx) -> Result<Reply, ApiError> {
    let (state, index) = ctx
        .state
        .agent
        .server()
        .export_state()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let server = ctx.state.agent.server();
    let term = server.term();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let servers = server
        .autopilot_health()
        .into_iter()
        .map(|h| crate::snapshot_archive::ConfigServer {
            suffrage: u8::from(!h.voter),
            id: h.id,
            address: h.address,
        })
        .collect();
    let meta = crate::snapshot_archive::Meta {
        version: 1,
        id: format!("{term}-{index}-{}", now.as_millis()),
        index,
        term,
        peers: None,
        configuration: crate::snapshot_archive::Configuration { servers },
        configuration_index: index,
        size: 0,
    };
    let body = crate::snapshot_archive::write(&meta, &state, now.as_secs())
        .map_err(|e| ApiError::internal(format!("cannot write the snapshot archive: {e}")))?;
    let mut reply = Reply {
        status: StatusCode::OK,
        headers: Default::default(),
        body: body.into(),
        stream: None,
    };
    reply.set("content-type", "application/octet-stream");
    reply.set("x-consul-index", index.max(1).to_string());
    Ok(reply)
}

async fn restore(ctx: Ctx) -> Result<Reply, ApiError> {
    let snapshot = decode(&ctx.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let state = snapshot.state.as_str();
    // Refused before anything changes: a cluster restored without a CA could never issue another leaf.
    Store::validate_restore(state).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let server = ctx.state.agent.server();
    // Keys in the clear are sealed with this cluster's key before they reach the log.
    let state = &server
        .prepare_restore(state)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    server
        .write(Command::Restore {
            state: state.to_string(),
        })
        .await?;
    server.rearm_sessions();
    Ok(Reply::empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(state: &str) -> Vec<u8> {
        let header = Header {
            weft: "snapshot".into(),
            version: FORMAT,
            index: 3,
            datacenter: "dc1".into(),
            length: state.len(),
            checksum: fnv64(state.as_bytes()),
        };
        let mut out = serde_json::to_vec(&header).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(state.as_bytes());
        out
    }

    /// A store's state with a CA (a snapshot without one is refused); `keyless` drops the root's key.
    fn state_with_ca_keyed(keyless: bool) -> String {
        let config = weft_ca::CaConfig::default();
        let mut root =
            weft_ca::root::generate_root(&config, "cluster-1", 1, 1_700_000_000).unwrap();
        if keyless {
            root.private_key_pem.clear();
        }
        let mut store = Store::new();
        let setup = weft_state::CaSetup {
            cluster_id: "cluster-1".into(),
            config,
            roots: vec![root],
            serial: 1,
        };
        store
            .apply(1, 1_000, &weft_state::Command::CaSet(Box::new(setup)))
            .unwrap();
        String::from_utf8(store.snapshot()).unwrap_or_default()
    }

    fn state_with_ca() -> String {
        state_with_ca_keyed(false)
    }

    #[test]
    fn a_snapshot_without_a_usable_ca_is_saved_but_not_restored() {
        let empty = String::from_utf8(Store::new().snapshot()).unwrap_or_default();
        assert!(
            check(&file(&empty)).is_ok(),
            "a fresh cluster can be backed up"
        );
        for state in [empty, state_with_ca_keyed(true)] {
            let e = Store::validate_restore(&state).unwrap_err().to_string();
            assert!(e.contains("no CA"), "{e}");
        }
        assert!(Store::validate_restore(&state_with_ca()).is_ok());
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let state = state_with_ca();
        let good = file(&state);
        assert!(check(&good).is_ok());
        let truncated = &good[..good.len() - 3];
        assert!(check(truncated)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut flipped = good.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x20;
        assert!(check(&flipped).is_err());
        assert!(check(b"hello")
            .unwrap_err()
            .to_string()
            .contains("not a Weft snapshot"));
        let newer = String::from_utf8(good.clone())
            .unwrap_or_default()
            .replacen("\"Version\":1", "\"Version\":9", 1);
        assert!(check(newer.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("newer"));
    }
}
