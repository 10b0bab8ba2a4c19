//! Sessions: creation against live checks, destruction that releases (or deletes) held keys and starts lock-delay,
//! and invalidation when a linked check goes critical or disappears. TTL timers live with the leader, not here:
//! expiry arrives as a `SessionDestroy` command like any other.

use crate::{Store, StoreError, Table};
use std::collections::BTreeSet;
use weft_types::{CheckStatus, Session, SessionBehavior};

impl Store {
    pub(crate) fn session_create(
        &mut self,
        index: u64,
        session: &Session,
        touched: &mut BTreeSet<Table>,
    ) -> Result<(), StoreError> {
        if !self.t.nodes.contains_key(&session.node) {
            return Err(StoreError::UnknownNode(session.node.clone()));
        }
        for check_id in session.check_ids() {
            match self
                .t
                .checks
                .get(&session.node)
                .and_then(|m| m.get(check_id))
            {
                None => return Err(StoreError::MissingSessionCheck(check_id.to_string())),
                Some(c) if c.status == CheckStatus::Critical => {
                    return Err(StoreError::CriticalCheck(check_id.to_string()))
                }
                Some(_) => {}
            }
        }
        let mut session = session.clone();
        session.create_index = index;
        session.modify_index = index;
        self.t.sessions.insert(session.id.clone(), session);
        touched.insert(Table::Sessions);
        Ok(())
    }

    pub(crate) fn session_destroy(
        &mut self,
        index: u64,
        now_ms: u64,
        id: &str,
        touched: &mut BTreeSet<Table>,
    ) {
        let Some(session) = self.t.sessions.remove(id) else {
            return;
        };
        touched.insert(Table::Sessions);
        self.prepared_queries_drop_session(id, touched);
        let held: Vec<String> = self
            .t
            .kv
            .values()
            .filter(|e| e.session == id)
            .map(|e| e.key.clone())
            .collect();
        let delay_ms = session.lock_delay / 1_000_000;
        let until = if delay_ms > 0 { now_ms + delay_ms } else { 0 };
        let delete = session.behavior == SessionBehavior::Delete;
        for key in held {
            self.kv_release_for_session(index, &key, delete, until, touched);
        }
    }

    pub(crate) fn invalidate_sessions_for_check(
        &mut self,
        index: u64,
        node: &str,
        check_id: &str,
        touched: &mut BTreeSet<Table>,
    ) {
        let doomed: Vec<String> = self
            .t
            .sessions
            .values()
            .filter(|s| s.node == node && s.check_ids().any(|c| c == check_id))
            .map(|s| s.id.clone())
            .collect();
        // Lock-delay counts from the clock of the command that caused the invalidation.
        for id in doomed {
            self.session_destroy(index, self.clock_ms, &id, touched);
        }
    }

    // ---- reads ----

    pub fn session(&self, id: &str) -> Option<&Session> {
        self.t.sessions.get(id)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.t.sessions.values()
    }

    pub fn node_sessions<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Session> + 'a {
        self.t.sessions.values().filter(move |s| s.node == node)
    }

    /// Whether `key` is in lock-delay at `now_ms`.
    pub fn in_lock_delay(&self, key: &str, now_ms: u64) -> bool {
        self.t
            .lock_delays
            .get(key)
            .is_some_and(|until| *until > now_ms)
    }
}
