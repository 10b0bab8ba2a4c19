//! What the scenarios run against: a dev agent holding services with sidecars and upstreams, checks in every state,
//! an external node, intentions of each precedence and a few KV folders.

use anyhow::Result;
use serde_json::{json, Value};
use weft_testkit::DevAgent;

pub async fn register(agent: &DevAgent, body: Value) -> Result<()> {
    agent
        .put_json("/v1/agent/service/register", &body)
        .await?
        .expect_status(200)?;
    Ok(())
}

/// Services with sidecars, upstreams, tags and checks in every state, plus an external node.
pub async fn populate(agent: &DevAgent) -> Result<()> {
    register(
        agent,
        json!({
            "ID": "web-1", "Name": "web", "Port": 8080, "Tags": ["v2", "frontend"],
            "Check": {"CheckID": "web-ttl", "Name": "web responds", "TTL": "300s", "Status": "passing",
                      "Output": "HTTP GET http://127.0.0.1:8080/health: 200 OK"},
            "Connect": {"SidecarService": {"Port": 21000, "Proxy": {"Upstreams": [
                {"DestinationName": "api", "LocalBindPort": 9191},
                {"DestinationName": "cache", "LocalBindPort": 9192}
            ]}}}
        }),
    )
    .await?;
    register(
        agent,
        json!({
            "ID": "api-1", "Name": "api", "Port": 9000, "Tags": ["v1"],
            "Check": {"CheckID": "api-ttl", "Name": "api alive", "TTL": "300s", "Status": "warning",
                      "Output": "slow: p99 900ms"},
            "Connect": {"SidecarService": {"Port": 21001, "Proxy": {"Upstreams": [
                {"DestinationName": "db", "LocalBindPort": 9300}
            ]}}}
        }),
    )
    .await?;
    register(
        agent,
        json!({
            "ID": "db-1", "Name": "db", "Port": 5432, "Tags": ["primary"],
            "Check": {"CheckID": "db-ttl", "Name": "db replication", "TTL": "300s", "Status": "critical",
                      "Output": "replica lag 45s"},
            "Connect": {"SidecarService": {"Port": 21002}}
        }),
    )
    .await?;
    register(
        agent,
        json!({"ID": "cache-1", "Name": "cache", "Port": 6379, "Tags": ["redis"]}),
    )
    .await?;
    agent
        .put_json(
            "/v1/catalog/register",
            &json!({
                "Node": "ext-billing", "Address": "10.0.4.17",
                "Service": {"ID": "billing-1", "Service": "billing", "Port": 443, "Tags": ["external"]},
                "Check": {"CheckID": "billing-http", "Name": "billing https", "Status": "passing",
                          "ServiceID": "billing-1", "Output": "200 OK"}
            }),
        )
        .await?
        .expect_status(200)?;
    for (src, dst, action) in [
        ("web", "api", "allow"),
        ("api", "db", "allow"),
        ("web", "cache", "deny"),
        ("*", "db", "deny"),
    ] {
        agent
            .put_json(
                &format!("/v1/connect/intentions/exact?source={src}&destination={dst}"),
                &json!({"Action": action, "Description": format!("{src} to {dst}")}),
            )
            .await?
            .expect_status(200)?;
    }
    for (k, v) in [
        ("config/web/feature-flags", "{\"new_checkout\": true}"),
        ("config/web/greeting", "Hello from Weft"),
        ("config/db/pool", "32"),
        ("locks/leader", ""),
    ] {
        agent
            .put(&format!("/v1/kv/{k}"), v.as_bytes().to_vec())
            .await?
            .expect_status(200)?;
    }
    Ok(())
}
