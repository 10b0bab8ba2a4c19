//! Consul's error answers over the wire: plain-text bodies with exact status codes for malformed bodies, unknown
//! routes, wrong methods, bad query parameters, foreign datacenters and Enterprise-only namespaces; and the agent
//! still serving after all of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use weft_testkit::DevAgent;

fn is_plain_text(resp: &weft_testkit::Response) -> bool {
    resp.header("content-type")
        .is_some_and(|c| c.starts_with("text/plain"))
}

#[tokio::test]
async fn malformed_json_bodies_are_400_request_decode_failed() -> Result<()> {
    let agent = DevAgent::start()?;
    for path in [
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/catalog/register",
        "/v1/session/create",
    ] {
        let resp = agent.put(path, r#"{"Name": "web", "Port": "#).await?;
        assert_eq!(resp.status, 400, "{path}: {}", resp.text());
        assert!(
            resp.text().starts_with("Request decode failed: "),
            "{path}: {:?}",
            resp.text()
        );
        assert!(
            is_plain_text(&resp),
            "{path}: {:?}",
            resp.header("content-type")
        );
    }
    // Well-formed JSON of the wrong shape is a decode failure too.
    let resp = agent
        .put(
            "/v1/agent/service/register",
            r#"{"Name": "web", "Port": "not a number"}"#,
        )
        .await?;
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().starts_with("Request decode failed: "),
        "{:?}",
        resp.text()
    );
    // An empty body where one is required.
    let resp = agent.put_empty("/v1/agent/service/register").await?;
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().starts_with("Request decode failed: "),
        "{:?}",
        resp.text()
    );
    // Valid JSON, but no name.
    let resp = agent
        .put("/v1/agent/service/register", r#"{"Port": 80}"#)
        .await?;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.text(), "Missing service name");
    Ok(())
}

#[tokio::test]
async fn unknown_routes_are_404_with_consuls_text() -> Result<()> {
    let agent = DevAgent::start()?;
    let resp = agent.get("/v1/no/such/endpoint").await?;
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.text(),
        "Invalid URL path: not a recognized HTTP API endpoint\n"
    );
    let resp = agent.get("/v2/kv/x").await?;
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.text(),
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
    );
    Ok(())
}

#[tokio::test]
async fn wrong_methods_are_405_with_an_allow_header() -> Result<()> {
    let agent = DevAgent::start()?;
    let resp = agent.delete("/v1/agent/services").await?;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.text(), "method DELETE not allowed");
    assert_eq!(resp.header("allow"), Some("OPTIONS,GET"));

    let resp = agent
        .request("POST", "/v1/kv/x", Some(b"v".to_vec()))
        .await?;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.text(), "method POST not allowed");
    assert_eq!(resp.header("allow"), Some("OPTIONS,GET,PUT,DELETE"));

    // The exact route wins over the `/v1/agent/service/` prefix (Go's ServeMux): a GET is the wrong method.
    let resp = agent.get("/v1/agent/service/register").await?;
    assert_eq!(resp.status, 405, "{}", resp.text());
    assert_eq!(resp.header("allow"), Some("OPTIONS,PUT"));
    let resp = agent.get("/v1/session/create").await?;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("OPTIONS,PUT"));

    let resp = agent.request("OPTIONS", "/v1/catalog/nodes", None).await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("allow"), Some("OPTIONS,GET"));
    assert!(resp.body.is_empty());
    Ok(())
}

#[tokio::test]
async fn bad_query_parameters_are_400() -> Result<()> {
    let agent = DevAgent::start()?;
    let cases: &[(&str, &str)] = &[
        ("/v1/catalog/nodes?index=abc", "Invalid index"),
        ("/v1/kv/x?index=-1", "Invalid index"),
        ("/v1/health/service/x?wait=xyz", "Invalid wait time"),
        (
            "/v1/catalog/services?index=5&wait=soon",
            "Invalid wait time",
        ),
        (
            "/v1/health/service/x?passing=maybe",
            "Invalid value for ?passing",
        ),
        (
            "/v1/catalog/nodes?stale&consistent",
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
    ];
    for (path, want) in cases {
        let resp = agent.get(path).await?;
        assert_eq!(resp.status, 400, "{path}: {}", resp.text());
        assert_eq!(resp.text(), *want, "{path}");
        assert!(is_plain_text(&resp), "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn bad_filter_expressions_are_400() -> Result<()> {
    let agent = DevAgent::start()?;
    for path in [
        "/v1/agent/services?filter=Service%20%3D%3D",
        "/v1/catalog/nodes?filter=%28Node%20%3D%3D%20%22a%22",
        "/v1/health/service/consul?filter=Service.Port%20%3E%3E%3E%201",
    ] {
        let resp = agent.get(path).await?;
        assert_eq!(resp.status, 400, "{path}: {}", resp.text());
        assert!(!resp.text().is_empty());
    }
    // A good filter works.
    let resp = agent
        .get("/v1/catalog/nodes?filter=Node%20%3D%3D%20%22nobody%22")
        .await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()?, serde_json::json!([]));
    Ok(())
}

#[tokio::test]
async fn foreign_datacenter_and_namespace_are_refused() -> Result<()> {
    let agent = DevAgent::start()?;
    for path in [
        "/v1/catalog/nodes?dc=other",
        "/v1/kv/x?dc=other",
        "/v1/health/service/consul?dc=other",
    ] {
        let resp = agent.get(path).await?;
        assert_eq!(resp.status, 500, "{path}");
        assert_eq!(resp.text(), "No path to datacenter", "{path}");
    }
    let resp = agent.put("/v1/kv/x?dc=other", "v").await?;
    assert_eq!(resp.status, 500);
    assert_eq!(
        agent.get("/v1/kv/x").await?.status,
        404,
        "the refused write landed"
    );
    // The agent's own datacenter is fine.
    assert_eq!(agent.get("/v1/catalog/nodes?dc=dc1").await?.status, 200);

    let resp = agent.get("/v1/kv/x?ns=foo").await?;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.text(),
        "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature"
    );
    let resp = agent.get("/v1/catalog/services?ns=team-a").await?;
    assert_eq!(resp.status, 400);
    assert_eq!(
        agent.get("/v1/catalog/services?ns=default").await?.status,
        200
    );
    Ok(())
}

#[tokio::test]
async fn the_agent_keeps_serving_after_a_burst_of_bad_requests() -> Result<()> {
    let agent = DevAgent::start()?;
    for i in 0..50 {
        let _ = agent
            .put("/v1/agent/service/register", format!("{{{i}"))
            .await?;
        let _ = agent.get(&format!("/v1/kv/k{i}?index=zz")).await?;
        let _ = agent.request("PATCH", "/v1/kv/x", None).await?;
        let _ = agent.get("/v1/catalog/service/%FF%FE").await?;
        let _ = agent.get("/v1/kv/a%0Ab").await?;
    }
    let resp = agent.get("/v1/status/leader").await?;
    assert_eq!(resp.status, 200);
    let leader: String = serde_json::from_slice(&resp.body)?;
    assert!(leader.ends_with(":8300"), "{leader}");
    let resp = agent.put("/v1/kv/still/alive", "yes").await?;
    assert_eq!(resp.text(), "true");
    let resp = agent.get("/v1/kv/a%0Ab").await?;
    assert_eq!(resp.status, 400, "unprintable path: {}", resp.text());
    Ok(())
}
