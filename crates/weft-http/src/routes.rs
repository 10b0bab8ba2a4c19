//! The route table: every endpoint, its methods and its handler, registered explicitly in one place.
//! A path ending in `/` is a prefix route whose remainder is the handler's path parameter.

use crate::ctx::Ctx;
use crate::reply::{ApiError, Reply};
use crate::{
    agent, catalog, connect, health, intentions, internal, kv, operator, session, snapshot, status,
    txn,
};
use axum::http::Method;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send>>;
pub type Handler = fn(Ctx) -> HandlerFuture;

pub struct Route {
    pub path: &'static str,
    pub methods: &'static [Method],
    pub handler: Handler,
}

macro_rules! route {
    ($path:expr, [$($m:ident),*], $f:path) => {
        Route { path: $path, methods: &[$(Method::$m),*], handler: |c| Box::pin($f(c)) }
    };
}

fn table() -> Vec<Route> {
    vec![
        // server RPC (answered on the RPC listener only)
        route!("/v1/internal/raft/", [POST], internal::raft),
        route!("/v1/internal/apply", [POST], internal::apply),
        route!("/v1/internal/ca/sign", [POST], internal::sign),
        route!("/v1/internal/hello", [POST], internal::hello),
        route!("/v1/internal/join", [POST], internal::join),
        // operator
        route!(
            "/v1/operator/raft/configuration",
            [GET],
            operator::raft_configuration
        ),
        route!("/v1/operator/raft/peer", [DELETE], operator::raft_peer),
        route!("/v1/snapshot", [GET, PUT], snapshot::snapshot),
        route!(
            "/v1/operator/autopilot/health",
            [GET],
            operator::autopilot_health
        ),
        // agent
        route!("/v1/agent/self", [GET], agent::self_),
        route!("/v1/agent/members", [GET], agent::members),
        route!("/v1/agent/join/", [PUT], agent::join),
        route!("/v1/agent/force-leave/", [PUT], agent::force_leave),
        route!("/v1/agent/version", [GET], agent::version),
        route!("/v1/agent/services", [GET], agent::services),
        route!("/v1/agent/service/", [GET], agent::service),
        route!("/v1/agent/service/register", [PUT], agent::register_service),
        route!(
            "/v1/agent/service/deregister/",
            [PUT],
            agent::deregister_service
        ),
        route!(
            "/v1/agent/service/maintenance/",
            [PUT],
            agent::service_maintenance
        ),
        route!("/v1/agent/maintenance", [PUT], agent::node_maintenance),
        route!("/v1/agent/checks", [GET], agent::checks),
        route!("/v1/agent/check/register", [PUT], agent::register_check),
        route!(
            "/v1/agent/check/deregister/",
            [PUT],
            agent::deregister_check
        ),
        route!("/v1/agent/check/pass/", [PUT], agent::check_pass),
        route!("/v1/agent/check/warn/", [PUT], agent::check_warn),
        route!("/v1/agent/check/fail/", [PUT], agent::check_fail),
        route!("/v1/agent/check/update/", [PUT], agent::check_update),
        route!("/v1/agent/health/service/id/", [GET], agent::health_by_id),
        route!(
            "/v1/agent/health/service/name/",
            [GET],
            agent::health_by_name
        ),
        route!("/v1/agent/reload", [PUT], agent::reload),
        route!("/v1/agent/leave", [PUT], agent::leave),
        // catalog
        route!("/v1/catalog/register", [PUT], catalog::register),
        route!("/v1/catalog/deregister", [PUT], catalog::deregister),
        route!("/v1/catalog/datacenters", [GET], catalog::datacenters),
        route!("/v1/catalog/nodes", [GET], catalog::nodes),
        route!("/v1/catalog/services", [GET], catalog::services),
        route!("/v1/catalog/service/", [GET], catalog::service),
        route!("/v1/catalog/connect/", [GET], catalog::connect),
        route!("/v1/catalog/node/", [GET], catalog::node),
        route!("/v1/catalog/node-services/", [GET], catalog::node_services),
        // health
        route!("/v1/health/node/", [GET], health::node),
        route!("/v1/health/checks/", [GET], health::checks),
        route!("/v1/health/state/", [GET], health::state),
        route!("/v1/health/service/", [GET], health::service),
        route!("/v1/health/connect/", [GET], health::connect),
        // kv, txn
        route!("/v1/kv/", [GET, PUT, DELETE], kv::kv),
        route!("/v1/txn", [PUT], txn::txn),
        // sessions
        route!("/v1/session/create", [PUT], session::create),
        route!("/v1/session/destroy/", [PUT], session::destroy),
        route!("/v1/session/renew/", [PUT], session::renew),
        route!("/v1/session/info/", [GET], session::info),
        route!("/v1/session/node/", [GET], session::node),
        route!("/v1/session/list", [GET], session::list),
        // connect
        route!("/v1/connect/ca/roots", [GET], connect::roots),
        route!("/v1/agent/connect/ca/roots", [GET], connect::roots),
        route!(
            "/v1/connect/ca/configuration",
            [GET, PUT],
            connect::configuration
        ),
        route!("/v1/agent/connect/ca/leaf/", [GET], connect::leaf),
        route!(
            "/v1/agent/connect/authorize",
            [POST, PUT],
            connect::authorize
        ),
        route!(
            "/v1/connect/intentions",
            [GET, POST],
            intentions::list_or_create
        ),
        route!(
            "/v1/connect/intentions/exact",
            [GET, PUT, DELETE],
            intentions::exact
        ),
        route!("/v1/connect/intentions/match", [GET], intentions::matches),
        route!("/v1/connect/intentions/check", [GET], intentions::check),
        route!(
            "/v1/connect/intentions/",
            [GET, PUT, DELETE],
            intentions::by_id
        ),
        route!("/v1/config", [PUT], intentions::config_put),
        route!("/v1/config/", [GET, DELETE], intentions::config_entry),
        // status
        route!("/v1/status/leader", [GET], status::leader),
        route!("/v1/status/peers", [GET], status::peers),
    ]
}

fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(table)
}

/// The route for a path (the longest matching one) and the path's remainder after it.
pub fn find(path: &str) -> Option<(&'static Route, &str)> {
    routes()
        .iter()
        .filter(|r| {
            if r.path.ends_with('/') {
                path.starts_with(r.path)
            } else {
                path == r.path
            }
        })
        .max_by_key(|r| r.path.len())
        .map(|r| (r, &path[r.path.len()..]))
}
