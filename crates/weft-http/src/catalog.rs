//! `/v1/catalog/...`: the cluster-wide registry of nodes and services, read with blocking queries and written by
//! hand (`register`/`deregister`, which run no checks).

use crate::blocking::{prepare, read, read_reply};
use crate::ctx::{filter_list, Ctx};
use crate::reply::{ApiError, Reply};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use weft_acl::{Named, Need};
use weft_state::{Command, Registration, Store, Table};
use weft_types::service::NodeService;
use weft_types::views::{NodeServiceList, NodeServices, ServiceNode};
use weft_types::{CheckStatus, HealthCheck, HealthCheckDefinition, Node};

/// A check in a catalog registration: like `HealthCheck`, but the status is checked by hand so a bad value gets
/// Consul's message and an empty one means critical.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CatalogCheck {
    node: String,
    #[serde(rename = "CheckID", alias = "ID")]
    check_id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    definition: HealthCheckDefinition,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RegisterRequest {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    node_meta: BTreeMap<String, String>,
    locality: Option<weft_types::service::Locality>,
    service: Option<NodeService>,
    check: Option<CatalogCheck>,
    checks: Vec<CatalogCheck>,
    skip_node_update: bool,
}

fn check_dc(ctx: &Ctx, dc: &str) -> Result<(), ApiError> {
    if !dc.is_empty() && dc != ctx.datacenter() {
        return Err(ApiError::internal("No path to datacenter"));
    }
    Ok(())
}

pub async fn register(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let req: RegisterRequest = ctx.decode()?;
    check_dc(&ctx, &req.datacenter)?;
    if req.node.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    if req.address.is_empty() && !req.skip_node_update {
        return Err(ApiError::bad_request("Missing node address"));
    }
    let mut checks = Vec::new();
    for c in req.check.into_iter().chain(req.checks) {
        if !c.node.is_empty() && c.node != req.node {
            return Err(ApiError::bad_request(format!(
                "Check node {:?} does not match {:?}",
                c.node, req.node
            )));
        }
        let status = match c.status.as_str() {
            "" => CheckStatus::Critical,
            s => s
                .parse()
                .map_err(|_| ApiError::bad_request(format!("Invalid check status: '{s}'")))?,
        };
        checks.push(HealthCheck {
            node: req.node.clone(),
            check_id: c.check_id,
            name: c.name,
            status,
            notes: c.notes,
            output: c.output,
            service_id: c.service_id,
            definition: c.definition,
            ..HealthCheck::default()
        });
    }
    if let Some(svc) = &req.service {
        if svc.service.is_empty() {
            return Err(ApiError::bad_request("Must provide service name with ID"));
        }
    }
    let mut node = Node {
        id: req.id,
        node: req.node,
        address: req.address,
        datacenter: ctx.datacenter().to_string(),
        tagged_addresses: req.tagged_addresses,
        meta: req.node_meta,
        locality: req
            .locality
            .filter(|l| !l.region.is_empty() || !l.zone.is_empty()),
        ..Node::default()
    };
    node.fill_default_tagged_addresses();
    require_registration(
        &ctx,
        &node.node,
        req.skip_node_update,
        req.service.as_ref(),
        &checks,
    )?;
    let reg = Registration {
        node,
        skip_node_update: req.skip_node_update,
        service: req.service,
        checks,
    };
    ctx.state
        .agent
        .server()
        .write(Command::Register(Box::new(reg)))
        .await?;
    Ok(Reply::bool(true))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DeregisterRequest {
    node: String,
    datacenter: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    #[serde(rename = "CheckID")]
    check_id: String,
}

pub async fn deregister(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let req: DeregisterRequest = ctx.decode()?;
    check_dc(&ctx, &req.datacenter)?;
    if req.node.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    require_deregistration(&ctx, &req)?;
    ctx.state
        .agent
        .server()
        .write(Command::Deregister {
            node: req.node,
            service_id: Some(req.service_id).filter(|s| !s.is_empty()),
            check_id: Some(req.check_id).filter(|s| !s.is_empty()),
        })
        .await?;
    Ok(Reply::bool(true))
}

/// Every datacenter this server federates with (its own alone without WAN federation), nearest first. A client
/// agent is in no WAN pool: even a `?stale` or `?cached` read goes to its servers.
pub async fn datacenters(ctx: Ctx) -> Result<Reply, ApiError> {
    let to_servers = crate::forward::to_servers(
        &ctx.state,
        &ctx.method,
        "/v1/catalog/datacenters",
        &ctx.headers,
    );
    if let Some(reply) = to_servers.await {
        return Ok(reply);
    }
    let names: Vec<String> = ctx
        .state
        .agent
        .server()
        .datacenters()
        .into_iter()
        .map(|dc| dc.name)
        .collect();
    Ok(ctx.json(&json!(names)))
}

fn meta_matches(node: &Node, wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|(k, v)| node.meta.get(k) == Some(v))
}

