//! `/v1/config` for the kinds kept in the config entry table (`service-defaults`, `proxy-defaults`, `mesh`, and the
//! discovery chain's `service-router`, `service-splitter`, `service-resolver`):
//! write with `?cas`, read one, list a kind (both blocking), delete with `?cas`. `service-intentions` entries are
//! intentions and handled beside them (`intentions`).
//!
//! ACLs, as Consul's: `service-defaults` and the chain kinds need `service:write` on their name to write and
//! `service:read` to read; the gateway kinds `operator:write` to write and `service:read` on the gateway to read;
//! `proxy-defaults` and `mesh` need `operator:write` to write and nothing more than a valid token to read (every
//! proxy reads them).

use crate::blocking::read_reply;
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use axum::http::StatusCode;
use serde_json::Value;
use weft_acl::{Named, Need, Whole};
use weft_state::{ApplyResult, Command, Store, Table};
use weft_types::config_entry::{self, StoredEntry};

fn may(ctx: &Ctx, kind: &str, name: &str, need: Need) -> Result<(), ApiError> {
    let gateway = [
        config_entry::INGRESS_GATEWAY,
        config_entry::TERMINATING_GATEWAY,
    ]
    .contains(&kind);
    if names_a_service(kind) && !(gateway && need == Need::Write) {
        ctx.caller.require(Named::Service, name, need)
    } else if need == Need::Write {
        ctx.caller.require_whole(Whole::Operator, need)
    } else {
        Ok(())
    }
}

/// Kinds whose names are services (read with `service:read` on the name); the others are the mesh's own. Gateways
/// are services too, but configuring one is the operator's (`operator:write`), as in Consul.
fn names_a_service(kind: &str) -> bool {
    config_entry::names_a_service(kind)
        || crate::config_chain::KINDS.contains(&kind)
        || [
            config_entry::INGRESS_GATEWAY,
            config_entry::TERMINATING_GATEWAY,
        ]
        .contains(&kind)
}

fn cas(ctx: &Ctx) -> Result<Option<u64>, ApiError> {
    match ctx.param("cas") {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("Invalid cas value {v:?}"))),
    }
}

/// `PUT /v1/config` for a stored kind (`value` is the decoded body).
pub async fn put(ctx: Ctx, value: Value) -> Result<Reply, ApiError> {
    let invalid = |why: String| ApiError::bad_request(format!("Invalid config entry: {why}"));
    let kind = config_entry::kind_of(&value);
    // Who may write it first, from the entry's name alone: checking an entry (regexps, filters) costs work that an
    // anonymous caller must not be able to make the leader do.
    let claimed = value
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    may(&ctx, &kind, claimed, Need::Write)?;
    // The entry on its own, without holding the store; then against the other entries.
    let chain = crate::config_chain::KINDS.contains(&kind.as_str());
    let (kind, name) = if chain {
        crate::config_chain::validate(&value).map_err(invalid)?
    } else {
        config_entry::validate(&value).map_err(invalid)?
    };
    if chain {
        // Sending one's own traffic elsewhere needs read on where it goes, as in Consul.
        for target in crate::config_chain::related_services(&value) {
            ctx.caller.require(Named::Service, &target, Need::Read)?;
        }
    }
    {
        let store = ctx.state.agent.server().read();
        if chain {
            crate::config_chain::check_protocol(&store, &kind, &name).map_err(invalid)?;
        } else {
            crate::config_chain::check_protocol_change(&value, &store).map_err(invalid)?;
        }
    }
    let entry = StoredEntry {
        kind,
        name,
        body: config_entry::body_of(&value),
        create_index: 0,
        modify_index: 0,
    };
    let result = ctx
        .state
        .agent
        .server()
        .write(Command::ConfigEntrySet {
            entry: Box::new(entry),
            cas: cas(&ctx)?,
        })
        .await?;
    Ok(Reply::bool(result == ApplyResult::Bool(true)))
}

/// `GET /v1/config/:kind[/:name]`.
pub async fn get(ctx: Ctx, kind: String, name: String) -> Result<Reply, ApiError> {
    if name.is_empty() {
        return read_reply(&ctx, &[Table::ConfigEntries], |s: &Store| {
            let list: Vec<Value> = s
                .config_entries_of(&kind)
                .filter(|e| {
                    !names_a_service(&e.kind) || ctx.caller.may(Named::Service, &e.name, Need::Read)
                })
                .map(StoredEntry::to_json)
                .collect();
            (s.table_index(Table::ConfigEntries), Value::Array(list))
        })
        .await;
    }
    may(&ctx, &kind, &name, Need::Read)?;
    let reply = read_reply(&ctx, &[Table::ConfigEntries], |s: &Store| {
        match s.config_entry(&kind, &name) {
            Some(e) => (e.modify_index, e.to_json()),
            None => (s.table_index(Table::ConfigEntries), Value::Null),
        }
    })
    .await?;
    if reply.body.as_ref() == b"null" {
        return Ok(Reply::text(
            StatusCode::NOT_FOUND,
            format!("Config entry not found for {kind:?} / {name:?}"),
        ));
    }
    Ok(reply)
}

/// `DELETE /v1/config/:kind/:name` (`?cas`): `true`, or `false` when the cas did not match.
pub async fn delete(ctx: Ctx, kind: String, name: String) -> Result<Reply, ApiError> {
    may(&ctx, &kind, &name, Need::Write)?;
    {
        let store = ctx.state.agent.server().read();
        crate::config_chain::check_protocol_delete(&kind, &name, &store).map_err(|why| {
            ApiError::bad_request(format!("Invalid config entry deletion: {why}"))
        })?;
    }
    let result = ctx
        .state
        .agent
        .server()
        .write(Command::ConfigEntryDelete {
            kind,
            name,
            cas: cas(&ctx)?,
        })
        .await?;
    Ok(Reply::bool(result == ApplyResult::Bool(true)))
}
