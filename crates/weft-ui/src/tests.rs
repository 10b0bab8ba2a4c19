//! Router-level tests, no sockets: pages render what the store holds, the live protocol waits for a difference,
//! and names with odd characters are escaped in HTML and encoded in links.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use std::time::Duration;
use tower::ServiceExt;
use weft_agent::{Agent, AgentConfig, Source};
use weft_state::{Command, KvOp};
use weft_types::{CheckDefinition, Intention, ServiceDefinition};

pub(crate) struct Ui {
    pub state: ApiState,
}

pub(crate) struct Page {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Ui {
    async fn new() -> Ui {
        Ui::with_rpc_addr("127.0.0.1:8300").await
    }

    /// A server whose RPC address is `rpc`; an empty one means "no leader" (dev servers lead at their own address).
    async fn with_rpc_addr(rpc: &str) -> Ui {
        Ui::with_config(weft_server::ServerConfig::new("dc1", "n1", rpc)).await
    }

    pub async fn with_config(config: weft_server::ServerConfig) -> Ui {
        let server = weft_server::Server::new(config);
        let agent = Agent::new(
            AgentConfig {
                node_name: "n1".into(),
                node_id: "0b3d3d2f-7a6c-4b57-9e0a-4f6a1d7c2e11".into(),
                datacenter: "dc1".into(),
                advertise_addr: "127.0.0.1".into(),
                node_meta: Default::default(),
                server: true,
                server_port: 8300,
                root_change_jitter: Duration::from_millis(100),
                state_dir: None,
                leaf_idle_expiry: weft_agent::DEFAULT_LEAF_IDLE_EXPIRY,
                script_checks: Default::default(),
                check_output_max_size: 0,
                locality: None,
            },
            server,
        );
        agent.start().await.unwrap();
        Ui {
            state: ApiState::new(agent),
        }
    }

    /// A GET through the dashboard merged with the API, as the agent serves them.
    async fn get(&self, uri: &str) -> Page {
        self.send("GET", uri, "", &[]).await
    }

    /// Any request, with extra headers (a token, a cookie).
    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let app = router(self.state.clone()).merge(weft_http::router(self.state.clone()));
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn register(&self, json: serde_json::Value) {
        let def: ServiceDefinition = serde_json::from_value(json).unwrap();
        self.state
            .agent
            .register_service(&def, true, Source::Api)
            .await
            .unwrap();
    }

    pub async fn intention(&self, source: &str, destination: &str, action: &str) -> String {
        let mut i = Intention {
            id: format!("id-{source}-{destination}"),
            source_name: source.into(),
            destination_name: destination.into(),
            action: action.into(),
            ..Intention::default()
        };
        i.normalize().unwrap();
        self.state
            .agent
            .server()
            .write(Command::IntentionUpsert(Box::new(i.clone())))
            .await
            .unwrap();
        i.id
    }

