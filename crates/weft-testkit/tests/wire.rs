//! Cross-cutting wire format (spec §0.3, §0.5, §0.7, §0.9): the headers every answer and every read carries,
//! `?pretty`, the consistency modes, and Consul's body conventions (empty agent writes, `true`/`false`, `[]`/`{}`
//! never `null`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use serde_json::json;
use weft_testkit::DevAgent;

#[tokio::test]
async fn every_answer_carries_the_default_acl_policy_header() -> Result<()> {
    let agent = DevAgent::start()?;
    let answers = [
        agent.get("/v1/agent/self").await?,
        agent.get("/v1/kv/missing").await?,
        agent.put("/v1/kv/k", "v").await?,
        agent.get("/v1/nope").await?,
        agent.delete("/v1/agent/self").await?,
        agent.get("/v1/catalog/nodes?index=x").await?,
        agent
            .put_empty("/v1/agent/maintenance?enable=false")
            .await?,
    ];
    for resp in &answers {
        assert_eq!(
            resp.header("x-consul-default-acl-policy"),
            Some("allow"),
            "{resp:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn reads_carry_query_meta_and_echo_the_consistency_mode() -> Result<()> {
    let agent = DevAgent::start()?;
    for (query, mode) in [
        ("", "leader"),
        ("?stale", "stale"),
        ("?stale=", "stale"),
        ("?consistent", "consistent"),
    ] {
        for path in [
            "/v1/catalog/nodes",
            "/v1/health/service/consul",
            "/v1/session/list",
            "/v1/catalog/services",
        ] {
            let resp = agent.get(&format!("{path}{query}")).await?;
            assert_eq!(resp.status, 200, "{path}{query}");
            assert!(
                resp.index()? >= 1,
                "{path}{query}: X-Consul-Index is never 0"
            );
            assert_eq!(
                resp.header("x-consul-knownleader"),
                Some("true"),
                "{path}{query}"
            );
            assert_eq!(
                resp.header("x-consul-lastcontact"),
                Some("0"),
                "{path}{query}"
            );
            assert_eq!(
                resp.header("x-consul-effective-consistency"),
                Some(mode),
                "{path}{query}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn consul_body_conventions() -> Result<()> {
    let agent = DevAgent::start()?;
    // Agent writes: 200, empty body, no content type.
    let resp = agent
        .put_json("/v1/agent/service/register", &json!({"Name": "plain"}))
        .await?;
    assert_eq!((resp.status, resp.body.len()), (200, 0));
    assert_eq!(resp.header("content-type"), None);
    // Bool answers are exactly `true` / `false`.
    let resp = agent.put("/v1/kv/b", "1").await?;
    assert_eq!(resp.body, b"true");
    let resp = agent.put("/v1/kv/b?cas=1", "2").await?;
    assert_eq!(resp.body, b"false");
    let resp = agent
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "ext", "Address": "10.0.0.9"}),
        )
        .await?;
    assert_eq!(resp.body, b"true");
    // Lists and maps are never null; the agent's Tags/Meta are [] / {}.
    assert_eq!(
        agent.get("/v1/catalog/service/none").await?.json()?,
        json!([])
    );
    assert_eq!(
        agent.get("/v1/health/checks/none").await?.json()?,
        json!([])
    );
    assert_eq!(agent.get("/v1/session/list").await?.json()?, json!([]));
    assert_eq!(agent.get("/v1/health/node/ext").await?.json()?, json!([]));
    let svc = agent.get("/v1/agent/service/plain").await?.json()?;
    assert_eq!(svc["Tags"], json!([]));
    assert_eq!(svc["Meta"], json!({}));
    assert_eq!(svc["Weights"], json!({"Passing": 1, "Warning": 1}));
    // An unknown node is a typed nil: 200 `null`.
    let resp = agent.get("/v1/catalog/node/nobody").await?;
    assert_eq!((resp.status, resp.text().as_str()), (200, "null"));
    Ok(())
}

#[tokio::test]
async fn pretty_answers_are_minified_by_default() -> Result<()> {
    let agent = DevAgent::start()?;
    let resp = agent.get("/v1/catalog/datacenters").await?;
    assert_eq!(resp.text(), r#"["dc1"]"#);
    let resp = agent.get("/v1/agent/services").await?;
    assert_eq!(resp.text(), "{}");
    Ok(())
}

#[tokio::test]

async fn pretty_indents_like_go_marshal_indent() -> Result<()> {
    let agent = DevAgent::start()?;
    let resp = agent.get("/v1/catalog/datacenters?pretty").await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "[\n    \"dc1\"\n]\n");
    agent.put("/v1/kv/p", "v").await?.expect_status(200)?;
    let resp = agent.get("/v1/kv/p?pretty").await?;
    assert!(
        resp.text()
            .starts_with("[\n    {\n        \"LockIndex\": 0,\n"),
        "{:?}",
        resp.text()
    );
    Ok(())
}
