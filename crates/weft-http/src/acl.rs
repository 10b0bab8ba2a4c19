//! `/v1/acl/...`: bootstrap, tokens, policies, roles and templated policies, as Consul's endpoints answer them.
//!
//! Every write is checked here, on the leader, before it is proposed: links name policies and roles that exist
//! (requests may give a name or an ID; stored links carry both), identities have valid names, rules parse, TTLs are
//! within `acl.token_min_expiration_ttl`..`token_max_expiration_ttl`. The store then keeps the invariants every
//! server must agree on (one token per secret, unique names, the built-ins). Secrets are shown only to callers with
//! `acl:write`, as Consul redacts them.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use weft_acl::{Need, Rules, Whole};
use weft_state::{Command, Store, StoreError};
use weft_types::acl::{
    valid_acl_name, AclGrants, AclLink, AclPolicy, AclRole, AclToken, ANONYMOUS_ACCESSOR,
    GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME,
};
use weft_types::duration::parse_duration;
use weft_types::ids::{is_uuid, new_uuid};

const REDACTED: &str = "<hidden>";

/// 401 on every ACL endpoint while ACLs are off (Consul's words).
pub(crate) fn enabled(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.state.agent.server().acl_enabled() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled",
        ))
    }
}

pub(crate) fn now_ms() -> u64 {
    weft_server::now_ms()
}

fn to_json<T: serde::Serialize>(ctx: &Ctx, value: &T) -> Result<Reply, ApiError> {
    let v = serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ctx.json(&v))
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::AclBootstrapDone(at) => ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Permission denied: ACL bootstrap no longer allowed (reset index: {at})"),
        ),
        StoreError::AclNotFound(what) => ApiError::not_found(format!("Cannot find {what}")),
        e @ (StoreError::AclBuiltin(_)
        | StoreError::AclNameTaken(..)
        | StoreError::AclSecretTaken) => ApiError::bad_request(e.to_string()),
        e => ApiError::from(e),
    }
}

pub(crate) async fn write(ctx: &Ctx, cmd: Command) -> Result<(), ApiError> {
    ctx.state
        .agent
        .server()
        .write(cmd)
        .await
        .map(|_| ())
        .map_err(store_error)
}

/// A content hash, as Consul gives every token, policy and role (base64 of SHA-256 over the fields that grant).
pub(crate) fn hash_of(parts: &[&str]) -> String {
    use base64::Engine;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

pub(crate) fn grants_hash(g: &AclGrants, extra: &[&str]) -> String {
    let grants = serde_json::to_string(g).unwrap_or_default();
    let mut parts = vec![grants.as_str()];
    parts.extend_from_slice(extra);
    hash_of(&parts)
}

/// Writes `cmd`, then answers the object as the store now holds it (`view` renders it from the store).
pub(crate) async fn write_and_show(
    ctx: &Ctx,
    cmd: Command,
    view: impl FnOnce(&Store) -> Option<Value>,
) -> Result<Reply, ApiError> {
    write(ctx, cmd).await?;
    let server = ctx.state.agent.server();
    let shown = view(&server.read());
    let value = shown
        .ok_or_else(|| ApiError::internal("the object was written but cannot be read back"))?;
    Ok(ctx.json(&value))
}

/// Answers one object, or 404 with `missing`.
pub(crate) fn show(
    ctx: &Ctx,
    missing: &str,
    view: impl FnOnce(&Store) -> Option<Value>,
) -> Result<Reply, ApiError> {
    let server = ctx.state.agent.server();
    let shown = view(&server.read());
    shown
        .map(|v| ctx.json(&v))
        .ok_or_else(|| ApiError::not_found(missing))
}

/// Deletes one object: `true`, or 404 `Cannot find <what> to delete`.
pub(crate) async fn delete_one(ctx: &Ctx, what: &str, cmd: Command) -> Result<Reply, ApiError> {
    match write(ctx, cmd).await {
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            Err(ApiError::not_found(format!("Cannot find {what} to delete")))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(Reply::bool(true)),
    }
}

/// What a `/v1/acl/policy/` or `/v1/acl/role/` path names: `name/:name` (read only) or `:id`.
enum Target {
    Name(String),
    Id(String),
}

fn target(ctx: &Ctx) -> Result<Target, ApiError> {
    match ctx.rest.strip_prefix("name/") {
        Some(_) if ctx.method != axum::http::Method::GET => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
        Some(name) => Ok(Target::Name(name.to_string())),
        None => Ok(Target::Id(ctx.rest.clone())),
    }
}

/// A create names no ID: the server makes it.
pub(crate) fn no_id_on_create(id: &str, what: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Cannot specify the ID when creating a new {what}"
        )))
    }
}

