//! `/v1/agent/...`: this agent's own view (self, members, local services and checks) and its local writes.

use crate::blocking::wait_local_change;
use crate::ctx::{filter_map, Ctx};
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::hash::{Hash, Hasher};
use tokio::time::Instant;
use weft_acl::{Named, Need};
use weft_agent::Source;
use weft_server::MemberView;
use weft_types::views::AgentService;
use weft_types::{
    CheckDefinition, CheckStatus, HealthCheck, NodeService, ServiceDefinition, VERSION,
};

pub async fn members(ctx: Ctx) -> Result<Reply, ApiError> {
    if ctx.param("segment").is_some_and(|s| !s.is_empty()) && ctx.flag("wan") {
        return Err(ApiError::bad_request(
            "Cannot provide a segment with wan=true",
        ));
    }
    if ctx.flag("wan") {
        // The WAN pool's servers (`<node>.<dc>`); an agent outside it knows none, as a Consul client agent.
        let list: Vec<Value> = ctx
            .state
            .agent
            .server()
            .wan_members()
            .unwrap_or_default()
            .iter()
            .filter(|m| {
                let node = m.name.rsplit_once('.').map_or(m.name.as_str(), |(n, _)| n);
                ctx.caller.may(Named::Node, node, Need::Read)
            })
            .map(member_json)
            .collect();
        return Ok(ctx.json(&Value::Array(list)));
    }
    let Some(members) = ctx.state.agent.server().members() else {
        // Without gossip (dev mode) the agent is its only member.
        let node = &ctx.state.agent.config().node_name;
        let me = if ctx.caller.may(Named::Node, node, Need::Read) {
            vec![crate::agent_self::member(&ctx)]
        } else {
            Vec::new()
        };
        return Ok(ctx.json(&Value::Array(me)));
    };
    let list: Vec<Value> = members
        .iter()
        .filter(|m| ctx.caller.may(Named::Node, &m.name, Need::Read))
        .map(member_json)
        .collect();
    Ok(ctx.json(&Value::Array(list)))
}

