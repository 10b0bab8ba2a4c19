//! WAN federation between three datacenters on 127.0.0.1: dc1 (a server and a client agent), dc2 and dc3 (a server
//! each), whose servers meet in the WAN pool with the same gossip key (so every cross-datacenter RPC request is
//! signed with it). Requests naming `?dc=dc2` made to dc1's client agent are answered by dc2; prepared queries fail over
//! to dc2 when dc1 has no healthy instance; both datacenters list each other, nearest first, with coordinates.

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::time::Duration;
use weft_testkit::cli::cli;
use weft_testkit::dig::{dig, short};
use weft_testkit::{eventually, Cluster, DevAgent};

/// The same gossip key in both datacenters (32 bytes, base64).
const KEY: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=";

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn json_of(agent: &DevAgent, path: &str) -> Result<Value> {
    let r = agent.get(path).await?;
    ensure!(r.status == 200, "{path}: {} {}", r.status, r.text());
    r.json()
}

/// A one-server datacenter named `dc`, with `extra` arguments.
async fn datacenter(dc: &str, extra: &[&str]) -> Result<Cluster> {
    let mut all = vec!["-datacenter", dc];
    all.extend_from_slice(extra);
    Cluster::start_with(1, 0, args(&all)).await
}

/// dc1 and dc2, one server each, federated over the WAN pool (dc2 joins dc1), each with its own extra arguments.
async fn federated_pair(dc1_extra: &[&str], dc2_extra: &[&str]) -> Result<(Cluster, Cluster)> {
    let wan1 = weft_testkit::net::free_gossip_port()?.to_string();
    let wan2 = weft_testkit::net::free_gossip_port()?.to_string();
    let join = format!("127.0.0.1:{wan1}");
    let mut one = vec!["-serf-wan-port", wan1.as_str()];
    one.extend_from_slice(dc1_extra);
    let mut two = vec![
        "-serf-wan-port",
        wan2.as_str(),
        "-retry-join-wan",
        join.as_str(),
    ];
    two.extend_from_slice(dc2_extra);
    Ok((
        datacenter("dc1", &one).await?,
        datacenter("dc2", &two).await?,
    ))
}

/// Registers a `db` instance with this ID and address on `agent`.
async fn register_db(agent: &DevAgent, id: &str, address: &str) -> Result<()> {
    let r = agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "db", "ID": id, "Port": 5432, "Address": address}),
        )
        .await?;
    ensure!(r.status == 200, "register {id}: {} {}", r.status, r.text());
    Ok(())
}

/// Creates a prepared query `name` for `db` with this failover, with `?token=` when given.
async fn create_query(agent: &DevAgent, name: &str, failover: Value, token: &str) -> Result<()> {
    let path = if token.is_empty() {
        "/v1/query".to_string()
    } else {
        format!("/v1/query?token={token}")
    };
    let body = json!({"Name": name, "Service": {"Service": "db", "Failover": failover}});
    let r = agent
        .request("POST", &path, Some(serde_json::to_vec(&body)?))
        .await?;
    ensure!(r.status == 200, "create {name}: {} {}", r.status, r.text());
    Ok(())
}

