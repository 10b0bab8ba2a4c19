//! Cluster plumbing for `weft agent`: the node ID kept in the data dir, and server addresses.

use anyhow::{bail, Context, Result};
use std::path::Path;

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
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
            let id = weft_types::ids::new_uuid();
            std::fs::write(&path, format!("{id}\n"))
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
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
            let claim = DataDirFor {
                datacenter: datacenter.into(),
                server,
            };
            std::fs::write(&path, serde_json::to_vec(&claim)?)
                .with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
