//! API registrations kept across restarts: `<state-dir>/local.json` holds the service and check definitions
//! registered through the API (config-file registrations come from the files again). Written atomically and durably
//! after each change, readable by the agent's user only (the definitions may carry tokens and check commands); read
//! once at start.

use crate::{Agent, Source};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use weft_types::{fsio, CheckDefinition, ServiceDefinition};

/// Why the saved registrations could not be restored at start.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make {path} readable by its owner only: {source}")]
    Tighten {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {source}")]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    services: Vec<ServiceDefinition>,
    checks: Vec<CheckDefinition>,
}

const FILE: &str = "local.json";

impl Agent {
    /// Saves the API registrations (no-op without a state dir). Failures are logged: the agent keeps serving.
    pub(crate) fn persist(&self) {
        let Some(dir) = self.inner.config.state_dir.clone() else {
            return;
        };
        // Leaving empties the in-memory registrations; the saved ones are what the next start restores.
        if self.inner.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let saved = {
            let local = self.inner.local();
            Saved {
                services: local
                    .services
                    .values()
                    .filter(|s| s.source == Source::Api)
                    .filter_map(|s| s.definition.clone())
                    .collect(),
                checks: local
                    .checks
                    .values()
                    .filter(|c| c.source == Source::Api)
                    .map(|c| {
                        let mut d = c.definition.clone();
                        if d.check_id.is_empty() {
                            d.check_id = c.check.check_id.clone();
                        }
                        d
                    })
                    .collect(),
            }
        };
        let write = || -> std::io::Result<()> {
            let bytes = serde_json::to_vec_pretty(&saved)?;
            fsio::private_dir(&dir)?;
            fsio::atomic_write(&dir.join(FILE), &bytes, fsio::PRIVATE_FILE)
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %dir.display(), error = %e, "could not save local registrations");
        }
    }

    /// Registers what a previous run saved. A definition that no longer validates is logged and skipped.
    pub async fn restore_saved(&self) -> Result<usize, PersistError> {
        let Some(dir) = self.inner.config.state_dir.clone() else {
            return Ok(0);
        };
        let path = dir.join(FILE);
        // A state dir an earlier version left readable by everyone is tightened, not refused.
        for p in [&dir, &path] {
            fsio::tighten(p).map_err(|source| PersistError::Tighten {
                path: p.clone(),
                source,
            })?;
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => return Err(PersistError::Read { path, source }),
        };
        let saved: Saved = serde_json::from_slice(&bytes)
            .map_err(|source| PersistError::Damaged { path, source })?;
        let mut restored = 0;
        for s in &saved.services {
            match self.register_service(s, false, Source::Api).await {
                Ok(()) => restored += 1,
                Err(e) => {
                    tracing::warn!(service = %s.name, error = %e, "could not restore a saved service")
                }
            }
        }
        for c in &saved.checks {
            match self.register_check(c, Source::Api).await {
                Ok(()) => restored += 1,
                Err(e) => {
                    tracing::warn!(check = %c.name, error = %e, "could not restore a saved check")
                }
            }
        }
        Ok(restored)
    }
}
