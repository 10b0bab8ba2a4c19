//! Sessions and locks over raw HTTP: lock hand-off with lock-delay, TTL expiry (with Consul's 2×TTL grace)
//! releasing a lock, `Behavior: delete`, and the session endpoints' answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use weft_testkit::{eventually, DevAgent, TempDir};

const WAIT: Duration = Duration::from_secs(10);

async fn create_session(agent: &DevAgent, body: Value) -> Result<String> {
    let resp = agent.put_json("/v1/session/create", &body).await?;
    resp.expect_status(200)?;
    let id = resp.json()?["ID"]
        .as_str()
        .context("no ID in the session answer")?
        .to_string();
    Ok(id)
}

async fn acquire(agent: &DevAgent, key: &str, session: &str, value: &str) -> Result<bool> {
    let resp = agent
        .put(&format!("/v1/kv/{key}?acquire={session}"), value)
        .await?;
    resp.expect_status(200)?;
    match resp.text().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => anyhow::bail!("acquire answered {other:?}"),
    }
}

async fn entry(agent: &DevAgent, key: &str) -> Result<Option<Value>> {
    let resp = agent.get(&format!("/v1/kv/{key}")).await?;
    match resp.status {
        404 => Ok(None),
        200 => Ok(resp.json()?.get(0).cloned()),
        other => anyhow::bail!("GET {key}: {other} {}", resp.text()),
    }
}

#[tokio::test]
async fn lock_hand_off_waits_for_the_lock_delay() -> Result<()> {
    let agent = DevAgent::start()?;
    let a = create_session(&agent, json!({"Name": "a", "LockDelay": "1s"})).await?;
    let b = create_session(&agent, json!({"Name": "b", "LockDelay": "1s"})).await?;
    assert_ne!(a, b);

    let info = agent.get(&format!("/v1/session/info/{a}")).await?;
    assert_eq!(info.status, 200);
    assert!(info.index()? >= 1);
    let info = info.json()?;
    assert_eq!(info[0]["ID"], a.as_str());
    assert_eq!(info[0]["Name"], "a");
    assert_eq!(info[0]["Node"], agent.node());
    assert_eq!(
        info[0]["LockDelay"], 1_000_000_000u64,
        "LockDelay is nanoseconds"
    );
    assert_eq!(info[0]["Behavior"], "release");
    assert_eq!(info[0]["NodeChecks"], json!(["serfHealth"]));
    let node_sessions = agent
        .get(&format!("/v1/session/node/{}", agent.node()))
        .await?
        .json()?;
    assert_eq!(node_sessions.as_array().unwrap().len(), 2);

    assert!(acquire(&agent, "service/leader", &a, "a-data").await?);
    assert!(
        !acquire(&agent, "service/leader", &b, "b-data").await?,
        "B got a held lock"
    );
    // The holder may update its value without a new LockIndex.
    assert!(acquire(&agent, "service/leader", &a, "a-data-2").await?);
    let e = entry(&agent, "service/leader")
        .await?
        .context("key missing")?;
    assert_eq!(e["Session"], a.as_str());
    assert_eq!(e["LockIndex"], 1);

    let destroyed_at = Instant::now();
    let resp = agent.put_empty(&format!("/v1/session/destroy/{a}")).await?;
    assert_eq!(resp.text(), "true");
    let e = entry(&agent, "service/leader")
        .await?
        .context("key deleted")?;
    assert!(e.get("Session").is_none(), "lock not released: {e}");
    assert_eq!(e["LockIndex"], 1, "a release keeps the LockIndex");
    assert_eq!(
        agent.get(&format!("/v1/session/info/{a}")).await?.json()?,
        json!([])
    );

    // Inside the lock-delay nobody may acquire.
    let refused = !acquire(&agent, "service/leader", &b, "b-data").await?;
    let elapsed = destroyed_at.elapsed();
    assert!(
        refused || elapsed >= Duration::from_secs(1),
        "B acquired {elapsed:?} after the invalidation, inside the 1s lock-delay"
    );

    let won_after = eventually(WAIT, async || -> Result<Option<Duration>> {
        Ok(acquire(&agent, "service/leader", &b, "b-data")
            .await?
            .then(|| destroyed_at.elapsed()))
    })
    .await?;
    assert!(
        won_after >= Duration::from_secs(1),
        "acquired {won_after:?} after the invalidation, before the 1s lock-delay ran out"
    );
    let e = entry(&agent, "service/leader")
        .await?
        .context("key missing")?;
    assert_eq!(e["Session"], b.as_str());
    assert_eq!(e["LockIndex"], 2);

    // An explicit release needs the holder and starts no lock-delay.
    let resp = agent
        .put(&format!("/v1/kv/service/leader?release={a}"), "")
        .await?;
    assert_eq!(resp.text(), "false");
    let resp = agent
        .put(&format!("/v1/kv/service/leader?release={b}"), "bye")
        .await?;
    assert_eq!(resp.text(), "true");
    let c = create_session(&agent, json!({"LockDelay": "30s"})).await?;
    assert!(
        acquire(&agent, "service/leader", &c, "c").await?,
        "release started a lock-delay"
    );
    Ok(())
}

