//! `/v1/query`: prepared queries. Create and list on `/v1/query`; read, replace and delete by ID on
//! `/v1/query/:id`; run (`/execute`) and show the rendered query (`/explain`) by ID or name.
//!
//! ACLs are Consul's: managing a named query (or any template) needs `query:write` on its name, reading it
//! `query:read`; an unnamed static query is managed by whoever holds its ID and listed only for management tokens;
//! stored tokens read as `<hidden>` without `acl:write`. Running a query needs no `query` rule: its results are
//! filtered by `node:read` and `service:read` of the query's stored token, or else of the caller.
//!
//! Status codes: definition errors are 400 and an unknown ID 404, where Consul answers 500 for both.

use crate::blocking::read_reply;
use crate::caller::Caller;
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::{Method, StatusCode};
use rand::seq::SliceRandom;
use serde_json::{json, Value};
use std::sync::Arc;
use weft_acl::{Named, Need, Whole};
use weft_state::{Command, QueryLookupError, StoreError, Table};
use weft_types::query::PreparedQuery;
use weft_types::views::CheckServiceNode;

/// `GET /v1/query` (list) and `POST /v1/query` (create).
pub async fn collection(ctx: Ctx) -> Result<Reply, ApiError> {
    if ctx.method == Method::POST {
        return create(ctx).await;
    }
    let management = is_management(&ctx.caller);
    read_reply(&ctx, &[Table::Queries], |s| {
        let list: Vec<Value> = s
            .prepared_queries()
            .filter(|q| management || listable(&ctx.caller, q))
            .map(|q| shown(&ctx.caller, q))
            .collect();
        (s.table_index(Table::Queries), Value::Array(list))
    })
    .await
}

/// `GET|PUT|DELETE /v1/query/:id`, `GET /v1/query/:id_or_name/execute|explain`.
pub async fn item(ctx: Ctx) -> Result<Reply, ApiError> {
    let rest = ctx.required_rest("Query ID")?;
    for (suffix, run) in [("/execute", true), ("/explain", false)] {
        if let Some(name) = rest.strip_suffix(suffix) {
            if ctx.method != Method::GET {
                let mut r = Reply::text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("method {} not allowed", ctx.method),
                );
                r.set("allow", "OPTIONS,GET");
                return Ok(r);
            }
            let name = name.to_string();
            return if run {
                execute(ctx, &name).await
            } else {
                explain(ctx, &name).await
            };
        }
    }
    match ctx.method {
        Method::PUT => update(ctx, rest).await,
        Method::DELETE => delete(ctx, rest).await,
        _ => get(ctx, rest).await,
    }
}

fn is_management(caller: &Caller) -> bool {
    caller.identity.authorizer.whole(Whole::Acl, Need::Write)
}

/// Whether a list shows `q` to a caller without `acl:write`: only named queries (and templates) it may read.
fn listable(caller: &Caller, q: &PreparedQuery) -> bool {
    match q.acl_name() {
        Some(name) => caller.may(Named::Query, name, Need::Read),
        None => false,
    }
}

/// `q` as the caller sees it: the stored token only for management tokens.
fn shown(caller: &Caller, q: &PreparedQuery) -> Value {
    let q = if is_management(caller) {
        q.clone()
    } else {
        q.redacted()
    };
    serde_json::to_value(q).unwrap_or(Value::Null)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        e @ StoreError::QueryNotFound(_) => ApiError::not_found(e.to_string()),
        e @ (StoreError::QueryNameTaken(_)
        | StoreError::QueryCatchAllTaken
        | StoreError::QueryNameIsId(_)
        | StoreError::QueryTemplate(_)
        | StoreError::InvalidSession(_)) => ApiError::bad_request(e.to_string()),
        e => ApiError::from(e),
    }
}

fn lookup_error(e: QueryLookupError) -> ApiError {
    match e {
        QueryLookupError::NotFound => ApiError::not_found("Query not found"),
        e => ApiError::bad_request(e.to_string()),
    }
}

/// The body's definition, checked as Consul's `parseQuery` does.
fn definition(ctx: &Ctx, empty_ok: bool) -> Result<PreparedQuery, ApiError> {
    let q: PreparedQuery = if empty_ok {
        ctx.decode_or_default()?
    } else {
        ctx.decode()?
    };
    q.validate()
        .map_err(|why| ApiError::bad_request(format!("Invalid prepared query: {why}")))?;
    if !q.service.peer.is_empty()
        || q.service
            .failover
            .targets
            .iter()
            .any(|t| !t.peer.is_empty())
    {
        return Err(ApiError::bad_request(
            "Invalid prepared query: cluster peering is not supported by Weft (Service.Peer, Failover.Targets[].Peer)",
        ));
    }
    Ok(q)
}