async fn execute(agent: &DevAgent, query: &str) -> Result<Value> {
    json_of(agent, &format!("/v1/query/{query}/execute")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datacenters_federate_over_the_wan_pool() -> Result<()> {
    let wan1 = weft_testkit::net::free_gossip_port()?;
    let wan2 = weft_testkit::net::free_gossip_port()?;
    let mut dc1 = datacenter(
        "dc1",
        &["-encrypt", KEY, "-serf-wan-port", &wan1.to_string()],
    )
    .await?;
    let client = dc1.add_client_with(args(&["-datacenter", "dc1", "-encrypt", KEY]))?;
    let dc2 = datacenter(
        "dc2",
        &[
            "-encrypt",
            KEY,
            "-serf-wan-port",
            &wan2.to_string(),
            "-retry-join-wan",
            &format!("127.0.0.1:{wan1}"),
        ],
    )
    .await?;
    // dc3 opens a WAN port and is joined by hand, with `weft join -wan`.
    let wan3 = weft_testkit::net::free_gossip_port()?;
    let dc3 = datacenter(
        "dc3",
        &["-encrypt", KEY, "-serf-wan-port", &wan3.to_string()],
    )
    .await?;
    dc1.wait_for_catalog().await?;
    let (s1, c1, s2, s3) = (
        dc1.agent(0)?,
        dc1.agent(client)?,
        dc2.agent(0)?,
        dc3.agent(0)?,
    );
    let out = cli(s3, &["join", "-wan", &format!("127.0.0.1:{wan2}")])?;
    ensure!(out.code() == 0, "weft join -wan: {}", out.stderr);
    let out = cli(c1, &["join", "-wan", &format!("127.0.0.1:{wan2}")])?;
    ensure!(
        out.code() == 1 && out.stderr.contains("not in a WAN pool"),
        "a client agent joined a WAN pool: {}",
        out.stderr
    );

    // Every datacenter knows the others, each listing itself first; the client agent asks its servers.
    eventually(Duration::from_secs(30), || async {
        for (agent, own) in [(s1, "dc1"), (c1, "dc1"), (s2, "dc2"), (s3, "dc3")] {
            let list = json_of(agent, "/v1/catalog/datacenters").await?;
            let mut names: Vec<&str> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            ensure!(names.first() == Some(&own), "{own}: {list}");
            names.sort();
            ensure!(names == ["dc1", "dc2", "dc3"], "{own}: {list}");
        }
        Ok(())
    })
    .await
    .context("the datacenters did not find each other")?;
    // The WAN pool's members are the servers, named node.dc; a client agent is in none.
    let members = json_of(s2, "/v1/agent/members?wan=1").await?;
    let mut names: Vec<String> = members
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| format!("{} {}", m["Name"].as_str().unwrap_or(""), m["Tags"]["dc"]))
        .collect();
    names.sort();
    ensure!(
        names
            == [
                format!("{}.dc1 \"dc1\"", dc1.node(0)),
                format!("{}.dc2 \"dc2\"", dc2.node(0)),
                format!("{}.dc3 \"dc3\"", dc3.node(0)),
            ],
        "{members}"
    );
    ensure!(json_of(c1, "/v1/agent/members?wan=1").await? == json!([]));
    let out = cli(s1, &["members", "-wan"])?;
    ensure!(
        out.code() == 0 && out.stdout.contains(&format!("{}.dc3", dc3.node(0))),
        "weft members -wan: {} {}",
        out.stdout,
        out.stderr
    );

    // A service only dc2 has, reached through dc1's client agent.
    register_db(s2, "db-2", "10.2.0.1").await?;
    eventually(Duration::from_secs(20), || async {
        let list = json_of(c1, "/v1/catalog/service/db?dc=dc2").await?;
        ensure!(list.as_array().map_or(0, Vec::len) == 1, "{list}");
        ensure!(list[0]["Datacenter"] == "dc2", "{list}");
        Ok(())
    })
    .await?;
    let here = json_of(c1, "/v1/catalog/service/db").await?;
    ensure!(here == json!([]), "dc1 has no db: {here}");
    let health = json_of(c1, "/v1/health/service/db?dc=dc2&passing").await?;
    ensure!(health[0]["Service"]["ID"] == "db-2", "{health}");

    // Writes too: a key written in dc2 through dc1 stays in dc2.
    let r = c1.put("/v1/kv/where?dc=dc2", "dc2").await?;
    ensure!(
        r.status == 200 && r.text() == "true",
        "{} {}",
        r.status,
        r.text()
    );
    ensure!(c1.get("/v1/kv/where?dc=dc2&raw").await?.text() == "dc2");
    ensure!(c1.get("/v1/kv/where").await?.status == 404);
    ensure!(s2.get("/v1/kv/where?raw").await?.text() == "dc2");
    // Status and user events for another datacenter are answered and spread there, as in Consul.
    let leader = json_of(c1, "/v1/status/leader?dc=dc2").await?;
    ensure!(
        leader == json!(dc2.rpc_addr(0)),
        "{leader} is not dc2's server"
    );
    let r = c1.put("/v1/event/fire/deploy?dc=dc2", "v2").await?;
    ensure!(r.status == 200, "{} {}", r.status, r.text());
    eventually(Duration::from_secs(10), || async {
        let there = json_of(s2, "/v1/event/list?name=deploy").await?;
        ensure!(there.as_array().map_or(0, Vec::len) == 1, "{there}");
        Ok(())
    })
    .await?;
    ensure!(json_of(c1, "/v1/event/list?name=deploy").await? == json!([]));
    // The CLI's -datacenter, as Consul's.
    let out = cli(c1, &["kv", "get", "-datacenter", "dc2", "where"])?;
    ensure!(
        out.code() == 0 && out.stdout.trim() == "dc2",
        "{} {}",
        out.stdout,
        out.stderr
    );

    // An unknown datacenter is Consul's error, from clients and servers alike.
    for agent in [c1, s1] {
        let r = agent.get("/v1/catalog/nodes?dc=dc9").await?;
        ensure!(
            r.status == 500 && r.text() == "No path to datacenter",
            "{} {}",
            r.status,
            r.text()
        );
    }

    // Prepared queries: no db in dc1, so those with a failover answer from dc2.
    for (name, failover) in [
        ("db-nearest", json!({"NearestN": 1})),
        ("db-listed", json!({"Datacenters": ["dc9", "dc3", "dc2"]})),
        ("db-none", json!({})),
    ] {
        create_query(c1, name, failover, "").await?;
    }
    // The nearest other datacenter may be dc3, which has no db either: NearestN 1 then finds nothing.
    let answer = execute(c1, "db-nearest").await?;
    let nearest = json_of(s1, "/v1/catalog/datacenters").await?[1].clone();
    ensure!(answer["Failovers"] == 1, "{answer}");
    if nearest == "dc2" {
        ensure!(answer["Datacenter"] == "dc2", "{answer}");
        ensure!(answer["Nodes"][0]["Service"]["ID"] == "db-2", "{answer}");
    } else {
        ensure!(
            answer["Datacenter"] == "dc1" && answer["Nodes"] == json!([]),
            "{answer}"
        );
    }
    // Listed ones in order: dc9 is unknown and skipped uncounted, dc3 is tried and has none, dc2 answers.
    let answer = execute(c1, "db-listed").await?;
    ensure!(answer["Datacenter"] == "dc2", "{answer}");
    ensure!(answer["Failovers"] == 2, "{answer}");
    ensure!(answer["Nodes"][0]["Service"]["ID"] == "db-2", "{answer}");
    // DNS on dc1's client agent: another datacenter's names are asked of it, and queries fail over as over HTTP.
    let dns = c1.dns_addr().context("no DNS address")?;
    ensure!(short(dns, &["db.service.dc2.consul", "A"])? == ["10.2.0.1"]);
    ensure!(short(dns, &["db.service.dc2.dc.consul", "A"])? == ["10.2.0.1"]);
    ensure!(short(dns, &["db.service.consul", "A"])?.is_empty());
    let srv = short(dns, &["_db._tcp.dc2.consul", "SRV"])?;
    ensure!(
        srv.len() == 1 && srv[0].starts_with("1 1 5432 ") && srv[0].ends_with(".addr.dc2.consul."),
        "{srv:?}"
    );
    // (Once the client agent's replica holds the query.)
    eventually(Duration::from_secs(10), || async {
        ensure!(short(dns, &["db-listed.query.consul", "A"])? == ["10.2.0.1"]);
        Ok(())
    })
    .await?;
    ensure!(short(dns, &["db-none.query.consul", "A"])?.is_empty());
    let node = format!("{}.node.dc2.consul", dc2.node(0));
    ensure!(short(dns, &[&node, "A"])? == ["127.0.0.1"]);
    let unknown = dig(dns, &["db.service.dc9.consul", "A"])?;
    ensure!(unknown.contains("status: NXDOMAIN"), "{unknown}");
    // The dashboard: dc2's pages through dc1's client agent, rendered by dc2 (its services, its name in the chrome).
    let page = c1.get("/ui/dc2/services").await?;
    ensure!(page.status == 200, "{} {}", page.status, page.text());
    let html = page.text();
    ensure!(
        html.contains("/ui/dc2/services/db") && html.contains("<option selected>dc2</option>"),
        "{html}"
    );
    let page = c1.get("/ui/dc2/nodes").await?;
    ensure!(
        page.status == 200 && page.text().contains(dc2.node(0)),
        "{}",
        page.text()
    );
    // A client agent is in no WAN pool: a stale read of the datacenters still asks its servers.
    ensure!(
        json_of(c1, "/v1/catalog/datacenters?stale")
            .await?
            .as_array()
            .map_or(0, Vec::len)
            == 3
    );
    let page = c1.get("/ui/dc9/services").await?;
    ensure!(
        page.status == 404 && page.text().contains("Unknown datacenter"),
        "{}",
        page.text()
    );
    let answer = execute(c1, "db-none").await?;
    ensure!(
        answer["Datacenter"] == "dc1" && answer["Failovers"] == 0 && answer["Nodes"] == json!([]),
        "{answer}"
    );
    // Once dc1 has a healthy instance, it answers itself.
    register_db(c1, "db-1", "10.1.0.1").await?;
    eventually(Duration::from_secs(20), || async {
        let answer = execute(c1, "db-nearest").await?;
        ensure!(answer["Datacenter"] == "dc1", "{answer}");
        ensure!(answer["Failovers"] == 0, "{answer}");
        ensure!(answer["Nodes"][0]["Service"]["ID"] == "db-1", "{answer}");
        Ok(())
    })
    .await?;

    // Gossip key rotation through dc1's client agent reaches every datacenter: the WAN ring (the three servers)
    // and each datacenter's LAN ring, and cross-datacenter requests keep working at every step.
    let rings = |list: &Value| -> Vec<String> {
        let mut out: Vec<String> = list
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let keys = e["Keys"].as_object().map_or(0, |k| k.len());
                format!(
                    "{} {} nodes={} keys={keys}",
                    e["WAN"], e["Datacenter"], e["NumNodes"]
                )
            })
            .collect();
        out.sort();
        out
    };
    let list = json_of(c1, "/v1/operator/keyring").await?;
    ensure!(
        rings(&list)
            == [
                "false \"dc1\" nodes=2 keys=1",
                "false \"dc2\" nodes=1 keys=1",
                "false \"dc3\" nodes=1 keys=1",
                "true \"dc1\" nodes=3 keys=1",
            ],
        "{list}"
    );
    const NEW_KEY: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=";
    let body = serde_json::to_vec(&json!({"Key": NEW_KEY}))?;
    for (method, what) in [("POST", "install"), ("PUT", "use")] {
        let r = c1
            .request(method, "/v1/operator/keyring", Some(body.clone()))
            .await?;
        ensure!(r.status == 200, "{what}: {} {}", r.status, r.text());
        let list = json_of(c1, "/v1/operator/keyring").await?;
        for entry in list.as_array().into_iter().flatten() {
            ensure!(
                entry["Keys"][NEW_KEY] == entry["NumNodes"],
                "{what}: {entry}"
            );
        }
        ensure!(json_of(c1, "/v1/catalog/service/db?dc=dc2").await?[0]["ServiceID"] == "db-2");
    }
    let r = c1
        .request(
            "DELETE",
            "/v1/operator/keyring",
            Some(serde_json::to_vec(&json!({"Key": KEY}))?),
        )
        .await?;
    ensure!(r.status == 200, "remove: {} {}", r.status, r.text());
    let list = json_of(s3, "/v1/operator/keyring").await?;
    ensure!(
        rings(&list).iter().all(|r| r.ends_with("keys=1"))
            && list.as_array().map_or(0, Vec::len) == 4,
        "{list}"
    );
    ensure!(json_of(s3, "/v1/catalog/service/db?dc=dc2").await?[0]["ServiceID"] == "db-2");
    // One datacenter alone with ?dc.
    let one = json_of(c1, "/v1/operator/keyring?dc=dc3").await?;
    ensure!(rings(&one)[0] == "false \"dc3\" nodes=1 keys=1", "{one}");

    // WAN coordinates: each datacenter's server, once a round trip has been measured.
    eventually(Duration::from_secs(30), || async {
        let list = json_of(c1, "/v1/coordinate/datacenters").await?;
        let dcs: Vec<&str> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["Datacenter"].as_str())
            .collect();
        ensure!(dcs.len() == 3 && dcs[0] == "dc1", "{list}");
        for d in list.as_array().into_iter().flatten() {
            ensure!(d["AreaID"] == "wan", "{d}");
            let node = d["Coordinates"][0]["Node"].as_str().unwrap_or("");
            let suffix = format!(".{}", d["Datacenter"].as_str().unwrap_or("?"));
            ensure!(node.ends_with(&suffix), "{d}");
            ensure!(d["Coordinates"][0]["Coord"]["Vec"].is_array(), "{d}");
        }
        Ok(())
    })
    .await
    .context("no WAN coordinates")?;
    // `weft rtt -wan` between two servers, and from a server (itself the second) to another.
    let (n1, n2) = (
        format!("{}.dc1", dc1.node(0)),
        format!("{}.dc2", dc2.node(0)),
    );
    for (agent, argv, pair) in [
        (c1, vec!["rtt", "-wan", &n1, &n2], format!("{n1} <-> {n2}")),
        (s1, vec!["rtt", "-wan", &n2], format!("{n2} <-> {n1}")),
    ] {
        let out = cli(agent, &argv)?;
        ensure!(
            out.code() == 0
                && out.stdout.starts_with(&format!("Estimated {pair} rtt: "))
                && out.stdout.contains("(using WAN coordinates)"),
            "weft {argv:?}: {} {}",
            out.stdout,
            out.stderr
        );
    }
    Ok(())
}

