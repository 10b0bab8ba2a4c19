//! The state store: catalog, health, KV and sessions in one place, every change stamped with the log index that
//! made it.
//!
//! It is pure: no I/O, no clocks (time comes in with the command), no runtime. Writers call [`Store::apply`] with a
//! [`Command`]; readers use the query methods and the per-table indexes, and park on [`Watches`] to block until a table
//! moves past the index they have seen. Snapshots are the store's own serialisation.

mod acl;
mod catalog;
mod command;
mod config_entries;
mod connect;
mod coordinate;
mod error;
mod kv;
mod query;
mod query_template;
mod session;
mod watch;

pub use acl::AclTables;
pub use catalog::GatewayService;
pub use command::{CaSetup, Command, KvOp, Registration};
pub use connect::{CaState, MapKeysError};
pub use error::{SnapshotError, StoreError};
pub use query::{pin_near, QueryLookupError};
pub use watch::{Table, Watches};

/// The largest index a snapshot may carry (2^62: centuries of writes at any rate a cluster reaches).
const MAX_INDEX: u64 = 1 << 62;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use weft_types::{DirEntry, HealthCheck, Intention, Node, NodeService, Session};

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApplyResult {
    /// Catalog writes and most KV verbs answer `true`/`false`.
    Bool(bool),
    /// Results of a transaction's operations (entries read or written, in order).
    Txn(Vec<DirEntry>),
    /// A transaction rolled back: the failing operation's position and reason.
    TxnRolledBack { op_index: usize, what: String },
}

/// `(node, service id)`: how service instances are addressed.
pub type InstanceKey = (String, String);

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Tables {
    index: u64,
    nodes: BTreeMap<String, Node>,
    services: BTreeMap<String, BTreeMap<String, NodeService>>,
    checks: BTreeMap<String, BTreeMap<String, HealthCheck>>,
    kv: BTreeMap<String, DirEntry>,
    /// Deleted keys and the index of their deletion, so a prefix's index never goes back.
    kv_tombstones: BTreeMap<String, u64>,
    sessions: BTreeMap<String, Session>,
    /// Keys in lock-delay after an invalidation: unix milliseconds until which `acquire` is refused.
    lock_delays: BTreeMap<String, u64>,
    table_indexes: BTreeMap<Table, u64>,
    /// Intentions by (destination, source): one per pair, as in Consul.
    /// Serialised as a list: JSON object keys must be strings, and this map is keyed by pairs.
    #[serde(with = "pair_keyed")]
    intentions: BTreeMap<(String, String), Intention>,
    ca: CaState,
    /// `service.<name>` indexes: bumped by anything that changes that service's health or catalog view.
    service_indexes: BTreeMap<String, u64>,
    /// Tokens, policies, roles (absent from stores written before ACLs).
    #[serde(default)]
    acl: AclTables,
    /// Autopilot's settings once an operator has written them (absent before).
    #[serde(default)]
    autopilot: Option<weft_types::autopilot::AutopilotConfig>,
    /// Prepared queries by ID (absent from stores written before them).
    #[serde(default)]
    queries: BTreeMap<String, weft_types::query::PreparedQuery>,
    /// Network coordinates by node (absent before them).
    #[serde(default)]
    coordinates: BTreeMap<String, weft_types::coordinate::Coordinate>,
    /// Config entries by (kind, name), but `service-intentions` (absent before them).
    #[serde(with = "pair_keyed", default)]
    config_entries: BTreeMap<(String, String), weft_types::config_entry::StoredEntry>,
}

