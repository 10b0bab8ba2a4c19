//! Connect across a cluster: a sidecar on one client agent reaches a service behind a sidecar on another client
//! agent, with the leaf certificates signed by the leader and intentions written through any server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result};
use serde_json::json;
use std::time::Duration;
use weft_testkit::mesh::{greeting_app, sidecar_for, upstream_proxy};
use weft_testkit::net::{free_port, http_get};
use weft_testkit::{eventually, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_on_one_agent_reaches_a_service_on_another() -> Result<()> {
    let cluster = Cluster::start(3, 2).await?;
    let (host_a, host_b) = (3, 4);
    let app_port = free_port()?;
    let _app = greeting_app(app_port, "host-a")?;
    let agent_a = cluster.agent(host_a)?;
    agent_a
        .put_json(
            "/v1/agent/service/register",
            &json!({
                "ID": "greeting-1", "Name": "greeting", "Port": app_port, "Address": "127.0.0.1",
                "Connect": {"SidecarService": {"Port": free_port()?}},
            }),
        )
        .await?
        .expect_status(200)?;
    let _sidecar = sidecar_for("greeting-1", &agent_a.addr().to_string())?;
    let upstream = free_port()?;
    let agent_b = cluster.agent(host_b)?;
    let client = upstream_proxy("test", "greeting", upstream, &agent_b.addr().to_string())?;
    // The sidecar on host A turns healthy (its listening check runs every 10 s), as seen from host B.
    eventually(Duration::from_secs(40), async || -> Result<bool> {
        let r = agent_b.get("/v1/health/connect/greeting?passing=1").await?;
        Ok(r.json()?.as_array().map(|a| a.len()) == Some(1))
    })
    .await?;
    eventually(Duration::from_secs(20), async || -> Result<bool> {
        let (code, body) = http_get(upstream)?;
        Ok(code == 200 && body.contains("host-a"))
    })
    .await
    .with_context(|| format!("client proxy:\n{}", client.output()))?;
    // A deny intention written through a server refuses the next connection, without restarting anything.
    cluster
        .agent(0)?
        .put_json(
            "/v1/connect/intentions/exact?source=test&destination=greeting",
            &json!({"Action": "deny"}),
        )
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(15), async || -> Result<bool> {
        Ok(http_get(upstream)
            .map(|(code, _)| code != 200)
            .unwrap_or(true))
    })
    .await?;
    Ok(())
}
