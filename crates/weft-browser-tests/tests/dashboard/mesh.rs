//! A real mesh for the intention scenario: the `greeting` backend behind its sidecar
//! (`weft connect proxy -sidecar-for`), and a client proxy `-service test -upstream greeting:PORT`. A connection to
//! the client proxy's port crosses both sidecars over mutual TLS, so intentions decide it for real.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;
use weft_testkit::{eventually, weft_binary, DevAgent, Spawned};

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One plain HTTP/1.1 GET through a local port: the status code and the body.
pub fn http_get(port: u16) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n")?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!("no HTTP response: {raw:?}")
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    Ok((code, body.to_string()))
}

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

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
