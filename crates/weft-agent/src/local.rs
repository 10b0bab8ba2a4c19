//! The agent's local state: the services and checks registered on this host. The agent is their source of truth;
//! the catalog holds a copy that the agent keeps in step.

use std::collections::BTreeMap;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use weft_types::{CheckDefinition, CheckKind, HealthCheck, NodeService};

/// Where a registration came from: config files are re-read on reload, API registrations are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Config,
}

#[derive(Debug)]
pub struct LocalService {
    pub service: NodeService,
    pub source: Source,
    /// Registered through a parent's `Connect.SidecarService`: removed with the parent.
    pub sidecar_of: Option<String>,
    /// The definition as registered (parents only), kept so a client agent can restore it after a restart.
    pub definition: Option<weft_types::ServiceDefinition>,
    /// For services from config files: the token their catalog writes need (`token`, else the agent's
    /// `config_file_service_registration` or default token; empty means anonymous). With ACLs on, the service is
    /// kept locally but written to the catalog only while this token holds `service:write` on it, as in Consul.
    /// `None` for API registrations, which the HTTP API authorised with the caller's token.
    pub token: Option<String>,
}

#[derive(Debug)]
pub struct LocalCheck {
    pub check: HealthCheck,
    pub definition: CheckDefinition,
    pub kind: CheckKind,
    pub source: Source,
    /// When a TTL check expires unless updated first.
    pub ttl_deadline: Option<Instant>,
    /// Since when the check has been critical, for `DeregisterCriticalServiceAfter`.
    pub critical_since: Option<Instant>,
    pub runner: Option<AbortHandle>,
}

impl Drop for LocalCheck {
    fn drop(&mut self) {
        if let Some(r) = self.runner.take() {
            r.abort();
        }
    }
}

#[derive(Debug, Default)]
pub struct LocalState {
    pub services: BTreeMap<String, LocalService>,
    pub checks: BTreeMap<String, LocalCheck>,
}

impl LocalState {
    pub fn service_check_ids(&self, service_id: &str) -> Vec<String> {
        self.checks
            .values()
            .filter(|c| c.check.service_id == service_id)
            .map(|c| c.check.check_id.clone())
            .collect()
    }
}
