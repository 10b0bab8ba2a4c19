//! Connect tables: intentions (keyed by destination then source) and the CA state (cluster ID, configuration,
//! roots with their keys, the serial counter).

use crate::{Command, Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use weft_ca::{CaConfig, CaRoot, StoredRoot};
use weft_types::Intention;

/// The CA as the servers store it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CaState {
    pub cluster_id: String,
    pub config: Option<CaConfig>,
    pub roots: Vec<StoredRoot>,
    pub serial: u64,
    pub config_create_index: u64,
    pub config_modify_index: u64,
}

impl CaState {
    pub fn trust_domain(&self) -> String {
        weft_ca::spiffe::trust_domain(&self.cluster_id)
    }

    pub fn active_root(&self) -> Option<&StoredRoot> {
        self.roots.iter().find(|r| r.root.active)
    }

    /// The same state with every private key removed: what may leave the servers (client agents' replicas).
    pub fn without_keys(&self) -> CaState {
        CaState {
            config: self.config.as_ref().map(without_key),
            roots: self.roots.iter().map(root_without_key).collect(),
            ..self.clone()
        }
    }
}

fn without_key(config: &weft_ca::CaConfig) -> weft_ca::CaConfig {
    weft_ca::CaConfig {
        private_key: String::new(),
        ..config.clone()
    }
}

fn root_without_key(root: &StoredRoot) -> StoredRoot {
    StoredRoot {
        private_key_pem: String::new(),
        ..root.clone()
    }
}

impl crate::CaSetup {
    /// The same setup with every private key removed (see [`CaState::without_keys`]).
    pub fn without_keys(&self) -> crate::CaSetup {
        crate::CaSetup {
            config: without_key(&self.config),
            roots: self.roots.iter().map(root_without_key).collect(),
            ..self.clone()
        }
    }
}

impl Store {
    pub(crate) fn apply_connect(
        &mut self,
        index: u64,
        cmd: &Command,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(), StoreError> {
        match cmd {
            Command::IntentionUpsert(intention) => {
                let mut new = (**intention).clone();
                let key = (new.destination_name.clone(), new.source_name.clone());
                match self.t.intentions.get(&key) {
                    Some(old) => {
                        new.create_index = old.create_index;
                        if new.id.is_empty() {
                            new.id = old.id.clone();
                        }
                        if new.created_at.is_empty() {
                            new.created_at = old.created_at.clone();
                        }
                    }
                    None => new.create_index = index,
                }
                new.modify_index = index;
                self.t.intentions.insert(key, new);
                touched.insert(Table::Intentions);
            }
            Command::IntentionDelete {
                source,
                destination,
            } => {
                let removed = self
                    .t
                    .intentions
                    .remove(&(destination.clone(), source.clone()));
                if removed.is_some() {
                    touched.insert(Table::Intentions);
                }
            }
            Command::IntentionsReplace {
                destination,
                intentions,
            } => {
                let old: Vec<(String, String)> = self
                    .t
                    .intentions
                    .keys()
                    .filter(|(d, _)| d == destination)
                    .cloned()
                    .collect();
                let previous: Vec<Intention> = old
                    .iter()
                    .filter_map(|k| self.t.intentions.remove(k))
                    .collect();
                for mut new in intentions.iter().cloned() {
                    match previous.iter().find(|p| p.source_name == new.source_name) {
                        Some(p) => {
                            new.create_index = p.create_index;
                            if new.id.is_empty() {
                                new.id = p.id.clone();
                            }
                        }
                        None => new.create_index = index,
                    }
                    new.modify_index = index;
                    self.t
                        .intentions
                        .insert((new.destination_name.clone(), new.source_name.clone()), new);
                }
                touched.insert(Table::Intentions);
            }
            Command::CaSet(setup) => {
                let ca = &mut self.t.ca;
                let first = ca.config.is_none();
                if !first && ca.cluster_id != setup.cluster_id {
                    return Err(StoreError::CaExists(ca.cluster_id.clone()));
                }
                ca.cluster_id = setup.cluster_id.clone();
                if ca.config.as_ref() != Some(&setup.config) || first {
                    if first {
                        ca.config_create_index = index;
                    }
                    ca.config_modify_index = index;
                }
                ca.config = Some(setup.config.clone());
                let previous = std::mem::take(&mut ca.roots);
                ca.roots = setup
                    .roots
                    .iter()
                    .cloned()
                    .map(|mut r| {
                        match previous.iter().find(|p| p.root.id == r.root.id) {
                            Some(p)
                                if p.root
                                    == stamp(&r.root, p.root.create_index, p.root.modify_index) =>
                            {
                                r.root.create_index = p.root.create_index;
                                r.root.modify_index = p.root.modify_index;
                            }
                            Some(p) => {
                                r.root.create_index = p.root.create_index;
                                r.root.modify_index = index;
                            }
                            None => {
                                r.root.create_index = index;
                                r.root.modify_index = index;
                            }
                        }
                        r
                    })
                    .collect();
                ca.serial = ca.serial.max(setup.serial);
                touched.insert(Table::ConnectCa);
            }
            Command::CaLeafIssued { serial } => {
                self.t.ca.serial = self.t.ca.serial.max(*serial);
            }
            _ => {}
        }
        Ok(())
    }

    // ---- reads ----

    /// Every intention, in evaluation order (precedence, then names).
    pub fn intentions(&self) -> Vec<&Intention> {
        let mut all: Vec<&Intention> = self.t.intentions.values().collect();
        all.sort_by(|a, b| weft_types::intention::compare(a, b));
        all
    }

    pub fn intention(&self, source: &str, destination: &str) -> Option<&Intention> {
        self.t
            .intentions
            .get(&(destination.to_string(), source.to_string()))
    }

    pub fn intention_by_id(&self, id: &str) -> Option<&Intention> {
        self.t.intentions.values().find(|i| i.id == id)
    }

    pub fn ca(&self) -> &CaState {
        &self.t.ca
    }

    /// The roots as the API shows them (no keys).
    pub fn ca_roots(&self) -> Vec<&CaRoot> {
        self.t.ca.roots.iter().map(|r| &r.root).collect()
    }
}

fn stamp(root: &CaRoot, create: u64, modify: u64) -> CaRoot {
    let mut r = root.clone();
    r.create_index = create;
    r.modify_index = modify;
    r
}

/// Why [`Store::map_root_keys`] could not rewrite a serialised state.
#[derive(Debug, thiserror::Error)]
pub enum MapKeysError<E: std::error::Error + 'static> {
    #[error("not a Weft state snapshot: {0}")]
    NotAStateSnapshot(serde_json::Error),
    #[error(transparent)]
    Key(E),
}

impl Store {
    /// A serialised state (as [`Store::snapshot`] writes it) with every CA root's private key replaced by
    /// `f(root)`: how keys are sealed before a restore and opened for an export.
    pub fn map_root_keys<E: std::error::Error + 'static>(
        state: &[u8],
        mut f: impl FnMut(&StoredRoot) -> Result<String, E>,
    ) -> Result<Vec<u8>, MapKeysError<E>> {
        let mut t: crate::Tables =
            serde_json::from_slice(state).map_err(MapKeysError::NotAStateSnapshot)?;
        for root in &mut t.ca.roots {
            if !root.private_key_pem.is_empty() {
                root.private_key_pem = f(root).map_err(MapKeysError::Key)?;
            }
        }
        serde_json::to_vec(&t).map_err(MapKeysError::NotAStateSnapshot)
    }
}
