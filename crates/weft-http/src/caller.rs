//! Who is calling: the request's token, chosen in Consul's order (`?token=`, `X-Consul-Token`, `Authorization:
//! Bearer`, then the agent's default token, then `anonymous`), resolved to an [`Identity`], and the checks routes
//! and handlers make with it. A refusal reads as Consul's: `Permission denied: token with AccessorID '…' lacks
//! permission 'service:write' on "web"`.

use crate::policy::{Access, AclRule, Resource, Subject};
use crate::reply::ApiError;
use axum::http::{HeaderMap, Method, StatusCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use weft_acl::{Named, Need, Whole};
use weft_server::{Identity, ResolveError};
use weft_types::acl::ANONYMOUS_SECRET;

pub use crate::agent_token::AgentTokens;

/// The request's token, in Consul's order; `None` when it carries none.
pub fn token_of(query: &[(String, String)], headers: &HeaderMap) -> Option<String> {
    token_in(query, headers).map(str::to_string)
}

/// [`token_of`], borrowed from the request.
fn token_in<'a>(query: &'a [(String, String)], headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some((_, t)) = query.iter().find(|(k, v)| k == "token" && !v.is_empty()) {
        return Some(t);
    }
    // A name built once: looking a header up by `&str` parses the name again on every request.
    static TOKEN_HEADER: std::sync::LazyLock<axum::http::HeaderName> =
        std::sync::LazyLock::new(|| axum::http::HeaderName::from_static("x-consul-token"));
    if let Some(t) = headers
        .get(&*TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        return Some(t);
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = auth.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    rest.split_whitespace().next()
}

/// The secret a request is decided by: its own token, else the agent's default token, else `anonymous`. A request
/// another agent passed on carries the token its first agent gave it, or none: it is then anonymous, never this
/// server's default token (which would lend a server's rights to any caller of any agent, or datacenter).
fn secret_for<'a>(state: &crate::ApiState, given: Option<&'a str>) -> std::borrow::Cow<'a, str> {
    match given {
        Some(t) => std::borrow::Cow::Borrowed(t),
        None if state.forwarded => std::borrow::Cow::Borrowed(ANONYMOUS_SECRET),
        None => match state.acl.default_token() {
            Some(t) => std::borrow::Cow::Owned(t),
            None => std::borrow::Cow::Borrowed(ANONYMOUS_SECRET),
        },
    }
}

/// The secret to pass on where servers decide again (leaf signing); `None` with ACLs off.
pub fn secret_of(
    state: &crate::ApiState,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Option<String> {
    state
        .agent
        .server()
        .acl_enabled()
        .then(|| secret_for(state, token_in(query, headers)).into_owned())
}

/// The caller of one request.
pub struct Caller {
    pub identity: Arc<Identity>,
    /// A token was presented: only then do filtered lists say so (`X-Consul-Results-Filtered-By-ACLs`).
    pub token_given: bool,
    filtered: AtomicBool,
}

impl Caller {
    /// Everything allowed (ACLs off, and cluster-internal requests).
    pub fn everything() -> Arc<Caller> {
        static ALL: OnceLock<Arc<Caller>> = OnceLock::new();
        ALL.get_or_init(|| {
            Arc::new(Caller {
                identity: Identity::allow_all(),
                token_given: false,
                filtered: AtomicBool::new(false),
            })
        })
        .clone()
    }

    /// A caller with a known identity.
    pub fn with_identity(identity: Arc<Identity>, token_given: bool) -> Caller {
        Caller {
            identity,
            token_given,
            filtered: AtomicBool::new(false),
        }
    }

    /// Resolves the request's token (or the agent's default, or `anonymous`).
    pub async fn resolve(
        state: &crate::ApiState,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Result<Arc<Caller>, ApiError> {
        let server = state.agent.server();
        if !server.acl_enabled() {
            return Ok(Caller::everything());
        }
        let given = token_in(query, headers);
        let secret = secret_for(state, given);
        if let Some(identity) = state
            .acl
            .agent_recovery(&secret, &state.agent.config().node_name)
        {
            return Ok(Arc::new(Caller {
                identity,
                token_given: given.is_some(),
                filtered: AtomicBool::new(false),
            }));
        }
        match server.resolve_token(&secret).await {
            Ok(identity) => Ok(Arc::new(Caller {
                identity,
                token_given: given.is_some(),
                filtered: AtomicBool::new(false),
            })),
            Err(ResolveError::NotFound) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))
            }
        }
    }

    fn denied(&self, permission: String, on: Option<&str>) -> ApiError {
        let mut text = format!(
            "Permission denied: token with AccessorID '{}' lacks permission '{permission}'",
            self.identity.accessor_id
        );
        if let Some(name) = on {
            text.push_str(&format!(" on {name:?}"));
        }
        ApiError::new(StatusCode::FORBIDDEN, text)
    }

    /// `kind:need` on `name`, or a 403.
    pub fn require(&self, kind: Named, name: &str, need: Need) -> Result<(), ApiError> {
        if self.identity.authorizer.named(kind, name, need) {
            Ok(())
        } else {
            Err(self.denied(format!("{}:{}", kind.as_str(), need.as_str()), Some(name)))
        }
    }

    pub fn require_whole(&self, kind: Whole, need: Need) -> Result<(), ApiError> {
        if self.identity.authorizer.whole(kind, need) {
            Ok(())
        } else {
            Err(self.denied(format!("{}:{}", kind.as_str(), need.as_str()), None))
        }
    }

    /// Write on every key under `prefix` (recursive deletes).
    pub fn require_key_prefix_write(&self, prefix: &str) -> Result<(), ApiError> {
        if self.identity.authorizer.key_write_prefix(prefix) {
            Ok(())
        } else {
            Err(self.denied("key:write".into(), Some(prefix)))
        }
    }

    /// For filtering a list: whether the item may be shown. Remembers that something was left out.
    pub fn may(&self, kind: Named, name: &str, need: Need) -> bool {
        let ok = self.identity.authorizer.named(kind, name, need);
        if !ok {
            self.filtered.store(true, Ordering::Relaxed);
        }
        ok
    }

    pub fn may_whole(&self, kind: Whole, need: Need) -> bool {
        self.identity.authorizer.whole(kind, need)
    }

    /// True when a list left something out and the caller gave a token.
    pub fn report_filtered(&self) -> bool {
        self.token_given && self.filtered.load(Ordering::Relaxed)
    }

    /// An identity key for sharing one evaluation of a blocking read between callers who see the same thing.
    pub fn share_key(&self) -> &str {
        &self.identity.accessor_id
    }
}