    pub async fn kv(&self, key: &str, value: &str) {
        self.state
            .agent
            .server()
            .write(Command::Kv(KvOp::Set {
                key: key.into(),
                value: value.as_bytes().to_vec(),
                flags: 0,
            }))
            .await
            .unwrap();
    }
}

fn web_with_sidecar() -> serde_json::Value {
    serde_json::json!({
        "ID": "web-1", "Name": "web", "Port": 8080, "Tags": ["v1", "primary"],
        "Check": {"TTL": "30s", "Name": "web alive", "Status": "passing", "Output": "all good"},
        "Connect": {"SidecarService": {"Proxy": {"Upstreams": [
            {"DestinationName": "db", "LocalBindPort": 9191}
        ]}}}
    })
}

#[tokio::test]
async fn roots_redirect_to_the_services_page() {
    let ui = Ui::new().await;
    for path in ["/ui", "/ui/", "/ui/dc1", "/ui/dc1/"] {
        let p = ui.get(path).await;
        assert_eq!(p.status, StatusCode::TEMPORARY_REDIRECT, "{path}");
        assert_eq!(p.headers["location"], "/ui/dc1/services", "{path}");
    }
    assert_eq!(
        ui.get("/ui/dc1/kv").await.headers["location"],
        "/ui/dc1/kv/"
    );
}

#[tokio::test]
async fn unknown_datacenters_and_paths_are_404_pages() {
    let ui = Ui::new().await;
    let p = ui.get("/ui/dc9/services").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("Unknown datacenter"), "{}", p.body);
    assert!(p.body.contains(r#"href="/ui/dc1/services""#));
    let p = ui.get("/ui/dc1/nowhere/at/all").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("Page not found"));
    assert!(p.body.contains("/ui/dc1/nowhere/at/all"));
}

#[tokio::test]
async fn the_api_still_answers_beside_the_dashboard() {
    let ui = Ui::new().await;
    let p = ui.get("/").await;
    assert_eq!(p.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(p.headers["location"], "/ui/");
    let p = ui.get("/v1/status/leader").await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.body, "\"127.0.0.1:8300\"");
    let p = ui.get("/v2/nothing").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("/v1/"), "the API's own 404: {}", p.body);
}

