//! Cluster plumbing for `weft agent`: the node ID kept in the data dir, and server addresses.
//!
//! The data dir holds the Raft log and snapshot (the CA's private key among them) and the saved registrations: it and
//! everything in it are readable by the agent's user only (see [`weft_types::fsio`]).

use anyhow::{bail, Context, Result};
use std::path::Path;
use weft_types::fsio;

/// Creates the data dir as 0700, or takes the group and other permissions away from one an earlier version made.
fn private_data_dir(data_dir: &Path) -> Result<()> {
    fsio::private_dir(data_dir).with_context(|| {
        format!(
            "cannot create the data dir {} (or make it private)",
            data_dir.display()
        )
    })
}

fn tighten(path: &Path) -> Result<()> {
    fsio::tighten(path)
        .with_context(|| format!("cannot make {} readable by its owner only", path.display()))
}

/// The node ID saved in `<data-dir>/node-id`, created on first start: a restarted agent is the same node.
pub fn persisted_node_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            if !weft_types::ids::is_uuid(&id) {
                bail!(
                    "{} does not hold a node ID (a UUID); is this a Weft data dir?",
                    path.display()
                );
            }
            private_data_dir(data_dir)?;
            tighten(&path)?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            private_data_dir(data_dir)?;
            let id = weft_types::ids::new_uuid();
            fsio::atomic_write(&path, format!("{id}\n").as_bytes(), fsio::PRIVATE_FILE)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// What a data dir was made for, kept in `<data-dir>/weft.json`: a data dir is never reused for another
/// datacenter, or by a server after a client agent (or the other way round).
#[derive(serde::Serialize, serde::Deserialize)]
struct DataDirFor {
    datacenter: String,
    server: bool,
}

/// Refuses a data dir made for another datacenter or role; marks a fresh one as this agent's.
pub fn claim_data_dir(data_dir: &Path, datacenter: &str, server: bool) -> Result<()> {
    let path = data_dir.join("weft.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: DataDirFor = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged or not Weft's", path.display()))?;
            if found.datacenter != datacenter {
                bail!(
                    "the data dir {} belongs to datacenter {:?}, not {datacenter:?}",
                    data_dir.display(),
                    found.datacenter
                );
            }
            if found.server != server {
                let (was, now) = if found.server {
                    ("a server's", "a client agent")
                } else {
                    ("a client agent's", "a server")
                };
                bail!(
                    "the data dir {} is {was}; {now} needs its own data dir",
                    data_dir.display()
                );
            }
            // This agent's data dir: one an earlier version left readable by everyone is tightened, not refused.
            private_data_dir(data_dir)?;
            tighten(&path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            private_data_dir(data_dir)?;
            let claim = DataDirFor {
                datacenter: datacenter.into(),
                server,
            };
            fsio::atomic_write(&path, &serde_json::to_vec(&claim)?, fsio::PRIVATE_FILE)
                .with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn temp_data_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "weft-data-{}-{}-{name}",
            std::process::id(),
            weft_types::ids::new_uuid()
        ))
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_new_data_dir_is_private_and_a_wide_one_is_tightened_at_the_next_start() {
        let dir = temp_data_dir("new");
        claim_data_dir(&dir, "dc1", true).unwrap();
        let id = persisted_node_id(&dir).unwrap();
        let modes = |dir: &Path| {
            (
                mode(dir),
                mode(&dir.join("weft.json")),
                mode(&dir.join("node-id")),
            )
        };
        assert_eq!(modes(&dir), (0o700, 0o600, 0o600));
        set_mode(&dir, 0o755);
        set_mode(&dir.join("weft.json"), 0o644);
        set_mode(&dir.join("node-id"), 0o644);
        claim_data_dir(&dir, "dc1", true).unwrap();
        assert_eq!(persisted_node_id(&dir).unwrap(), id);
        assert_eq!(modes(&dir), (0o700, 0o600, 0o600));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_refused_data_dir_is_left_as_it_was() {
        let dir = temp_data_dir("other");
        claim_data_dir(&dir, "dc1", false).unwrap();
        set_mode(&dir, 0o755);
        let err = claim_data_dir(&dir, "dc2", false).unwrap_err().to_string();
        assert!(err.contains("belongs to datacenter"), "{err}");
        assert_eq!(mode(&dir), 0o755);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
