//! Wake-ups for blocking queries: one `watch` channel per table, carrying the index of its latest change.
//!
//! A blocking query subscribes to the tables it reads, evaluates, and if the result's index has not passed the
//! client's, waits for any of those channels to move. Idle waiters cost nothing; a write wakes only the waiters of the
//! tables it touched.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    Nodes,
    Services,
    Checks,
    Kv,
    Sessions,
    Intentions,
    ConnectCa,
    Acl,
    Queries,
    Coordinates,
    ConfigEntries,
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::Nodes,
        Table::Services,
        Table::Checks,
        Table::Kv,
        Table::Sessions,
        Table::Intentions,
        Table::ConnectCa,
        Table::Acl,
        Table::Queries,
        Table::Coordinates,
        Table::ConfigEntries,
    ];

    /// The table's position in [`Table::ALL`]; a unit test checks every variant is listed.
    fn slot(self) -> usize {
        Table::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

#[derive(Debug)]
pub struct Watches {
    senders: Vec<watch::Sender<u64>>,
}

impl Default for Watches {
    fn default() -> Self {
        Watches {
            senders: Table::ALL.iter().map(|_| watch::channel(0).0).collect(),
        }
    }
}

impl Watches {
    /// A receiver that changes whenever `table` is written.
    pub fn subscribe(&self, table: Table) -> watch::Receiver<u64> {
        self.senders[table.slot()].subscribe()
    }

    pub(crate) fn notify(&self, tables: &BTreeSet<Table>, index: u64) {
        for table in tables {
            self.senders[table.slot()].send_replace(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_own_slot() {
        let slots: BTreeSet<usize> = Table::ALL.iter().map(|t| t.slot()).collect();
        assert_eq!(slots.len(), Table::ALL.len());
        let w = Watches::default();
        for t in Table::ALL {
            let _ = w.subscribe(t);
        }
    }
}