#[tokio::test]
async fn ttl_session_expires_after_its_grace_and_releases_its_lock() -> Result<()> {
    let dir = TempDir::new()?;
    let config = dir.write("agent.json", json!({"session_ttl_min": "1s"}).to_string())?;
    let agent = DevAgent::builder().config_file(&config).start()?;

    let created = Instant::now();
    let id = create_session(&agent, json!({"TTL": "1s", "LockDelay": "0s"})).await?;
    assert!(acquire(&agent, "ttl/lock", &id, "mine").await?);
    let info = agent.get(&format!("/v1/session/info/{id}")).await?.json()?;
    assert_eq!(info[0]["TTL"], "1s");

    let gone_after = eventually(WAIT, async || -> Result<Option<Duration>> {
        let info = agent.get(&format!("/v1/session/info/{id}")).await?.json()?;
        Ok((info == json!([])).then(|| created.elapsed()))
    })
    .await?;
    assert!(
        gone_after >= Duration::from_secs(2),
        "a 1s-TTL session vanished after {gone_after:?}, before Consul's 2xTTL grace"
    );
    let e = eventually(WAIT, async || -> Result<Option<Value>> {
        let e = entry(&agent, "ttl/lock").await?.context("key deleted")?;
        Ok(e.get("Session").is_none().then_some(e))
    })
    .await?;
    assert_eq!(e["LockIndex"], 1);
    let list = agent.get("/v1/session/list").await?.json()?;
    assert_eq!(list, json!([]));
    let resp = agent.put_empty(&format!("/v1/session/renew/{id}")).await?;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.text(), format!("Session id '{id}' not found"));
    Ok(())
}

#[tokio::test]
async fn renewing_keeps_a_ttl_session_alive() -> Result<()> {
    let dir = TempDir::new()?;
    let config = dir.write("agent.json", json!({"session_ttl_min": "1s"}).to_string())?;
    let agent = DevAgent::builder().config_file(&config).start()?;
    let id = create_session(&agent, json!({"TTL": "1s"})).await?;
    // Renew every 300 ms for 3 s: well past 2xTTL without renewals.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let resp = agent.put_empty(&format!("/v1/session/renew/{id}")).await?;
        assert_eq!(resp.status, 200, "renew failed: {}", resp.text());
        let body = resp.json()?;
        assert_eq!(body[0]["ID"], id.as_str());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let info = agent.get(&format!("/v1/session/info/{id}")).await?.json()?;
    assert_eq!(info[0]["ID"], id.as_str());
    Ok(())
}

#[tokio::test]
async fn session_ttl_below_the_default_minimum_is_refused() -> Result<()> {
    let agent = DevAgent::start()?;
    let resp = agent
        .put_json("/v1/session/create", &json!({"TTL": "1s"}))
        .await?;
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().starts_with("Invalid Session TTL"),
        "{}",
        resp.text()
    );
    let resp = agent
        .put_json("/v1/session/create", &json!({"Behavior": "explode"}))
        .await?;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.text(), "Invalid Behavior setting 'explode'");
    // No body at all is a valid request with every default.
    let resp = agent.put_empty("/v1/session/create").await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let id = resp.json()?["ID"].as_str().unwrap().to_string();
    let info = agent.get(&format!("/v1/session/info/{id}")).await?.json()?;
    assert_eq!(info[0]["LockDelay"], 15_000_000_000u64);
    assert_eq!(info[0]["Behavior"], "release");
    Ok(())
}

#[tokio::test]
async fn delete_behavior_deletes_the_held_key() -> Result<()> {
    let agent = DevAgent::start()?;
    let s = create_session(
        &agent,
        json!({"name": "ephemeral", "behavior": "delete", "lockdelay": "0s"}),
    )
    .await?;
    let info = agent.get(&format!("/v1/session/info/{s}")).await?.json()?;
    assert_eq!(info[0]["Behavior"], "delete");
    assert!(acquire(&agent, "eph/owner", &s, "me").await?);
    assert!(entry(&agent, "eph/owner").await?.is_some());
    let resp = agent.put_empty(&format!("/v1/session/destroy/{s}")).await?;
    assert_eq!(resp.text(), "true");
    eventually(WAIT, async || -> Result<bool> {
        Ok(entry(&agent, "eph/owner").await?.is_none())
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_session_dies_with_the_checks_it_depends_on() -> Result<()> {
    let agent = DevAgent::start()?;
    // A node check and a service check, both passing on a 1 s TTL nobody renews.
    agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"name": "node-beat", "ttl": "1s", "status": "passing"}),
        )
        .await?
        .expect_status(200)?;
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "svc", "id": "svc-1", "check": {"ttl": "1s", "status": "passing"}}),
        )
        .await?
        .expect_status(200)?;
    let by_node = create_session(
        &agent,
        json!({"NodeChecks": ["serfHealth", "node-beat"], "LockDelay": "0s"}),
    )
    .await?;
    let by_service = create_session(
        &agent,
        json!({"NodeChecks": [], "ServiceChecks": [{"ID": "service:svc-1"}], "LockDelay": "0s"}),
    )
    .await?;
    assert!(acquire(&agent, "dep/node", &by_node, "n").await?);
    assert!(acquire(&agent, "dep/service", &by_service, "s").await?);

    for (session, key) in [(&by_node, "dep/node"), (&by_service, "dep/service")] {
        eventually(WAIT, async || -> Result<bool> {
            let info = agent
                .get(&format!("/v1/session/info/{session}"))
                .await?
                .json()?;
            Ok(info == json!([]))
        })
        .await?;
        let e = entry(&agent, key).await?.context("key deleted")?;
        assert!(e.get("Session").is_none(), "{key} still locked: {e}");
    }
    // A critical check cannot back a new session.
    let resp = agent
        .put_json(
            "/v1/session/create",
            &json!({"NodeChecks": ["serfHealth", "node-beat"]}),
        )
        .await?;
    assert_eq!(resp.status, 500, "{}", resp.text());
    Ok(())
}
