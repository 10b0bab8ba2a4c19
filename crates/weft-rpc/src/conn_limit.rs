//! Connections per client address, for the HTTP API and the server RPC listener alike: one address holds at most
//! its limit (Consul's `http_max_conns_per_client` / `rpc_max_conns_per_client`), further connections are closed
//! at once, before any byte is read, and every refusal is counted (`/v1/agent/self` shows the counts).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Open connections per client address, and what was refused.
#[derive(Debug)]
pub struct Connections {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    handshakes_failed: AtomicU64,
}

/// One open connection's place in [`Connections`]; given back on drop.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl Connections {
    /// At most `limit` connections per client address (0 means no limit, as in Consul).
    pub fn new(limit: usize) -> Arc<Connections> {
        Arc::new(Connections {
            limit: if limit == 0 { usize::MAX } else { limit },
            open: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            handshakes_failed: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection from `ip`, or `None` (counted) when it already holds its limit.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limit {
            drop(open);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(Slot {
            connections: self.clone(),
            ip,
        })
    }

    /// Connections refused because their client already held its limit.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed because their handshake failed or did not complete in time (server RPC).
    pub fn handshakes_failed(&self) -> u64 {
        self.handshakes_failed.load(Ordering::Relaxed)
    }

    pub(crate) fn count_failed_handshake(&self) {
        self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_limit_and_refusals_are_counted() {
        let conns = Connections::new(2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = conns.take(a);
        let second = conns.take(a);
        assert!(first.is_some() && second.is_some());
        assert!(conns.take(a).is_none());
        assert!(conns.take(b).is_some(), "other clients are not affected");
        assert_eq!(conns.refused(), 1);
        drop(first);
        let third = conns.take(a);
        assert!(third.is_some(), "a closed connection frees its slot");
        assert_eq!(conns.open(), 2, "a's second and third; b's was dropped");
        drop((second, third));
        assert_eq!(conns.open(), 0);
        let unlimited = Connections::new(0);
        let held: Vec<_> = (0..1000).filter_map(|_| unlimited.take(a)).collect();
        assert_eq!(held.len(), 1000);
    }
}
