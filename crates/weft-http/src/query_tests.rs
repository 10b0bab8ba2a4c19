//! Prepared queries through the whole router: CRUD with Consul's shapes and refusals, execution (health, tags,
//! near, limit, connect), templates, explain, and the ACL rules (query names, hidden tokens, stored tokens
//! filtering results).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::acl_tests::{api as acl_api, bootstrap, token_with as token};
use crate::tests::TestApi;
use axum::http::StatusCode;
use serde_json::{json, Value};

async fn register(api: &TestApi, node: &str, id: &str, tags: &[&str], status: &str) {
    let body = json!({
        "Node": node, "Address": format!("10.0.0.{}", node.len()),
        "Service": {"ID": id, "Service": "web", "Tags": tags, "Port": 80},
        "Check": {"CheckID": format!("{id}-check"), "Name": "c", "Status": status, "ServiceID": id},
    });
    let a = api.put("/v1/catalog/register", &body.to_string()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

async fn create(api: &TestApi, body: Value, token: Option<&str>) -> String {
    let a = api
        .call_as("POST", "/v1/query", &body.to_string(), token)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()["ID"].as_str().unwrap().to_string()
}

fn ids(answer: &Value) -> Vec<String> {
    let mut v: Vec<String> = answer["Nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Service"]["ID"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn queries_are_created_read_replaced_and_deleted_as_consul_does() {
    let api = TestApi::new().await;
    let id = create(
        &api,
        json!({"Name": "web-q", "Token": "t0k", "Service": {"Service": "web", "Tags": ["primary"]}, "DNS": {"TTL": "10s"}}),
        None,
    )
    .await;
    let a = api.get(&format!("/v1/query/{id}")).await;
    assert_eq!(a.status, StatusCode::OK);
    let q = &a.json()[0];
    assert_eq!(q["ID"], id.as_str());
    assert_eq!(q["Name"], "web-q");
    // ACLs off: the stored token is shown, as Consul shows it to a management token.
    assert_eq!(q["Token"], "t0k");
    assert_eq!(q["Service"]["Tags"], json!(["primary"]));
    assert_eq!(q["DNS"]["TTL"], "10s");
    assert_eq!(q["Template"]["Type"], "");
    assert!(q["CreateIndex"].as_u64().unwrap() > 0);
    assert!(a.header("x-consul-index").is_some());
    assert_eq!(
        api.get("/v1/query").await.json().as_array().unwrap().len(),
        1
    );

    // Replace: the URL's ID wins; names stay unique ignoring case.
    let a = api
        .put(
            &format!("/v1/query/{id}"),
            &json!({"ID": "ignored", "Name": "web-q", "Service": {"Service": "web2"}}).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.text(), "");
    let q = api.get(&format!("/v1/query/{id}")).await.json()[0].clone();
    assert_eq!(q["Service"]["Service"], "web2");
    assert!(q["ModifyIndex"].as_u64() > q["CreateIndex"].as_u64());
    let a = api
        .call(
            "POST",
            "/v1/query",
            &json!({"Name": "WEB-Q", "Service": {"Service": "x"}}).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.text(), "name 'WEB-Q' aliases an existing query name");

    // Refusals, each leaving nothing behind.
    for (body, status, text) in [
        (json!({"Service": {"Service": "web"}}), 400, "Invalid prepared query: Must be bound to a session"),
        (json!({"Name": "n"}), 400, "Invalid prepared query: Must provide a Service name to query"),
        (json!({"ID": id, "Name": "n", "Service": {"Service": "web"}}), 400, "ID must be empty when creating a new prepared query"),
        (json!({"Name": "n", "Bogus": 1, "Service": {"Service": "web"}}), 400, "Request decode failed: unknown field `Bogus`"),
        (json!({"Name": "n", "Session": "9e0b0f6a-0000-4000-8000-000000000000", "Service": {"Service": "web"}}), 400, "Invalid session \"9e0b0f6a-0000-4000-8000-000000000000\""),
        (json!({"Name": "n", "Template": {"Type": "regex"}, "Service": {"Service": "web"}}), 400, "failed compiling template: Bad Template.Type 'regex'"),
        (json!({"Name": "n", "Template": {"Type": "name_prefix_match"}, "Service": {"Service": "${nope}"}}), 400, "failed compiling template: Bad format '${nope}' in Service.Service: unknown variable accessed: nope"),
        (json!({"Name": "n", "Token": "<hidden>", "Service": {"Service": "web"}}), 400, "Invalid prepared query: Bad Token '<hidden>', it looks like a query definition with a redacted token was submitted"),
        (json!({"Name": "n", "Service": {"Service": "web", "Peer": "other"}}), 400, "Invalid prepared query: cluster peering is not supported by Weft (Service.Peer, Failover.Targets[].Peer)"),
    ] {
        let a = api.call("POST", "/v1/query", &body.to_string()).await;
        assert_eq!(a.status.as_u16(), status, "{body}: {}", a.text());
        assert!(a.text().starts_with(text), "{body}: {}", a.text());
    }
    assert_eq!(
        api.get("/v1/query").await.json().as_array().unwrap().len(),
        1
    );
    let missing = "6e0b0f6a-0000-4000-8000-000000000000";
    let a = api.get(&format!("/v1/query/{missing}")).await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::NOT_FOUND, "Query not found")
    );
    let a = api
        .call("DELETE", &format!("/v1/query/{missing}"), "")
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        a.text(),
        format!("Cannot modify non-existent prepared query: '{missing}'")
    );
    let a = api
        .call("PUT", &format!("/v1/query/{id}/execute"), "")
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.header("allow"), Some("OPTIONS,GET"));

    let a = api.call("DELETE", &format!("/v1/query/{id}"), "").await;
    assert_eq!((a.status, a.text().as_str()), (StatusCode::OK, ""));
    assert_eq!(api.get("/v1/query").await.json(), json!([]));
}