/// `weft tls` certificates for servers of dc1 and dc2, from one CA, and each datacenter's config file using them.
fn federated_certs(dir: &std::path::Path) -> Result<()> {
    weft_testkit::cli::make_tls_certs(dir, &[])?;
    let d = dir.display().to_string();
    for dc in ["dc1", "dc2"] {
        weft_testkit::cli::make_tls_cert(dir, &["-server", "-dc", dc])?;
        let config = json!({"tls": {"defaults": {
            "ca_file": format!("{d}/weft-agent-ca.pem"),
            "cert_file": format!("{d}/{dc}-server-weft-0.pem"),
            "key_file": format!("{d}/{dc}-server-weft-0-key.pem"),
            "verify_incoming": true,
        }}});
        std::fs::write(dir.join(format!("{dc}.json")), config.to_string())?;
    }
    Ok(())
}

/// With RPC TLS and `verify_incoming`, each datacenter's servers check that the servers they reach across the WAN
/// present `server.<that dc>.weft`, and a server of another datacenter may pass requests on and fail queries over,
/// but never speak Raft, join, stream the replica, apply writes or have leaves signed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_over_rpc_tls_gives_other_datacenters_only_forwarding() -> Result<()> {
    let certs = weft_testkit::TempDir::new()?;
    federated_certs(certs.path())?;
    let config = |dc: &str| {
        certs
            .path()
            .join(format!("{dc}.json"))
            .display()
            .to_string()
    };
    let (dc1, dc2) = federated_pair(
        &["-config-file", &config("dc1")],
        &["-config-file", &config("dc2")],
    )
    .await?;
    let (s1, s2) = (dc1.agent(0)?, dc2.agent(0)?);
    register_db(s2, "db-2", "10.2.0.1").await?;
    eventually(Duration::from_secs(30), || async {
        let list = json_of(s1, "/v1/catalog/service/db?dc=dc2").await?;
        ensure!(list[0]["ServiceID"] == "db-2", "{list}");
        Ok(())
    })
    .await
    .context("dc1 could not reach dc2 over TLS")?;
    create_query(s1, "db", json!({"Datacenters": ["dc2"]}), "").await?;
    let answer = execute(s1, "db").await?;
    ensure!(
        answer["Datacenter"] == "dc2" && answer["Failovers"] == 1,
        "{answer}"
    );

    // dc2's server certificate against dc1's RPC port.
    let file = |name: &str| certs.path().join(name);
    let (ca, cert, key) = (
        file("weft-agent-ca.pem"),
        file("dc2-server-weft-0.pem"),
        file("dc2-server-weft-0-key.pem"),
    );
    let dc2_server = weft_testkit::rpc_tls::Identity {
        ca: &ca,
        cert: &cert,
        key: &key,
    };
    let rpc = dc1.rpc_addr(0);
    let status = |method: &'static str, path: &'static str| {
        let (rpc, who) = (rpc.clone(), &dc2_server);
        async move {
            weft_testkit::rpc_tls::status(who, &rpc, "server.dc1.weft", method, path, "{}").await
        }
    };
    for (method, path) in [
        ("POST", "/v1/internal/raft/vote"),
        ("POST", "/v1/internal/join"),
        ("POST", "/v1/internal/hello"),
        ("POST", "/v1/internal/apply"),
        ("POST", "/v1/internal/ca/sign"),
        ("POST", "/v1/internal/ca/seal-key"),
        ("GET", "/v1/internal/stream"),
    ] {
        ensure!(
            status(method, path).await? == 403,
            "{path} was not refused to dc2's server"
        );
    }
    ensure!(status("GET", "/v1/internal/forward/v1/catalog/nodes").await? == 200);
    ensure!(status("PUT", "/v1/internal/forward/v1/agent/leave").await? == 403);
    // Allowed, and then refused as a malformed query rather than as a stranger.
    ensure!(status("POST", "/v1/internal/query/execute").await? == 400);
    Ok(())
}

