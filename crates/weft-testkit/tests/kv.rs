//! The KV store over raw HTTP: check-and-set under real concurrency, listing (`?recurse`, `?keys&separator`),
//! `?raw`, the 404 that still carries `X-Consul-Index`, recursive deletes, the 512 KiB value limit, and `/v1/txn`'s
//! all-or-nothing semantics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::Barrier;
use weft_testkit::{DevAgent, Http};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> String {
    let raw = v.as_str().unwrap_or("");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

async fn put(agent: &DevAgent, key: &str, value: &str) -> Result<()> {
    let resp = agent.put(&format!("/v1/kv/{key}"), value).await?;
    resp.expect_status(200)?;
    if resp.text() != "true" {
        bail!("PUT {key} answered {:?}", resp.text());
    }
    Ok(())
}

/// The single entry at `key`.
async fn entry(agent: &DevAgent, key: &str) -> Result<Value> {
    let resp = agent.get(&format!("/v1/kv/{key}")).await?;
    resp.expect_status(200)?;
    let list = resp.json()?;
    list.get(0).cloned().context("empty list")
}

/// One read-modify-write increment with `?cas`, retried until it lands; returns how many CAS writes were refused.
async fn increment(http: &Http, url: &str, first_round: Option<&Barrier>) -> Result<u32> {
    let mut refused = 0;
    let mut barrier = first_round;
    loop {
        let resp = http.request("GET", url, None).await?;
        resp.expect_status(200)?;
        let list = resp.json()?;
        let current: u64 = unb64(&list[0]["Value"]).parse()?;
        let index = list[0]["ModifyIndex"].as_u64().context("no ModifyIndex")?;
        if let Some(b) = barrier.take() {
            // Everyone has read the same index before anyone writes: all but one CAS must fail.
            b.wait().await;
        }
        let resp = http
            .request(
                "PUT",
                &format!("{url}?cas={index}"),
                Some((current + 1).to_string().into_bytes()),
            )
            .await?;
        resp.expect_status(200)?;
        match resp.text().as_str() {
            "true" => return Ok(refused),
            "false" => refused += 1,
            other => bail!("CAS answered {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cas_increments_count_exactly() -> Result<()> {
    const TASKS: usize = 8;
    const ROUNDS: usize = 10;
    let agent = DevAgent::start()?;
    put(&agent, "counter", "0").await?;
    let url = agent.url("/v1/kv/counter");
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let http = agent.http().clone();
        let url = url.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            let mut refused = 0;
            for round in 0..ROUNDS {
                let b = (round == 0).then_some(&*barrier);
                refused += increment(&http, &url, b).await?;
            }
            anyhow::Ok(refused)
        }));
    }
    let mut refused = 0;
    for h in handles {
        refused += h.await??;
    }
    let e = entry(&agent, "counter").await?;
    assert_eq!(unb64(&e["Value"]), (TASKS * ROUNDS).to_string());
    assert!(
        refused >= (TASKS - 1) as u32,
        "the synchronized first round must refuse at least {} writes, refused {refused}",
        TASKS - 1
    );

    // cas=0 creates only when absent.
    let resp = agent.put("/v1/kv/counter?cas=0", "x").await?;
    assert_eq!(resp.text(), "false");
    let resp = agent.put("/v1/kv/fresh?cas=0", "x").await?;
    assert_eq!(resp.text(), "true");
    // Mutually exclusive flags.
    let resp = agent.put("/v1/kv/fresh?cas=1&acquire=abc", "x").await?;
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().starts_with("Conflicting flags: "),
        "{}",
        resp.text()
    );
    Ok(())
}

