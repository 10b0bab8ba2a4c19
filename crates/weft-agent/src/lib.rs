//! The agent role.
//!
//! An [`Agent`] owns this host's services and checks (the source of truth), runs the checks, and writes every local
//! change through to the catalog on its server. In dev mode the server is in the same process; in a cluster the
//! writes go over server RPC and anti-entropy (`sync`) repairs whatever drifted, with the same API either way.

pub mod coordinates;
pub mod definition;
mod docker_check;
mod error;
pub mod events;
mod grpc_check;
mod h2ping;
pub mod host;
mod leaf;
mod local;
mod persist;
mod runner;
mod sync;

pub use error::AgentError;
pub use leaf::DEFAULT_LEAF_IDLE_EXPIRY;
pub use local::Source;
pub use persist::PersistError;

use local::{LocalCheck, LocalService, LocalState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use weft_server::Server;
use weft_state::{Command, Registration};
use weft_types::{
    CheckDefinition, CheckKind, CheckStatus, HealthCheck, Node, NodeService, ServiceDefinition,
};

/// The node-level check every agent keeps passing while it is alive.
pub const SERF_HEALTH: &str = "serfHealth";
pub const NODE_MAINTENANCE: &str = "_node_maintenance";
/// Consul's default range for sidecar public ports.
pub const SIDECAR_MIN_PORT: u16 = 21000;
pub const SIDECAR_MAX_PORT: u16 = 21255;

/// `_service_maintenance:<id>`, Consul's maintenance check for one service.
pub fn service_maintenance_id(service_id: &str) -> String {
    format!("_service_maintenance:{service_id}")
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub node_id: String,
    pub datacenter: String,
    /// The address other nodes and the catalog use for this node.
    pub advertise_addr: String,
    pub node_meta: BTreeMap<String, String>,
    pub server: bool,
    pub server_port: u16,
    /// After a CA root change, leaves are re-issued at a random point within this window (Consul: 30 s).
    pub root_change_jitter: Duration,
    /// Where API registrations are kept across restarts (`<data-dir>/agent`); none in dev mode.
    pub state_dir: Option<std::path::PathBuf>,
    /// A leaf certificate no request began or ended within this period is dropped, and no longer renewed
    /// ([`DEFAULT_LEAF_IDLE_EXPIRY`], Consul's 3 days; `connect.leaf_cache_idle_expiry`).
    pub leaf_idle_expiry: Duration,
    /// Where this node runs (`locality { region zone }`), registered with the node.
    pub locality: Option<weft_types::service::Locality>,
    /// Which registrations may carry script checks (`Args`): none unless the operator says so, since a script
    /// check runs a program on this host as the agent's user.
    pub script_checks: ScriptChecks,
    /// The most output any check keeps (`check_output_max_size`; 0 means Consul's 4096); a check's own
    /// `OutputMaxSize` may only lower it, as in Consul.
    pub check_output_max_size: usize,
}

/// `enable_script_checks` (checks registered through the API and the config) and `enable_local_script_checks`
/// (the config only), as Consul reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptChecks {
    pub from_api: bool,
    pub from_config: bool,
}

