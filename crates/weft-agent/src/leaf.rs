//! The agent's leaf certificates: one manager task per service name, issuing on first use, renewing at a random
//! point between 60 % and 90 % of the lifetime, and within the jitter window after the active root changes.
//! Readers hold a `watch` receiver: one writer, many readers, and blocking queries wait on it.

use crate::{AgentError, Inner};
use rand::RngExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;
use weft_ca::{IssuedCert, ServiceId};
use weft_state::Table;

/// The latest outcome for one service: a certificate, or why issuing failed.
pub type LeafState = Option<Result<Arc<IssuedCert>, AgentError>>;

#[derive(Default)]
pub struct LeafCache {
    entries: Mutex<HashMap<String, watch::Receiver<LeafState>>>,
}

impl LeafCache {
    /// The receiver for a service's leaf, starting its manager on first use.
    pub(crate) fn subscribe(
        &self,
        agent: &Arc<Inner>,
        service: &str,
    ) -> watch::Receiver<LeafState> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = entries.get(service) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        entries.insert(service.to_string(), rx.clone());
        tokio::spawn(manage(Arc::downgrade(agent), service.to_string(), tx));
        rx
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
    let mut cert = agent
        .server
        .sign_leaf(&csr_pem, &agent.config.datacenter)
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

async fn manage(agent: Weak<Inner>, service: String, tx: watch::Sender<LeafState>) {
    let mut roots = match agent.upgrade() {
        Some(a) => a.server.subscribe(Table::ConnectCa),
        None => return,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
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
        // Wait for the renewal time, or for a root change that leaves this leaf signed by a retired key.
        loop {
            let wait = Duration::from_secs(renew_at.saturating_sub(now_unix()).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => break,
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
    pub async fn leaf_certificate(
        &self,
        service: &str,
        min_index: u64,
        wait: Duration,
    ) -> Result<Arc<IssuedCert>, AgentError> {
        if !weft_ca::spiffe::valid_service_name(service) {
            return Err(AgentError::BadRequest(format!(
                "Invalid service name {service:?}"
            )));
        }
        let mut rx = self.inner.leaves.subscribe(&self.inner, service);
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
