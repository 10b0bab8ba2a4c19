//! Consul's HTTP API, `/v1/...`, served by every agent.
//!
//! Routing is Consul's: prefix routes whose remainder is the path parameter (slashes included), a declared method
//! set per route (405 with `Allow` otherwise, `OPTIONS` answered), and Consul's 404 texts. Every route is listed in one
//! table (`routes`) with its declared policy (`policy`: forwarding class, body limit, listener, ACL rule); handlers
//! take a [`Ctx`] and return a [`Reply`] or an [`ApiError`], which becomes a plain-text answer in one place.

mod acl;
mod acl_login;
mod agent;
pub mod agent_self;
pub mod agent_token;
pub mod blocking;
pub mod browser_guard;
pub mod caller;
mod catalog;
mod config_chain;
mod config_entries;
mod connect;
mod coordinate;
pub mod ctx;
mod event;
pub mod forward;
mod health;
pub mod idle;
mod intentions;
mod internal;
mod keyring;
mod keyring_federation;
mod kv;
mod metrics;
pub mod monitor;
mod operator;
pub mod policy;
pub mod query;
pub mod query_failover;
pub mod reply;
pub mod routes;
pub mod rpc_guard;
pub mod serve;
mod session;
pub mod snapshot;
pub mod snapshot_archive;
mod status;
mod txn;

pub use ctx::Ctx;
pub use reply::{ApiError, Reply};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use std::sync::Arc;
use tokio::sync::Notify;
use weft_agent::Agent;

/// Why a reload did not complete (the composition root's own error, carried as a trait object).
pub type ReloadFailure = Box<dyn std::error::Error + Send + Sync>;

/// Re-reads and applies the configuration for `/v1/agent/reload`: answers the changed settings that need a restart,
/// or why nothing could be reloaded.
pub type ConfigReloader = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Vec<String>, ReloadFailure>> + Send>,
        > + Send
        + Sync,
>;

/// Everything handlers need, shared: a clone is one reference count, since every request clones it (axum's
/// `State`) and drops it when answered, a thousand at once when a write wakes parked blocking queries. Fields are
/// read through `Deref`; setting one (at start-up) copies the settings if they are shared.
#[derive(Clone)]
pub struct ApiState(Arc<ApiSettings>);

impl std::ops::Deref for ApiState {
    type Target = ApiSettings;
    fn deref(&self) -> &ApiSettings {
        &self.0
    }
}

impl std::ops::DerefMut for ApiState {
    fn deref_mut(&mut self) -> &mut ApiSettings {
        Arc::make_mut(&mut self.0)
    }
}

/// What [`ApiState`] holds.
#[derive(Clone)]
pub struct ApiSettings {
    pub agent: Agent,
    pub reload: Option<ConfigReloader>,
    /// Largest KV value accepted (Consul's `kv_max_value_size`, 512 KiB by default).
    pub kv_max_value_size: usize,
    /// Shortest session TTL accepted (Consul's `session_ttl_min`, 10 s by default).
    pub session_ttl_min: std::time::Duration,
    /// Notified by `/v1/agent/leave` so the process can shut down after leaving.
    pub shutdown: Arc<Notify>,
    /// Identical blocking queries share one evaluation per change.
    pub shared_reads: Arc<blocking::SharedReads>,
    /// What authorization decides when no intention matches (Consul: the ACL default policy; allow in dev).
    pub default_policy: weft_types::DefaultPolicy,
    /// What `/v1/agent/self` reports of the configuration.
    pub self_info: Arc<agent_self::SelfInfo>,
    /// True for the server RPC listener, which also answers `/v1/internal/...` (Raft, forwarded writes, joins).
    pub rpc: bool,
    /// True for the API behind [`FORWARD_PREFIX`] on the RPC listener: requests other agents passed on, which never
    /// include this agent's own endpoints (see [`forwarded_router`]).
    pub forwarded: bool,
    /// The HTTP API's connection counts (per-client limit, refusals), shown in `/v1/agent/self`.
    pub http_connections: Arc<weft_rpc::Connections>,
    /// The server RPC listener's, on agents that serve it.
    pub rpc_connections: Option<Arc<weft_rpc::Connections>>,
    /// ACL settings of the API (the agent's tokens, the bootstrap reset file, token TTL bounds).
    pub acl: caller::AclApi,
    /// The agent's log, for `/v1/agent/monitor` (`None` where the process logs nowhere to stream from).
    pub logs: Option<Arc<monitor::LogStream>>,
}

