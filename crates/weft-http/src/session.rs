//! `/v1/session/...`: create (with Consul's defaults and limits), destroy, renew, and blocking reads.

use crate::blocking::read_reply;
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use serde_json::{json, Value};
use std::time::Duration;
use weft_acl::{Named, Need};
use weft_state::{Command, Store, Table};
use weft_types::duration::format_duration;
use weft_types::{Session, SessionBehavior, SessionRequest};

const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

pub async fn create(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let req: SessionRequest = ctx.decode_or_default()?;
    let behavior = match req.behavior.as_deref() {
        None | Some("") | Some("release") => SessionBehavior::Release,
        Some("delete") => SessionBehavior::Delete,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid Behavior setting '{other}'"
            )))
        }
    };
    let ttl = req.ttl.filter(|t| !t.is_zero());
    if let Some(ttl) = ttl {
        let min = ctx.state.session_ttl_min;
        if ttl < min || ttl > MAX_TTL {
            return Err(ApiError::bad_request(format!(
                "Invalid Session TTL '{}', must be between [{}={}]",
                format_duration(ttl),
                format_duration(min),
                format_duration(MAX_TTL)
            )));
        }
    }
    let lock_delay = req
        .lock_delay
        .unwrap_or(DEFAULT_LOCK_DELAY)
        .min(MAX_LOCK_DELAY);
    let node_checks = match (req.node_checks, req.checks) {
        (Some(c), _) => c,
        (None, Some(c)) => c,
        (None, None) => vec![weft_agent::SERF_HEALTH.to_string()],
    };
    let node = if req.node.is_empty() {
        ctx.state.agent.config().node_name.clone()
    } else {
        req.node
    };
    ctx.caller.require(Named::Session, &node, Need::Write)?;
    let session = Session {
        id: weft_types::ids::new_uuid(),
        name: req.name,
        node,
        lock_delay: lock_delay.as_nanos() as u64,
        behavior,
        ttl: ttl.map(format_duration).unwrap_or_default(),
        node_checks,
        service_checks: req.service_checks.unwrap_or_default(),
        create_index: 0,
        modify_index: 0,
    };
    let server = ctx.state.agent.server();
    server
        .write(Command::SessionCreate(session.clone()))
        .await?;
    if let Some(ttl) = ttl {
        server.session_timers().arm(&session.id, ttl);
    }
    Ok(ctx.json(&json!({"ID": session.id})))
}

pub async fn destroy(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let id = ctx.required_rest("session")?;
    // Consul refuses an ID that is not a UUID rather than answering `true` for a session that cannot exist.
    if !weft_types::ids::is_uuid(&id) {
        return Err(ApiError::bad_request(format!(
            "Session ID {id:?} is not a UUID"
        )));
    }
    require_session(&ctx, &id, Need::Write)?;
    ctx.state
        .agent
        .server()
        .write(Command::SessionDestroy { id })
        .await?;
    Ok(Reply::bool(true))
}

pub async fn renew(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let id = ctx.required_rest("session")?;
    require_session(&ctx, &id, Need::Write)?;
    let server = ctx.state.agent.server();
    let session = server.read().session(&id).cloned();
    match session {
        None => Err(ApiError::not_found(format!("Session id '{id}' not found"))),
        Some(s) => {
            server.session_timers().renew(&id);
            Ok(ctx.json(&json!([s])))
        }
    }
}

fn list_json<'a>(sessions: impl Iterator<Item = &'a Session>) -> Value {
    Value::Array(
        sessions
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
            .collect(),
    )
}

pub async fn info(ctx: Ctx) -> Result<Reply, ApiError> {
    let id = ctx.required_rest("session")?;
    read_reply(&ctx, &[Table::Sessions], |s: &Store| {
        (
            s.table_index(Table::Sessions),
            list_json(
                s.session(&id)
                    .into_iter()
                    .filter(|x| ctx.caller.may(Named::Session, &x.node, Need::Read)),
            ),
        )
    })
    .await
}

pub async fn node(ctx: Ctx) -> Result<Reply, ApiError> {
    let node = ctx.required_rest("node")?;
    read_reply(&ctx, &[Table::Sessions], |s: &Store| {
        (
            s.table_index(Table::Sessions),
            list_json(s.node_sessions(&node)),
        )
    })
    .await
}

pub async fn list(ctx: Ctx) -> Result<Reply, ApiError> {
    read_reply(&ctx, &[Table::Sessions], |s: &Store| {
        (
            s.table_index(Table::Sessions),
            list_json(
                s.sessions()
                    .filter(|x| ctx.caller.may(Named::Session, &x.node, Need::Read)),
            ),
        )
    })
    .await
}

/// The rule for a session applies to its node. An unknown ID is the handler's to answer.
fn require_session(ctx: &Ctx, id: &str, need: Need) -> Result<(), ApiError> {
    let node = ctx
        .state
        .agent
        .server()
        .read()
        .session(id)
        .map(|s| s.node.clone());
    match node {
        Some(node) => ctx.caller.require(Named::Session, &node, need),
        None => Ok(()),
    }
}
