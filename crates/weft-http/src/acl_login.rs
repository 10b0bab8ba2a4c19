//! `/v1/acl/auth-method`, `/v1/acl/binding-rule`, `/v1/acl/login` and `/v1/acl/logout`, as Consul's answer.
//!
//! A method's config and every binding rule are checked when written (a method Weft cannot run, or a rule naming
//! an attribute the method does not map, is a 400 then, not a failed login later). A login runs on the leader:
//! the credential is verified, the matching rules bound, and a token created with what they grant, linked to the
//! method (deleting the method deletes its tokens). Where Consul answers a refused credential with a 500 (the
//! validator's error passed through), Weft answers 403 `Permission denied: <reason>`: it is the caller's
//! credential, not the server, that failed.

use crate::acl::{
    delete_one, enabled, grants_hash, no_id_on_create, now_ms, same_id, set_token, show, value,
    write_and_show,
};
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;
use weft_login::{JwtMethod, LoginError};
use weft_state::{Command, Store};
use weft_types::acl::{
    valid_acl_name, AclAuthMethod, AclBindingRule, AclGrants, AclLink, AclToken, NodeIdentity,
    ServiceIdentity, TemplateVariables, TemplatedPolicyLink,
};
use weft_types::duration::{format_duration, parse_duration};
use weft_types::ids::new_uuid;

fn config_error(e: LoginError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

fn method_of(store: &Store, name: &str) -> Result<JwtMethod, ApiError> {
    let method = store.acl_auth_method(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Invalid Binding Rule: cannot find AuthMethod {name:?}"
        ))
    })?;
    JwtMethod::from_config(&Value::Object(method.config.clone())).map_err(config_error)
}

// ---------------------------------------------------------------------------------------------------------------
// Auth methods

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MethodRequest {
    #[serde(default)]
    name: String,
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "MaxTokenTTL", default)]
    max_token_ttl: Option<Value>,
    #[serde(default)]
    token_locality: String,
    #[serde(default)]
    config: Map<String, Value>,
}

fn checked_method(ctx: &Ctx, req: MethodRequest) -> Result<AclAuthMethod, ApiError> {
    if !valid_acl_name(&req.name) || req.name.len() > 128 {
        return Err(ApiError::bad_request(format!(
            "Invalid Auth Method: invalid Name {:?}: names are 1 to 128 letters, digits, '-' and '_'",
            req.name
        )));
    }
    if req.kind != weft_login::JWT {
        return Err(ApiError::bad_request(format!(
            "Invalid Auth Method: Type should be one of: jwt (got {:?})",
            req.kind
        )));
    }
    if !matches!(req.token_locality.as_str(), "" | "local" | "global") {
        return Err(ApiError::bad_request(
            "Invalid Auth Method: TokenLocality should be one of 'local' or 'global'",
        ));
    }
    let ttl = match &req.max_token_ttl {
        None | Some(Value::Null) => Duration::ZERO,
        Some(Value::String(s)) if s.is_empty() => Duration::ZERO,
        Some(Value::String(s)) => parse_duration(s).map_err(|_| {
            ApiError::bad_request(format!("Invalid Auth Method: invalid MaxTokenTTL {s:?}"))
        })?,
        Some(Value::Number(n)) => Duration::from_nanos(n.as_u64().unwrap_or(0)),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid Auth Method: invalid MaxTokenTTL {other}"
            )))
        }
    };
    let (min, max) = (ctx.state.acl.token_min_ttl, ctx.state.acl.token_max_ttl);
    if !ttl.is_zero() && (ttl < min || ttl > max) {
        return Err(ApiError::bad_request(format!(
            "Invalid Auth Method: MaxTokenTTL should be between {} and {}",
            format_duration(min),
            format_duration(max)
        )));
    }
    JwtMethod::from_config(&Value::Object(req.config.clone()))
        .map_err(|e| ApiError::bad_request(format!("Invalid Auth Method: invalid config: {e}")))?;
    Ok(AclAuthMethod {
        name: req.name,
        kind: req.kind,
        display_name: req.display_name,
        description: req.description,
        max_token_ttl: if ttl.is_zero() {
            String::new()
        } else {
            format_duration(ttl)
        },
        token_locality: req.token_locality,
        config: req.config,
        create_index: 0,
        modify_index: 0,
    })
}