impl ApiState {
    pub fn new(agent: Agent) -> ApiState {
        ApiState(Arc::new(ApiSettings {
            agent,
            reload: None,
            kv_max_value_size: 512 * 1024,
            session_ttl_min: std::time::Duration::from_secs(10),
            shutdown: Arc::new(Notify::new()),
            shared_reads: Arc::default(),
            default_policy: weft_types::DefaultPolicy::Allow,
            self_info: Arc::default(),
            rpc: false,
            forwarded: false,
            http_connections: weft_rpc::Connections::new(200),
            rpc_connections: None,
            acl: caller::AclApi::default(),
            logs: None,
        }))
    }
}

/// Largest body read for endpoints other than KV and txn.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The whole API as an axum router.
pub fn router(state: ApiState) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(state)
}

/// The API as the RPC listener serves it behind [`FORWARD_PREFIX`]: what agents pass on, the servers' routes.
/// This agent's own endpoints (`/v1/agent/...`, `/v1/status/...`: [`policy::Forward::Local`]) are never passed on,
/// so here they are refused; otherwise any member reaching the RPC port could make a server leave, reload or
/// register services on it.
pub fn forwarded_router(mut state: ApiState) -> axum::Router {
    state.forwarded = true;
    router(state)
}

/// Where the server RPC listener takes requests that client agents and followers pass on: the public request's path
/// follows this prefix (`/v1/internal/forward/v1/kv/a`). Only cluster members may send them (see `weft_rpc`).
pub const FORWARD_PREFIX: &str = "/v1/internal/forward";

/// The server RPC listener (port 8300): the internal endpoints and the replica stream, and `forwardable` (the public
/// API, and the dashboard's KV pages) under [`FORWARD_PREFIX`] only. A public path without the prefix is unknown
/// here, so nothing that reaches the RPC port can use the public API except as a forwarded request.
pub fn rpc_router(
    mut state: ApiState,
    forwardable: axum::Router,
    guard: rpc_guard::RpcGuard,
) -> axum::Router {
    state.rpc = true;
    axum::Router::new()
        .route(
            "/v1/internal/stream",
            axum::routing::get(
                |State(state): State<ApiState>| async move { internal::stream(&state) },
            ),
        )
        .nest_service(FORWARD_PREFIX, forwardable)
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(
            guard,
            rpc_guard::guard,
        ))
        .with_state(state)
}

/// Largest body on the RPC port's internal paths (Raft appends and snapshot chunks) and snapshot restores.
const MAX_INTERNAL_BODY: usize = 64 * 1024 * 1024;