/// [`Tables`] as a client agent's replica receives it: the same fields, KV empty. A field added to `Tables` and not
/// here makes the replica's restore fail, which the snapshot tests catch.
#[derive(Serialize)]
struct TablesWithoutKv<'a> {
    index: u64,
    nodes: &'a BTreeMap<String, Node>,
    services: &'a BTreeMap<String, BTreeMap<String, NodeService>>,
    checks: &'a BTreeMap<String, BTreeMap<String, HealthCheck>>,
    kv: BTreeMap<String, DirEntry>,
    kv_tombstones: BTreeMap<String, u64>,
    sessions: &'a BTreeMap<String, Session>,
    lock_delays: &'a BTreeMap<String, u64>,
    table_indexes: &'a BTreeMap<Table, u64>,
    #[serde(serialize_with = "intentions_by_pair")]
    intentions: &'a BTreeMap<(String, String), Intention>,
    ca: CaState,
    service_indexes: &'a BTreeMap<String, u64>,
    acl: AclTables,
    autopilot: &'a Option<weft_types::autopilot::AutopilotConfig>,
    queries: BTreeMap<String, weft_types::query::PreparedQuery>,
    coordinates: &'a BTreeMap<String, weft_types::coordinate::Coordinate>,
    #[serde(serialize_with = "entries_by_pair")]
    config_entries: &'a BTreeMap<(String, String), weft_types::config_entry::StoredEntry>,
}

fn entries_by_pair<S: serde::Serializer>(
    map: &&BTreeMap<(String, String), weft_types::config_entry::StoredEntry>,
    s: S,
) -> Result<S::Ok, S::Error> {
    pair_keyed::serialize(map, s)
}

fn intentions_by_pair<S: serde::Serializer>(
    map: &&BTreeMap<(String, String), Intention>,
    s: S,
) -> Result<S::Ok, S::Error> {
    pair_keyed::serialize(map, s)
}

/// The store. Wrap it in a lock; queries borrow, commands take `&mut`.
#[derive(Debug, Default)]
pub struct Store {
    t: Tables,
    /// Derived lookup: service name → instances (not serialised; rebuilt on restore).
    by_name: HashMap<String, BTreeSet<InstanceKey>>,
    /// Derived lookup: Connect destination name → proxies and native instances for it.
    connect_by_dest: HashMap<String, BTreeSet<InstanceKey>>,
    watches: Watches,
    /// Derived lookup: token secret → AccessorID (not serialised; rebuilt on restore).
    acl_secrets: HashMap<String, String>,
    /// The clock of the command being applied (unix ms), for lock-delay decisions deep inside a write.
    clock_ms: u64,
    /// Derived: the compiled regexps of template queries, by query ID (compiled when written, never per lookup).
    query_regexes: HashMap<String, regex::Regex>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// The index of the last applied command.
    pub fn last_index(&self) -> u64 {
        self.t.index
    }

    pub fn watches(&self) -> &Watches {
        &self.watches
    }

    /// Autopilot's settings, when an operator has written them.
    pub fn autopilot_config(&self) -> Option<&weft_types::autopilot::AutopilotConfig> {
        self.t.autopilot.as_ref()
    }

    /// The highest index that changed `table` (0 when never written).
    pub fn table_index(&self, table: Table) -> u64 {
        self.t.table_indexes.get(&table).copied().unwrap_or(0)
    }

