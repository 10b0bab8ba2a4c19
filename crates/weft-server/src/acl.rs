//! Token resolution: from a secret to who the caller is and what it may do.
//!
//! Servers resolve from their own store (the ACL tables are replicated to every server) and keep the compiled
//! result until the ACL tables change. Client agents hold no ACL tables (their replica is built without them, so no
//! secret reaches a client host): they ask a server over `POST /v1/internal/acl/resolve` and keep the answer for
//! `acl.token_ttl`. When no server answers, `acl.down_policy` decides, as in Consul: `extend-cache` (the default)
//! and `async-cache` keep using what was cached, however old, and deny tokens never seen; `deny` denies; `allow`
//! allows.

use crate::Server;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use weft_acl::{Authorizer, DefaultPolicy, Rules};
use weft_state::{Store, Table};
use weft_types::acl::{AclGrants, ANONYMOUS_ACCESSOR};

/// What a client agent does when no server can resolve a token (`acl.down_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownPolicy {
    Allow,
    Deny,
    ExtendCache,
    AsyncCache,
}

impl DownPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DownPolicy::Allow => "allow",
            DownPolicy::Deny => "deny",
            DownPolicy::ExtendCache => "extend-cache",
            DownPolicy::AsyncCache => "async-cache",
        }
    }

    pub fn parse(text: &str) -> Option<DownPolicy> {
        Some(match text {
            "allow" => DownPolicy::Allow,
            "deny" => DownPolicy::Deny,
            "extend-cache" => DownPolicy::ExtendCache,
            "async-cache" => DownPolicy::AsyncCache,
            _ => return None,
        })
    }
}

/// The agent's `acl { }` settings that resolution needs.
#[derive(Debug, Clone)]
pub struct AclConfig {
    pub enabled: bool,
    pub default_policy: DefaultPolicy,
    pub down_policy: DownPolicy,
    /// How long a client agent keeps a resolved token (`acl.token_ttl`, 30 s).
    pub token_ttl: Duration,
    /// `acl.tokens.initial_management`: created by the first leader as a management token.
    pub initial_management: Option<String>,
}

impl Default for AclConfig {
    fn default() -> AclConfig {
        AclConfig {
            enabled: false,
            default_policy: DefaultPolicy::Allow,
            down_policy: DownPolicy::ExtendCache,
            token_ttl: Duration::from_secs(30),
            initial_management: None,
        }
    }
}

/// Who is calling, and what the caller may do.
#[derive(Debug)]
pub struct Identity {
    /// The token's AccessorID (Consul's 403 texts name it); empty when the token is not known.
    pub accessor_id: String,
    pub authorizer: Authorizer,
    /// Unix milliseconds.
    pub expires_ms: Option<u64>,
}

impl Identity {
    /// ACLs off: everything is allowed.
    pub fn allow_all() -> Arc<Identity> {
        Arc::new(Identity {
            accessor_id: String::new(),
            authorizer: Authorizer::allow_all(),
            expires_ms: None,
        })
    }

    /// Nothing allowed: where no identity could be found, decisions fail closed.
    pub fn deny_all() -> Arc<Identity> {
        Arc::new(Identity {
            accessor_id: String::new(),
            authorizer: Authorizer::new(weft_acl::Rules::default(), weft_acl::DefaultPolicy::Deny),
            expires_ms: None,
        })
    }

    fn compile(resolved: &ResolvedToken, default: DefaultPolicy) -> Identity {
        let mut rules = Rules::default();
        for text in &resolved.rules {
            match Rules::parse(text) {
                Ok(r) => rules.merge(&r),
                // Rules are checked when written; one that no longer reads grants nothing (fail closed).
                Err(e) => {
                    tracing::warn!(accessor = %resolved.accessor_id, error = %e, "a policy's rules do not parse; ignored")
                }
            }
        }
        Identity {
            accessor_id: resolved.accessor_id.clone(),
            authorizer: Authorizer::new(rules, default),
            expires_ms: resolved.expiration_time,
        }
    }

    fn fixed(accessor_id: &str, authorizer: Authorizer) -> Arc<Identity> {
        Arc::new(Identity {
            accessor_id: accessor_id.to_string(),
            authorizer,
            expires_ms: None,
        })
    }
}

