//! Prepared-query failover to other datacenters (Consul's `Failover`): when a query finds no healthy instance
//! here, the server runs the same definition in other datacenters, in order, and answers with the first that has
//! one. The order is Consul's: the `NearestN` nearest datacenters by WAN round trip, then those `Datacenters`
//! (and `Targets[].Datacenter`) lists that are not among them. Datacenters the WAN pool does not know are skipped
//! and not counted; every one tried counts in `Failovers`, whether it answered or not.
//!
//! The definition itself travels (`POST /v1/internal/query/execute` on the other datacenter's RPC port), so the
//! query need not exist there; its stored token does not (it is this datacenter's secret, and ACL tokens are per
//! datacenter in Weft: no replication). There, its results are filtered by the caller's token, as the other
//! datacenter resolves it. One datacenter's servers get [`REMOTE_TIMEOUT`] each, and the whole failover
//! [`FAILOVER_BUDGET`], so that a DNS lookup (5 s) still gets an answer.

use crate::caller::Caller;
use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use weft_server::Server;
use weft_types::query::PreparedQuery;

/// The internal route a query is run at in another datacenter.
pub const REMOTE_PATH: &str = "/v1/internal/query/execute";

/// How long one server of another datacenter may take to answer before the next is tried.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long failing over may take in all; datacenters not tried by then are not counted.
const FAILOVER_BUDGET: Duration = Duration::from_secs(4);

/// A query to run in another datacenter.
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoteQuery {
    pub query: PreparedQuery,
    pub limit: usize,
    pub connect: bool,
    /// The caller's token, which the other datacenter filters the results with.
    pub token: String,
    /// Set once a follower has passed it to its leader, so it is never passed on again.
    pub forwarded: bool,
}

/// What another datacenter found.
#[derive(Debug, Serialize, Deserialize)]
pub struct RemoteAnswer {
    pub nodes: Vec<Value>,
    pub datacenter: String,
    pub filtered: bool,
}

/// The result of failing over: how many datacenters were tried, and the first answer with instances.
pub struct Outcome {
    pub tried: u32,
    pub answer: Option<RemoteAnswer>,
}

/// The datacenters to try, in order (see the module comment); `known` is nearest first and starts with this one.
pub fn targets(q: &PreparedQuery, known: &[String]) -> Vec<String> {
    let f = &q.service.failover;
    let mut order: Vec<String> = known
        .iter()
        .skip(1)
        .take(usize::try_from(f.nearest_n).unwrap_or(0))
        .cloned()
        .collect();
    let listed = f
        .datacenters
        .iter()
        .chain(f.targets.iter().map(|t| &t.datacenter))
        .filter(|dc| !dc.is_empty());
    for dc in listed {
        if known.iter().skip(1).any(|k| k == dc) && !order.contains(dc) {
            order.push(dc.clone());
        }
    }
    order
}

/// Runs `q` in the other datacenters its failover names, until one has instances.
pub async fn fail_over(
    server: &Server,
    q: &PreparedQuery,
    limit: usize,
    connect: bool,
    token: &str,
) -> Outcome {
    let known: Vec<String> = server.datacenters().into_iter().map(|d| d.name).collect();
    let mut outcome = Outcome {
        tried: 0,
        answer: None,
    };
    // The query's stored token is a secret of this datacenter, and means nothing elsewhere (tokens are not
    // replicated): it stays here, and the other datacenter filters with the caller's token.
    let request = RemoteQuery {
        query: PreparedQuery {
            token: String::new(),
            ..q.clone()
        },
        limit,
        connect,
        token: token.to_string(),
        forwarded: false,
    };
    let deadline = tokio::time::Instant::now() + FAILOVER_BUDGET;
    for dc in targets(q, &known) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        outcome.tried += 1;
        let client = server.http_for(&dc);
        for addr in server.servers_in(&dc) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match weft_rpc::post_json::<_, RemoteAnswer>(
                &client,
                &addr,
                REMOTE_PATH,
                &request,
                REMOTE_TIMEOUT.min(left),
            )
            .await
            {
                Ok(answer) if answer.nodes.is_empty() => break,
                Ok(answer) => {
                    outcome.answer = Some(answer);
                    return outcome;
                }
                Err(e) => {
                    tracing::warn!(%dc, %addr, error = %e, "prepared query failover: a server did not answer")
                }
            }
        }
    }
    outcome
}

/// `POST /v1/internal/query/execute`: runs a query another datacenter sends, on this datacenter's leader.
pub async fn remote_execute(ctx: Ctx) -> Result<Reply, ApiError> {
    // Exact field names, as every internal route: not the lenient decoding of Consul's public bodies.
    let mut req: RemoteQuery = crate::internal::decode(&ctx)?;
    let server = ctx.state.agent.server();
    if !server.is_leader() && !req.forwarded {
        req.forwarded = true;
        let answer: RemoteAnswer = server
            .call_leader(REMOTE_PATH, &req)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(ctx.json(&serde_json::to_value(answer).unwrap_or(Value::Null)));
    }
    let identity = server
        .resolve_token(&req.token)
        .await
        .map_err(|_| ApiError::new(axum::http::StatusCode::FORBIDDEN, "ACL not found"))?;
    let by = Arc::new(Caller::with_identity(identity, true));
    let nodes = {
        let store = server.read();
        crate::query::select(&store, &req.query, &by, req.connect, None, req.limit)
    };
    let answer = RemoteAnswer {
        nodes,
        datacenter: ctx.state.agent.config().datacenter.clone(),
        filtered: by.report_filtered(),
    };
    Ok(ctx.json(&serde_json::to_value(answer).unwrap_or(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(nearest_n: i64, datacenters: &[&str]) -> PreparedQuery {
        let mut q = PreparedQuery::default();
        q.service.failover.nearest_n = nearest_n;
        q.service.failover.datacenters = datacenters.iter().map(|d| d.to_string()).collect();
        q
    }

    #[test]
    fn nearest_first_then_listed_unknown_skipped() {
        let known: Vec<String> = ["dc1", "dc3", "dc2", "dc4"].map(String::from).into();
        assert_eq!(targets(&query(0, &[]), &known), Vec::<String>::new());
        assert_eq!(targets(&query(2, &[]), &known), ["dc3", "dc2"]);
        assert_eq!(targets(&query(9, &[]), &known), ["dc3", "dc2", "dc4"]);
        // Listed ones follow the nearest, once each; an unknown one and this datacenter itself are skipped.
        assert_eq!(
            targets(&query(1, &["dc4", "dc9", "dc3", "dc1"]), &known),
            ["dc3", "dc4"]
        );
        let mut q = query(0, &[]);
        q.service.failover.targets = vec![weft_types::query::QueryTarget {
            peer: String::new(),
            datacenter: "dc2".into(),
        }];
        assert_eq!(targets(&q, &known), ["dc2"]);
    }
}
