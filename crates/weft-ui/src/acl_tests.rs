//! The dashboard under ACLs: pages render for the viewer's token (from the sign-in cookie or `X-Consul-Token`),
//! lists leave out what it may not read, pages about such things are 403s with the API's text, write controls it
//! cannot use are disabled with the reason, and a token that stops resolving sends the viewer to sign in again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tests::Ui;
use axum::http::StatusCode;
use serde_json::json;
use weft_server::{AclConfig, ServerConfig};

const ROOT: &str = "4ee8d0a6-4b5c-4d29-9a5f-1f3b1d7a0c01";

async fn ui_with_acls() -> Ui {
    let mut config = ServerConfig::new("dc1", "n1", "127.0.0.1:8300");
    config.acl = AclConfig {
        enabled: true,
        default_policy: weft_types::DefaultPolicy::Deny,
        ..AclConfig::default()
    };
    let ui = Ui::with_config(config).await;
    // What the leader does on taking office.
    weft_server::acl_leader::init(ui.state.agent.server())
        .await
        .unwrap();
    let b = ui
        .send(
            "PUT",
            "/v1/acl/bootstrap",
            &json!({"BootstrapSecret": ROOT}).to_string(),
            &[],
        )
        .await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    for (id, name) in [("web-1", "web"), ("db-1", "db")] {
        ui.register(json!({"ID": id, "Name": name, "Port": 8080}))
            .await;
    }
    ui
}

