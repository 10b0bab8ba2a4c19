//! Which process answers a request.
//!
//! Each route declares its class ([`Forward`]): `/v1/agent/...`, `/v1/status/...` and the dashboard are this
//! agent's own. Everything that reads or changes the cluster's state (catalog, health, KV, sessions, transactions,
//! intentions, the CA) is answered by the leader, as in Consul: a client agent passes such requests to a server's RPC port, a follower passes them to the leader.
//! `?stale` reads are the exception: any server, or a client's replica, answers them from its own copy, and says
//! how old that copy may be in `X-Consul-LastContact`. A request naming another datacenter (`?dc=`) goes from a
//! client agent to its servers and from a server to one of that datacenter's, which answers it as its own.
//!
//! A forwarded request carries `X-Weft-Forwarded` with its hop count (from clients, the header is dropped). A
//! request that has already been passed on [`MAX_HOPS`] times (leadership moving while it travels) fails with "No
//! cluster leader" (or, on its way to another datacenter, "No path to datacenter") rather than being answered from
//! a copy that may be stale, so forwarding never loops and never serves an old state as the leader's.

use crate::policy::Forward;
use crate::reply::{ApiError, Reply};
use crate::ApiState;
use axum::http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::time::Duration;
use tokio::time::Instant;
use weft_rpc::RpcError;
use weft_server::{Mode, LEADER_WAIT};

pub const FORWARDED: &str = "x-weft-forwarded";
/// The node of the agent a request first reached, so that the server answering it can sort near that agent
/// (prepared queries' `_agent`). Only ordering depends on it.
pub const ORIGIN_NODE: &str = "x-weft-origin-node";

/// How many times a request may be passed on: client agent -> server -> another datacenter's server -> its leader
/// is three, and a leader change on the way may add one or two.
const MAX_HOPS: u32 = 5;

/// How long a passed-on blocking query may take (10 minutes, plus Consul's jitter), and any other request.
const BLOCKING_LIMIT: Duration = Duration::from_secs(11 * 60);
const ANSWER_LIMIT: Duration = Duration::from_secs(120);

pub enum Decision {
    Local,
    /// Forward to these RPC addresses, in order, until one answers.
    Forward(Vec<String>),
    /// Forward to these servers of another datacenter (with RPC TLS, checked to present that datacenter's server
    /// name; without it, whoever the WAN pool says serves that datacenter).
    Datacenter(String, Vec<String>),
}

