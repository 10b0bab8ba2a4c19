//! User events across a real cluster (one server, two client agents, gossip on loopback): fired on one agent,
//! received once by every agent whose filters match, listed with base64 payloads and Lamport times, followed by a
//! blocking list and by `weft watch -type event`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use std::time::Duration;
use weft_testkit::cluster::Cluster;
use weft_testkit::net::strings;
use weft_testkit::{eventually, weft_binary, Spawned};

async fn names(cluster: &Cluster, i: usize, query: &str) -> Result<Vec<String>> {
    let list = cluster
        .agent(i)?
        .get(&format!("/v1/event/list{query}"))
        .await?
        .json()?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["Name"].as_str().unwrap_or_default().to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_every_matching_agent_once() -> Result<()> {
    let cluster = Cluster::start(1, 2).await?;
    // Client 2 runs the "web" service tagged v2; the others run nothing.
    cluster
        .agent(2)?
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "Tags": ["v2"], "Port": 80}),
        )
        .await?
        .expect_status(200)?;
    // A follower of events, as an operator would run it.
    let agent1 = cluster.agent(1)?.addr().to_string();
    let watcher = Spawned::start(
        &weft_binary()?,
        &strings(&[
            "watch",
            "-http-addr",
            &agent1,
            "-type",
            "event",
            "-name",
            "deploy",
        ]),
    )?;

    // It has printed the empty list and is now blocked waiting for the next one.
    eventually(Duration::from_secs(10), async || {
        watcher.output().contains("[]")
    })
    .await?;
    let fired = cluster
        .agent(0)?
        .put("/v1/event/fire/deploy", "v1.2.3")
        .await?
        .json()?;
    ensure!(
        fired["Name"] == "deploy" && fired["Version"] == 1,
        "{fired}"
    );
    ensure!(fired["LTime"].as_u64() > Some(0), "{fired}");
    let id = fired["ID"].as_str().unwrap_or_default().to_string();
    for i in 0..3 {
        eventually(Duration::from_secs(15), async || -> Result<bool> {
            Ok(names(&cluster, i, "?name=deploy").await? == ["deploy"])
        })
        .await?;
    }
    let on_2: Value = cluster.agent(2)?.get("/v1/event/list").await?.json()?;
    ensure!(on_2[0]["ID"] == id.as_str(), "{on_2}");
    ensure!(on_2[0]["Payload"] == "djEuMi4z", "base64 of v1.2.3: {on_2}");

    // Filters: only the agent with web tagged v2 keeps the second event.
    let index = cluster.agent(2)?.get("/v1/event/list").await?.index()?;
    let filtered = cluster
        .agent(1)?
        .put("/v1/event/fire/restart?service=^web$&tag=v2", "")
        .await?;
    ensure!(
        filtered.status == 200,
        "{} {}",
        filtered.status,
        filtered.text()
    );
    // A blocking list on agent 2 wakes for it.
    let woke = cluster
        .agent(2)?
        .get(&format!("/v1/event/list?index={index}&wait=20s"))
        .await?;
    ensure!(woke.index()? > index, "{}", woke.text());
    ensure!(names(&cluster, 2, "").await? == ["deploy", "restart"]);
    // Gossip has had time to bring it everywhere; the others did not keep it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in [0, 1] {
        ensure!(names(&cluster, i, "").await? == ["deploy"], "agent {i}");
    }

    // The watcher printed the list with the deploy event.
    eventually(Duration::from_secs(10), async || {
        watcher.output().contains(&id)
    })
    .await?;

    // Bad input: a payload over the limit, a filter that is not a regular expression.
    let big = cluster
        .agent(0)?
        .put("/v1/event/fire/deploy", vec![b'x'; 600])
        .await?;
    ensure!(
        big.status == 400 && big.text().contains("512 bytes"),
        "{} {}",
        big.status,
        big.text()
    );
    let bad = cluster
        .agent(0)?
        .put("/v1/event/fire/deploy?node=(", "")
        .await?;
    ensure!(
        bad.status == 400 && bad.text().contains("Invalid node filter"),
        "{}",
        bad.text()
    );
    Ok(())
}

#[tokio::test]
async fn weft_event_fires_from_the_command_line() -> Result<()> {
    let agent = weft_testkit::DevAgent::start()?;
    let out = weft_testkit::cli(&agent, &["event", "-name", "hello", "payload"])?;
    ensure!(
        out.code() == 0 && out.stdout.starts_with("Event ID: "),
        "{} {}",
        out.stdout,
        out.stderr
    );
    let list = agent.get("/v1/event/list?name=hello").await?.json()?;
    ensure!(list[0]["Payload"] == "cGF5bG9hZA==", "{list}");
    let none = weft_testkit::cli(&agent, &["event", "-name", ""])?;
    ensure!(none.code() == 1, "{}", none.stdout);
    Ok(())
}
