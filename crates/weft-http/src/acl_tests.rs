//! ACLs through the whole router: bootstrap, tokens, policies and roles as Consul answers them, and enforcement on
//! the routes a compromised workload would try (another service's leaf, intention writes, KV, snapshots).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tests::TestApi;
use axum::http::StatusCode;
use serde_json::{json, Value};
use weft_server::{AclConfig, ServerConfig};
use weft_types::acl::ANONYMOUS_ACCESSOR;

pub(crate) const ROOT: &str = "4ee8d0a6-4b5c-4d29-9a5f-1f3b1d7a0c01";

pub(crate) async fn api(default: weft_types::DefaultPolicy) -> TestApi {
    let mut config = ServerConfig::new("dc1", "n1", "127.0.0.1:8300");
    config.acl = AclConfig {
        enabled: true,
        default_policy: default,
        ..AclConfig::default()
    };
    let api = TestApi::with_server(config).await;
    // What the leader does on taking office.
    weft_server::acl_leader::init(api.state.agent.server())
        .await
        .unwrap();
    api
}

pub(crate) async fn bootstrap(api: &TestApi) -> String {
    let a = api
        .call_as(
            "PUT",
            "/v1/acl/bootstrap",
            &json!({"BootstrapSecret": ROOT}).to_string(),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    ROOT.to_string()
}

/// Creates a policy and a token holding it; returns the token's secret.
pub(crate) async fn token_with(api: &TestApi, root: &str, name: &str, rules: &str) -> String {
    let p = api
        .call_as(
            "PUT",
            "/v1/acl/policy",
            &json!({"Name": name, "Rules": rules}).to_string(),
            Some(root),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    let t = api
        .call_as(
            "PUT",
            "/v1/acl/token",
            &json!({"Policies": [{"Name": name}]}).to_string(),
            Some(root),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text());
    t.json()["SecretID"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn acl_endpoints_answer_401_when_acls_are_off() {
    let api = TestApi::new().await;
    for (method, path) in [
        ("PUT", "/v1/acl/bootstrap"),
        ("GET", "/v1/acl/tokens"),
        ("GET", "/v1/acl/policies"),
        ("GET", "/v1/acl/token/self"),
    ] {
        let a = api.call(method, path, "").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(a.text(), "ACL support disabled");
    }
    assert_eq!(
        api.get("/v1/agent/self")
            .await
            .header("x-consul-default-acl-policy"),
        Some("allow")
    );
}

#[tokio::test]
async fn bootstrap_once_with_consuls_answer_and_refusal() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let a = api.call("PUT", "/v1/acl/bootstrap", "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(v["Description"], "Bootstrap Token (Global Management)");
    assert_eq!(
        v["ID"], v["SecretID"],
        "the legacy ID field carries the secret"
    );
    assert_eq!(
        v["Policies"],
        json!([{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}])
    );
    assert!(v["Hash"].as_str().is_some_and(|h| !h.is_empty()));
    let again = api.call("PUT", "/v1/acl/bootstrap", "").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(
        again
            .text()
            .starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{}",
        again.text()
    );
    assert_eq!(
        api.get("/v1/agent/self")
            .await
            .header("x-consul-default-acl-policy"),
        Some("deny"),
        "the header tells the ACL default"
    );
}

#[tokio::test]
async fn unknown_and_missing_tokens_are_refused_with_consuls_text() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let a = api
        .call_as(
            "GET",
            "/v1/kv/a",
            "",
            Some("00000000-1111-2222-3333-444444444444"),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.text(), "ACL not found");
    let anon = api.call_as("PUT", "/v1/kv/a", "v", None).await;
    assert_eq!(anon.status, StatusCode::FORBIDDEN);
    assert_eq!(
        anon.text(),
        format!("Permission denied: token with AccessorID '{ANONYMOUS_ACCESSOR}' lacks permission 'key:write' on \"a\"")
    );
    // Status endpoints need no token, as in Consul.
    assert_eq!(api.get("/v1/status/leader").await.status, StatusCode::OK);
    assert_eq!(api.get("/v1/connect/ca/roots").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_service_identity_runs_its_own_service_and_gets_nothing_else() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let t = api
        .call_as(
            "PUT",
            "/v1/acl/token",
            &json!({"ServiceIdentities": [{"ServiceName": "web"}], "Description": "web"})
                .to_string(),
            Some(&root),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text());
    let web = t.json()["SecretID"].as_str().unwrap().to_string();
    let reg = json!({"Name": "web", "Port": 80, "Connect": {"SidecarService": {}}}).to_string();
    let a = api
        .call_as("PUT", "/v1/agent/service/register", &reg, Some(&web))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let leaf = api
        .call_as("GET", "/v1/agent/connect/ca/leaf/web", "", Some(&web))
        .await;
    assert_eq!(leaf.status, StatusCode::OK, "{}", leaf.text());
    // Not another service's leaf, registration or intention; not KV; not a snapshot.
    let denied = [
        ("GET", "/v1/agent/connect/ca/leaf/db", String::new(), "service:write"),
        (
            "PUT",
            "/v1/agent/service/register",
            json!({"Name": "db", "Port": 1}).to_string(),
            "service:write",
        ),
        (
            "PUT",
            "/v1/connect/intentions/exact?source=web&destination=db",
            json!({"Action": "allow"}).to_string(),
            "intentions:write",
        ),
        (
            "PUT",
            "/v1/config",
            json!({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "*", "Action": "allow"}]}).to_string(),
            "intentions:write",
        ),
        ("GET", "/v1/kv/secret", String::new(), "key:read"),
        ("GET", "/v1/snapshot", String::new(), "acl:write"),
        ("PUT", "/v1/connect/ca/configuration", "{}".into(), "operator:write"),
        ("GET", "/v1/acl/tokens", String::new(), "acl:read"),
    ];
    for (method, path, body, permission) in denied {
        let before = api.fingerprint();
        let a = api.call_as(method, path, &body, Some(&web)).await;
        assert_eq!(
            a.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            a.text()
        );
        assert!(
            a.text()
                .contains(&format!("lacks permission '{permission}'")),
            "{method} {path}: {}",
            a.text()
        );
        assert!(api.fingerprint() == before, "{method} {path} changed state");
    }
    // Reads it may do: its own intentions, the catalog (service_prefix "" read).
    let a = api
        .call_as("GET", "/v1/catalog/services", "", Some(&web))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.json().get("web").is_some());
}

#[tokio::test]
async fn lists_are_filtered_and_say_so() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    for key in ["app/a", "app/b", "other/c"] {
        assert_eq!(
            api.call_as("PUT", &format!("/v1/kv/{key}"), "v", Some(&root))
                .await
                .status,
            StatusCode::OK
        );
    }
    let reader = token_with(
        &api,
        &root,
        "app-read",
        r#"key_prefix "app/" { policy = "read" }"#,
    )
    .await;
    let a = api
        .call_as("GET", "/v1/kv/?recurse", "", Some(&reader))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let keys: Vec<String> = a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["app/a", "app/b"]);
    assert_eq!(a.header("x-consul-results-filtered-by-acls"), Some("true"));
    let keys = api
        .call_as("GET", "/v1/kv/?keys", "", Some(&reader))
        .await
        .json();
    assert_eq!(keys, json!(["app/a", "app/b"]));
    // Recursive delete needs write on every key below.
    let writer = token_with(
        &api,
        &root,
        "app-write",
        r#"key_prefix "app/" { policy = "write" }  key "app/b" { policy = "read" }"#,
    )
    .await;
    let a = api
        .call_as("DELETE", "/v1/kv/app/?recurse", "", Some(&writer))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert_eq!(
        api.call_as("DELETE", "/v1/kv/app/a", "", Some(&writer))
            .await
            .status,
        StatusCode::OK
    );
    // A transaction is checked op by op.
    let txn = json!([{"KV": {"Verb": "set", "Key": "other/x", "Value": "eA=="}}]).to_string();
    let a = api.call_as("PUT", "/v1/txn", &txn, Some(&writer)).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text());
    assert!(a.text().contains("key:write"), "{}", a.text());
}