    /// Applies one command at log index `index` (which must exceed every earlier one); `now_ms` is the leader's clock
    /// when it proposed the command, so every replica makes the same lock-delay decisions.
    pub fn apply(
        &mut self,
        index: u64,
        now_ms: u64,
        cmd: &Command,
    ) -> Result<ApplyResult, StoreError> {
        let index = index.max(self.t.index.saturating_add(1));
        if let Command::Restore { state } = cmd {
            return self.restore_at(index, state);
        }
        let mut touched = BTreeSet::new();
        self.clock_ms = now_ms;
        let result = match cmd {
            Command::Register(reg) => self
                .register(index, reg, &mut touched)
                .map(|()| ApplyResult::Bool(true)),
            Command::Deregister {
                node,
                service_id,
                check_id,
            } => self
                .deregister(
                    index,
                    now_ms,
                    node,
                    service_id.as_deref(),
                    check_id.as_deref(),
                    &mut touched,
                )
                .map(|()| ApplyResult::Bool(true)),
            Command::UpdateCheck {
                node,
                check_id,
                status,
                output,
            } => self
                .update_check(index, now_ms, node, check_id, *status, output, &mut touched)
                .map(|()| ApplyResult::Bool(true)),
            Command::Kv(op) => self
                .kv_apply(index, now_ms, op, &mut touched)
                .map(|(ok, _)| ApplyResult::Bool(ok)),
            Command::Txn(ops) => Ok(self.txn(index, now_ms, ops, &mut touched)),
            Command::SessionCreate(session) => self
                .session_create(index, session, &mut touched)
                .map(|()| ApplyResult::Bool(true)),
            Command::SessionDestroy { id } => {
                self.session_destroy(index, now_ms, id, &mut touched);
                Ok(ApplyResult::Bool(true))
            }
            Command::IntentionUpsert(_)
            | Command::IntentionDelete { .. }
            | Command::IntentionsReplace { .. }
            | Command::CaSet(_)
            | Command::CaLeafIssued { .. } => self
                .apply_connect(index, cmd, &mut touched)
                .map(|()| ApplyResult::Bool(true)),
            acl if acl.is_acl() => self
                .apply_acl(index, cmd, &mut touched)
                .map(|()| ApplyResult::Bool(true)),
            Command::AutopilotSet { config, cas } => {
                let current = self.t.autopilot.as_ref().map_or(0, |c| c.modify_index);
                if cas.is_some_and(|cas| cas != current) {
                    Ok(ApplyResult::Bool(false))
                } else {
                    let mut config = (**config).clone();
                    config.create_index =
                        self.t.autopilot.as_ref().map_or(index, |c| c.create_index);
                    config.modify_index = index;
                    self.t.autopilot = Some(config);
                    Ok(ApplyResult::Bool(true))
                }
            }
            Command::QuerySet { query, create } => self
                .prepared_query_set(index, query, *create, &mut touched)
                .map(|()| ApplyResult::Bool(true)),
            Command::QueryDelete { id } => self
                .prepared_query_delete(id, &mut touched)
                .map(|()| ApplyResult::Bool(true)),
            Command::ConfigEntrySet { entry, cas } => {
                Ok(self.config_entry_set(index, entry, *cas, &mut touched))
            }
            Command::ConfigEntryDelete { kind, name, cas } => {
                Ok(self.config_entry_delete(kind, name, *cas, &mut touched))
            }
            Command::CoordinatesSet(updates) => {
                self.coordinates_set(updates, &mut touched);
                Ok(ApplyResult::Bool(true))
            }
            Command::Restore { .. } => Ok(ApplyResult::Bool(false)),
            _ => Ok(ApplyResult::Bool(false)),
        };
        // Failed commands still consume their index, as a Raft entry would, so indexes stay monotonic.
        self.t.index = index;
        for table in &touched {
            self.t.table_indexes.insert(*table, index);
        }
        self.watches.notify(&touched, index);
        result
    }

    fn bump_service(&mut self, index: u64, name: &str, touched: &mut BTreeSet<Table>) {
        self.t.service_indexes.insert(name.to_string(), index);
        touched.insert(Table::Services);
    }