#[tokio::test]
async fn services_fold_sidecars_and_show_health() {
    let ui = Ui::new().await;
    ui.register(web_with_sidecar()).await;
    ui.register(serde_json::json!({
        "ID": "db-1", "Name": "db", "Port": 5432,
        "Check": {"TTL": "30s", "Status": "critical", "Output": "down"}
    }))
    .await;
    let p = ui.get("/ui/dc1/services").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains(r#"data-service="web""#));
    assert!(p.body.contains(r#"data-service="db""#));
    assert!(p.body.contains(r#"data-service="consul""#));
    // The sidecar is folded into web, which is marked as in the mesh.
    assert!(!p.body.contains(r#"data-service="web-sidecar-proxy""#));
    assert!(p.body.contains("in service mesh with proxy"));
    assert!(p.body.contains(r#"<span class="tag">primary</span>"#));
    let db_row = p.body.split(r#"data-service="db""#).nth(1).unwrap();
    assert!(db_row
        .trim_start()
        .starts_with(r#"data-search="db " data-status="critical""#));
    // Assets are linked with their content hash and served.
    assert!(p.body.contains("/ui/assets/app.js?v="));
    let js = ui.get(&assets::url("app.js")).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
}

#[tokio::test]
async fn instances_show_checks_sidecar_and_upstreams() {
    let ui = Ui::new().await;
    ui.register(web_with_sidecar()).await;
    let p = ui.get("/ui/dc1/services/web/instances").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains(r#"data-instance="web-1""#));
    assert!(p.body.contains("all good"), "check output is shown");
    assert!(
        p.body.contains("Serf Health Status"),
        "node checks are shown"
    );
    assert!(p.body.contains(r#"data-sidecar="web-1-sidecar-proxy""#));
    assert!(p.body.contains("127.0.0.1:9191"));
    assert!(p.body.contains(r#"href="/ui/dc1/services/db/topology""#));
    // In the mesh, the bare service URL opens the topology.
    let p = ui.get("/ui/dc1/services/web").await;
    assert_eq!(p.headers["location"], "/ui/dc1/services/web/topology");
    let p = ui.get("/ui/dc1/services/nothing/instances").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn topology_shows_edges_with_their_decisions() {
    let ui = Ui::new().await;
    ui.register(web_with_sidecar()).await;
    ui.register(serde_json::json!({"ID": "db-1", "Name": "db", "Port": 5432}))
        .await;
    let deny = ui.intention("web", "db", "deny").await;
    ui.intention("api", "web", "allow").await;
    let p = ui.get("/ui/dc1/services/web/topology").await;
    assert_eq!(p.status, StatusCode::OK);
    let up = p.body.split(r#"data-edge="up:db""#).nth(1).unwrap();
    assert!(up.contains("Denied"), "{up}");
    assert!(up.contains("web =&gt; db (deny)") || up.contains("web =&#62; db (deny)"));
    assert!(up.contains(&links::intention_edit("dc1", "web", "db")));
    assert!(!deny.is_empty());
    let down = p.body.split(r#"data-edge="down:api""#).nth(1).unwrap();
    assert!(down.contains("Allowed"));
    assert!(down.contains("Known from an intention"));
    // db's page sees web as a declared downstream.
    let p = ui.get("/ui/dc1/services/db/topology").await;
    assert!(p.body.contains(r#"data-edge="down:web""#));
}

#[tokio::test]
async fn nodes_mark_the_leader() {
    let ui = Ui::new().await;
    let p = ui.get("/ui/dc1/nodes").await;
    assert_eq!(p.status, StatusCode::OK);
    let row = p.body.split(r#"data-node="n1""#).nth(1).unwrap();
    assert!(row.contains("Leader"));
    assert!(p.body.contains("Leader 127.0.0.1:8300"));
    let p = ui.get("/ui/dc1/nodes/n1/health-checks").await;
    assert!(p.body.contains("serfHealth"));
    let p = ui.get("/ui/dc1/nodes/n1").await;
    assert_eq!(p.headers["location"], "/ui/dc1/nodes/n1/health-checks");
    let p = ui.get("/ui/dc1/nodes/ghost/service-instances").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn no_leader_is_said_clearly() {
    let ui = Ui::new().await;
    let p = ui.get("/ui/dc1/services").await;
    assert!(p
        .body
        .contains(r#"id="no-leader" class="banner" role="alert" hidden"#));
    let ui = Ui::with_rpc_addr("").await;
    let p = ui.get("/ui/dc1/nodes").await;
    assert!(
        p.body
            .contains(r#"id="no-leader" class="banner" role="alert">"#),
        "{}",
        p.body
    );
    assert!(p.body.contains("No cluster leader."));
    assert!(p.body.contains(r#"class="leader bad""#));
    let row = p.body.split(r#"data-node="n1""#).nth(1).unwrap();
    let row = row.split("</tr>").next().unwrap();
    assert!(!row.contains("Leader"), "no node is marked: {row}");
}

#[tokio::test]
async fn intentions_list_and_forms() {
    let ui = Ui::new().await;
    let id = ui.intention("*", "db", "deny").await;
    ui.intention("web", "db", "allow").await;
    let p = ui.get("/ui/dc1/intentions").await;
    let web = p.body.find(r#"data-intention="web db""#).unwrap();
    let star = p.body.find(r#"data-intention="* db""#).unwrap();
    assert!(web < star, "higher precedence first");
    assert!(p.body.contains("All services (*)"));
    // By legacy ID, and by pair (intentions written through the exact endpoint have no ID).
    for url in [
        format!("/ui/dc1/intentions/{id}"),
        links::intention_edit("dc1", "*", "db"),
    ] {
        let p = ui.get(&url).await;
        assert_eq!(p.status, StatusCode::OK, "{url}");
        assert!(p.body.contains(r#"value="deny" checked"#));
        assert!(p.body.contains(r#"data-precedence>8<"#));
        assert!(p.body.contains(r#"data-mode="edit""#));
        assert!(
            p.body.contains(
                r#"data-api="/v1/connect/intentions/exact?source=%2A&amp;destination=db""#
            ) || p.body.contains(
                r#"data-api="/v1/connect/intentions/exact?source=%2A&#38;destination=db""#
            ),
            "{}",
            p.body
        );
    }
    let p = ui
        .get("/ui/dc1/intentions/create?source=web&destination=db&return=https://evil.example/")
        .await;
    assert!(p.body.contains(r#"data-return="/ui/dc1/intentions""#));
    assert!(p.body.contains(r#"data-mode="create""#));
    assert!(p
        .body
        .contains(r#"id="source" name="source" list="service-names" value="web""#));
    assert_eq!(
        ui.get("/ui/dc1/intentions/no-such-id").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn kv_folders_and_keys_with_odd_names() {
    let ui = Ui::new().await;
    ui.kv("app/config", "hello <b>world</b>").await;
    ui.kv("app/sub dir/x?y#z", "1").await;
    let p = ui.get("/ui/dc1/kv/").await;
    assert!(p.body.contains(r#"href="/ui/dc1/kv/app/""#));
    let p = ui.get("/ui/dc1/kv/app/").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains(r#"href="/ui/dc1/kv/app/config""#));
    assert!(p.body.contains(r#"href="/ui/dc1/kv/app/sub%20dir/""#));
    assert!(
        p.body.contains("hello &lt;b&gt;world&lt;/b&gt;") || p.body.contains("hello &#60;b&#62;")
    );
    let p = ui.get("/ui/dc1/kv/app/sub%20dir/x%3Fy%23z").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p
        .body
        .contains(r#"data-api="/v1/kv/app/sub%20dir/x%3Fy%23z""#));
    // A folder typed without its slash redirects; a missing key is a 404 offering to create it.
    let p = ui.get("/ui/dc1/kv/app").await;
    assert_eq!(p.headers["location"], "/ui/dc1/kv/app/");
    let p = ui.get("/ui/dc1/kv/app/missing").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("/ui/dc1/kv/app/?create=missing"));
}

#[tokio::test]
async fn live_requests_wait_for_a_difference() {
    let ui = Ui::new().await;
    let p = ui.get("/ui/dc1/kv/").await;
    let index: u64 = attr(&p.body, "data-index").parse().unwrap();
    let hash = attr(&p.body, "data-hash");
    let url = format!("/ui/dc1/kv/?live={index}&hash={hash}");
    let waiting = tokio::spawn({
        let state = ui.state.clone();
        async move {
            let req = Request::builder().uri(url).body(Body::empty()).unwrap();
            router(state).oneshot(req).await.unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "nothing changed yet");
    ui.kv("fresh", "v").await;
    let resp = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let new_index: u64 = resp.headers()["x-weft-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_index > index);
    assert_eq!(resp.headers()["x-weft-leader"], "127.0.0.1:8300");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains(r#"data-key="fresh""#));
    assert!(!body.contains("<html"), "only the region is sent");
}

#[tokio::test]
async fn live_requests_ignore_changes_that_do_not_change_the_region() {
    let ui = Ui::new().await;
    ui.register(serde_json::json!({"ID": "web-1", "Name": "web", "Port": 80}))
        .await;
    let p = ui.get("/ui/dc1/intentions").await;
    let index: u64 = attr(&p.body, "data-index").parse().unwrap();
    let hash = attr(&p.body, "data-hash");
    ui.intention("a", "b", "allow").await;
    let p = ui.get("/ui/dc1/intentions").await;
    let (index2, hash2) = (attr(&p.body, "data-index"), attr(&p.body, "data-hash"));
    assert_ne!(index.to_string(), index2);
    assert_ne!(hash, hash2);
    let url = format!("/ui/dc1/intentions?live={index2}&hash={hash2}");
    let waiting = tokio::spawn({
        let state = ui.state.clone();
        async move {
            let req = Request::builder().uri(url).body(Body::empty()).unwrap();
            router(state).oneshot(req).await.unwrap()
        }
    });
    let def: CheckDefinition =
        serde_json::from_value(serde_json::json!({"ID": "c", "Name": "c", "TTL": "10s"})).unwrap();
    ui.state
        .agent
        .register_check(&def, Source::Api)
        .await
        .unwrap();
    ui.intention("a", "b", "allow").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "neither a catalog change nor an identical rewrite changes the intentions page"
    );
    ui.intention("c", "d", "deny").await;
    let resp = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

fn attr(body: &str, name: &str) -> String {
    let start = body.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    body[start..].split('"').next().unwrap().to_string()
}
