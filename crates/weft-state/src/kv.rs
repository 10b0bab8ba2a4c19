//! The KV table: Consul's verbs (set, CAS, lock/unlock through sessions, deletes with tombstones), transactions
//! with an undo log, and the prefix reads behind `?recurse` and `?keys`.

use crate::{ApplyResult, KvOp, Store, StoreError, Table};
use std::collections::BTreeSet;
use weft_types::DirEntry;

/// What a transaction must put back if a later operation fails.
struct Undo {
    key: String,
    entry: Option<DirEntry>,
    tombstone: Option<u64>,
}

impl Store {
    /// Applies one KV operation. Returns whether it took effect (CAS and locks may not) and the entries it yields
    /// for a transaction's results.
    pub(crate) fn kv_apply(
        &mut self,
        index: u64,
        now_ms: u64,
        op: &KvOp,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(bool, Vec<DirEntry>), StoreError> {
        self.kv_apply_logged(index, now_ms, op, touched, &mut Vec::new())
    }

    fn kv_apply_logged(
        &mut self,
        index: u64,
        now_ms: u64,
        op: &KvOp,
        touched: &mut BTreeSet<Table>,
        undo: &mut Vec<Undo>,
    ) -> Result<(bool, Vec<DirEntry>), StoreError> {
        match op {
            KvOp::Set { key, value, flags } => {
                let entry = self.kv_write(index, key, value, *flags, None, touched, undo)?;
                Ok((true, vec![entry]))
            }
            KvOp::Cas {
                key,
                value,
                flags,
                index: want,
            } => {
                let current = self.t.kv.get(key).map(|e| e.modify_index);
                let matches = match (*want, current) {
                    (0, None) => true,
                    (0, Some(_)) => false,
                    (n, Some(m)) => n == m,
                    (_, None) => false,
                };
                if !matches {
                    return Ok((false, Vec::new()));
                }
                let entry = self.kv_write(index, key, value, *flags, None, touched, undo)?;
                Ok((true, vec![entry]))
            }
            KvOp::Lock {
                key,
                value,
                flags,
                session,
            } => {
                if !self.t.sessions.contains_key(session) {
                    return Err(StoreError::InvalidSession(session.clone()));
                }
                if self
                    .t
                    .lock_delays
                    .get(key)
                    .is_some_and(|until| *until > now_ms)
                {
                    return Ok((false, Vec::new()));
                }
                match self.t.kv.get(key).map(|e| e.session.as_str()) {
                    Some(holder) if !holder.is_empty() && holder != session => {
                        Ok((false, Vec::new()))
                    }
                    _ => {
                        let entry = self.kv_write(
                            index,
                            key,
                            value,
                            *flags,
                            Some(LockChange::Acquire(session)),
                            touched,
                            undo,
                        )?;
                        Ok((true, vec![entry]))
                    }
                }
            }
            KvOp::Unlock {
                key,
                value,
                flags,
                session,
            } => match self.t.kv.get(key) {
                Some(e) if e.session == *session => {
                    let entry = self.kv_write(
                        index,
                        key,
                        value,
                        *flags,
                        Some(LockChange::Release),
                        touched,
                        undo,
                    )?;
                    Ok((true, vec![entry]))
                }
                _ => Ok((false, Vec::new())),
            },
            KvOp::Get { .. }
            | KvOp::GetOrEmpty { .. }
            | KvOp::GetTree { .. }
            | KvOp::CheckIndex { .. }
            | KvOp::CheckSession { .. }
            | KvOp::CheckNotExists { .. } => self.kv_read(op).map(|entries| (true, entries)),
            KvOp::Delete { key } => {
                self.kv_delete(index, key, touched, undo);
                Ok((true, Vec::new()))
            }
            KvOp::DeleteTree { prefix } => {
                let keys: Vec<String> = self.kv_list(prefix).map(|e| e.key.clone()).collect();
                for key in keys {
                    self.kv_delete(index, &key, touched, undo);
                }
                Ok((true, Vec::new()))
            }
            KvOp::DeleteCas { key, index: want } => match self.t.kv.get(key) {
                Some(e) if e.modify_index == *want => {
                    self.kv_delete(index, key, touched, undo);
                    Ok((true, Vec::new()))
                }
                // Deleting an absent key with cas=0 succeeds, as in Consul.
                None if *want == 0 => Ok((true, Vec::new())),
                _ => Ok((false, Vec::new())),
            },
        }
    }

    /// Evaluates a read-only operation (`get`, `check-*`): the entries it yields, or why it fails a transaction.
    fn kv_read(&self, op: &KvOp) -> Result<Vec<DirEntry>, StoreError> {
        match op {
            KvOp::Get { key } => match self.t.kv.get(key) {
                Some(e) => Ok(vec![e.clone()]),
                None => Err(StoreError::TxnFailed(format!(
                    "key \"{key}\" doesn't exist"
                ))),
            },
            KvOp::GetOrEmpty { key } => Ok(self.t.kv.get(key).cloned().into_iter().collect()),
            KvOp::GetTree { prefix } => Ok(self.kv_list(prefix).cloned().collect()),
            KvOp::CheckIndex { key, index: want } => match self.t.kv.get(key) {
                Some(e) if e.modify_index == *want => Ok(vec![e.clone()]),
                Some(e) => Err(StoreError::TxnFailed(format!(
                    "current modify index {} != {want}",
                    e.modify_index
                ))),
                None => Err(StoreError::TxnFailed(format!(
                    "key \"{key}\" doesn't exist"
                ))),
            },
            KvOp::CheckSession { key, session } => match self.t.kv.get(key) {
                Some(e) if e.session == *session => Ok(vec![e.clone()]),
                Some(e) => Err(StoreError::TxnFailed(format!(
                    "current session {:?} != {session:?}",
                    e.session
                ))),
                None => Err(StoreError::TxnFailed(format!(
                    "key \"{key}\" doesn't exist"
                ))),
            },
            KvOp::CheckNotExists { key } => match self.t.kv.get(key) {
                Some(_) => Err(StoreError::TxnFailed(format!("key \"{key}\" exists"))),
                None => Ok(Vec::new()),
            },
            _ => Ok(Vec::new()),
        }
    }

    /// Runs a read-only transaction without a log entry (all operations must be reads).
    pub fn txn_read(&self, ops: &[KvOp]) -> ApplyResult {
        let mut results = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match self.kv_read(op) {
                Ok(entries) => results.extend(entries),
                Err(e) => {
                    return ApplyResult::TxnRolledBack {
                        op_index: i,
                        what: e.to_string(),
                    }
                }
            }
        }
        ApplyResult::Txn(results)
    }

