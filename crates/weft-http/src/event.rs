//! `PUT /v1/event/fire/:name` and `GET /v1/event/list`: user events (Consul's `consul event`), spread to every
//! agent by gossip and kept by those whose node, service and tag filters match.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use serde_json::Value;
use std::time::Instant;
use weft_acl::{Named, Need};
use weft_types::event::{UserEvent, MAX_EVENT_SIZE};

/// `PUT /v1/event/fire/:name?node=&service=&tag=`, the body as the payload: answers the event as sent.
pub async fn fire(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let name = ctx.required_rest("event name")?;
    let param = |k: &str| ctx.param(k).unwrap_or_default().to_string();
    let event = UserEvent {
        id: weft_types::ids::new_uuid(),
        name,
        payload: ctx.body.to_vec(),
        node_filter: param("node"),
        service_filter: param("service"),
        tag_filter: param("tag"),
        version: 1,
        ltime: 0,
    };
    weft_agent::events::check_filters(&event).map_err(ApiError::bad_request)?;
    if event.size() > MAX_EVENT_SIZE {
        return Err(ApiError::bad_request(format!(
            "user event exceeds limit of {MAX_EVENT_SIZE} bytes (name, filters and payload)"
        )));
    }
    let sent = match ctx.state.agent.server().gossip() {
        Some(gossip) => gossip
            .fire(event)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?,
        // Dev mode has no gossip pool: the event reaches this agent alone.
        None => ctx.state.agent.fire_locally(event),
    };
    let value = serde_json::to_value(&sent).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ctx.json(&value))
}

/// `GET /v1/event/list?name=`: the events this agent kept, oldest first, those the token may read; blocking on
/// `?index=` until a new one arrives (or `?wait=` passes).
pub async fn list(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let name = ctx
        .param("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let (want, wait) = match ctx.blocking()? {
        Some(b) => (b.min_index, b.wait),
        None => (0, std::time::Duration::ZERO),
    };
    let buffer = ctx.state.agent.events();
    let mut changes = buffer.subscribe();
    let deadline = tokio::time::Instant::from_std(Instant::now() + wait);
    loop {
        changes.borrow_and_update();
        if want == 0 || buffer.index() != want {
            break;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    let index = buffer.index();
    let events: Vec<Value> = buffer
        .list(name.as_deref())
        .into_iter()
        .filter(|e| ctx.caller.may(Named::Event, &e.name, Need::Read))
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    let mut reply = ctx.json(&Value::Array(events));
    reply.set("x-consul-index", index.to_string());
    Ok(reply)
}
