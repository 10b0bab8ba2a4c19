//! The enforcement matrix, generated from the route table: every public route and method is called with no token,
//! with a token holding exactly the rule the route declares, and with one a notch short of it (read for write,
//! another name for read), and must be refused or let through as declared. Routes whose subject the dispatcher
//! sees (path, query parameter, this node, the whole resource) are generated; those whose subject is in the body,
//! owned by an ID or listed item by item have a fixture below. A route with neither fails the test, so a new route
//! cannot skip its ACL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::policy::{Access, Resource, Subject};
use crate::routes::all;
use crate::tests::{Answer, TestApi};
use axum::http::Method;
use serde_json::json;
use std::collections::BTreeSet;
use weft_server::{AclConfig, ServerConfig};
use weft_state::Command;
use weft_types::acl::{AclToken, ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET};

const ROOT: &str = "6c0f1e2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f";
const NODE: &str = "n1";

/// One call of the matrix: the request, and the rules that should just pass (`exact`) and just fail (`short`).
struct Case {
    method: Method,
    path: String,
    body: String,
    exact: String,
    short: String,
    /// A list filtered item by item: never refused, the short token sees less (and is told so).
    filtered: bool,
}

fn kind_word(resource: Resource) -> Option<&'static str> {
    Some(match resource {
        Resource::Agent => "agent",
        Resource::Node => "node",
        Resource::Service => "service",
        Resource::Key => "key",
        Resource::Session => "session",
        Resource::Event => "event",
        Resource::PreparedQuery => "query",
        Resource::Intention => "intentions",
        Resource::Operator => "operator",
        Resource::Keyring => "keyring",
        Resource::Mesh => "mesh",
        Resource::Acl => "acl",
        Resource::None | Resource::ClusterMember | Resource::ClusterServer => return None,
    })
}

