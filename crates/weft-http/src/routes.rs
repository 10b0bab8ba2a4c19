//! The route table: every endpoint, its methods and its handler, registered explicitly in one place.
//! A path ending in `/` is a prefix route whose remainder is the handler's path parameter.

use crate::ctx::Ctx;
use crate::policy::{Access, AclRule, BodyLimit, Forward, Listener, Policy, Resource, Subject};
use crate::reply::{ApiError, Reply};
use crate::{
    acl, acl_login, agent, agent_self, agent_token, catalog, connect, coordinate, event, health,
    intentions, internal, keyring, kv, metrics, monitor, operator, query, query_failover, session,
    snapshot, status, txn,
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
    pub policy: Policy,
}

macro_rules! route {
    ($path:expr, [$($m:ident),*], $f:path, $policy:expr) => {
        Route {
            path: $path,
            methods: &[$(Method::$m),*],
            handler: |c| Box::pin($f(c)),
            policy: $policy,
        }
    };
}

/// This agent answers from its own state.
const fn local(acl: AclRule) -> Policy {
    Policy {
        forward: Forward::Local,
        body: BodyLimit::Default,
        listener: Listener::Public,
        acl,
    }
}

/// This agent answers, unless `?dc=` names another datacenter (one of its servers answers then).
const fn local_or_dc(acl: AclRule) -> Policy {
    Policy {
        forward: Forward::LocalOrDc,
        ..local(acl)
    }
}

/// The leader answers (stale reads: this agent's copy).
const fn leader(acl: AclRule) -> Policy {
    Policy {
        forward: Forward::Leader,
        body: BodyLimit::Default,
        listener: Listener::Public,
        acl,
    }
}

/// KV and transactions: the leader answers, stale reads a server, values up to `kv_max_value_size`.
const fn kv(acl: AclRule) -> Policy {
    Policy {
        forward: Forward::LeaderKv,
        body: BodyLimit::KvValue,
        listener: Listener::Public,
        acl,
    }
}

/// Cluster-internal, for any member: mounted on the server RPC listener only.
const MEMBERS: Policy = Policy {
    forward: Forward::Internal,
    body: BodyLimit::Large,
    listener: Listener::RpcOnly,
    acl: AclRule::new(Resource::ClusterMember, Access::Write, Subject::Whole),
};

/// Cluster-internal, for servers only (Raft and membership).
const SERVERS: Policy = Policy {
    acl: AclRule::new(Resource::ClusterServer, Access::Write, Subject::Whole),
    ..MEMBERS
};

const fn rule(resource: Resource, access: Access, subject: Subject) -> AclRule {
    AclRule::new(resource, access, subject)
}

use Access::{ByMethod, Read, Write};
use Resource::{
    Acl, Agent, Event, Intention, Key, Keyring, Node, Operator, PreparedQuery, Service, Session,
};
use Subject::{Body, Each, Keys, Owner, Path, Query, ThisNode, Whole};