/// An update's body may repeat the ID, but not name another object.
pub(crate) fn same_id(body: &str, url: &str, what: &str) -> Result<(), ApiError> {
    if body.is_empty() || body == url {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} ID in URL and payload do not match"
        )))
    }
}

pub(crate) fn value<T: serde::Serialize>(v: &T) -> Option<Value> {
    serde_json::to_value(v).ok()
}

// ---------------------------------------------------------------------------------------------------------------
// Bootstrap

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BootstrapRequest {
    #[serde(default)]
    bootstrap_secret: String,
}

/// `PUT /v1/acl/bootstrap`: the first management token, once (again only with the reset index written to
/// `<data-dir>/acl-bootstrap-reset`).
pub async fn bootstrap(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let req: BootstrapRequest = ctx.decode_or_default()?;
    let secret = if req.bootstrap_secret.is_empty() {
        new_uuid()
    } else if is_uuid(&req.bootstrap_secret) {
        req.bootstrap_secret
    } else {
        return Err(ApiError::bad_request(
            "Invalid bootstrap secret: the secret must be a UUID",
        ));
    };
    let reset_index = ctx
        .state
        .acl
        .bootstrap_reset_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    let mut token = AclToken {
        accessor_id: new_uuid(),
        secret_id: secret,
        description: "Bootstrap Token (Global Management)".into(),
        grants: AclGrants {
            policies: vec![AclLink {
                id: GLOBAL_MANAGEMENT_ID.into(),
                name: GLOBAL_MANAGEMENT_NAME.into(),
            }],
            ..AclGrants::default()
        },
        create_time: now_ms(),
        ..AclToken::default()
    };
    token.hash = grants_hash(&token.grants, &[&token.description]);
    let (index, result) = ctx
        .state
        .agent
        .server()
        .write_indexed(Command::AclBootstrap {
            token: Box::new(token.clone()),
            reset_index,
        })
        .await;
    result.map_err(store_error)?;
    if reset_index.is_some() {
        // A used reset file would allow nothing more (the index moved on); remove it so it is not mistaken for
        // a pending reset.
        if let Some(f) = &ctx.state.acl.bootstrap_reset_file {
            let _ = std::fs::remove_file(f);
        }
    }
    token.create_index = index;
    token.modify_index = index;
    let mut v = serde_json::to_value(&token).map_err(|e| ApiError::internal(e.to_string()))?;
    // Consul's legacy `ID` field carries the secret in bootstrap answers.
    if let Value::Object(map) = &mut v {
        map.insert("ID".into(), Value::String(token.secret_id.clone()));
    }
    Ok(ctx.json(&v))
}

// ---------------------------------------------------------------------------------------------------------------
// Links and identities