    #[allow(clippy::too_many_arguments)]
    fn kv_write(
        &mut self,
        index: u64,
        key: &str,
        value: &[u8],
        flags: u64,
        lock: Option<LockChange<'_>>,
        touched: &mut BTreeSet<Table>,
        undo: &mut Vec<Undo>,
    ) -> Result<DirEntry, StoreError> {
        if key.is_empty() {
            return Err(StoreError::MissingKey);
        }
        let previous = self.t.kv.get(key).cloned();
        undo.push(Undo {
            key: key.to_string(),
            entry: previous.clone(),
            tombstone: self.t.kv_tombstones.get(key).copied(),
        });
        let mut entry = previous.unwrap_or(DirEntry {
            key: key.to_string(),
            create_index: index,
            ..DirEntry::default()
        });
        entry.value = value.to_vec();
        entry.flags = flags;
        entry.modify_index = index;
        match lock {
            Some(LockChange::Acquire(session)) if entry.session != session => {
                entry.lock_index += 1;
                entry.session = session.to_string();
            }
            Some(LockChange::Acquire(_)) => {}
            Some(LockChange::Release) => entry.session.clear(),
            None => {}
        }
        self.t.kv_tombstones.remove(key);
        self.t.kv.insert(key.to_string(), entry.clone());
        touched.insert(Table::Kv);
        Ok(entry)
    }