#[tokio::test]
async fn listing_with_recurse_keys_separator_and_raw() -> Result<()> {
    let agent = DevAgent::start()?;
    for (k, v) in [
        ("app/name", "weft"),
        ("app/db/host", "h"),
        ("app/db/port", "5432"),
        ("apple", "fruit"),
    ] {
        put(&agent, k, v).await?;
    }
    let resp = agent.put("/v1/kv/app/flagged?flags=42", "").await?;
    assert_eq!(resp.text(), "true");

    let resp = agent.get("/v1/kv/app/?recurse").await?;
    assert_eq!(resp.status, 200);
    let list = resp.json()?;
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["app/db/host", "app/db/port", "app/flagged", "app/name"]
    );
    assert_eq!(unb64(&list[1]["Value"]), "5432");
    assert_eq!(list[2]["Flags"], 42);
    assert_eq!(list[2]["Value"], Value::Null, "an empty value is null");
    assert_eq!(list[0]["LockIndex"], 0);
    assert!(
        list[0].get("Session").is_none(),
        "unlocked entries carry no Session"
    );
    let index = resp.index()?;
    let max_modify = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ModifyIndex"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        index, max_modify,
        "a prefix read's index is the prefix's latest write"
    );

    // Prefix without the slash also matches "apple".
    let all = agent.get("/v1/kv/app?recurse").await?.json()?;
    assert_eq!(all.as_array().unwrap().len(), 5);

    let resp = agent.get("/v1/kv/app/?keys&separator=/").await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()?, json!(["app/db/", "app/flagged", "app/name"]));
    let resp = agent.get("/v1/kv/?keys").await?;
    assert_eq!(
        resp.json()?,
        json!([
            "app/db/host",
            "app/db/port",
            "app/flagged",
            "app/name",
            "apple"
        ])
    );
    let resp = agent.get("/v1/kv/?keys&separator=/").await?;
    assert_eq!(resp.json()?, json!(["app/", "apple"]));
    let resp = agent.get("/v1/kv/nothing/?keys").await?;
    assert_eq!(resp.status, 404);

    let resp = agent.get("/v1/kv/app/db/port?raw").await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"5432");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert!(resp.index()? >= 1);

    // A key with spaces and unicode, percent-encoded in the path.
    put(&agent, "odd%20key/%C3%A9t%C3%A9", "summer").await?;
    let e = entry(&agent, "odd%20key/%C3%A9t%C3%A9").await?;
    assert_eq!(e["Key"], "odd key/été");
    Ok(())
}

#[tokio::test]
async fn missing_key_is_a_404_that_still_carries_the_index() -> Result<()> {
    let agent = DevAgent::start()?;
    put(&agent, "exists", "1").await?;
    for path in ["/v1/kv/missing", "/v1/kv/missing/?recurse"] {
        let resp = agent.get(path).await?;
        assert_eq!(resp.status, 404, "{path}");
        assert!(resp.body.is_empty(), "{path}: {:?}", resp.text());
        assert!(resp.index()? >= 1, "{path}");
        assert_eq!(resp.header("x-consul-knownleader"), Some("true"));
        assert_eq!(resp.header("x-consul-lastcontact"), Some("0"));
    }
    let resp = agent.get("/v1/kv/").await?;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.text(), "Missing key name");
    Ok(())
}

#[tokio::test]
async fn delete_single_cas_and_recurse() -> Result<()> {
    let agent = DevAgent::start()?;
    for k in ["tree/a", "tree/b/c", "tree/b/d", "treetop", "other"] {
        put(&agent, k, "v").await?;
    }
    let resp = agent.delete("/v1/kv/tree/?recurse").await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "true");
    assert_eq!(agent.get("/v1/kv/tree/?recurse").await?.status, 404);
    assert_eq!(agent.get("/v1/kv/treetop").await?.status, 200);
    assert_eq!(agent.get("/v1/kv/other").await?.status, 200);

    // CAS delete: only at the current ModifyIndex.
    let e = entry(&agent, "other").await?;
    let index = e["ModifyIndex"].as_u64().unwrap();
    let resp = agent
        .delete(&format!("/v1/kv/other?cas={}", index + 100))
        .await?;
    assert_eq!(resp.text(), "false");
    assert_eq!(agent.get("/v1/kv/other").await?.status, 200);
    let resp = agent.delete(&format!("/v1/kv/other?cas={index}")).await?;
    assert_eq!(resp.text(), "true");
    assert_eq!(agent.get("/v1/kv/other").await?.status, 404);

    // Deleting what is not there is fine.
    assert_eq!(agent.delete("/v1/kv/never-was").await?.text(), "true");
    let resp = agent.delete("/v1/kv/x?recurse&cas=1").await?;
    assert_eq!(resp.status, 400);
    // The index never goes back after deletes.
    let before = agent.get("/v1/kv/treetop").await?.index()?;
    agent.delete("/v1/kv/treetop").await?;
    let after = agent.get("/v1/kv/treetop").await?;
    assert_eq!(after.status, 404);
    assert!(after.index()? > before, "{} <= {before}", after.index()?);
    Ok(())
}