/// Fills in both ID and name of each link, refusing links to `what`s that do not exist: `by_id` and `by_name`
/// answer `(ID, name)` of an existing one.
fn resolve_links(
    links: &[AclLink],
    what: &str,
    by_id: impl Fn(&str) -> Option<(String, String)>,
    by_name: impl Fn(&str) -> Option<(String, String)>,
) -> Result<Vec<AclLink>, ApiError> {
    let mut out: Vec<AclLink> = Vec::new();
    for link in links {
        let (id, name) = if !link.id.is_empty() {
            by_id(&link.id).ok_or_else(|| {
                ApiError::bad_request(format!("No such ACL {what} with ID \"{}\"", link.id))
            })?
        } else if !link.name.is_empty() {
            by_name(&link.name).ok_or_else(|| {
                ApiError::bad_request(format!("No such ACL {what} with name \"{}\"", link.name))
            })?
        } else {
            return Err(ApiError::bad_request(format!(
                "a {what} link needs an ID or a Name"
            )));
        };
        if !out.iter().any(|l| l.id == id) {
            out.push(AclLink { id, name });
        }
    }
    Ok(out)
}

fn resolve_policy_links(store: &Store, links: &[AclLink]) -> Result<Vec<AclLink>, ApiError> {
    let pair = |p: &AclPolicy| (p.id.clone(), p.name.clone());
    resolve_links(
        links,
        "policy",
        |id| store.acl_policy(id).map(pair),
        |name| store.acl_policy_by_name(name).map(pair),
    )
}

fn resolve_role_links(store: &Store, links: &[AclLink]) -> Result<Vec<AclLink>, ApiError> {
    let pair = |r: &AclRole| (r.id.clone(), r.name.clone());
    resolve_links(
        links,
        "role",
        |id| store.acl_role(id).map(pair),
        |name| store.acl_role_by_name(name).map(pair),
    )
}

/// Checks and normalises what a token or role grants.
pub(crate) fn check_grants(
    store: &Store,
    grants: &AclGrants,
    what: &str,
) -> Result<AclGrants, ApiError> {
    for si in &grants.service_identities {
        if !weft_acl::valid_identity_name(&si.service_name) {
            return Err(ApiError::bad_request(format!(
                "Service identity \"{}\" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
                si.service_name
            )));
        }
    }
    for ni in &grants.node_identities {
        if !weft_acl::valid_identity_name(&ni.node_name) {
            return Err(ApiError::bad_request(format!(
                "Node identity has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed: {:?}",
                ni.node_name
            )));
        }
        if ni.datacenter.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Node identity is missing the datacenter field on this {what}"
            )));
        }
    }
    for tp in &grants.templated_policies {
        let name = tp.template_variables.as_ref().map(|v| v.name.as_str());
        weft_acl::render_template(&tp.template_name, name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok(AclGrants {
        policies: resolve_policy_links(store, &grants.policies)?,
        ..grants.clone()
    })
}

/// Links as they read now: deleted policies and roles dropped, renamed ones under their new name.
fn current_links(links: &[AclLink], name_of: impl Fn(&str) -> Option<String>) -> Vec<AclLink> {
    links
        .iter()
        .filter_map(|l| {
            name_of(&l.id).map(|name| AclLink {
                id: l.id.clone(),
                name,
            })
        })
        .collect()
}

fn token_view(store: &Store, token: &AclToken, show_secret: bool) -> AclToken {
    let mut t = token.clone();
    t.grants.policies = current_links(&t.grants.policies, |id| {
        store.acl_policy(id).map(|p| p.name.clone())
    });
    t.roles = current_links(&t.roles, |id| store.acl_role(id).map(|r| r.name.clone()));
    if !show_secret {
        t.secret_id = REDACTED.into();
    }
    t
}

fn role_view(store: &Store, role: &AclRole) -> AclRole {
    let mut r = role.clone();
    r.grants.policies = current_links(&r.grants.policies, |id| {
        store.acl_policy(id).map(|p| p.name.clone())
    });
    r
}

// ---------------------------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TokenRequest {
    #[serde(rename = "AccessorID", default)]
    accessor_id: String,
    #[serde(rename = "SecretID", default)]
    secret_id: String,
    #[serde(default)]
    description: String,
    #[serde(flatten)]
    grants: AclGrants,
    #[serde(default)]
    roles: Vec<AclLink>,
    #[serde(default)]
    local: bool,
    #[serde(rename = "ExpirationTTL", default)]
    expiration_ttl: Option<Value>,
    #[serde(default, with = "weft_types::timefmt::rfc3339_ms_opt")]
    expiration_time: Option<u64>,
}

