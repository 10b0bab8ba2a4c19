//! The agent's leaf certificates: one manager task per service name, issuing on first use, renewing at a random
//! point between 60 % and 90 % of the lifetime, and within the jitter window after the active root changes.
//! Readers hold a `watch` receiver: one writer, many readers, and blocking queries wait on it.
//!
//! Any caller can name any service, so the cache must not keep what nobody asks for: as Consul's agent cache does,
//! an entry that no request has begun or ended within the idle period (`AgentConfig::leaf_idle_expiry`, Consul's
//! 3 days by default) and that no request is waiting on is dropped, and its manager stops renewing and exits.

use crate::{AgentError, Inner};
use rand::RngExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_ca::{IssuedCert, ServiceId};
use weft_state::Table;

/// The latest outcome for one service: a certificate, or why issuing failed.
pub type LeafState = Option<Result<Arc<IssuedCert>, AgentError>>;

/// How long a leaf nobody asks for is kept and renewed: Consul's agent cache keeps leaves 3 days.
pub const DEFAULT_LEAF_IDLE_EXPIRY: Duration = Duration::from_secs(3 * 24 * 3600);

/// Shorter idle periods would have a manager look again and again while a blocking query waits on its leaf.
const SHORTEST_IDLE_EXPIRY: Duration = Duration::from_secs(1);
/// Longer idle periods are as good as never, and keep the deadlines far from `Instant`'s overflow.
const LONGEST_IDLE_EXPIRY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

struct Entry {
    /// The cache's own receiver, cloned for each request; the manager holds the sender.
    rx: watch::Receiver<LeafState>,
    /// When a request for this leaf last began or ended.
    last_used: Instant,
    /// The ACL token of the latest request: renewals are signed on its authority (Consul's agent cache keeps the
    /// requester's token the same way), so a token that loses `service:write` stops the renewals.
    token: Option<String>,
}

pub struct LeafCache {
    entries: Mutex<HashMap<String, Entry>>,
    idle_expiry: Duration,
}

/// When an entry goes idle, or `None` once it has: in use while a request waits on it (`waiting`), idle once
/// `idle_expiry` has passed since a request last began or ended.
fn idle_at(
    last_used: Instant,
    waiting: bool,
    now: Instant,
    idle_expiry: Duration,
) -> Option<Instant> {
    if waiting {
        return Some(now + idle_expiry);
    }
    let at = last_used + idle_expiry;
    (at > now).then_some(at)
}

/// A request's hold on one leaf: the entry is in use while it lives, and dropping it starts the idle period over.
pub(crate) struct Lease<'a> {
    cache: &'a LeafCache,
    service: String,
    pub(crate) rx: watch::Receiver<LeafState>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.cache.entries().get_mut(&self.service) {
            entry.last_used = Instant::now();
        }
    }
}

