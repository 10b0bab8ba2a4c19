//! Config entries through the whole router: write with `?cas`, read, list, blocking, delete; refusals with their
//! reasons; ACLs per kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::acl_tests::{api as acl_api, bootstrap, token_with};
use crate::tests::TestApi;
use axum::http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn service_and_proxy_defaults_are_written_read_listed_and_deleted() {
    let api = TestApi::new().await;
    let web = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "HTTP", "MaxInboundConnections": 10});
    let a = api.put("/v1/config?cas=0", &web.to_string()).await;
    assert_eq!((a.status, a.text().as_str()), (StatusCode::OK, "true"));
    // cas=0 again: it exists now.
    assert_eq!(
        api.put("/v1/config?cas=0", &web.to_string()).await.text(),
        "false"
    );
    let got = api.get("/v1/config/service-defaults/web").await;
    assert_eq!(got.status, StatusCode::OK);
    let e = got.json();
    assert_eq!(e["Kind"], "service-defaults");
    assert_eq!(e["Protocol"], "http");
    assert_eq!(e["MaxInboundConnections"], 10);
    let at = e["ModifyIndex"].as_u64().unwrap();
    assert_eq!(got.header("x-consul-index"), Some(at.to_string().as_str()));
    // A lowercase, snake_case body (as py-consul sends) is read too.
    let pd = json!({"kind": "proxy-defaults", "name": "global", "config": {"protocol": "http"}});
    assert_eq!(api.put("/v1/config", &pd.to_string()).await.text(), "true");
    assert_eq!(
        api.get("/v1/config/proxy-defaults/global").await.json()["Config"]["protocol"],
        "http"
    );
    let list = api.get("/v1/config/service-defaults").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Blocking: a read past the index waits for the next change of the kind.
    let api2 = TestApi {
        state: api.state.clone(),
    };
    let waiter = tokio::spawn(async move {
        api2.get(&format!(
            "/v1/config/service-defaults/web?index={at}&wait=5s"
        ))
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let newer = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"});
    assert_eq!(
        api.put(&format!("/v1/config?cas={at}"), &newer.to_string())
            .await
            .text(),
        "true"
    );
    let woke = waiter.await.unwrap();
    assert_eq!(woke.json()["Protocol"], "grpc");

    for (body, why) in [
        (
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "udp"}),
            "Protocol \"udp\"",
        ),
        (
            json!({"Kind": "proxy-defaults", "Name": "web"}),
            "only \"global\"",
        ),
        (
            json!({"Kind": "exported-services", "Name": "default"}),
            "not stored by Weft yet",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "web", "Bogus": true}),
            "unknown field",
        ),
    ] {
        let a = api.put("/v1/config", &body.to_string()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(a.text().contains(why), "{body}: {}", a.text());
    }
    assert_eq!(
        api.get("/v1/config/service-defaults/web").await.json()["Protocol"],
        "grpc",
        "refusals changed nothing"
    );
    let missing = api.get("/v1/config/service-defaults/nobody").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call("DELETE", "/v1/config/service-defaults/web?cas=1", "")
            .await
            .text(),
        "false"
    );
    assert_eq!(
        api.call("DELETE", "/v1/config/service-defaults/web", "")
            .await
            .text(),
        "true"
    );
    assert_eq!(
        api.get("/v1/config/service-defaults/web").await.status,
        StatusCode::NOT_FOUND
    );
    // service-intentions entries still go to intentions.
    let si = json!({"Kind": "service-intentions", "Name": "web", "Sources": [{"Name": "api", "Action": "allow"}]});
    assert_eq!(api.put("/v1/config", &si.to_string()).await.text(), "true");
    assert_eq!(
        api.get("/v1/connect/intentions")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn discovery_chain_entries_need_an_http_service() {
    let api = TestApi::new().await;
    let splitter = json!({"Kind": "service-splitter", "Name": "web",
        "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]});
    let a = api.put("/v1/config", &splitter.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.text().contains("does not permit advanced routing"),
        "{}",
        a.text()
    );
    let http = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"});
    assert_eq!(
        api.put("/v1/config", &http.to_string()).await.text(),
        "true"
    );
    assert_eq!(
        api.put("/v1/config", &splitter.to_string()).await.text(),
        "true"
    );
    let resolver = json!({"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1",
        "Subsets": {"v1": {"Filter": "Service.Meta.version == 1"}, "v2": {"Filter": "Service.Meta.version == 2"}}});
    assert_eq!(
        api.put("/v1/config", &resolver.to_string()).await.text(),
        "true"
    );
    let got = api.get("/v1/config/service-splitter/web").await.json();
    assert_eq!(got["Splits"][1]["Weight"], 10);
    assert_eq!(
        api.get("/v1/config/service-resolver")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The service cannot go back to tcp while the splitter needs http.
    let tcp = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "tcp"});
    let a = api.put("/v1/config", &tcp.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.text().contains("delete those first"), "{}", a.text());
    // Nor lose its protocol by deleting its service-defaults while proxy-defaults gives tcp ...
    let a = api.delete("/v1/config/service-defaults/web").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(
        a.text().contains("deleting its service-defaults"),
        "{}",
        a.text()
    );
    // ... which it may once proxy-defaults gives http; proxy-defaults then cannot go back to tcp, nor away.
    let global_http =
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}});
    assert_eq!(
        api.put("/v1/config", &global_http.to_string()).await.text(),
        "true"
    );
    assert_eq!(
        api.delete("/v1/config/service-defaults/web").await.text(),
        "true"
    );
    let global_tcp =
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}});
    let a = api.put("/v1/config", &global_tcp.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    let a = api.delete("/v1/config/proxy-defaults/global").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    // A service-defaults without a Protocol falls back to proxy-defaults' http: accepted.
    let plain = json!({"Kind": "service-defaults", "Name": "web"});
    assert_eq!(
        api.put("/v1/config", &plain.to_string()).await.text(),
        "true"
    );
    // Once the splitter is gone, anything goes.
    assert_eq!(
        api.delete("/v1/config/service-splitter/web").await.text(),
        "true"
    );
    assert_eq!(
        api.put("/v1/config", &global_tcp.to_string()).await.text(),
        "true"
    );
}