fn expiration(ctx: &Ctx, req: &TokenRequest, now: u64) -> Result<Option<u64>, ApiError> {
    let ttl = match &req.expiration_ttl {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(
            parse_duration(s)
                .map_err(|_| ApiError::bad_request(format!("Invalid ExpirationTTL {s:?}")))?,
        ),
        // Go's time.Duration in JSON: nanoseconds.
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0).map(Duration::from_nanos),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid ExpirationTTL {other}"
            )))
        }
    };
    if ttl.is_some() && req.expiration_time.is_some() {
        return Err(ApiError::bad_request(
            "Expiration TTL and Expiration Time cannot both be set",
        ));
    }
    let at = match (ttl, req.expiration_time) {
        (Some(ttl), _) => now.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64),
        (None, Some(at)) => at,
        (None, None) => return Ok(None),
    };
    let (min, max) = (ctx.state.acl.token_min_ttl, ctx.state.acl.token_max_ttl);
    let span = Duration::from_millis(at.saturating_sub(now));
    if at <= now || span < min {
        return Err(ApiError::bad_request(format!(
            "Token expiration time cannot be less than {} in the future",
            weft_types::duration::format_duration(min)
        )));
    }
    if span > max {
        return Err(ApiError::bad_request(format!(
            "Token expiration time cannot be more than {} in the future",
            weft_types::duration::format_duration(max)
        )));
    }
    Ok(Some(at))
}

/// `PUT /v1/acl/token`.
pub async fn token_create(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let req: TokenRequest = ctx.decode_or_default()?;
    let now = now_ms();
    let token = {
        let server = ctx.state.agent.server();
        let store = server.read();
        for (field, value) in [
            ("AccessorID", &req.accessor_id),
            ("SecretID", &req.secret_id),
        ] {
            if !value.is_empty() && !is_uuid(value) {
                return Err(ApiError::bad_request(format!(
                    "Invalid Token: {field} is not a valid UUID"
                )));
            }
        }
        if !req.accessor_id.is_empty() && store.token(&req.accessor_id).is_some() {
            return Err(ApiError::bad_request(
                "Invalid Token: AccessorID is already in use",
            ));
        }
        if !req.secret_id.is_empty() && store.token_by_secret(&req.secret_id).is_some() {
            return Err(ApiError::bad_request(
                "Invalid Token: SecretID is already in use",
            ));
        }
        let grants = check_grants(&store, &req.grants, "token")?;
        let roles = resolve_role_links(&store, &req.roles)?;
        let mut token = AclToken {
            accessor_id: or_new(&req.accessor_id),
            secret_id: or_new(&req.secret_id),
            description: req.description.clone(),
            grants,
            roles,
            local: req.local,
            expiration_time: expiration(&ctx, &req, now)?,
            create_time: now,
            ..AclToken::default()
        };
        token.hash = grants_hash(&token.grants, &[&token.description]);
        token
    };
    set_token(&ctx, token).await
}

fn or_new(id: &str) -> String {
    if id.is_empty() {
        new_uuid()
    } else {
        id.to_string()
    }
}

pub(crate) async fn set_token(ctx: &Ctx, token: AclToken) -> Result<Reply, ApiError> {
    let accessor = token.accessor_id.clone();
    write_and_show(ctx, Command::AclTokenSet(Box::new(token)), |store| {
        store
            .token(&accessor)
            .and_then(|t| value(&token_view(store, t, true)))
    })
    .await
}

