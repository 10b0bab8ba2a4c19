//! Blocking queries against a real agent: index-based (`?index=&wait=`) on health and KV, woken promptly by a
//! write rather than by the timeout; the timeout itself returning the unchanged index; and hash-based blocking on
//! `/v1/agent/service/:id`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, Result};
use serde_json::json;
use std::time::{Duration, Instant};
use weft_testkit::{DevAgent, Response};

/// How long a parked query is given to park before the test writes (and the proof that it really blocks).
const PARK: Duration = Duration::from_millis(300);
/// A woken query must answer within this after the write that woke it (the query's own wait is 5 s).
const PROMPT: Duration = Duration::from_secs(1);

/// Starts `GET path` in the background; returns the task yielding the answer and the instant it completed.
fn spawn_get(agent: &DevAgent, path: &str) -> tokio::task::JoinHandle<Result<(Response, Instant)>> {
    let http = agent.http().clone();
    let url = agent.url(path);
    tokio::spawn(async move {
        let resp = http.request("GET", &url, None).await?;
        Ok((resp, Instant::now()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_query_is_woken_by_a_registration() -> Result<()> {
    let agent = DevAgent::start()?;
    let first = agent.get("/v1/health/service/x").await?;
    assert_eq!(first.status, 200);
    assert_eq!(first.json()?, json!([]));
    let index = first.index()?;

    let started = Instant::now();
    let pending = spawn_get(
        &agent,
        &format!("/v1/health/service/x?index={index}&wait=5s"),
    );
    tokio::time::sleep(PARK).await;
    assert!(
        !pending.is_finished(),
        "the blocking query returned without any change"
    );

    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "x", "port": 1234}),
        )
        .await?
        .expect_status(200)?;
    let written = Instant::now();
    let (resp, done) = pending.await??;
    assert_eq!(resp.status, 200);
    assert!(
        done.duration_since(written) < PROMPT,
        "woken {:?} after the write ({:?} after the query started)",
        done.duration_since(written),
        done.duration_since(started)
    );
    assert!(
        resp.index()? > index,
        "index did not move: {:?}",
        resp.index()
    );
    let list = resp.json()?;
    assert_eq!(list[0]["Service"]["Service"], "x");
    assert_eq!(list[0]["Service"]["Port"], 1234);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_read_is_woken_by_a_put() -> Result<()> {
    let agent = DevAgent::start()?;
    let first = agent.get("/v1/kv/watched").await?;
    assert_eq!(first.status, 404);
    let index = first.index()?;

    let pending = spawn_get(&agent, &format!("/v1/kv/watched?index={index}&wait=5s"));
    tokio::time::sleep(PARK).await;
    assert!(
        !pending.is_finished(),
        "the blocking query returned without any change"
    );
    agent
        .put("/v1/kv/watched", "now")
        .await?
        .expect_status(200)?;
    let written = Instant::now();
    let (resp, done) = pending.await??;
    assert!(
        done.duration_since(written) < PROMPT,
        "woken {:?} after the write",
        done.duration_since(written)
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.index()? > index);
    let list = resp.json()?;
    assert_eq!(list[0]["Key"], "watched");
    assert_eq!(list[0]["Value"], "bm93");

    // The next round blocks on the new index, and a delete wakes it with a 404.
    let index = resp.index()?;
    let pending = spawn_get(&agent, &format!("/v1/kv/watched?index={index}&wait=5s"));
    tokio::time::sleep(PARK).await;
    assert!(!pending.is_finished());
    agent.delete("/v1/kv/watched").await?.expect_status(200)?;
    let written = Instant::now();
    let (resp, done) = pending.await??;
    assert!(done.duration_since(written) < PROMPT);
    assert_eq!(resp.status, 404);
    assert!(resp.index()? > index);
    Ok(())
}

#[tokio::test]
async fn blocking_query_times_out_with_the_same_index() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put("/v1/kv/still", "same")
        .await?
        .expect_status(200)?;
    let first = agent.get("/v1/kv/still").await?;
    let index = first.index()?;

    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/kv/still?index={index}&wait=300ms"))
        .await?;
    let took = started.elapsed();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.index()?, index);
    assert_eq!(resp.json()?, first.json()?);
    assert!(
        took >= Duration::from_millis(300),
        "returned after {took:?}, before the wait"
    );
    assert!(took < Duration::from_secs(3), "returned after {took:?}");

    // An index already passed answers at once, whatever the wait.
    let started = Instant::now();
    let resp = agent.get("/v1/kv/still?index=1&wait=5s").await?;
    assert_eq!(resp.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_service_hash_blocking_is_woken_by_a_changed_registration() -> Result<()> {
    let agent = DevAgent::start()?;
    let register = async |port: u16| -> Result<()> {
        agent
            .put_json(
                "/v1/agent/service/register",
                &json!({"name": "hashed", "id": "hashed-1", "port": port}),
            )
            .await?
            .expect_status(200)?;
        Ok(())
    };
    register(1000).await?;
    let first = agent.get("/v1/agent/service/hashed-1").await?;
    assert_eq!(first.status, 200);
    let body = first.json()?;
    let hash = body["ContentHash"]
        .as_str()
        .context("no ContentHash")?
        .to_string();
    assert!(!hash.is_empty());
    assert_eq!(first.header("x-consul-contenthash"), Some(hash.as_str()));
    assert_eq!(body["Port"], 1000);

    // Unchanged: the wait runs out and the same hash comes back.
    let started = Instant::now();
    let same = agent
        .get(&format!(
            "/v1/agent/service/hashed-1?hash={hash}&wait=300ms"
        ))
        .await?;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(same.header("x-consul-contenthash"), Some(hash.as_str()));

    let pending = spawn_get(
        &agent,
        &format!("/v1/agent/service/hashed-1?hash={hash}&wait=5s"),
    );
    tokio::time::sleep(PARK).await;
    assert!(
        !pending.is_finished(),
        "the hash-blocking query returned without any change"
    );
    register(2000).await?;
    let written = Instant::now();
    let (resp, done) = pending.await??;
    assert!(
        done.duration_since(written) < PROMPT,
        "woken {:?} after the write",
        done.duration_since(written)
    );
    assert_eq!(resp.status, 200);
    let body = resp.json()?;
    assert_eq!(body["Port"], 2000);
    let new_hash = body["ContentHash"].as_str().unwrap();
    assert_ne!(new_hash, hash);
    assert_eq!(resp.header("x-consul-contenthash"), Some(new_hash));

    let missing = agent.get("/v1/agent/service/nope").await?;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "unknown service ID: nope");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_query_is_woken_when_a_ttl_check_goes_critical() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "beat", "port": 1, "check": {"ttl": "1s", "status": "passing"}}),
        )
        .await?
        .expect_status(200)?;
    let first = agent.get("/v1/health/service/beat?passing").await?;
    assert_eq!(first.json()?.as_array().unwrap().len(), 1);
    let index = first.index()?;
    let started = Instant::now();
    let resp = agent
        .get(&format!(
            "/v1/health/service/beat?passing&index={index}&wait=8s"
        ))
        .await?;
    let took = started.elapsed();
    assert_eq!(resp.status, 200);
    assert!(resp.index()? > index);
    assert_eq!(
        resp.json()?,
        json!([]),
        "the expired instance is still listed as passing"
    );
    assert!(
        took < Duration::from_secs(5),
        "woken after {took:?}: by the timeout, not the TTL expiry"
    );
    Ok(())
}

