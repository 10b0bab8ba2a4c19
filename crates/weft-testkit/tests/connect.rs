//! Connect end to end with real processes: a dev agent, two instances of a backend each behind
//! `weft connect proxy -sidecar-for`, and a client proxy `-service test -upstream greeting:PORT`. Traffic spreads,
//! survives an instance dying, obeys intentions without restarts, keeps flowing through a CA root rotation, and
//! keeps an open connection across a real certificate renewal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use weft_testkit::binary::{executable_of, sidecar_binary, weft_binary};
use weft_testkit::mesh::{greeting_app, refusals, sidecar_for_with, upstream_proxy};
use weft_testkit::net::strings;
use weft_testkit::net::{free_port, http_get, parse_response};
use weft_testkit::{eventually, DevAgent, Spawned, TempDir};

struct Mesh {
    agent: DevAgent,
    apps: Vec<Spawned>,
    sidecars: Vec<Spawned>,
    /// Each sidecar's `-metrics-addr` port.
    metrics: Vec<u16>,
    client: Spawned,
    upstream_port: u16,
    _dir: TempDir,
}

async fn mesh(extra_config: serde_json::Value) -> Result<Mesh> {
    let dir = TempDir::new()?;
    let mut config = json!({"connect": {"leaf_root_change_jitter": "1s"}});
    if let (Some(base), Some(extra)) = (config.as_object_mut(), extra_config.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    let file = dir.write("agent.json", config.to_string())?;
    let agent = DevAgent::builder().config_file(file).start()?;
    let http = agent.addr().to_string();
    let mut apps = Vec::new();
    let mut sidecars = Vec::new();
    let mut metrics = Vec::new();
    for instance in ["a", "b"] {
        let app_port = free_port()?;
        apps.push(greeting_app(app_port, &format!("inst-{instance}"))?);
        let reg = json!({
            "ID": format!("greeting-{instance}"), "Name": "greeting", "Port": app_port, "Address": "127.0.0.1",
            "Check": {"HTTP": format!("http://127.0.0.1:{app_port}/"), "Interval": "1s"},
            "Connect": {"SidecarService": {"Port": free_port()?}},
        });
        agent
            .put_json("/v1/agent/service/register", &reg)
            .await?
            .expect_status(200)?;
        let metrics_port = free_port()?;
        sidecars.push(sidecar_for_with(
            &format!("greeting-{instance}"),
            &http,
            &["-metrics-addr", &format!("127.0.0.1:{metrics_port}")],
        )?);
        metrics.push(metrics_port);
    }
    let upstream_port = free_port()?;
    let client = upstream_proxy("test", "greeting", upstream_port, &http)?;
    // Sidecars turn healthy when their listening check (every 10 s) first sees them. The bound is generous: with
    // the whole suite running beside it on two cores (compose, browser and partition tests), 40 s once ran out.
    eventually(Duration::from_secs(90), async || -> Result<bool> {
        let r = agent.get("/v1/health/connect/greeting?passing=1").await?;
        Ok(r.json()?.as_array().map(|a| a.len()) == Some(2))
    })
    .await
    .with_context(|| {
        format!(
            "sidecars never became healthy; agent:\n{}",
            agent.recent_output()
        )
    })?;
    Ok(Mesh {
        agent,
        apps,
        sidecars,
        metrics,
        client,
        upstream_port,
        _dir: dir,
    })
}

impl Mesh {
    fn diagnostics(&self) -> String {
        let mut out = format!("client proxy:\n{}\n", self.client.output());
        for (i, s) in self.sidecars.iter().enumerate() {
            out.push_str(&format!("sidecar {i}:\n{}\n", s.output()));
        }
        out
    }

    /// Which instances answered `n` calls (all must succeed).
    fn instances(&self, n: usize) -> Result<HashSet<String>> {
        let mut seen = HashSet::new();
        for _ in 0..n {
            let (code, body) = http_get(self.upstream_port).with_context(|| self.diagnostics())?;
            if code != 200 {
                bail!("call answered {code}: {body}\n{}", self.diagnostics());
            }
            let node = body
                .trim()
                .rsplit('(')
                .next()
                .unwrap_or("")
                .trim_end_matches(')')
                .to_string();
            seen.insert(node);
        }
        Ok(seen)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_spreads_fails_over_and_obeys_intentions() -> Result<()> {
    let mut m = mesh(json!({})).await?;
    let seen = tokio::task::block_in_place(|| m.instances(20))?;
    assert_eq!(
        seen,
        HashSet::from(["inst-a".to_string(), "inst-b".to_string()]),
        "load spreads over both"
    );
    // New connections rode pooled tunnels (a stream each, no TLS handshake of their own), and each stream was let
    // in by the intention check.
    let streams: u64 = m
        .metrics
        .iter()
        .map(|port| counter(*port, "weft_proxy_inbound_tunnel_streams_total"))
        .sum::<Result<u64>>()?;
    assert_eq!(streams, 20, "{}", m.diagnostics());
    // `weft connect proxy` handed over to the small weft-sidecar executable beside weft (same process).
    let sidecar = sidecar_binary()?;
    for p in m.sidecars.iter().chain([&m.client]) {
        assert_eq!(executable_of(p.pid())?, sidecar, "{}", p.output());
    }

    // A deny intention refuses new connections, with the reason in the answer; no restart needed.
    let deny = json!({"SourceType": "consul", "Action": "deny"});
    m.agent
        .put_json(
            "/v1/connect/intentions/exact?source=test&destination=greeting",
            &deny,
        )
        .await?
        .expect_status(200)?;
    let port = m.upstream_port;
    eventually(Duration::from_secs(10), async || -> Result<bool> {
        let (code, body) = tokio::task::block_in_place(|| http_get(port))?;
        Ok(code == 503 && body.contains("greeting: refused by intention"))
    })
    .await
    .with_context(|| m.diagnostics())?;
    assert!(
        m.sidecars
            .iter()
            .any(|s| s.output().contains("intention_deny")),
        "the refusal is logged with its reason"
    );
    let (denied, untrusted) = tokio::task::block_in_place(|| -> Result<(u64, u64)> {
        let denied = m
            .metrics
            .iter()
            .map(|port| refusals(*port, "intention_deny"))
            .sum::<Result<u64>>()?;
        Ok((denied, refusals(m.metrics[0], "untrusted_chain")?))
    })?;
    assert!(
        denied >= 1,
        "the refusal is counted in the sidecars' metrics"
    );
    assert_eq!(untrusted, 0, "nothing else is counted");
    // An allow restores it.
    let allow = json!({"SourceType": "consul", "Action": "allow"});
    m.agent
        .put_json(
            "/v1/connect/intentions/exact?source=test&destination=greeting",
            &allow,
        )
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(10), async || -> Result<bool> {
        Ok(tokio::task::block_in_place(|| http_get(port))?.0 == 200)
    })
    .await?;

    // Kill instance a's application: its check fails, and every later call lands on b.
    drop(m.apps.remove(0));
    eventually(Duration::from_secs(15), async || -> Result<bool> {
        let r = m.agent.get("/v1/health/connect/greeting?passing=1").await?;
        Ok(r.json()?.as_array().map(|a| a.len()) == Some(1))
    })
    .await?;
    let seen = tokio::task::block_in_place(|| m.instances(20))?;
    assert_eq!(seen, HashSet::from(["inst-b".to_string()]));

    // Kill b's sidecar (a's app is gone too): the client proxy answers with a clear 503, not a hang.
    drop(m.sidecars.remove(1));
    let (code, body) =
        tokio::task::block_in_place(|| http_get(port)).with_context(|| m.diagnostics())?;
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("greeting: "), "{body}");

    // SIGTERM drains and exits.
    let status = m.client.terminate()?;
    assert!(
        status.success(),
        "client proxy exit: {status:?}\n{}",
        m.client.output()
    );
    Ok(())
}

/// A `weft` without `weft-sidecar` beside it runs the proxy itself, with the same behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_weft_binary_runs_the_proxy_itself() -> Result<()> {
    let m = mesh(json!({})).await?;
    let alone = TempDir::new()?;
    let weft = alone.path().join("weft");
    if std::fs::hard_link(weft_binary()?, &weft).is_err() {
        std::fs::copy(weft_binary()?, &weft)?;
    }
    let port = free_port()?;
    let upstream = format!("greeting:{port}");
    let http = m.agent.addr().to_string();
    let proxy = Spawned::start(
        &weft,
        &strings(&[
            "connect",
            "proxy",
            "-service",
            "test",
            "-upstream",
            &upstream,
            "-http-addr",
            &http,
        ]),
    )?;
    eventually(Duration::from_secs(20), async || {
        tokio::task::block_in_place(|| http_get(port)).is_ok_and(|(code, _)| code == 200)
    })
    .await
    .with_context(|| proxy.output())?;
    assert_eq!(executable_of(proxy.pid())?, weft, "{}", proxy.output());
    let mut proxy = proxy;
    assert!(proxy.terminate()?.success(), "{}", proxy.output());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_keeps_traffic_flowing() -> Result<()> {
    let m = mesh(json!({})).await?;
    let before = m.agent.get("/v1/connect/ca/roots").await?.json()?;
    let old_root = before["ActiveRootID"].as_str().unwrap().to_string();
    let config =
        json!({"Provider": "consul", "Config": {"PrivateKeyType": "ec", "PrivateKeyBits": 384}});
    m.agent
        .put_json("/v1/connect/ca/configuration", &config)
        .await?
        .expect_status(200)?;
    let after = m.agent.get("/v1/connect/ca/roots").await?.json()?;
    assert_ne!(after["ActiveRootID"].as_str().unwrap(), old_root);
    assert_eq!(
        after["Roots"].as_array().unwrap().len(),
        2,
        "the old root stays trusted during the change"
    );
    // Calls keep succeeding throughout, while every proxy moves to a leaf from the new root (within the jitter).
    let new_key = after["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Active"] == true)
        .unwrap()["SigningKeyID"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..30 {
        let (code, body) = tokio::task::block_in_place(|| http_get(m.upstream_port))?;
        assert_eq!(code, 200, "{body}\n{}", m.diagnostics());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leaf = m
        .agent
        .get("/v1/agent/connect/ca/leaf/greeting")
        .await?
        .json()?;
    let pem = leaf["CertPEM"].as_str().unwrap();
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "new leaves carry the cross-signed root"
    );
    assert!(
        m.sidecars
            .iter()
            .all(|s| s.output().matches("TLS identity loaded").count() >= 2),
        "{}",
        m.diagnostics()
    );
    let _ = new_key;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_leaves_renew_without_dropping_connections() -> Result<()> {
    let m = mesh(
        json!({"connect": {"leaf_root_change_jitter": "1s", "ca_config": {"leaf_cert_ttl": "4s"}}}),
    )
    .await?;
    // Open one keep-alive connection through the mesh and use it.
    let mut stream = TcpStream::connect(("127.0.0.1", m.upstream_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = b"GET / HTTP/1.1\r\nHost: mesh\r\n\r\n";
    let read_one = |stream: &mut TcpStream| -> Result<u16> {
        stream.write_all(request)?;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf)?;
        Ok(parse_response(&String::from_utf8_lossy(&buf[..n]))?.0)
    };
    assert_eq!(read_one(&mut stream)?, 200);
    let loads = |m: &Mesh| m.client.output().matches("TLS identity loaded").count();
    let before = loads(&m);
    // A 4 s leaf renews at 60-90 % of its life: the proxies load new certificates without a restart.
    eventually(Duration::from_secs(15), async || loads(&m) > before)
        .await
        .with_context(|| m.diagnostics())?;
    eventually(Duration::from_secs(15), async || loads(&m) > before + 1)
        .await
        .with_context(|| m.diagnostics())?;
    // The connection opened before the renewals still works, and new connections use the new certificates.
    assert_eq!(read_one(&mut stream)?, 200);
    let (code, _) = tokio::task::block_in_place(|| http_get(m.upstream_port))?;
    assert_eq!(code, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_plaintext_and_keeps_serving_without_the_agent() -> Result<()> {
    let m = mesh(json!({})).await?;
    // Plaintext HTTP to a sidecar's public port gets no answer from the application.
    let sidecar = m
        .agent
        .get("/v1/agent/service/greeting-a-sidecar-proxy")
        .await?
        .json()?;
    let public_port = sidecar["Port"].as_u64().context("sidecar port")? as u16;
    let raw = tokio::task::block_in_place(|| -> Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", public_port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Ok(buf)
    })?;
    assert!(
        !String::from_utf8_lossy(&raw).contains("HTTP/1.1 200"),
        "plaintext must not reach the app"
    );
    eventually(Duration::from_secs(5), async || {
        m.sidecars[0].output().contains("handshake_failed")
    })
    .await?;
    let counted = tokio::task::block_in_place(|| refusals(m.metrics[0], "handshake_failed"))?;
    assert!(counted >= 1, "the plaintext attempt is counted: {counted}");

    // Fail-static: with the agent gone, the proxies keep serving from what they last knew.
    let Mesh {
        agent,
        apps: _apps,
        sidecars,
        client,
        upstream_port,
        _dir,
        ..
    } = m;
    drop(agent);
    for _ in 0..10 {
        let (code, body) = tokio::task::block_in_place(|| http_get(upstream_port))?;
        assert_eq!(code, 200, "{body}\n{}", client.output());
    }
    assert!(
        client.output().contains("keeping the last known state"),
        "{}",
        client.output()
    );
    drop(sidecars);
    Ok(())
}

/// A proxy's unlabelled-by-reason counter `name` from its `-metrics-addr` endpoint.
fn counter(metrics_port: u16, name: &str) -> Result<u64> {
    let (code, body) = weft_testkit::net::http_get_path(metrics_port, "/metrics")?;
    anyhow::ensure!(code == 200, "GET /metrics: {code} {body}");
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find_map(|l| l.rsplit(' ').next().and_then(|n| n.trim().parse().ok()))
        .ok_or_else(|| anyhow::anyhow!("no {name} in:\n{body}"))
}

/// One GET through `port` with `host` as the Host header; the status code and body.
fn get_with_host(port: u16, host: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    parse_response(&raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_gateway_takes_its_listeners_from_its_config_entry_and_follows_it() -> Result<()>
{
    let mesh = mesh(json!({})).await?;
    let http = mesh.agent.addr().to_string();
    // Started before its entry exists: it waits, as Consul's gateways do.
    let mut gateway = Spawned::start(
        &weft_binary()?,
        &strings(&[
            "connect",
            "ingress",
            "-service",
            "edge",
            "-register",
            "-address",
            "127.0.0.1",
            "-http-addr",
            &http,
        ]),
    )?;
    let tcp_port = free_port()?;
    let entry = |listeners: serde_json::Value| json!({"Kind": "ingress-gateway", "Name": "edge", "Listeners": listeners});
    mesh.agent
        .put_json(
            "/v1/config",
            &entry(
                json!([{"Port": tcp_port, "Protocol": "tcp", "Services": [{"Name": "greeting"}]}]),
            ),
        )
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(30), async || -> Result<bool> {
        Ok(http_get(tcp_port)
            .map(|(code, _)| code == 200)
            .unwrap_or(false))
    })
    .await
    .with_context(|| {
        format!(
            "the gateway never served its entry's listener:\n{}",
            gateway.output()
        )
    })?;
    // Registered, and found by the service it carries.
    eventually(Duration::from_secs(20), async || -> Result<bool> {
        let r = mesh
            .agent
            .get("/v1/health/ingress/greeting?passing=1")
            .await?
            .json()?;
        Ok(r[0]["Service"]["Service"] == "edge")
    })
    .await?;

    // The entry changes: an http listener routing by Host replaces the tcp one, without a restart.
    let http_port = free_port()?;
    mesh.agent
        .put_json(
            "/v1/config",
            &entry(json!([{"Port": http_port, "Protocol": "http", "Services": [
                {"Name": "greeting", "Hosts": ["greet.example.com"]}, {"Name": "other"}]}])),
        )
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(30), async || -> Result<bool> {
        Ok(get_with_host(http_port, "greet.example.com")
            .map(|(code, _)| code == 200)
            .unwrap_or(false))
    })
    .await
    .with_context(|| {
        format!(
            "the gateway did not follow its entry:\n{}",
            gateway.output()
        )
    })?;
    ensure_refused(tcp_port)?;
    let (code, body) = get_with_host(http_port, "nobody.example.com")?;
    assert_eq!(code, 404, "{body}");
    let carried = mesh
        .agent
        .get("/v1/catalog/gateway-services/edge")
        .await?
        .json()?;
    let names: Vec<&str> = carried
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["Service"]["Name"].as_str())
        .collect();
    assert!(
        names.contains(&"greeting") && names.contains(&"other"),
        "{carried}"
    );

    // An entry the gateway cannot serve is reported, and it keeps serving what it has.
    mesh.agent
        .put_json(
            "/v1/config",
            &entry(json!([{"Port": http_port, "Protocol": "http", "Services": [{"Name": "*"}]}])),
        )
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(20), async || -> Result<bool> {
        Ok(gateway.output().contains("cannot be served"))
    })
    .await?;
    assert_eq!(get_with_host(http_port, "greet.example.com")?.0, 200);
    gateway.terminate()?;
    Ok(())
}

fn ensure_refused(port: u16) -> Result<()> {
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(_) => Ok(()),
        Ok(_) => bail!("port {port} still accepts connections"),
    }
}