/// `GET|PUT|DELETE /v1/acl/token/:accessor`, `PUT /v1/acl/token/:accessor/clone`.
pub async fn token(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let rest = ctx.rest.clone();
    if let Some(accessor) = rest.strip_suffix("/clone") {
        if ctx.method != axum::http::Method::PUT {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
            ));
        }
        return token_clone(&ctx, accessor).await;
    }
    let accessor = rest.as_str();
    match ctx.method.as_str() {
        "GET" => {
            let server = ctx.state.agent.server();
            let store = server.read();
            let token = store
                .token(accessor)
                .ok_or_else(|| ApiError::not_found("ACL not found"))?;
            let show = ctx.caller.may_whole(Whole::Acl, Need::Write);
            let view = token_view(&store, token, show);
            if ctx.flag("expanded") {
                return to_json(&ctx, &expanded(&ctx, &store, view));
            }
            to_json(&ctx, &view)
        }
        "PUT" => token_update(&ctx, accessor).await,
        _ => {
            if accessor == ANONYMOUS_ACCESSOR {
                return Err(ApiError::bad_request(
                    "Delete operation not permitted on the anonymous token",
                ));
            }
            let accessor_id = accessor.to_string();
            delete_one(&ctx, "token", Command::AclTokenDelete { accessor_id }).await
        }
    }
}

/// `?expanded`: the token with the policies and roles it links, and the agent's ACL defaults.
fn expanded(ctx: &Ctx, store: &Store, token: AclToken) -> Value {
    let policies: Vec<&AclPolicy> = token
        .grants
        .policies
        .iter()
        .filter_map(|l| store.acl_policy(&l.id))
        .collect();
    let roles: Vec<AclRole> = token
        .roles
        .iter()
        .filter_map(|l| store.acl_role(&l.id))
        .map(|r| role_view(store, r))
        .collect();
    let acl = &ctx.state.agent.server().config().acl;
    json!({
        "ExpandedPolicies": policies,
        "ExpandedRoles": roles,
        "NamespaceDefaultPolicyIDs": null,
        "NamespaceDefaultRoleIDs": null,
        "AgentACLDefaultPolicy": acl.default_policy.as_str(),
        "AgentACLDownPolicy": acl.down_policy.as_str(),
        "ResolvedByAgent": ctx.state.agent.config().node_name,
        "ACLToken": token,
    })
}

async fn token_update(ctx: &Ctx, accessor: &str) -> Result<Reply, ApiError> {
    let req: TokenRequest = ctx.decode_or_default()?;
    same_id(&req.accessor_id, accessor, "Token Accessor")?;
    let token = {
        let server = ctx.state.agent.server();
        let store = server.read();
        let current = store
            .token(accessor)
            .ok_or_else(|| ApiError::not_found("Cannot find token to update"))?;
        if !req.secret_id.is_empty() && req.secret_id != current.secret_id {
            return Err(ApiError::bad_request(
                "Changing a token's SecretID is not permitted",
            ));
        }
        if req.expiration_time.is_some() && req.expiration_time != current.expiration_time {
            return Err(ApiError::bad_request(
                "Cannot change expiration time of an existing token",
            ));
        }
        let mut token = AclToken {
            description: req.description.clone(),
            grants: check_grants(&store, &req.grants, "token")?,
            roles: resolve_role_links(&store, &req.roles)?,
            ..current.clone()
        };
        token.hash = grants_hash(&token.grants, &[&token.description]);
        token
    };
    set_token(ctx, token).await
}