/// A token as a server hands it to an agent: the rule texts of everything it carries, for the agent to compile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedToken {
    pub accessor_id: String,
    pub expiration_time: Option<u64>,
    pub rules: Vec<String>,
}

pub const RESOLVE_PATH: &str = "/v1/internal/acl/resolve";
/// How long one server may take to resolve a token for an agent before the next is asked.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// `POST /v1/internal/acl/resolve`'s body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResolveRequest {
    pub secret: String,
}

/// Why a token gives no identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Unknown, malformed or expired (Consul's words for all three).
    #[error("ACL not found")]
    NotFound,
}

/// The rule texts `secret` carries in `store`: its policies, its roles' policies and identities, its own identities
/// and templated policies, those limited to other datacenters left out. `None` for an unknown or expired secret.
pub fn resolve_in_store(
    store: &Store,
    secret: &str,
    now_ms: u64,
    dc: &str,
) -> Option<ResolvedToken> {
    let token = store.token_by_secret(secret)?;
    if token.expired(now_ms) {
        return None;
    }
    let mut rules = Vec::new();
    grant_rules(store, &token.grants, dc, &mut rules);
    for link in &token.roles {
        if let Some(role) = store.acl_role(&link.id) {
            grant_rules(store, &role.grants, dc, &mut rules);
        }
    }
    Some(ResolvedToken {
        accessor_id: token.accessor_id.clone(),
        expiration_time: token.expiration_time,
        rules,
    })
}

fn in_dc(datacenters: &[String], dc: &str) -> bool {
    datacenters.is_empty() || datacenters.iter().any(|d| d == dc)
}

fn grant_rules(store: &Store, grants: &AclGrants, dc: &str, out: &mut Vec<String>) {
    for link in &grants.policies {
        // A link to a deleted policy grants nothing.
        if let Some(policy) = store.acl_policy(&link.id) {
            if in_dc(policy.datacenters.as_deref().unwrap_or(&[]), dc) {
                out.push(policy.rules.clone());
            }
        }
    }
    for si in &grants.service_identities {
        if in_dc(&si.datacenters, dc) {
            out.extend(weft_acl::render_template("builtin/service", Some(&si.service_name)).ok());
        }
    }
    for ni in &grants.node_identities {
        if ni.datacenter == dc {
            out.extend(weft_acl::render_template("builtin/node", Some(&ni.node_name)).ok());
        }
    }
    for tp in &grants.templated_policies {
        if in_dc(&tp.datacenters, dc) {
            let name = tp.template_variables.as_ref().map(|v| v.name.as_str());
            out.extend(weft_acl::render_template(&tp.template_name, name).ok());
        }
    }
}

/// Compiled identities by secret. Bounded: past [`CACHE_LIMIT`] entries the oldest half is dropped.
#[derive(Default)]
pub(crate) struct TokenCache {
    /// Read on every request, written on a token's first use: a reader-writer lock.
    entries: RwLock<HashMap<String, Cached>>,
}

const CACHE_LIMIT: usize = 16_384;

struct Cached {
    at: Instant,
    /// The ACL tables' index the entry was compiled at (servers), 0 on client agents.
    acl_index: u64,
    identity: Arc<Identity>,
}

impl TokenCache {
    fn get(&self, secret: &str) -> Option<(Instant, u64, Arc<Identity>)> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(secret)
            .map(|c| (c.at, c.acl_index, c.identity.clone()))
    }

    fn put(&self, secret: &str, acl_index: u64, identity: Arc<Identity>) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_LIMIT && !entries.contains_key(secret) {
            let mut ages: Vec<Instant> = entries.values().map(|c| c.at).collect();
            ages.sort();
            let cut = ages[ages.len() / 2];
            entries.retain(|_, c| c.at > cut);
        }
        entries.insert(
            secret.to_string(),
            Cached {
                at: Instant::now(),
                acl_index,
                identity,
            },
        );
    }

    fn forget(&self, secret: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.remove(secret);
    }
}

impl Server {
    pub fn acl_enabled(&self) -> bool {
        self.config().acl.enabled
    }