/// The need a route's declared access means for `method`.
pub fn need_for(rule: &AclRule, method: &Method) -> Need {
    match rule.access_for(method) {
        Access::Write => Need::Write,
        _ => Need::Read,
    }
}

/// The checks the route table decides alone: rules whose subject is the path, a query parameter, this node or the
/// whole resource. Subjects found in the body, owned by an ID, or listed item by item are the handler's to check.
pub fn check_route(
    caller: &Caller,
    rule: &AclRule,
    method: &Method,
    rest: &str,
    query: &[(String, String)],
    node_name: &str,
) -> Result<(), ApiError> {
    let need = need_for(rule, method);
    let name = match rule.subject {
        Subject::Path => rest,
        Subject::Query(param) => query
            .iter()
            .find(|(k, _)| k == param)
            .map(|(_, v)| v.as_str())
            .unwrap_or(""),
        Subject::ThisNode => node_name,
        Subject::Whole => "",
        Subject::Body | Subject::Each | Subject::Owner | Subject::Keys => return Ok(()),
    };
    match rule.resource {
        Resource::None | Resource::ClusterMember | Resource::ClusterServer => Ok(()),
        Resource::Agent => caller.require(Named::Agent, name, need),
        Resource::Node => caller.require(Named::Node, name, need),
        Resource::Service => caller.require(Named::Service, name, need),
        Resource::Key => caller.require(Named::Key, name, need),
        Resource::Session => caller.require(Named::Session, name, need),
        Resource::Event => caller.require(Named::Event, name, need),
        Resource::PreparedQuery => caller.require(Named::Query, name, need),
        Resource::Intention => caller.require(Named::Intention, name, need),
        Resource::Operator => caller.require_whole(Whole::Operator, need),
        Resource::Keyring => caller.require_whole(Whole::Keyring, need),
        Resource::Mesh => caller.require_whole(Whole::Mesh, need),
        Resource::Acl => caller.require_whole(Whole::Acl, need),
    }
}

/// ACL settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct AclApi {
    /// `<data-dir>/acl-bootstrap-reset`, read by `/v1/acl/bootstrap`.
    pub bootstrap_reset_file: Option<std::path::PathBuf>,
    pub tokens: Arc<RwLock<AgentTokens>>,
    /// `acl.token_min_expiration_ttl` / `token_max_expiration_ttl` (Consul: 1 m and 24 h).
    pub token_min_ttl: std::time::Duration,
    pub token_max_ttl: std::time::Duration,
    /// `acl.enable_key_list_policy`: listing keys needs `key:list` rather than `key:read`.
    pub enable_key_list_policy: bool,
    /// The data dir, when `acl.enable_token_persistence` keeps tokens set through the API there.
    pub persist_dir: Option<std::path::PathBuf>,
}

impl Default for AclApi {
    fn default() -> AclApi {
        AclApi {
            bootstrap_reset_file: None,
            tokens: Arc::default(),
            token_min_ttl: std::time::Duration::from_secs(60),
            token_max_ttl: std::time::Duration::from_secs(24 * 3600),
            enable_key_list_policy: false,
            persist_dir: None,
        }
    }
}

impl AclApi {
    /// The identity `secret` has as this agent's recovery token (`acl.tokens.agent_recovery`): `agent:write` on
    /// this agent and `node:read`, decided here without the servers.
    fn agent_recovery(&self, secret: &str, node: &str) -> Option<Arc<Identity>> {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        if tokens.agent_recovery.as_deref() != Some(secret) {
            return None;
        }
        let mut rules = weft_acl::Rules::default();
        rules.set_named(Named::Agent, node, false, weft_acl::Level::Write);
        rules.set_named(Named::Node, "", true, weft_acl::Level::Read);
        Some(Arc::new(Identity {
            accessor_id: "agent-recovery".into(),
            authorizer: weft_acl::Authorizer::new(rules, weft_acl::DefaultPolicy::Deny),
            expires_ms: None,
        }))
    }

    pub fn default_token(&self) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .default
            .clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn token_order_is_consuls() {
        let q = vec![("token".to_string(), "from-query".to_string())];
        let h = headers(&[
            ("x-consul-token", "from-header"),
            ("authorization", "Bearer from-bearer"),
        ]);
        assert_eq!(token_of(&q, &h).as_deref(), Some("from-query"));
        assert_eq!(token_of(&[], &h).as_deref(), Some("from-header"));
        let h = headers(&[("authorization", "bearer  abc def")]);
        assert_eq!(token_of(&[], &h).as_deref(), Some("abc"));
        let h = headers(&[("authorization", "Basic abc")]);
        assert_eq!(token_of(&[], &h), None);
        assert_eq!(token_of(&[], &HeaderMap::new()), None);
    }
}