async fn dispatch(State(state): State<ApiState>, req: Request) -> Response {
    // The ACL default, as Consul always says it; and, apart from it, the default decision for connections no
    // intention covers, which proxies read (Consul coupled the two; Weft keeps them separate).
    let acl_policy = state.agent.server().config().acl.default_policy.as_str();
    let intention_policy = state.default_policy.as_str();
    let reply = handle(state, req).await;
    let mut builder = Response::builder().status(reply.status);
    if let Some(headers) = builder.headers_mut() {
        headers.extend(reply.headers);
        headers.insert(
            reply::names::X_CONSUL_DEFAULT_ACL_POLICY,
            header::HeaderValue::from_static(acl_policy),
        );
        headers.insert(
            reply::names::X_WEFT_DEFAULT_INTENTION_POLICY,
            header::HeaderValue::from_static(intention_policy),
        );
    }
    if reply.stream.is_some() {
        builder = builder.extension(idle::LongLived);
    }
    builder
        .body(reply.stream.unwrap_or_else(|| Body::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Handles one request without sockets; tests call this (through the router) directly.
pub async fn handle(state: ApiState, req: Request) -> Reply {
    let raw_path = req.uri().path().to_string();
    let path = match percent_encoding::percent_decode_str(&raw_path).decode_utf8() {
        Ok(p) => p.into_owned(),
        Err(_) => return Reply::text(StatusCode::BAD_REQUEST, "Invalid URL path: not valid UTF-8"),
    };
    if path.chars().any(|c| c.is_control()) {
        return Reply::text(
            StatusCode::BAD_REQUEST,
            format!("Invalid URL path: {raw_path:?} contains unprintable characters"),
        );
    }
    if path == "/" {
        // As Consul with its UI enabled: the root leads to the dashboard.
        let mut r = Reply::text(
            StatusCode::MOVED_PERMANENTLY,
            "<a href=\"/ui/\">Moved Permanently</a>.\n\n",
        );
        r.set("location", "/ui/");
        r.set("content-type", "text/html; charset=utf-8");
        r.set("x-weft", "agent");
        return r;
    }
    let listener = if state.rpc {
        policy::Listener::RpcOnly
    } else {
        policy::Listener::Public
    };
    let Some((route, rest)) = routes::find(&path, listener) else {
        let text = if path.contains("/v1/") {
            "Invalid URL path: not a recognized HTTP API endpoint\n"
        } else {
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
        };
        return Reply::text(StatusCode::NOT_FOUND, text);
    };
    if state.forwarded && route.policy.forward == policy::Forward::Local {
        return Reply::text(
            StatusCode::FORBIDDEN,
            "rpc: this agent's own endpoints are answered by the agent asked, never passed on\n",
        );
    }
    let method = req.method().clone();
    let rpc_role = req
        .extensions()
        .get::<axum::extract::ConnectInfo<weft_rpc::RpcPeer>>()
        .map(|c| c.0.role);
    let allow = || {
        let mut names = vec!["OPTIONS"];
        names.extend(route.methods.iter().map(|m| m.as_str()));
        names.join(",")
    };
    if method == Method::OPTIONS {
        let mut r = Reply::empty();
        r.set("allow", allow());
        return r;
    }
    if !route.methods.contains(&method) {
        let mut r = Reply::text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        );
        r.set("allow", allow());
        return r;
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let mut headers = req.headers().clone();
    if !(state.rpc || state.forwarded) {
        // Only agents passing a request on say how far it has come and where it began; from anyone else these
        // headers would skip this agent's default token or bend `_agent` sorting.
        headers.remove(forward::FORWARDED);
        headers.remove(forward::ORIGIN_NODE);
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| raw_path.clone());
    let limit = match route.policy.body {
        policy::BodyLimit::Default => MAX_BODY,
        policy::BodyLimit::KvValue => MAX_BODY.max(state.kv_max_value_size.saturating_add(1)),
        policy::BodyLimit::Large => MAX_INTERNAL_BODY,
    };
    let body = match axum::body::to_bytes(req.into_body(), limit).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return Reply::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body too large, max size: {limit} bytes"),
            )
        }
    };
    let cached = route.policy.forward == policy::Forward::Leader
        && method == Method::GET
        && query.iter().any(|(k, _)| k == "cached");
    let started = std::time::Instant::now();
    if let Some(mut reply) = forward::route(
        &state,
        route.policy.forward,
        &method,
        &path_and_query,
        &query,
        &headers,
        &body,
    )
    .await
    {
        if cached {
            forward::mark_cached(&state, &mut reply, false);
        }
        // Passed on to a server: timed here too, as Consul's agents time what they forward.
        state.agent.server().metrics().time_http(
            method_name(&method),
            route.path,
            started.elapsed(),
        );
        return reply;
    }
    if method == Method::GET
        && query.iter().any(|(k, _)| k == "consistent")
        && matches!(
            route.policy.forward,
            policy::Forward::Leader | policy::Forward::LeaderKv
        )
        && state.agent.server().ensure_linearizable().await.is_err()
    {
        return forward::no_leader().into_reply();
    }
    // Who is calling is decided where the request is answered (a forwarded request, by the leader).
    let caller = if state.rpc || route.policy.acl.resource == policy::Resource::None {
        caller::Caller::everything()
    } else {
        match caller::Caller::resolve(&state, &query, &headers).await {
            Ok(c) => c,
            Err(e) => return e.into_reply(),
        }
    };
    if let Err(e) = caller::check_route(
        &caller,
        &route.policy.acl,
        &method,
        rest,
        &query,
        &state.agent.config().node_name,
    ) {
        return e.into_reply();
    }
    // What the request is timed under: its method and its route's pattern (never the path itself, so the number
    // of series stays bounded).
    let timed = (method_name(&method), route.path, state.clone());
    let ctx = Ctx {
        state,
        method,
        path: path.clone(),
        rest: rest.to_string(),
        query,
        headers,
        body,
        caller: caller.clone(),
        rpc_role,
    };
    let mut reply = match (route.handler)(ctx).await {
        Ok(reply) => reply,
        Err(e) => e.into_reply(),
    };
    let (method, path, state) = timed;
    let metrics = state.agent.server().metrics();
    if state.rpc {
        metrics.count("consul.rpc.request", vec![], 1.0);
    }
    metrics.time_http(method, path, started.elapsed());
    if caller.report_filtered() {
        reply.set("x-consul-results-filtered-by-acls", "true");
    }
    if cached {
        // Answered from this agent's copy (fresh enough, or the leader's own).
        forward::mark_cached(&state, &mut reply, true);
    }
    reply
}

/// A method's name with a static lifetime, for metrics (anything unusual is `OTHER`).
fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod acl_login_tests;
#[cfg(test)]
mod acl_matrix;
#[cfg(test)]
mod acl_tests;
#[cfg(test)]
mod config_entry_tests;
#[cfg(test)]
mod coordinate_tests;
#[cfg(test)]
mod query_tests;
#[cfg(test)]
mod route_audit;
#[cfg(test)]
mod tests;
