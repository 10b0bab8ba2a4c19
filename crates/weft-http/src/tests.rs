//! Router-level tests: requests go through the whole router (no sockets) and answers are compared with Consul's
//! documented shapes (`shared/spec/consul-http-api.md`). Volatile fields (IDs, indexes) are normalised first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use axum::http::{HeaderMap, Request};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use weft_agent::AgentConfig;
use weft_server::{Server, ServerConfig};

pub(crate) struct TestApi {
    pub state: ApiState,
}

pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) const NODE_ID: &str = "0b3d3d2f-7a6c-4b57-9e0a-4f6a1d7c2e11";

impl TestApi {
    pub async fn new() -> TestApi {
        TestApi::with_server(ServerConfig::new("dc1", "n1", "127.0.0.1:8300")).await
    }

    pub async fn with_server(config: ServerConfig) -> TestApi {
        let server = Server::new(config);
        let agent = Agent::new(
            AgentConfig {
                node_name: "n1".into(),
                node_id: NODE_ID.into(),
                datacenter: "dc1".into(),
                advertise_addr: "127.0.0.1".into(),
                node_meta: Default::default(),
                server: true,
                server_port: 8300,
                root_change_jitter: std::time::Duration::from_millis(100),
                state_dir: None,
                leaf_idle_expiry: weft_agent::DEFAULT_LEAF_IDLE_EXPIRY,
                script_checks: Default::default(),
                check_output_max_size: 0,
                locality: None,
            },
            server,
        );
        agent.start().await.unwrap();
        TestApi {
            state: ApiState::new(agent),
        }
    }

    pub async fn call(&self, method: &str, uri: &str, body: &str) -> Answer {
        self.call_as(method, uri, body, None).await
    }

    /// A request carrying `token` in `X-Consul-Token` (none: no token at all).
    pub async fn call_as(
        &self,
        method: &str,
        uri: &str,
        body: &str,
        token: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("x-consul-token", t);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.call("GET", uri, "").await
    }

    pub async fn put(&self, uri: &str, body: &str) -> Answer {
        self.call("PUT", uri, body).await
    }

    pub async fn delete(&self, uri: &str) -> Answer {
        self.call("DELETE", uri, "").await
    }

    /// Everything a refused request must leave untouched: the store and the agent's local state.
    pub fn fingerprint(&self) -> (Vec<u8>, String, String) {
        let store = self.state.agent.server().read().snapshot();
        let services = format!("{:?}", self.state.agent.services());
        let checks = format!("{:?}", self.state.agent.checks());
        (store, services, checks)
    }
}

/// Replaces indexes with 0 and known random IDs with placeholders, recursively.
fn normalize(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k == "CreateIndex" || k == "ModifyIndex" {
                    *val = json!(0);
                } else {
                    *val = normalize(std::mem::take(val));
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = normalize(std::mem::take(item));
            }
        }
        _ => {}
    }
    v
}

fn assert_read_meta(a: &Answer) {
    let index: u64 = a
        .header("x-consul-index")
        .expect("X-Consul-Index")
        .parse()
        .unwrap();
    assert!(index > 0);
    assert_eq!(a.header("x-consul-knownleader"), Some("true"));
    assert_eq!(a.header("x-consul-lastcontact"), Some("0"));
    assert!(a.header("x-consul-effective-consistency").is_some());
}

const WEB: &str = r#"{"ID":"web1","Name":"web","Tags":["v1"],"Address":"10.0.0.5","Port":8080,
    "Meta":{"env":"prod"},"Check":{"TTL":"30s","Status":"passing"}}"#;

fn serf_check() -> Value {
    json!({"Node":"n1","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","Notes":"",
        "Output":"Agent alive and reachable","ServiceID":"","ServiceName":"","ServiceTags":[],"Type":"",
        "Interval":"","Timeout":"","ExposedPort":0,"Definition":{},"CreateIndex":0,"ModifyIndex":0})
}

fn web_check() -> Value {
    json!({"Node":"n1","CheckID":"service:web1","Name":"Service 'web' check","Status":"passing","Notes":"",
        "Output":"","ServiceID":"web1","ServiceName":"web","ServiceTags":["v1"],"Type":"ttl","Interval":"",
        "Timeout":"","ExposedPort":0,"Definition":{"TTL":"30s"},"CreateIndex":0,"ModifyIndex":0})
}

fn node_json() -> Value {
    json!({"ID":NODE_ID,"Node":"n1","Address":"127.0.0.1","Datacenter":"dc1",
        "TaggedAddresses":{"lan":"127.0.0.1","lan_ipv4":"127.0.0.1","wan":"127.0.0.1","wan_ipv4":"127.0.0.1"},
        "Meta":{"consul-network-segment":""},"CreateIndex":0,"ModifyIndex":0})
}

fn web_tagged() -> Value {
    json!({"lan_ipv4":{"Address":"10.0.0.5","Port":8080},"wan_ipv4":{"Address":"10.0.0.5","Port":8080}})
}

