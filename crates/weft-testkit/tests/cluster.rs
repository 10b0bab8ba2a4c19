//! The production cluster as real processes on loopback: three Raft servers with data dirs and two client agents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use std::time::Duration;
use weft_testkit::{eventually, Cluster};

fn value_of(resp: &weft_testkit::Response) -> String {
    resp.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_agent_are_read_through_every_agent() -> Result<()> {
    let cluster = Cluster::start(3, 2).await?;
    for i in 0..cluster.len() {
        let key = format!("/v1/kv/from/{}", cluster.node(i));
        let resp = cluster.agent(i)?.put(&key, format!("v{i}")).await?;
        ensure!(
            resp.text() == "true",
            "write via {}: {}",
            cluster.node(i),
            resp.text()
        );
    }
    // Default (leader) reads see every acknowledged write at once, on servers and clients alike.
    for reader in 0..cluster.len() {
        for writer in 0..cluster.len() {
            let key = format!("/v1/kv/from/{}?raw", cluster.node(writer));
            let resp = cluster.agent(reader)?.get(&key).await?;
            ensure!(
                value_of(&resp) == format!("v{writer}"),
                "{} reads {:?} for {}'s write",
                cluster.node(reader),
                resp.text(),
                cluster.node(writer)
            );
        }
    }
    // Every member registered itself in the catalog.
    eventually(Duration::from_secs(10), || async {
        let nodes = cluster.agent(4)?.get("/v1/catalog/nodes").await?.json()?;
        Ok::<_, anyhow::Error>(nodes.as_array().map(|a| a.len()) == Some(5))
    })
    .await?;
    // A service registered on a client agent is in the health view of every server, and its leaf is signed by
    // the leader for the client.
    let client = cluster.agent(3)?;
    client
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "ID": "web-1", "Port": 8080}),
        )
        .await?
        .expect_status(200)?;
    for i in 0..3 {
        let health = cluster
            .agent(i)?
            .get("/v1/health/service/web")
            .await?
            .json()?;
        ensure!(
            health[0]["Service"]["ID"] == "web-1" && health[0]["Node"]["Node"] == cluster.node(3),
            "server {i} sees {health}"
        );
    }
    let leaf = client.get("/v1/agent/connect/ca/leaf/web").await?.json()?;
    ensure!(
        leaf["ServiceURI"]
            .as_str()
            .is_some_and(|u| u.ends_with("/svc/web")),
        "{leaf}"
    );
    // ?stale is answered from the member's own copy and says how old it may be.
    let stale = cluster.agent(4)?.get("/v1/kv/from/?recurse&stale").await?;
    ensure!(stale.status == 200, "stale read: {}", stale.status);
    ensure!(stale.header("x-consul-knownleader") == Some("true"));
    ensure!(stale
        .header("x-consul-lastcontact")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|ms| ms < 5000));
    let consistent = cluster
        .agent(1)?
        .get("/v1/kv/from/?recurse&consistent")
        .await?;
    ensure!(consistent.status == 200);
    ensure!(consistent.json()?.as_array().map(|a| a.len()) == Some(5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_agents_hold_no_kv_and_ask_the_servers_for_it() -> Result<()> {
    let cluster = Cluster::start(3, 1).await?;
    let client = cluster.agent(3)?;
    ensure!(client.put("/v1/kv/probe/before", "one").await?.text() == "true");
    // What a server streams to client agents: the catalog (the client's own node in it), no KV; a later KV write
    // arrives as the index it took, not as the key and value.
    let seen =
        weft_testkit::net::replica_stream(&cluster.rpc_addr(0), Duration::from_secs(3), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            ensure!(client.put("/v1/kv/probe/after", "two").await?.text() == "true");
            Ok(())
        })
        .await?;
    ensure!(seen.contains("snapshot "), "no snapshot in {seen:.300}");
    ensure!(
        seen.contains(cluster.node(3)),
        "the snapshot lacks the catalog: {seen:.300}"
    );
    ensure!(
        seen.contains("\"Skip\""),
        "the KV write was not streamed as a skip: {seen:.2000}"
    );
    ensure!(
        !seen.contains("probe/"),
        "KV reached the stream: {seen:.2000}"
    );
    // The client agent still answers KV, ?stale included (from a server), and its dashboard's KV pages.
    for path in ["/v1/kv/probe/after?raw", "/v1/kv/probe/after?raw&stale"] {
        let read = client.get(path).await?;
        ensure!(
            read.status == 200 && read.text() == "two",
            "{path}: {} {}",
            read.status,
            read.text()
        );
    }
    let page = client.get("/ui/dc1/kv/probe/").await?;
    ensure!(page.status == 200, "KV page: {}", page.status);
    ensure!(
        page.text().contains("before") && page.text().contains("after"),
        "{}",
        page.text()
    );
    let missing = client.get("/ui/dc1/kv/probe/nothing").await?;
    ensure!(
        missing.status == 404,
        "a missing key's page: {}",
        missing.status
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_writes_continue() -> Result<()> {
    let mut cluster = Cluster::start(3, 1).await?;
    let client = 3;
    for n in 0..10 {
        let r = cluster
            .agent(client)?
            .put(&format!("/v1/kv/k{n}"), format!("{n}"))
            .await?;
        ensure!(r.text() == "true");
    }
    let old = cluster.leader().await?;
    cluster.kill(old);
    let new = cluster.wait_for_leader().await?;
    ensure!(new != old, "the dead server is still leader");
    // The survivors saw the leader's process go (its RPC port refused them) and called the election themselves
    // rather than waiting out their timers.
    let noticed = (0..3).filter(|i| *i != old).any(|i| {
        cluster
            .agent(i)
            .is_ok_and(|a| a.said("the leader's process is gone"))
    });
    ensure!(
        noticed,
        "no survivor noticed that the leader's process died"
    );
    for n in 10..20 {
        let r = cluster
            .agent(client)?
            .put(&format!("/v1/kv/k{n}"), format!("{n}"))
            .await?;
        ensure!(
            r.text() == "true",
            "write {n} after failover: {} {}",
            r.status,
            r.text()
        );
    }
    for n in 0..20 {
        let r = cluster.agent(new)?.get(&format!("/v1/kv/k{n}?raw")).await?;
        ensure!(r.text() == format!("{n}"), "k{n} = {:?}", r.text());
    }
    // The old leader comes back as a follower and catches up.
    cluster.restart(old)?;
    eventually(Duration::from_secs(15), || async {
        let r = cluster.agent(old)?.get("/v1/kv/k19?raw&stale").await?;
        Ok::<_, anyhow::Error>(r.text() == "19")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_server_keeps_every_acknowledged_write() -> Result<()> {
    let mut cluster = Cluster::start(3, 0).await?;
    let mut acknowledged = Vec::new();
    for n in 0..30 {
        let via = n % 3;
        let r = cluster
            .agent(via)?
            .put(&format!("/v1/kv/durable/{n}"), format!("{n}"))
            .await?;
        if r.text() == "true" {
            acknowledged.push(n);
        }
    }
    ensure!(acknowledged.len() == 30);
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i)?;
    }
    cluster.wait_for_leader().await?;
    for n in acknowledged {
        let r = cluster
            .agent(n % 3)?
            .get(&format!("/v1/kv/durable/{n}?raw"))
            .await?;
        if r.text() != format!("{n}") {
            let mut seen = Vec::new();
            for i in 0..3 {
                let s = cluster
                    .agent(i)?
                    .get(&format!("/v1/kv/durable/{n}?raw&stale"))
                    .await?;
                let me = cluster.agent(i)?.get("/v1/agent/self").await?.json()?;
                seen.push(format!(
                    "{i}: {} {:?} raft {}",
                    s.status,
                    s.text(),
                    me["Stats"]["raft"]
                ));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let later = cluster
                .agent(n % 3)?
                .get(&format!("/v1/kv/durable/{n}?raw"))
                .await?;
            bail!(
                "durable/{n} lost: {} {:?} via {}; stale reads: {seen:?}; 2 s later: {} {:?}",
                r.status,
                r.text(),
                n % 3,
                later.status,
                later.text()
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_agent_repairs_drift_and_keeps_its_services_across_restarts() -> Result<()> {
    let mut cluster = Cluster::start(3, 1).await?;
    let client = 3;
    cluster
        .agent(client)?
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "api", "ID": "api-1", "Port": 9090, "Check": {"TTL": "30s", "Status": "passing"}}),
        )
        .await?
        .expect_status(200)?;
    // Someone deletes the service from the catalog behind the agent's back: anti-entropy puts it back.
    let node = cluster.node(client).to_string();
    cluster
        .agent(0)?
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Node": node, "ServiceID": "api-1"}),
        )
        .await?
        .expect_status(200)?;
    eventually(Duration::from_secs(10), || async {
        let s = cluster
            .agent(1)?
            .get("/v1/catalog/service/api")
            .await?
            .json()?;
        Ok::<_, anyhow::Error>(s.as_array().map(|a| a.len()) == Some(1))
    })
    .await?;
    // A restarted client agent still owns the service (from its data dir), and its check runs again.
    cluster.kill(client);
    cluster.restart(client)?;
    let services = cluster
        .agent(client)?
        .get("/v1/agent/services")
        .await?
        .json()?;
    ensure!(services.get("api-1").is_some(), "after restart: {services}");
    cluster
        .agent(client)?
        .put_empty("/v1/agent/check/pass/service:api-1")
        .await?
        .expect_status(200)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_fail_with_no_cluster_leader() -> Result<()> {
    let mut cluster = Cluster::start(3, 0).await?;
    let leader = cluster.leader().await?;
    let survivor = (leader + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            cluster.kill(i);
        }
    }
    // The survivor notices it has no leader within an election timeout, then refuses writes after Consul's
    // 7 s hold (an election might still have produced one).
    let r = cluster.agent(survivor)?.put("/v1/kv/x", "1").await?;
    ensure!(
        r.status == 500,
        "write without quorum: {} {}",
        r.status,
        r.text()
    );
    ensure!(r.text().contains("No cluster leader"), "{}", r.text());
    let stale = cluster.agent(survivor)?.get("/v1/kv/x?stale").await?;
    ensure!(
        stale.header("x-consul-knownleader") == Some("false"),
        "{:?}",
        stale.header("x-consul-knownleader")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_removed_once_a_replacement_joins() -> Result<()> {
    let dir = weft_testkit::TempDir::new()?;
    let config = dir.write(
        "autopilot.json",
        json!({"autopilot": {"server_stabilization_time": "2s"}}).to_string(),
    )?;
    let mut cluster = Cluster::start_with(
        3,
        0,
        vec!["-config-file".into(), config.display().to_string()],
    )
    .await?;
    let peers = weft_testkit::cli(cluster.agent(0)?, &["operator", "raft", "list-peers"])?;
    ensure!(peers.code() == 0, "{}", peers.stderr);
    ensure!(peers.stdout.lines().count() == 4, "{}", peers.stdout);
    ensure!(
        peers.stdout.matches("leader").count() == 1,
        "{}",
        peers.stdout
    );

    let leader = cluster.leader().await?;
    let dead = (leader + 1) % 3;
    let dead_addr = cluster.rpc_addr(dead);
    cluster.kill(dead);
    // With only two of three voters alive nothing is removed: the cluster would lose its spare.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let config = cluster
        .agent(leader)?
        .get("/v1/operator/raft/configuration")
        .await?
        .json()?;
    ensure!(
        config["Servers"].as_array().map(|a| a.len()) == Some(3),
        "{config}"
    );

    // An operator turns cleanup off (autopilot's settings in the Raft state): the replacement joins and the dead
    // server stays; turned on again, it goes.
    let set = |cluster: &Cluster, on: &str| {
        weft_testkit::cli(
            cluster.agent(leader)?,
            &[
                "operator",
                "autopilot",
                "set-config",
                &format!("-cleanup-dead-servers={on}"),
            ],
        )
    };
    let off = set(&cluster, "false")?;
    ensure!(
        off.code() == 0 && off.stdout.contains("Configuration updated!"),
        "{} {}",
        off.stdout,
        off.stderr
    );
    let shown = weft_testkit::cli(
        cluster.agent(leader)?,
        &["operator", "autopilot", "get-config"],
    )?;
    ensure!(
        shown.stdout.contains("CleanupDeadServers = false"),
        "{}",
        shown.stdout
    );
    let replacement = cluster.add_server()?;
    let replacement_addr = cluster.rpc_addr(replacement);
    let four = || async {
        let config = cluster
            .agent(leader)?
            .get("/v1/operator/raft/configuration")
            .await?
            .json()?;
        Ok::<_, anyhow::Error>(config["Servers"].as_array().map_or(0, Vec::len) == 4)
    };
    eventually(Duration::from_secs(30), four).await?;
    // Well past the 2 s stabilization time and a few autopilot rounds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(four().await?, "a dead server was removed with cleanup off");
    let on = set(&cluster, "true")?;
    ensure!(on.code() == 0, "{} {}", on.stdout, on.stderr);
    eventually(Duration::from_secs(30), || async {
        let config = cluster
            .agent(leader)?
            .get("/v1/operator/raft/configuration")
            .await?
            .json()?;
        let addrs: Vec<String> = config["Servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["Address"].as_str().unwrap_or("").to_string())
            .collect();
        Ok::<_, anyhow::Error>(
            addrs.len() == 3 && !addrs.contains(&dead_addr) && addrs.contains(&replacement_addr),
        )
    })
    .await?;
    let health = cluster
        .agent(leader)?
        .get("/v1/operator/autopilot/health")
        .await?;
    ensure!(health.status == 200, "{} {}", health.status, health.text());
    ensure!(health.json()?["FailureTolerance"] == 1, "{}", health.text());
    // The same cluster in Consul's autopilot state shape: servers keyed by ID, one leader, three voters.
    let state = cluster
        .agent(leader)?
        .get("/v1/operator/autopilot/state")
        .await?;
    ensure!(state.status == 200, "{} {}", state.status, state.text());
    let state = state.json()?;
    let servers = state["Servers"].as_object().cloned().unwrap_or_default();
    ensure!(servers.len() == 3, "{state}");
    let leader_id = state["Leader"].as_str().unwrap_or_default();
    ensure!(
        servers
            .get(leader_id)
            .is_some_and(|s| s["Status"] == "leader"),
        "{state}"
    );
    ensure!(
        state["Voters"].as_array().map(Vec::len) == Some(3),
        "{state}"
    );
    ensure!(
        state["FailureTolerance"] == 1 && state["OptimisticFailureTolerance"] == 2,
        "{state}"
    );
    ensure!(
        servers
            .values()
            .all(|s| s["Healthy"] == true && s["NodeType"] == "voter"),
        "{state}"
    );
    // Writes go on through the new configuration.
    let r = cluster
        .agent(replacement)?
        .put("/v1/kv/after-replacement", "1")
        .await?;
    ensure!(r.text() == "true");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_tracks_members_and_a_failed_node_leaves_the_healthy_set() -> Result<()> {
    let mut cluster = Cluster::start(3, 2).await?;
    let (doomed, leaver) = (3, 4);
    cluster
        .agent(doomed)?
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "cache", "ID": "cache-1", "Port": 6379}),
        )
        .await?
        .expect_status(200)?;
    // `weft members` on a server lists all five agents alive, servers as "server".
    eventually(Duration::from_secs(15), || async {
        let out = weft_testkit::cli(cluster.agent(0)?, &["members"])?;
        let alive = out.stdout.lines().filter(|l| l.contains("alive")).count();
        Ok::<_, anyhow::Error>(alive == 5 && out.stdout.matches("server").count() == 3)
    })
    .await?;
    eventually(Duration::from_secs(10), || async {
        let h = cluster
            .agent(0)?
            .get("/v1/health/service/cache?passing")
            .await?
            .json()?;
        Ok::<_, anyhow::Error>(h.as_array().map(|a| a.len()) == Some(1))
    })
    .await?;

    // A node that dies: failed in gossip, serfHealth critical, its service out of the healthy set.
    let doomed_name = cluster.node(doomed).to_string();
    cluster.kill(doomed);
    eventually(Duration::from_secs(20), || async {
        let checks = cluster
            .agent(1)?
            .get(&format!("/v1/health/node/{doomed_name}"))
            .await?
            .json()?;
        let serf = checks
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["CheckID"] == "serfHealth")
            .map(|c| c["Status"].clone());
        Ok::<_, anyhow::Error>(serf == Some(json!("critical")))
    })
    .await?;
    let passing = cluster
        .agent(1)?
        .get("/v1/health/service/cache?passing")
        .await?
        .json()?;
    ensure!(passing.as_array().map(|a| a.len()) == Some(0), "{passing}");
    // Every member reaches the same verdict on its own (suspicion spreads by gossip).
    eventually(Duration::from_secs(15), || async {
        let members = cluster.agent(0)?.get("/v1/agent/members").await?.json()?;
        let status = members
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["Name"] == doomed_name.as_str())
            .map(|m| m["Status"].clone());
        Ok::<_, anyhow::Error>(status == Some(json!(4)))
    })
    .await?;

    // A node that leaves gracefully: status left, node deregistered.
    let leaver_name = cluster.node(leaver).to_string();
    let out = weft_testkit::cli(cluster.agent(leaver)?, &["leave"])?;
    ensure!(out.code() == 0, "{}", out.stderr);
    eventually(Duration::from_secs(15), || async {
        let nodes = cluster.agent(0)?.get("/v1/catalog/nodes").await?.json()?;
        let gone = !nodes
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| n["Node"] == leaver_name.as_str());
        let members = cluster.agent(0)?.get("/v1/agent/members").await?.json()?;
        let left = members
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["Name"] == leaver_name.as_str() && m["Status"] == 3);
        Ok::<_, anyhow::Error>(gone && left)
    })
    .await?;

    // force-leave turns the failed node into a left one, and the leader deregisters it.
    let out = weft_testkit::cli(cluster.agent(0)?, &["force-leave", &doomed_name])?;
    ensure!(out.code() == 0, "{}", out.stderr);
    eventually(Duration::from_secs(15), || async {
        let nodes = cluster.agent(0)?.get("/v1/catalog/nodes").await?.json()?;
        Ok::<_, anyhow::Error>(
            !nodes
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["Node"] == doomed_name.as_str()),
        )
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_encryption_keeps_out_agents_without_the_key() -> Result<()> {
    let key = weft_testkit::Cli::new().args(&["keygen"]).run()?;
    ensure!(key.code() == 0);
    let key = key.stdout.trim().to_string();
    ensure!(key.len() == 44, "a 32-byte key in base64: {key:?}");
    let mut cluster = Cluster::start_with(3, 0, vec!["-encrypt".into(), key]).await?;
    // A client agent with another key never appears among the members.
    let other = weft_testkit::Cli::new()
        .args(&["keygen"])
        .run()?
        .stdout
        .trim()
        .to_string();
    let intruder = cluster.add_client_with(vec!["-encrypt".into(), other])?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let members = cluster.agent(0)?.get("/v1/agent/members").await?.json()?;
    ensure!(members.as_array().map(|a| a.len()) == Some(3), "{members}");
    let own = cluster
        .agent(intruder)?
        .get("/v1/agent/members")
        .await?
        .json()?;
    ensure!(own.as_array().map(|a| a.len()) == Some(1), "{own}");
    // A bad key is refused at start with a clear message.
    let bad = weft_testkit::Cli::new()
        .args(&[
            "agent",
            "-data-dir",
            "/nonexistent-weft",
            "-retry-join",
            "127.0.0.1",
            "-encrypt",
            "short",
        ])
        .run()?;
    ensure!(
        bad.code() != 0 && bad.stderr.contains("encrypt"),
        "{}",
        bad.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_server_an_operator_names() -> Result<()> {
    let cluster = Cluster::start(3, 0).await?;
    let old = cluster.leader().await?;
    let config = cluster
        .agent(old)?
        .get("/v1/operator/raft/configuration")
        .await?
        .json()?;
    let Some(target) = config["Servers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["Leader"] == false)
        .cloned()
    else {
        bail!("no follower in {config}");
    };
    let id = target["ID"].as_str().unwrap_or_default().to_string();
    // Asked of a follower: forwarded to the leader, which hands over.
    let via = (0..3).find(|i| *i != old).unwrap_or(0);
    let out = weft_testkit::cli(
        cluster.agent(via)?,
        &["operator", "raft", "transfer-leader", "-id", &id],
    )?;
    ensure!(
        out.code() == 0 && out.stdout.trim() == "Success",
        "{} {}{}",
        out.code(),
        out.stdout,
        out.stderr
    );
    let new = cluster.wait_for_leader().await?;
    ensure!(
        cluster.rpc_addr(new) == target["Address"].as_str().unwrap_or_default(),
        "leader is {} after naming {target}",
        cluster.rpc_addr(new)
    );
    let r = cluster
        .agent(old)?
        .put("/v1/kv/after-transfer", "1")
        .await?;
    ensure!(r.text() == "true", "{} {}", r.status, r.text());
    // Without -id, another server; an unknown ID is refused.
    let r = cluster
        .agent(0)?
        .request("POST", "/v1/operator/raft/transfer-leader", None)
        .await?;
    ensure!(
        r.status == 200 && r.json()?["Success"] == true,
        "{} {}",
        r.status,
        r.text()
    );
    let newer = cluster.wait_for_leader().await?;
    ensure!(newer != new, "leadership stayed with {new}");
    let r = cluster
        .agent(0)?
        .request("POST", "/v1/operator/raft/transfer-leader?id=12345", None)
        .await?;
    ensure!(r.status == 400, "{} {}", r.status, r.text());
    Ok(())
}

fn keygen() -> Result<String> {
    let out = weft_testkit::Cli::new().args(&["keygen"]).run()?;
    ensure!(out.code() == 0, "{}", out.stderr);
    Ok(out.stdout.trim().to_string())
}

/// Members alive as `agent` sees them.
async fn alive_members(agent: &weft_testkit::DevAgent) -> Result<usize> {
    let members = agent.get("/v1/agent/members").await?.json()?;
    Ok(members
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Status"] == 1)
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gossip_key_rotates_across_a_running_cluster() -> Result<()> {
    let (k1, k2) = (keygen()?, keygen()?);
    let mut cluster = Cluster::start_with(3, 1, vec!["-encrypt".into(), k1.clone()]).await?;
    let client = 3;
    let keyring = |args: &[&str]| -> Result<weft_testkit::CliOutput> {
        let mut all = vec!["keyring"];
        all.extend_from_slice(args);
        weft_testkit::cli(cluster.agent(client)?, &all)
    };
    let listed = keyring(&["-list"])?;
    ensure!(
        listed.code() == 0
            && listed
                .stdout
                .contains("==> Gathering installed encryption keys...")
            && listed.stdout.contains("dc1 (LAN):")
            && listed.stdout.contains(&format!("  {k1} [4/4]")),
        "{}{}",
        listed.stdout,
        listed.stderr
    );

    // Installed through a server's HTTP API, in Consul's shapes, on every member.
    let r = cluster
        .agent(0)?
        .request(
            "POST",
            "/v1/operator/keyring",
            Some(json!({ "Key": k2 }).to_string().into_bytes()),
        )
        .await?;
    ensure!(r.status == 200, "{} {}", r.status, r.text());
    let rings = cluster
        .agent(1)?
        .get("/v1/operator/keyring")
        .await?
        .json()?;
    let lan = &rings[0];
    ensure!(
        lan["WAN"] == false
            && lan["Datacenter"] == "dc1"
            && lan["NumNodes"] == 4
            && lan["Keys"][&k1] == 4
            && lan["Keys"][&k2] == 4
            && lan["PrimaryKeys"][&k1] == 4,
        "{rings}"
    );

    // Switched to, then the old key removed, through the CLI.
    let used = keyring(&["-use", &k2])?;
    ensure!(
        used.code() == 0
            && used
                .stdout
                .contains("==> Changing primary gossip encryption key..."),
        "{}{}",
        used.stdout,
        used.stderr
    );
    let refused = keyring(&["-remove", &k2])?;
    ensure!(
        refused.code() == 1
            && refused
                .stderr
                .contains("Removing the primary key is not allowed"),
        "removing the primary key: {} {}",
        refused.code(),
        refused.stderr
    );
    let removed = keyring(&["-remove", &k1])?;
    ensure!(removed.code() == 0, "{}", removed.stderr);
    let primary = keyring(&["-list-primary"])?;
    ensure!(
        primary.stdout.contains(&format!("  {k2} [4/4]")) && !primary.stdout.contains(&k1),
        "{}",
        primary.stdout
    );

    // Gossip and RPC (whose MACs are keyed from the gossip keys) carried on: everyone is alive and a write through
    // the client agent, forwarded to the leader, succeeds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..4 {
        ensure!(
            alive_members(cluster.agent(i)?).await? == 4,
            "member {i} lost someone"
        );
    }
    let r = cluster.agent(client)?.put("/v1/kv/rotated", "yes").await?;
    ensure!(
        r.text() == "true",
        "a write after the rotation: {} {}",
        r.status,
        r.text()
    );

    // A server restarted with the old key on its command line comes back with the keyring it kept.
    let leader = cluster.leader().await?;
    let follower = (0..3).find(|i| *i != leader).unwrap_or(0);
    cluster.kill(follower);
    cluster.restart(follower)?;
    eventually(Duration::from_secs(20), || async {
        Ok::<_, anyhow::Error>(alive_members(cluster.agent(follower)?).await? == 4)
    })
    .await?;
    // ... and catches up over server RPC, whose requests are signed with the rotated key.
    eventually(Duration::from_secs(20), || async {
        let r = cluster
            .agent(follower)?
            .get("/v1/kv/rotated?raw&stale")
            .await?;
        Ok::<_, anyhow::Error>(r.text() == "yes")
    })
    .await
    .with_context(|| {
        format!(
            "the restarted server's copy:\n{}",
            cluster
                .agent(follower)
                .map(|a| a.recent_output())
                .unwrap_or_default()
        )
    })?;

    // A newcomer with only the old key stays outside; one with the new key joins.
    let stale = cluster.add_client_with(vec!["-encrypt".into(), k1.clone()])?;
    let fresh = cluster.add_client_with(vec!["-encrypt".into(), k2.clone()])?;
    eventually(Duration::from_secs(20), || async {
        Ok::<_, anyhow::Error>(alive_members(cluster.agent(0)?).await? == 5)
    })
    .await?;
    ensure!(alive_members(cluster.agent(stale)?).await? == 1);
    ensure!(alive_members(cluster.agent(fresh)?).await? == 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_operations_without_encryption_fail_with_consul_s_text() -> Result<()> {
    let cluster = Cluster::start(1, 0).await?;
    let agent = cluster.agent(0)?;
    let r = agent.get("/v1/operator/keyring").await?;
    ensure!(
        r.status == 500
            && r.text()
                .contains("Keyring is empty (encryption not enabled)"),
        "{} {}",
        r.status,
        r.text()
    );
    let r = agent
        .request(
            "POST",
            "/v1/operator/keyring",
            Some(json!({ "Key": keygen()? }).to_string().into_bytes()),
        )
        .await?;
    ensure!(
        r.status == 500
            && r.text()
                .contains("No keyring to modify (encryption not enabled)"),
        "{} {}",
        r.status,
        r.text()
    );
    for bad in [
        json!({ "Key": "not base64!" }),
        json!({ "Key": "AAAA" }),
        json!({}),
    ] {
        let r = agent
            .request(
                "PUT",
                "/v1/operator/keyring",
                Some(bad.to_string().into_bytes()),
            )
            .await?;
        ensure!(r.status == 400, "{bad}: {} {}", r.status, r.text());
    }
    let r = agent.get("/v1/operator/keyring?relay-factor=6").await?;
    ensure!(r.status == 400, "{} {}", r.status, r.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_file_of_weft_s_earlier_format_still_restores() -> Result<()> {
    // Saved by Weft before snapshots became Consul's archive (a dev agent with one key and one intention).
    let earlier = include_bytes!("fixtures/weft-snapshot-v1.snap");
    let cluster = Cluster::start(1, 0).await?;
    let server = cluster.agent(0)?;
    let r = server.put("/v1/snapshot", earlier.to_vec()).await?;
    ensure!(r.status == 200, "{} {}", r.status, r.text());
    ensure!(server.get("/v1/kv/legacy/kept?raw").await?.text() == "yes");
    let check = server
        .get("/v1/connect/intentions/check?source=web&destination=db")
        .await?
        .json()?;
    ensure!(check["Allowed"] == false, "{check}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_the_whole_state_on_a_fresh_cluster() -> Result<()> {
    let dir = weft_testkit::TempDir::new()?;
    let file = dir.path().join("backup.snap");
    let file_s = file.display().to_string();
    let backed_up_root = {
        let cluster = Cluster::start(3, 0).await?;
        let a = cluster.agent(1)?;
        // The leader initialises the CA just after it is elected: a backup to restore must hold it.
        let root = weft_testkit::eventually(Duration::from_secs(10), || async {
            let roots = a.get("/v1/connect/ca/roots").await.ok()?.json().ok()?;
            roots["ActiveRootID"]
                .as_str()
                .filter(|id| !id.is_empty())
                .map(str::to_string)
        })
        .await?;
        a.put("/v1/kv/app/config", "v1").await?.expect_status(200)?;
        a.put_json(
            "/v1/connect/intentions/exact?source=web&destination=db",
            &json!({"Action": "deny"}),
        )
        .await?
        .expect_status(200)?;
        let out = weft_testkit::cli(a, &["snapshot", "save", &file_s])?;
        ensure!(out.code() == 0, "{}", out.stderr);
        ensure!(
            out.stdout.contains("Saved and verified snapshot"),
            "{}",
            out.stdout
        );
        // Consul's archive: a gzipped tar whose SHA256SUMS GNU tar and sha256sum accept, and that
        // `snapshot inspect` reads as Consul's does.
        let unpacked = dir.path().join("unpacked");
        std::fs::create_dir(&unpacked)?;
        let tar = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(&file)
            .arg("-C")
            .arg(&unpacked)
            .output()?;
        ensure!(
            tar.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
        let sums = std::process::Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(&unpacked)
            .output()?;
        let said = String::from_utf8_lossy(&sums.stdout).into_owned();
        ensure!(
            sums.status.success()
                && said.contains("meta.json: OK")
                && said.contains("state.bin: OK"),
            "{said}"
        );
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(unpacked.join("meta.json"))?)?;
        ensure!(
            meta["Version"] == 1 && meta["Index"].as_u64() > Some(0),
            "{meta}"
        );
        ensure!(
            meta["Configuration"]["Servers"].as_array().map(Vec::len) == Some(3),
            "{meta}"
        );
        let out = weft_testkit::Cli::new()
            .args(&["snapshot", "inspect", &file_s])
            .run()?;
        ensure!(out.code() == 0, "{}", out.stderr);
        for field in [" ID ", " Size ", " Index ", " Term ", " Version "] {
            ensure!(
                out.stdout.contains(field),
                "{field:?} missing in:\n{}",
                out.stdout
            );
        }
        root
    };
    let fresh = Cluster::start(3, 0).await?;
    let b = fresh.agent(2)?;
    // A truncated copy is refused and changes nothing.
    let bytes = std::fs::read(&file)?;
    let cut = dir.write("cut.snap", &bytes[..bytes.len() / 2])?;
    let out = weft_testkit::cli(b, &["snapshot", "restore", &cut.display().to_string()])?;
    ensure!(
        out.code() == 1 && out.stderr.contains("truncated"),
        "{}",
        out.stderr
    );
    let r = b
        .put("/v1/snapshot", bytes[..bytes.len() / 2].to_vec())
        .await?;
    ensure!(r.status == 400, "{} {}", r.status, r.text());
    ensure!(b.get("/v1/kv/app/config").await?.status == 404);

    let out = weft_testkit::cli(b, &["snapshot", "restore", &file_s])?;
    ensure!(out.code() == 0, "{}", out.stderr);
    for i in 0..3 {
        let v = fresh.agent(i)?.get("/v1/kv/app/config?raw").await?;
        ensure!(v.text() == "v1", "server {i}: {:?}", v.text());
    }
    let check = b
        .get("/v1/connect/intentions/check?source=web&destination=db")
        .await?
        .json()?;
    ensure!(check["Allowed"] == false, "{check}");
    // The backup's CA came with its key: the restored root is active here and signs.
    let roots = b.get("/v1/connect/ca/roots").await?.json()?;
    ensure!(roots["ActiveRootID"] == backed_up_root.as_str(), "{roots}");
    let leaf = b.get("/v1/agent/connect/ca/leaf/restored").await?;
    ensure!(leaf.status == 200, "leaf: {} {}", leaf.status, leaf.text());
    Ok(())
}

/// Runs `weft agent ...` that must refuse to start; answers its stderr.
fn refused(args: &[&str]) -> Result<String> {
    let out = weft_testkit::Cli::new().args(args).run()?;
    ensure!(
        out.code() == 1,
        "expected exit 1 from {args:?}, got {}: {}",
        out.code(),
        out.stderr
    );
    let lines = out.stderr.lines().filter(|l| !l.trim().is_empty()).count();
    ensure!(
        lines <= 2,
        "one clear line (and a usage hint), not: {}",
        out.stderr
    );
    Ok(out.stderr)
}

#[test]
fn bad_cluster_flags_are_refused_with_one_clear_line() -> Result<()> {
    let dir = weft_testkit::TempDir::new()?;
    let d = dir.path().display().to_string();
    let e = refused(&[
        "agent",
        "-data-dir",
        &d,
        "-bootstrap-expect",
        "3",
        "-retry-join",
        "127.0.0.1",
    ])?;
    ensure!(
        e.contains("bootstrap_expect can only be set on servers"),
        "{e}"
    );
    let e = refused(&[
        "agent",
        "-server",
        "-data-dir",
        &d,
        "-bootstrap-expect",
        "0",
    ])?;
    ensure!(e.contains("at least 1"), "{e}");
    let e = refused(&[
        "agent",
        "-server",
        "-bootstrap-expect",
        "three",
        "-data-dir",
        &d,
    ])?;
    ensure!(e.contains("three"), "{e}");
    let e = refused(&["agent", "-dev", "-retry-join", "127.0.0.1"])?;
    ensure!(e.contains("-dev"), "{e}");
    let e = refused(&["agent", "-data-dir", &d])?;
    ensure!(e.contains("-retry-join"), "{e}");
    let e = refused(&["agent", "-server", "-bootstrap-expect", "1"])?;
    ensure!(e.contains("data_dir"), "{e}");
    Ok(())
}

/// A one-server cluster on `data_dir` that must refuse to start.
fn refused_server(data_dir: &str) -> Result<String> {
    refused(&[
        "agent",
        "-server",
        "-bootstrap-expect",
        "1",
        "-data-dir",
        data_dir,
        "-http-port",
        "0",
    ])
}

#[test]
fn a_data_dir_of_another_kind_is_refused_and_left_untouched() -> Result<()> {
    let dir = weft_testkit::TempDir::new()?;
    let d = dir.path().display().to_string();
    // Not a node ID where one belongs.
    std::fs::write(dir.path().join("node-id"), "not a uuid")?;
    let e = refused_server(&d)?;
    ensure!(e.contains("node ID"), "{e}");
    ensure!(std::fs::read_to_string(dir.path().join("node-id"))? == "not a uuid");
    // A data dir written for another datacenter.
    let other = weft_testkit::TempDir::new()?;
    let o = other.path().display().to_string();
    std::fs::write(
        other.path().join("weft.json"),
        r#"{"datacenter":"dc9","server":true}"#,
    )?;
    let e = refused_server(&o)?;
    ensure!(e.contains("dc9"), "{e}");
    Ok(())
}

/// A CA and one server certificate made by `weft tls`, and an agent config file that uses them: as files, or with
/// the PEM text inline (`ca_pem`, `cert_pem`, `key_pem`, as an ECS task gets them from a secret).
fn tls_config(dir: &weft_testkit::TempDir, inline: bool) -> Result<std::path::PathBuf> {
    let d = dir.path().display().to_string();
    let ca = weft_testkit::Cli::new()
        .args(&["tls", "ca", "create", "-dir", &d])
        .run()?;
    ensure!(ca.code() == 0, "{}", ca.stderr);
    let ca_file = format!("{d}/weft-agent-ca.pem");
    let ca_key = format!("{d}/weft-agent-ca-key.pem");
    let cert = weft_testkit::Cli::new()
        .args(&[
            "tls", "cert", "create", "-server", "-dir", &d, "-ca", &ca_file, "-key", &ca_key,
        ])
        .run()?;
    ensure!(cert.code() == 0, "{}", cert.stderr);
    let cert_file = format!("{d}/dc1-server-weft-0.pem");
    let key_file = format!("{d}/dc1-server-weft-0-key.pem");
    let config = if inline {
        json!({"tls": {"defaults": {
            "ca_pem": std::fs::read_to_string(&ca_file)?,
            "cert_pem": std::fs::read_to_string(&cert_file)?,
            "key_pem": std::fs::read_to_string(&key_file)?,
            "verify_incoming": true,
        }}})
    } else {
        json!({"tls": {"defaults": {
            "ca_file": ca_file, "cert_file": cert_file, "key_file": key_file, "verify_incoming": true,
        }}})
    };
    dir.write("tls.json", config.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rpc_runs_over_tls_and_refuses_strangers() -> Result<()> {
    let ours = weft_testkit::TempDir::new()?;
    let config = tls_config(&ours, true)?;
    let mut cluster = Cluster::start_with(
        3,
        1,
        vec!["-config-file".into(), config.display().to_string()],
    )
    .await?;
    // Writes from a client agent reach the leader over TLS; reads through any server see them.
    let r = cluster.agent(3)?.put("/v1/kv/secure", "1").await?;
    ensure!(r.text() == "true", "{} {}", r.status, r.text());
    ensure!(cluster.agent(0)?.get("/v1/kv/secure?raw").await?.text() == "1");
    // Plain HTTP to the RPC port gets nowhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .post(format!("http://{}/v1/internal/hello", cluster.rpc_addr(0)))
        .body("null")
        .send()
        .await;
    ensure!(
        plain.is_err(),
        "plain HTTP was answered on the TLS RPC port: {plain:?}"
    );
    // An agent with certificates from another CA cannot write.
    let theirs = weft_testkit::TempDir::new()?;
    let other = tls_config(&theirs, false)?;
    let intruder =
        cluster.add_client_with(vec!["-config-file".into(), other.display().to_string()])?;
    let r = cluster.agent(intruder)?.put("/v1/kv/intruder", "1").await?;
    ensure!(
        r.status == 500,
        "a stranger's write: {} {}",
        r.status,
        r.text()
    );
    ensure!(cluster.agent(0)?.get("/v1/kv/intruder").await?.status == 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_survives_a_leader_change_and_its_session_still_expires() -> Result<()> {
    let dir = weft_testkit::TempDir::new()?;
    let config = dir.write(
        "sessions.json",
        json!({"session_ttl_min": "1s"}).to_string(),
    )?;
    let mut cluster = Cluster::start_with(
        3,
        0,
        vec!["-config-file".into(), config.display().to_string()],
    )
    .await?;
    let leader = cluster.leader().await?;
    let via = (leader + 1) % 3;
    let created = cluster
        .agent(via)?
        .put_json(
            "/v1/session/create",
            &json!({"TTL": "2s", "Behavior": "release"}),
        )
        .await?
        .json()?;
    let id = created["ID"].as_str().unwrap_or_default().to_string();
    let r = cluster
        .agent(via)?
        .put(&format!("/v1/kv/lock?acquire={id}"), "me")
        .await?;
    ensure!(r.text() == "true", "acquire: {}", r.text());
    cluster.kill(leader);
    cluster.wait_for_leader().await?;
    // The new leader rebuilt the session's timer: renewals work and the lock is still held.
    for _ in 0..3 {
        let r = cluster
            .agent(via)?
            .put_empty(&format!("/v1/session/renew/{id}"))
            .await?;
        ensure!(
            r.status == 200,
            "renew after failover: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let held = cluster.agent(via)?.get("/v1/kv/lock").await?.json()?;
    ensure!(held[0]["Session"] == id.as_str(), "{held}");
    // Without renewals the session expires (TTL x 2) and the lock is released.
    eventually(Duration::from_secs(15), || async {
        let entry = cluster.agent(via)?.get("/v1/kv/lock").await?.json()?;
        Ok::<_, anyhow::Error>(
            entry[0]
                .get("Session")
                .is_none_or(|s| s.is_null() || s == ""),
        )
    })
    .await?;
    Ok(())
}
