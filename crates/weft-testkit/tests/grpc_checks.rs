//! gRPC health checks against a real gRPC server (Python's grpcio with its standard health service): SERVING is
//! passing (the server as a whole, or one service); NOT_SERVING, a service the server does not know and a port
//! nobody listens on are critical, each saying why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use weft_testkit::net::free_port;
use weft_testkit::{eventually, DevAgent, Spawned};

const HEALTH_SERVER: &str = r#"
import sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
servicer.set("db", health_pb2.HealthCheckResponse.SERVING)
servicer.set("cache", health_pb2.HealthCheckResponse.NOT_SERVING)
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
server.add_insecure_port("127.0.0.1:" + sys.argv[1])
server.start()
print("serving", flush=True)
server.wait_for_termination()
"#;

/// Registers check `id` from `body`, probing every second with a 2 s timeout.
async fn register(agent: &DevAgent, id: &str, mut body: Value) -> Result<()> {
    body["ID"] = json!(id);
    body["Name"] = json!(id);
    body["Interval"] = json!("1s");
    body["Timeout"] = json!("2s");
    agent
        .put_json("/v1/agent/check/register", &body)
        .await?
        .expect_status(200)?;
    Ok(())
}

async fn check(agent: &DevAgent, id: &str) -> Result<Value> {
    let checks = agent.get("/v1/agent/checks").await?.json()?;
    Ok(checks[id].clone())
}

#[tokio::test]
async fn grpc_checks_follow_the_standard_health_service() -> Result<()> {
    let port = free_port()?;
    let server = Spawned::start(
        Path::new("python3"),
        &[
            "-c".to_string(),
            HEALTH_SERVER.to_string(),
            port.to_string(),
        ],
    )?;
    eventually(Duration::from_secs(20), async || {
        server.output().contains("serving")
    })
    .await
    .with_context(|| {
        format!(
            "the Python gRPC server did not start (pip install grpcio grpcio-health-checking):\n{}",
            server.output()
        )
    })?;
    let agent = DevAgent::start()?;
    let closed = free_port()?;
    for (id, target) in [
        ("whole", format!("127.0.0.1:{port}")),
        ("db", format!("127.0.0.1:{port}/db")),
        ("cache", format!("127.0.0.1:{port}/cache")),
        ("nope", format!("127.0.0.1:{port}/nope")),
        ("closed", format!("127.0.0.1:{closed}/db")),
    ] {
        agent
            .put_json(
                "/v1/agent/check/register",
                &json!({"ID": id, "Name": id, "GRPC": target, "Interval": "1s", "Timeout": "2s"}),
            )
            .await?
            .expect_status(200)?;
    }
    // H2PING against the same HTTP/2 server: in the clear it answers; over TLS (the default) it cannot.
    for (id, body) in [
        (
            "ping",
            json!({"H2PING": format!("127.0.0.1:{port}"), "H2PingUseTLS": false}),
        ),
        ("ping-tls", json!({"H2PING": format!("127.0.0.1:{port}")})),
        (
            "ping-closed",
            json!({"H2PING": format!("127.0.0.1:{closed}"), "H2PingUseTLS": false}),
        ),
    ] {
        register(&agent, id, body).await?;
    }
    for (id, status, says) in [
        ("ping", "passing", "HTTP2 ping was successful"),
        ("ping-tls", "critical", "HTTP2 ping to"),
        ("ping-closed", "critical", "HTTP2 ping to"),
        ("whole", "passing", "success"),
        ("db", "passing", "success"),
        ("cache", "critical", "NOT_SERVING"),
        ("nope", "critical", "does not know"),
        ("closed", "critical", "gRPC check"),
    ] {
        let c = eventually(
            Duration::from_secs(15),
            async || -> Result<Option<Value>> {
                let c = check(&agent, id).await?;
                let ok =
                    c["Status"] == status && c["Output"].as_str().is_some_and(|o| o.contains(says));
                if ok {
                    Ok(Some(c))
                } else {
                    anyhow::bail!("{c}")
                }
            },
        )
        .await
        .with_context(|| id.to_string())?;
        let kind = if id.starts_with("ping") {
            "h2ping"
        } else {
            "grpc"
        };
        assert_eq!(c["Type"], kind, "{c}");
    }
    Ok(())
}

/// The same health server over TLS, with a certificate made by `weft tls` (from a CA the host does not trust).
const TLS_HEALTH_SERVER: &str = r#"
import sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
key = open(sys.argv[2], "rb").read()
cert = open(sys.argv[3], "rb").read()
server.add_secure_port("127.0.0.1:" + sys.argv[1], grpc.ssl_server_credentials([(key, cert)]))
server.start()
print("serving", flush=True)
server.wait_for_termination()
"#;

#[tokio::test]
async fn grpc_and_h2ping_checks_speak_tls() -> Result<()> {
    let dir = weft_testkit::TempDir::new()?;
    let d = dir.path().display().to_string();
    weft_testkit::cli::make_tls_certs(dir.path(), &["-server"])?;
    let port = free_port()?;
    let server = Spawned::start(
        Path::new("python3"),
        &[
            "-c".to_string(),
            TLS_HEALTH_SERVER.to_string(),
            port.to_string(),
            format!("{d}/dc1-server-weft-0-key.pem"),
            format!("{d}/dc1-server-weft-0.pem"),
        ],
    )?;
    eventually(Duration::from_secs(20), async || {
        server.output().contains("serving")
    })
    .await
    .with_context(|| format!("the TLS gRPC server did not start:\n{}", server.output()))?;
    let agent = DevAgent::start()?;
    let target = format!("127.0.0.1:{port}");
    for (id, body) in [
        (
            "grpc-tls",
            json!({"GRPC": target, "GRPCUseTLS": true, "TLSSkipVerify": true}),
        ),
        (
            "grpc-untrusted",
            json!({"GRPC": target, "GRPCUseTLS": true}),
        ),
        ("ping-tls", json!({"H2PING": target, "TLSSkipVerify": true})),
        ("grpc-plain", json!({"GRPC": target})),
    ] {
        register(&agent, id, body).await?;
    }
    // Skip-verify trusts any certificate; without it, one from an unknown CA fails; plaintext to a TLS port fails.
    for (id, status) in [
        ("grpc-tls", "passing"),
        ("ping-tls", "passing"),
        ("grpc-untrusted", "critical"),
        ("grpc-plain", "critical"),
    ] {
        eventually(Duration::from_secs(15), async || -> Result<()> {
            let c = check(&agent, id).await?;
            anyhow::ensure!(c["Status"] == status, "{c}");
            Ok(())
        })
        .await
        .with_context(|| id.to_string())?;
    }
    Ok(())
}