#[tokio::test]
async fn agent_services_golden() {
    let api = TestApi::new().await;
    assert_eq!(
        api.put("/v1/agent/service/register", WEB).await.status,
        StatusCode::OK
    );
    let a = api.get("/v1/agent/services").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"web1":{"ID":"web1","Service":"web","Tags":["v1"],"Meta":{"env":"prod"},"Port":8080,
            "Address":"10.0.0.5","TaggedAddresses":web_tagged(),"Weights":{"Passing":1,"Warning":1},
            "EnableTagOverride":false,"Datacenter":"dc1"}})
    );
    let one = api.get("/v1/agent/service/web1").await;
    let hash = one.header("x-consul-contenthash").unwrap().to_string();
    assert_eq!(one.json()["ContentHash"], json!(hash));
    let missing = api.get("/v1/agent/service/nope").await;
    assert_eq!(
        (missing.status, missing.text()),
        (StatusCode::NOT_FOUND, "unknown service ID: nope".into())
    );
}

#[tokio::test]
async fn agent_checks_and_health_golden() {
    let api = TestApi::new().await;
    api.put("/v1/agent/service/register", WEB).await;
    let checks = api.get("/v1/agent/checks").await.json();
    assert_eq!(normalize(checks["service:web1"].clone()), web_check());
    assert!(
        checks.get("serfHealth").is_none(),
        "agent checks are local ones only"
    );
    let h = api.get("/v1/agent/health/service/id/web1").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json()["AggregatedStatus"], "passing");
    api.put("/v1/agent/check/warn/service:web1?note=slow", "")
        .await;
    let h = api
        .get("/v1/agent/health/service/name/web?format=text")
        .await;
    assert_eq!(
        (h.status, h.text()),
        (StatusCode::TOO_MANY_REQUESTS, "warning".into())
    );
    api.put("/v1/agent/check/fail/service:web1", "").await;
    assert_eq!(
        api.get("/v1/agent/health/service/id/web1").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let unknown = api.get("/v1/agent/health/service/id/zzz").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json(),
        json!({"AggregatedStatus":"critical","Service":null,"Checks":null})
    );
    let unknown = api.get("/v1/agent/health/service/name/zzz").await;
    assert_eq!(
        (unknown.status, unknown.json()),
        (StatusCode::NOT_FOUND, json!([]))
    );
}