    /// Serialises the whole state (tables and indexes) for a snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        // Every table serialises (string keys, or `pair_keyed` lists), so this cannot fail in practice; an empty
        // snapshot would be refused by `restore` rather than silently wiping a follower.
        serde_json::to_vec(&self.t).unwrap_or_default()
    }

    /// The serialisation a client agent's replica starts from: everything but KV (entries and tombstones), which
    /// client agents ask the servers for, so their memory does not grow with the KV store, and but the CA's private
    /// keys and the ACL tables, which never leave the servers (client agents send CSRs to the leader and ask the
    /// servers to resolve tokens). Serialised from borrowed
    /// tables (no copy, and readers go on meanwhile).
    pub fn snapshot_without_kv(&self) -> Vec<u8> {
        let t = &self.t;
        let view = TablesWithoutKv {
            index: t.index,
            nodes: &t.nodes,
            services: &t.services,
            checks: &t.checks,
            kv: BTreeMap::new(),
            kv_tombstones: BTreeMap::new(),
            sessions: &t.sessions,
            lock_delays: &t.lock_delays,
            table_indexes: &t.table_indexes,
            intentions: &t.intentions,
            // The CA's private keys never leave the servers.
            ca: t.ca.without_keys(),
            service_indexes: &t.service_indexes,
            // Tokens are secrets: agents ask the servers to resolve them.
            acl: AclTables::default(),
            autopilot: &t.autopilot,
            // A query's stored token is a secret too: client agents answer from the query alone (HTTP executions
            // are forwarded to the servers, which hold the token).
            queries: t
                .queries
                .iter()
                .map(|(id, q)| (id.clone(), q.without_token()))
                .collect(),
            coordinates: &t.coordinates,
            config_entries: &t.config_entries,
        };
        serde_json::to_vec(&view).unwrap_or_default()
    }

    /// Moves a replica past a command it does not hold (KV on a client agent), so that waits for that index end.
    pub fn skip_to(&mut self, index: u64) {
        self.t.index = self.t.index.max(index);
    }

    /// Checks that `state` is a store serialisation this build can restore (before it is proposed).
    pub fn validate_snapshot(state: &str) -> Result<u64, SnapshotError> {
        let t = serde_json::from_str::<Tables>(state).map_err(SnapshotError::NotAStateSnapshot)?;
        // Indexes only grow by one per write: one this large is damage or forgery, and would overflow.
        if t.index > MAX_INDEX || t.table_indexes.values().any(|i| *i > MAX_INDEX) {
            return Err(SnapshotError::IndexTooLarge(t.index));
        }
        Ok(t.index)
    }

    /// Checks that `state` may replace a cluster's: a valid snapshot (see [`Store::validate_snapshot`]) holding a
    /// CA the cluster can sign with, since a cluster restored without one could never issue another leaf.
    pub fn validate_restore(state: &str) -> Result<u64, SnapshotError> {
        let index = Self::validate_snapshot(state)?;
        let t = serde_json::from_str::<Tables>(state).map_err(SnapshotError::NotAStateSnapshot)?;
        let usable_ca = t.ca.config.is_some()
            && t.ca
                .active_root()
                .is_some_and(|r| !r.private_key_pem.is_empty());
        if !usable_ca {
            return Err(SnapshotError::NoCa);
        }
        Ok(index)
    }

    /// Applies an operator's restore at `index`: the restored state, with every index moved past both the
    /// current one and the snapshot's, so blocking queries wake and no index goes backwards.
    fn restore_at(&mut self, index: u64, state: &str) -> Result<ApplyResult, StoreError> {
        let t: Tables = serde_json::from_str(state)
            .map_err(|e| StoreError::TxnFailed(format!("not a Weft state snapshot: {e}")))?;
        let index = index.max(t.index.saturating_add(1));
        self.t = t;
        self.t.index = index;
        for table in Table::ALL {
            self.t.table_indexes.insert(table, index);
        }
        self.rebuild_lookups();
        let all: BTreeSet<Table> = Table::ALL.into_iter().collect();
        self.watches.notify(&all, index);
        Ok(ApplyResult::Bool(true))
    }

    /// Replaces the state with a snapshot's; every watcher is woken so blocking queries re-evaluate.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        let t: Tables = serde_json::from_slice(bytes)?;
        self.t = t;
        self.rebuild_lookups();
        let all: BTreeSet<Table> = Table::ALL.into_iter().collect();
        self.watches.notify(&all, self.t.index);
        Ok(())
    }

    fn rebuild_lookups(&mut self) {
        self.rebuild_acl_secrets();
        self.rebuild_query_regexes();
        self.by_name.clear();
        self.connect_by_dest.clear();
        let instances: Vec<NodeService> = self
            .t
            .services
            .values()
            .flat_map(|m| m.values().cloned())
            .collect();
        let nodes: Vec<(String, String)> = self
            .t
            .services
            .iter()
            .flat_map(|(n, m)| m.keys().map(move |id| (n.clone(), id.clone())))
            .collect();
        for ((node, _), svc) in nodes.into_iter().zip(instances) {
            self.index_instance(&node, &svc);
        }
    }
}

#[cfg(test)]
mod tests;

/// Serde for maps keyed by `(a, b)` pairs: a list of `[a, b, value]` entries.
mod pair_keyed {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer, V: Serialize>(
        map: &BTreeMap<(String, String), V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|((a, b), v)| (a, b, v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<BTreeMap<(String, String), V>, D::Error> {
        let entries: Vec<(String, String, V)> = Vec::deserialize(d)?;
        Ok(entries.into_iter().map(|(a, b, v)| ((a, b), v)).collect())
    }
}