async fn token_clone(ctx: &Ctx, accessor: &str) -> Result<Reply, ApiError> {
    #[derive(Default, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct CloneRequest {
        #[serde(default)]
        description: Option<String>,
    }
    let req: CloneRequest = ctx.decode_or_default()?;
    let token = {
        let server = ctx.state.agent.server();
        let store = server.read();
        let source = store
            .token(accessor)
            .ok_or_else(|| ApiError::not_found("Cannot find token to clone"))?;
        if source.accessor_id == ANONYMOUS_ACCESSOR {
            return Err(ApiError::bad_request("Cannot clone the anonymous token"));
        }
        AclToken {
            accessor_id: new_uuid(),
            secret_id: new_uuid(),
            description: req
                .description
                .unwrap_or_else(|| source.description.clone()),
            create_time: now_ms(),
            create_index: 0,
            modify_index: 0,
            ..source.clone()
        }
    };
    set_token(ctx, token).await
}

/// `GET /v1/acl/token/self`: the token the request carries (any valid token may read itself).
pub async fn token_self(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let Some(secret) = crate::caller::token_of(&ctx.query, &ctx.headers) else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "ACL not found"));
    };
    let server = ctx.state.agent.server();
    let store = server.read();
    match store.token_by_secret(&secret) {
        Some(t) if !t.expired(now_ms()) => to_json(&ctx, &token_view(&store, t, true)),
        _ => Err(ApiError::new(StatusCode::FORBIDDEN, "ACL not found")),
    }
}

/// `GET /v1/acl/tokens?policy=&role=&authmethod=&servicename=`.
pub async fn tokens(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let show = ctx.caller.may_whole(Whole::Acl, Need::Write);
    let server = ctx.state.agent.server();
    let store = server.read();
    let policy = ctx.param("policy").filter(|p| !p.is_empty());
    let role = ctx.param("role").filter(|p| !p.is_empty());
    let method = ctx.param("authmethod").filter(|p| !p.is_empty());
    let service = ctx.param("servicename").filter(|p| !p.is_empty());
    let list: Vec<Value> = store
        .tokens()
        .filter(|t| policy.is_none_or(|p| t.grants.policies.iter().any(|l| l.id == p)))
        .filter(|t| role.is_none_or(|r| t.roles.iter().any(|l| l.id == r)))
        .filter(|t| method.is_none_or(|m| t.auth_method == m))
        .filter(|t| {
            service.is_none_or(|s| {
                t.grants
                    .service_identities
                    .iter()
                    .any(|i| i.service_name == s)
            })
        })
        .map(|t| {
            let mut v = serde_json::to_value(token_view(&store, t, show)).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut v {
                map.insert("Legacy".into(), Value::Bool(false));
            }
            v
        })
        .collect();
    Ok(ctx.json(&Value::Array(list)))
}

// ---------------------------------------------------------------------------------------------------------------
// Policies

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyRequest {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    rules: String,
    #[serde(default)]
    datacenters: Option<Vec<String>>,
}

fn checked_policy(req: PolicyRequest, id: String) -> Result<AclPolicy, ApiError> {
    if !valid_acl_name(&req.name) || req.name.len() > 128 {
        return Err(ApiError::bad_request(format!(
            "Invalid Policy: invalid Name {:?}: names are 1 to 128 letters, digits, '-' and '_'",
            req.name
        )));
    }
    Rules::parse(&req.rules).map_err(|e| {
        ApiError::bad_request(format!("Invalid Policy: failed to parse rules: {e}"))
    })?;
    let mut policy = AclPolicy {
        id,
        name: req.name,
        description: req.description,
        rules: req.rules,
        datacenters: req.datacenters.filter(|d| !d.is_empty()),
        ..AclPolicy::default()
    };
    let dcs = policy.datacenters.clone().unwrap_or_default().join(",");
    policy.hash = hash_of(&[&policy.name, &policy.description, &policy.rules, &dcs]);
    Ok(policy)
}

async fn set_policy(ctx: &Ctx, policy: AclPolicy) -> Result<Reply, ApiError> {
    let id = policy.id.clone();
    write_and_show(ctx, Command::AclPolicySet(Box::new(policy)), |store| {
        store.acl_policy(&id).and_then(value)
    })
    .await
}