    fn kv_delete(
        &mut self,
        index: u64,
        key: &str,
        touched: &mut BTreeSet<Table>,
        undo: &mut Vec<Undo>,
    ) {
        if let Some(previous) = self.t.kv.remove(key) {
            undo.push(Undo {
                key: key.to_string(),
                entry: Some(previous),
                tombstone: self.t.kv_tombstones.get(key).copied(),
            });
            self.t.kv_tombstones.insert(key.to_string(), index);
            touched.insert(Table::Kv);
        }
    }

    /// Releases (or deletes, by `behavior`) a key held by an invalidated session and starts its lock-delay.
    pub(crate) fn kv_release_for_session(
        &mut self,
        index: u64,
        key: &str,
        delete: bool,
        lock_delay_until: u64,
        touched: &mut BTreeSet<Table>,
    ) {
        if delete {
            self.kv_delete(index, key, touched, &mut Vec::new());
        } else if let Some(entry) = self.t.kv.get_mut(key) {
            entry.session.clear();
            entry.modify_index = index;
            touched.insert(Table::Kv);
        }
        if lock_delay_until > 0 {
            self.t.lock_delays.insert(key.to_string(), lock_delay_until);
        }
    }

    pub(crate) fn txn(
        &mut self,
        index: u64,
        now_ms: u64,
        ops: &[KvOp],
        touched: &mut BTreeSet<Table>,
    ) -> ApplyResult {
        let mut undo = Vec::new();
        let mut results = Vec::new();
        let mut txn_touched = BTreeSet::new();
        for (i, op) in ops.iter().enumerate() {
            let outcome = self.kv_apply_logged(index, now_ms, op, &mut txn_touched, &mut undo);
            let failure = match outcome {
                Ok((true, entries)) => {
                    // Writes report entries without their value, as Consul does; reads carry it.
                    let strip = !op.is_read();
                    results.extend(entries.into_iter().map(|mut e| {
                        if strip {
                            e.value.clear();
                        }
                        e
                    }));
                    None
                }
                Ok((false, _)) => Some(match op {
                    KvOp::Lock { key, session, .. } => {
                        format!("failed to lock key \"{key}\" with session {session}")
                    }
                    KvOp::Unlock { key, session, .. } => {
                        format!("failed to unlock key \"{key}\" with session {session}")
                    }
                    _ => "failed to set key: CAS failed".to_string(),
                }),
                Err(e) => Some(e.to_string()),
            };
            if let Some(what) = failure {
                for u in undo.into_iter().rev() {
                    match u.entry {
                        Some(e) => self.t.kv.insert(u.key.clone(), e),
                        None => self.t.kv.remove(&u.key),
                    };
                    match u.tombstone {
                        Some(t) => self.t.kv_tombstones.insert(u.key, t),
                        None => self.t.kv_tombstones.remove(&u.key),
                    };
                }
                return ApplyResult::TxnRolledBack { op_index: i, what };
            }
        }
        touched.extend(txn_touched);
        ApplyResult::Txn(results)
    }

    // ---- reads ----

    pub fn kv_get(&self, key: &str) -> Option<&DirEntry> {
        self.t.kv.get(key)
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn kv_list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a DirEntry> + 'a {
        self.t
            .kv
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e)
    }

    /// Key names under `prefix`; with a separator, each key is cut after the first separator past the prefix and
    /// the "directories" are deduplicated.
    pub fn kv_keys(&self, prefix: &str, separator: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for entry in self.kv_list(prefix) {
            let rest = &entry.key[prefix.len()..];
            let name = match (separator.is_empty(), rest.find(separator)) {
                (false, Some(pos)) => format!("{prefix}{}", &rest[..pos + separator.len()]),
                _ => entry.key.clone(),
            };
            if out.last() != Some(&name) {
                out.push(name);
            }
        }
        out
    }

    /// The index of a key or prefix: the highest modify index under it, deletions included; the table's index when
    /// nothing was ever there.
    pub fn kv_index(&self, prefix: &str) -> u64 {
        let live = self.kv_list(prefix).map(|e| e.modify_index).max();
        let dead = self
            .t
            .kv_tombstones
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max();
        match live.max(dead) {
            Some(i) => i,
            None => self.table_index(Table::Kv),
        }
    }
}

enum LockChange<'a> {
    Acquire(&'a str),
    Release,
}