    /// Resolves `secret` (already chosen among the request's token, the agent's default token and `anonymous`).
    pub async fn resolve_token(&self, secret: &str) -> Result<Arc<Identity>, ResolveError> {
        let acl = &self.config().acl;
        if !acl.enabled {
            return Ok(Identity::allow_all());
        }
        let identity = if self.is_server() {
            self.resolve_here(secret)?
        } else {
            self.resolve_remote(secret).await?
        };
        // The clock is read only for tokens that expire.
        if identity.expires_ms.is_some_and(|t| t <= crate::now_ms()) {
            return Err(ResolveError::NotFound);
        }
        Ok(identity)
    }

    fn resolve_here(&self, secret: &str) -> Result<Arc<Identity>, ResolveError> {
        let cache = self.token_cache();
        let (acl_index, resolved) = {
            let store = self.read();
            let acl_index = store.table_index(Table::Acl);
            if let Some((_, at_index, identity)) = cache.get(secret) {
                if at_index == acl_index {
                    return Ok(identity);
                }
            }
            let resolved =
                resolve_in_store(&store, secret, crate::now_ms(), &self.config().datacenter);
            (acl_index, resolved)
        };
        let resolved = match resolved {
            Some(r) => r,
            // Before the leader has created the anonymous token, `anonymous` still means "no rules".
            None if secret == weft_types::acl::ANONYMOUS_SECRET => ResolvedToken {
                accessor_id: ANONYMOUS_ACCESSOR.into(),
                expiration_time: None,
                rules: Vec::new(),
            },
            None => return Err(ResolveError::NotFound),
        };
        let identity = Arc::new(Identity::compile(
            &resolved,
            self.config().acl.default_policy,
        ));
        cache.put(secret, acl_index, identity.clone());
        Ok(identity)
    }

    async fn resolve_remote(&self, secret: &str) -> Result<Arc<Identity>, ResolveError> {
        let acl = &self.config().acl;
        let cache = self.token_cache();
        let cached = cache.get(secret);
        if let Some((at, _, identity)) = &cached {
            if at.elapsed() < acl.token_ttl {
                return Ok(identity.clone());
            }
        }
        match self.ask_servers(secret).await {
            Ok(Some(resolved)) => {
                let identity = Arc::new(Identity::compile(&resolved, acl.default_policy));
                cache.put(secret, 0, identity.clone());
                Ok(identity)
            }
            Ok(None) => {
                cache.forget(secret);
                Err(ResolveError::NotFound)
            }
            Err(e) => {
                tracing::warn!(error = %e, down_policy = ?acl.down_policy, "no server could resolve a token");
                Ok(match (acl.down_policy, cached) {
                    (DownPolicy::Allow, _) => Identity::fixed("", Authorizer::allow_all()),
                    (DownPolicy::ExtendCache | DownPolicy::AsyncCache, Some((_, _, identity))) => {
                        identity
                    }
                    _ => {
                        Identity::fixed("", Authorizer::new(Rules::default(), DefaultPolicy::Deny))
                    }
                })
            }
        }
    }

    /// Asks each known server in turn (any server holds the tables); the last error when none answers.
    async fn ask_servers(&self, secret: &str) -> Result<Option<ResolvedToken>, weft_rpc::RpcError> {
        let req = ResolveRequest {
            secret: secret.to_string(),
        };
        let servers = match self.mode() {
            crate::Mode::Client(replica) => replica.servers(),
            _ => Vec::new(),
        };
        let mut last = weft_rpc::RpcError::Unreachable {
            addr: String::new(),
            reason: "no servers known".into(),
        };
        for addr in servers {
            match weft_rpc::post_json(self.http(), &addr, RESOLVE_PATH, &req, RESOLVE_TIMEOUT).await
            {
                Ok(answer) => return Ok(answer),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Answers `POST /v1/internal/acl/resolve` for a client agent (servers only hold the tables).
    pub fn handle_resolve(&self, req: &ResolveRequest) -> Option<ResolvedToken> {
        let store = self.read();
        resolve_in_store(
            &store,
            &req.secret,
            crate::now_ms(),
            &self.config().datacenter,
        )
    }
}