/// `PUT /v1/acl/policy`.
pub async fn policy_create(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let req: PolicyRequest = ctx.decode()?;
    no_id_on_create(&req.id, "policy")?;
    let policy = checked_policy(req, new_uuid())?;
    set_policy(&ctx, policy).await
}

/// `GET|PUT|DELETE /v1/acl/policy/:id`, `GET /v1/acl/policy/name/:name`.
pub async fn policy(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let id = match target(&ctx)? {
        Target::Name(name) => {
            return show(&ctx, "ACL policy not found", |store| {
                store.acl_policy_by_name(&name).and_then(value)
            })
        }
        Target::Id(id) => id,
    };
    match ctx.method.as_str() {
        "GET" => show(&ctx, "ACL policy not found", |store| {
            store.acl_policy(&id).and_then(value)
        }),
        "PUT" => {
            let req: PolicyRequest = ctx.decode()?;
            same_id(&req.id, &id, "Policy")?;
            {
                let server = ctx.state.agent.server();
                let store = server.read();
                let current = store
                    .acl_policy(&id)
                    .ok_or_else(|| ApiError::not_found("Cannot find policy to update"))?;
                if id == GLOBAL_MANAGEMENT_ID && req.rules != current.rules {
                    return Err(ApiError::bad_request(
                        "Changing the Rules for the builtin global-management policy is not permitted",
                    ));
                }
            }
            let policy = checked_policy(req, id)?;
            set_policy(&ctx, policy).await
        }
        _ => {
            if id == GLOBAL_MANAGEMENT_ID {
                return Err(ApiError::bad_request(
                    "Deletion of the builtin global-management policy is not permitted",
                ));
            }
            delete_one(&ctx, "policy", Command::AclPolicyDelete { id }).await
        }
    }
}

/// `GET /v1/acl/policies`: stubs, without the rules.
pub async fn policies(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let server = ctx.state.agent.server();
    let store = server.read();
    let list: Vec<Value> = store
        .acl_policies()
        .map(|p| {
            json!({
                "ID": p.id, "Name": p.name, "Description": p.description, "Datacenters": p.datacenters,
                "Hash": p.hash, "CreateIndex": p.create_index, "ModifyIndex": p.modify_index,
            })
        })
        .collect();
    Ok(ctx.json(&Value::Array(list)))
}

// ---------------------------------------------------------------------------------------------------------------
// Roles

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleRequest {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(flatten)]
    grants: AclGrants,
}

fn checked_role(store: &Store, req: RoleRequest, id: String) -> Result<AclRole, ApiError> {
    if !valid_acl_name(&req.name) {
        return Err(ApiError::bad_request(format!(
            "Invalid Role: invalid Name {:?}: names are 1 to 256 letters, digits, '-' and '_'",
            req.name
        )));
    }
    let grants = check_grants(store, &req.grants, "role")?;
    let mut role = AclRole {
        id,
        name: req.name,
        description: req.description,
        grants,
        ..AclRole::default()
    };
    role.hash = grants_hash(&role.grants, &[&role.name, &role.description]);
    Ok(role)
}

async fn set_role(ctx: &Ctx, role: AclRole) -> Result<Reply, ApiError> {
    let id = role.id.clone();
    write_and_show(ctx, Command::AclRoleSet(Box::new(role)), |store| {
        store
            .acl_role(&id)
            .and_then(|r| value(&role_view(store, r)))
    })
    .await
}

/// `PUT /v1/acl/role`.
pub async fn role_create(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let req: RoleRequest = ctx.decode()?;
    no_id_on_create(&req.id, "role")?;
    let role = {
        let server = ctx.state.agent.server();
        let store = server.read();
        checked_role(&store, req, new_uuid())?
    };
    set_role(&ctx, role).await
}