/// A member in Consul's `/v1/agent/members` shape.
pub(crate) fn member_json(m: &MemberView) -> Value {
    json!({
        "Name": m.name,
        "Addr": m.addr.ip().to_string(),
        "Port": m.addr.port(),
        "Tags": {
            "role": if m.server { "consul" } else { "node" },
            "dc": m.datacenter,
            "build": format!("{}:weft", m.build),
            "port": m.rpc_port,
            "expect": m.bootstrap_expect.to_string(),
            "vsn": "2", "vsn_min": "2", "vsn_max": "3", "raft_vsn": "3", "segment": "",
        },
        "Status": m.status.code(),
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// `PUT /v1/agent/join/:address`: joins this agent's gossip pool through another agent; with `?wan`, this
/// server's WAN pool through another datacenter's server.
pub async fn join(ctx: Ctx) -> Result<Reply, ApiError> {
    let target = ctx.required_rest("address")?.trim().to_string();
    let server = ctx.state.agent.server();
    let joined = if ctx.flag("wan") {
        server.join_wan(&target).await
    } else {
        server.join_through(&target).await
    };
    joined.map_err(|e| ApiError::internal(format!("Failed to join {target}: {e}")))?;
    Ok(Reply::empty())
}

/// `PUT /v1/agent/force-leave/:node`: turns a failed member into one that left (the leader then deregisters it).
pub async fn force_leave(ctx: Ctx) -> Result<Reply, ApiError> {
    let node = ctx.rest.trim().to_string();
    let found = ctx
        .state
        .agent
        .server()
        .force_leave(&node)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !found {
        return Err(ApiError::internal(format!(
            "agent: No failed node found with name {node:?}"
        )));
    }
    Ok(Reply::empty())
}

pub async fn version(ctx: Ctx) -> Result<Reply, ApiError> {
    Ok(ctx.json(&json!({"SHA": "weft", "BuildDate": "", "HumanVersion": VERSION, "FIPS": ""})))
}

fn agent_service_json(svc: &NodeService, dc: &str) -> Value {
    serde_json::to_value(AgentService::new(svc, dc)).unwrap_or(Value::Null)
}

pub async fn services(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let filter = ctx.filter()?;
    let dc = ctx.datacenter().to_string();
    let map: Map<String, Value> = ctx
        .state
        .agent
        .services()
        .iter()
        .filter(|s| ctx.caller.may(Named::Service, &s.service, Need::Read))
        .map(|s| (s.id.clone(), agent_service_json(s, &dc)))
        .collect();
    Ok(ctx.json(&Value::Object(filter_map(map, &filter))))
}

fn content_hash(value: &Value) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// `GET /v1/agent/service/:id`, with hash-based blocking (`?hash=&wait=`).
pub async fn service(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let id = ctx.required_rest("service id")?;
    require_service_id(&ctx, &id, Need::Read)?;
    let wait = ctx.blocking_wait()?;
    let want_hash = ctx.param("hash").map(str::to_string);
    let mut changes = ctx.state.agent.subscribe_changes();
    let deadline = Instant::now() + wait;
    loop {
        changes.borrow_and_update();
        let svc = ctx
            .state
            .agent
            .service(&id)
            .ok_or_else(|| ApiError::not_found(format!("unknown service ID: {id}")))?;
        let mut value = agent_service_json(&svc, ctx.datacenter());
        let hash = content_hash(&value);
        let unchanged = want_hash
            .as_deref()
            .is_some_and(|h| !h.is_empty() && h == hash);
        if !unchanged || !wait_local_change(&mut changes, deadline).await {
            if let Value::Object(map) = &mut value {
                map.insert("ContentHash".into(), Value::String(hash.clone()));
            }
            let mut reply = ctx.json(&value);
            reply.set("x-consul-contenthash", &hash);
            return Ok(reply);
        }
    }
}

pub async fn register_service(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let def: ServiceDefinition = ctx.decode()?;
    require_registration(&ctx, &def)?;
    let replace = ctx.flag("replace-existing-checks");
    ctx.state
        .agent
        .register_service(&def, replace, Source::Api)
        .await?;
    Ok(Reply::empty())
}

pub async fn deregister_service(ctx: Ctx) -> Result<Reply, ApiError> {
    let id = ctx.required_rest("service id")?;
    require_service_id(&ctx, &id, Need::Write)?;
    ctx.state.agent.deregister_service(&id).await?;
    Ok(Reply::empty())
}

fn enable_param(ctx: &Ctx) -> Result<bool, ApiError> {
    match ctx.param("enable") {
        None | Some("") => Err(ApiError::bad_request("Missing value for enable")),
        Some(v) => weft_types::flags::parse_go_bool(v)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid value for enable: {v:?}"))),
    }
}

pub async fn service_maintenance(ctx: Ctx) -> Result<Reply, ApiError> {
    let id = ctx.required_rest("service id")?;
    require_service_id(&ctx, &id, Need::Write)?;
    let enable = enable_param(&ctx)?;
    ctx.state
        .agent
        .service_maintenance(&id, enable, ctx.param("reason").unwrap_or(""))
        .await?;
    Ok(Reply::empty())
}

pub async fn node_maintenance(ctx: Ctx) -> Result<Reply, ApiError> {
    let enable = enable_param(&ctx)?;
    ctx.state
        .agent
        .node_maintenance(enable, ctx.param("reason").unwrap_or(""))
        .await?;
    Ok(Reply::empty())
}

pub async fn checks(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let filter = ctx.filter()?;
    let map: Map<String, Value> = ctx
        .state
        .agent
        .checks()
        .into_iter()
        .filter(|c| {
            let (kind, name) = check_owner(&ctx, c);
            ctx.caller.may(kind, &name, Need::Read)
        })
        .map(|c| {
            (
                c.check_id.clone(),
                serde_json::to_value(&c).unwrap_or(Value::Null),
            )
        })
        .collect();
    Ok(ctx.json(&Value::Object(filter_map(map, &filter))))
}

pub async fn register_check(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let def: CheckDefinition = ctx.decode()?;
    if def.service_id.is_empty() {
        let node = ctx.state.agent.config().node_name.clone();
        ctx.caller.require(Named::Node, &node, Need::Write)?;
    } else {
        require_service_id(&ctx, &def.service_id, Need::Write)?;
    }
    ctx.state.agent.register_check(&def, Source::Api).await?;
    Ok(Reply::empty())
}

pub async fn deregister_check(ctx: Ctx) -> Result<Reply, ApiError> {
    let id = ctx.required_rest("check id")?;
    require_check_id(&ctx, &id)?;
    ctx.state.agent.deregister_check(&id).await?;
    Ok(Reply::empty())
}

async fn set_ttl(ctx: Ctx, status: CheckStatus) -> Result<Reply, ApiError> {
    let id = ctx.required_rest("check id")?;
    require_check_id(&ctx, &id)?;
    ctx.state
        .agent
        .update_ttl_check(&id, status, ctx.param("note").unwrap_or(""))
        .await?;
    Ok(Reply::empty())
}

pub async fn check_pass(ctx: Ctx) -> Result<Reply, ApiError> {
    set_ttl(ctx, CheckStatus::Passing).await
}

pub async fn check_warn(ctx: Ctx) -> Result<Reply, ApiError> {
    set_ttl(ctx, CheckStatus::Warning).await
}

pub async fn check_fail(ctx: Ctx) -> Result<Reply, ApiError> {
    set_ttl(ctx, CheckStatus::Critical).await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CheckUpdate {
    status: String,
    output: String,
}

pub async fn check_update(ctx: Ctx) -> Result<Reply, ApiError> {
    let id = ctx.required_rest("check id")?;
    require_check_id(&ctx, &id)?;
    let update: CheckUpdate = ctx.decode()?;
    let status: CheckStatus = update
        .status
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid check status: '{}'", update.status)))?;
    ctx.state
        .agent
        .update_ttl_check(&id, status, &update.output)
        .await?;
    Ok(Reply::empty())
}

fn wants_text(ctx: &Ctx) -> bool {
    ctx.param("format") == Some("text")
        || ctx
            .headers
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("text/plain"))
}

fn health_status_code(status: CheckStatus) -> StatusCode {
    match status {
        CheckStatus::Passing => StatusCode::OK,
        CheckStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
        CheckStatus::Critical => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn aggregate(checks: &[HealthCheck]) -> CheckStatus {
    checks
        .iter()
        .fold(CheckStatus::Passing, |acc, c| acc.worst(c.status))
}

fn health_entry(svc: &NodeService, checks: &[HealthCheck], dc: &str) -> Value {
    json!({"AggregatedStatus": aggregate(checks), "Service": agent_service_json(svc, dc), "Checks": checks})
}

pub async fn health_by_id(ctx: Ctx) -> Result<Reply, ApiError> {
    let id = ctx.required_rest("serviceID")?;
    require_service_id(&ctx, &id, Need::Read)?;
    let Some((svc, checks)) = ctx.state.agent.service_health(&id) else {
        let reason = format!("ServiceId {id} not found");
        if wants_text(&ctx) {
            return Ok(Reply::text(StatusCode::NOT_FOUND, reason));
        }
        let mut reply = ctx
            .json(&json!({"AggregatedStatus": "critical", "Service": null, "Checks": null}))
            .with_status(StatusCode::NOT_FOUND);
        reply.set("x-consul-reason", reason);
        return Ok(reply);
    };
    let status = aggregate(&checks);
    let mut reply = if wants_text(&ctx) {
        Reply::text(StatusCode::OK, status.as_str())
    } else {
        ctx.json(&health_entry(&svc, &checks, ctx.datacenter()))
    };
    reply.set("x-consul-reason", status.as_str());
    Ok(reply.with_status(health_status_code(status)))
}

pub async fn health_by_name(ctx: Ctx) -> Result<Reply, ApiError> {
    let name = ctx.required_rest("service name")?;
    let instances: Vec<(NodeService, Vec<HealthCheck>)> = ctx
        .state
        .agent
        .services()
        .into_iter()
        .filter(|s| s.service == name)
        .filter_map(|s| ctx.state.agent.service_health(&s.id))
        .collect();
    if instances.is_empty() {
        let reason = format!("ServiceName {name} Not Found");
        if wants_text(&ctx) {
            return Ok(Reply::text(StatusCode::NOT_FOUND, reason));
        }
        let mut reply = ctx.json(&json!([])).with_status(StatusCode::NOT_FOUND);
        reply.set("x-consul-reason", reason);
        return Ok(reply);
    }
    let status = instances
        .iter()
        .fold(CheckStatus::Passing, |acc, (_, c)| acc.worst(aggregate(c)));
    let mut reply = if wants_text(&ctx) {
        Reply::text(StatusCode::OK, status.as_str())
    } else {
        let list: Vec<Value> = instances
            .iter()
            .map(|(s, c)| health_entry(s, c, ctx.datacenter()))
            .collect();
        ctx.json(&Value::Array(list))
    };
    reply.set("x-consul-reason", status.as_str());
    Ok(reply.with_status(health_status_code(status)))
}

pub async fn reload(ctx: Ctx) -> Result<Reply, ApiError> {
    let Some(reload) = ctx.state.reload.clone() else {
        return Err(ApiError::internal(
            "This agent cannot reload its configuration",
        ));
    };
    let restart = reload()
        .await
        .map_err(|e| ApiError::internal(format!("Failed to reload configs: {e}")))?;
    let mut reply = Reply::empty();
    // Consul answers an empty 200; the settings that changed but wait for a restart ride in a header (`weft reload`
    // prints them), so they are never silently ignored.
    if !restart.is_empty() {
        reply.set("x-weft-restart-required", restart.join(","));
    }
    Ok(reply)
}

pub async fn leave(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.state.agent.leave().await?;
    ctx.state.shutdown.notify_one();
    Ok(Reply::empty())
}

/// The rule for a local service instance applies to its service name. An unknown ID is the handler's 404.
fn require_service_id(ctx: &Ctx, id: &str, need: Need) -> Result<(), ApiError> {
    match ctx.state.agent.service(id) {
        Some(svc) => ctx.caller.require(Named::Service, &svc.service, need),
        None => Ok(()),
    }
}

/// Who owns a check: its service, or this node for node checks.
fn check_owner(ctx: &Ctx, check: &HealthCheck) -> (Named, String) {
    if check.service_id.is_empty() {
        (Named::Node, ctx.state.agent.config().node_name.clone())
    } else {
        let name = if check.service_name.is_empty() {
            ctx.state
                .agent
                .service(&check.service_id)
                .map(|s| s.service)
                .unwrap_or_else(|| check.service_id.clone())
        } else {
            check.service_name.clone()
        };
        (Named::Service, name)
    }
}

/// Write on a local check's owner. An unknown ID is the handler's 404.
fn require_check_id(ctx: &Ctx, id: &str) -> Result<(), ApiError> {
    match ctx
        .state
        .agent
        .checks()
        .into_iter()
        .find(|c| c.check_id == id)
    {
        Some(check) => {
            let (kind, name) = check_owner(ctx, &check);
            ctx.caller.require(kind, &name, Need::Write)
        }
        None => Ok(()),
    }
}

/// A registration needs write on the service it registers, on its sidecar, on the service a proxy fronts, and on
/// the service an existing registration of the same ID belongs to (as Consul checks).
fn require_registration(ctx: &Ctx, def: &ServiceDefinition) -> Result<(), ApiError> {
    ctx.caller.require(Named::Service, &def.name, Need::Write)?;
    if let Some(proxy) = &def.proxy {
        if !proxy.destination_service_name.is_empty() {
            ctx.caller
                .require(Named::Service, &proxy.destination_service_name, Need::Write)?;
        }
    }
    if let Some(sidecar) = def
        .connect
        .as_ref()
        .and_then(|c| c.sidecar_service.as_ref())
    {
        let name = if sidecar.name.is_empty() {
            format!("{}-sidecar-proxy", def.name)
        } else {
            sidecar.name.clone()
        };
        ctx.caller.require(Named::Service, &name, Need::Write)?;
    }
    let id = if def.id.is_empty() {
        &def.name
    } else {
        &def.id
    };
    require_service_id(ctx, id, Need::Write)
}