fn hops(headers: &HeaderMap) -> u32 {
    headers
        .get(FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn wants_stale(method: &Method, query: &[(String, String)]) -> bool {
    *method == Method::GET && query.iter().any(|(k, _)| k == "stale")
}

/// `?cached` (Consul's agent cache): this agent's copy of the state is its cache, kept current by the replica
/// stream (or Raft, on a server). A read asking for it is answered here (`X-Cache: HIT`, `Age` the copy's age in
/// seconds) unless the request's `Cache-Control: max-age=N` is older than that copy allows, when it goes to the
/// leader (`X-Cache: MISS`).
pub fn wants_cached(
    state: &ApiState,
    method: &Method,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> bool {
    if *method != Method::GET || !query.iter().any(|(k, _)| k == "cached") {
        return false;
    }
    let max_age = headers
        .get_all(axum::http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok());
    match (max_age, state.agent.server().last_contact_ms()) {
        // Never heard from a server (a client agent just started): the copy may be empty; the leader answers.
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(max), Some(age_ms)) => age_ms / 1000 <= max,
    }
}

/// The `X-Cache` and `Age` headers of a `?cached` read.
pub fn mark_cached(state: &ApiState, reply: &mut Reply, hit: bool) {
    reply.set("x-cache", if hit { "HIT" } else { "MISS" });
    let age = if hit {
        state.agent.server().last_contact_ms().unwrap_or(0) / 1000
    } else {
        0
    };
    reply.set("age", age.to_string());
}

/// The datacenter a request names with `?dc=` when it is not this one, for routes the servers answer and the
/// keyring (agent endpoints answer for this agent whatever `?dc` says, as Consul's do).
fn other_datacenter(
    state: &ApiState,
    class: Forward,
    query: &[(String, String)],
) -> Option<String> {
    if !matches!(
        class,
        Forward::Leader | Forward::LeaderKv | Forward::LocalOrDc
    ) {
        return None;
    }
    let dc = query.iter().find(|(k, _)| k == "dc").map(|(_, v)| v)?;
    (!dc.is_empty() && *dc != state.agent.config().datacenter).then(|| dc.clone())
}

/// Where a request for another datacenter goes: a client agent passes it to its servers (which alone are in the
/// WAN pool); a server passes it to one of that datacenter's servers, which answers it as a request of its own
/// (forwarding it to its leader as usual). Without a path, Consul's error.
fn to_datacenter(state: &ApiState, dc: &str) -> Result<Decision, ApiError> {
    let server = state.agent.server();
    let decision = match server.mode() {
        Mode::Client(replica) => Decision::Forward(replica.servers()),
        Mode::Raft(_) | Mode::Dev => Decision::Datacenter(dc.to_string(), server.servers_in(dc)),
    };
    match &decision {
        Decision::Forward(t) | Decision::Datacenter(_, t) if t.is_empty() => {
            Err(ApiError::internal("No path to datacenter"))
        }
        _ => Ok(decision),
    }
}

/// Decides where a request is answered; waits (up to [`LEADER_WAIT`]) for an election in progress.
pub async fn decide(
    state: &ApiState,
    class: Forward,
    method: &Method,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Decision, ApiError> {
    let server = state.agent.server();
    if let Some(dc) = other_datacenter(state, class, query) {
        if hops(headers) >= MAX_HOPS {
            return Err(ApiError::internal("No path to datacenter"));
        }
        return to_datacenter(state, &dc);
    }
    let client = matches!(server.mode(), Mode::Client(_));
    // `?stale` is answered from this agent's copy, except KV on a client agent, which has none (see
    // `weft_server::replica`): any server answers it from its own.
    let local = match class {
        Forward::Local | Forward::Internal | Forward::LocalOrDc => true,
        Forward::Leader => {
            wants_stale(method, query) || wants_cached(state, method, query, headers)
        }
        Forward::LeaderKv => wants_stale(method, query) && !client,
    };
    if local {
        return Ok(Decision::Local);
    }
    if hops(headers) >= MAX_HOPS {
        return if server.leader_ready() {
            Ok(Decision::Local)
        } else {
            Err(no_leader())
        };
    }
    match server.mode() {
        Mode::Dev => Ok(Decision::Local),
        Mode::Client(replica) => {
            let servers = replica.servers();
            if servers.is_empty() {
                return Err(ApiError::internal("No known Consul servers"));
            }
            Ok(Decision::Forward(servers))
        }
        Mode::Raft(_) => {
            let deadline = Instant::now() + LEADER_WAIT;
            loop {
                // Writes go through the log, which orders them after everything before; only reads need the new
                // leader to have caught up its state.
                if server.leader_ready() || (server.is_leader() && *method != Method::GET) {
                    return Ok(Decision::Local);
                }
                if server.is_leader() {
                    // Just elected: wait until the log before this term is applied.
                    if Instant::now() >= deadline {
                        return Err(no_leader());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                if let Some(addr) = server.leader() {
                    return Ok(Decision::Forward(vec![addr]));
                }
                if Instant::now() >= deadline {
                    return Err(no_leader());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

pub fn no_leader() -> ApiError {
    ApiError::internal("No cluster leader")
}

/// Answers a request where [`decide`] says: here (`None`), or at the leader or a server. When no target can be
/// reached (a leader just died), decides again until [`LEADER_WAIT`] has passed, so an election is a pause rather
/// than an error for the client.
pub async fn route(
    state: &ApiState,
    class: Forward,
    method: &Method,
    path_and_query: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Reply> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let (client, targets) = match decide(state, class, method, query, headers).await {
            Ok(Decision::Local) => return None,
            Ok(decision) => carriers(state, decision),
            Err(e) => return Some(e.into_reply()),
        };
        match forward(
            state,
            &client,
            &targets,
            method,
            path_and_query,
            headers,
            body,
        )
        .await
        {
            Ok(reply) => return Some(reply),
            Err(e) if Instant::now() >= deadline => {
                tracing::warn!(error = %e, "could not forward a request to the servers");
                return Some(Reply::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("rpc error: no server reachable ({e})"),
                ));
            }
            // A refused connection to a dead leader costs nothing: look again soon, so that the request goes on
            // within a few milliseconds of the next leader's election.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The RPC client and the servers a forwarding decision sends to (none for [`Decision::Local`]).
fn carriers(state: &ApiState, decision: Decision) -> (weft_rpc::HttpClient, Vec<String>) {
    let server = state.agent.server();
    match decision {
        Decision::Local => (server.http().clone(), Vec::new()),
        Decision::Forward(targets) => (server.http().clone(), targets),
        Decision::Datacenter(dc, targets) => (server.http_for(&dc), targets),
    }
}

/// Passes a request to another datacenter (through this agent's servers on a client agent) and returns its
/// answer as it came: the keyring's fan-out, and the dashboard's pages of other datacenters.
pub async fn to_other_datacenter(
    state: &ApiState,
    dc: &str,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if hops(headers) >= MAX_HOPS {
        return ApiError::internal("No path to datacenter").into_reply();
    }
    let (client, targets) = match to_datacenter(state, dc) {
        Ok(decision) => carriers(state, decision),
        Err(e) => return e.into_reply(),
    };
    match forward(
        state,
        &client,
        &targets,
        method,
        path_and_query,
        headers,
        body,
    )
    .await
    {
        Ok(reply) => reply,
        Err(e) => Reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rpc error: no server of {dc} reachable ({e})"),
        ),
    }
}

/// On a client agent, passes a request to the servers and returns their answer; `None` anywhere else. For the
/// dashboard's KV pages: a client agent holds no KV, so a server renders them.
pub async fn to_servers(
    state: &ApiState,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
) -> Option<Reply> {
    let Mode::Client(replica) = state.agent.server().mode() else {
        return None;
    };
    let servers = replica.servers();
    Some(
        match forward(
            state,
            state.agent.server().http(),
            &servers,
            method,
            path_and_query,
            headers,
            &[],
        )
        .await
        {
            Ok(reply) => reply,
            Err(e) => Reply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("rpc error: no server reachable ({e})"),
            ),
        },
    )
}

/// Passes the request on and returns the answer as it came; tries each target in turn until one is reached.
async fn forward(
    state: &ApiState,
    client: &weft_rpc::HttpClient,
    targets: &[String],
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, RpcError> {
    let mut passed_on = HeaderMap::new();
    for (name, value) in headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            passed_on.append(name, value.clone());
        }
    }
    if let Ok(hop) = axum::http::HeaderValue::from_str(&(hops(headers) + 1).to_string()) {
        passed_on.insert(FORWARDED, hop);
    }
    if !passed_on.contains_key(ORIGIN_NODE) {
        if let Ok(node) = axum::http::HeaderValue::from_str(&state.agent.config().node_name) {
            passed_on.insert(ORIGIN_NODE, node);
        }
    }
    // A request without a token is answered on the servers with the default token of the agent it was asked of, as
    // Consul's agents do: that agent's alone (hop 0), never one added by an agent passing it on.
    if let Some(token) = state.acl.default_token().filter(|_| hops(headers) == 0) {
        let query: Vec<(String, String)> = path_and_query
            .split_once('?')
            .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        if crate::caller::token_of(&query, headers).is_none() {
            if let Ok(value) = axum::http::HeaderValue::from_str(&token) {
                passed_on.insert("x-consul-token", value);
            }
        }
    }
    let path = format!("{}{path_and_query}", crate::FORWARD_PREFIX);
    let body = Bytes::copy_from_slice(body);
    let mut last_error = RpcError::Unreachable {
        addr: String::new(),
        reason: "no servers known".into(),
    };
    // Blocking queries wait up to 10 minutes (plus Consul's jitter of wait/16); anything else gets a server's answer
    // well within two, so a server that accepts and then stalls does not hold the request for longer.
    let blocking = path_and_query
        .split_once('?')
        .is_some_and(|(_, q)| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "index"));
    let limit = if blocking {
        BLOCKING_LIMIT
    } else {
        ANSWER_LIMIT
    };
    for addr in targets {
        let send = client.send(method.clone(), addr, &path, &passed_on, body.clone());
        let answer = tokio::time::timeout(limit, send).await;
        let response = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                last_error = e;
                continue;
            }
            Err(_) => {
                last_error = RpcError::Timeout {
                    addr: addr.clone(),
                    timeout: limit,
                };
                continue;
            }
        };
        let status = response.status();
        let mut reply_headers = response.headers().clone();
        reply_headers.remove(axum::http::header::CONTENT_LENGTH);
        reply_headers.remove(axum::http::header::TRANSFER_ENCODING);
        reply_headers.remove(axum::http::header::CONNECTION);
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                last_error = RpcError::Broken {
                    addr: addr.clone(),
                    reason: e.to_string(),
                };
                continue;
            }
        };
        return Ok(Reply {
            status,
            headers: reply_headers,
            body,
            stream: None,
        });
    }
    Err(last_error)
}
