//! `/v1/txn`: KV operations applied all-or-nothing, with Consul's 409 body on rollback.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use weft_acl::{Named, Need};
use weft_state::{ApplyResult, Command, KvOp};

const MAX_OPS: usize = 128;
const MAX_BODY: usize = 512 * 1024;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TxnKv {
    verb: String,
    key: String,
    value: Option<String>,
    flags: u64,
    index: u64,
    session: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TxnOp {
    #[serde(rename = "KV")]
    kv: Option<TxnKv>,
    node: Option<Value>,
    service: Option<Value>,
    check: Option<Value>,
}

/// Why a transaction's KV operation is refused.
#[derive(Debug, thiserror::Error)]
enum TxnOpError {
    #[error("illegal base64 data for key {key:?}: {reason}")]
    Base64 { key: String, reason: String },
    #[error("Unknown KV verb {0:?}")]
    Verb(String),
}

fn kv_op(kv: TxnKv) -> Result<KvOp, TxnOpError> {
    let value = match kv.value {
        None => Vec::new(),
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .map_err(|e| TxnOpError::Base64 {
                key: kv.key.clone(),
                reason: e.to_string(),
            })?,
    };
    let (key, flags, index, session) = (kv.key, kv.flags, kv.index, kv.session);
    Ok(match kv.verb.as_str() {
        "set" => KvOp::Set { key, value, flags },
        "cas" => KvOp::Cas {
            key,
            value,
            flags,
            index,
        },
        "lock" => KvOp::Lock {
            key,
            value,
            flags,
            session,
        },
        "unlock" => KvOp::Unlock {
            key,
            value,
            flags,
            session,
        },
        "get" => KvOp::Get { key },
        "get-or-empty" => KvOp::GetOrEmpty { key },
        "get-tree" => KvOp::GetTree { prefix: key },
        "check-index" => KvOp::CheckIndex { key, index },
        "check-session" => KvOp::CheckSession { key, session },
        "check-not-exists" => KvOp::CheckNotExists { key },
        "delete" => KvOp::Delete { key },
        "delete-tree" => KvOp::DeleteTree { prefix: key },
        "delete-cas" => KvOp::DeleteCas { key, index },
        other => return Err(TxnOpError::Verb(other.to_string())),
    })
}

pub async fn txn(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    if ctx.body.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body({} bytes) too large, max size: {MAX_BODY} bytes",
                ctx.body.len()
            ),
        ));
    }
    let ops: Vec<TxnOp> = weft_types::lenient::decode(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse body: {e}")))?;
    if ops.len() > MAX_OPS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_OPS})",
                ops.len()
            ),
        ));
    }
    let mut kv_ops = Vec::with_capacity(ops.len());
    let mut errors = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            TxnOp { kv: Some(kv), .. } => match kv_op(kv) {
                Ok(op) => kv_ops.push(op),
                Err(what) => errors.push(json!({"OpIndex": i, "What": what.to_string()})),
            },
            TxnOp { node: Some(_), .. } | TxnOp { service: Some(_), .. } | TxnOp { check: Some(_), .. } => {
                errors.push(json!({"OpIndex": i, "What": "Node, Service and Check operations are not supported in transactions by Weft yet; use KV operations"}))
            }
            _ => errors.push(json!({"OpIndex": i, "What": "Operation has no KV, Node, Service or Check part"})),
        }
    }
    // Each operation is checked on its own key, as Consul does; a refused one fails the transaction with its reason.
    for (i, op) in kv_ops.iter().enumerate() {
        if let Err(e) = check_op(&ctx, op) {
            errors.push(json!({"OpIndex": i, "What": e.message}));
        }
    }
    if !errors.is_empty() {
        return Ok(ctx
            .json(&json!({"Results": null, "Errors": errors}))
            .with_status(StatusCode::CONFLICT));
    }
    let read_only = kv_ops.iter().all(KvOp::is_read);
    let result = if read_only {
        // A read-only transaction is served like a read: evaluated against the store without a log entry.
        ctx.state.agent.server().read().txn_read(&kv_ops)
    } else {
        ctx.state.agent.server().write(Command::Txn(kv_ops)).await?
    };
    match result {
        ApplyResult::Txn(entries) => {
            // `get-tree` lists only what the token may read.
            let results: Vec<Value> = entries
                .into_iter()
                .filter(|e| ctx.caller.may(Named::Key, &e.key, Need::Read))
                .map(|e| json!({"KV": e}))
                .collect();
            let reply = ctx.json(&json!({"Results": results, "Errors": null}));
            if read_only {
                let index = ctx.state.agent.server().read().last_index();
                return Ok(ctx.read_meta(reply, index, ctx.consistency()?));
            }
            Ok(reply)
        }
        ApplyResult::TxnRolledBack { op_index, what } => Ok(ctx
            .json(&json!({"Results": null, "Errors": [{"OpIndex": op_index, "What": what}]}))
            .with_status(StatusCode::CONFLICT)),
        ApplyResult::Bool(_) => Err(ApiError::internal("unexpected transaction result")),
    }
}

/// The permission one KV operation needs: write on its key (every key below for `delete-tree`), or read on it;
/// `get-tree` is filtered afterwards instead.
fn check_op(ctx: &Ctx, op: &KvOp) -> Result<(), ApiError> {
    let caller = &ctx.caller;
    match op {
        KvOp::Set { key, .. }
        | KvOp::Cas { key, .. }
        | KvOp::Lock { key, .. }
        | KvOp::Unlock { key, .. }
        | KvOp::Delete { key }
        | KvOp::DeleteCas { key, .. } => caller.require(Named::Key, key, Need::Write),
        KvOp::DeleteTree { prefix } => caller.require_key_prefix_write(prefix),
        KvOp::Get { key }
        | KvOp::GetOrEmpty { key }
        | KvOp::CheckIndex { key, .. }
        | KvOp::CheckSession { key, .. }
        | KvOp::CheckNotExists { key } => caller.require(Named::Key, key, Need::Read),
        KvOp::GetTree { .. } => Ok(()),
    }
}
