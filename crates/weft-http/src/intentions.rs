//! Intentions: the legacy `/v1/connect/intentions` API and the `service-intentions` config entries, which are
//! two views of one table keyed by (source, destination).

use crate::blocking::read_reply;
use crate::catalog::filtered;
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use weft_acl::{Named, Need};
use weft_state::{Command, Store, Table};
use weft_types::intention::{self, Intention};

fn now_rfc3339() -> String {
    weft_types::timefmt::rfc3339_unix(weft_server::now_ms() / 1000)
}

fn to_json(i: &Intention) -> Value {
    serde_json::to_value(i).unwrap_or(Value::Null)
}

fn invalid(e: intention::IntentionError) -> ApiError {
    ApiError::bad_request(format!("Invalid intention: {e}"))
}

/// `GET|POST /v1/connect/intentions`.
pub async fn list_or_create(ctx: Ctx) -> Result<Reply, ApiError> {
    if ctx.method == Method::POST {
        create(ctx).await
    } else {
        list(ctx).await
    }
}

async fn list(ctx: Ctx) -> Result<Reply, ApiError> {
    let filter = ctx.filter()?;
    read_reply(&ctx, &[Table::Intentions], |s: &Store| {
        let list: Vec<Value> = s
            .intentions()
            .into_iter()
            .filter(|i| {
                ctx.caller
                    .may(Named::Intention, &i.destination_name, Need::Read)
            })
            .map(to_json)
            .collect();
        (
            s.table_index(Table::Intentions),
            filtered(Value::Array(list), &filter),
        )
    })
    .await
}

/// L7 intentions only on services that speak http, http2 or grpc (see [`crate::config_chain::check_l7_intention`]).
fn check_l7(ctx: &Ctx, i: &Intention) -> Result<(), ApiError> {
    if i.permissions.is_empty() {
        return Ok(());
    }
    let store = ctx.state.agent.server().read();
    crate::config_chain::check_l7_intention(&store, &i.destination_name)
        .map_err(|e| ApiError::bad_request(format!("Invalid intention: {e}")))
}

async fn write_intention(ctx: &Ctx, mut i: Intention) -> Result<Intention, ApiError> {
    i.normalize().map_err(invalid)?;
    check_l7(ctx, &i)?;
    let now = now_rfc3339();
    if i.created_at.is_empty() {
        i.created_at = now.clone();
    }
    i.updated_at = now;
    ctx.state
        .agent
        .server()
        .write(Command::IntentionUpsert(Box::new(i.clone())))
        .await?;
    Ok(i)
}

/// `POST /v1/connect/intentions` (legacy create): one intention per pair, so a duplicate is an error.
async fn create(ctx: Ctx) -> Result<Reply, ApiError> {
    let mut i: Intention = ctx.decode()?;
    i.normalize().map_err(invalid)?;
    ctx.caller
        .require(Named::Intention, &i.destination_name, Need::Write)?;
    if let Some(existing) = ctx
        .state
        .agent
        .server()
        .read()
        .intention(&i.source_name, &i.destination_name)
    {
        return Err(ApiError::internal(format!(
            "duplicate intention found: {} (ID {:?})",
            existing.describe(),
            existing.id
        )));
    }
    i.id = weft_types::ids::new_uuid();
    let i = write_intention(&ctx, i).await?;
    Ok(ctx.json(&json!({"ID": i.id})))
}

