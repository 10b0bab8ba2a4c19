//! Service registration and health through the raw HTTP API, the way py-consul drives it (lowercase / snake_case
//! body keys): discovery through the catalog and health endpoints, TTL, HTTP and TCP checks run by the agent,
//! `DeregisterCriticalServiceAfter`, maintenance mode, the agent-local health endpoints and config reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weft_testkit::{eventually, DevAgent, TempDir};

const WAIT: Duration = Duration::from_secs(10);

/// The agent's local view of one check (`/v1/agent/checks`), or None when it is not registered.
async fn agent_check(agent: &DevAgent, id: &str) -> Result<Option<Value>> {
    let resp = agent.get("/v1/agent/checks").await?;
    resp.expect_status(200)?;
    Ok(resp.json()?.get(id).cloned())
}

async fn check_status(agent: &DevAgent, id: &str) -> Result<String> {
    let check = agent_check(agent, id)
        .await?
        .with_context(|| format!("check {id} is not registered"))?;
    Ok(check["Status"].as_str().unwrap_or("").to_string())
}

/// Service IDs of the passing instances of `name` (`/v1/health/service/<name>?passing`).
async fn passing_ids(agent: &DevAgent, name: &str) -> Result<Vec<String>> {
    let resp = agent
        .get(&format!("/v1/health/service/{name}?passing"))
        .await?;
    resp.expect_status(200)?;
    Ok(resp
        .json()?
        .as_array()
        .context("health answer is not a list")?
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap_or("").to_string())
        .collect())
}

#[tokio::test]
async fn snake_case_registration_is_discoverable_in_catalog_and_health() -> Result<()> {
    let agent = DevAgent::start()?;
    // What py-consul's Agent.Service.register sends.
    let body = json!({
        "name": "web", "id": "web-1", "address": "127.0.0.1", "port": 8080,
        "tags": ["v1", "blue"], "meta": {"team": "payments"}, "enabletagoverride": true,
        "weights": {"passing": 3, "warning": 1},
        "check": {"ttl": "30s", "status": "passing"},
    });
    let resp = agent
        .put_json(
            "/v1/agent/service/register?replace-existing-checks=true",
            &body,
        )
        .await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.body.is_empty(), "agent writes answer an empty body");
    assert_eq!(resp.header("content-type"), None);

    let resp = agent.get("/v1/catalog/service/web").await?;
    assert_eq!(resp.status, 200);
    assert!(resp.index()? > 1);
    assert_eq!(resp.header("x-consul-knownleader"), Some("true"));
    assert_eq!(resp.header("x-consul-lastcontact"), Some("0"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let list = resp.json()?;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let sn = &list[0];
    assert_eq!(sn["Node"], agent.node());
    assert_eq!(sn["ServiceID"], "web-1");
    assert_eq!(sn["ServiceName"], "web");
    assert_eq!(sn["ServiceAddress"], "127.0.0.1");
    assert_eq!(sn["ServicePort"], 8080);
    assert_eq!(sn["ServiceTags"], json!(["v1", "blue"]));
    assert_eq!(sn["ServiceMeta"], json!({"team": "payments"}));
    assert_eq!(sn["ServiceEnableTagOverride"], true);
    assert_eq!(sn["ServiceWeights"], json!({"Passing": 3, "Warning": 1}));

    // Tag filtering: all tags must match.
    let tagged = agent
        .get("/v1/catalog/service/web?tag=v1&tag=blue")
        .await?
        .json()?;
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    let none = agent
        .get("/v1/catalog/service/web?tag=v1&tag=green")
        .await?
        .json()?;
    assert_eq!(none, json!([]));

    let resp = agent.get("/v1/health/service/web?passing").await?;
    assert_eq!(resp.status, 200);
    assert!(resp.index()? > 1);
    let health = resp.json()?;
    let entries = health.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["Node"]["Node"], agent.node());
    assert_eq!(entry["Service"]["ID"], "web-1");
    assert_eq!(entry["Service"]["Port"], 8080);
    let check_ids: Vec<&str> = entry["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert!(check_ids.contains(&"serfHealth"), "{check_ids:?}");
    assert!(check_ids.contains(&"service:web-1"), "{check_ids:?}");
    for c in entry["Checks"].as_array().unwrap() {
        assert_eq!(c["Status"], "passing", "{c}");
    }

    let services = agent.get("/v1/agent/services").await?.json()?;
    assert_eq!(services["web-1"]["Service"], "web");
    assert_eq!(services["web-1"]["Port"], 8080);
    assert_eq!(services["web-1"]["Datacenter"], "dc1");

    let unknown = agent.get("/v1/health/service/nothing-here").await?;
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.json()?, json!([]));
    Ok(())
}