impl LeafCache {
    pub(crate) fn new(idle_expiry: Duration) -> LeafCache {
        LeafCache {
            entries: Mutex::default(),
            idle_expiry: idle_expiry.clamp(SHORTEST_IDLE_EXPIRY, LONGEST_IDLE_EXPIRY),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A hold on a service's leaf, starting its manager on first use (or after the last one stopped).
    pub(crate) fn subscribe(
        &self,
        agent: &Arc<Inner>,
        service: &str,
        token: Option<&str>,
    ) -> Lease<'_> {
        let now = Instant::now();
        let mut entries = self.entries();
        let rx = match entries.get_mut(service) {
            // A closed channel: its manager stopped (the agent's server is going away). Start another.
            Some(entry) if entry.rx.has_changed().is_ok() => {
                entry.last_used = now;
                entry.token = token.map(str::to_string);
                entry.rx.clone()
            }
            _ => {
                let (tx, rx) = watch::channel(None);
                let entry = Entry {
                    rx: rx.clone(),
                    last_used: now,
                    token: token.map(str::to_string),
                };
                entries.insert(service.to_string(), entry);
                tokio::spawn(manage(Arc::downgrade(agent), service.to_string(), tx));
                rx
            }
        };
        Lease {
            cache: self,
            service: service.to_string(),
            rx,
        }
    }

    /// For `service`'s manager, once its idle deadline has passed: when to look again, or `None` after dropping the
    /// entry (the manager then stops). Decided under the lock `subscribe` takes, so no request can pick up a
    /// receiver in between: the entry under `service` is this manager's for as long as the manager runs.
    fn still_wanted(&self, service: &str, tx: &watch::Sender<LeafState>) -> Option<Instant> {
        let mut entries = self.entries();
        let entry = entries.get(service)?;
        // Besides the cache's own receiver, each request in flight holds one.
        let waiting = tx.receiver_count() > 1;
        let at = idle_at(entry.last_used, waiting, Instant::now(), self.idle_expiry);
        if at.is_none() {
            entries.remove(service);
        }
        at
    }

    /// The token the latest request for `service`'s leaf came with.
    fn token(&self, service: &str) -> Option<String> {
        self.entries().get(service).and_then(|e| e.token.clone())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }
}

fn now_unix() -> i64 {
    (weft_server::now_ms() / 1000) as i64
}

async fn issue(agent: &Inner, service: &str) -> Result<IssuedCert, AgentError> {
    let (trust_domain, ready) = {
        let store = agent.server.read();
        (
            store.ca().trust_domain(),
            store.ca().active_root().is_some(),
        )
    };
    if !ready {
        return Err(AgentError::Internal(
            "cluster has no CA bootstrapped yet".into(),
        ));
    }
    let id = ServiceId::new(&trust_domain, &agent.config.datacenter, service);
    let (key_pem, csr_pem) =
        weft_ca::leaf::new_request(&id).map_err(|e| AgentError::Internal(e.to_string()))?;
    let token = agent.leaves.token(service);
    let mut cert = agent
        .server
        .sign_leaf(&csr_pem, &agent.config.datacenter, token.as_deref())
        .await
        .map_err(|e| match e {
            weft_server::CaManagerError::Ca(weft_ca::CaError::BadCsr(m)) => {
                AgentError::BadRequest(m)
            }
            other => AgentError::Internal(other.to_string()),
        })?;
    cert.private_key_pem = key_pem;
    Ok(cert)
}

/// The active root's signing key ID, which a current leaf's authority key ID must match.
fn active_signing_key(agent: &Inner) -> Option<String> {
    agent
        .server
        .read()
        .ca()
        .active_root()
        .map(|r| r.root.signing_key_id.clone())
}

/// Whether the manager of `service` goes on: past its idle deadline, asks the cache, which moves the deadline on or
/// drops the entry.
fn keep_going(
    agent: &Weak<Inner>,
    service: &str,
    tx: &watch::Sender<LeafState>,
    idle_deadline: &mut Instant,
) -> bool {
    if Instant::now() < *idle_deadline {
        return true;
    }
    let Some(inner) = agent.upgrade() else {
        return false;
    };
    match inner.leaves.still_wanted(service, tx) {
        Some(at) => {
            *idle_deadline = at;
            true
        }
        None => {
            tracing::debug!(%service, "leaf certificate not asked for within the idle period; dropped");
            false
        }
    }
}

async fn manage(agent: Weak<Inner>, service: String, tx: watch::Sender<LeafState>) {
    let (mut roots, mut idle_deadline) = match agent.upgrade() {
        Some(a) => (
            a.server.subscribe(Table::ConnectCa),
            Instant::now() + a.leaves.idle_expiry,
        ),
        None => return,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        if !keep_going(&agent, &service, &tx, &mut idle_deadline) {
            return;
        }
        let Some(inner) = agent.upgrade() else { return };
        roots.borrow_and_update();
        let issued = issue(&inner, &service).await;
        let jitter = inner.config.root_change_jitter;
        drop(inner);
        let (renew_at, akid) = match issued {
            Ok(cert) => {
                let info = weft_ca::leaf::inspect(&cert.cert_pem).ok();
                let renew_at = info
                    .as_ref()
                    .map(|i| {
                        weft_ca::renewal::renew_at(
                            i.not_before_unix,
                            i.not_after_unix,
                            now_unix(),
                            rand::rng().random(),
                        )
                    })
                    .unwrap_or_else(now_unix);
                tracing::debug!(%service, serial = %cert.serial_number, renew_at, "issued leaf certificate");
                tx.send_replace(Some(Ok(Arc::new(cert))));
                backoff = Duration::from_millis(200);
                (
                    renew_at,
                    info.map(|i| i.authority_key_id).unwrap_or_default(),
                )
            }
            Err(e) => {
                tracing::warn!(%service, error = %e, "could not issue leaf certificate; retrying");
                // Keep serving the last good certificate; only a first failure is reported to readers.
                if tx.borrow().as_ref().is_none_or(|s| s.is_err()) {
                    tx.send_replace(Some(Err(e)));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        // Wait for the renewal time, or for a root change that leaves this leaf signed by a retired key, unless the
        // leaf goes idle first.
        loop {
            let wait = Duration::from_secs(renew_at.saturating_sub(now_unix()).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => break,
                _ = tokio::time::sleep_until(idle_deadline) => {
                    if !keep_going(&agent, &service, &tx, &mut idle_deadline) {
                        return;
                    }
                }
                changed = roots.changed() => {
                    if changed.is_err() { return; }
                    let Some(inner) = agent.upgrade() else { return };
                    let current = active_signing_key(&inner);
                    drop(inner);
                    if current.is_some_and(|k| k != akid) {
                        let delay = jitter.mul_f64(rand::rng().random::<f64>());
                        tracing::info!(%service, ?delay, "CA root changed; re-issuing leaf");
                        tokio::time::sleep(delay).await;
                        break;
                    }
                }
            }
        }
    }
}

impl crate::Agent {
    /// The current leaf for `service`, issuing one first if needed; with `min_index`, waits (up to `wait`) until
    /// a certificate newer than that index is issued.
    /// `token` is the requester's ACL token (see [`LeafCache`]'s entries).
    pub async fn leaf_certificate(
        &self,
        service: &str,
        token: Option<&str>,
        min_index: u64,
        wait: Duration,
    ) -> Result<Arc<IssuedCert>, AgentError> {
        if !weft_ca::spiffe::valid_service_name(service) {
            return Err(AgentError::BadRequest(format!(
                "Invalid service name {service:?}"
            )));
        }
        let mut lease = self.inner.leaves.subscribe(&self.inner, service, token);
        let rx = &mut lease.rx;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let current = rx.borrow_and_update().clone();
            match current {
                Some(Ok(cert)) if min_index == 0 || cert.modify_index > min_index => {
                    return Ok(cert)
                }
                // A 500 whatever the variant: the CSR is the agent's own, not the caller's.
                Some(Err(e)) if min_index == 0 => return Err(AgentError::Internal(e.to_string())),
                Some(Ok(cert)) => {
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return Ok(cert) },
                        _ = tokio::time::sleep_until(deadline) => return Ok(cert),
                    }
                }
                _ => {
                    tokio::select! {
                        r = rx.changed() => if r.is_err() {
                            return Err(AgentError::Internal("leaf certificate manager stopped".into()));
                        },
                        _ = tokio::time::sleep_until(deadline) => {
                            return Err(AgentError::Internal("timed out waiting for a leaf certificate".into()));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_goes_idle_one_period_after_its_last_use_unless_a_request_waits_on_it() {
        let (t0, idle, second) = (
            Instant::now(),
            Duration::from_secs(600),
            Duration::from_secs(1),
        );
        assert_eq!(idle_at(t0, false, t0, idle), Some(t0 + idle));
        assert_eq!(
            idle_at(t0, false, t0 + idle - second, idle),
            Some(t0 + idle)
        );
        assert_eq!(idle_at(t0, false, t0 + idle, idle), None);
        assert_eq!(idle_at(t0, true, t0 + 5 * idle, idle), Some(t0 + 6 * idle));
    }
}