#[tokio::test]
async fn tokens_policies_and_roles_round_trip_as_consul_writes_them() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let p = api
        .call_as(
            "PUT",
            "/v1/acl/policy",
            &json!({"Name": "kv-read", "Rules": "key_prefix \"\" { policy = \"read\" }", "Description": "d"}).to_string(),
            Some(&root),
        )
        .await
        .json();
    let pid = p["ID"].as_str().unwrap().to_string();
    assert_eq!(p["Name"], "kv-read");
    assert!(p["CreateIndex"].as_u64().unwrap() > 0);
    let by_name = api
        .call_as("GET", "/v1/acl/policy/name/kv-read", "", Some(&root))
        .await
        .json();
    assert_eq!(by_name["ID"], pid.as_str());
    let role = api
        .call_as(
            "PUT",
            "/v1/acl/role",
            &json!({"Name": "reader", "Policies": [{"ID": pid}]}).to_string(),
            Some(&root),
        )
        .await;
    assert_eq!(role.status, StatusCode::OK, "{}", role.text());
    let role = role.json();
    assert_eq!(role["Policies"], json!([{"ID": pid, "Name": "kv-read"}]));
    let t = api
        .call_as(
            "PUT",
            "/v1/acl/token",
            &json!({"Roles": [{"Name": "reader"}], "Description": "via role", "ExpirationTTL": "1h"}).to_string(),
            Some(&root),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text());
    let t = t.json();
    let (accessor, secret) = (
        t["AccessorID"].as_str().unwrap().to_string(),
        t["SecretID"].as_str().unwrap().to_string(),
    );
    assert!(t["ExpirationTime"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    // The role's policy lets it read KV, not write it.
    api.call_as("PUT", "/v1/kv/k", "v", Some(&root)).await;
    assert_eq!(
        api.call_as("GET", "/v1/kv/k", "", Some(&secret))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.call_as("PUT", "/v1/kv/k", "w", Some(&secret))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // self, read (secret shown to acl:write), list filtered by role, clone, update, delete.
    let me = api
        .call_as("GET", "/v1/acl/token/self", "", Some(&secret))
        .await
        .json();
    assert_eq!(me["AccessorID"], accessor.as_str());
    let list = api
        .call_as(
            "GET",
            &format!("/v1/acl/tokens?role={}", role["ID"].as_str().unwrap()),
            "",
            Some(&root),
        )
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["Legacy"], false);
    let clone = api
        .call_as(
            "PUT",
            &format!("/v1/acl/token/{accessor}/clone"),
            &json!({"Description": "copy"}).to_string(),
            Some(&root),
        )
        .await
        .json();
    assert_ne!(clone["AccessorID"], accessor.as_str());
    assert_eq!(clone["Description"], "copy");
    let mismatch = api
        .call_as(
            "PUT",
            &format!("/v1/acl/token/{accessor}"),
            &json!({"AccessorID": clone["AccessorID"]}).to_string(),
            Some(&root),
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        mismatch.text(),
        "Token Accessor ID in URL and payload do not match"
    );
    let updated = api
        .call_as(
            "PUT",
            &format!("/v1/acl/token/{accessor}"),
            &json!({"Description": "renamed", "Policies": [{"ID": pid}]}).to_string(),
            Some(&root),
        )
        .await
        .json();
    assert_eq!(updated["Description"], "renamed");
    assert_eq!(updated["SecretID"], secret.as_str(), "the secret stays");
    assert_eq!(
        api.call_as(
            "DELETE",
            &format!("/v1/acl/token/{accessor}"),
            "",
            Some(&root)
        )
        .await
        .text(),
        "true"
    );
    assert_eq!(
        api.call_as("GET", "/v1/kv/k", "", Some(&secret))
            .await
            .text(),
        "ACL not found"
    );
    let gone = api
        .call_as(
            "DELETE",
            &format!("/v1/acl/token/{accessor}"),
            "",
            Some(&root),
        )
        .await;
    assert_eq!(
        (gone.status, gone.text()),
        (StatusCode::NOT_FOUND, "Cannot find token to delete".into())
    );
}

#[tokio::test]
async fn bad_acl_writes_get_consuls_refusals_and_change_nothing() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let anonymous = format!("/v1/acl/token/{ANONYMOUS_ACCESSOR}");
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "PUT",
            "/v1/acl/policy",
            json!({"Name": "bad", "Rules": "service \"web\" {\n policy = \"wrtie\"\n}"}),
            "line 2",
        ),
        (
            "PUT",
            "/v1/acl/policy",
            json!({"Name": "has space", "Rules": ""}),
            "invalid Name",
        ),
        (
            "PUT",
            "/v1/acl/policy",
            json!({"ID": "x", "Name": "n"}),
            "Cannot specify the ID when creating a new policy",
        ),
        (
            "PUT",
            "/v1/acl/token",
            json!({"Policies": [{"Name": "missing"}]}),
            "No such ACL policy with name \"missing\"",
        ),
        (
            "PUT",
            "/v1/acl/token",
            json!({"ServiceIdentities": [{"ServiceName": "Web!"}]}),
            "invalid name",
        ),
        (
            "PUT",
            "/v1/acl/token",
            json!({"NodeIdentities": [{"NodeName": "n1"}]}),
            "missing the datacenter",
        ),
        (
            "PUT",
            "/v1/acl/token",
            json!({"ExpirationTTL": "1s"}),
            "cannot be less than",
        ),
        (
            "PUT",
            "/v1/acl/token",
            json!({"SecretID": "not-a-uuid"}),
            "not a valid UUID",
        ),
        (
            "PUT",
            "/v1/acl/token",
            json!({"SecretID": ROOT}),
            "already in use",
        ),
        (
            "PUT",
            "/v1/acl/token",
            json!({"TemplatedPolicies": [{"TemplateName": "builtin/nope"}]}),
            "does not exist",
        ),
        (
            "PUT",
            "/v1/acl/policy/00000000-0000-0000-0000-000000000001",
            json!({"Name": "global-management", "Rules": "acl = \"read\""}),
            "not permitted",
        ),
        (
            "DELETE",
            "/v1/acl/policy/00000000-0000-0000-0000-000000000001",
            json!(null),
            "not permitted",
        ),
        ("DELETE", &anonymous, json!(null), "anonymous"),
    ];
    for (method, path, body, words) in cases {
        let before = api.fingerprint();
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let a = api.call_as(method, path, &body, Some(&root)).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {}",
            a.text()
        );
        assert!(
            a.text().contains(words),
            "{method} {path} {body}: {}",
            a.text()
        );
        assert!(api.fingerprint() == before, "{method} {path} changed state");
    }
}