#[tokio::test]
async fn ttl_check_expires_to_critical_and_pass_brings_it_back() -> Result<()> {
    let agent = DevAgent::start()?;
    let resp = agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "api", "id": "api-1", "port": 9000, "check": {"ttl": "1s"}}),
        )
        .await?;
    resp.expect_status(200)?;
    // A TTL check starts critical.
    assert_eq!(check_status(&agent, "service:api-1").await?, "critical");
    assert_eq!(passing_ids(&agent, "api").await?, Vec::<String>::new());

    // pass (re-sent until observed, so a loaded machine cannot let the 1 s TTL lapse in between).
    eventually(WAIT, async || -> Result<bool> {
        agent
            .put_empty("/v1/agent/check/pass/service:api-1?note=all%20good")
            .await?
            .expect_status(200)?;
        Ok(passing_ids(&agent, "api").await? == ["api-1"])
    })
    .await?;

    // Not renewed: critical with Consul's output.
    let check = eventually(WAIT, async || -> Result<Option<Value>> {
        let c = agent_check(&agent, "service:api-1")
            .await?
            .context("gone")?;
        ensure!(c["Status"] == "critical", "still {}", c["Status"]);
        Ok(Some(c))
    })
    .await?;
    assert_eq!(check["Output"], "TTL expired");
    assert_eq!(passing_ids(&agent, "api").await?, Vec::<String>::new());
    let critical = agent.get("/v1/health/state/critical").await?.json()?;
    assert!(critical
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "service:api-1"));

    // pass again → passing, with the note as output.
    let check = eventually(WAIT, async || -> Result<Option<Value>> {
        agent
            .put_empty("/v1/agent/check/pass/service:api-1?note=back")
            .await?
            .expect_status(200)?;
        let c = agent_check(&agent, "service:api-1")
            .await?
            .context("gone")?;
        ensure!(c["Status"] == "passing", "still {}", c["Status"]);
        Ok(Some(c))
    })
    .await?;
    assert_eq!(check["Output"], "back");

    // warn (re-sent until observed, for the same reason as pass), update, and the errors around them.
    eventually(WAIT, async || -> Result<bool> {
        agent
            .put_empty("/v1/agent/check/warn/service:api-1")
            .await?
            .expect_status(200)?;
        Ok(check_status(&agent, "service:api-1").await? == "warning")
    })
    .await?;
    let resp = agent
        .put_json(
            "/v1/agent/check/update/service:api-1",
            &json!({"Status": "bogus"}),
        )
        .await?;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.text(), "Invalid check status: 'bogus'");
    let resp = agent
        .put_empty("/v1/agent/check/pass/no-such-check")
        .await?;
    assert_eq!(resp.status, 404, "{}", resp.text());
    Ok(())
}

/// The last request the status server saw: its head (request line and headers) and body.
type Seen = Arc<std::sync::Mutex<Option<(String, Vec<u8>)>>>;

