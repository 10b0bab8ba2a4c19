//! A real mesh for the intention scenario: the `greeting` backend behind its sidecar
//! (`weft connect proxy -sidecar-for`), and a client proxy `-service test -upstream greeting:PORT`. A connection to
//! the client proxy's port crosses both sidecars over mutual TLS, so intentions decide it for real.

use anyhow::{Context, Result};
use serde_json::json;
use std::time::Duration;
use weft_testkit::mesh::{greeting_app, sidecar_for, upstream_proxy};
use weft_testkit::net::free_port;
pub use weft_testkit::net::http_get;
use weft_testkit::{eventually, DevAgent, Spawned};

pub struct Mesh {
    pub app: Spawned,
    pub sidecar: Spawned,
    pub client: Spawned,
    /// The client proxy's local port for `greeting`.
    pub upstream_port: u16,
}

impl Mesh {
    /// Starts the backend, its sidecar and the client proxy, and waits until the sidecar is healthy.
    pub async fn start(agent: &DevAgent) -> Result<Mesh> {
        let http = agent.addr().to_string();
        let app_port = free_port()?;
        let app = greeting_app(app_port, "inst-a")?;
        let reg = json!({
            "ID": "greeting-a", "Name": "greeting", "Port": app_port, "Address": "127.0.0.1",
            "Check": {"HTTP": format!("http://127.0.0.1:{app_port}/"), "Interval": "1s"},
            "Connect": {"SidecarService": {"Port": free_port()?}},
        });
        agent
            .put_json("/v1/agent/service/register", &reg)
            .await?
            .expect_status(200)?;
        let sidecar = sidecar_for("greeting-a", &http)?;
        let upstream_port = free_port()?;
        let client = upstream_proxy("test", "greeting", upstream_port, &http)?;
        // The sidecar turns healthy when its listening check (every 10 s) first sees it.
        eventually(Duration::from_secs(40), async || -> Result<bool> {
            let r = agent.get("/v1/health/connect/greeting?passing=1").await?;
            Ok(r.json()?.as_array().map(|a| a.len()) == Some(1))
        })
        .await
        .with_context(|| format!("the sidecar never became healthy:\n{}", sidecar.output()))?;
        Ok(Mesh {
            app,
            sidecar,
            client,
            upstream_port,
        })
    }

    /// Everything the processes printed, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- app\n{}\n--- sidecar\n{}\n--- client\n{}",
            self.app.output(),
            self.sidecar.output(),
            self.client.output()
        )
    }
}