impl ScriptChecks {
    /// Refuses a script check from `source` that the operator has not enabled, in Consul's words.
    pub fn allow(self, kind: &CheckKind, source: Source) -> Result<(), AgentError> {
        if !matches!(kind, CheckKind::Script { .. } | CheckKind::Docker { .. }) {
            return Ok(());
        }
        match source {
            Source::Config if !self.from_config => Err(AgentError::BadRequest(
                "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true".into(),
            )),
            Source::Api if !self.from_api => Err(AgentError::BadRequest(
                "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// A cheap handle to the agent; clones share its state.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: AgentConfig,
    server: Server,
    local: Mutex<LocalState>,
    /// Bumped on every local change: the wake-up for hash-based blocking on `/v1/agent/service/:id`.
    changes: watch::Sender<u64>,
    leaves: leaf::LeafCache,
    /// Serialises API changes with anti-entropy passes, so a pass never sees half a registration.
    sync: tokio::sync::Mutex<()>,
    /// Set by `leave`: anti-entropy must not register the node again.
    leaving: std::sync::atomic::AtomicBool,
    /// The node's metadata: the config's at start, replaced on reload.
    node_meta: std::sync::RwLock<BTreeMap<String, String>>,
    /// The user events this agent received and kept.
    events: events::EventBuffer,
}

impl Agent {
    pub fn new(config: AgentConfig, server: Server) -> Agent {
        Agent {
            inner: Arc::new(Inner {
                node_meta: std::sync::RwLock::new(config.node_meta.clone()),
                leaves: leaf::LeafCache::new(config.leaf_idle_expiry),
                config,
                server,
                local: Mutex::new(LocalState::default()),
                changes: watch::channel(0).0,
                sync: tokio::sync::Mutex::new(()),
                leaving: std::sync::atomic::AtomicBool::new(false),
                events: events::EventBuffer::default(),
            }),
        }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    pub fn server(&self) -> &Server {
        &self.inner.server
    }

    /// The node's metadata as it stands (the config's, or what the last reload set).
    pub fn node_meta(&self) -> BTreeMap<String, String> {
        self.inner.node_meta()
    }

    /// Replaces the node's metadata (config reload) and registers the node again with it.
    pub async fn set_node_meta(&self, meta: BTreeMap<String, String>) -> Result<(), AgentError> {
        if self.inner.node_meta() == meta {
            return Ok(());
        }
        let _sync = self.inner.sync.lock().await;
        if let Ok(mut slot) = self.inner.node_meta.write() {
            *slot = meta;
        }
        self.inner
            .server
            .write(sync::node_registration(&self.inner))
            .await?;
        Ok(())
    }

    /// Registers this node (with its passing `serfHealth` check, and the `consul` service on servers) and starts
    /// the critical-service reaper. Call inside a Tokio runtime.
    pub async fn start(&self) -> Result<(), AgentError> {
        let registration = sync::node_registration(&self.inner);
        let weak = Arc::downgrade(&self.inner);
        if self.inner.server.raft_node().is_some() || !self.inner.server.is_server() {
            // In a cluster the servers may still be electing: anti-entropy registers this node (and repairs any
            // drift later) once a leader answers.
            tokio::spawn(sync::anti_entropy(weak.clone()));
        } else {
            self.inner.server.write(registration).await?;
            if self.inner.server.acl_enabled() {
                // Config-file services blocked by ACLs wait in local state for their token: anti-entropy retries.
                tokio::spawn(sync::anti_entropy(weak.clone()));
            }
            if self.inner.config.server {
                // Dev mode: the CA exists before the API answers (a cluster's leader initialises it).
                self.inner
                    .server
                    .ensure_ca()
                    .await
                    .map_err(|e| AgentError::Internal(format!("CA initialisation failed: {e}")))?;
            }
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(runner::reap_critical_services(weak));
        }
        Ok(())
    }

    /// Leaves the catalog: the node and everything on it are deregistered.
    pub async fn leave(&self) -> Result<(), AgentError> {
        let _sync = self.inner.sync.lock().await;
        self.inner
            .leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.local().checks.clear();
        self.inner.local().services.clear();
        // Bounded: with the servers gone the write would wait for a leader, and the gossip leave below must still
        // go out (the leader deregisters a node that left anyway).
        let deregistered = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.inner.server.write(Command::Deregister {
                node: self.inner.config.node_name.clone(),
                service_id: None,
                check_id: None,
            }),
        )
        .await;
        self.inner.notify();
        if let Some(g) = self.inner.server.gossip() {
            let _ = g.leave().await;
        }
        if let Ok(result) = deregistered {
            result?;
        }
        Ok(())
    }

    /// The user events this agent kept (`/v1/event/list`).
    pub fn events(&self) -> &events::EventBuffer {
        &self.inner.events
    }

    /// A user event gossip delivered: kept when its filters select this node.
    pub fn receive_event(&self, event: weft_types::event::UserEvent) {
        let services: Vec<(String, Vec<String>)> = self
            .services()
            .into_iter()
            .map(|s| (s.service, s.tags))
            .collect();
        if events::applies_to(&event, &self.inner.config.node_name, &services) {
            self.inner.events.push(event);
        }
    }

    /// Without a gossip pool (dev mode) an event reaches this agent alone; it still gets a Lamport time.
    pub fn fire_locally(
        &self,
        mut event: weft_types::event::UserEvent,
    ) -> weft_types::event::UserEvent {
        event.ltime = self
            .inner
            .events
            .list(None)
            .last()
            .map_or(1, |e| e.ltime + 1);
        self.receive_event(event.clone());
        event
    }

    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// `PUT /v1/agent/service/register`: upserts a service and its checks, locally and in the catalog.
    pub async fn register_service(
        &self,
        def: &ServiceDefinition,
        replace_existing_checks: bool,
        source: Source,
    ) -> Result<(), AgentError> {
        let has_sidecar = def
            .connect
            .as_ref()
            .is_some_and(|c| c.sidecar_service.is_some());
        let _sync = self.inner.sync.lock().await;
        let result = self
            .register_unsynced(def, has_sidecar, replace_existing_checks, source)
            .await;
        if source == Source::Api {
            self.persist();
        }
        result
    }

    async fn register_unsynced(
        &self,
        def: &ServiceDefinition,
        has_sidecar: bool,
        replace_existing_checks: bool,
        source: Source,
    ) -> Result<(), AgentError> {
        if !has_sidecar {
            return self
                .register_one(def, replace_existing_checks, source, None)
                .await;
        }
        let parent_id = if def.id.is_empty() {
            def.name.clone()
        } else {
            def.id.clone()
        };
        let sidecar_id = format!("{parent_id}-sidecar-proxy");
        let port = self.sidecar_port(&sidecar_id)?;
        let mut sidecar = definition::expand_sidecar(def, port)?;
        // A sidecar is registered with its parent's token, as in Consul.
        if sidecar.token.is_empty() {
            sidecar.token.clone_from(&def.token);
        }
        // Validate the sidecar completely before anything is registered, so a bad block changes nothing.
        let side_service = definition::build_service(&sidecar)?;
        for cd in definition::service_checks(&sidecar, &side_service) {
            let (_, kind) =
                definition::build_check(&cd, &self.inner.config.node_name, Some(&side_service))?;
            self.inner.config.script_checks.allow(&kind, source)?;
        }
        let mut parent = def.clone();
        if let Some(c) = parent.connect.as_mut() {
            c.sidecar_service = None;
        }
        self.register_one(&parent, replace_existing_checks, source, None)
            .await?;
        if let Some(p) = self.inner.local().services.get_mut(&parent_id) {
            p.definition = Some(def.clone());
        }
        self.register_one(&sidecar, replace_existing_checks, source, Some(parent_id))
            .await
    }

    /// The port for a sidecar: the one it already has, else the lowest free one in 21000-21255.
    fn sidecar_port(&self, sidecar_id: &str) -> Result<u16, AgentError> {
        let local = self.inner.local();
        if let Some(existing) = local.services.get(sidecar_id) {
            if existing.service.port != 0 {
                return Ok(existing.service.port);
            }
        }
        let used: std::collections::BTreeSet<u16> =
            local.services.values().map(|s| s.service.port).collect();
        (SIDECAR_MIN_PORT..=SIDECAR_MAX_PORT).find(|p| !used.contains(p)).ok_or_else(|| {
            AgentError::BadRequest(format!(
                "no port provided for sidecar_service and none left in the configured range [{SIDECAR_MIN_PORT}, {SIDECAR_MAX_PORT}]"
            ))
        })
    }

    /// Records the service and its checks locally first (the agent is their source of truth), then in the catalog.
    /// A catalog refusal undoes the local registration.
    async fn register_one(
        &self,
        def: &ServiceDefinition,
        replace_existing_checks: bool,
        source: Source,
        sidecar_of: Option<String>,
    ) -> Result<(), AgentError> {
        let service = definition::build_service(def)?;
        let check_defs = definition::service_checks(def, &service);
        let mut built = Vec::with_capacity(check_defs.len());
        for cd in &check_defs {
            let (check, kind) =
                definition::build_check(cd, &self.inner.config.node_name, Some(&service))?;
            self.inner.config.script_checks.allow(&kind, source)?;
            built.push((check, kind, cd.clone()));
        }
        let (stale, checks) = {
            let mut local = self.inner.local();
            let mut stale = Vec::new();
            if replace_existing_checks {
                let keep: Vec<&str> = built.iter().map(|(c, _, _)| c.check_id.as_str()).collect();
                stale = local
                    .service_check_ids(&service.id)
                    .into_iter()
                    .filter(|id| {
                        !keep.contains(&id.as_str()) && !id.starts_with("_service_maintenance:")
                    })
                    .collect();
                for id in &stale {
                    local.checks.remove(id);
                }
            }
            let mut checks = Vec::new();
            for (mut check, kind, cd) in built {
                // Re-registering a check keeps its current status, so a re-register does not flap health.
                if let Some(existing) = local.checks.get(&check.check_id) {
                    if existing.kind == kind && cd.status.is_none() {
                        check.status = existing.check.status;
                        check.output = existing.check.output.clone();
                    }
                }
                checks.push(check.clone());
                self.inner
                    .install_check(&mut local, check, kind, cd, source);
            }
            let definition = sidecar_of.is_none().then(|| def.clone());
            local.services.insert(
                service.id.clone(),
                LocalService {
                    service: service.clone(),
                    source,
                    sidecar_of,
                    definition,
                    token: (source == Source::Config).then(|| def.token.clone()),
                },
            );
            (stale, checks)
        };
        if source == Source::Config && !self.inner.may_register(&service.service, &def.token).await
        {
            // Kept locally; anti-entropy writes it once the token allows (or ACLs let it).
            tracing::warn!(service = %service.service, "service registration blocked by ACLs: its token lacks service:write; kept locally and retried by anti-entropy");
            self.inner.notify();
            return Ok(());
        }
        let check_ids: Vec<String> = checks.iter().map(|c| c.check_id.clone()).collect();
        let result = self
            .inner
            .tolerate_cluster_outage(self.write_registration(&service, checks, stale).await);
        if result.is_err() {
            let mut local = self.inner.local();
            local.services.remove(&service.id);
            for id in check_ids {
                local.checks.remove(&id);
            }
        }
        self.inner.notify();
        result
    }

    async fn write_registration(
        &self,
        service: &NodeService,
        checks: Vec<HealthCheck>,
        stale_checks: Vec<String>,
    ) -> Result<(), weft_state::StoreError> {
        for id in stale_checks {
            self.inner
                .server
                .write(Command::Deregister {
                    node: self.inner.config.node_name.clone(),
                    service_id: None,
                    check_id: Some(id),
                })
                .await?;
        }
        self.inner
            .register_on_own_node(Registration {
                node: self.own_node_stub(),
                skip_node_update: true,
                service: Some(service.clone()),
                checks,
            })
            .await
    }

    /// `PUT /v1/agent/service/deregister/:id`: removes the service and its checks.
    pub async fn deregister_service(&self, id: &str) -> Result<(), AgentError> {
        let _sync = self.inner.sync.lock().await;
        let result = async {
            let sidecars = self.deregister_one(id).await?;
            for sidecar in sidecars {
                match self.deregister_one(&sidecar).await {
                    Ok(_) | Err(AgentError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        .await;
        self.persist();
        result
    }

    /// Removes one service and its checks; answers the IDs of its sidecars, which go with it.
    async fn deregister_one(&self, id: &str) -> Result<Vec<String>, AgentError> {
        let sidecars: Vec<String> = {
            let mut local = self.inner.local();
            if local.services.remove(id).is_none() {
                return Err(AgentError::NotFound(format!(
                    "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
                )));
            }
            for check_id in local.service_check_ids(id) {
                local.checks.remove(&check_id);
            }
            local
                .services
                .values()
                .filter(|s| s.sidecar_of.as_deref() == Some(id))
                .map(|s| s.service.id.clone())
                .collect()
        };
        self.inner.notify();
        self.inner.deregister_in_catalog(Some(id), None).await?;
        Ok(sidecars)
    }

    /// `PUT /v1/agent/check/register`.
    pub async fn register_check(
        &self,
        def: &CheckDefinition,
        source: Source,
    ) -> Result<(), AgentError> {
        let _sync = self.inner.sync.lock().await;
        let result = self.register_check_unsynced(def, source).await;
        if source == Source::Api {
            self.persist();
        }
        result
    }

    async fn register_check_unsynced(
        &self,
        def: &CheckDefinition,
        source: Source,
    ) -> Result<(), AgentError> {
        if def.name.is_empty() {
            return Err(AgentError::BadRequest("Missing check name".into()));
        }
        if def
            .status
            .as_deref()
            .is_some_and(|s| !s.is_empty() && s.parse::<CheckStatus>().is_err())
        {
            return Err(AgentError::BadRequest("Bad check status".into()));
        }
        let owner = if def.service_id.is_empty() {
            None
        } else {
            match self.inner.local().services.get(&def.service_id) {
                Some(s) => Some(s.service.clone()),
                None => {
                    return Err(AgentError::NotFound(format!(
                        "ServiceID {:?} does not exist",
                        def.service_id
                    )))
                }
            }
        };
        let (check, kind) =
            definition::build_check(def, &self.inner.config.node_name, owner.as_ref())?;
        self.inner.config.script_checks.allow(&kind, source)?;
        let written = self
            .inner
            .register_on_own_node(Registration {
                node: self.own_node_stub(),
                skip_node_update: true,
                service: None,
                checks: vec![check.clone()],
            })
            .await;
        self.inner.tolerate_cluster_outage(written)?;
        {
            let mut local = self.inner.local();
            self.inner
                .install_check(&mut local, check, kind, def.clone(), source);
        }
        self.inner.notify();
        Ok(())
    }

    /// `PUT /v1/agent/check/deregister/:id`.
    pub async fn deregister_check(&self, id: &str) -> Result<(), AgentError> {
        let _sync = self.inner.sync.lock().await;
        let result = self.deregister_check_unsynced(id).await;
        self.persist();
        result
    }

    async fn deregister_check_unsynced(&self, id: &str) -> Result<(), AgentError> {
        if self.inner.local().checks.remove(id).is_none() {
            return Err(AgentError::NotFound(format!(
                "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
            )));
        }
        self.inner.notify();
        self.inner.deregister_in_catalog(None, Some(id)).await
    }

    /// `PUT /v1/agent/check/pass|warn|fail|update/:id`: sets a TTL check's status and restarts its timer.
    pub async fn update_ttl_check(
        &self,
        id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), AgentError> {
        {
            let mut local = self.inner.local();
            let Some(check) = local.checks.get_mut(id) else {
                return Err(AgentError::NotFound(format!(
                    "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
                )));
            };
            let CheckKind::Ttl(ttl) = check.kind else {
                return Err(AgentError::Internal(format!(
                    "CheckID {id:?} does not have associated TTL"
                )));
            };
            check.ttl_deadline = Some(Instant::now() + ttl);
        }
        let max = self
            .inner
            .local()
            .checks
            .get(id)
            .map(|c| c.definition.output_max_size)
            .unwrap_or(0);
        self.inner
            .set_check_status(id, status, &truncate_output(output, max))
            .await
    }

    /// `PUT /v1/agent/service/maintenance/:id?enable=...`.
    pub async fn service_maintenance(
        &self,
        id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), AgentError> {
        if !self.inner.local().services.contains_key(id) {
            return Err(AgentError::NotFound(format!(
                "No service registered with ID {id:?}"
            )));
        }
        let check_id = service_maintenance_id(id);
        if !enable {
            return match self.deregister_check(&check_id).await {
                Err(AgentError::NotFound(_)) => Ok(()),
                other => other,
            };
        }
        let notes = if reason.is_empty() {
            "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
        } else {
            reason
        };
        self.register_check(
            &CheckDefinition {
                check_id,
                name: "Service Maintenance Mode".into(),
                notes: notes.into(),
                service_id: id.into(),
                status: Some("critical".into()),
                ..CheckDefinition::default()
            },
            Source::Api,
        )
        .await
    }

    /// `PUT /v1/agent/maintenance?enable=...`.
    pub async fn node_maintenance(&self, enable: bool, reason: &str) -> Result<(), AgentError> {
        if !enable {
            return match self.deregister_check(NODE_MAINTENANCE).await {
                Err(AgentError::NotFound(_)) => Ok(()),
                other => other,
            };
        }
        let notes = if reason.is_empty() {
            "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
        } else {
            reason
        };
        self.register_check(
            &CheckDefinition {
                check_id: NODE_MAINTENANCE.into(),
                name: "Node Maintenance Mode".into(),
                notes: notes.into(),
                status: Some("critical".into()),
                ..CheckDefinition::default()
            },
            Source::Api,
        )
        .await
    }

    /// Replaces the registrations that came from config files with `services` and `checks` (start and reload).
    pub async fn apply_config(
        &self,
        services: &[ServiceDefinition],
        checks: &[CheckDefinition],
    ) -> Result<(), AgentError> {
        let wanted_services: Vec<String> = services
            .iter()
            .map(|s| {
                if s.id.is_empty() {
                    s.name.clone()
                } else {
                    s.id.clone()
                }
            })
            .collect();
        let wanted_checks: Vec<String> = checks
            .iter()
            .map(|c| {
                if c.check_id.is_empty() {
                    c.name.clone()
                } else {
                    c.check_id.clone()
                }
            })
            .collect();
        let (stale_services, stale_checks) = {
            let local = self.inner.local();
            let s: Vec<String> = local
                .services
                .values()
                .filter(|s| s.source == Source::Config && !wanted_services.contains(&s.service.id))
                .map(|s| s.service.id.clone())
                .collect();
            let c: Vec<String> = local
                .checks
                .values()
                .filter(|c| c.source == Source::Config && c.check.service_id.is_empty())
                .filter(|c| !wanted_checks.contains(&c.check.check_id))
                .map(|c| c.check.check_id.clone())
                .collect();
            (s, c)
        };
        for id in stale_services {
            self.deregister_service(&id).await?;
        }
        for id in stale_checks {
            self.deregister_check(&id).await?;
        }
        for s in services {
            self.register_service(s, true, Source::Config).await?;
        }
        for c in checks {
            self.register_check(c, Source::Config).await?;
        }
        Ok(())
    }

    // ---- local reads ----

    pub fn services(&self) -> Vec<NodeService> {
        self.inner
            .local()
            .services
            .values()
            .map(|s| s.service.clone())
            .collect()
    }

    pub fn service(&self, id: &str) -> Option<NodeService> {
        self.inner
            .local()
            .services
            .get(id)
            .map(|s| s.service.clone())
    }

    /// The checks this agent owns (not the catalog's `serfHealth`, which Consul also leaves out here).
    pub fn checks(&self) -> Vec<HealthCheck> {
        self.inner
            .local()
            .checks
            .values()
            .map(|c| c.check.clone())
            .collect()
    }

    /// A service with the checks that decide its health: its own checks plus node-level checks.
    pub fn service_health(&self, id: &str) -> Option<(NodeService, Vec<HealthCheck>)> {
        let service = self.service(id)?;
        let checks = self
            .checks()
            .into_iter()
            .filter(|c| c.service_id == service.id || c.service_id.is_empty())
            .collect();
        Some((service, checks))
    }

    fn own_node_stub(&self) -> Node {
        Node {
            node: self.inner.config.node_name.clone(),
            ..Node::default()
        }
    }
}

impl Inner {
    pub(crate) fn local(&self) -> MutexGuard<'_, LocalState> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// True when anti-entropy keeps the catalog in step (cluster servers and client agents).
    pub(crate) fn node_meta(&self) -> BTreeMap<String, String> {
        self.node_meta
            .read()
            .map(|m| m.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn in_cluster(&self) -> bool {
        self.server.raft_node().is_some() || !self.server.is_server()
    }

    /// Writes a registration on this node. In a cluster the node itself is registered by anti-entropy shortly after
    /// start; a registration that arrives first registers the node, then itself.
    async fn register_on_own_node(&self, reg: Registration) -> Result<(), weft_state::StoreError> {
        let cmd = Command::Register(Box::new(reg));
        match self.server.write(cmd.clone()).await {
            Err(weft_state::StoreError::UnknownNode(_)) if self.in_cluster() => {
                self.server.write(sync::node_registration(self)).await?;
                self.server.write(cmd).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Removes one of this node's services or checks from the catalog.
    async fn deregister_in_catalog(
        &self,
        service_id: Option<&str>,
        check_id: Option<&str>,
    ) -> Result<(), AgentError> {
        let written = self
            .server
            .write(Command::Deregister {
                node: self.config.node_name.clone(),
                service_id: service_id.map(str::to_string),
                check_id: check_id.map(str::to_string),
            })
            .await
            .map(|_| ());
        self.tolerate_cluster_outage(written)
    }

    /// In a cluster, a catalog write that failed because no leader answered is not the caller's failure: the local
    /// state (the source of truth) stands and anti-entropy writes it once a leader is back, as Consul's agent does.
    /// Whether a config-file service may be written to the catalog with `token` (empty: anonymous): always with
    /// ACLs off; with them on, while the token holds `service:write` on `name`. An unknown token, or no answer
    /// from the servers beyond what `down_policy` allows, means not yet.
    pub(crate) async fn may_register(&self, name: &str, token: &str) -> bool {
        if !self.server.acl_enabled() {
            return true;
        }
        let secret = if token.is_empty() {
            weft_types::acl::ANONYMOUS_SECRET
        } else {
            token
        };
        match self.server.resolve_token(secret).await {
            Ok(identity) => {
                identity
                    .authorizer
                    .named(weft_acl::Named::Service, name, weft_acl::Need::Write)
            }
            Err(_) => false,
        }
    }

    fn tolerate_cluster_outage(
        &self,
        written: Result<(), weft_state::StoreError>,
    ) -> Result<(), AgentError> {
        match written {
            Err(weft_state::StoreError::NoLeader | weft_state::StoreError::Unavailable(_))
                if self.in_cluster() =>
            {
                tracing::warn!(
                    "no cluster leader: kept the change locally; anti-entropy writes it to the catalog later"
                );
                Ok(())
            }
            other => other.map_err(AgentError::from),
        }
    }

    fn install_check(
        self: &Arc<Self>,
        local: &mut LocalState,
        check: HealthCheck,
        kind: CheckKind,
        definition: CheckDefinition,
        source: Source,
    ) {
        let ttl_deadline = match kind {
            CheckKind::Ttl(ttl) => Some(Instant::now() + ttl),
            _ => None,
        };
        let critical_since = (check.status == CheckStatus::Critical).then(Instant::now);
        let id = check.check_id.clone();
        let mut definition = definition;
        definition.output_max_size = output_max_size(
            self.config.check_output_max_size,
            definition.output_max_size,
        );
        let runner = runner::spawn(
            Arc::downgrade(self),
            id.clone(),
            kind.clone(),
            definition.clone(),
        );
        local.checks.insert(
            id,
            LocalCheck {
                check,
                definition,
                kind,
                source,
                ttl_deadline,
                critical_since,
                runner,
            },
        );
    }

    /// Records a check's new status and output, and writes it to the catalog when either changed.
    pub(crate) async fn set_check_status(
        &self,
        id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), AgentError> {
        {
            let mut local = self.local();
            let Some(check) = local.checks.get_mut(id) else {
                return Ok(());
            };
            if check.check.status == status && check.check.output == output {
                return Ok(());
            }
            if status == CheckStatus::Critical {
                check.critical_since.get_or_insert_with(Instant::now);
            } else {
                check.critical_since = None;
            }
            check.check.status = status;
            check.check.output = output.to_string();
        }
        self.notify();
        let result = self
            .server
            .write(Command::UpdateCheck {
                node: self.config.node_name.clone(),
                check_id: id.to_string(),
                status,
                output: output.to_string(),
            })
            .await;
        result.map(|_| ()).map_err(AgentError::from)
    }
}

/// The output a check keeps: the agent's `check_output_max_size` (4096 unless set), lowered by the check's own
/// `OutputMaxSize` when that is smaller, as Consul decides it.
pub fn output_max_size(agent: usize, check: usize) -> usize {
    let agent = if agent == 0 { 4096 } else { agent };
    if check > 0 {
        check.min(agent)
    } else {
        agent
    }
}

/// Cuts check output to `max` bytes (Consul's `OutputMaxSize`, default 4096) on a character boundary.
pub fn truncate_output(output: &str, max: usize) -> String {
    let max = if max == 0 { 4096 } else { max };
    if output.len() <= max {
        return output.to_string();
    }
    let mut end = max;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...\n(Output truncated)", &output[..end])
}

/// How often the critical-service reaper looks (Consul: every 30 s; we look more often so short test timeouts work).
pub(crate) const REAP_INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests;
