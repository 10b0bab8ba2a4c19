//! `/v1/operator/...`: the Raft configuration, removing a peer, and autopilot's view of server health. Answered by
//! the leader (the request is forwarded there), as in Consul.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use serde_json::json;

/// `GET /v1/operator/raft/configuration`.
pub async fn raft_configuration(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let server = ctx.state.agent.server();
    let servers: Vec<serde_json::Value> = server
        .autopilot_health()
        .into_iter()
        .map(|h| {
            json!({
                "ID": h.id, "Node": h.name, "Address": h.address, "Leader": h.leader,
                "ProtocolVersion": "3", "Voter": h.voter, "LastIndex": h.last_index,
            })
        })
        .collect();
    let index = server.last_log_index();
    Ok(ctx.json(&json!({"Servers": servers, "Index": index})))
}

/// `DELETE /v1/operator/raft/peer?id=...` or `?address=...`.
pub async fn raft_peer(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let id = ctx.param("id").filter(|s| !s.is_empty());
    let address = ctx.param("address").filter(|s| !s.is_empty());
    if id.is_none() && address.is_none() {
        return Err(ApiError::bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        ));
    }
    ctx.state
        .agent
        .server()
        .remove_peer(id, address)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Reply::empty())
}

/// `GET /v1/operator/autopilot/health`.
pub async fn autopilot_health(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let server = ctx.state.agent.server();
    let servers = server.autopilot_health();
    let healthy = servers.iter().all(|s| s.healthy);
    let body = json!({
        "Healthy": healthy,
        "FailureTolerance": server.failure_tolerance(),
        "Servers": servers,
    });
    let mut reply = ctx.json(&body);
    if !healthy {
        // Consul answers 429 when the cluster is unhealthy, so load balancers can key on the status alone.
        reply.status = axum::http::StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(reply)
}
