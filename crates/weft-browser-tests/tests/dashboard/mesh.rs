//! A real mesh for the intention scenario: the `greeting` backend behind its sidecar
//! (`weft connect proxy -sidecar-for`), and a client proxy `-service test -upstream greeting:PORT`. A connection to
//! the client proxy's port crosses both sidecars over mutual TLS, so intentions decide it for real.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::time::Duration;
pub use weft_testkit::net::http_get;
use weft_testkit::net::{free_port, strings as s};
use weft_testkit::{eventually, weft_binary, DevAgent, Spawned};

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
        let weft = weft_binary()?;
        let greeter = weft.with_file_name("greeter-demo");
        if !greeter.is_file() {
            bail!("build greeter-demo first: cargo build -p greeter-demo");
        }
        let http = agent.addr().to_string();
        let app_port = free_port()?;
        let app = Spawned::start(
            &greeter,
            &s(&[
                "greeting",
                "-listen",
                &format!("127.0.0.1:{app_port}"),
                "-node",
                "inst-a",
            ]),
        )?;
        let reg = json!({
            "ID": "greeting-a", "Name": "greeting", "Port": app_port, "Address": "127.0.0.1",
            "Check": {"HTTP": format!("http://127.0.0.1:{app_port}/"), "Interval": "1s"},
            "Connect": {"SidecarService": {"Port": free_port()?}},
        });
        agent
            .put_json("/v1/agent/service/register", &reg)
            .await?
            .expect_status(200)?;
        let sidecar = Spawned::start(
            &weft,
            &s(&[
                "connect",
                "proxy",
                "-sidecar-for",
                "greeting-a",
                "-http-addr",
                &http,
            ]),
        )?;
        let upstream_port = free_port()?;
        let client = Spawned::start(
            &weft,
            &s(&[
                "connect",
                "proxy",
                "-service",
                "test",
                "-upstream",
                &format!("greeting:{upstream_port}"),
                "-http-addr",
                &http,
            ]),
        )?;
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