/// A local HTTP endpoint answering every request with the status held in `status`, recording each request.
async fn status_server(status: Arc<AtomicU16>, seen: Seen) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let status = status.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 2048];
                let head_end = loop {
                    if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&got[..head_end]).to_string();
                let length = weft_testkit::net::content_length(&head).unwrap_or(0);
                while got.len() < head_end + length {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = got[head_end..].to_vec();
                *seen.lock().unwrap() = Some((head, body));
                let code = status.load(Ordering::SeqCst);
                let reason = match code {
                    200 => "OK",
                    429 => "Too Many Requests",
                    _ => "Internal Server Error",
                };
                let body = format!("answering {code}");
                let resp = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_follows_the_endpoint_status() -> Result<()> {
    let status = Arc::new(AtomicU16::new(200));
    let seen = Seen::default();
    let addr = status_server(status.clone(), seen.clone()).await?;
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "site", "id": "site-1", "port": addr.port(),
                    "check": {"http": format!("http://{addr}/health"), "interval": "200ms", "timeout": "2s"}}),
        )
        .await?
        .expect_status(200)?;

    let wait_for = async |want: &str| -> Result<Value> {
        eventually(WAIT, async || -> Result<Option<Value>> {
            let c = agent_check(&agent, "service:site-1")
                .await?
                .context("check missing")?;
            ensure!(
                c["Status"] == want,
                "status {} output {}",
                c["Status"],
                c["Output"]
            );
            Ok(Some(c))
        })
        .await
    };

    let c = wait_for("passing").await?;
    assert_eq!(c["Type"], "http");
    assert!(c["Output"].as_str().unwrap().contains("200"), "{c}");
    assert_eq!(passing_ids(&agent, "site").await?, ["site-1"]);

    status.store(500, Ordering::SeqCst);
    let c = wait_for("critical").await?;
    assert!(c["Output"].as_str().unwrap().contains("500"), "{c}");
    assert_eq!(passing_ids(&agent, "site").await?, Vec::<String>::new());
    // The health view carries the same status.
    let health = agent.get("/v1/health/checks/site").await?.json()?;
    assert_eq!(health[0]["Status"], "critical", "{health}");

    status.store(429, Ordering::SeqCst);
    wait_for("warning").await?;
    // `?passing` drops instances with a warning too.
    assert_eq!(passing_ids(&agent, "site").await?, Vec::<String>::new());

    status.store(200, Ordering::SeqCst);
    wait_for("passing").await?;
    assert_eq!(passing_ids(&agent, "site").await?, ["site-1"]);
    let (head, _) = seen.lock().unwrap().clone().unwrap();
    assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_check_sends_the_configured_method_headers_and_body() -> Result<()> {
    let status = Arc::new(AtomicU16::new(200));
    let seen = Seen::default();
    let addr = status_server(status, seen.clone()).await?;
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "probe", "ID": "probe", "HTTP": format!("http://{addr}/ready?x=1"),
                    "Method": "POST", "Header": {"X-Probe": ["yes"]}, "Body": "ping", "Interval": "200ms"}),
        )
        .await?
        .expect_status(200)?;
    let (head, body) = eventually(WAIT, async || seen.lock().unwrap().clone()).await?;
    assert!(head.starts_with("POST /ready?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.lines().any(|l| l.eq_ignore_ascii_case("x-probe: yes")),
        "{head}"
    );
    assert_eq!(body, b"ping");
    eventually(WAIT, async || -> Result<bool> {
        Ok(check_status(&agent, "probe").await? == "passing")
    })
    .await?;
    // A node-level check: it shows in the node's health.
    let node = agent
        .get(&format!("/v1/health/node/{}", agent.node()))
        .await?
        .json()?;
    assert!(node
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "probe" && c["ServiceID"] == ""));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_is_critical_on_a_closed_port_and_passing_on_an_open_one() -> Result<()> {
    let open = TcpListener::bind("127.0.0.1:0").await?;
    let open_addr = open.local_addr()?;
    tokio::spawn(async move {
        while let Ok((sock, _)) = open.accept().await {
            drop(sock);
        }
    });
    let closed_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let agent = DevAgent::start()?;
    for (id, addr) in [("closed", closed_addr), ("open", open_addr)] {
        // Start both as passing, so the closed one has to be *made* critical by a probe.
        agent
            .put_json(
                "/v1/agent/service/register",
                &json!({"name": id, "port": addr.port(),
                        "check": {"tcp": addr.to_string(), "interval": "200ms", "status": "passing"}}),
            )
            .await?
            .expect_status(200)?;
    }
    let closed = eventually(WAIT, async || -> Result<Option<Value>> {
        let c = agent_check(&agent, "service:closed")
            .await?
            .context("missing")?;
        ensure!(c["Status"] == "critical", "status {}", c["Status"]);
        Ok(Some(c))
    })
    .await?;
    assert_eq!(closed["Type"], "tcp");
    assert!(
        closed["Output"]
            .as_str()
            .unwrap()
            .contains(&closed_addr.to_string()),
        "{closed}"
    );
    eventually(WAIT, async || -> Result<bool> {
        let c = agent_check(&agent, "service:open")
            .await?
            .context("missing")?;
        Ok(c["Status"] == "passing" && c["Output"].as_str().unwrap_or("").contains("Success"))
    })
    .await?;
    assert_eq!(passing_ids(&agent, "closed").await?, Vec::<String>::new());
    assert_eq!(passing_ids(&agent, "open").await?, ["open"]);
    Ok(())
}