async fn set_method(ctx: &Ctx, method: AclAuthMethod) -> Result<Reply, ApiError> {
    let name = method.name.clone();
    write_and_show(ctx, Command::AclAuthMethodSet(Box::new(method)), |store| {
        store.acl_auth_method(&name).and_then(value)
    })
    .await
}

/// `PUT /v1/acl/auth-method`.
pub async fn auth_method_create(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let req: MethodRequest = ctx.decode()?;
    let exists = ctx
        .state
        .agent
        .server()
        .read()
        .acl_auth_method(&req.name)
        .is_some();
    if exists {
        return Err(ApiError::bad_request(format!(
            "Invalid Auth Method: an auth method named {:?} already exists",
            req.name
        )));
    }
    let method = checked_method(&ctx, req)?;
    set_method(&ctx, method).await
}

/// `GET|PUT|DELETE /v1/acl/auth-method/:name`.
pub async fn auth_method(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let name = ctx.rest.clone();
    match ctx.method.as_str() {
        "GET" => show(&ctx, "ACL auth method not found", |store| {
            store.acl_auth_method(&name).and_then(value)
        }),
        "PUT" => {
            let mut req: MethodRequest = ctx.decode()?;
            same_id(&req.name, &name, "Auth Method name")?;
            req.name = name.clone();
            let current_kind = ctx
                .state
                .agent
                .server()
                .read()
                .acl_auth_method(&name)
                .map(|m| m.kind.clone())
                .ok_or_else(|| ApiError::not_found("Cannot find auth method to update"))?;
            if req.kind.is_empty() {
                req.kind = current_kind.clone();
            }
            if req.kind != current_kind {
                return Err(ApiError::bad_request(
                    "Invalid Auth Method: cannot change the Type of an auth method",
                ));
            }
            let method = checked_method(&ctx, req)?;
            set_method(&ctx, method).await
        }
        _ => delete_one(&ctx, "auth method", Command::AclAuthMethodDelete { name }).await,
    }
}

/// `GET /v1/acl/auth-methods`: stubs, without the config.
pub async fn auth_methods(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let server = ctx.state.agent.server();
    let store = server.read();
    let list: Vec<Value> = store
        .acl_auth_methods()
        .map(|m| {
            json!({
                "Name": m.name, "Type": m.kind, "DisplayName": m.display_name, "Description": m.description,
                "MaxTokenTTL": m.max_token_ttl, "TokenLocality": m.token_locality,
                "CreateIndex": m.create_index, "ModifyIndex": m.modify_index,
            })
        })
        .collect();
    Ok(ctx.json(&Value::Array(list)))
}

// ---------------------------------------------------------------------------------------------------------------
// Binding rules

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleRequest {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    auth_method: String,
    #[serde(default)]
    selector: String,
    #[serde(default)]
    bind_type: String,
    #[serde(default)]
    bind_name: String,
    #[serde(default)]
    bind_vars: Option<TemplateVariables>,
}

fn checked_rule(ctx: &Ctx, req: RuleRequest, id: String) -> Result<AclBindingRule, ApiError> {
    if req.auth_method.is_empty() {
        return Err(ApiError::bad_request(
            "Invalid Binding Rule: no AuthMethod is set",
        ));
    }
    let rule = AclBindingRule {
        id,
        description: req.description,
        auth_method: req.auth_method,
        selector: req.selector,
        bind_type: req.bind_type,
        bind_name: req.bind_name,
        bind_vars: req.bind_vars.filter(|v| !v.name.is_empty()),
        create_index: 0,
        modify_index: 0,
    };
    let method = method_of(&ctx.state.agent.server().read(), &rule.auth_method)?;
    weft_login::check_rule(&rule, &method).map_err(config_error)?;
    Ok(rule)
}