#[tokio::test]
async fn a_chain_entry_needs_read_on_the_services_it_sends_traffic_to() {
    let api = acl_api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let http =
        |n: &str| json!({"Kind": "service-defaults", "Name": n, "Protocol": "http"}).to_string();
    for name in ["web", "canary", "db"] {
        assert_eq!(
            api.call_as("PUT", "/v1/config", &http(name), Some(&root))
                .await
                .text(),
            "true"
        );
    }
    let web_only = token_with(
        &api,
        &root,
        "web-only",
        r#"service "web" { policy = "write" }"#,
    )
    .await;
    let web_and_canary = token_with(
        &api,
        &root,
        "web-canary",
        r#"service "web" { policy = "write" } service "canary" { policy = "read" }"#,
    )
    .await;
    let splitter = json!({"Kind": "service-splitter", "Name": "web",
        "Splits": [{"Weight": 90}, {"Weight": 10, "Service": "canary"}]})
    .to_string();
    let a = api
        .call_as("PUT", "/v1/config", &splitter, Some(&web_only))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    let a = api
        .call_as("PUT", "/v1/config", &splitter, Some(&web_and_canary))
        .await;
    assert_eq!(a.text(), "true");
    let resolver =
        json!({"Kind": "service-resolver", "Name": "web", "Failover": {"*": {"Service": "db"}}})
            .to_string();
    let a = api
        .call_as("PUT", "/v1/config", &resolver, Some(&web_and_canary))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert_eq!(
        crate::config_chain::related_services(&json!({"Name": "web",
            "Routes": [{"Destination": {"Service": "api"}}, {"Destination": {"Service": "web"}}],
            "Redirect": {"Service": "r"},
            "Failover": {"v1": {"Service": "f", "Targets": [{"Service": "t"}]}}})),
        ["api", "f", "r", "t"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[tokio::test]
async fn gateway_entries_answer_gateway_services_and_ingress_health() {
    let api = TestApi::new().await;
    let gw = json!({"Node": "edge", "Address": "10.0.0.9",
        "Service": {"ID": "ingress-1", "Service": "ingress", "Kind": "ingress-gateway", "Port": 8443}});
    assert_eq!(
        api.put("/v1/catalog/register", &gw.to_string())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(api.get("/v1/health/ingress/web").await.json(), json!([]));
    let entry = json!({"Kind": "ingress-gateway", "Name": "ingress", "Listeners": [
        {"Port": 8080, "Protocol": "http", "Services": [{"Name": "web", "Hosts": ["web.example.com"]}]},
        {"Port": 9000, "Services": [{"Name": "db"}]}]});
    assert_eq!(
        api.put("/v1/config", &entry.to_string()).await.text(),
        "true"
    );
    let carried = api.get("/v1/catalog/gateway-services/ingress").await.json();
    let web = carried
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Service"]["Name"] == "web")
        .unwrap()
        .clone();
    assert_eq!(web["Port"], 8080);
    assert_eq!(web["Protocol"], "http");
    assert_eq!(web["Hosts"], json!(["web.example.com"]));
    assert_eq!(web["GatewayKind"], "ingress-gateway");
    assert_eq!(carried.as_array().unwrap().len(), 2);
    let health = api.get("/v1/health/ingress/web").await.json();
    assert_eq!(health[0]["Service"]["ID"], "ingress-1");
    let term = json!({"Kind": "terminating-gateway", "Name": "egress",
        "Services": [{"Name": "legacy", "CAFile": "/etc/ca.pem", "SNI": "legacy.example"}]});
    assert_eq!(
        api.put("/v1/config", &term.to_string()).await.text(),
        "true"
    );
    let out = api.get("/v1/catalog/gateway-services/egress").await.json();
    assert_eq!(out[0]["GatewayKind"], "terminating-gateway");
    assert_eq!(out[0]["CAFile"], "/etc/ca.pem");
    assert_eq!(out[0]["SNI"], "legacy.example");
}

#[tokio::test]
async fn config_entry_acls_follow_the_kind() {
    let api = acl_api(weft_types::DefaultPolicy::Deny).await;
    let root = bootstrap(&api).await;
    let web_writer = token_with(
        &api,
        &root,
        "web-w",
        r#"service "web" { policy = "write" }"#,
    )
    .await;
    let web = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}).to_string();
    let other = json!({"Kind": "service-defaults", "Name": "db", "Protocol": "http"}).to_string();
    let global = json!({"Kind": "proxy-defaults", "Name": "global"}).to_string();
    // The caller's right to write comes before any checking of the entry: an anonymous caller gets a 403, not the
    // work (or the findings) of validating what it sent.
    let costly = json!({"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {"PathRegex": "("}}}]})
        .to_string();
    let a = api.call_as("PUT", "/v1/config", &costly, None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    let ok = api
        .call_as("PUT", "/v1/config", &web, Some(&web_writer))
        .await;
    assert_eq!(ok.text(), "true");
    for body in [&other, &global] {
        let a = api
            .call_as("PUT", "/v1/config", body, Some(&web_writer))
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{body}: {}", a.text());
    }
    assert_eq!(
        api.call_as("PUT", "/v1/config", &global, Some(&root))
            .await
            .text(),
        "true"
    );
    assert_eq!(
        api.call_as("PUT", "/v1/config", &other, Some(&root))
            .await
            .text(),
        "true"
    );
    // Reads: the writer sees its service's entry, not db's; proxy-defaults is readable by any token.
    let list = api
        .call_as("GET", "/v1/config/service-defaults", "", Some(&web_writer))
        .await;
    assert_eq!(list.json().as_array().unwrap().len(), 1);
    let db = api
        .call_as(
            "GET",
            "/v1/config/service-defaults/db",
            "",
            Some(&web_writer),
        )
        .await;
    assert_eq!(db.status, StatusCode::FORBIDDEN);
    let pd = api
        .call_as(
            "GET",
            "/v1/config/proxy-defaults/global",
            "",
            Some(&web_writer),
        )
        .await;
    assert_eq!(pd.status, StatusCode::OK);
    // Gateways: configured by operators, read by whoever may read the gateway service.
    let gw = json!({"Kind": "ingress-gateway", "Name": "web",
        "Listeners": [{"Port": 8080, "Services": [{"Name": "db"}]}]})
    .to_string();
    let a = api
        .call_as("PUT", "/v1/config", &gw, Some(&web_writer))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert_eq!(
        api.call_as("PUT", "/v1/config", &gw, Some(&root))
            .await
            .text(),
        "true"
    );
    let read = api
        .call_as(
            "GET",
            "/v1/config/ingress-gateway/web",
            "",
            Some(&web_writer),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
}

#[tokio::test]
async fn l7_intentions_need_a_service_that_speaks_http() {
    let api = TestApi::new().await;
    let l7 = json!({"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/api"}}]});
    let exact = "/v1/connect/intentions/exact?source=web&destination=api";
    // api speaks tcp (no service-defaults, no proxy-defaults): refused by both the legacy API and the entry.
    let a = api.put(exact, &l7.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.text().contains(r#"service "api" has protocol "tcp""#),
        "{}",
        a.text()
    );
    let entry = json!({"Kind": "service-intentions", "Name": "api",
        "Sources": [{"Name": "web", "Permissions": l7["Permissions"]}]});
    let a = api.put("/v1/config", &entry.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("Permissions (L7)"), "{}", a.text());
    assert_eq!(api.get("/v1/connect/intentions").await.json(), json!([]));
    // L4 intentions on a tcp service are fine.
    let a = api
        .put(exact, &json!({"Action": "allow"}).to_string())
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // Once api speaks http (through proxy-defaults here), both forms are accepted ...
    let pd = json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}});
    assert_eq!(api.put("/v1/config", &pd.to_string()).await.text(), "true");
    let a = api.put(exact, &l7.to_string()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(
        api.put("/v1/config", &entry.to_string()).await.text(),
        "true"
    );
    // ... and api cannot be taken back to tcp while they stand.
    let tcp = json!({"Kind": "service-defaults", "Name": "api", "Protocol": "tcp"});
    let a = api.put("/v1/config", &tcp.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.text().contains("intentions with Permissions"),
        "{}",
        a.text()
    );
    let a = api.delete("/v1/config/proxy-defaults/global").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
}