#[tokio::test]
async fn templated_policies_list_read_and_preview() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let list = api
        .call_as("GET", "/v1/acl/templated-policies", "", Some(&root))
        .await
        .json();
    for name in ["builtin/service", "builtin/node", "builtin/dns"] {
        assert_eq!(list[name]["TemplateName"], name);
    }
    let one = api
        .call_as(
            "GET",
            "/v1/acl/templated-policy/name/builtin/service",
            "",
            Some(&root),
        )
        .await
        .json();
    assert!(one["Template"]
        .as_str()
        .unwrap()
        .contains("{{.Name}}-sidecar-proxy"));
    let preview = api
        .call_as(
            "POST",
            "/v1/acl/templated-policy/preview/builtin/service",
            &json!({"Name": "api"}).to_string(),
            Some(&root),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text());
    assert!(preview.json()["Rules"]
        .as_str()
        .unwrap()
        .contains("service \"api-sidecar-proxy\""));
    let anon = api
        .call_as("GET", "/v1/acl/templated-policies", "", None)
        .await;
    assert_eq!(anon.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_default_token_answers_requests_without_one() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let reader = token_with(
        &api,
        &root,
        "kv-all",
        r#"key_prefix "" { policy = "read" }"#,
    )
    .await;
    api.call_as("PUT", "/v1/kv/k", "v", Some(&root)).await;
    assert_eq!(
        api.call_as("GET", "/v1/kv/k", "", None).await.status,
        StatusCode::FORBIDDEN
    );
    api.state.acl.tokens.write().unwrap().default = Some(reader);
    assert_eq!(
        api.call_as("GET", "/v1/kv/k", "", None).await.status,
        StatusCode::OK
    );
    // Bearer tokens count too.
    let mut req = axum::http::Request::builder().method("PUT").uri("/v1/kv/k");
    req = req.header("authorization", format!("Bearer {root}"));
    let resp = tower::ServiceExt::oneshot(
        crate::router(api.state.clone()),
        req.body(axum::body::Body::from("w")).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// What the server RPC route `/v1/internal/ca/sign` runs: the leader signs only for a token holding
/// `service:write` on the CSR's service, so a host that reaches server RPC cannot have another service's leaf made.
#[tokio::test]
async fn the_leader_signs_a_leaf_only_for_a_token_that_may_write_its_service() {
    let api = api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let server = api.state.agent.server().clone();
    let web = {
        let t = api
            .call_as(
                "PUT",
                "/v1/acl/token",
                &json!({"ServiceIdentities": [{"ServiceName": "web"}]}).to_string(),
                Some(&root),
            )
            .await;
        t.json()["SecretID"].as_str().unwrap().to_string()
    };
    let trust_domain = server.read().ca().trust_domain();
    let csr = |service: &str| {
        let id = weft_ca::spiffe::ServiceId::new(&trust_domain, "dc1", service);
        weft_ca::leaf::new_request(&id).unwrap().1
    };
    let sign = |csr: String, token: Option<&str>| weft_server::SignRequest {
        csr,
        datacenter: "dc1".into(),
        token: token.map(str::to_string),
    };
    assert!(server
        .handle_sign(sign(csr("web"), Some(&web)))
        .await
        .is_ok());
    for (service, token) in [
        ("db", Some(web.as_str())),
        ("web", None),
        ("web", Some("nope")),
    ] {
        match server.handle_sign(sign(csr(service), token)).await {
            Err(weft_server::SignRefusal::Denied(why)) => {
                assert!(
                    why.contains("service:write") || why == "ACL not found",
                    "{why}"
                )
            }
            other => panic!("{service} with {token:?}: {other:?}"),
        }
    }
    assert!(server
        .handle_sign(sign(csr("db"), Some(&root)))
        .await
        .is_ok());
}

#[tokio::test]
async fn the_agent_takes_its_tokens_through_the_api() {
    let off = TestApi::new().await;
    let a = off
        .call(
            "PUT",
            "/v1/agent/token/default",
            &json!({"Token": "x"}).to_string(),
        )
        .await;
    assert_eq!(
        (a.status, a.text()),
        (StatusCode::UNAUTHORIZED, "ACL support disabled".into())
    );

    let api = api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let reader = token_with(
        &api,
        &root,
        "kv-read",
        r#"key_prefix "" { policy = "read" }"#,
    )
    .await;
    // Setting a token needs agent:write; unknown kinds are 404.
    let body = json!({"Token": reader}).to_string();
    let a = api
        .call_as("PUT", "/v1/agent/token/default", &body, Some(&reader))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    let a = api
        .call_as("PUT", "/v1/agent/token/nope", &body, Some(&root))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    api.call_as("PUT", "/v1/kv/k", "v", Some(&root)).await;
    assert_eq!(
        api.call_as("GET", "/v1/kv/k", "", None).await.status,
        StatusCode::FORBIDDEN
    );
    let a = api
        .call_as("PUT", "/v1/agent/token/default", &body, Some(&root))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(
        api.call_as("GET", "/v1/kv/k", "", None).await.status,
        StatusCode::OK
    );

    // The recovery token reaches this agent's own endpoints, decided without the servers, and nothing else.
    let recovery = "2f0c5a1b-9d3e-4f6a-8b7c-1d2e3f4a5b6c";
    let a = api
        .call_as(
            "PUT",
            "/v1/agent/token/agent_recovery",
            &json!({"Token": recovery}).to_string(),
            Some(&root),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        api.call_as("GET", "/v1/agent/self", "", Some(recovery))
            .await
            .status,
        StatusCode::OK
    );
    let a = api.call_as("GET", "/v1/kv/k", "", Some(recovery)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.text().contains("'agent-recovery'"), "{}", a.text());
}