async fn set_rule(ctx: &Ctx, rule: AclBindingRule) -> Result<Reply, ApiError> {
    let id = rule.id.clone();
    write_and_show(ctx, Command::AclBindingRuleSet(Box::new(rule)), |store| {
        store.acl_binding_rule(&id).and_then(value)
    })
    .await
}

/// `PUT /v1/acl/binding-rule`.
pub async fn binding_rule_create(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let req: RuleRequest = ctx.decode()?;
    no_id_on_create(&req.id, "binding rule")?;
    let rule = checked_rule(&ctx, req, new_uuid())?;
    set_rule(&ctx, rule).await
}

/// `GET|PUT|DELETE /v1/acl/binding-rule/:id`.
pub async fn binding_rule(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let id = ctx.rest.clone();
    match ctx.method.as_str() {
        "GET" => show(&ctx, "ACL binding rule not found", |store| {
            store.acl_binding_rule(&id).and_then(value)
        }),
        "PUT" => {
            let mut req: RuleRequest = ctx.decode()?;
            same_id(&req.id, &id, "Binding Rule ID")?;
            let current = ctx
                .state
                .agent
                .server()
                .read()
                .acl_binding_rule(&id)
                .map(|r| r.auth_method.clone())
                .ok_or_else(|| ApiError::not_found("Cannot find binding rule to update"))?;
            if req.auth_method.is_empty() {
                req.auth_method = current.clone();
            }
            if req.auth_method != current {
                return Err(ApiError::bad_request(
                    "Invalid Binding Rule: cannot change the AuthMethod of a binding rule",
                ));
            }
            let rule = checked_rule(&ctx, req, id)?;
            set_rule(&ctx, rule).await
        }
        _ => delete_one(&ctx, "binding rule", Command::AclBindingRuleDelete { id }).await,
    }
}

/// `GET /v1/acl/binding-rules?authmethod=`.
pub async fn binding_rules(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let server = ctx.state.agent.server();
    let store = server.read();
    let method = ctx.param("authmethod").filter(|m| !m.is_empty());
    let list: Vec<Value> = store
        .acl_binding_rules()
        .filter(|r| method.is_none_or(|m| r.auth_method == m))
        .filter_map(value)
        .collect();
    Ok(ctx.json(&Value::Array(list)))
}

// ---------------------------------------------------------------------------------------------------------------
// Login and logout

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LoginRequest {
    #[serde(default)]
    auth_method: String,
    #[serde(default)]
    bearer_token: String,
    #[serde(default)]
    meta: Option<Map<String, Value>>,
}

fn denied(reason: &str) -> ApiError {
    if reason.is_empty() {
        ApiError::new(StatusCode::FORBIDDEN, "Permission denied")
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Permission denied: {reason}"),
        )
    }
}