#[tokio::test]
async fn deregister_critical_service_after_removes_the_service() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "doomed", "port": 1,
                    "check": {"ttl": "1s", "DeregisterCriticalServiceAfter": "1s"}}),
        )
        .await?
        .expect_status(200)?;
    // A control service, critical too but without the reaper setting.
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "survivor", "port": 2, "check": {"ttl": "1s"}}),
        )
        .await?
        .expect_status(200)?;
    assert!(agent
        .get("/v1/agent/services")
        .await?
        .json()?
        .get("doomed")
        .is_some());
    eventually(WAIT, async || -> Result<bool> {
        let services = agent.get("/v1/agent/services").await?.json()?;
        Ok(services.get("doomed").is_none())
    })
    .await?;
    let catalog = agent.get("/v1/catalog/service/doomed").await?.json()?;
    assert_eq!(catalog, json!([]));
    assert!(agent_check(&agent, "service:doomed").await?.is_none());
    let services = agent.get("/v1/agent/services").await?.json()?;
    assert!(services.get("survivor").is_some(), "{services}");
    Ok(())
}

#[tokio::test]
async fn service_maintenance_adds_a_critical_check() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "db", "id": "db-1", "port": 5432, "check": {"ttl": "60s", "status": "passing"}}),
        )
        .await?
        .expect_status(200)?;
    assert_eq!(passing_ids(&agent, "db").await?, ["db-1"]);

    let resp = agent
        .put_empty("/v1/agent/service/maintenance/db-1?enable=true&reason=upgrading")
        .await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.body.is_empty());
    let maint = agent_check(&agent, "_service_maintenance:db-1")
        .await?
        .context("no maintenance check")?;
    assert_eq!(maint["Status"], "critical");
    assert_eq!(maint["Name"], "Service Maintenance Mode");
    assert_eq!(maint["Notes"], "upgrading");
    assert_eq!(maint["ServiceID"], "db-1");
    assert_eq!(passing_ids(&agent, "db").await?, Vec::<String>::new());
    let by_id = agent.get("/v1/agent/health/service/id/db-1").await?;
    assert_eq!(by_id.status, 503);

    agent
        .put_empty("/v1/agent/service/maintenance/db-1?enable=false")
        .await?
        .expect_status(200)?;
    assert!(agent_check(&agent, "_service_maintenance:db-1")
        .await?
        .is_none());
    assert_eq!(passing_ids(&agent, "db").await?, ["db-1"]);

    let resp = agent
        .put_empty("/v1/agent/service/maintenance/db-1")
        .await?;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.text(), "Missing value for enable");
    let resp = agent
        .put_empty("/v1/agent/service/maintenance/nope?enable=true")
        .await?;
    assert_eq!(resp.status, 404, "{}", resp.text());
    Ok(())
}

#[tokio::test]
async fn agent_health_by_id_and_name_answer_with_the_status_code() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "queue", "id": "queue-1", "port": 5672, "check": {"ttl": "60s", "status": "passing"}}),
        )
        .await?
        .expect_status(200)?;

    let resp = agent.get("/v1/agent/health/service/id/queue-1").await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-consul-reason"), Some("passing"));
    let body = resp.json()?;
    assert_eq!(body["AggregatedStatus"], "passing");
    assert_eq!(body["Service"]["ID"], "queue-1");
    assert_eq!(body["Checks"][0]["CheckID"], "service:queue-1");

    for (verb, code, status) in [
        ("warn", 429, "warning"),
        ("fail", 503, "critical"),
        ("pass", 200, "passing"),
    ] {
        agent
            .put_empty(&format!("/v1/agent/check/{verb}/service:queue-1"))
            .await?
            .expect_status(200)?;
        let resp = agent.get("/v1/agent/health/service/id/queue-1").await?;
        assert_eq!(resp.status, code, "after {verb}");
        assert_eq!(resp.json()?["AggregatedStatus"], status);
        let text = agent
            .get("/v1/agent/health/service/id/queue-1?format=text")
            .await?;
        assert_eq!(text.status, code);
        assert_eq!(text.text(), status);
        let by_name = agent.get("/v1/agent/health/service/name/queue").await?;
        assert_eq!(by_name.status, code, "by name after {verb}");
        assert_eq!(by_name.json()?[0]["AggregatedStatus"], status);
    }

    let resp = agent.get("/v1/agent/health/service/id/missing").await?;
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.json()?,
        json!({"AggregatedStatus": "critical", "Service": null, "Checks": null})
    );
    let resp = agent.get("/v1/agent/health/service/name/missing").await?;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()?, json!([]));
    Ok(())
}