/// `GET|PUT|DELETE /v1/acl/role/:id`, `GET /v1/acl/role/name/:name`.
pub async fn role(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let id = match target(&ctx)? {
        Target::Name(name) => {
            return show(&ctx, "ACL role not found", |store| {
                store
                    .acl_role_by_name(&name)
                    .and_then(|r| value(&role_view(store, r)))
            })
        }
        Target::Id(id) => id,
    };
    match ctx.method.as_str() {
        "GET" => show(&ctx, "ACL role not found", |store| {
            store
                .acl_role(&id)
                .and_then(|r| value(&role_view(store, r)))
        }),
        "PUT" => {
            let req: RoleRequest = ctx.decode()?;
            same_id(&req.id, &id, "Role")?;
            let role = {
                let server = ctx.state.agent.server();
                let store = server.read();
                if store.acl_role(&id).is_none() {
                    return Err(ApiError::not_found("Cannot find role to update"));
                }
                checked_role(&store, req, id)?
            };
            set_role(&ctx, role).await
        }
        _ => delete_one(&ctx, "role", Command::AclRoleDelete { id }).await,
    }
}

/// `GET /v1/acl/roles?policy=`.
pub async fn roles(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let server = ctx.state.agent.server();
    let store = server.read();
    let policy = ctx.param("policy").filter(|p| !p.is_empty());
    let list: Vec<Value> = store
        .acl_roles()
        .filter(|r| policy.is_none_or(|p| r.grants.policies.iter().any(|l| l.id == p)))
        .map(|r| serde_json::to_value(role_view(&store, r)).unwrap_or(Value::Null))
        .collect();
    Ok(ctx.json(&Value::Array(list)))
}

// ---------------------------------------------------------------------------------------------------------------
// Templated policies

const NAME_SCHEMA: &str = "{\n\t\"type\": \"object\",\n\t\"properties\": {\n\t\t\"name\": { \"type\": \"string\", \"$ref\": \"#/definitions/min-length-one\" }\n\t},\n\t\"required\": [\"name\"],\n\t\"definitions\": {\n\t\t\"min-length-one\": {\n\t\t\t\t\"type\": \"string\",\n\t\t\t\t\"minLength\": 1\n\t\t}\n\t}\n}";

fn templated_json(p: &weft_acl::TemplatedPolicy) -> Value {
    json!({
        "TemplateName": p.name,
        "Schema": if p.needs_name { NAME_SCHEMA } else { "" },
        "Template": p.template,
        "Description": p.description,
    })
}

/// `GET /v1/acl/templated-policies`.
pub async fn templated_policies(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let map: serde_json::Map<String, Value> = weft_acl::TEMPLATED_POLICIES
        .iter()
        .map(|p| (p.name.to_string(), templated_json(p)))
        .collect();
    Ok(ctx.json(&Value::Object(map)))
}

fn find_template(name: &str) -> Result<&'static weft_acl::TemplatedPolicy, ApiError> {
    weft_acl::TEMPLATED_POLICIES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("Invalid templated policy Name: {name}")))
}

/// `GET /v1/acl/templated-policy/name/:name`.
pub async fn templated_policy(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    Ok(ctx.json(&templated_json(find_template(&ctx.rest)?)))
}

/// `POST /v1/acl/templated-policy/preview/:name` with `{"Name": "api"}`: the policy it renders.
pub async fn templated_preview(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    #[derive(Default, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Variables {
        #[serde(default)]
        name: String,
    }
    let template = find_template(&ctx.rest)?;
    let vars: Variables = ctx.decode_or_default()?;
    let rules = weft_acl::render_template(template.name, Some(&vars.name))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let suffix = if vars.name.is_empty() {
        String::new()
    } else {
        format!("-{}", vars.name)
    };
    Ok(ctx.json(&json!({
        "ID": "",
        "Name": format!("synthetic-policy{}", suffix),
        "Description": format!("synthetic policy generated from templated policy: {}", template.name),
        "Rules": rules,
        "Datacenters": null,
        "Hash": hash_of(&[&rules]),
        "CreateIndex": 0,
        "ModifyIndex": 0,
    })))
}