/// The token a login creates: what the matching binding rules grant, or a refusal.
fn login_token(ctx: &Ctx, req: &LoginRequest, now: u64) -> Result<AclToken, ApiError> {
    let server = ctx.state.agent.server();
    let store = server.read();
    let method = store
        .acl_auth_method(&req.auth_method)
        .ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "ACL not found"))?;
    let jwt = JwtMethod::from_config(&Value::Object(method.config.clone()))
        .map_err(|e| denied(&format!("the auth method cannot check logins: {e}")))?;
    let identity = jwt
        .login(&req.bearer_token, now / 1000)
        .map_err(|e| denied(&e.to_string()))?;
    let rules: Vec<&AclBindingRule> = store
        .acl_binding_rules()
        .filter(|r| r.auth_method == method.name)
        .collect();
    let bound = weft_login::bind(&rules, &identity).map_err(|e| denied(&e.to_string()))?;
    let dc = ctx.state.agent.config().datacenter.clone();
    let link = |id: &str, name: &str| AclLink {
        id: id.into(),
        name: name.into(),
    };
    // Roles and policies that do not exist are left out, as Consul does.
    let policies: Vec<AclLink> = bound
        .policies
        .iter()
        .filter_map(|n| store.acl_policy_by_name(n).map(|p| link(&p.id, &p.name)))
        .collect();
    let roles: Vec<AclLink> = bound
        .roles
        .iter()
        .filter_map(|n| store.acl_role_by_name(n).map(|r| link(&r.id, &r.name)))
        .collect();
    let mut templated = Vec::new();
    for (template, name) in &bound.templated {
        let var = (!name.is_empty()).then_some(name.as_str());
        if weft_acl::render_template(template, var).is_err() {
            continue;
        }
        templated.push(TemplatedPolicyLink {
            template_name: template.clone(),
            template_variables: var.map(|n| TemplateVariables { name: n.into() }),
            datacenters: Vec::new(),
        });
    }
    let grants = AclGrants {
        policies,
        service_identities: bound
            .services
            .iter()
            .map(|s| ServiceIdentity {
                service_name: s.clone(),
                datacenters: Vec::new(),
            })
            .collect(),
        node_identities: bound
            .nodes
            .iter()
            .map(|n| NodeIdentity {
                node_name: n.clone(),
                datacenter: dc.clone(),
            })
            .collect(),
        templated_policies: templated,
    };
    if grants == AclGrants::default() && roles.is_empty() {
        return Err(denied(""));
    }
    let description = match &req.meta {
        Some(meta) if !meta.is_empty() => {
            format!("token created via login: {}", Value::Object(meta.clone()))
        }
        _ => "token created via login".to_string(),
    };
    let expiration_time = (!method.max_token_ttl.is_empty())
        .then(|| parse_duration(&method.max_token_ttl).ok())
        .flatten()
        .map(|ttl| now.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64));
    let mut token = AclToken {
        accessor_id: new_uuid(),
        secret_id: new_uuid(),
        description,
        grants,
        roles,
        local: method.token_locality != "global",
        auth_method: method.name.clone(),
        expiration_time,
        create_time: now,
        ..AclToken::default()
    };
    token.hash = grants_hash(&token.grants, &[&token.description]);
    Ok(token)
}

/// `POST /v1/acl/login` `{"AuthMethod", "BearerToken", "Meta"}`: a new token for a verified credential.
pub async fn login(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let req: LoginRequest = ctx.decode()?;
    if req.auth_method.is_empty() {
        return Err(ApiError::bad_request("Missing auth method name"));
    }
    if req.bearer_token.is_empty() {
        return Err(ApiError::bad_request("Missing bearer token"));
    }
    if let Some(meta) = &req.meta {
        let size = Value::Object(meta.clone()).to_string().len();
        if meta.len() > 64 || size > 4096 {
            return Err(ApiError::bad_request(
                "Meta is too large: at most 64 keys and 4 KiB",
            ));
        }
    }
    let token = login_token(&ctx, &req, now_ms())?;
    set_token(&ctx, token).await
}

/// `POST /v1/acl/logout`: deletes the token the request carries, if a login created it.
pub async fn logout(ctx: Ctx) -> Result<Reply, ApiError> {
    enabled(&ctx)?;
    let not_found = || ApiError::new(StatusCode::FORBIDDEN, "ACL not found");
    let secret = crate::caller::token_of(&ctx.query, &ctx.headers).ok_or_else(not_found)?;
    let accessor = {
        let server = ctx.state.agent.server();
        let store = server.read();
        let token = store
            .token_by_secret(&secret)
            .filter(|t| !t.expired(now_ms()))
            .ok_or_else(not_found)?;
        if token.auth_method.is_empty() {
            return Err(denied("only tokens created by a login can log out"));
        }
        token.accessor_id.clone()
    };
    delete_one(
        &ctx,
        "token",
        Command::AclTokenDelete {
            accessor_id: accessor,
        },
    )
    .await
}
