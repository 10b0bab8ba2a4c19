//! `/v1/kv/:key`: reads (single, `?recurse`, `?keys`, `?raw`) with blocking, and writes with CAS and session locks.
//! Values are raw bytes in the body; answers carry them base64-encoded, as in Consul.

use crate::blocking::{prepare, read};
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::{Method, StatusCode};
use serde_json::Value;
use weft_acl::{Named, Need};
use weft_state::{ApplyResult, Command, KvOp, Store, Table};

pub async fn kv(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    match ctx.method {
        Method::GET => get(ctx).await,
        Method::PUT => put(ctx).await,
        _ => delete(ctx).await,
    }
}

async fn get(ctx: Ctx) -> Result<Reply, ApiError> {
    let consistency = prepare(&ctx)?;
    let key = ctx.rest.clone();
    let recurse = ctx.flag("recurse");
    let keys = ctx.param("keys").is_some();
    if key.is_empty() && !recurse && !keys {
        return Err(ApiError::bad_request("Missing key name"));
    }
    // One key needs read on it; a listing shows only the keys the token may read (and, with
    // `acl.enable_key_list_policy`, needs list on the prefix).
    let caller = ctx.caller.clone();
    if !recurse && !keys {
        caller.require(Named::Key, &key, Need::Read)?;
    } else if ctx.state.acl.enable_key_list_policy {
        caller.require(Named::Key, &key, Need::List)?;
    }
    let separator = ctx
        .param("separator")
        .or(ctx.param("seperator"))
        .unwrap_or("")
        .to_string();
    let (index, value) = read(&ctx, &[Table::Kv], |s: &Store| {
        let index = s.kv_index(&key);
        let value = if keys {
            let mut names = s.kv_keys(&key, &separator);
            names.retain(|n| caller.may(Named::Key, n, Need::Read));
            if names.is_empty() && !key.is_empty() {
                Value::Null
            } else {
                serde_json::to_value(names).unwrap_or(Value::Null)
            }
        } else if recurse {
            let entries: Vec<_> = s
                .kv_list(&key)
                .filter(|e| caller.may(Named::Key, &e.key, Need::Read))
                .collect();
            if entries.is_empty() {
                Value::Null
            } else {
                serde_json::to_value(entries).unwrap_or(Value::Null)
            }
        } else {
            match s.kv_get(&key) {
                Some(e) => serde_json::to_value([e]).unwrap_or(Value::Null),
                None => Value::Null,
            }
        };
        (index, value)
    })
    .await?;
    if value.is_null() {
        let reply = Reply {
            status: StatusCode::NOT_FOUND,
            headers: Default::default(),
            body: Default::default(),
            stream: None,
        };
        return Ok(ctx.read_meta(reply, index, consistency));
    }
    if ctx.param("raw").is_some() && !recurse && !keys {
        let raw = ctx
            .state
            .agent
            .server()
            .read()
            .kv_get(&key)
            .map(|e| e.value.clone())
            .unwrap_or_default();
        let mut reply = Reply {
            status: StatusCode::OK,
            headers: Default::default(),
            body: raw.into(),
            stream: None,
        };
        reply.set("content-type", "text/plain");
        reply.set("x-content-type-options", "nosniff");
        reply.set("content-security-policy", "sandbox");
        return Ok(ctx.read_meta(reply, index, consistency));
    }
    Ok(ctx.read_meta(ctx.json(&value), index, consistency))
}

fn conflicting(ctx: &Ctx) -> ApiError {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(ctx.query.iter())
        .finish();
    ApiError::bad_request(format!("Conflicting flags: {query}\n"))
}

fn u64_param(ctx: &Ctx, name: &str) -> Result<Option<u64>, ApiError> {
    match ctx.param(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("Invalid {name} value: {v:?}"))),
    }
}

async fn put(ctx: Ctx) -> Result<Reply, ApiError> {
    let key = ctx.rest.clone();
    if key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    ctx.caller.require(Named::Key, &key, Need::Write)?;
    let present = ["cas", "acquire", "release"]
        .iter()
        .filter(|p| ctx.param(p).is_some())
        .count();
    if present > 1 {
        return Err(conflicting(&ctx));
    }
    let max = ctx.state.kv_max_value_size;
    if ctx.body.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
                ctx.body.len()
            ),
        ));
    }
    let flags = u64_param(&ctx, "flags")?.unwrap_or(0);
    let value = ctx.body.clone();
    let op = if let Some(index) = u64_param(&ctx, "cas")? {
        KvOp::Cas {
            key,
            value,
            flags,
            index,
        }
    } else if let Some(session) = ctx.param("acquire") {
        KvOp::Lock {
            key,
            value,
            flags,
            session: session.to_string(),
        }
    } else if let Some(session) = ctx.param("release") {
        KvOp::Unlock {
            key,
            value,
            flags,
            session: session.to_string(),
        }
    } else {
        KvOp::Set { key, value, flags }
    };
    write(&ctx, op).await
}

async fn delete(ctx: Ctx) -> Result<Reply, ApiError> {
    let key = ctx.rest.clone();
    let recurse = ctx.flag("recurse");
    let cas = u64_param(&ctx, "cas")?;
    if recurse && cas.is_some() {
        return Err(conflicting(&ctx));
    }
    if key.is_empty() && !recurse {
        return Err(ApiError::bad_request("Missing key name"));
    }
    if recurse {
        ctx.caller.require_key_prefix_write(&key)?;
    } else {
        ctx.caller.require(Named::Key, &key, Need::Write)?;
    }
    let op = match (recurse, cas) {
        (true, _) => KvOp::DeleteTree { prefix: key },
        (false, Some(index)) => KvOp::DeleteCas { key, index },
        (false, None) => KvOp::Delete { key },
    };
    write(&ctx, op).await
}

async fn write(ctx: &Ctx, op: KvOp) -> Result<Reply, ApiError> {
    match ctx.state.agent.server().write(Command::Kv(op)).await? {
        ApplyResult::Bool(ok) => Ok(Reply::bool(ok)),
        other => Err(ApiError::internal(format!(
            "unexpected KV result {other:?}"
        ))),
    }
}
