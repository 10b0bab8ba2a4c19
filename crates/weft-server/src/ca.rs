//! The CA manager, run by the leader: initialises the cluster's CA on first start, signs leaf CSRs, applies
//! configuration changes (rotating the root with a cross-signature when the key changes) and prunes old roots.
//! Key generation and signing happen here; what gets stored is the result, as a command.

use crate::{now_ms, Server};
use std::time::Duration;
use weft_ca::root::{cross_sign, generate_root, prunable};
use weft_ca::{CaConfig, CaConfigWire, CaError, IssuedCert};
use weft_state::{ApplyResult, CaSetup, Command, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CaManagerError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cluster has no CA bootstrapped yet")]
    NotInitialised,
    /// The leader could not be asked (client agents and followers send CSRs to it).
    #[error(transparent)]
    Leader(#[from] crate::rpc::LeaderCallError),
    /// The leader refused for a reason of its own (its words).
    #[error("{0}")]
    Remote(String),
    /// The CA's keys are sealed and this server cannot open them.
    #[error(transparent)]
    Seal(#[from] crate::SealKeyError),
    /// The token does not allow this leaf (Consul's words).
    #[error("{0}")]
    Denied(String),
}

/// Why the leader did not sign a CSR, as it travels back over server RPC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum SignRefusal {
    /// The CSR itself is wrong (the caller's fault: 400).
    #[error("{0}")]
    BadCsr(String),
    /// The token may not have this service's leaf.
    #[error("{0}")]
    Denied(String),
    /// Anything else (no CA yet, no leader, storage).
    #[error("{0}")]
    Failed(String),
}

fn now_unix() -> u64 {
    now_ms() / 1000
}

impl Server {
    /// Creates the cluster ID and the first root, unless the store already has a CA.
    pub async fn ensure_ca(&self) -> Result<(), CaManagerError> {
        if self.read().ca().config.is_some() {
            return self.seal_plain_roots().await;
        }
        let config = self.config().ca_config.clone();
        config
            .validate(self.config().min_leaf_ttl)
            .map_err(|e| CaError::BadConfig(e.to_string()))?;
        let cluster_id = weft_types::ids::new_uuid();
        let serial = 1;
        let root = generate_root(&config, &cluster_id, serial, now_unix())?;
        let root = self.sealed_root(root, &self.seal_key_or_new()?)?;
        let trust_domain = weft_ca::spiffe::trust_domain(&cluster_id);
        let root_id = root.root.id.clone();
        match self
            .write(Command::CaSet(Box::new(CaSetup {
                cluster_id,
                config,
                roots: vec![root],
                serial,
            })))
            .await
        {
            Ok(_) => {
                tracing::info!(%trust_domain, root = %root_id, "initialised the CA");
                Ok(())
            }
            // Another initialisation got there first (the dev agent's start and the leader loop race): keep it.
            Err(StoreError::CaExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Signs a leaf CSR with the active root (checks in `weft_ca::leaf::sign`). The serial is recorded in the log.
    async fn sign_leaf_here(
        &self,
        csr: weft_ca::leaf::Csr,
        datacenter: &str,
    ) -> Result<IssuedCert, CaManagerError> {
        let (root, trust_domain, serial, ttl) = {
            let store = self.read();
            let ca = store.ca();
            let root = ca
                .active_root()
                .cloned()
                .ok_or(CaManagerError::NotInitialised)?;
            let ttl = ca
                .config
                .as_ref()
                .map(|c| c.leaf_cert_ttl)
                .unwrap_or(Duration::from_secs(72 * 3600));
            (root, ca.trust_domain(), ca.serial, ttl)
        };
        let root = self.unsealed_root(&root).await?;
        let serial = {
            let mut last = self
                .inner
                .last_serial
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *last = (*last).max(serial).saturating_add(1);
            *last
        };
        let ctx = weft_ca::leaf::SigningContext {
            root: &root,
            trust_domain: &trust_domain,
            datacenter,
            serial,
            now_unix: now_unix(),
            ttl,
        };
        let (mut issued, _) = csr.sign(&ctx)?;
        let (index, result) = self.write_indexed(Command::CaLeafIssued { serial }).await;
        result?;
        issued.create_index = index;
        issued.modify_index = index;
        Ok(issued)
    }

    /// Signs a leaf CSR where the CA's keys are: here on the leader (and in dev mode), else at the leader over RPC.
    /// With ACLs on, the leader signs only for a `token` holding `service:write` on the CSR's service, as
    /// Consul's `ConnectCA.Sign` checks: a host that can reach server RPC cannot have another service's leaf signed.
    pub async fn sign_leaf(
        &self,
        csr_pem: &str,
        datacenter: &str,
        token: Option<&str>,
    ) -> Result<IssuedCert, CaManagerError> {
        if self.is_leader() {
            let csr = weft_ca::leaf::Csr::parse(csr_pem)?;
            self.authorize_sign(&csr.id.service, token).await?;
            return self.sign_leaf_here(csr, datacenter).await;
        }
        let req = crate::SignRequest {
            csr: csr_pem.to_string(),
            datacenter: datacenter.to_string(),
            token: token.map(str::to_string),
        };
        let answer: Result<IssuedCert, SignRefusal> =
            self.call_leader("/v1/internal/ca/sign", &req).await?;
        answer.map_err(|refusal| match refusal {
            SignRefusal::BadCsr(m) => CaManagerError::Ca(CaError::BadCsr(m)),
            SignRefusal::Denied(m) => CaManagerError::Denied(m),
            SignRefusal::Failed(m) => CaManagerError::Remote(m),
        })
    }

    /// `service:write` on the CSR's `service` for `token` (`anonymous` when none), when ACLs are on.
    async fn authorize_sign(
        &self,
        service: &str,
        token: Option<&str>,
    ) -> Result<(), CaManagerError> {
        if !self.acl_enabled() {
            return Ok(());
        }
        let secret = token.unwrap_or(weft_types::acl::ANONYMOUS_SECRET);
        let identity = self
            .resolve_token(secret)
            .await
            .map_err(|e| CaManagerError::Denied(e.to_string()))?;
        if identity
            .authorizer
            .named(weft_acl::Named::Service, service, weft_acl::Need::Write)
        {
            Ok(())
        } else {
            Err(CaManagerError::Denied(format!(
                "Permission denied: token with AccessorID '{}' lacks permission 'service:write' on {service:?}",
                identity.accessor_id
            )))
        }
    }

    /// Serves `POST /v1/internal/ca/sign`: signs if this member leads, else passes the CSR to the leader.
    pub async fn handle_sign(&self, req: crate::SignRequest) -> Result<IssuedCert, SignRefusal> {
        self.sign_leaf(&req.csr, &req.datacenter, req.token.as_deref())
            .await
            .map_err(|e| match e {
                CaManagerError::Ca(CaError::BadCsr(m)) => SignRefusal::BadCsr(m),
                CaManagerError::Denied(m) => SignRefusal::Denied(m),
                other => SignRefusal::Failed(other.to_string()),
            })
    }

    /// The current configuration in its wire form.
    pub fn ca_configuration(&self) -> Result<CaConfigWire, CaManagerError> {
        let store = self.read();
        let ca = store.ca();
        let config = ca.config.as_ref().ok_or(CaManagerError::NotInitialised)?;
        Ok(config.to_wire(ca.config_create_index, ca.config_modify_index))
    }

    /// Applies a new configuration. A new key (supplied, or a different key type or size) rotates the root: the
    /// old root cross-signs the new one, stays listed (inactive) until its leaves have expired, and every agent
    /// re-issues its leaves.
    pub async fn set_ca_configuration(&self, wire: &CaConfigWire) -> Result<(), CaManagerError> {
        let (current, roots, cluster_id, mut serial) = {
            let store = self.read();
            let ca = store.ca();
            let current = ca.config.clone().ok_or(CaManagerError::NotInitialised)?;
            (current, ca.roots.clone(), ca.cluster_id.clone(), ca.serial)
        };
        let new = CaConfig::from_wire(wire, &current, self.config().min_leaf_ttl)
            .map_err(|e| CaError::BadConfig(e.to_string()))?;
        let active = roots
            .iter()
            .find(|r| r.root.active)
            .cloned()
            .ok_or(CaManagerError::NotInitialised)?;
        let active = self.unsealed_root(&active).await?;
        let supplied_changes_root =
            !new.root_cert.is_empty() && new.root_cert.trim() != active.root.root_cert.trim();
        let supplied_key_changes =
            !new.private_key.is_empty() && new.private_key.trim() != active.private_key_pem.trim();
        let rotate = supplied_changes_root
            || supplied_key_changes
            || new.private_key_type != current.private_key_type
            || new.private_key_bits != current.private_key_bits;
        let mut stored = new.clone();
        // Supplied key material lives in the root record, not in the configuration that GET shows.
        stored.private_key.clear();
        stored.root_cert.clear();
        let mut roots = roots;
        if rotate {
            let now = now_unix();
            serial += 1;
            let mut next = generate_root(&new, &cluster_id, serial, now)?;
            if next.root.id == active.root.id {
                return Err(CaError::BadConfig("the new root is the current root".into()).into());
            }
            serial += 1;
            let cross = cross_sign(&active, &next, serial, now)?;
            next.root.intermediate_certs = Some(vec![cross]);
            let next = self.sealed_root(next, &self.seal_key_or_new()?)?;
            for r in roots.iter_mut().filter(|r| r.root.active) {
                r.root.active = false;
                r.rotated_out_unix = now;
                r.root.rotated_out_at = weft_types::timefmt::rfc3339_unix(now);
            }
            tracing::info!(old = %active.root.id, new = %next.root.id, "rotating the CA root (cross-signed)");
            roots.push(next);
        }
        self.write(Command::CaSet(Box::new(CaSetup {
            cluster_id,
            config: stored,
            roots,
            serial,
        })))
        .await?;
        Ok(())
    }

    /// Drops rotated-out roots whose leaves have all expired. Returns how many were pruned.
    pub async fn prune_roots(&self, now_unix: u64) -> Result<usize, CaManagerError> {
        let setup = {
            let store = self.read();
            let ca = store.ca();
            let Some(config) = ca.config.clone() else {
                return Ok(0);
            };
            let keep: Vec<_> = ca
                .roots
                .iter()
                .filter(|r| !prunable(r, now_unix, config.leaf_cert_ttl))
                .cloned()
                .collect();
            if keep.len() == ca.roots.len() {
                return Ok(0);
            }
            CaSetup {
                cluster_id: ca.cluster_id.clone(),
                config,
                roots: keep,
                serial: ca.serial,
            }
        };
        let before = self.read().ca().roots.len();
        let after = setup.roots.len();
        match self.write(Command::CaSet(Box::new(setup))).await? {
            ApplyResult::Bool(_) => Ok(before - after),
            _ => Ok(0),
        }
    }
}

pub(crate) async fn prune_loop(server: Server) {
    let interval = server
        .config()
        .ca_prune_interval
        .max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        match server.prune_roots(now_unix()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "pruned rotated-out CA roots"),
            Err(e) => tracing::warn!(error = %e, "could not prune CA roots"),
        }
    }
}
