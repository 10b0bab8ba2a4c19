//! Config entries by (kind, name), other than `service-intentions` (kept as intentions). Writes and deletes may
//! carry Consul's `?cas`: the entry's current ModifyIndex, 0 for "must not exist yet"; a mismatch answers `false`
//! and changes nothing.

use crate::{ApplyResult, Store, Table};
use std::collections::BTreeSet;
use weft_types::config_entry::StoredEntry;

impl Store {
    pub fn config_entry(&self, kind: &str, name: &str) -> Option<&StoredEntry> {
        self.t
            .config_entries
            .get(&(kind.to_string(), name.to_string()))
    }

    /// The entries of `kind`, by name.
    pub fn config_entries_of(&self, kind: &str) -> impl Iterator<Item = &StoredEntry> {
        let kind = kind.to_string();
        self.t
            .config_entries
            .values()
            .filter(move |e| e.kind == kind)
    }

    pub(crate) fn config_entry_set(
        &mut self,
        index: u64,
        entry: &StoredEntry,
        cas: Option<u64>,
        touched: &mut BTreeSet<Table>,
    ) -> ApplyResult {
        let key = (entry.kind.clone(), entry.name.clone());
        let current = self.t.config_entries.get(&key);
        if cas.is_some_and(|cas| cas != current.map_or(0, |e| e.modify_index)) {
            return ApplyResult::Bool(false);
        }
        let mut stored = entry.clone();
        stored.create_index = current.map_or(index, |e| e.create_index);
        stored.modify_index = index;
        self.t.config_entries.insert(key, stored);
        touched.insert(Table::ConfigEntries);
        ApplyResult::Bool(true)
    }

    pub(crate) fn config_entry_delete(
        &mut self,
        kind: &str,
        name: &str,
        cas: Option<u64>,
        touched: &mut BTreeSet<Table>,
    ) -> ApplyResult {
        let key = (kind.to_string(), name.to_string());
        let current = self.t.config_entries.get(&key).map(|e| e.modify_index);
        if cas.is_some_and(|cas| Some(cas) != current) {
            return ApplyResult::Bool(false);
        }
        if self.t.config_entries.remove(&key).is_some() {
            touched.insert(Table::ConfigEntries);
        }
        ApplyResult::Bool(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::{ApplyResult, Command, Store, Table};
    use weft_types::config_entry::StoredEntry;

    fn entry(name: &str, protocol: &str) -> StoredEntry {
        StoredEntry {
            kind: "service-defaults".into(),
            name: name.into(),
            body: serde_json::json!({"Protocol": protocol})
                .as_object()
                .cloned()
                .unwrap(),
            create_index: 0,
            modify_index: 0,
        }
    }

    fn apply(s: &mut Store, cmd: Command) -> ApplyResult {
        let index = s.last_index() + 1;
        s.apply(index, 0, &cmd).unwrap()
    }

    #[test]
    fn entries_are_written_with_cas_and_survive_a_snapshot() {
        let mut s = Store::new();
        let set = |e: StoredEntry, cas| Command::ConfigEntrySet {
            entry: Box::new(e),
            cas,
        };
        assert_eq!(
            apply(&mut s, set(entry("web", "http"), Some(0))),
            ApplyResult::Bool(true)
        );
        // cas 0 means "must not exist": refused now.
        assert_eq!(
            apply(&mut s, set(entry("web", "tcp"), Some(0))),
            ApplyResult::Bool(false)
        );
        let at = s
            .config_entry("service-defaults", "web")
            .unwrap()
            .modify_index;
        assert_eq!(
            apply(&mut s, set(entry("web", "grpc"), Some(at))),
            ApplyResult::Bool(true)
        );
        let e = s.config_entry("service-defaults", "web").unwrap();
        assert_eq!(e.body["Protocol"], "grpc");
        assert!(e.modify_index > e.create_index);
        assert!(s.table_index(Table::ConfigEntries) > 0);
        apply(&mut s, set(entry("api", "http"), None));
        assert_eq!(s.config_entries_of("service-defaults").count(), 2);

        let mut copy = Store::new();
        copy.restore(&s.snapshot()).unwrap();
        assert_eq!(
            copy.config_entry("service-defaults", "api").unwrap().body["Protocol"],
            "http"
        );

        let del = |cas| Command::ConfigEntryDelete {
            kind: "service-defaults".into(),
            name: "web".into(),
            cas,
        };
        assert_eq!(apply(&mut s, del(Some(1))), ApplyResult::Bool(false));
        assert!(s.config_entry("service-defaults", "web").is_some());
        assert_eq!(apply(&mut s, del(None)), ApplyResult::Bool(true));
        assert!(s.config_entry("service-defaults", "web").is_none());
    }
}