/// A token holding `rules`; returns its secret.
async fn token(ui: &Ui, name: &str, rules: &str) -> String {
    let root = [("x-consul-token", ROOT)];
    let p = ui
        .send(
            "PUT",
            "/v1/acl/policy",
            &json!({"Name": name, "Rules": rules}).to_string(),
            &root,
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let t = ui
        .send(
            "PUT",
            "/v1/acl/token",
            &json!({"Policies": [{"Name": name}]}).to_string(),
            &root,
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let v: serde_json::Value = serde_json::from_str(&t.body).unwrap();
    v["SecretID"].as_str().unwrap().to_string()
}

fn cookie(secret: &str) -> String {
    format!("theme=dark; weft-token={secret}")
}

#[tokio::test]
async fn without_a_token_pages_show_what_anonymous_may_read_and_offer_sign_in() {
    let ui = ui_with_acls().await;
    let p = ui.send("GET", "/ui/dc1/services", "", &[]).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("You are not signed in"), "{}", p.body);
    assert!(p.body.contains(r#"href="/ui/dc1/login""#));
    assert!(!p.body.contains(r#"href="/ui/dc1/services/web""#));
    assert!(!p.body.contains(r#"href="/ui/dc1/services/db""#));
    let login = ui
        .send("GET", "/ui/dc1/login?next=/ui/dc1/nodes", "", &[])
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("data-login"));
    assert!(login.body.contains(r#"data-next="/ui/dc1/nodes""#));
    // No open redirect: only dashboard paths are kept.
    let evil = ui
        .send("GET", "/ui/dc1/login?next=//evil.example/", "", &[])
        .await;
    assert!(evil.body.contains(r#"data-next="""#), "{}", evil.body);
}

#[tokio::test]
async fn a_token_sees_only_what_it_may_read_and_is_refused_the_rest() {
    let ui = ui_with_acls().await;
    let web = token(&ui, "web-read", r#"service "web" { policy = "read" }"#).await;
    let c = cookie(&web);
    let list = ui
        .send("GET", "/ui/dc1/services", "", &[("cookie", &c)])
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains(r#"href="/ui/dc1/services/web""#),
        "{}",
        list.body
    );
    assert!(!list.body.contains(r#"href="/ui/dc1/services/db""#));
    assert!(list.body.contains("data-sign-out"));
    assert!(!list.body.contains("You are not signed in"));
    // The same through the header the API takes.
    let by_header = ui
        .send("GET", "/ui/dc1/services", "", &[("x-consul-token", &web)])
        .await;
    assert!(by_header.body.contains(r#"href="/ui/dc1/services/web""#));

    let db = ui
        .send(
            "GET",
            "/ui/dc1/services/db/instances",
            "",
            &[("cookie", &c)],
        )
        .await;
    assert_eq!(db.status, StatusCode::FORBIDDEN);
    assert!(
        db.body
            .contains("lacks permission &#39;service:read&#39; on &#34;db&#34;"),
        "{}",
        db.body
    );
    // The node is not readable either: its page is refused, the nodes list is empty.
    let node = ui
        .send(
            "GET",
            "/ui/dc1/nodes/n1/health-checks",
            "",
            &[("cookie", &c)],
        )
        .await;
    assert_eq!(node.status, StatusCode::FORBIDDEN);
    let nodes = ui.send("GET", "/ui/dc1/nodes", "", &[("cookie", &c)]).await;
    assert!(
        !nodes.body.contains(r#"href="/ui/dc1/nodes/n1""#),
        "{}",
        nodes.body
    );
    // Access pages need acl:read.
    let acls = ui
        .send("GET", "/ui/dc1/acls/tokens", "", &[("cookie", &c)])
        .await;
    assert_eq!(acls.status, StatusCode::FORBIDDEN);
    assert!(acls.body.contains("acl:read"));
}

#[tokio::test]
async fn write_controls_are_disabled_with_the_missing_permission() {
    let ui = ui_with_acls().await;
    ui.intention("web", "db", "allow").await;
    ui.kv("app/config", "v1").await;
    let reader = token(
        &ui,
        "reader",
        r#"service_prefix "" { policy = "read" } key_prefix "app/" { policy = "read" }"#,
    )
    .await;
    let c = cookie(&reader);
    let edit = ui
        .send("GET", "/ui/dc1/intentions/web:db", "", &[("cookie", &c)])
        .await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
    assert!(
        edit.body
            .contains("disabled title=\"Your token lacks intentions:write on &#34;db&#34;\""),
        "{}",
        edit.body
    );
    let key = ui
        .send("GET", "/ui/dc1/kv/app/config", "", &[("cookie", &c)])
        .await;
    assert_eq!(key.status, StatusCode::OK, "{}", key.body);
    assert!(
        key.body.contains("Your token lacks key:write"),
        "{}",
        key.body
    );
    let other = ui
        .send("GET", "/ui/dc1/kv/secret/x", "", &[("cookie", &c)])
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);

    // The management token gets the same pages with every control enabled, and the access pages writable.
    let root = cookie(ROOT);
    let edit = ui
        .send("GET", "/ui/dc1/intentions/web:db", "", &[("cookie", &root)])
        .await;
    assert!(!edit.body.contains("disabled title"), "{}", edit.body);
    let acls = ui
        .send("GET", "/ui/dc1/acls/policies", "", &[("cookie", &root)])
        .await;
    assert_eq!(acls.status, StatusCode::OK);
    assert!(acls.body.contains(r#"data-kind="policies""#));
    assert!(!acls.body.contains("data-locked"));
    let missing = ui
        .send("GET", "/ui/dc1/acls/keys", "", &[("cookie", &root)])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_token_that_stops_resolving_signs_the_viewer_out() {
    let ui = ui_with_acls().await;
    let gone = "0c2f3e4a-5b6c-4d7e-8f90-a1b2c3d4e5f6";
    for headers in [
        [("cookie", cookie(gone))],
        [("x-consul-token", gone.to_string())],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let p = ui
            .send("GET", "/ui/dc1/services?live=1&hash=x", "", &h)
            .await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert_eq!(p.headers["x-weft-signed-out"], "1");
        assert!(p.body.contains("ACL not found"), "{}", p.body);
        assert!(p.body.contains("data-signed-out"));
    }
}

#[tokio::test]
async fn with_acls_off_there_is_no_sign_in() {
    let ui = Ui::with_config(ServerConfig::new("dc1", "n1", "127.0.0.1:8300")).await;
    let p = ui.send("GET", "/ui/dc1/services", "", &[]).await;
    assert!(!p.body.contains("Sign in"));
    assert!(!p.body.contains("acls/tokens"));
    let login = ui.send("GET", "/ui/dc1/login", "", &[]).await;
    assert_eq!(login.status, StatusCode::TEMPORARY_REDIRECT);
}