fn to_json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub async fn nodes(ctx: Ctx) -> Result<Reply, ApiError> {
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    let near = ctx.near();
    read_reply(&ctx, &[Table::Nodes], |s: &Store| {
        let mut nodes: Vec<&weft_types::Node> = s
            .nodes()
            .filter(|n| meta_matches(n, &meta) && ctx.caller.may(Named::Node, &n.node, Need::Read))
            .collect();
        if let Some(near) = &near {
            s.sort_near(&mut nodes, near, |n| n.node.as_str());
        }
        let list: Vec<Value> = nodes.into_iter().map(to_json).collect();
        (
            s.table_index(Table::Nodes),
            filtered(Value::Array(list), &filter),
        )
    })
    .await
}

/// Applies a filter to the elements of a JSON array.
pub fn filtered(value: Value, filter: &Option<weft_filter::Filter>) -> Value {
    match value {
        Value::Array(items) => Value::Array(filter_list(items, filter)),
        other => other,
    }
}

pub async fn services(ctx: Ctx) -> Result<Reply, ApiError> {
    let consistency = prepare(&ctx)?;
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    let (index, value) = read(&ctx, &[Table::Services, Table::Nodes], |s: &Store| {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if meta.is_empty() && filter.is_none() {
            for (name, tags) in s.service_tags() {
                if !ctx.caller.may(Named::Service, name, Need::Read) {
                    continue;
                }
                out.insert(
                    name.to_string(),
                    tags.into_iter().map(str::to_string).collect(),
                );
            }
        } else {
            // Filters apply to the instances (ServiceNode fields), then the names and tags are gathered.
            for node in s.nodes().filter(|n| meta_matches(n, &meta)) {
                for svc in s.node_services(&node.node) {
                    if !ctx.caller.may(Named::Service, &svc.service, Need::Read) {
                        continue;
                    }
                    if filter
                        .as_ref()
                        .is_some_and(|f| !f.matches(&to_json(ServiceNode::new(node, svc))))
                    {
                        continue;
                    }
                    let tags = out.entry(svc.service.clone()).or_default();
                    tags.extend(svc.tags.iter().cloned());
                    tags.sort();
                    tags.dedup();
                }
            }
        }
        (
            s.table_index(Table::Services)
                .max(s.table_index(Table::Nodes)),
            to_json(out),
        )
    })
    .await?;
    Ok(ctx.read_meta(ctx.json(&value), index, consistency))
}

async fn service_nodes(ctx: Ctx, connect: bool) -> Result<Reply, ApiError> {
    let name = ctx.required_rest("service name")?;
    let filter = ctx.filter()?;
    let tags: Vec<String> = ctx.params("tag").into_iter().map(str::to_string).collect();
    let meta = ctx.node_meta();
    let near = ctx.near();
    let reply = read_reply(&ctx, &[Table::Services, Table::Nodes], |s: &Store| {
        let instances = if connect {
            s.connect_instances(&name)
        } else {
            s.instances(&name)
        };
        let mut kept: Vec<_> = instances
            .into_iter()
            .filter(|(n, svc)| meta_matches(n, &meta) && tags.iter().all(|t| svc.tags.contains(t)))
            .filter(|(n, _)| ctx.caller.may(Named::Node, &n.node, Need::Read))
            .collect();
        if let Some(near) = &near {
            s.sort_near(&mut kept, near, |(n, _)| n.node.as_str());
        }
        let list: Vec<Value> = kept
            .into_iter()
            .map(|(n, svc)| to_json(ServiceNode::new(n, svc)))
            .collect();
        (
            s.service_index(&name),
            Value::Array(filter_list(list, &filter)),
        )
    })
    .await?;
    Ok(reply)
}

pub async fn service(ctx: Ctx) -> Result<Reply, ApiError> {
    service_nodes(ctx, false).await
}

pub async fn connect(ctx: Ctx) -> Result<Reply, ApiError> {
    service_nodes(ctx, true).await
}

pub async fn node(ctx: Ctx) -> Result<Reply, ApiError> {
    let name = ctx.required_rest("node name")?;
    let filter = ctx.filter()?;
    read_reply(&ctx, &[Table::Nodes, Table::Services], |s: &Store| {
        let index = s
            .table_index(Table::Nodes)
            .max(s.table_index(Table::Services));
        let Some(node) = s.node(&name) else {
            return (index, Value::Null);
        };
        let services = NodeServices {
            node,
            services: s
                .node_services(&name)
                .filter(|v| ctx.caller.may(Named::Service, &v.service, Need::Read))
                .map(|v| (v.id.as_str(), v))
                .collect(),
        };
        let mut value = to_json(services);
        if let Some(Value::Object(map)) = value.get_mut("Services") {
            let kept: Map<String, Value> = std::mem::take(map)
                .into_iter()
                .filter(|(_, v)| filter.as_ref().is_none_or(|f| f.matches(v)))
                .collect();
            *map = kept;
        }
        (index, value)
    })
    .await
}