#[tokio::test]
async fn executing_filters_health_tags_and_meta_and_puts_the_near_node_first() {
    let api = TestApi::new().await;
    register(&api, "n1", "web1", &["primary"], "passing").await;
    register(&api, "node2", "web2", &["primary", "canary"], "warning").await;
    register(&api, "node-3", "web3", &["primary"], "critical").await;
    register(&api, "nodeee4", "web4", &["secondary"], "passing").await;
    create(
        &api,
        json!({"Name": "web", "Service": {"Service": "web"}, "DNS": {"TTL": "7s"}}),
        None,
    )
    .await;
    let a = api.get("/v1/query/web/execute").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let r = a.json();
    assert_eq!(r["Service"], "web");
    assert_eq!(r["Datacenter"], "dc1");
    assert_eq!(r["DNS"]["TTL"], "7s");
    assert_eq!(r["Failovers"], 0);
    // Critical is never returned; warning is, unless OnlyPassing.
    assert_eq!(ids(&r), ["web1", "web2", "web4"]);
    assert!(r["Nodes"][0]["Checks"][0]["Status"].as_str().is_some());

    let id = create(
        &api,
        json!({"Name": "strict", "Service": {"Service": "web", "OnlyPassing": true, "Tags": ["PRIMARY", "!canary"], "IgnoreCheckIDs": ["web3-check"]}}),
        None,
    )
    .await;
    assert_eq!(
        ids(&api.get(&format!("/v1/query/{id}/execute")).await.json()),
        ["web1", "web3"]
    );

    // Near: the named node first (every time), `_agent` is this agent's node; then limit.
    for _ in 0..10 {
        let r = api.get("/v1/query/web/execute?near=node2").await.json();
        assert_eq!(r["Nodes"][0]["Node"]["Node"], "node2");
        let r = api
            .get("/v1/query/web/execute?near=_agent&limit=2")
            .await
            .json();
        assert_eq!(r["Nodes"].as_array().unwrap().len(), 2);
        assert_eq!(r["Nodes"][0]["Node"]["Node"], "n1");
    }
    let a = api.get("/v1/query/web/execute?limit=x").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.text().starts_with("Bad limit: "));
    let a = api.get("/v1/query/nothing/execute").await;
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::NOT_FOUND, "Query not found")
    );
    // Connect: the service's sidecar proxies instead (none here).
    let r = api.get("/v1/query/web/execute?connect=true").await.json();
    assert_eq!(r["Nodes"], json!([]));
}

#[tokio::test]
async fn templates_answer_every_name_under_their_prefix() {
    let api = TestApi::new().await;
    register(&api, "n1", "web1", &["primary"], "passing").await;
    let catch_all = create(
        &api,
        json!({"Name": "", "Template": {"Type": "name_prefix_match"}, "Service": {"Service": "${name.full}"}}),
        None,
    )
    .await;
    create(
        &api,
        json!({"Name": "geo-", "Template": {"Type": "name_prefix_match", "Regexp": "^geo-(.*)-([a-z]+)$", "RemoveEmptyTags": true},
               "Service": {"Service": "${match(1)}", "Tags": ["${match(2)}", "${match(9)}"]}}),
        None,
    )
    .await;
    // The catch-all renders any name; a longer prefix wins over it.
    assert_eq!(
        ids(&api.get("/v1/query/web/execute").await.json()),
        ["web1"]
    );
    let r = api.get("/v1/query/geo-web-primary/execute").await.json();
    assert_eq!(r["Service"], "web");
    assert_eq!(ids(&r), ["web1"]);
    let e = api.get("/v1/query/geo-web-secondary/explain").await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.text());
    assert_eq!(e.json()["Query"]["Service"]["Service"], "web");
    assert_eq!(e.json()["Query"]["Service"]["Tags"], json!(["secondary"]));
    assert_eq!(e.json()["Query"]["Name"], "geo-");
    assert!(ids(&api.get("/v1/query/geo-web-secondary/execute").await.json()).is_empty());
    // A template by ID is refused; a second catch-all too.
    let a = api.get(&format!("/v1/query/{catch_all}/execute")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.text(),
        "prepared query templates can only be resolved up by name, not by ID"
    );
    let a = api
        .call(
            "POST",
            "/v1/query",
            &json!({"Template": {"Type": "name_prefix_match"}, "Service": {"Service": "x"}})
                .to_string(),
        )
        .await;
    assert_eq!(
        a.text(),
        "a query template with an empty name already exists"
    );
}

