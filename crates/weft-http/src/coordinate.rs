//! `/v1/coordinate/...`: the network coordinates agents compute from gossip round trips (Consul's shapes).
//! `datacenters` lists the WAN pool's datacenters with their servers' WAN coordinates.

use crate::blocking::read_reply;
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use serde_json::{json, Value};
use weft_acl::{Named, Need};
use weft_state::{Command, Store, Table};
use weft_types::coordinate::CoordinateUpdate;

fn entry(node: &str, coord: &weft_types::coordinate::Coordinate) -> Value {
    json!({"Node": node, "Segment": "", "Partition": "default", "Coord": coord})
}

/// `GET /v1/coordinate/datacenters`: each datacenter's servers with their WAN coordinates (those without one yet
/// left out); without WAN federation, this datacenter alone with its servers' LAN coordinates. Servers this caller
/// may not read as nodes are left out.
pub async fn datacenters(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    // A client agent is in no WAN pool: even a `?stale` or `?cached` read goes to its servers.
    let to_servers = crate::forward::to_servers(
        &ctx.state,
        &ctx.method,
        "/v1/coordinate/datacenters",
        &ctx.headers,
    );
    if let Some(reply) = to_servers.await {
        return Ok(reply);
    }
    let server = ctx.state.agent.server();
    if server.wan().is_some() {
        let list: Vec<Value> = server
            .datacenters()
            .into_iter()
            .map(|dc| {
                let suffix = format!(".{}", dc.name);
                let coordinates: Vec<Value> = dc
                    .coordinates
                    .iter()
                    .filter(|(member, _)| {
                        let node = member.strip_suffix(&suffix).unwrap_or(member);
                        ctx.caller.may(Named::Node, node, Need::Read)
                    })
                    .filter_map(|(member, c)| Some(json!({"Node": member, "Coord": c.as_ref()?})))
                    .collect();
                json!({"Datacenter": dc.name, "AreaID": "wan", "Coordinates": coordinates})
            })
            .collect();
        return Ok(ctx.json(&Value::Array(list)));
    }
    let dc = ctx.state.agent.config().datacenter.clone();
    let names: Vec<String> = server
        .autopilot_health()
        .into_iter()
        .map(|h| h.name)
        .collect();
    let store = server.read();
    let coordinates: Vec<Value> = names
        .iter()
        .filter(|n| ctx.caller.may(Named::Node, n, Need::Read))
        .filter_map(|n| {
            store
                .coordinate(n)
                .map(|c| json!({"Node": format!("{n}.{dc}"), "Coord": c}))
        })
        .collect();
    Ok(ctx.json(&json!([{"Datacenter": dc, "AreaID": "wan", "Coordinates": coordinates}])))
}

/// `GET /v1/coordinate/nodes` (blocking; `node:read` filters).
pub async fn nodes(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    read_reply(&ctx, &[Table::Coordinates], |s: &Store| {
        let list: Vec<Value> = s
            .coordinates()
            .filter(|(n, _)| ctx.caller.may(Named::Node, n, Need::Read))
            .map(|(n, c)| entry(n, c))
            .collect();
        (s.table_index(Table::Coordinates), Value::Array(list))
    })
    .await
}

/// `GET /v1/coordinate/node/:node` (blocking): a list of one, or 404 when the node has no coordinate.
pub async fn node(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let name = ctx.required_rest("node name")?;
    let reply = read_reply(&ctx, &[Table::Coordinates], |s: &Store| {
        let list: Vec<Value> = s
            .coordinate(&name)
            .map(|c| entry(&name, c))
            .into_iter()
            .collect();
        (s.table_index(Table::Coordinates), Value::Array(list))
    })
    .await?;
    if reply.body.as_ref() == b"[]" {
        return Err(ApiError::not_found(""));
    }
    Ok(reply)
}

/// `PUT /v1/coordinate/update`: sets a node's coordinate (`node:write` on it).
pub async fn update(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let body: CoordinateUpdate = ctx.decode()?;
    if body.node.is_empty() {
        return Err(ApiError::bad_request("Missing node name"));
    }
    ctx.caller.require(Named::Node, &body.node, Need::Write)?;
    let Some(coord) = body.coord.filter(|c| c.is_valid()) else {
        return Err(ApiError::bad_request(format!(
            "invalid coordinate: Coord needs {} finite numbers in Vec and finite, non-negative Error and Height",
            weft_types::coordinate::DIMENSIONS
        )));
    };
    let server = ctx.state.agent.server();
    if server.read().node(&body.node).is_none() {
        return Err(ApiError::not_found(format!(
            "Node \"{}\" does not exist",
            body.node
        )));
    }
    server
        .write(Command::CoordinatesSet(vec![(body.node, coord)]))
        .await?;
    Ok(Reply::empty())
}