/// With ACLs on in both datacenters (default deny), a request for dc2 is authorised by dc2 with the token it
/// carries: a token both know reads and writes there (and fails a prepared query over), and a token only dc1 knows
/// is "ACL not found" there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_requests_are_authorised_by_the_datacenter_that_answers() -> Result<()> {
    const ROOT: &str = "9f0e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f";
    let acl = format!(
        r#"acl {{ enabled = true  default_policy = "deny"  tokens {{ initial_management = "{ROOT}"  default = "{ROOT}" }} }}
           default_intention_policy = "deny""#
    );
    let (dc1, dc2) = federated_pair(&["-hcl", &acl], &["-hcl", &acl]).await?;
    let (s1, s2) = (dc1.agent(0)?, dc2.agent(0)?);
    s1.wait_for_acls(ROOT).await?;
    s2.wait_for_acls(ROOT).await?;
    eventually(Duration::from_secs(30), || async {
        let list = json_of(s1, &format!("/v1/catalog/datacenters?token={ROOT}")).await?;
        ensure!(list == json!(["dc1", "dc2"]), "{list}");
        Ok(())
    })
    .await?;
    // A token both datacenters know.
    let r = s1
        .put(&format!("/v1/kv/where?dc=dc2&token={ROOT}"), "dc2")
        .await?;
    ensure!(r.status == 200, "{} {}", r.status, r.text());
    ensure!(
        s2.get(&format!("/v1/kv/where?raw&token={ROOT}"))
            .await?
            .text()
            == "dc2"
    );
    // A token only dc1 knows.
    let r = s1
        .put_json(
            &format!("/v1/acl/token?token={ROOT}"),
            &json!({"Policies": [], "Description": "dc1 only"}),
        )
        .await?;
    ensure!(r.status == 200, "{} {}", r.status, r.text());
    let local = r.json()?["SecretID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = s1
        .get(&format!("/v1/kv/where?dc=dc2&token={local}"))
        .await?;
    ensure!(
        r.status == 403 && r.text().contains("ACL not found"),
        "{} {}",
        r.status,
        r.text()
    );
    // Only agents passing a request on may say how far it has come: from a client, the header is ignored (it would
    // otherwise skip the agent's default token, or a keyring operation's other datacenters).
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "X-Weft-Forwarded: 1",
        ])
        .arg(format!("http://{}/v1/kv/where?dc=dc2", s1.addr()))
        .output()?;
    ensure!(String::from_utf8_lossy(&out.stdout) == "200", "{:?}", out);
    // No token, and an agent asked without a default token: dc2 decides for the anonymous token, never with a
    // default token of its own (nor would dc1's server add one on the way).
    let r = s1
        .put_json(
            &format!("/v1/agent/token/default?token={ROOT}"),
            &json!({"Token": ""}),
        )
        .await?;
    ensure!(r.status == 200, "{} {}", r.status, r.text());
    let r = s1.get("/v1/kv/where?dc=dc2").await?;
    ensure!(
        r.status == 403,
        "an anonymous request was answered as {} {}",
        r.status,
        r.text()
    );
    // A prepared query failing over runs in dc2 under the caller's token, as dc2 resolves it.
    register_db(s2, "db-2", "10.2.0.1").await?;
    create_query(s1, "db", json!({"Datacenters": ["dc2"]}), ROOT).await?;
    eventually(Duration::from_secs(20), || async {
        let answer = json_of(s1, &format!("/v1/query/db/execute?token={ROOT}")).await?;
        ensure!(
            answer["Datacenter"] == "dc2" && answer["Nodes"][0]["Service"]["ID"] == "db-2",
            "{answer}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

/// A datacenter whose servers are gone: requests for it fail within the election wait rather than hanging, the WAN
/// pool then drops it (`No path to datacenter`, at once), and a query failing over to it counts it and answers
/// with nothing; when its server comes back, it is reachable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datacenter_that_goes_away_fails_fast_and_comes_back() -> Result<()> {
    let (dc1, mut dc2) = federated_pair(&[], &[]).await?;
    let s1 = dc1.agent(0)?;
    register_db(dc2.agent(0)?, "db-2", "10.2.0.1").await?;
    eventually(Duration::from_secs(30), || async {
        let list = json_of(s1, "/v1/catalog/service/db?dc=dc2").await?;
        ensure!(list[0]["ServiceID"] == "db-2", "{list}");
        Ok(())
    })
    .await?;
    create_query(s1, "db", json!({"Datacenters": ["dc2"]}), "").await?;

    dc2.kill(0);
    let started = std::time::Instant::now();
    let r = s1.get("/v1/catalog/nodes?dc=dc2").await?;
    ensure!(r.status == 500, "{} {}", r.status, r.text());
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let answer = execute(s1, "db").await?;
    ensure!(
        answer["Failovers"] == 1 && answer["Nodes"] == json!([]) && answer["Datacenter"] == "dc1",
        "{answer}"
    );
    eventually(Duration::from_secs(30), || async {
        ensure!(json_of(s1, "/v1/catalog/datacenters").await? == json!(["dc1"]));
        Ok(())
    })
    .await
    .context("the WAN pool kept the dead datacenter")?;
    let started = std::time::Instant::now();
    let r = s1.get("/v1/catalog/nodes?dc=dc2").await?;
    ensure!(
        r.status == 500 && r.text() == "No path to datacenter",
        "{} {}",
        r.status,
        r.text()
    );
    ensure!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    dc2.restart(0)?;
    eventually(Duration::from_secs(30), || async {
        let answer = execute(s1, "db").await?;
        ensure!(
            answer["Datacenter"] == "dc2" && answer["Failovers"] == 1,
            "{answer}"
        );
        Ok(())
    })
    .await
    .context("the datacenter did not come back")?;
    Ok(())
}