/// The rule text granting `level` on `name` of `kind`.
fn rule(kind: &str, name: &str, level: &str) -> String {
    match kind {
        "intentions" => format!(r#"service "{name}" {{ policy = "read" intentions = "{level}" }}"#),
        "operator" | "mesh" | "acl" | "keyring" => format!(r#"{kind} = "{level}""#),
        _ => format!(r#"{kind} "{name}" {{ policy = "{level}" }}"#),
    }
}

/// Exact and one-notch-short rules for `kind:need` on `name`.
fn rules_for(kind: &str, name: &str, write: bool) -> (String, String) {
    if write {
        (rule(kind, name, "write"), rule(kind, name, "read"))
    } else {
        let other = match kind {
            "operator" | "mesh" | "acl" | "keyring" => String::new(),
            _ => rule(kind, "other", "read"),
        };
        (rule(kind, name, "read"), other)
    }
}

/// The case the dispatcher decides alone, for a route whose subject it sees.
fn generated(
    path: &str,
    method: &Method,
    resource: Resource,
    access: Access,
    subject: Subject,
) -> Option<Case> {
    let kind = kind_word(resource)?;
    let write = match access {
        Access::Write => true,
        Access::Read => false,
        Access::ByMethod => *method != Method::GET,
    };
    let sample = match resource {
        Resource::Node | Resource::Session | Resource::Agent => NODE,
        Resource::Key => "app/x",
        _ => "web",
    };
    let (concrete, name) = match subject {
        Subject::Path => (
            format!("{path}{}", if path.ends_with('/') { sample } else { "" }),
            sample,
        ),
        Subject::Query(param) => (format!("{path}?{param}={sample}"), sample),
        Subject::ThisNode => (
            format!("{path}{}", if path.ends_with('/') { "x" } else { "" }),
            NODE,
        ),
        Subject::Whole => (
            format!("{path}{}", if path.ends_with('/') { "x" } else { "" }),
            "",
        ),
        Subject::Body | Subject::Owner | Subject::Keys | Subject::Each => return None,
    };
    let (exact, short) = rules_for(kind, name, write);
    Some(Case {
        method: method.clone(),
        path: concrete,
        body: "{}".into(),
        exact,
        short,
        filtered: false,
    })
}

fn case(
    method: Method,
    path: &str,
    body: serde_json::Value,
    kind: &str,
    name: &str,
    write: bool,
) -> Case {
    let (exact, short) = rules_for(kind, name, write);
    Case {
        method,
        path: path.into(),
        body: if body.is_null() {
            String::new()
        } else {
            body.to_string()
        },
        exact,
        short,
        filtered: false,
    }
}

fn listed(path: &str, kind: &str) -> Case {
    Case {
        method: Method::GET,
        path: path.into(),
        body: String::new(),
        exact: match kind {
            "intentions" => r#"service_prefix "" { policy = "read" }"#.to_string(),
            _ => format!(r#"{kind}_prefix "" {{ policy = "read" }}"#),
        },
        short: rule(kind, "other", "read"),
        filtered: true,
    }
}

/// Fixtures for subjects the handlers decide: `(route path, method)` → case. Objects named by ID exist (see
/// [`seed`]).
fn fixtures(session: &str, intention: &str, query: &str) -> Vec<(&'static str, Case)> {
    use Method as M;
    let web_check = json!({"Name": "c2", "TTL": "30s", "ServiceID": "web1"});
    vec![
        (
            "/v1/agent/service/register",
            case(
                M::PUT,
                "/v1/agent/service/register",
                json!({"Name": "web", "Port": 1}),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/check/register",
            case(
                M::PUT,
                "/v1/agent/check/register",
                web_check,
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/catalog/register",
            case(
                M::PUT,
                "/v1/catalog/register",
                json!({"Node": "n9", "Address": "10.0.0.9"}),
                "node",
                "n9",
                true,
            ),
        ),
        (
            "/v1/catalog/deregister",
            case(
                M::PUT,
                "/v1/catalog/deregister",
                json!({"Node": "n9"}),
                "node",
                "n9",
                true,
            ),
        ),
        (
            "/v1/txn",
            case(
                M::PUT,
                "/v1/txn",
                json!([{"KV": {"Verb": "set", "Key": "app/x", "Value": "eA=="}}]),
                "key",
                "app/x",
                true,
            ),
        ),
        (
            "/v1/session/create",
            case(
                M::PUT,
                "/v1/session/create",
                json!({"Node": NODE}),
                "session",
                NODE,
                true,
            ),
        ),
        (
            "/v1/agent/connect/authorize",
            case(
                M::POST,
                "/v1/agent/connect/authorize",
                json!({"Target": "web", "ClientCertURI": "spiffe://x.consul/ns/default/dc/dc1/svc/api"}),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/connect/authorize",
            case(
                M::PUT,
                "/v1/agent/connect/authorize",
                json!({"Target": "web", "ClientCertURI": "spiffe://x.consul/ns/default/dc/dc1/svc/api"}),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/connect/intentions",
            case(
                M::POST,
                "/v1/connect/intentions",
                json!({"SourceName": "api", "DestinationName": "web", "Action": "allow"}),
                "intentions",
                "web",
                true,
            ),
        ),
        (
            "/v1/config",
            case(
                M::PUT,
                "/v1/config",
                json!({"Kind": "service-intentions", "Name": "web", "Sources": [{"Name": "api", "Action": "allow"}]}),
                "intentions",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/service/",
            case(
                M::GET,
                "/v1/agent/service/web1",
                json!(null),
                "service",
                "web",
                false,
            ),
        ),
        (
            "/v1/agent/service/deregister/",
            case(
                M::PUT,
                "/v1/agent/service/deregister/web1",
                json!(null),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/service/maintenance/",
            case(
                M::PUT,
                "/v1/agent/service/maintenance/web1?enable=true",
                json!(null),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/check/deregister/",
            case(
                M::PUT,
                "/v1/agent/check/deregister/chk",
                json!(null),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/check/pass/",
            case(
                M::PUT,
                "/v1/agent/check/pass/chk",
                json!(null),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/check/warn/",
            case(
                M::PUT,
                "/v1/agent/check/warn/chk",
                json!(null),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/check/fail/",
            case(
                M::PUT,
                "/v1/agent/check/fail/chk",
                json!(null),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/check/update/",
            case(
                M::PUT,
                "/v1/agent/check/update/chk",
                json!({"Status": "passing"}),
                "service",
                "web",
                true,
            ),
        ),
        (
            "/v1/agent/health/service/id/",
            case(
                M::GET,
                "/v1/agent/health/service/id/web1",
                json!(null),
                "service",
                "web",
                false,
            ),
        ),
        (
            "/v1/session/destroy/",
            case(
                M::PUT,
                &format!("/v1/session/destroy/{session}"),
                json!(null),
                "session",
                NODE,
                true,
            ),
        ),
        (
            "/v1/session/renew/",
            case(
                M::PUT,
                &format!("/v1/session/renew/{session}"),
                json!(null),
                "session",
                NODE,
                true,
            ),
        ),
        (
            "/v1/connect/intentions/",
            case(
                M::GET,
                &format!("/v1/connect/intentions/{intention}"),
                json!(null),
                "intentions",
                "web",
                false,
            ),
        ),
        (
            "/v1/connect/intentions/",
            case(
                M::PUT,
                &format!("/v1/connect/intentions/{intention}"),
                json!({"SourceName": "api", "DestinationName": "web", "Action": "deny"}),
                "intentions",
                "web",
                true,
            ),
        ),
        (
            "/v1/connect/intentions/",
            case(
                M::DELETE,
                &format!("/v1/connect/intentions/{intention}"),
                json!(null),
                "intentions",
                "web",
                true,
            ),
        ),
        (
            "/v1/config/",
            case(
                M::GET,
                "/v1/config/service-intentions/web",
                json!(null),
                "intentions",
                "web",
                false,
            ),
        ),
        (
            "/v1/config/",
            case(
                M::DELETE,
                "/v1/config/service-intentions/web",
                json!(null),
                "intentions",
                "web",
                true,
            ),
        ),
        (
            "/v1/kv/",
            case(M::GET, "/v1/kv/app/x", json!(null), "key", "app/x", false),
        ),
        (
            "/v1/kv/",
            case(M::PUT, "/v1/kv/app/x", json!("v"), "key", "app/x", true),
        ),
        (
            "/v1/kv/",
            case(M::DELETE, "/v1/kv/app/x", json!(null), "key", "app/x", true),
        ),
        (
            "/v1/session/info/",
            Case {
                path: format!("/v1/session/info/{session}"),
                ..listed("", "session")
            },
        ),
        ("/v1/agent/members", listed("/v1/agent/members", "node")),
        (
            "/v1/agent/services",
            listed("/v1/agent/services", "service"),
        ),
        ("/v1/agent/checks", listed("/v1/agent/checks", "service")),
        ("/v1/catalog/nodes", listed("/v1/catalog/nodes", "node")),
        (
            "/v1/catalog/services",
            listed("/v1/catalog/services", "service"),
        ),
        (
            "/v1/health/state/",
            listed("/v1/health/state/any", "service"),
        ),
        ("/v1/session/list", listed("/v1/session/list", "session")),
        ("/v1/event/list", listed("/v1/event/list", "event")),
        ("/v1/query", listed("/v1/query", "query")),
        (
            "/v1/coordinate/datacenters",
            listed("/v1/coordinate/datacenters", "node"),
        ),
        (
            "/v1/coordinate/nodes",
            listed("/v1/coordinate/nodes", "node"),
        ),
        (
            "/v1/coordinate/update",
            case(
                M::PUT,
                "/v1/coordinate/update",
                json!({"Node": NODE, "Coord": weft_types::coordinate::Coordinate::default()}),
                "node",
                NODE,
                true,
            ),
        ),
        (
            "/v1/query",
            case(
                M::POST,
                "/v1/query",
                json!({"Name": "web", "Service": {"Service": "web"}}),
                "query",
                "web",
                true,
            ),
        ),
        (
            "/v1/query/",
            case(
                M::GET,
                &format!("/v1/query/{query}"),
                json!(null),
                "query",
                "web",
                false,
            ),
        ),
        (
            "/v1/query/",
            case(
                M::PUT,
                &format!("/v1/query/{query}"),
                json!({"Name": "web", "Service": {"Service": "web"}}),
                "query",
                "web",
                true,
            ),
        ),
        (
            "/v1/query/",
            case(
                M::DELETE,
                &format!("/v1/query/{query}"),
                json!(null),
                "query",
                "web",
                true,
            ),
        ),
        (
            "/v1/connect/intentions",
            listed("/v1/connect/intentions", "intentions"),
        ),
    ]
}

/// The objects the fixtures name by ID, made again before each call (a call may have removed them). Returns the
/// session's, the intention's and the prepared query's IDs.
async fn seed(api: &TestApi) -> (String, String, String) {
    let root = Some(ROOT);
    let reg =
        json!({"ID": "web1", "Name": "web", "Port": 80, "Check": {"CheckID": "chk", "TTL": "30s"}});
    api.call_as("PUT", "/v1/agent/service/register", &reg.to_string(), root)
        .await;
    api.call_as("PUT", "/v1/kv/app/x", "v", root).await;
    // One user event, named as the sample service, for the filtered event list.
    let events = api.call_as("GET", "/v1/event/list", "", root).await.json();
    if events.as_array().is_none_or(|e| e.is_empty()) {
        api.call_as("PUT", "/v1/event/fire/web", "", root).await;
    }
    // An intention with an ID (the legacy create gives one; exact and config-entry writes do not).
    let exact = "/v1/connect/intentions/exact?source=legacy&destination=web";
    if api.call_as("GET", exact, "", root).await.status != axum::http::StatusCode::OK {
        let made = json!({"SourceName": "legacy", "DestinationName": "web", "Action": "allow"});
        let a = api
            .call_as("POST", "/v1/connect/intentions", &made.to_string(), root)
            .await;
        assert!(a.status.is_success(), "{}", a.text());
    }
    let id = api.call_as("GET", exact, "", root).await.json()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let sessions = api
        .call_as("GET", "/v1/session/list", "", root)
        .await
        .json();
    let session = match sessions.as_array().and_then(|s| s.first()) {
        Some(s) => s["ID"].as_str().unwrap().to_string(),
        None => api
            .call_as(
                "PUT",
                "/v1/session/create",
                &json!({"Node": NODE}).to_string(),
                root,
            )
            .await
            .json()["ID"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    // This node's coordinate, for the coordinate lists to filter.
    if api.state.agent.server().read().coordinate(NODE).is_none() {
        api.state
            .agent
            .server()
            .write(Command::CoordinatesSet(vec![(
                NODE.to_string(),
                weft_types::coordinate::Coordinate::default(),
            )]))
            .await
            .unwrap();
    }
    // A prepared query named as the sample service, with a fixed ID so that it is the same one after a delete.
    let query = "7a1e0c3d-5b2f-4e6a-9c8d-0f1e2d3c4b5a";
    if api
        .call_as("GET", &format!("/v1/query/{query}"), "", root)
        .await
        .status
        != axum::http::StatusCode::OK
    {
        let q = weft_types::query::PreparedQuery {
            id: query.into(),
            name: "web".into(),
            service: weft_types::query::ServiceQuery {
                service: "web".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        api.state
            .agent
            .server()
            .write(Command::QuerySet {
                query: Box::new(q),
                create: true,
            })
            .await
            .unwrap();
    }
    (session, id, query.to_string())
}

fn refused(a: &Answer) -> bool {
    let text = a.text();
    text.contains("Permission denied")
        || (a.status == axum::http::StatusCode::FORBIDDEN && text == "ACL not found")
}

async fn token_for(api: &TestApi, rules: &str, n: usize) -> String {
    let name = format!("matrix-{n}");
    let p = api
        .call_as(
            "PUT",
            "/v1/acl/policy",
            &json!({"Name": name, "Rules": rules}).to_string(),
            Some(ROOT),
        )
        .await;
    assert!(p.status.is_success(), "{rules}: {}", p.text());
    let t = api
        .call_as(
            "PUT",
            "/v1/acl/token",
            &json!({"Policies": [{"Name": name}]}).to_string(),
            Some(ROOT),
        )
        .await;
    t.json()["SecretID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_route_refuses_and_allows_as_it_declares() {
    let mut config = ServerConfig::new("dc1", NODE, "127.0.0.1:8300");
    config.acl = AclConfig {
        enabled: true,
        default_policy: weft_types::DefaultPolicy::Deny,
        ..AclConfig::default()
    };
    let api = TestApi::with_server(config).await;
    let anonymous = AclToken {
        accessor_id: ANONYMOUS_ACCESSOR.into(),
        secret_id: ANONYMOUS_SECRET.into(),
        ..AclToken::default()
    };
    let root = AclToken {
        accessor_id: weft_types::ids::new_uuid(),
        secret_id: ROOT.into(),
        grants: weft_types::acl::AclGrants {
            policies: vec![weft_types::acl::AclLink {
                id: weft_types::acl::GLOBAL_MANAGEMENT_ID.into(),
                name: weft_types::acl::GLOBAL_MANAGEMENT_NAME.into(),
            }],
            ..Default::default()
        },
        ..AclToken::default()
    };
    let server = api.state.agent.server().clone();
    server
        .write(Command::AclInit {
            anonymous: Box::new(anonymous),
            management: Some(Box::new(root)),
        })
        .await
        .unwrap();
    let (session, intention, query) = seed(&api).await;
    let fixtures = fixtures(&session, &intention, &query);

    let mut cases: Vec<(String, Case)> = Vec::new();
    let mut uncovered = Vec::new();
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, case) in fixtures {
        covered.insert((path.to_string(), case.method.to_string()));
        cases.push((path.to_string(), case));
    }
    for r in all()
        .iter()
        .filter(|r| r.policy.listener == crate::policy::Listener::Public)
    {
        let acl = r.policy.acl;
        if acl.resource == Resource::None {
            continue;
        }
        for method in r.methods {
            if covered.contains(&(r.path.to_string(), method.to_string())) {
                continue;
            }
            match generated(r.path, method, acl.resource, acl.access, acl.subject) {
                Some(case) => cases.push((r.path.to_string(), case)),
                None => uncovered.push(format!("{method} {}", r.path)),
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "routes without a matrix case: {uncovered:#?}"
    );
    // Calls that end or replace what later cases name by ID (a session, an intention) come after them, and leaving, which
    // stops the agent, comes last.
    cases.sort_by_key(|(path, case)| match path.as_str() {
        "/v1/agent/leave" => 2,
        "/v1/session/destroy/" | "/v1/config" => 1,
        "/v1/connect/intentions/" | "/v1/config/" | "/v1/query/"
            if case.method == Method::DELETE =>
        {
            1
        }
        _ => 0,
    });

    let mut problems = Vec::new();
    for (n, (route, case)) in cases.iter().enumerate() {
        let exact = token_for(&api, &case.exact, 2 * n).await;
        let short = if case.short.is_empty() {
            String::new()
        } else {
            token_for(&api, &case.short, 2 * n + 1).await
        };
        let m = case.method.as_str();
        for (who, token) in [
            ("no token", None),
            ("short", Some(short.as_str())),
            ("exact", Some(exact.as_str())),
        ] {
            if who == "short" && case.short.is_empty() {
                continue;
            }
            seed(&api).await;
            let token = token.filter(|t| !t.is_empty());
            let a = api.call_as(m, &case.path, &case.body, token).await;
            let was_refused = refused(&a);
            let want_refused = who != "exact" && !case.filtered;
            if was_refused != want_refused {
                problems.push(format!(
                    "{m} {} ({route}) with {who} [{}]: {} {}",
                    case.path,
                    if who == "exact" {
                        &case.exact
                    } else {
                        &case.short
                    },
                    a.status,
                    a.text()
                ));
            }
            if case.filtered
                && who == "short"
                && a.header("x-consul-results-filtered-by-acls") != Some("true")
            {
                problems.push(format!(
                    "{m} {}: the short token's list does not say it was filtered",
                    case.path
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} cases, problems: {problems:#?}",
        cases.len()
    );
}