#[tokio::test]
async fn kv_query_on_one_key_is_not_answered_by_writes_to_another() -> Result<()> {
    let agent = DevAgent::start()?;
    agent.put("/v1/kv/mine", "1").await?.expect_status(200)?;
    let index = agent.get("/v1/kv/mine").await?.index()?;
    let http = agent.http().clone();
    let url = agent.url("/v1/kv/unrelated");
    let writer = tokio::spawn(async move {
        for i in 0..5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            http.request("PUT", &url, Some(format!("{i}").into_bytes()))
                .await?;
        }
        anyhow::Ok(())
    });
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/kv/mine?index={index}&wait=1s"))
        .await?;
    let took = started.elapsed();
    writer.await??;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.index()?,
        index,
        "another key's write moved this key's index"
    );
    assert!(
        took >= Duration::from_secs(1),
        "answered after {took:?}, before the wait ran out"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_watchers_of_one_service_are_all_woken_by_one_write() -> Result<()> {
    const WATCHERS: usize = 40;
    let agent = DevAgent::start()?;
    let index = agent.get("/v1/health/service/popular").await?.index()?;
    let pending: Vec<_> = (0..WATCHERS)
        .map(|i| {
            // Half share one query string, half differ (`?stale`), so both the shared and the separate paths run.
            let extra = if i % 2 == 0 { "" } else { "&stale" };
            spawn_get(
                &agent,
                &format!("/v1/health/service/popular?index={index}&wait=8s{extra}"),
            )
        })
        .collect();
    tokio::time::sleep(PARK).await;
    assert!(
        pending.iter().all(|p| !p.is_finished()),
        "a watcher returned without any change"
    );
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "popular", "port": 80}),
        )
        .await?
        .expect_status(200)?;
    let written = Instant::now();
    for p in pending {
        let (resp, done) = p.await??;
        assert_eq!(resp.status, 200);
        assert!(resp.index()? > index);
        assert_eq!(resp.json()?[0]["Service"]["Service"], "popular");
        assert!(
            done.duration_since(written) < Duration::from_secs(3),
            "a watcher was woken {:?} after the write",
            done.duration_since(written)
        );
    }
    Ok(())
}