fn require_write(caller: &Caller, q: &PreparedQuery) -> Result<(), ApiError> {
    match q.acl_name() {
        Some(name) => caller.require(Named::Query, name, Need::Write),
        None => Ok(()),
    }
}

async fn create(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let mut q = definition(&ctx, false)?;
    if !q.id.is_empty() {
        return Err(ApiError::bad_request(
            "ID must be empty when creating a new prepared query",
        ));
    }
    require_write(&ctx.caller, &q)?;
    q.id = weft_types::ids::new_uuid();
    let id = q.id.clone();
    write(&ctx, q, true).await?;
    Ok(ctx.json(&json!({ "ID": id })))
}

/// Stores `q`, creating it or replacing the query with its ID.
async fn write(ctx: &Ctx, q: PreparedQuery, create: bool) -> Result<(), ApiError> {
    ctx.state
        .agent
        .server()
        .write(Command::QuerySet {
            query: Box::new(q),
            create,
        })
        .await
        .map(|_| ())
        .map_err(store_error)
}

/// The stored query `id`, or 404.
fn stored(ctx: &Ctx, id: &str) -> Result<PreparedQuery, ApiError> {
    ctx.state
        .agent
        .server()
        .read()
        .prepared_query(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("Query not found"))
}

async fn get(ctx: Ctx, id: String) -> Result<Reply, ApiError> {
    let readable = |q: &PreparedQuery| match q.acl_name() {
        Some(name) => ctx.caller.require(Named::Query, name, Need::Read),
        None => Ok(()),
    };
    readable(&stored(&ctx, &id)?)?;
    let reply = read_reply(&ctx, &[Table::Queries], |s| match s.prepared_query(&id) {
        // Renamed while the caller waited, to a name it may not read: nothing here, and refused below.
        Some(q) if readable(q).is_err() => (q.modify_index, Value::Null),
        Some(q) => (q.modify_index, Value::Array(vec![shown(&ctx.caller, q)])),
        // Deleted while the caller waited: an empty list, as a blocking read of a vanished object gives.
        None => (s.table_index(Table::Queries), Value::Array(Vec::new())),
    })
    .await?;
    if let Ok(q) = stored(&ctx, &id) {
        readable(&q)?;
    }
    Ok(reply)
}

async fn update(ctx: Ctx, id: String) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let mut q = definition(&ctx, true)?;
    // The URL's ID wins over any in the body, as in Consul.
    q.id = id;
    require_write(&ctx.caller, &q)?;
    let current =
        stored(&ctx, &q.id).map_err(|_| store_error(StoreError::QueryNotFound(q.id.clone())))?;
    require_write(&ctx.caller, &current)?;
    write(&ctx, q, false).await?;
    Ok(Reply::empty())
}

async fn delete(ctx: Ctx, id: String) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let current =
        stored(&ctx, &id).map_err(|_| store_error(StoreError::QueryNotFound(id.clone())))?;
    require_write(&ctx.caller, &current)?;
    ctx.state
        .agent
        .server()
        .write(Command::QueryDelete { id })
        .await
        .map_err(store_error)?;
    Ok(Reply::empty())
}

/// The query `name` resolves to, rendered.
fn resolve(ctx: &Ctx, name: &str) -> Result<PreparedQuery, ApiError> {
    ctx.state
        .agent
        .server()
        .read()
        .resolve_prepared_query(name)
        .map_err(lookup_error)
}

/// The query-meta fields Consul's execute and explain answers carry in their bodies (besides the headers).
fn body_meta(ctx: &Ctx, body: &mut Value, filtered: bool) {
    let server = ctx.state.agent.server();
    let contact_ms = if server.is_leader() {
        0
    } else {
        server.last_contact_ms().unwrap_or(0)
    };
    if let Value::Object(map) = body {
        map.insert("Index".into(), json!(0));
        map.insert(
            "LastContact".into(),
            json!(contact_ms.saturating_mul(1_000_000)),
        );
        map.insert("KnownLeader".into(), json!(server.leader().is_some()));
        map.insert(
            "ConsistencyLevel".into(),
            json!(if ctx.flag("stale") { "stale" } else { "leader" }),
        );
        map.insert("NotModified".into(), json!(false));
        map.insert("Backend".into(), json!(0));
        map.insert("ResultsFilteredByACLs".into(), json!(filtered));
    }
}

async fn explain(ctx: Ctx, name: &str) -> Result<Reply, ApiError> {
    let consistency = crate::blocking::prepare(&ctx)?;
    let q = resolve(&ctx, name)?;
    // Explaining shows the query: only to callers who could list it.
    if !is_management(&ctx.caller) && !listable(&ctx.caller, &q) {
        return Err(match q.acl_name() {
            Some(name) => ctx
                .caller
                .require(Named::Query, name, Need::Read)
                .err()
                .unwrap_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "Permission denied")),
            None => ApiError::new(StatusCode::FORBIDDEN, "Permission denied"),
        });
    }
    let mut body = json!({ "Query": shown(&ctx.caller, &q) });
    body_meta(&ctx, &mut body, false);
    Ok(ctx.read_meta(ctx.json(&body), 1, consistency))
}