#[tokio::test]
async fn values_over_512_kib_are_refused_with_413() -> Result<()> {
    let agent = DevAgent::start()?;
    let limit = 512 * 1024;
    let resp = agent.put("/v1/kv/big", vec![b'x'; limit]).await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "true");
    let resp = agent.put("/v1/kv/big", vec![b'y'; limit + 1]).await?;
    assert_eq!(resp.status, 413);
    assert!(
        resp.text().starts_with(&format!(
            "Request body({} bytes) too large, max size: {limit} bytes",
            limit + 1
        )),
        "{}",
        resp.text()
    );
    // The refused write changed nothing.
    let raw = agent.get("/v1/kv/big?raw").await?;
    assert_eq!(raw.body.len(), limit);
    assert!(raw.body.iter().all(|b| *b == b'x'));
    Ok(())
}

#[tokio::test]
async fn txn_commits_all_or_rolls_back_with_409() -> Result<()> {
    let agent = DevAgent::start()?;
    put(&agent, "t/keep", "original").await?;
    let keep_index = entry(&agent, "t/keep").await?["ModifyIndex"]
        .as_u64()
        .unwrap();

    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("alpha")}},
        {"KV": {"Verb": "set", "Key": "t/b", "Value": b64("beta"), "Flags": 7}},
        {"KV": {"Verb": "cas", "Key": "t/keep", "Value": b64("changed"), "Index": keep_index}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
    ]);
    let resp = agent.put_json("/v1/txn", &ops).await?;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let body = resp.json()?;
    assert_eq!(body["Errors"], Value::Null);
    let results = body["Results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{body}");
    assert_eq!(results[0]["KV"]["Key"], "t/a");
    assert_eq!(
        results[0]["KV"]["Value"],
        Value::Null,
        "set results carry no value"
    );
    assert_eq!(results[1]["KV"]["Flags"], 7);
    assert_eq!(unb64(&results[3]["KV"]["Value"]), "alpha");
    assert_eq!(unb64(&entry(&agent, "t/keep").await?["Value"]), "changed");

    // A failing check-index in the middle rolls back the writes before it.
    let before = agent.get("/v1/kv/t/?recurse").await?.json()?;
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": b64("overwritten")}},
        {"KV": {"Verb": "delete", "Key": "t/b"}},
        {"KV": {"Verb": "check-index", "Key": "t/keep", "Index": 1}},
        {"KV": {"Verb": "set", "Key": "t/new", "Value": b64("n")}},
    ]);
    let resp = agent.put_json("/v1/txn", &ops).await?;
    assert_eq!(resp.status, 409, "{}", resp.text());
    let body = resp.json()?;
    assert_eq!(body["Results"], Value::Null);
    let errors = body["Errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["OpIndex"], 2);
    assert!(!errors[0]["What"].as_str().unwrap().is_empty());
    let after = agent.get("/v1/kv/t/?recurse").await?.json()?;
    assert_eq!(before, after, "a rolled-back transaction changed state");
    assert_eq!(agent.get("/v1/kv/t/new").await?.status, 404);

    let resp = agent.put("/v1/txn", "[{").await?;
    assert_eq!(resp.status, 400);
    assert!(
        resp.text().starts_with("Failed to parse body: "),
        "{}",
        resp.text()
    );
    Ok(())
}