pub async fn node_services(ctx: Ctx) -> Result<Reply, ApiError> {
    let name = ctx.required_rest("node name")?;
    let filter = ctx.filter()?;
    read_reply(&ctx, &[Table::Nodes, Table::Services], |s: &Store| {
        let index = s
            .table_index(Table::Nodes)
            .max(s.table_index(Table::Services));
        let Some(node) = s.node(&name) else {
            return (index, json!({"Node": null, "Services": null}));
        };
        let list = NodeServiceList {
            node,
            services: s
                .node_services(&name)
                .filter(|v| ctx.caller.may(Named::Service, &v.service, Need::Read))
                .collect(),
        };
        let mut value = to_json(list);
        if let Some(services) = value.get_mut("Services") {
            *services = filtered(std::mem::take(services), &filter);
        }
        (index, value)
    })
    .await
}

/// The service name of instance `service_id` on `node`: from the registration itself, else from the catalog.
fn service_name_of(
    ctx: &Ctx,
    node: &str,
    service_id: &str,
    registering: Option<&NodeService>,
) -> String {
    if let Some(svc) =
        registering.filter(|s| s.id == service_id || (s.id.is_empty() && s.service == service_id))
    {
        return svc.service.clone();
    }
    ctx.state
        .agent
        .server()
        .read()
        .node_services(node)
        .find(|s| s.id == service_id)
        .map(|s| s.service.clone())
        .unwrap_or_else(|| service_id.to_string())
}

/// A catalog registration needs write on the node (unless it leaves the node alone), on the service it registers,
/// and on each check's owner, as Consul checks.
fn require_registration(
    ctx: &Ctx,
    node: &str,
    skip_node_update: bool,
    service: Option<&NodeService>,
    checks: &[HealthCheck],
) -> Result<(), ApiError> {
    let caller = &ctx.caller;
    if !skip_node_update {
        caller.require(Named::Node, node, Need::Write)?;
    }
    if let Some(svc) = service {
        caller.require(Named::Service, &svc.service, Need::Write)?;
    }
    for check in checks {
        if check.service_id.is_empty() {
            caller.require(Named::Node, node, Need::Write)?;
        } else {
            let name = service_name_of(ctx, node, &check.service_id, service);
            caller.require(Named::Service, &name, Need::Write)?;
        }
    }
    Ok(())
}

/// Removing a service needs write on it; removing the node or a node check needs write on the node.
fn require_deregistration(ctx: &Ctx, req: &DeregisterRequest) -> Result<(), ApiError> {
    let caller = &ctx.caller;
    if !req.service_id.is_empty() {
        let name = service_name_of(ctx, &req.node, &req.service_id, None);
        return caller.require(Named::Service, &name, Need::Write);
    }
    if !req.check_id.is_empty() {
        let owner = ctx
            .state
            .agent
            .server()
            .read()
            .node_checks(&req.node)
            .find(|c| c.check_id == req.check_id)
            .map(|c| c.service_id.clone())
            .filter(|id| !id.is_empty());
        if let Some(service_id) = owner {
            let name = service_name_of(ctx, &req.node, &service_id, None);
            return caller.require(Named::Service, &name, Need::Write);
        }
    }
    caller.require(Named::Node, &req.node, Need::Write)
}

/// `GET /v1/catalog/gateway-services/:gateway`: the services a gateway carries, in Consul's `GatewayService` shape,
/// from its config entry and from its registration (Weft's own ingress gateway).
pub async fn gateway_services(ctx: Ctx) -> Result<Reply, ApiError> {
    let gateway = ctx.required_rest("gateway name")?;
    read_reply(&ctx, &[Table::Services, Table::ConfigEntries], |s: &Store| {
        let list: Vec<Value> = s
            .gateway_services(&gateway)
            .into_iter()
            .filter(|g| g.service == "*" || ctx.caller.may(Named::Service, &g.service, Need::Read))
            .map(|g| {
                serde_json::json!({
                    "Gateway": {"Name": gateway}, "Service": {"Name": g.service},
                    "GatewayKind": g.kind, "Port": g.port, "Protocol": g.protocol,
                    "Hosts": if g.hosts.is_empty() { Value::Null } else { serde_json::json!(g.hosts) },
                    "CAFile": g.ca_file, "CertFile": g.cert_file, "KeyFile": g.key_file, "SNI": g.sni,
                    "FromWildcard": false,
                })
            })
            .collect();
        let index = s
            .table_index(Table::Services)
            .max(s.table_index(Table::ConfigEntries));
        (index, Value::Array(list))
    })
    .await
}
