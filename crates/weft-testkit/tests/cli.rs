//! The `weft` CLI as a user runs it: separate processes talking to a real agent, checked on exit codes, stdout
//! and stderr (Consul's messages), Go-style flags and the agent address from the environment; plus the agent
//! process's own lifecycle (`weft leave`, SIGTERM, refusing to start without `-dev`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::Result;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Duration;
use weft_testkit::{cli, Cli, DevAgent, TempDir};

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test]
async fn members_lists_this_server() -> Result<()> {
    let agent = DevAgent::start()?;
    let out = cli(&agent, &["members"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!(
        words(lines[0]),
        [
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment"
        ]
    );
    assert!(
        lines[0].starts_with("Node  "),
        "columns are space-padded: {:?}",
        lines[0]
    );
    let row = words(lines[1]);
    assert_eq!(row[0], agent.node());
    assert_eq!(row[1], "127.0.0.1:8301");
    assert_eq!(row[2], "alive");
    assert_eq!(row[3], "server");
    assert_eq!(row[5], "2");
    assert_eq!(row[6], "dc1");
    assert_eq!(row[7], "default");
    assert_eq!(row[8], "<all>");
    // Columns line up: each header starts where its values start.
    let at = lines[0].find("Status").unwrap();
    assert_eq!(&lines[1][at..at + 5], "alive");

    let out = cli(&agent, &["members", "-status", "failed"])?;
    assert_eq!(out.code(), 2, "no member matches: {out:?}");
    Ok(())
}

#[tokio::test]
async fn catalog_nodes_services_and_datacenters() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "web", "port": 80, "tags": ["b", "a"]}),
        )
        .await?
        .expect_status(200)?;

    let out = cli(&agent, &["catalog", "datacenters"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "dc1\n");

    let out = cli(&agent, &["catalog", "nodes"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(words(lines[0]), ["Node", "ID", "Address", "DC"]);
    let row = words(lines[1]);
    assert_eq!(row[0], agent.node());
    assert_eq!(
        row[1].len(),
        8,
        "the ID is cut to its first segment: {row:?}"
    );
    assert_eq!(row[2], "127.0.0.1");
    assert_eq!(row[3], "dc1");

    let out = cli(&agent, &["catalog", "nodes", "-detailed"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        words(out.stdout.lines().next().unwrap()),
        ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
    );
    assert_eq!(words(out.stdout.lines().nth(1).unwrap())[1].len(), 36);

    let out = cli(&agent, &["catalog", "services"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "consul\nweb\n");
    let out = cli(&agent, &["catalog", "services", "-tags"])?;
    let web = out
        .stdout
        .lines()
        .find(|l| l.starts_with("web"))
        .unwrap()
        .to_string();
    assert_eq!(words(&web), ["web", "a,b"]);
    let out = cli(&agent, &["catalog", "nodes", "-service", "nothing"])?;
    assert_eq!(out.code(), 0);
    assert_eq!(out.stdout, "");
    Ok(())
}

#[tokio::test]
async fn services_register_and_deregister() -> Result<()> {
    let agent = DevAgent::start()?;
    let out = cli(
        &agent,
        &[
            "services", "register", "-name", "x", "-port", "1", "-tag", "t1", "-tag", "t2",
            "-meta", "k=v",
        ],
    )?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Registered service: x\n");
    let services = agent.get("/v1/agent/services").await?.json()?;
    assert_eq!(services["x"]["Port"], 1);
    assert_eq!(services["x"]["Tags"], json!(["t1", "t2"]));
    assert_eq!(services["x"]["Meta"], json!({"k": "v"}));

    // From a JSON file too.
    let dir = TempDir::new()?;
    let file = dir.write(
        "svc.json",
        json!({"service": {"name": "filed", "id": "filed-1", "port": 7}}).to_string(),
    )?;
    let out = cli(&agent, &["services", "register", file.to_str().unwrap()])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Registered service: filed\n");

    let out = cli(&agent, &["services", "deregister", "-id", "x"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Deregistered service: x\n");
    let out = cli(&agent, &["services", "deregister", file.to_str().unwrap()])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Deregistered service: filed-1\n");
    let services = agent.get("/v1/agent/services").await?.json()?;
    assert_eq!(services, json!({}));

    let out = cli(
        &agent,
        &["services", "deregister", "-id", "never-registered"],
    )?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
    Ok(())
}

#[tokio::test]
async fn kv_put_get_delete() -> Result<()> {
    let agent = DevAgent::start()?;
    let out = cli(&agent, &["kv", "put", "a", "b"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Success! Data written to: a\n");
    let out = cli(&agent, &["kv", "get", "a"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "b\n");

    // @file
    let dir = TempDir::new()?;
    let file = dir.write("value.txt", "from a file")?;
    let at_file = format!("@{}", file.display());
    let out = cli(&agent, &["kv", "put", "f", &at_file])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(cli(&agent, &["kv", "get", "f"])?.stdout, "from a file\n");

    // - reads stdin
    let out = Cli::new()
        .agent(&agent)
        .args(&["kv", "put", "s", "-"])
        .stdin("piped in")
        .run()?;
    assert_eq!(out.code(), 0, "{out:?}");
    let raw = agent.get("/v1/kv/s?raw").await?;
    assert_eq!(raw.body, b"piped in");

    // -cas -modify-index
    let entry = agent.get("/v1/kv/a").await?.json()?;
    let index = entry[0]["ModifyIndex"].as_u64().unwrap();
    let wrong = (index + 50).to_string();
    let out = cli(
        &agent,
        &["kv", "put", "-cas", "-modify-index", &wrong, "a", "c"],
    )?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert_eq!(out.stderr, "Error! Did not write to a: CAS failed\n");
    let out = cli(
        &agent,
        &[
            "kv",
            "put",
            "-cas",
            &format!("-modify-index={index}"),
            "a",
            "c",
        ],
    )?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(cli(&agent, &["kv", "get", "a"])?.stdout, "c\n");
    let out = cli(&agent, &["kv", "put", "-cas", "a", "d"])?;
    assert_eq!(out.code(), 1, "-cas needs -modify-index: {out:?}");

    // -acquire / -release with a session, in Consul's words.
    let session = agent.put("/v1/session/create", "{}").await?.json()?;
    let session = session["ID"].as_str().unwrap_or_default().to_string();
    let lock = ["kv", "put", "-session", &session];
    let run = |flag: &str| {
        let mut args = lock.to_vec();
        args.extend([flag, "lock", "held"]);
        cli(&agent, &args)
    };
    let out = run("-acquire")?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Success! Lock acquired on: lock\n");
    let out = run("-release")?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Success! Lock released on: lock\n");
    let other = agent.put("/v1/session/create", "{}").await?.json()?;
    let other = other["ID"].as_str().unwrap_or_default();
    agent
        .put(&format!("/v1/kv/lock?acquire={other}"), "theirs")
        .await?
        .expect_status(200)?;
    let out = run("-acquire")?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert_eq!(out.stderr, "Error! Did not acquire lock\n");

    // -flags, -detailed
    cli(&agent, &["kv", "put", "-flags", "42", "dir/one", "1"])?;
    cli(&agent, &["kv", "put", "dir/two", "2"])?;
    let out = cli(&agent, &["kv", "get", "-detailed", "dir/one"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    let fields: Vec<(String, String)> = out
        .stdout
        .lines()
        .map(|l| {
            let w = words(l);
            (
                w[0].to_string(),
                w.get(1).map(|s| s.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "CreateIndex",
            "Flags",
            "Key",
            "LockIndex",
            "ModifyIndex",
            "Session",
            "Value"
        ]
    );
    assert_eq!(fields[1].1, "42");
    assert_eq!(fields[2].1, "dir/one");
    assert_eq!(fields[5].1, "-");
    assert_eq!(fields[6].1, "1");

    // -recurse prints key:value lines.
    let out = cli(&agent, &["kv", "get", "-recurse", "dir/"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "dir/one:1\ndir/two:2\n");
    let out = cli(&agent, &["kv", "get", "-keys", "dir/"])?;
    assert_eq!(out.stdout, "dir/one\ndir/two\n");

    // -base64 both ways.
    let encoded = base64::engine::general_purpose::STANDARD.encode(b"\x00binary\xff");
    let out = cli(&agent, &["kv", "put", "-base64", "bin", &encoded])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(agent.get("/v1/kv/bin?raw").await?.body, b"\x00binary\xff");
    let out = cli(&agent, &["kv", "get", "-base64", "bin"])?;
    assert_eq!(out.stdout, format!("{encoded}\n"));

    // delete, delete -recurse
    let out = cli(&agent, &["kv", "delete", "a"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Success! Deleted key: a\n");
    assert_eq!(agent.get("/v1/kv/a").await?.status, 404);
    let out = cli(&agent, &["kv", "delete", "-recurse", "dir/"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Success! Deleted keys with prefix: dir/\n");
    assert_eq!(agent.get("/v1/kv/dir/?recurse").await?.status, 404);
    assert_eq!(agent.get("/v1/kv/f").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn kv_get_of_a_missing_key_exits_1() -> Result<()> {
    let agent = DevAgent::start()?;
    let out = cli(&agent, &["kv", "get", "missing"])?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert_eq!(out.stderr, "Error! No key exists at: missing\n");
    assert_eq!(out.stdout, "");
    Ok(())
}

#[tokio::test]
async fn go_style_flags_and_the_address_from_the_environment() -> Result<()> {
    let agent = DevAgent::start()?;
    agent
        .put("/v1/kv/where", "here")
        .await?
        .expect_status(200)?;
    let addr = agent.addr().to_string();

    let out = Cli::new()
        .args(&["kv", "get", &format!("-http-addr={addr}"), "where"])
        .run()?;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "here\n"), "{out:?}");
    let out = Cli::new()
        .args(&["kv", "get", "--http-addr", &addr, "where"])
        .run()?;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "here\n"), "{out:?}");
    let out = Cli::new()
        .args(&[
            "kv",
            "get",
            "-http-addr",
            &format!("http://{addr}"),
            "where",
        ])
        .run()?;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "here\n"), "{out:?}");

    let out = Cli::new()
        .args(&["kv", "get", "where"])
        .env("CONSUL_HTTP_ADDR", &addr)
        .run()?;
    assert_eq!((out.code(), out.stdout.as_str()), (0, "here\n"), "{out:?}");
    let out = Cli::new()
        .args(&["members"])
        .env("CONSUL_HTTP_ADDR", format!("http://{addr}"))
        .run()?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains(agent.node()));

    // Nothing listening: one line on stderr, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let out = Cli::new()
        .args(&["kv", "get", "where"])
        .env("CONSUL_HTTP_ADDR", closed.to_string())
        .run()?;
    assert_eq!(out.code(), 1, "{out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{:?}", out.stderr);
    Ok(())
}

#[tokio::test]
async fn version_and_info() -> Result<()> {
    let agent = DevAgent::start()?;
    let out = Cli::new().args(&["version"]).run()?;
    assert_eq!(out.code(), 0, "{out:?}");
    let first = out.stdout.lines().next().unwrap_or("");
    assert!(first.starts_with("Weft v"), "{first:?}");
    let self_ = agent.get("/v1/agent/self").await?.json()?;
    let version = self_["Config"]["Version"].as_str().unwrap();
    assert_eq!(first, format!("Weft v{version}"));

    let out = cli(&agent, &["info"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    let sections: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with('\t'))
        .collect();
    for s in ["agent:", "build:", "consul:", "raft:"] {
        assert!(sections.contains(&s), "missing section {s}: {}", out.stdout);
    }
    assert!(out.stdout.contains("\tleader = true\n"), "{}", out.stdout);
    let stats: &Value = &self_["Stats"];
    assert!(out.stdout.contains(&format!(
        "\tversion = {}\n",
        stats["build"]["version"].as_str().unwrap()
    )));
    Ok(())
}

#[tokio::test]
async fn leave_stops_the_agent() -> Result<()> {
    let mut agent = DevAgent::start()?;
    let out = cli(&agent, &["leave"])?;
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "Graceful leave complete\n");
    let status = agent.wait_for_exit(Duration::from_secs(5))?;
    assert!(
        status.success(),
        "agent exited with {status}: {}",
        agent.recent_output()
    );
    Ok(())
}

#[test]
fn sigterm_stops_the_agent_cleanly() -> Result<()> {
    let mut agent = DevAgent::start()?;
    let status = agent.stop_gracefully()?;
    assert!(
        status.success(),
        "agent exited with {status}: {}",
        agent.recent_output()
    );
    Ok(())
}

#[test]
fn agent_without_dev_refuses_to_start() -> Result<()> {
    for args in [
        &["agent"][..],
        &["agent", "-server", "-node", "x", "-http-port", "0"],
    ] {
        let out = Cli::new().args(args).run()?;
        assert_eq!(out.code(), 1, "{args:?}: {out:?}");
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line: {:?}",
            out.stderr
        );
        assert!(!out.stderr.trim().is_empty());
        assert!(!out.stdout.contains("HTTP API"), "{args:?}: {out:?}");
    }
    Ok(())
}

#[test]
fn sigterm_stops_the_agent_even_with_a_parked_blocking_query() -> Result<()> {
    let mut agent = DevAgent::start()?;
    let url = agent.url("/v1/catalog/services?index=999999&wait=60s");
    let http = agent.http().clone();
    let rt = tokio::runtime::Runtime::new()?;
    let parked = rt.spawn(async move { http.request("GET", &url, None).await });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!parked.is_finished());
    let status = agent.stop_gracefully()?;
    assert!(
        status.success(),
        "agent exited with {status}: {}",
        agent.recent_output()
    );
    Ok(())
}

#[tokio::test]

async fn members_status_filter_is_a_regular_expression() -> Result<()> {
    let agent = DevAgent::start()?;
    for re in ["^alive$", "alive|left", "a.i"] {
        let out = cli(&agent, &["members", "-status", re])?;
        assert_eq!(out.code(), 0, "-status {re:?}: {out:?}");
        assert!(
            out.stdout.contains(agent.node()),
            "-status {re:?}: {}",
            out.stdout
        );
    }
    Ok(())
}
