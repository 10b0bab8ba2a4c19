//! `/v1/health/...`: checks by node, service and state, and service instances with their health.

use crate::blocking::read_reply;
use crate::catalog::filtered;
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use serde_json::Value;
use weft_acl::{Named, Need};
use weft_state::{Store, Table};
use weft_types::{CheckStatus, HealthCheck};

fn to_json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub async fn node(ctx: Ctx) -> Result<Reply, ApiError> {
    let name = ctx.required_rest("node name")?;
    let filter = ctx.filter()?;
    read_reply(&ctx, &[Table::Checks], |s: &Store| {
        let list: Vec<Value> = s
            .node_checks(&name)
            .filter(|c| may_read_check(&ctx, c))
            .map(to_json)
            .collect();
        (
            s.table_index(Table::Checks),
            filtered(Value::Array(list), &filter),
        )
    })
    .await
}

pub async fn checks(ctx: Ctx) -> Result<Reply, ApiError> {
    let name = ctx.required_rest("service name")?;
    let filter = ctx.filter()?;
    read_reply(&ctx, &[Table::Checks, Table::Services], |s: &Store| {
        let list: Vec<Value> = s
            .service_checks(&name)
            .into_iter()
            .filter(|c| ctx.caller.may(Named::Node, &c.node, Need::Read))
            .map(to_json)
            .collect();
        (
            s.service_index(&name),
            filtered(Value::Array(list), &filter),
        )
    })
    .await
}

pub async fn state(ctx: Ctx) -> Result<Reply, ApiError> {
    let state = ctx.required_rest("check state")?;
    let wanted: Option<CheckStatus> = match state.as_str() {
        "any" => None,
        other => Some(
            other
                .parse()
                .map_err(|_| ApiError::bad_request(format!("Invalid check state: {other:?}")))?,
        ),
    };
    let filter = ctx.filter()?;
    let meta = ctx.node_meta();
    read_reply(&ctx, &[Table::Checks, Table::Nodes], |s: &Store| {
        let list: Vec<Value> = s
            .all_checks()
            .filter(|c| wanted.is_none_or(|w| c.status == w))
            // `?node-meta=k:v` (repeatable): only checks on nodes carrying every pair, as Consul filters them.
            .filter(|c| {
                meta.is_empty()
                    || s.node(&c.node)
                        .is_some_and(|n| meta.iter().all(|(k, v)| n.meta.get(k) == Some(v)))
            })
            .filter(|c| may_read_check(&ctx, c))
            .map(to_json)
            .collect();
        (
            s.table_index(Table::Checks),
            filtered(Value::Array(list), &filter),
        )
    })
    .await
}

/// A check is readable with read on its service, or on its node for node checks.
fn may_read_check(ctx: &Ctx, check: &HealthCheck) -> bool {
    if check.service_name.is_empty() {
        ctx.caller.may(Named::Node, &check.node, Need::Read)
    } else {
        ctx.caller
            .may(Named::Service, &check.service_name, Need::Read)
    }
}

/// `?passing`: presence, `1`, `true` (and `""`) mean yes; Consul's error for anything unparseable.
fn passing_param(ctx: &Ctx) -> Result<bool, ApiError> {
    match ctx.param("passing") {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => weft_types::flags::parse_go_bool(v)
            .ok_or_else(|| ApiError::bad_request("Invalid value for ?passing")),
    }
}

/// Which instances a health query lists.
#[derive(Clone, Copy)]
enum Instances {
    /// `/v1/health/service/:name`.
    Service,
    /// `/v1/health/connect/:name`: its sidecar proxies and Connect-native instances.
    Connect,
    /// `/v1/health/ingress/:name`: the ingress gateways that carry it.
    Ingress,
}

async fn service_health(ctx: Ctx, which: Instances) -> Result<Reply, ApiError> {
    let name = ctx.required_rest("service name")?;
    let filter = ctx.filter()?;
    let passing = passing_param(&ctx)?;
    let tags: Vec<String> = ctx.params("tag").into_iter().map(str::to_string).collect();
    let meta = ctx.node_meta();
    let near = ctx.near();
    // Gateways carry what their config entries say, too.
    let tables: &[Table] = match which {
        Instances::Ingress => &[
            Table::Services,
            Table::Checks,
            Table::Nodes,
            Table::ConfigEntries,
        ],
        _ => &[Table::Services, Table::Checks, Table::Nodes],
    };
    read_reply(&ctx, tables, |s: &Store| {
        let instances = match which {
            Instances::Service => s.check_service_nodes(&name, false),
            Instances::Connect => s.check_service_nodes(&name, true),
            Instances::Ingress => s.ingress_gateways_for(&name),
        };
        let mut instances = instances;
        if let Some(near) = &near {
            s.sort_instances_near(&mut instances, near);
        }
        let list: Vec<Value> = instances
            .into_iter()
            .filter(|csn| tags.iter().all(|t| csn.service.tags.contains(t)))
            .filter(|csn| meta.iter().all(|(k, v)| csn.node.meta.get(k) == Some(v)))
            .filter(|csn| !passing || csn.checks.iter().all(|c| c.status == CheckStatus::Passing))
            .filter(|csn| ctx.caller.may(Named::Node, &csn.node.node, Need::Read))
            // A gateway is a service of its own: its name must be readable too.
            .filter(|csn| {
                ctx.caller
                    .may(Named::Service, &csn.service.service, Need::Read)
            })
            .map(to_json)
            .collect();
        let index = match which {
            // Gateways are registered under their own names: any service or config entry change may add or
            // drop one.
            Instances::Ingress => s
                .table_index(Table::Services)
                .max(s.table_index(Table::ConfigEntries)),
            _ => s.service_index(&name),
        };
        (index, filtered(Value::Array(list), &filter))
    })
    .await
}

pub async fn service(ctx: Ctx) -> Result<Reply, ApiError> {
    service_health(ctx, Instances::Service).await
}

pub async fn connect(ctx: Ctx) -> Result<Reply, ApiError> {
    service_health(ctx, Instances::Connect).await
}

pub async fn ingress(ctx: Ctx) -> Result<Reply, ApiError> {
    service_health(ctx, Instances::Ingress).await
}
