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

/// `POST /v1/operator/raft/transfer-leader?id=<raft id>`: the leader hands leadership to that server (else to the
/// voter with the most of the log) and answers Consul's `{"Success": true}` once the new leader leads.
pub async fn transfer_leader(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let id = ctx.param("id").filter(|s| !s.is_empty());
    match ctx.state.agent.server().transfer_leader(id).await {
        Ok(_) => Ok(ctx.json(&json!({ "Success": true }))),
        Err(weft_server::PeerError::UnknownId(id)) => Err(ApiError::bad_request(format!(
            "id {id:?} was not found in the Raft configuration"
        ))),
        Err(weft_server::PeerError::Transfer(
            e @ (weft_server::TransferError::ToItself | weft_server::TransferError::NotAVoter(_)),
        )) => Err(ApiError::bad_request(format!(
            "cannot transfer leadership: {e}"
        ))),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// `GET /v1/operator/autopilot/health`.
/// `GET /v1/operator/autopilot/state`: Consul's autopilot state, from the same probes as `health`: servers keyed by
/// Raft ID with their status (`leader`, `voter`, `non-voter`), the leader, the voters, and the failure tolerances.
pub async fn autopilot_state(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let server = ctx.state.agent.server();
    let servers = server.autopilot_health();
    let healthy = servers.iter().all(|s| s.healthy);
    let leader = servers.iter().find(|s| s.leader).map(|s| s.id.clone());
    let voters: Vec<&str> = servers
        .iter()
        .filter(|s| s.voter)
        .map(|s| s.id.as_str())
        .collect();
    // Consul's optimistic tolerance: servers failing one at a time, each removed by autopilot's cleanup before the
    // next fails, leave one healthy voter at the end.
    let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count();
    let optimistic = healthy_voters.saturating_sub(1);
    let by_id: serde_json::Map<String, serde_json::Value> = servers
        .iter()
        .map(|s| {
            let status = if s.leader {
                "leader"
            } else if s.voter {
                "voter"
            } else {
                "non-voter"
            };
            let entry = json!({
                "ID": s.id, "Name": s.name, "Address": s.address, "NodeStatus": s.serf_status,
                "Version": s.version, "LastContact": s.last_contact, "LastTerm": s.last_term,
                "LastIndex": s.last_index, "Healthy": s.healthy, "StableSince": s.stable_since,
                "ReadReplica": false, "Status": status, "Meta": {},
                "NodeType": if s.voter { "voter" } else { "read-replica" },
            });
            (s.id.clone(), entry)
        })
        .collect();
    Ok(ctx.json(&json!({
        "Healthy": healthy,
        "FailureTolerance": server.failure_tolerance(),
        "OptimisticFailureTolerance": optimistic,
        "Servers": by_id,
        "Leader": leader.unwrap_or_default(),
        "Voters": voters,
        "ReadReplicas": [],
        "RedundancyZones": {},
    })))
}

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

/// `GET /v1/operator/usage`: how many services, instances and nodes this datacenter holds, as Consul counts them
/// (services and instances of every kind; billable instances leave out proxies, gateways and `consul`). Blocking,
/// with the query's metadata inside the body as Consul writes it.
pub async fn usage(ctx: Ctx) -> Result<Reply, ApiError> {
    let consistency = crate::blocking::prepare(&ctx)?;
    let datacenter = ctx.state.agent.config().datacenter.clone();
    let (index, counts) = crate::blocking::read(
        &ctx,
        &[weft_state::Table::Services, weft_state::Table::Nodes],
        |s: &weft_state::Store| {
            let mut names = std::collections::BTreeSet::new();
            let (mut instances, mut billable, mut nodes) = (0u64, 0u64, 0u64);
            let mut by_kind: std::collections::BTreeMap<&str, u64> = [
                "connect-native",
                "connect-proxy",
                "ingress-gateway",
                "mesh-gateway",
                "terminating-gateway",
                "api-gateway",
            ]
            .into_iter()
            .map(|k| (k, 0))
            .collect();
            for node in s.nodes() {
                nodes += 1;
                for svc in s.node_services(&node.node) {
                    names.insert(svc.service.clone());
                    instances += 1;
                    if svc.kind.is_empty() {
                        if svc.connect.native {
                            *by_kind.entry("connect-native").or_default() += 1;
                        }
                        if svc.service != "consul" {
                            billable += 1;
                        }
                    } else if let Some(n) = by_kind.get_mut(svc.kind.as_str()) {
                        *n += 1;
                    }
                }
            }
            (
                s.table_index(weft_state::Table::Services)
                    .max(s.table_index(weft_state::Table::Nodes)),
                json!({
                    "Services": names.len(), "ServiceInstances": instances,
                    "ConnectServiceInstances": by_kind, "BillableServiceInstances": billable, "Nodes": nodes,
                }),
            )
        },
    )
    .await?;
    let body = json!({
        "Usage": {datacenter: *counts},
        "Index": index, "LastContact": 0, "KnownLeader": true, "ConsistencyLevel": consistency.as_str(),
        "NotModified": false, "Backend": 0, "ResultsFilteredByACLs": false,
    });
    Ok(ctx.read_meta(ctx.json(&body), index, consistency))
}

/// `GET /v1/operator/autopilot/configuration`: the settings in force (the operator's, else the leader's agent
/// configuration, with indexes 0). `PUT` replaces them, with `?cas=<ModifyIndex>` only if unchanged since; the
/// answer is `true` or `false`.
pub async fn autopilot_configuration(ctx: Ctx) -> Result<Reply, ApiError> {
    ctx.check_scope()?;
    let server = ctx.state.agent.server();
    if ctx.method == axum::http::Method::GET {
        let config = serde_json::to_value(server.autopilot_config())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(ctx.json(&config));
    }
    let cas = match ctx.param("cas") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("Error parsing cas value: {text:?} is not an index"))
        })?),
    };
    let config: weft_types::autopilot::AutopilotConfig = ctx.decode()?;
    if config.last_contact_threshold.is_some_and(|d| d.is_zero()) {
        return Err(ApiError::bad_request(
            "LastContactThreshold must be positive",
        ));
    }
    match server
        .write(weft_state::Command::AutopilotSet {
            config: Box::new(config),
            cas,
        })
        .await?
    {
        weft_state::ApplyResult::Bool(ok) => Ok(Reply::bool(ok)),
        other => Err(ApiError::internal(format!(
            "unexpected autopilot result {other:?}"
        ))),
    }
}
