//! Session TTLs, owned by the leader.
//!
//! Deadlines are kept in memory, not in the log: renewals are frequent and need no replication. When a deadline passes
//! (TTL × 2, Consul's grace) the loop writes a `SessionDestroy`, which releases the session's locks like any
//! other invalidation. A new leader rebuilds the deadlines from the sessions it finds, giving each a fresh TTL.

use crate::Server;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use weft_state::Command;

#[derive(Default)]
pub struct SessionTimers {
    deadlines: Mutex<HashMap<String, (Instant, Duration)>>,
    changed: Notify,
}

impl SessionTimers {
    /// Starts (or restarts) the TTL of a session.
    pub fn arm(&self, id: &str, ttl: Duration) {
        let deadline = Instant::now() + ttl * 2;
        self.lock().insert(id.to_string(), (deadline, ttl));
        self.changed.notify_one();
    }

    /// Resets a session's timer; false when the session has no TTL timer.
    pub fn renew(&self, id: &str) -> bool {
        let mut map = self.lock();
        match map.get_mut(id) {
            Some((deadline, ttl)) => {
                *deadline = Instant::now() + *ttl * 2;
                true
            }
            None => false,
        }
    }

    /// Drops every timer: this member stopped leading, and the next leader rebuilds them from the store.
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Duration)>> {
        self.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, now: Instant) -> (Vec<String>, Option<Instant>) {
        let map = self.lock();
        let expired = map
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let next = map.values().map(|(d, _)| *d).filter(|d| *d > now).min();
        (expired, next)
    }
}

impl Server {
    /// Gives every TTL session in the store a fresh timer (and drops timers of sessions that are gone): what a new
    /// leader does, and what a snapshot restore needs.
    pub fn rearm_sessions(&self) {
        let timers = self.session_timers();
        timers.clear();
        let existing: Vec<(String, String)> = self
            .read()
            .sessions()
            .map(|s| (s.id.clone(), s.ttl.clone()))
            .collect();
        for (id, ttl) in existing {
            if let Ok(ttl) = weft_types::duration::parse_duration(&ttl) {
                if !ttl.is_zero() {
                    timers.arm(&id, ttl);
                }
            }
        }
    }
}

pub(crate) async fn expiry_loop(server: Server) {
    let timers = server.session_timers();
    server.rearm_sessions();
    loop {
        let (expired, next) = timers.expired(Instant::now());
        for id in expired {
            tracing::info!(session = %id, "session TTL expired; invalidating");
            timers.forget(&id);
            if let Err(e) = server
                .write(Command::SessionDestroy { id: id.clone() })
                .await
            {
                tracing::warn!(session = %id, error = %e, "could not invalidate expired session");
            }
        }
        let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(sleep_until) => {}
            _ = timers.changed.notified() => {}
        }
    }
}