#[tokio::test]
async fn query_acls_guard_names_hide_tokens_and_filter_by_the_stored_token() {
    let api = acl_api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    register_as(&api, &root).await;
    let writer = token(
        &api,
        &root,
        "q-writer",
        r#"query_prefix "team-" { policy = "write" }"#,
    )
    .await;
    let reader = token(
        &api,
        &root,
        "q-reader",
        r#"query "team-a" { policy = "read" } node_prefix "" { policy = "read" }"#,
    )
    .await;
    let sees_web = token(
        &api,
        &root,
        "sees-web",
        r#"service "web" { policy = "read" } node_prefix "" { policy = "read" }"#,
    )
    .await;

    // Writes need query:write on the name.
    let body = json!({"Name": "other", "Service": {"Service": "web"}}).to_string();
    let a = api.call_as("POST", "/v1/query", &body, Some(&writer)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.text()
            .contains("lacks permission 'query:write' on \"other\""),
        "{}",
        a.text()
    );
    let a = create(
        &api,
        json!({"Name": "team-a", "Token": sees_web, "Service": {"Service": "web"}}),
        Some(&writer),
    )
    .await;
    create(
        &api,
        json!({"Name": "team-b", "Service": {"Service": "web"}}),
        Some(&root),
    )
    .await;

    // Reads: by name rules; the stored token hidden but for management.
    let a = api
        .call_as("GET", &format!("/v1/query/{a}"), "", Some(&reader))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()[0]["Token"], "<hidden>");
    let list = api.call_as("GET", "/v1/query", "", Some(&reader)).await;
    assert_eq!(list.json().as_array().unwrap().len(), 1);
    assert_eq!(
        list.header("x-consul-results-filtered-by-acls"),
        Some("true")
    );
    let list = api
        .call_as("GET", "/v1/query", "", Some(&root))
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["Token"] == sees_web.as_str()));
    let a = api
        .call_as("GET", "/v1/query/team-b/explain", "", Some(&reader))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // Running needs no query rule. team-a runs with its stored token (sees web); team-b with the caller's.
    let r = api
        .call_as("GET", "/v1/query/team-a/execute", "", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(ids(&r.json()), ["web1"]);
    let r = api
        .call_as("GET", "/v1/query/team-b/execute", "", Some(&reader))
        .await;
    assert_eq!(ids(&r.json()), Vec::<String>::new());
    assert_eq!(r.header("x-consul-results-filtered-by-acls"), Some("true"));
    let r = api
        .call_as("GET", "/v1/query/team-b/execute", "", Some(&sees_web))
        .await;
    assert_eq!(ids(&r.json()), ["web1"]);
}

#[tokio::test]
async fn a_copy_without_its_stored_token_does_not_run() {
    // What a client agent holds of a query with a stored token: the marker, not the token.
    let api = acl_api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let q = weft_types::query::PreparedQuery {
        id: "7a1e0c3d-5b2f-4e6a-9c8d-0f1e2d3c4b5a".into(),
        name: "guarded".into(),
        token: "<hidden>".into(),
        service: weft_types::query::ServiceQuery {
            service: "web".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    api.state
        .agent
        .server()
        .write(weft_state::Command::QuerySet {
            query: Box::new(q),
            create: true,
        })
        .await
        .unwrap();
    let a = api
        .call_as("GET", "/v1/query/guarded/execute", "", Some(&root))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("only the servers hold"), "{}", a.text());
}

async fn register_as(api: &TestApi, token: &str) {
    let body = json!({
        "Node": "n1", "Address": "10.0.0.1",
        "Service": {"ID": "web1", "Service": "web", "Port": 80},
    });
    let a = api
        .call_as(
            "PUT",
            "/v1/catalog/register",
            &body.to_string(),
            Some(token),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}