#[tokio::test]
async fn catalog_golden() {
    let api = TestApi::new().await;
    api.put("/v1/agent/service/register", WEB).await;
    let nodes = api.get("/v1/catalog/nodes").await;
    assert_read_meta(&nodes);
    assert_eq!(normalize(nodes.json()), json!([node_json()]));

    let services = api.get("/v1/catalog/services").await;
    assert_read_meta(&services);
    assert_eq!(services.json(), json!({"consul":[],"web":["v1"]}));

    let svc = api.get("/v1/catalog/service/web").await;
    assert_read_meta(&svc);
    assert_eq!(
        normalize(svc.json()),
        json!([{"ID":NODE_ID,"Node":"n1","Address":"127.0.0.1","Datacenter":"dc1",
            "TaggedAddresses":node_json()["TaggedAddresses"],"NodeMeta":{"consul-network-segment":""},
            "ServiceKind":"","ServiceID":"web1","ServiceName":"web","ServiceTags":["v1"],
            "ServiceAddress":"10.0.0.5","ServiceTaggedAddresses":web_tagged(),
            "ServiceWeights":{"Passing":1,"Warning":1},"ServiceMeta":{"env":"prod"},"ServicePort":8080,
            "ServiceSocketPath":"","ServiceEnableTagOverride":false,
            "ServiceProxy":{"Mode":"","MeshGateway":{},"Expose":{}},"ServiceConnect":{},"ServiceLocality":null,
            "CreateIndex":0,"ModifyIndex":0}])
    );
    assert_eq!(
        api.get("/v1/catalog/service/web?tag=v2").await.json(),
        json!([])
    );
    assert_eq!(
        api.get("/v1/catalog/service/nothing").await.json(),
        json!([])
    );
    assert_eq!(
        api.get("/v1/catalog/datacenters").await.json(),
        json!(["dc1"])
    );

    let node = api.get("/v1/catalog/node/n1").await.json();
    assert_eq!(normalize(node["Node"].clone()), node_json());
    assert_eq!(node["Services"]["web1"]["Service"], "web");
    assert_eq!(
        node["Services"]["web1"]["Proxy"],
        json!({"Mode":"","MeshGateway":{},"Expose":{}})
    );
    let unknown = api.get("/v1/catalog/node/nobody").await;
    assert_read_meta(&unknown);
    assert_eq!(
        (unknown.status, unknown.text()),
        (StatusCode::OK, "null".into())
    );
    let list = api.get("/v1/catalog/node-services/n1").await.json();
    assert_eq!(list["Services"].as_array().unwrap().len(), 2);
    let filtered = api
        .get("/v1/catalog/node-services/n1?filter=Service%20%3D%3D%20web")
        .await
        .json();
    assert_eq!(filtered["Services"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn catalog_register_and_deregister() {
    let api = TestApi::new().await;
    let body = r#"{"node":"ext","address":"10.1.1.1","service":{"service":"db","port":5432,"tags":["primary"]},
        "check":{"name":"db alive","status":"passing","serviceid":"db"},"WriteRequest":{"Token":""}}"#;
    let a = api.put("/v1/catalog/register", body).await;
    assert_eq!((a.status, a.text()), (StatusCode::OK, "true".into()));
    let h = api.get("/v1/health/service/db?passing").await.json();
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(h[0]["Service"]["ID"], "db");
    assert_eq!(h[0]["Checks"][0]["CheckID"], "db alive");
    let bad = api
        .put(
            "/v1/catalog/register",
            r#"{"node":"x","address":"1.1.1.1","check":{"name":"c","status":"meh"}}"#,
        )
        .await;
    assert_eq!(
        (bad.status, bad.text()),
        (
            StatusCode::BAD_REQUEST,
            "Invalid check status: 'meh'".into()
        )
    );
    let a = api
        .put(
            "/v1/catalog/deregister",
            r#"{"Node":"ext","ServiceID":"db"}"#,
        )
        .await;
    assert_eq!(a.text(), "true");
    assert_eq!(api.get("/v1/catalog/service/db").await.json(), json!([]));
    assert_eq!(
        api.put("/v1/catalog/deregister", r#"{"Node":"ext"}"#)
            .await
            .text(),
        "true"
    );
    assert_eq!(
        api.get("/v1/catalog/nodes")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn health_golden() {
    let api = TestApi::new().await;
    api.put("/v1/agent/service/register", WEB).await;
    let a = api.get("/v1/health/service/web").await;
    assert_read_meta(&a);
    let v = normalize(a.json());
    assert_eq!(v[0]["Node"], node_json());
    assert_eq!(
        v[0]["Service"],
        json!({"ID":"web1","Service":"web","Tags":["v1"],"Address":"10.0.0.5","TaggedAddresses":web_tagged(),
            "Meta":{"env":"prod"},"Port":8080,"Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,
            "Proxy":{"Mode":"","MeshGateway":{},"Expose":{}},"Connect":{},"PeerName":"","CreateIndex":0,"ModifyIndex":0})
    );
    assert_eq!(v[0]["Checks"], json!([serf_check(), web_check()]));
    assert_eq!(
        normalize(api.get("/v1/health/node/n1").await.json()),
        json!([serf_check(), web_check()])
    );
    assert_eq!(
        normalize(api.get("/v1/health/checks/web").await.json()),
        json!([web_check()])
    );
    assert_eq!(api.get("/v1/health/state/critical").await.json(), json!([]));
    assert_eq!(
        api.get("/v1/health/state/any")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let bad = api.get("/v1/health/state/bogus").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    api.put("/v1/agent/check/fail/service:web1", "").await;
    assert_eq!(
        api.get("/v1/health/service/web?passing=1").await.json(),
        json!([])
    );
    assert_eq!(
        api.get("/v1/health/service/web")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let bad = api.get("/v1/health/service/web?passing=maybe").await;
    assert_eq!(
        (bad.status, bad.text()),
        (StatusCode::BAD_REQUEST, "Invalid value for ?passing".into())
    );
    let filtered = api
        .get("/v1/health/service/web?filter=Service.Meta.env%20%3D%3D%20dev")
        .await;
    assert_eq!(filtered.json(), json!([]));
}

#[tokio::test]
async fn kv_golden() {
    let api = TestApi::new().await;
    let missing = api.get("/v1/kv/a").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.is_empty());
    assert_read_meta(&missing);
    assert_eq!(api.put("/v1/kv/a?flags=42", "hello").await.text(), "true");
    let a = api.get("/v1/kv/a").await;
    assert_read_meta(&a);
    assert_eq!(
        normalize(a.json()),
        json!([{"LockIndex":0,"Key":"a","Flags":42,"Value":"aGVsbG8=","CreateIndex":0,"ModifyIndex":0}])
    );
    let raw = api.get("/v1/kv/a?raw").await;
    assert_eq!(
        (raw.text(), raw.header("content-type")),
        ("hello".into(), Some("text/plain"))
    );
    api.put("/v1/kv/dir/x", "1").await;
    api.put("/v1/kv/dir/sub/y", "").await;
    assert_eq!(
        api.get("/v1/kv/dir/?keys&separator=/").await.json(),
        json!(["dir/sub/", "dir/x"])
    );
    let rec = api.get("/v1/kv/dir/?recurse").await.json();
    assert_eq!(rec.as_array().unwrap().len(), 2);
    assert_eq!(rec[0]["Value"], Value::Null);
    let conflict = api.put("/v1/kv/a?cas=1&acquire=x", "").await;
    assert_eq!(conflict.status, StatusCode::BAD_REQUEST);
    assert!(conflict.text().starts_with("Conflicting flags: "));
    assert_eq!(api.put("/v1/kv/a?cas=0", "x").await.text(), "false");
    assert_eq!(
        api.call("DELETE", "/v1/kv/dir?recurse", "").await.text(),
        "true"
    );
    assert_eq!(
        api.get("/v1/kv/dir/?recurse").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.get("/v1/kv/").await.text(), "Missing key name");
    let mut small = api.state.clone();
    small.kv_max_value_size = 4;
    let big = TestApi { state: small }.put("/v1/kv/big", "12345").await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(big
        .text()
        .starts_with("Request body(5 bytes) too large, max size: 4 bytes."));
}

#[tokio::test]
async fn txn_commits_or_rolls_back() {
    let api = TestApi::new().await;
    let ok = api
        .put(
            "/v1/txn",
            r#"[{"KV":{"Verb":"set","Key":"t1","Value":"dg=="}},{"KV":{"Verb":"get","Key":"t1"}}]"#,
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let v = normalize(ok.json());
    assert_eq!(v["Errors"], Value::Null);
    assert_eq!(v["Results"][0]["KV"]["Value"], Value::Null);
    assert_eq!(v["Results"][1]["KV"]["Value"], "dg==");
    let before = api.fingerprint();
    let rb = api
        .put("/v1/txn", r#"[{"KV":{"Verb":"set","Key":"t2","Value":"dg=="}},{"KV":{"Verb":"check-not-exists","Key":"t1"}}]"#)
        .await;
    assert_eq!(rb.status, StatusCode::CONFLICT);
    assert_eq!(rb.json()["Results"], Value::Null);
    assert_eq!(rb.json()["Errors"][0]["OpIndex"], 1);
    assert_eq!(api.get("/v1/kv/t2").await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.fingerprint().1, before.1);
    let bad = api.put("/v1/txn", "{").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().starts_with("Failed to parse body: "));
    let many: Vec<Value> = (0..129)
        .map(|i| json!({"KV":{"Verb":"get","Key":format!("k{i}")}}))
        .collect();
    let too_many = api
        .put("/v1/txn", &serde_json::to_string(&many).unwrap())
        .await;
    assert_eq!(too_many.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn sessions_golden() {
    let api = TestApi::new().await;
    let created = api
        .put(
            "/v1/session/create",
            r#"{"name":"lock","lockdelay":"5s","behavior":"release"}"#,
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    let id = created.json()["ID"].as_str().unwrap().to_string();
    assert!(weft_types::ids::is_uuid(&id));
    let info = api.get(&format!("/v1/session/info/{id}")).await;
    assert_read_meta(&info);
    assert_eq!(
        normalize(info.json()),
        json!([{"ID":id,"Name":"lock","Node":"n1","LockDelay":5_000_000_000u64,"Behavior":"release","TTL":"",
            "NodeChecks":["serfHealth"],"ServiceChecks":[],"CreateIndex":0,"ModifyIndex":0}])
    );
    assert_eq!(
        api.get("/v1/session/list")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api.get("/v1/session/node/n1")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        api.put(&format!("/v1/kv/l?acquire={id}"), "me")
            .await
            .text(),
        "true"
    );
    assert_eq!(api.get("/v1/kv/l").await.json()[0]["Session"], json!(id));
    assert_eq!(
        api.put(&format!("/v1/session/renew/{id}"), "").await.status,
        StatusCode::OK
    );
    let bad_ttl = api.put("/v1/session/create", r#"{"TTL":"1s"}"#).await;
    assert_eq!(bad_ttl.status, StatusCode::BAD_REQUEST);
    assert!(bad_ttl.text().starts_with("Invalid Session TTL '1s'"));
    let bad = api
        .put("/v1/session/create", r#"{"Behavior":"explode"}"#)
        .await;
    assert_eq!(
        (bad.status, bad.text()),
        (
            StatusCode::BAD_REQUEST,
            "Invalid Behavior setting 'explode'".into()
        )
    );
    assert_eq!(
        api.put(&format!("/v1/session/destroy/{id}"), "")
            .await
            .text(),
        "true"
    );
    assert_eq!(api.get("/v1/kv/l").await.json()[0].get("Session"), None);
    assert_eq!(
        api.get(&format!("/v1/session/info/{id}")).await.json(),
        json!([])
    );
    let not_uuid = api.put("/v1/session/destroy/not-a-uuid", "").await;
    assert_eq!(
        (not_uuid.status, not_uuid.text()),
        (
            StatusCode::BAD_REQUEST,
            "Session ID \"not-a-uuid\" is not a UUID".into()
        )
    );
    let renew = api.put("/v1/session/renew/nope", "").await;
    assert_eq!(
        (renew.status, renew.text()),
        (StatusCode::NOT_FOUND, "Session id 'nope' not found".into())
    );
}

#[tokio::test]
async fn status_and_self() {
    let api = TestApi::new().await;
    assert_eq!(
        api.get("/v1/status/leader").await.json(),
        json!("127.0.0.1:8300")
    );
    assert_eq!(
        api.get("/v1/status/peers").await.json(),
        json!(["127.0.0.1:8300"])
    );
    let me = api.get("/v1/agent/self").await.json();
    assert_eq!(me["Config"]["NodeName"], "n1");
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    assert_eq!(me["Member"]["Tags"]["role"], "consul");
    let members = api.get("/v1/agent/members").await.json();
    assert_eq!(members[0]["Name"], "n1");
    assert_eq!(members[0]["Status"], 1);
}

#[tokio::test]
async fn routing_errors() {
    let api = TestApi::new().await;
    let a = api.get("/v1/nope").await;
    assert_eq!(
        (a.status, a.text()),
        (
            StatusCode::NOT_FOUND,
            "Invalid URL path: not a recognized HTTP API endpoint\n".into()
        )
    );
    let a = api.get("/nope").await;
    assert!(a.text().contains("ensure the path starts with '/v1/'"));
    let a = api.call("POST", "/v1/kv/x", "").await;
    assert_eq!(
        (a.status, a.text()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method POST not allowed".into()
        )
    );
    assert_eq!(a.header("allow"), Some("OPTIONS,GET,PUT,DELETE"));
    let a = api.call("OPTIONS", "/v1/agent/services", "").await;
    assert_eq!(
        (a.status, a.header("allow")),
        (StatusCode::OK, Some("OPTIONS,GET"))
    );
    assert_eq!(api.get("/v1/kv/x%0a").await.status, StatusCode::BAD_REQUEST);
    let a = api.get("/v1/catalog/nodes?index=abc").await;
    assert_eq!(
        (a.status, a.text()),
        (StatusCode::BAD_REQUEST, "Invalid index".into())
    );
    let a = api.get("/v1/catalog/nodes?index=1&wait=soon").await;
    assert_eq!(
        (a.status, a.text()),
        (StatusCode::BAD_REQUEST, "Invalid wait time".into())
    );
    let a = api.get("/v1/catalog/nodes?stale&consistent").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = api.get("/v1/catalog/nodes?dc=dc9").await;
    assert_eq!(
        (a.status, a.text()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "No path to datacenter".into()
        )
    );
    let a = api.get("/v1/catalog/nodes?ns=team").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.get("/v1/catalog/nodes?ns=default").await.status,
        StatusCode::OK
    );
    let a = api.get("/v1/catalog/nodes?filter=Node%20%3D%3D").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a
        .text()
        .starts_with("Failed to create boolean expression evaluator: "));
    let a = api.put("/v1/agent/service/register", "{not json").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.text().starts_with("Request decode failed: "));
    let a = api.put("/v1/agent/service/register", "").await;
    assert_eq!(a.text(), "Request decode failed: EOF");
    let a = api
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"x","Port":"eighty"}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let p = api.get("/v1/status/leader?pretty").await;
    assert_eq!(p.text(), "\"127.0.0.1:8300\"\n");
    let p = api.get("/v1/catalog/datacenters?pretty").await;
    assert_eq!(
        p.text(),
        "[\n    \"dc1\"\n]\n",
        "indented like Go's MarshalIndent"
    );
    assert_eq!(a.header("x-consul-default-acl-policy"), Some("allow"));
}

#[tokio::test]
async fn agent_writes_and_maintenance() {
    let api = TestApi::new().await;
    let r = api.put("/v1/agent/service/register", WEB).await;
    assert_eq!(
        (r.status, r.body.len(), r.header("content-type")),
        (StatusCode::OK, 0, None)
    );
    assert_eq!(
        api.put("/v1/agent/service/maintenance/web1", "")
            .await
            .text(),
        "Missing value for enable"
    );
    let r = api
        .put("/v1/agent/service/maintenance/web1?enable=maybe", "")
        .await;
    assert_eq!(r.text(), "Invalid value for enable: \"maybe\"");
    assert_eq!(
        api.put(
            "/v1/agent/service/maintenance/web1?enable=true&reason=upgrade",
            ""
        )
        .await
        .status,
        StatusCode::OK
    );
    let checks = api.get("/v1/health/checks/web").await.json();
    let maint = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "_service_maintenance:web1")
        .unwrap();
    assert_eq!(
        (maint["Status"].as_str(), maint["Notes"].as_str()),
        (Some("critical"), Some("upgrade"))
    );
    api.put("/v1/agent/service/maintenance/web1?enable=false", "")
        .await;
    assert_eq!(
        api.get("/v1/health/checks/web")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    api.put("/v1/agent/maintenance?enable=true", "").await;
    assert!(api
        .get("/v1/health/node/n1")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "_node_maintenance"));
    let r = api
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"mem","TTL":"10s","ServiceID":"ghost"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.text()),
        (
            StatusCode::NOT_FOUND,
            "ServiceID \"ghost\" does not exist".into()
        )
    );
    let r = api
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"mem","TTL":"10s","Status":"sideways"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::BAD_REQUEST, "Bad check status".into())
    );
    assert_eq!(
        api.put("/v1/agent/check/register", r#"{"Name":"mem","TTL":"10s"}"#)
            .await
            .status,
        StatusCode::OK
    );
    let r = api
        .put("/v1/agent/check/update/mem", r#"{"Status":"bogus"}"#)
        .await;
    assert_eq!(r.text(), "Invalid check status: 'bogus'");
    assert_eq!(
        api.put(
            "/v1/agent/check/update/mem",
            r#"{"Status":"passing","Output":"fine"}"#
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        api.get("/v1/agent/checks").await.json()["mem"]["Output"],
        "fine"
    );
    assert_eq!(
        api.put("/v1/agent/check/deregister/mem", "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.put("/v1/agent/check/pass/mem", "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.put("/v1/agent/service/deregister/web1", "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.put("/v1/agent/service/deregister/web1", "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.get("/v1/catalog/service/web").await.json(), json!([]));
}

#[tokio::test]
async fn blocking_query_wakes_on_write() {
    let api = TestApi::new().await;
    let first = api.get("/v1/health/service/web").await;
    let index: u64 = first.header("x-consul-index").unwrap().parse().unwrap();
    let waiter = {
        let state = api.state.clone();
        tokio::spawn(async move {
            TestApi { state }
                .get(&format!("/v1/health/service/web?index={index}&wait=30s"))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    let started = std::time::Instant::now();
    api.put("/v1/agent/service/register", WEB).await;
    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let new_index: u64 = woken.header("x-consul-index").unwrap().parse().unwrap();
    assert!(new_index > index);
    assert_eq!(woken.json().as_array().unwrap().len(), 1);
    // A wait that runs out answers with the unchanged result.
    let timed_out = api
        .get(&format!(
            "/v1/health/service/web?index={new_index}&wait=50ms"
        ))
        .await;
    assert_eq!(
        timed_out
            .header("x-consul-index")
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        new_index
    );
}

mod fuzz {
    //! Random bodies and query strings: the router never panics, answers 2xx/4xx (or a plain-text 5xx for the
    //! documented server-side refusals), keeps serving, and a 4xx leaves every bit of state as it was.
    use super::*;
    use proptest::prelude::*;

    const WRITE_ROUTES: &[&str] = &[
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/catalog/register",
        "/v1/catalog/deregister",
        "/v1/session/create",
        "/v1/txn",
        "/v1/kv/fuzz",
        "/v1/agent/check/update/mem",
    ];

    const READ_ROUTES: &[&str] = &[
        "/v1/catalog/nodes",
        "/v1/catalog/services",
        "/v1/catalog/service/web",
        "/v1/health/service/web",
        "/v1/health/state/any",
        "/v1/kv/",
        "/v1/agent/services",
        "/v1/agent/checks",
        "/v1/session/list",
    ];

    fn json_body() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-zA-Z0-9 _:/.-]{0,12}".prop_map(Value::String),
            Just(json!("10s")),
            Just(json!("passing")),
        ];
        let keys = prop_oneof![
            Just("Name".to_string()),
            Just("name".to_string()),
            Just("ID".to_string()),
            Just("Port".to_string()),
            Just("Check".to_string()),
            Just("Checks".to_string()),
            Just("TTL".to_string()),
            Just("Status".to_string()),
            Just("Node".to_string()),
            Just("Address".to_string()),
            Just("Service".to_string()),
            Just("KV".to_string()),
            Just("Verb".to_string()),
            Just("Key".to_string()),
            Just("Weights".to_string()),
            Just("Meta".to_string()),
            Just("Tags".to_string()),
            "[a-zA-Z_]{1,8}",
        ];
        let value = leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![
            value.prop_map(|v| v.to_string()),
            ".{0,40}",
            Just(String::new())
        ]
    }

    fn query() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("index"),
            Just("wait"),
            Just("filter"),
            Just("tag"),
            Just("passing"),
            Just("recurse"),
            Just("keys"),
            Just("separator"),
            Just("stale"),
            Just("consistent"),
            Just("node-meta"),
            Just("cas"),
            Just("flags"),
            Just("acquire"),
            Just("ns"),
            Just("pretty"),
        ];
        let value = prop_oneof![
            Just(String::new()),
            "[0-9]{1,3}",
            "[a-z=! .\"()]{0,12}",
            Just("1ms".to_string())
        ];
        prop::collection::vec((name, value), 0..4).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
                    format!("{k}={v}")
                })
                .collect::<Vec<_>>()
                .join("&")
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    fn acceptable(a: &Answer) -> bool {
        a.status.is_success()
            || a.status.is_client_error()
            || (a.status.is_server_error() && !a.body.is_empty())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn random_write_bodies(route in prop::sample::select(WRITE_ROUTES), body in json_body(), q in query()) {
            let rt = runtime();
            rt.block_on(async {
                let api = TestApi::new().await;
                api.put("/v1/agent/service/register", WEB).await;
                api.put("/v1/agent/check/register", r#"{"Name":"mem","TTL":"10s"}"#).await;
                let before = api.fingerprint();
                let a = api.put(&format!("{route}?{q}"), &body).await;
                prop_assert!(acceptable(&a), "{route}?{q} {body:?} -> {} {}", a.status, a.text());
                if a.status.is_client_error() {
                    prop_assert!(before == api.fingerprint(), "{route}?{q} {body:?} changed state on {}", a.status);
                }
                prop_assert_eq!(api.get("/v1/status/leader").await.status, StatusCode::OK);
                Ok(())
            })?;
        }

        #[test]
        fn random_read_queries(route in prop::sample::select(READ_ROUTES), q in query()) {
            let rt = runtime();
            rt.block_on(async {
                let api = TestApi::new().await;
                api.put("/v1/agent/service/register", WEB).await;
                let before = api.fingerprint();
                // Blocking reads are bounded so a random `index` cannot park the test.
                let uri = format!("{route}?wait=1ms&{q}");
                let a = api.get(&uri).await;
                prop_assert!(acceptable(&a), "{uri} -> {} {}", a.status, a.text());
                prop_assert!(before == api.fingerprint());
                Ok(())
            })?;
        }
    }
}

#[tokio::test]
async fn identical_blocking_queries_share_one_slot() {
    let api = TestApi::new().await;
    let index: u64 = api
        .get("/v1/health/service/web")
        .await
        .header("x-consul-index")
        .unwrap()
        .parse()
        .unwrap();
    let mut waiters = Vec::new();
    for _ in 0..50 {
        let state = api.state.clone();
        let uri = format!("/v1/health/service/web?index={index}&wait=30s");
        waiters.push(tokio::spawn(
            async move { TestApi { state }.get(&uri).await },
        ));
    }
    let shared = api.state.shared_reads.clone();
    for _ in 0..100 {
        if !shared.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(shared.len(), 1, "fifty identical queries park on one slot");
    api.put("/v1/agent/service/register", WEB).await;
    for w in waiters {
        let a = tokio::time::timeout(std::time::Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.json().as_array().unwrap().len(), 1);
    }
    assert!(
        shared.is_empty(),
        "slots are dropped when their last waiter leaves"
    );
}

#[tokio::test]
async fn health_state_honours_node_meta() {
    let api = TestApi::new().await;
    let reg = api
        .put(
            "/v1/catalog/register",
            r#"{"Node": "meta-node", "Address": "10.0.0.9", "NodeMeta": {"env": "prod"},
                "Check": {"CheckID": "disk", "Name": "disk", "Status": "critical"}}"#,
        )
        .await;
    assert_eq!(reg.status, StatusCode::OK, "{}", reg.text());
    let all = api.get("/v1/health/state/any").await.json();
    assert!(all.as_array().unwrap().len() > 1, "{all}");
    let prod = api
        .get("/v1/health/state/any?node-meta=env:prod")
        .await
        .json();
    let nodes: Vec<&str> = prod
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["Node"].as_str())
        .collect();
    assert_eq!(nodes, vec!["meta-node"]);
    let none = api
        .get("/v1/health/state/critical?node-meta=env:prod&node-meta=zone:b")
        .await
        .json();
    assert_eq!(none, serde_json::json!([]));
}

#[tokio::test]
async fn autopilot_state_has_consuls_shape() {
    let api = TestApi::new().await;
    let state = api.get("/v1/operator/autopilot/state").await;
    assert_eq!(state.status, StatusCode::OK, "{}", state.text());
    let v = state.json();
    let leader = v["Leader"].as_str().unwrap().to_string();
    assert_eq!(v["Servers"][&leader]["Status"], "leader");
    assert_eq!(v["Servers"][&leader]["NodeType"], "voter");
    assert_eq!(v["Voters"], serde_json::json!([leader]));
    assert_eq!(v["Healthy"], true);
    assert_eq!(v["FailureTolerance"], 0);
    assert_eq!(v["OptimisticFailureTolerance"], 0);
}

#[tokio::test]
async fn agent_host_reports_this_machine() {
    let api = TestApi::new().await;
    let host = api.get("/v1/agent/host").await;
    assert_eq!(host.status, StatusCode::OK, "{}", host.text());
    let v = host.json();
    assert!(v["Memory"]["total"].as_u64().unwrap() > 0, "{v}");
    assert!(!v["CPU"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["Host"]["os"], "linux");
    assert!(v["Disk"]["total"].as_u64().unwrap() > 0, "{v}");
    assert!(v["CollectionTime"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn operator_usage_counts_services_instances_and_nodes() {
    let api = TestApi::new().await;
    let before = api.get("/v1/operator/usage").await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text());
    let dc = before.json()["Usage"]["dc1"].clone();
    let (services, instances) = (
        dc["Services"].as_u64().unwrap(),
        dc["ServiceInstances"].as_u64().unwrap(),
    );
    // A service with a sidecar: two names, two instances, one billable, one Connect proxy.
    let r = api
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"billing","Port":9000,"Connect":{"SidecarService":{}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let after = api.get("/v1/operator/usage").await.json();
    let dc = &after["Usage"]["dc1"];
    assert_eq!(dc["Services"].as_u64().unwrap(), services + 2, "{after}");
    assert_eq!(
        dc["ServiceInstances"].as_u64().unwrap(),
        instances + 2,
        "{after}"
    );
    assert_eq!(dc["ConnectServiceInstances"]["connect-proxy"], 1, "{after}");
    assert_eq!(
        dc["BillableServiceInstances"], 1,
        "consul and proxies are not billable: {after}"
    );
    assert_eq!(dc["Nodes"], 1);
    assert_eq!(after["KnownLeader"], true);
    assert_eq!(after["ConsistencyLevel"], "leader");
    assert!(after["Index"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn script_checks_are_refused_by_an_agent_that_has_not_enabled_them() {
    let api = TestApi::new().await;
    let r = api
        .put(
            "/v1/agent/check/register",
            r#"{"Name":"disk","Args":["/usr/local/bin/check-disk","-w","80"],"Interval":"10s"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        r.text()
            .contains("Scripts are disabled on this agent from remote calls"),
        "{}",
        r.text()
    );
    let checks = api.get("/v1/agent/checks").await.json();
    assert!(checks.get("disk").is_none(), "{checks}");
}

#[tokio::test]
async fn autopilot_configuration_is_read_and_replaced_with_cas() {
    let api = TestApi::new().await;
    let initial = api.get("/v1/operator/autopilot/configuration").await.json();
    assert_eq!(initial["CleanupDeadServers"], true, "{initial}");
    assert_eq!(initial["MaxTrailingLogs"], 250);
    assert_eq!(initial["ServerStabilizationTime"], "10s");
    assert_eq!(initial["ModifyIndex"], 0, "nothing written yet");
    let body = r#"{"CleanupDeadServers":false,"LastContactThreshold":"5s","MaxTrailingLogs":100,"MinQuorum":3,"ServerStabilizationTime":"30s"}"#;
    let first = api
        .put("/v1/operator/autopilot/configuration?cas=0", body)
        .await;
    assert_eq!(first.text(), "true");
    // The same CAS again loses: the settings changed since.
    let again = api
        .put("/v1/operator/autopilot/configuration?cas=0", body)
        .await;
    assert_eq!(again.text(), "false");
    let now = api.get("/v1/operator/autopilot/configuration").await.json();
    assert_eq!(now["CleanupDeadServers"], false, "{now}");
    assert_eq!(now["LastContactThreshold"], "5s");
    assert_eq!(
        (now["MaxTrailingLogs"].as_u64(), now["MinQuorum"].as_u64()),
        (Some(100), Some(3))
    );
    let index = now["ModifyIndex"].as_u64().unwrap();
    assert!(index > 0 && now["CreateIndex"] == index, "{now}");
    let next = api
        .put(
            &format!("/v1/operator/autopilot/configuration?cas={index}"),
            r#"{"CleanupDeadServers":true}"#,
        )
        .await;
    assert_eq!(next.text(), "true");
    let later = api.get("/v1/operator/autopilot/configuration").await.json();
    assert_eq!(later["CleanupDeadServers"], true);
    assert_eq!(later["CreateIndex"], index, "created once: {later}");
    for (query, body, why) in [
        ("?cas=x", "{}", "cas"),
        (
            "",
            r#"{"LastContactThreshold":"0s"}"#,
            "LastContactThreshold",
        ),
        ("", r#"{"MaxTrailingLogs":"many"}"#, "Request decode failed"),
    ] {
        let r = api
            .put(
                &format!("/v1/operator/autopilot/configuration{query}"),
                body,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{query} {body}: {}",
            r.text()
        );
        assert!(r.text().contains(why), "{}", r.text());
    }
}

#[tokio::test]
async fn ingress_gateways_are_found_by_the_services_they_carry() {
    let api = TestApi::new().await;
    let gateway = r#"{"Kind":"ingress-gateway","ID":"gw1","Name":"edge","Port":8443,
        "Proxy":{"Upstreams":[{"DestinationName":"greeter","LocalBindPort":8080},
                              {"DestinationName":"billing","LocalBindPort":8081}]},
        "Check":{"TTL":"30s","Status":"passing"}}"#;
    let r = api.put("/v1/agent/service/register", gateway).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let health = api.get("/v1/health/ingress/greeter?passing=1").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());
    let list = health.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["Service"]["ID"], "gw1");
    assert_eq!(list[0]["Service"]["Kind"], "ingress-gateway");
    assert!(
        health
            .header("x-consul-index")
            .and_then(|i| i.parse::<u64>().ok())
            > Some(0)
    );
    assert_eq!(
        api.get("/v1/health/ingress/nobody").await.json(),
        serde_json::json!([])
    );
    let carried = api.get("/v1/catalog/gateway-services/edge").await.json();
    let names: Vec<(&str, u64)> = carried
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["Service"]["Name"].as_str().unwrap(),
                g["Port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("billing", 8081), ("greeter", 8080)], "{carried}");
    assert_eq!(carried[0]["Gateway"]["Name"], "edge");
    assert_eq!(carried[0]["GatewayKind"], "ingress-gateway");
    assert_eq!(
        api.get("/v1/catalog/gateway-services/greeter").await.json(),
        serde_json::json!([])
    );
}