#[tokio::test]
async fn reload_applies_the_changed_config_file() -> Result<()> {
    let dir = TempDir::new()?;
    let config = dir.write(
        "agent.json",
        json!({
            "services": [{"name": "alpha", "port": 1000}, {"name": "delta", "port": 4000}],
            "checks": [{"id": "disk", "name": "disk", "ttl": "30s"}],
        })
        .to_string(),
    )?;
    let agent = DevAgent::builder().config_file(&config).start()?;
    let services = agent.get("/v1/agent/services").await?.json()?;
    assert_eq!(services["alpha"]["Port"], 1000, "{services}");
    assert_eq!(services["delta"]["Port"], 4000, "{services}");
    assert!(agent_check(&agent, "disk").await?.is_some());
    // Registered through the API: a reload must leave it alone.
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "gamma", "port": 3000}),
        )
        .await?
        .expect_status(200)?;

    std::fs::write(
        &config,
        json!({
            "services": [{"name": "alpha", "port": 1001}, {"name": "beta", "port": 2000, "tags": ["new"]}],
            "checks": [{"id": "mem", "name": "mem", "ttl": "30s"}],
        })
        .to_string(),
    )?;
    let resp = agent.put_empty("/v1/agent/reload").await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.body.is_empty());

    let services = agent.get("/v1/agent/services").await?.json()?;
    assert!(
        services.get("delta").is_none(),
        "delta survived the reload: {services}"
    );
    assert_eq!(services["alpha"]["Port"], 1001, "{services}");
    assert_eq!(services["beta"]["Port"], 2000, "{services}");
    assert_eq!(services["beta"]["Tags"], json!(["new"]));
    assert!(
        services.get("gamma").is_some(),
        "API service lost: {services}"
    );
    assert!(
        agent_check(&agent, "disk").await?.is_none(),
        "removed check kept"
    );
    assert!(
        agent_check(&agent, "mem").await?.is_some(),
        "new check missing"
    );
    // The catalog follows.
    assert_eq!(
        agent.get("/v1/catalog/service/delta").await?.json()?,
        json!([])
    );
    let alpha = agent.get("/v1/catalog/service/alpha").await?.json()?;
    assert_eq!(alpha[0]["ServicePort"], 1001);
    let beta = agent.get("/v1/catalog/service/beta").await?.json()?;
    assert_eq!(beta[0]["ServicePort"], 2000);

    // A broken file is refused and changes nothing.
    std::fs::write(&config, "{ not json")?;
    let resp = agent.put_empty("/v1/agent/reload").await?;
    assert_eq!(resp.status, 500, "{}", resp.text());
    let services = agent.get("/v1/agent/services").await?.json()?;
    assert!(services.get("beta").is_some());
    Ok(())
}

#[tokio::test]
async fn a_service_kept_passing_is_not_reaped() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "kept", "port": 1,
                    "check": {"ttl": "1s", "deregister_critical_service_after": "2s"}}),
        )
        .await?
        .expect_status(200)?;
    // Critical from the start; rescued in time, then kept passing for well over the 2 s limit.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        agent
            .put_empty("/v1/agent/check/pass/service:kept")
            .await?
            .expect_status(200)?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let services = agent.get("/v1/agent/services").await?.json()?;
    assert!(
        services.get("kept").is_some(),
        "reaped while passing: {services}"
    );
    // Left alone it expires, and two seconds of critical later it is gone.
    eventually(WAIT, async || -> Result<bool> {
        let services = agent.get("/v1/agent/services").await?.json()?;
        Ok(services.get("kept").is_none())
    })
    .await?;
    Ok(())
}

#[tokio::test]

async fn agent_checks_lists_only_local_checks() -> Result<()> {
    let agent = DevAgent::start()?;
    // serfHealth lives in the catalog (registered by the leader), not in the agent's local state.
    let node = agent
        .get(&format!("/v1/health/node/{}", agent.node()))
        .await?
        .json()?;
    assert_eq!(node[0]["CheckID"], "serfHealth", "{node}");
    let checks = agent.get("/v1/agent/checks").await?.json()?;
    assert_eq!(checks, json!({}), "a fresh agent has no local checks");
    agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"name": "local", "ttl": "30s"}),
        )
        .await?
        .expect_status(200)?;
    let checks = agent.get("/v1/agent/checks").await?.json()?;
    let ids: Vec<&String> = checks.as_object().unwrap().keys().collect();
    assert_eq!(ids, ["local"]);
    Ok(())
}
