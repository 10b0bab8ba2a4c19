//! Network coordinates through the whole router: updates, the lists, and `?near` sorting of catalog, health and
//! prepared query answers; and `?cached` reads, which the same local copy of the state answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tests::TestApi;
use axum::http::StatusCode;
use serde_json::{json, Value};

/// A coordinate `x` seconds from the origin along the first axis.
fn at(x: f64) -> Value {
    json!({"Vec": [x, 0, 0, 0, 0, 0, 0, 0], "Error": 0.2, "Adjustment": 0, "Height": 0.00001})
}

async fn node_with_web(api: &TestApi, node: &str, x: f64) {
    let body = json!({"Node": node, "Address": "10.0.0.1",
        "Service": {"ID": format!("web-{node}"), "Service": "web", "Port": 80}});
    assert_eq!(
        api.put("/v1/catalog/register", &body.to_string())
            .await
            .status,
        StatusCode::OK
    );
    let a = api
        .put(
            "/v1/coordinate/update",
            &json!({"Node": node, "Coord": at(x)}).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

fn order(list: &Value, path: &[&str]) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let mut v = item;
            for p in path {
                v = &v[*p];
            }
            v.as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn coordinates_are_stored_listed_and_sort_answers_near_a_node() {
    let api = TestApi::new().await;
    node_with_web(&api, "far", 0.090).await;
    node_with_web(&api, "near", 0.010).await;
    node_with_web(&api, "mid", 0.040).await;
    node_with_web(&api, "here", 0.0).await;

    let a = api.get("/v1/coordinate/node/near").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()[0]["Coord"]["Vec"][0], 0.010);
    assert_eq!(a.json()[0]["Segment"], "");
    assert!(a.header("x-consul-index").is_some());
    assert_eq!(
        api.get("/v1/coordinate/node/nobody").await.status,
        StatusCode::NOT_FOUND
    );
    let nodes = api.get("/v1/coordinate/nodes").await.json();
    assert_eq!(nodes.as_array().unwrap().len(), 4);
    let dcs = api.get("/v1/coordinate/datacenters").await.json();
    assert_eq!(dcs[0]["Datacenter"], "dc1");

    let want = ["here", "near", "mid", "far"];
    assert_eq!(
        order(
            &api.get("/v1/catalog/nodes?near=here").await.json(),
            &["Node"]
        )[..4],
        want
    );
    assert_eq!(
        order(
            &api.get("/v1/catalog/service/web?near=here").await.json(),
            &["Node"]
        ),
        want
    );
    assert_eq!(
        order(
            &api.get("/v1/health/service/web?near=here").await.json(),
            &["Node", "Node"]
        ),
        want
    );
    let far_first = ["far", "mid", "near", "here"];
    assert_eq!(
        order(
            &api.get("/v1/catalog/service/web?near=far").await.json(),
            &["Node"]
        ),
        far_first
    );
    let q = json!({"Name": "web", "Service": {"Service": "web", "Near": "far"}});
    assert_eq!(
        api.call("POST", "/v1/query", &q.to_string()).await.status,
        StatusCode::OK
    );
    for _ in 0..5 {
        let r = api.get("/v1/query/web/execute").await.json();
        assert_eq!(order(&r["Nodes"], &["Node", "Node"]), far_first);
    }

    // Refusals change nothing.
    let bad = json!({"Node": "near", "Coord": {"Vec": [1, 2], "Error": 0.1, "Adjustment": 0, "Height": 0.1}});
    let a = api.put("/v1/coordinate/update", &bad.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.text().starts_with("invalid coordinate"), "{}", a.text());
    let a = api
        .put(
            "/v1/coordinate/update",
            &json!({"Node": "nobody", "Coord": at(0.0)}).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("/v1/coordinate/node/near").await.json()[0]["Coord"]["Vec"][0],
        0.010
    );
    // A node's coordinate goes with it.
    let dereg = json!({"Node": "near"}).to_string();
    assert_eq!(
        api.put("/v1/catalog/deregister", &dereg).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.get("/v1/coordinate/node/near").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn cached_reads_say_where_they_came_from() {
    let api = TestApi::new().await;
    node_with_web(&api, "n2", 0.0).await;
    let a = api.get("/v1/health/service/web?cached").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-cache"), Some("HIT"));
    assert_eq!(a.header("age"), Some("0"));
    assert_eq!(a.json().as_array().unwrap().len(), 1);
    // Without ?cached, no cache headers; agent-local routes ignore it.
    assert_eq!(
        api.get("/v1/health/service/web").await.header("x-cache"),
        None
    );
    assert_eq!(
        api.get("/v1/agent/services?cached").await.header("x-cache"),
        None
    );
}