fn pair(ctx: &Ctx) -> Result<(String, String), ApiError> {
    let source = ctx.param("source").filter(|s| !s.is_empty());
    let destination = ctx.param("destination").filter(|s| !s.is_empty());
    match (source, destination) {
        (Some(s), Some(d)) => Ok((s.to_string(), d.to_string())),
        (None, _) => Err(ApiError::bad_request(
            "required query parameter 'source' not set",
        )),
        (_, None) => Err(ApiError::bad_request(
            "required query parameter 'destination' not set",
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExactBody {
    source_type: String,
    action: String,
    permissions: Vec<Value>,
    description: String,
    meta: BTreeMap<String, String>,
}

/// `GET|PUT|DELETE /v1/connect/intentions/exact?source=&destination=`.
pub async fn exact(ctx: Ctx) -> Result<Reply, ApiError> {
    let (source, destination) = pair(&ctx)?;
    match ctx.method {
        Method::GET => {
            let store = ctx.state.agent.server().read();
            let index = store.table_index(Table::Intentions);
            let Some(i) = store.intention(&source, &destination) else {
                return Err(ApiError::not_found("Intention not found"));
            };
            let value = to_json(i);
            drop(store);
            Ok(ctx.read_meta(ctx.json(&value), index, crate::ctx::Consistency::Leader))
        }
        Method::PUT => {
            let body: ExactBody = ctx.decode()?;
            let existing = ctx
                .state
                .agent
                .server()
                .read()
                .intention(&source, &destination)
                .cloned();
            let i = Intention {
                id: existing.as_ref().map(|e| e.id.clone()).unwrap_or_default(),
                created_at: existing.map(|e| e.created_at).unwrap_or_default(),
                source_name: source,
                destination_name: destination,
                source_type: body.source_type,
                action: body.action,
                permissions: body.permissions,
                description: body.description,
                meta: body.meta,
                ..Intention::default()
            };
            write_intention(&ctx, i).await?;
            Ok(Reply::bool(true))
        }
        _ => {
            ctx.state
                .agent
                .server()
                .write(Command::IntentionDelete {
                    source,
                    destination,
                })
                .await?;
            Ok(Reply::bool(true))
        }
    }
}

/// `GET|PUT|DELETE /v1/connect/intentions/:id` (legacy, by ID).
pub async fn by_id(ctx: Ctx) -> Result<Reply, ApiError> {
    let id = ctx.required_rest("intention ID")?;
    let existing = ctx
        .state
        .agent
        .server()
        .read()
        .intention_by_id(&id)
        .cloned();
    let Some(existing) = existing else {
        return Err(ApiError::not_found("Intention not found"));
    };
    let need = if ctx.method == Method::GET {
        Need::Read
    } else {
        Need::Write
    };
    ctx.caller
        .require(Named::Intention, &existing.destination_name, need)?;
    match ctx.method {
        Method::GET => Ok(ctx.json(&to_json(&existing))),
        Method::PUT => {
            let mut i: Intention = ctx.decode()?;
            i.id = existing.id.clone();
            i.created_at = existing.created_at.clone();
            i.normalize().map_err(invalid)?;
            ctx.caller
                .require(Named::Intention, &i.destination_name, Need::Write)?;
            if (i.source_name.as_str(), i.destination_name.as_str())
                != (
                    existing.source_name.as_str(),
                    existing.destination_name.as_str(),
                )
            {
                ctx.state
                    .agent
                    .server()
                    .write(Command::IntentionDelete {
                        source: existing.source_name.clone(),
                        destination: existing.destination_name.clone(),
                    })
                    .await?;
            }
            write_intention(&ctx, i).await?;
            Ok(Reply::empty())
        }
        _ => {
            ctx.state
                .agent
                .server()
                .write(Command::IntentionDelete {
                    source: existing.source_name,
                    destination: existing.destination_name,
                })
                .await?;
            Ok(Reply::bool(true))
        }
    }
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=...`.
pub async fn matches(ctx: Ctx) -> Result<Reply, ApiError> {
    let by = match ctx.param("by") {
        Some("source") => true,
        Some("destination") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "'by' parameter must be 'source' or 'destination', got {other:?}"
            )))
        }
        None => {
            return Err(ApiError::bad_request(
                "required query parameter 'by' not set",
            ))
        }
    };
    let names: Vec<String> = ctx.params("name").into_iter().map(str::to_string).collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "required query parameter 'name' not set",
        ));
    }
    read_reply(&ctx, &[Table::Intentions], |s: &Store| {
        let all = s.intentions();
        let mut out = Map::new();
        for name in &names {
            let list: Vec<Value> = all
                .iter()
                .filter(|i| {
                    let side = if by {
                        &i.source_name
                    } else {
                        &i.destination_name
                    };
                    side == intention::WILDCARD || side == name
                })
                .map(|i| to_json(i))
                .collect();
            out.insert(name.clone(), Value::Array(list));
        }
        (s.table_index(Table::Intentions), Value::Object(out))
    })
    .await
}

/// `GET /v1/connect/intentions/check?source=&destination=`.
pub async fn check(ctx: Ctx) -> Result<Reply, ApiError> {
    let (source, destination) = pair(&ctx)?;
    if let Some(t) = ctx.param("source-type") {
        if t != "consul" {
            return Err(ApiError::bad_request(format!(
                "unsupported source-type {t:?}"
            )));
        }
    }
    let store = ctx.state.agent.server().read();
    let d = intention::authorize(
        store.intentions(),
        &source,
        &destination,
        ctx.state.default_policy,
    );
    drop(store);
    Ok(ctx.json(&json!({"Allowed": d.allowed})))
}

// ---- config entries (service-intentions) ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SourceIntention {
    name: String,
    action: String,
    permissions: Vec<Value>,
    description: String,
    #[serde(rename = "Type")]
    source_type: String,
    #[serde(rename = "LegacyID")]
    legacy_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConfigEntry {
    kind: String,
    name: String,
    sources: Vec<SourceIntention>,
    meta: BTreeMap<String, String>,
}

fn entry_json(s: &Store, name: &str) -> Option<Value> {
    let list: Vec<&Intention> = s
        .intentions()
        .into_iter()
        .filter(|i| i.destination_name == name)
        .collect();
    if list.is_empty() {
        return None;
    }
    let sources: Vec<Value> = list
        .iter()
        .map(|i| {
            let mut v = json!({"Name": i.source_name, "Precedence": i.precedence, "Type": "consul",
                "Description": i.description});
            if i.permissions.is_empty() {
                v["Action"] = json!(i.action);
            } else {
                v["Permissions"] = json!(i.permissions);
            }
            if !i.id.is_empty() {
                v["LegacyID"] = json!(i.id);
            }
            v
        })
        .collect();
    let create = list.iter().map(|i| i.create_index).min().unwrap_or(0);
    let modify = list.iter().map(|i| i.modify_index).max().unwrap_or(0);
    Some(
        json!({"Kind": "service-intentions", "Name": name, "Sources": sources, "Meta": {},
        "CreateIndex": create, "ModifyIndex": modify}),
    )
}

/// Kinds kept in the config entry table (the others but `service-intentions` are refused by name).
const STORED_KINDS: [&str; 8] = [
    weft_types::config_entry::INGRESS_GATEWAY,
    weft_types::config_entry::TERMINATING_GATEWAY,
    weft_types::config_entry::SERVICE_DEFAULTS,
    weft_types::config_entry::PROXY_DEFAULTS,
    weft_types::config_entry::MESH,
    crate::config_chain::SERVICE_ROUTER,
    crate::config_chain::SERVICE_SPLITTER,
    crate::config_chain::SERVICE_RESOLVER,
];

fn kind_supported(kind: &str) -> Result<(), ApiError> {
    if kind == "service-intentions" || STORED_KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "config entry kind {kind:?} is not stored by Weft yet (service-intentions, service-defaults, \
             proxy-defaults, mesh, service-router, service-splitter, service-resolver, ingress-gateway and \
             terminating-gateway are)"
        )))
    }
}

/// `PUT /v1/config`: writes a config entry.
pub async fn config_put(ctx: Ctx) -> Result<Reply, ApiError> {
    let value: Value = ctx.decode()?;
    let kind = weft_types::config_entry::kind_of(&value);
    if kind != "service-intentions" {
        return crate::config_entries::put(ctx, value).await;
    }
    let entry: ConfigEntry =
        weft_types::lenient::decode_value(value).map_err(crate::reply::decode_error)?;
    if entry.name.is_empty() {
        return Err(ApiError::bad_request("config entry Name is required"));
    }
    ctx.caller
        .require(Named::Intention, &entry.name, Need::Write)?;
    let _ = entry.meta;
    let mut seen = std::collections::BTreeSet::new();
    let mut intentions = Vec::new();
    let now = now_rfc3339();
    for src in entry.sources {
        if !seen.insert(src.name.clone()) {
            return Err(ApiError::bad_request(format!(
                "Sources: duplicate source {:?}",
                src.name
            )));
        }
        let mut i = Intention {
            id: src.legacy_id,
            source_name: src.name,
            destination_name: entry.name.clone(),
            action: src.action,
            permissions: src.permissions,
            description: src.description,
            source_type: src.source_type,
            created_at: now.clone(),
            updated_at: now.clone(),
            ..Intention::default()
        };
        i.normalize().map_err(invalid)?;
        check_l7(&ctx, &i)?;
        intentions.push(i);
    }
    ctx.state
        .agent
        .server()
        .write(Command::IntentionsReplace {
            destination: entry.name,
            intentions,
        })
        .await?;
    Ok(Reply::bool(true))
}

/// `GET|DELETE /v1/config/:kind[/:name]`.
pub async fn config_entry(ctx: Ctx) -> Result<Reply, ApiError> {
    let (kind, name) = match ctx.rest.split_once('/') {
        Some((k, n)) => (k.to_string(), n.to_string()),
        None => (ctx.rest.clone(), String::new()),
    };
    let kind = kind.to_ascii_lowercase();
    kind_supported(&kind)?;
    if STORED_KINDS.contains(&kind.as_str()) {
        return if ctx.method == Method::DELETE {
            if name.is_empty() {
                return Err(ApiError::bad_request("Missing config entry name"));
            }
            crate::config_entries::delete(ctx, kind, name).await
        } else {
            crate::config_entries::get(ctx, kind, name).await
        };
    }
    if ctx.method == Method::DELETE {
        if name.is_empty() {
            return Err(ApiError::bad_request("Missing config entry name"));
        }
        ctx.caller.require(Named::Intention, &name, Need::Write)?;
        ctx.state
            .agent
            .server()
            .write(Command::IntentionsReplace {
                destination: name,
                intentions: Vec::new(),
            })
            .await?;
        return Ok(Reply::bool(true));
    }
    let store = ctx.state.agent.server().read();
    let index = store.table_index(Table::Intentions);
    let value = if name.is_empty() {
        let mut names: Vec<&str> = store
            .intentions()
            .iter()
            .map(|i| i.destination_name.as_str())
            .collect();
        names.sort();
        names.dedup();
        names.retain(|n| ctx.caller.may(Named::Intention, n, Need::Read));
        Value::Array(
            names
                .into_iter()
                .filter_map(|n| entry_json(&store, n))
                .collect(),
        )
    } else {
        if let Err(e) = ctx.caller.require(Named::Intention, &name, Need::Read) {
            drop(store);
            return Err(e);
        }
        match entry_json(&store, &name) {
            Some(v) => v,
            None => {
                drop(store);
                let reply = Reply::text(
                    StatusCode::NOT_FOUND,
                    format!("Config entry not found for \"{kind}\" / \"{name}\""),
                );
                return Ok(ctx.read_meta(reply, index, crate::ctx::Consistency::Leader));
            }
        }
    };
    drop(store);
    Ok(ctx.read_meta(ctx.json(&value), index, crate::ctx::Consistency::Leader))
}