fn table() -> Vec<Route> {
    vec![
        // server RPC (mounted on the RPC listener only)
        route!("/v1/internal/raft/", [POST], internal::raft, SERVERS),
        route!("/v1/internal/apply", [POST], internal::apply, MEMBERS),
        route!("/v1/internal/ca/sign", [POST], internal::sign, MEMBERS),
        route!(
            "/v1/internal/ca/seal-key",
            [POST],
            internal::seal_key,
            SERVERS
        ),
        route!("/v1/internal/hello", [POST], internal::hello, SERVERS),
        // another datacenter's server failing a prepared query over to this one
        route!(
            "/v1/internal/query/execute",
            [POST],
            query_failover::remote_execute,
            SERVERS
        ),
        route!("/v1/internal/join", [POST], internal::join, SERVERS),
        route!(
            "/v1/internal/acl/resolve",
            [POST],
            internal::acl_resolve,
            MEMBERS
        ),
        // operator
        route!(
            "/v1/operator/raft/configuration",
            [GET],
            operator::raft_configuration,
            leader(rule(Operator, Read, Whole))
        ),
        route!(
            "/v1/operator/raft/transfer-leader",
            [POST],
            operator::transfer_leader,
            leader(rule(Operator, Write, Whole))
        ),
        route!(
            "/v1/operator/raft/peer",
            [DELETE],
            operator::raft_peer,
            leader(rule(Operator, Write, Whole))
        ),
        // A snapshot holds every secret in the cluster: management only (Consul: acl:write).
        route!(
            "/v1/snapshot",
            [GET, PUT],
            snapshot::snapshot,
            Policy {
                body: BodyLimit::Large,
                ..kv(rule(Acl, Write, Whole))
            }
        ),
        route!(
            "/v1/operator/autopilot/health",
            [GET],
            operator::autopilot_health,
            leader(rule(Operator, Read, Whole))
        ),
        route!(
            "/v1/event/fire/",
            [PUT],
            event::fire,
            local_or_dc(rule(Event, Write, Path))
        ),
        route!(
            "/v1/event/list",
            [GET],
            event::list,
            local(rule(Event, Read, Each))
        ),
        route!(
            "/v1/query",
            [GET, POST],
            query::collection,
            leader(rule(PreparedQuery, ByMethod, Each))
        ),
        route!(
            "/v1/query/",
            [GET, PUT, DELETE],
            query::item,
            leader(rule(PreparedQuery, ByMethod, Owner))
        ),
        route!(
            "/v1/operator/usage",
            [GET],
            operator::usage,
            leader(rule(Operator, Read, Whole))
        ),
        route!(
            "/v1/operator/autopilot/configuration",
            [GET, PUT],
            operator::autopilot_configuration,
            leader(rule(Operator, ByMethod, Whole))
        ),
        // Every agent is a gossip member and carries the operation to the others itself.
        route!(
            "/v1/operator/keyring",
            [GET, POST, PUT, DELETE],
            keyring::keyring,
            local_or_dc(rule(Keyring, ByMethod, Whole))
        ),
        route!(
            "/v1/operator/autopilot/state",
            [GET],
            operator::autopilot_state,
            leader(rule(Operator, Read, Whole))
        ),
        // agent
        route!(
            "/v1/agent/self",
            [GET],
            agent_self::self_,
            local(rule(Agent, Read, ThisNode))
        ),
        route!(
            "/v1/agent/metrics",
            [GET],
            metrics::metrics,
            local(rule(Agent, Read, ThisNode))
        ),
        route!(
            "/v1/agent/monitor",
            [GET],
            monitor::monitor,
            local(rule(Agent, Read, ThisNode))
        ),
        route!(
            "/v1/agent/host",
            [GET],
            agent_self::host,
            local(rule(Operator, Read, Whole))
        ),
        route!(
            "/v1/agent/members",
            [GET],
            agent::members,
            local(rule(Node, Read, Each))
        ),
        route!(
            "/v1/agent/join/",
            [PUT],
            agent::join,
            local(rule(Agent, Write, ThisNode))
        ),
        route!(
            "/v1/agent/force-leave/",
            [PUT],
            agent::force_leave,
            local(rule(Operator, Write, Whole))
        ),
        route!(
            "/v1/agent/version",
            [GET],
            agent::version,
            local(AclRule::NONE)
        ),
        route!(
            "/v1/agent/services",
            [GET],
            agent::services,
            local(rule(Service, Read, Each))
        ),
        route!(
            "/v1/agent/service/",
            [GET],
            agent::service,
            local(rule(Service, Read, Owner))
        ),
        route!(
            "/v1/agent/service/register",
            [PUT],
            agent::register_service,
            local(rule(Service, Write, Body))
        ),
        route!(
            "/v1/agent/service/deregister/",
            [PUT],
            agent::deregister_service,
            local(rule(Service, Write, Owner))
        ),
        route!(
            "/v1/agent/service/maintenance/",
            [PUT],
            agent::service_maintenance,
            local(rule(Service, Write, Owner))
        ),
        route!(
            "/v1/agent/maintenance",
            [PUT],
            agent::node_maintenance,
            local(rule(Node, Write, ThisNode))
        ),
        route!(
            "/v1/agent/checks",
            [GET],
            agent::checks,
            local(rule(Service, Read, Each))
        ),
        // A check belongs to a service (service:write) or to the node (node:write); the subject is resolved from
        // the definition or the check's ID.
        route!(
            "/v1/agent/check/register",
            [PUT],
            agent::register_check,
            local(rule(Service, Write, Body))
        ),
        route!(
            "/v1/agent/check/deregister/",
            [PUT],
            agent::deregister_check,
            local(rule(Service, Write, Owner))
        ),
        route!(
            "/v1/agent/check/pass/",
            [PUT],
            agent::check_pass,
            local(rule(Service, Write, Owner))
        ),
        route!(
            "/v1/agent/check/warn/",
            [PUT],
            agent::check_warn,
            local(rule(Service, Write, Owner))
        ),
        route!(
            "/v1/agent/check/fail/",
            [PUT],
            agent::check_fail,
            local(rule(Service, Write, Owner))
        ),
        route!(
            "/v1/agent/check/update/",
            [PUT],
            agent::check_update,
            local(rule(Service, Write, Owner))
        ),
        route!(
            "/v1/agent/health/service/id/",
            [GET],
            agent::health_by_id,
            local(rule(Service, Read, Owner))
        ),
        route!(
            "/v1/agent/health/service/name/",
            [GET],
            agent::health_by_name,
            local(rule(Service, Read, Path))
        ),
        route!(
            "/v1/agent/reload",
            [PUT],
            agent::reload,
            local(rule(Agent, Write, ThisNode))
        ),
        route!(
            "/v1/agent/token/",
            [PUT],
            agent_token::set,
            local(rule(Agent, Write, ThisNode))
        ),
        route!(
            "/v1/agent/leave",
            [PUT],
            agent::leave,
            local(rule(Agent, Write, ThisNode))
        ),
        // catalog
        route!(
            "/v1/catalog/register",
            [PUT],
            catalog::register,
            leader(rule(Node, Write, Body))
        ),
        route!(
            "/v1/catalog/deregister",
            [PUT],
            catalog::deregister,
            leader(rule(Node, Write, Body))
        ),
        route!(
            "/v1/catalog/datacenters",
            [GET],
            catalog::datacenters,
            leader(AclRule::NONE)
        ),
        route!(
            "/v1/coordinate/datacenters",
            [GET],
            coordinate::datacenters,
            leader(rule(Node, Read, Each))
        ),
        route!(
            "/v1/coordinate/nodes",
            [GET],
            coordinate::nodes,
            leader(rule(Node, Read, Each))
        ),
        route!(
            "/v1/coordinate/node/",
            [GET],
            coordinate::node,
            leader(rule(Node, Read, Path))
        ),
        route!(
            "/v1/coordinate/update",
            [PUT],
            coordinate::update,
            leader(rule(Node, Write, Body))
        ),
        route!(
            "/v1/catalog/nodes",
            [GET],
            catalog::nodes,
            leader(rule(Node, Read, Each))
        ),
        route!(
            "/v1/catalog/services",
            [GET],
            catalog::services,
            leader(rule(Service, Read, Each))
        ),
        route!(
            "/v1/catalog/service/",
            [GET],
            catalog::service,
            leader(rule(Service, Read, Path))
        ),
        route!(
            "/v1/catalog/connect/",
            [GET],
            catalog::connect,
            leader(rule(Service, Read, Path))
        ),
        route!(
            "/v1/catalog/node/",
            [GET],
            catalog::node,
            leader(rule(Node, Read, Path))
        ),
        route!(
            "/v1/catalog/node-services/",
            [GET],
            catalog::node_services,
            leader(rule(Node, Read, Path))
        ),
        // health
        route!(
            "/v1/health/node/",
            [GET],
            health::node,
            leader(rule(Node, Read, Path))
        ),
        route!(
            "/v1/health/checks/",
            [GET],
            health::checks,
            leader(rule(Service, Read, Path))
        ),
        route!(
            "/v1/health/state/",
            [GET],
            health::state,
            leader(rule(Service, Read, Each))
        ),
        route!(
            "/v1/health/service/",
            [GET],
            health::service,
            leader(rule(Service, Read, Path))
        ),
        route!(
            "/v1/health/ingress/",
            [GET],
            health::ingress,
            leader(rule(Service, Read, Path))
        ),
        route!(
            "/v1/catalog/gateway-services/",
            [GET],
            catalog::gateway_services,
            leader(rule(Service, Read, Path))
        ),
        route!(
            "/v1/health/connect/",
            [GET],
            health::connect,
            leader(rule(Service, Read, Path))
        ),
        // kv, txn
        route!(
            "/v1/kv/",
            [GET, PUT, DELETE],
            kv::kv,
            kv(rule(Key, ByMethod, Keys))
        ),
        route!("/v1/txn", [PUT], txn::txn, kv(rule(Key, Write, Body))),
        // sessions
        route!(
            "/v1/session/create",
            [PUT],
            session::create,
            leader(rule(Session, Write, Body))
        ),
        route!(
            "/v1/session/destroy/",
            [PUT],
            session::destroy,
            leader(rule(Session, Write, Owner))
        ),
        route!(
            "/v1/session/renew/",
            [PUT],
            session::renew,
            leader(rule(Session, Write, Owner))
        ),
        route!(
            "/v1/session/info/",
            [GET],
            session::info,
            leader(rule(Session, Read, Owner))
        ),
        route!(
            "/v1/session/node/",
            [GET],
            session::node,
            leader(rule(Session, Read, Path))
        ),
        route!(
            "/v1/session/list",
            [GET],
            session::list,
            leader(rule(Session, Read, Each))
        ),
        // connect: roots are public (Consul needs no token for them); the CA's configuration is an operator's
        route!(
            "/v1/connect/ca/roots",
            [GET],
            connect::roots,
            leader(AclRule::NONE)
        ),
        route!(
            "/v1/agent/connect/ca/roots",
            [GET],
            connect::roots,
            local(AclRule::NONE)
        ),
        route!(
            "/v1/connect/ca/configuration",
            [GET, PUT],
            connect::configuration,
            leader(rule(Operator, ByMethod, Whole))
        ),
        route!(
            "/v1/agent/connect/ca/leaf/",
            [GET],
            connect::leaf,
            local(rule(Service, Write, Path))
        ),
        route!(
            "/v1/agent/connect/authorize",
            [POST, PUT],
            connect::authorize,
            local(rule(Service, Write, Body))
        ),
        route!(
            "/v1/connect/intentions",
            [GET, POST],
            intentions::list_or_create,
            leader(rule(Intention, ByMethod, Each))
        ),
        route!(
            "/v1/connect/intentions/exact",
            [GET, PUT, DELETE],
            intentions::exact,
            leader(rule(Intention, ByMethod, Query("destination")))
        ),
        route!(
            "/v1/connect/intentions/match",
            [GET],
            intentions::matches,
            leader(rule(Intention, Read, Query("name")))
        ),
        route!(
            "/v1/connect/intentions/check",
            [GET],
            intentions::check,
            leader(rule(Intention, Read, Query("destination")))
        ),
        route!(
            "/v1/connect/intentions/",
            [GET, PUT, DELETE],
            intentions::by_id,
            leader(rule(Intention, ByMethod, Owner))
        ),
        // Config entries: the kind decides the rule (service-intentions: intentions on the destination).
        route!(
            "/v1/config",
            [PUT],
            intentions::config_put,
            leader(rule(Intention, Write, Body))
        ),
        route!(
            "/v1/config/",
            [GET, DELETE],
            intentions::config_entry,
            leader(rule(Intention, ByMethod, Owner))
        ),
        // ACLs: bootstrap needs no token (it is refused once done); a token may always read itself
        route!(
            "/v1/acl/bootstrap",
            [PUT],
            acl::bootstrap,
            leader(AclRule::NONE)
        ),
        route!(
            "/v1/acl/token",
            [PUT],
            acl::token_create,
            leader(rule(Acl, Write, Whole))
        ),
        route!(
            "/v1/acl/token/self",
            [GET],
            acl::token_self,
            leader(AclRule::NONE)
        ),
        route!(
            "/v1/acl/token/",
            [GET, PUT, DELETE],
            acl::token,
            leader(rule(Acl, ByMethod, Whole))
        ),
        route!(
            "/v1/acl/tokens",
            [GET],
            acl::tokens,
            leader(rule(Acl, Read, Whole))
        ),
        route!(
            "/v1/acl/policy",
            [PUT],
            acl::policy_create,
            leader(rule(Acl, Write, Whole))
        ),
        route!(
            "/v1/acl/policy/",
            [GET, PUT, DELETE],
            acl::policy,
            leader(rule(Acl, ByMethod, Whole))
        ),
        route!(
            "/v1/acl/policies",
            [GET],
            acl::policies,
            leader(rule(Acl, Read, Whole))
        ),
        route!(
            "/v1/acl/role",
            [PUT],
            acl::role_create,
            leader(rule(Acl, Write, Whole))
        ),
        route!(
            "/v1/acl/role/",
            [GET, PUT, DELETE],
            acl::role,
            leader(rule(Acl, ByMethod, Whole))
        ),
        route!(
            "/v1/acl/roles",
            [GET],
            acl::roles,
            leader(rule(Acl, Read, Whole))
        ),
        route!(
            "/v1/acl/auth-method",
            [PUT],
            acl_login::auth_method_create,
            leader(rule(Acl, Write, Whole))
        ),
        route!(
            "/v1/acl/auth-method/",
            [GET, PUT, DELETE],
            acl_login::auth_method,
            leader(rule(Acl, ByMethod, Whole))
        ),
        route!(
            "/v1/acl/auth-methods",
            [GET],
            acl_login::auth_methods,
            leader(rule(Acl, Read, Whole))
        ),
        route!(
            "/v1/acl/binding-rule",
            [PUT],
            acl_login::binding_rule_create,
            leader(rule(Acl, Write, Whole))
        ),
        route!(
            "/v1/acl/binding-rule/",
            [GET, PUT, DELETE],
            acl_login::binding_rule,
            leader(rule(Acl, ByMethod, Whole))
        ),
        route!(
            "/v1/acl/binding-rules",
            [GET],
            acl_login::binding_rules,
            leader(rule(Acl, Read, Whole))
        ),
        // Login needs no token (the bearer credential is the proof); logout deletes the token it carries.
        route!(
            "/v1/acl/login",
            [POST],
            acl_login::login,
            leader(AclRule::NONE)
        ),
        route!(
            "/v1/acl/logout",
            [POST],
            acl_login::logout,
            leader(AclRule::NONE)
        ),
        route!(
            "/v1/acl/templated-policies",
            [GET],
            acl::templated_policies,
            local(rule(Acl, Read, Whole))
        ),
        route!(
            "/v1/acl/templated-policy/name/",
            [GET],
            acl::templated_policy,
            local(rule(Acl, Read, Whole))
        ),
        route!(
            "/v1/acl/templated-policy/preview/",
            [POST],
            acl::templated_preview,
            local(rule(Acl, Read, Whole))
        ),
        // status: no token needed, as in Consul
        route!(
            "/v1/status/leader",
            [GET],
            status::leader,
            local_or_dc(AclRule::NONE)
        ),
        route!(
            "/v1/status/peers",
            [GET],
            status::peers,
            local_or_dc(AclRule::NONE)
        ),
    ]
}

/// Every route, internal ones included (the RPC listener's table).
pub fn all() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(table)
}

/// One listener's table: internal routes are not in the public one at all, and the RPC listener holds nothing
/// else (the public API reaches a server only as a forwarded request, see [`crate::FORWARD_PREFIX`]).
fn of(listener: Listener) -> &'static [Route] {
    static PUBLIC: OnceLock<Vec<Route>> = OnceLock::new();
    static RPC: OnceLock<Vec<Route>> = OnceLock::new();
    let slot = match listener {
        Listener::Public => &PUBLIC,
        Listener::RpcOnly => &RPC,
    };
    slot.get_or_init(|| {
        table()
            .into_iter()
            .filter(|r| r.policy.listener == listener)
            .collect()
    })
}

/// The route for a path in a listener's table (the longest matching one) and the path's remainder after it.
pub fn find(path: &str, listener: Listener) -> Option<(&'static Route, &str)> {
    of(listener)
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
