//! Walks the whole route table: every route has a declared forwarding class, body limit, listener and ACL rule,
//! and the declarations agree with each other and with what the dispatcher does.
#![allow(clippy::unwrap_used)]

use crate::policy::{Access, AclRule, BodyLimit, Forward, Listener, Resource};
use crate::routes::{all, find};
use crate::tests::TestApi;
use axum::http::{Method, StatusCode};

/// The only routes anyone may call without a token: Consul's status endpoints, the version, the datacenters and
/// the CA's public roots.
const OPEN: &[&str] = &[
    "/v1/status/leader",
    "/v1/status/peers",
    "/v1/agent/version",
    "/v1/catalog/datacenters",
    "/v1/connect/ca/roots",
    "/v1/agent/connect/ca/roots",
    // Their handlers decide: bootstrap works once (then only with the reset index), and a token may read itself.
    "/v1/acl/bootstrap",
    "/v1/acl/token/self",
    // A login's proof is its bearer credential; a logout deletes only the login token it carries.
    "/v1/acl/login",
    "/v1/acl/logout",
];

/// The open routes that write: bootstrap (refused once done), login and logout (their handlers check the
/// credential).
const OPEN_WRITES: &[&str] = &["/v1/acl/bootstrap", "/v1/acl/login", "/v1/acl/logout"];

/// POSTs that change nothing (Consul requires only read for them).
const READING_POSTS: &[&str] = &["/v1/acl/templated-policy/preview/"];

/// Prefixes whose answer is the cluster's state, answered by the leader.
const CLUSTER: &[&str] = &[
    "/v1/catalog/",
    "/v1/health/",
    "/v1/kv/",
    "/v1/txn",
    "/v1/session/",
    "/v1/connect/intentions",
    "/v1/connect/ca/",
    "/v1/config",
    "/v1/query",
    "/v1/coordinate/",
    "/v1/operator/",
    "/v1/snapshot",
    "/v1/acl/bootstrap",
    "/v1/acl/token",
    "/v1/acl/polic",
    "/v1/acl/role",
    "/v1/acl/auth-method",
    "/v1/acl/binding-rule",
    "/v1/acl/login",
    "/v1/acl/logout",
];

/// Operations on the gossip pool, which every agent belongs to and carries out itself (not the leader's state).
const GOSSIP: &[&str] = &["/v1/operator/keyring"];

#[test]
fn every_route_declares_a_consistent_policy() {
    let routes = all();
    assert!(routes.len() > 60, "the table is whole");
    let mut problems = Vec::new();
    for r in routes {
        let p = &r.policy;
        let internal = r.path.starts_with("/v1/internal/");
        let mut problem = |what: &str| problems.push(format!("{}: {what}", r.path));
        // Internal routes: RPC listener only, cluster identity only, answered where they arrive.
        if internal != (p.listener == Listener::RpcOnly)
            || internal != (p.forward == Forward::Internal)
            || internal
                != matches!(
                    p.acl.resource,
                    Resource::ClusterMember | Resource::ClusterServer
                )
        {
            problem("internal paths, the RPC-only listener, Forward::Internal and a cluster resource go together");
        }
        // Writes never pass with a read rule, and only the listed routes are open.
        let writes = r.methods.iter().any(|m| m != Method::GET);
        if writes
            && p.acl.access == Access::Read
            && !OPEN_WRITES.contains(&r.path)
            && !READING_POSTS.contains(&r.path)
        {
            problem("a route that writes declares read access");
        }
        if p.acl.resource == Resource::None {
            if !OPEN.contains(&r.path) {
                problem("open to callers without a token but not in the OPEN list");
            }
            if writes && !OPEN_WRITES.contains(&r.path) {
                problem("an open route must not write");
            }
        }
        if p.acl == AclRule::NONE && p.acl.resource != Resource::None {
            problem("inconsistent rule");
        }
        // Cluster state goes to the leader; the agent's own endpoints are local.
        let cluster = CLUSTER.iter().any(|c| r.path.starts_with(c)) && !GOSSIP.contains(&r.path);
        let to_leader = matches!(p.forward, Forward::Leader | Forward::LeaderKv);
        if cluster != to_leader {
            problem("cluster paths and leader forwarding go together");
        }
        let kv = r.path.starts_with("/v1/kv/") || r.path == "/v1/txn";
        if kv != (p.body == BodyLimit::KvValue) {
            problem("KV and txn, and only they, take bodies up to kv_max_value_size");
        }
        if (kv || r.path == "/v1/snapshot") != (p.forward == Forward::LeaderKv) {
            problem("KV, txn and snapshots, and only they, need a server's KV for stale reads");
        }
        if p.body == BodyLimit::Large && !(internal || r.path == "/v1/snapshot") {
            problem("only internal routes and snapshots take 64 MiB bodies");
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn each_listener_holds_only_its_own_routes() {
    for r in all() {
        let probe = format!("{}x", r.path);
        let path = if r.path.ends_with('/') {
            probe.as_str()
        } else {
            r.path
        };
        let public = find(path, Listener::Public);
        if r.policy.listener == Listener::RpcOnly {
            assert!(
                public.is_none(),
                "{} is reachable on the public listener",
                r.path
            );
            assert!(find(path, Listener::RpcOnly).is_some());
        } else {
            assert!(
                public.is_some(),
                "{} is missing from the public table",
                r.path
            );
        }
    }
}

#[tokio::test]
async fn the_public_router_answers_404_for_every_internal_route() {
    let api = TestApi::new().await;
    for r in all()
        .iter()
        .filter(|r| r.policy.listener == Listener::RpcOnly)
    {
        let uri = format!("{}append", r.path);
        let uri = if r.path.ends_with('/') {
            uri.as_str()
        } else {
            r.path
        };
        let answer = api.call("POST", uri, "{}").await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{uri}: {}",
            answer.text()
        );
    }
    let stream = api.get("/v1/internal/stream").await;
    assert_eq!(stream.status, StatusCode::NOT_FOUND);
}