/// Who a run's results are filtered for: the query's stored token, or else the caller.
async fn filter_caller(ctx: &Ctx, q: &PreparedQuery) -> Result<Arc<Caller>, ApiError> {
    let server = ctx.state.agent.server();
    if q.token.is_empty() || !server.acl_enabled() {
        return Ok(ctx.caller.clone());
    }
    if q.token == weft_types::query::REDACTED_TOKEN {
        // A client agent's copy (`?stale`): the token stays on the servers, and running without it could show what
        // the query's author withheld.
        return Err(ApiError::bad_request(
            "this query runs with a stored token, which only the servers hold: run it without ?stale",
        ));
    }
    match server.resolve_token(&q.token).await {
        Ok(identity) => Ok(Arc::new(Caller::with_identity(identity, true))),
        Err(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "ACL not found")),
    }
}

/// The query's healthy instances in `store` that `by` may read, shuffled, sorted near `near` when given, at most
/// `limit` (0: all), as their JSON.
pub(crate) fn select(
    store: &weft_state::Store,
    q: &PreparedQuery,
    by: &Caller,
    connect: bool,
    near: Option<&str>,
    limit: usize,
) -> Vec<Value> {
    let mut list: Vec<CheckServiceNode<'_>> = store
        .prepared_query_instances(&q.service, connect)
        .into_iter()
        .filter(|i| by.may(Named::Node, &i.node.node, Need::Read))
        .filter(|i| by.may(Named::Service, &i.service.service, Need::Read))
        .collect();
    list.shuffle(&mut rand::rng());
    if let Some(near) = near {
        store.sort_instances_near(&mut list, near);
    }
    weft_state::pin_near(&mut list, near);
    if limit > 0 {
        list.truncate(limit);
    }
    list.iter()
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect()
}

/// Where `near` points: a node name, the receiving agent's node for `_agent`, the node whose address is the
/// client's (`X-Forwarded-For`) for `_ip`.
fn near_node(ctx: &Ctx, near: &str, s: &weft_state::Store) -> Option<String> {
    match near {
        "" => None,
        "_agent" => Some(ctx.origin_node()),
        "_ip" => {
            let ip = ctx
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)?;
            s.nodes().find(|n| n.address == ip).map(|n| n.node.clone())
        }
        node => Some(node.to_string()),
    }
}

async fn execute(ctx: Ctx, name: &str) -> Result<Reply, ApiError> {
    let consistency = crate::blocking::prepare(&ctx)?;
    let limit = match ctx.param("limit") {
        None | Some("") => 0,
        Some(text) => text
            .parse::<i64>()
            .map_err(|e| ApiError::bad_request(format!("Bad limit: {e}")))?
            .max(0) as usize,
    };
    let connect = match ctx.param("connect") {
        None => false,
        Some(text) => weft_types::flags::parse_go_bool(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Error parsing 'connect' value: {text:?} is not a boolean"
            ))
        })?,
    };
    let q = resolve(&ctx, name)?;
    let by = filter_caller(&ctx, &q).await?;
    let near = ctx
        .param("near")
        .filter(|n| !n.is_empty())
        .unwrap_or(&q.service.near)
        .to_string();
    let server = ctx.state.agent.server();
    let mut nodes = {
        let store = server.read();
        let near = near_node(&ctx, &near, &store);
        select(&store, &q, &by, connect, near.as_deref(), limit)
    };
    let mut filtered = by.report_filtered();
    let mut datacenter = ctx.state.agent.config().datacenter.clone();
    let mut failovers = 0;
    if nodes.is_empty() {
        let token = crate::caller::token_of(&ctx.query, &ctx.headers).unwrap_or_default();
        let outcome = crate::query_failover::fail_over(server, &q, limit, connect, &token).await;
        failovers = outcome.tried;
        if let Some(answer) = outcome.answer {
            nodes = answer.nodes;
            filtered |= answer.filtered;
            datacenter = answer.datacenter;
        }
    }
    let mut body = json!({
        "Service": q.service.service,
        "Nodes": nodes,
        "DNS": q.dns,
        "Datacenter": datacenter,
        "PeerName": "",
        "Failovers": failovers,
    });
    body_meta(&ctx, &mut body, filtered);
    let mut reply = ctx.read_meta(ctx.json(&body), 1, consistency);
    if filtered {
        reply.set("x-consul-results-filtered-by-acls", "true");
    }
    Ok(reply)
}
